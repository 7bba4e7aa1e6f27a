-- Figure 17 (issue 18): TLS in the server, luacluster against nginx (Debian's, `listen ... ssl`)
-- with the same certificate, made here with the openssl CLI (ECDSA P-256, self-signed; TLS 1.3,
-- each side's OpenSSL defaults otherwise), 2 workers each:
--   full handshakes per second (no session offered), resumed handshakes per second (each client
--   connection offers the newest TLS 1.3 ticket its previous connection got; nginx's workers share
--   the ticket keys its master made at start, luacluster's master hands its keys to every worker),
--   both with bench/probes/tls_load.c (a new connection, the handshake, one GET with
--   "Connection: close", the answer to the end, the close; 32 at once in 2 processes); and the
--   HTTPS keep-alive hello with wrk over TLS (wrk -t1 -c64 https://).
-- The client shares the machine's 2 cores with the server, and a full handshake costs the client
-- more than the server (the signature check and its own ECDHE), so a handshake rate is bounded by
-- both: the server's CPU per handshake (user + system of its whole process tree over the run,
-- divided by the handshakes done) is the figure that is the server's alone. The client counts
-- every handshake as resumed or full (SSL_session_reused): the resumed share says whether tickets
-- work across workers (a server whose workers each have their own keys resumes only when a
-- connection lands on the worker that issued its ticket).
local S = require("sys")
local Sys = require("systems")
local Rounds = require("rounds")

local F = {}

F.CONNS, F.PROCS, F.WRK_CONNS = 32, 2, 64
F.CERT_TEXT = "ECDSA P-256 (prime256v1), self-signed, made with openssl req -x509 at bench time"

-- keepalive_requests lifted: its default (1000) would close each of wrk's connections every 1000
-- requests, and a new TLS connection is a full handshake (luacluster closes none)
local NGINX_HTTP = [[
  keepalive_requests 10000000;
  ssl_certificate %s;
  ssl_certificate_key %s;
  ssl_protocols TLSv1.2 TLSv1.3;]]

local NGINX_SERVER = [[
    location / { return 200 "Hello, World!\n"; }]]

-- the certificate and key both servers serve: -> cert path, key path
function F.make_cert(dir)
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local out, rc = S.sh(string.format(
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '%s' -out '%s' -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>&1",
    key, cert))
  if rc ~= 0 then error("openssl req: " .. out, 0) end
  return cert, key
end

local function tls_load_bin() return Sys.ctx().probes .. "/tls_load" end

-- one GET over TLS: -> "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" | nil, what it said
local function tls_get(port)
  local out = S.sh(string.format("timeout -k 2 8 '%s' get %d 2>&1", tls_load_bin(), port))
  local proto = out:match("^ok (%S+ %S+ %S+)\n")
  if proto and out:find("\nHTTP/1.1 200", 1, true) and out:find("Hello, World!", 1, true) then return proto end
  return nil, out
end

-- waits until the server answers the hello over TLS: -> protocol text | nil, err
local function tls_ready(srv, timeout_ms)
  local deadline = S.now() + (timeout_ms or 15000)
  local last
  while S.now() < deadline do
    local proto, err = tls_get(srv.port)
    if proto then return proto end
    last = err
    if srv.proc:poll() then break end
    S.sleep(50)
  end
  return nil, tostring(last):sub(1, 400)
end

-- tls_load full|resume: -> { rate, done, full, resumed, first, errors } | nil, err
function F.handshakes(port, mode, seconds, conns, procs)
  local cmd = string.format("timeout -k 2 %d '%s' %s %d %d %g %d 2>&1", math.ceil(seconds) + 20, tls_load_bin(), mode, port,
    conns or F.CONNS, seconds, procs or F.PROCS)
  local out = S.sh(cmd)
  local r = {}
  for k, v in out:gmatch("(%a+) ([%d%.]+)") do r[k] = tonumber(v) end
  if not r.rate then return nil, "tls_load: " .. out:gsub("\n", " | ") end
  return r
end

local function systems(cfg, cert, key)
  local app = Sys.ctx().root .. "/bench/apps/tls_hello.lua"
  local env = { TLS_CERT = cert, TLS_KEY = key }
  local function lc(mode)
    return function() return Sys.luacluster{ mode = mode, app = app, env = env } end
  end
  local list = {
    { id = "lc_dispatch", label = "luacluster dispatch", kind = "luacluster", start = lc("dispatch") },
    { id = "lc_reuseport", label = "luacluster reuseport", kind = "luacluster", start = lc("reuseport") },
    { id = "nginx", label = "nginx, listen ssl, return 200", kind = "peer", needs_nginx = true,
      start = function()
        return Sys.nginx{ name = "nginx-tls", listen = " ssl", http = string.format(NGINX_HTTP, cert, key), server = NGINX_SERVER }
      end },
  }
  return Sys.select(list, cfg.tls_only)
end

F.LOADS = { "full", "resume", "ka" }

-- -> R.tls = { data[id] = { label=, kind=, proto=, full = {per-second rates}, resume = {...}, ka = {...},
--    full_cpu = {us}, resume_cpu = {us}, ka_cpu = {us}, resumed_pct = {%}, failed = { full=, resume=, ka= } },
--    cert=, conns=, procs=, seconds= }
function F.run(cfg, R)
  if not io.open("/usr/bin/openssl") then error("the openssl command is missing: no TLS figure", 0) end
  local dir = S.mkdir(Sys.ctx().tmp .. "/tls-cert")
  local cert, key = F.make_cert(dir)
  local list = systems(cfg, cert, key)
  local servers, data, runs = {}, {}, {}
  local ok, err = pcall(function()
    S.log("TLS: starting %d servers", #list)
    for _, s in ipairs(list) do servers[s.id] = s.start() end
    for _, s in ipairs(list) do
      local srv = servers[s.id]
      local proto, perr = tls_ready(srv)
      if not proto then
        -- a luacluster without TLS in the server (before issue 18) serves plain HTTP: a note, not a failure
        local note = string.format("TLS: %s does not answer over TLS, left out: %s %s", s.label, perr, srv.proc:output():sub(-300))
        S.log("%s", note)
        R.notes[#R.notes + 1] = note:gsub("\n", " ")
        Sys.stop(srv, 2000)
        servers[s.id] = nil
      else
        data[s.id] = { label = s.label, kind = s.kind, proto = proto, failed = {} }
        for _, l in ipairs(F.LOADS) do
          data[s.id][l], data[s.id][l .. "_cpu"], data[s.id].failed[l] = {}, {}, 0
        end
        data[s.id].resumed_pct = {}
        for _, l in ipairs(F.LOADS) do runs[#runs + 1] = { s = s, load = l } end
      end
    end
    local function measure(run, rep, seconds)
      local srv = servers[run.s.id]
      local d = data[run.s.id]
      local c0 = S.tree_cpu_ticks(srv.pid)
      local r, rerr, count
      if run.load == "ka" then
        r, rerr = S.wrk{ scheme = "https", port = srv.port, path = "/", seconds = seconds, connections = F.WRK_CONNS }
        count = r and r.requests
      else
        r, rerr = F.handshakes(srv.port, run.load, seconds)
        count = r and r.done
      end
      local ticks = S.tree_cpu_ticks(srv.pid) - c0
      if not rep then return end -- warm-up
      if not r then
        S.log("  %s %s: %s", run.s.label, run.load, rerr)
        d[run.load][rep] = 0 / 0
        return
      end
      d[run.load][rep] = r.rate or r.rps
      d[run.load .. "_cpu"][rep] = count and count > 0 and ticks * 10000 / count or 0 / 0 -- us (ticks of 10 ms)
      d.failed[run.load] = d.failed[run.load] + (r.errors or 0) + (r.non2xx or 0)
      if run.load == "resume" then
        d.resumed_pct[rep] = (r.resumed + r.full) > 0 and 100 * r.resumed / (r.resumed + r.full) or 0 / 0
      end
      S.debug("  %-32s %-6s %9.0f/s  server CPU %.1f us  %s", run.s.label, run.load, d[run.load][rep], d[run.load .. "_cpu"][rep],
        run.load == "ka" and "" or string.format("(resumed %d full %d first %d errors %d)", r.resumed, r.full, r.first, r.errors))
    end
    -- the same protocol, cipher and group for every server (each side's OpenSSL defaults), or a note
    local protos = {}
    for _, s in ipairs(list) do
      if data[s.id] then protos[#protos + 1] = s.label .. ": " .. data[s.id].proto end
    end
    for i = 2, #list do
      local a, b = data[list[1].id], data[list[i].id]
      if a and b and a.proto ~= b.proto then
        R.notes[#R.notes + 1] = "TLS: the servers negotiated different parameters with the same client: " .. table.concat(protos, "; ")
        break
      end
    end
    if (cfg.out_warmup or 0) > 0 then
      for _, run in ipairs(runs) do measure(run, nil, cfg.out_warmup / 2) end
    end
    Rounds.run(runs, cfg.repeats, "TLS", cfg.duration, function(run, rep) measure(run, rep, cfg.duration) end)
  end)
  for _, srv in pairs(servers) do Sys.stop(srv, 2000) end
  if not ok then error(err, 0) end
  R.tls = { data = data, cert = F.CERT_TEXT, conns = F.CONNS, procs = F.PROCS, wrk_conns = F.WRK_CONNS, seconds = cfg.duration }
  return R.tls
end

return F
