-- Integration specs of ports mode behind a real nginx (Debian's package): `luacluster
-- nginx-conf` prints the fragment, the spec wraps it in a minimal nginx.conf (its own prefix,
-- pid file and logs in a temp folder, listening on 127.0.0.1 on a free port) and puts nginx
-- in front of two luacluster instances standing in for two hosts.
-- Where the machine allows, each instance is a real host: its own network namespace joined to
-- the root namespace by a veth pair, with addresses from 198.18.0.0/15 (the range set aside
-- for network tests) that exist only on the veth pairs this spec creates and deletes. Where
-- namespaces cannot be made (no privilege, no `ip`), both instances run on 127.0.0.1 on
-- different ports, and the spec says so (LC_SPEC_NO_NETNS=1 asks for that fallback).
-- Also here: `nginx-conf` input checks and http's trusted_proxies (X-Forwarded-For).
local H = require("helper")

local function which(name)
  local out, rc = H.sh("command -v " .. name)
  if rc == 0 then
    return (out:gsub("%s+$", ""))
  end
  for _, dir in ipairs({ "/usr/sbin/", "/sbin/", "/usr/bin/" }) do
    local f = io.open(dir .. name)
    if f then
      f:close()
      return dir .. name
    end
  end
  return nil
end

local NGINX = which("nginx")
local IP = which("ip")
local WRK = which("wrk")
local CURL = which("curl")
local WORKERS = 2
local NS_PORT = 8080 -- every namespace has its own ports: both "hosts" use the same one, as real hosts would


-- runs luacluster to its end: -> stdout, stderr, exit code
local function run(args)
  local argv = { H.bin }
  for _, a in ipairs(args) do
    argv[#argv + 1] = tostring(a)
  end
  local p = H.spawn(argv)
  local code, sig = p:wait(10000)
  if code == nil and sig == nil then
    p:stop()
    error("luacluster did not exit: " .. table.concat(argv, " "))
  end
  return p:stdout(), p:stderr(), code
end


local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end


-- One request on a fresh connection to 127.0.0.1:port: -> status | nil, body, head.
-- method is GET unless given; a POST carries a small body.
local function get(port, path, headers, timeout_ms, method)
  method = method or "GET"
  local req = { method .. " " .. path .. " HTTP/1.1", "Connection: close" }
  local payload = ""
  if method == "POST" then
    payload = "a=1"
    req[#req + 1] = "Content-Type: application/x-www-form-urlencoded"
    req[#req + 1] = "Content-Length: " .. #payload
  end
  local has_host = false
  for name, value in pairs(headers or {}) do
    req[#req + 1] = name .. ": " .. value
    has_host = has_host or name:lower() == "host"
  end
  if not has_host then
    req[#req + 1] = "Host: spec.test"
  end
  local data = H.http_raw(port, table.concat(req, "\r\n") .. "\r\n\r\n" .. payload, timeout_ms or 10000)
  if not data then
    return nil, "", ""
  end
  local head, body = data:match("^(.-\r\n)\r\n(.*)$")
  local status = head and tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  return status, body or "", head or data
end


-- "host=a slot=1 gen=1 ..." -> table
local function parse_body(body)
  local t = {}
  for k, v in body:gmatch("(%w+)=(%S+)") do
    t[k] = v
  end
  return t
end


-- ---- the stand-in hosts ----

local APP = H.prelude .. [[
local http = require("luacluster.http")
if cluster.is_worker then
  local name, bind, trusted = os.getenv("LC_SPEC_HOST"), os.getenv("LC_SPEC_BIND"), os.getenv("LC_SPEC_TRUSTED")
  local server = http.create_server(function(req)
    if req.path:sub(1, 5) ~= "/load" then
      say("saw " .. req.path)
    end
    if req.path == "/slow" then
      timer.sleep(3000)
    end
    return 200, { ["content-type"] = "text/plain" }, string.format(
      "host=%s slot=%d gen=%d remote=%s xrip=%s hosthdr=%s\n", name, cluster.worker.id,
      cluster.worker.generation, tostring(req.remote_address), tostring(req.headers["x-real-ip"]),
      tostring(req.headers["host"]))
  end, { trusted_proxies = { trusted } })
  server:listen(nil, bind)
end
]]


local function my_pid()
  return tonumber(H.read_file("/proc/self/stat"):match("^(%d+)"))
end


-- Is /run/netns a mount point? The first `ip netns add` makes it one (a bind mount of itself,
-- to share the namespaces' mounts) and `ip netns del` leaves it: this spec undoes it when it made it.
-- (mountinfo lists mounts in the order they were made: a later mount on / or /run hides it)
local function run_netns_mounted()
  local mounted = false
  for line in io.lines("/proc/self/mountinfo") do
    local at = line:match("^%S+ %S+ %S+ %S+ (%S+)")
    if at == "/run/netns" then
      mounted = true
    elseif at == "/" or at == "/run" then
      mounted = false
    end
  end
  return mounted
end


-- namespaces and veth pairs left by a run of this spec that was killed (its pid is gone)
local function remove_stale()
  local out = H.sh(IP .. " netns list")
  for ns, pid, side in out:gmatch("(lcspec%-(%d+)%-(%a))") do
    if not H.pid_alive(tonumber(pid)) then
      H.sh(IP .. " link del lcs" .. pid .. side)
      H.sh(IP .. " netns del " .. ns)
    end
  end
end


-- a /24 in 198.18.0.0/15 that no address or route of this machine touches: -> third octet | nil
local function free_subnet(seed)
  local addrs = H.sh(IP .. " -4 -o addr show")
  local routes = H.sh(IP .. " -4 route show table all")
  for i = 0, 99 do
    local k = (seed + i) % 200 + 20
    local pat = "198%.18%." .. k .. "%."
    if not addrs:find(pat) and not routes:find(pat) then
      return k
    end
  end
  return nil
end


-- Makes namespace hosts a and b: -> hosts | nil, why. Everything made is recorded in env.net
-- for teardown, even when a step fails.
local function make_namespaces(env)
  if os.getenv("LC_SPEC_NO_NETNS") then
    return nil, "LC_SPEC_NO_NETNS is set"
  end
  if not IP then
    return nil, "the ip command (iproute2) is not installed"
  end
  local _, uid_rc = H.sh("test \"$(id -u)\" = 0")
  if uid_rc ~= 0 then
    return nil, "creating network namespaces needs root"
  end
  remove_stale()
  local pid = my_pid()
  local k = free_subnet(pid)
  if not k then
    return nil, "no free /24 in 198.18.0.0/16 on this machine"
  end
  env.net = { links = {}, namespaces = {}, run_netns_was_mounted = run_netns_mounted() }
  local hosts = {}
  for i, side in ipairs({ "a", "b" }) do
    local ns = "lcspec-" .. pid .. "-" .. side
    local root_if, ns_if = "lcs" .. pid .. side, "lcs" .. pid .. side .. "n"
    local root_addr = "198.18." .. k .. "." .. (i * 4 - 3)
    local ns_addr = "198.18." .. k .. "." .. (i * 4 - 2)
    local steps = {
      { IP .. " netns add " .. ns, function() env.net.namespaces[#env.net.namespaces + 1] = ns end },
      { IP .. " link add " .. root_if .. " type veth peer name " .. ns_if, function() env.net.links[#env.net.links + 1] = root_if end },
      { IP .. " link set " .. ns_if .. " netns " .. ns },
      { IP .. " addr add " .. root_addr .. "/30 dev " .. root_if },
      { IP .. " link set " .. root_if .. " up" },
      { IP .. " netns exec " .. ns .. " " .. IP .. " addr add " .. ns_addr .. "/30 dev " .. ns_if },
      { IP .. " netns exec " .. ns .. " " .. IP .. " link set " .. ns_if .. " up" },
      { IP .. " netns exec " .. ns .. " " .. IP .. " link set lo up" },
    }
    for _, step in ipairs(steps) do
      local out, rc = H.sh(step[1])
      if rc ~= 0 then
        return nil, "'" .. step[1] .. "' failed: " .. out:gsub("%s+$", "")
      end
      if step[2] then
        step[2]()
      end
    end
    hosts[i] = { name = side, ns = ns, root_if = root_if, ns_if = ns_if, bind = ns_addr,
      proxy_addr = root_addr, port = NS_PORT }
  end
  return hosts
end


-- Before anything is sent to a namespace address: it is on this spec's veth, the route to it
-- goes through that veth, and a TCP SYN to a closed port gets an answer (connection refused,
-- not a timeout). Raises if not.
local function check_namespace_host(h)
  local out = H.sh(IP .. " -4 -o addr show dev " .. h.root_if)
  assert(out:find("inet " .. h.proxy_addr .. "/30", 1, true), h.root_if .. " does not have " .. h.proxy_addr .. ": " .. out)
  out = H.sh(IP .. " netns exec " .. h.ns .. " " .. IP .. " -4 -o addr show dev " .. h.ns_if)
  assert(out:find("inet " .. h.bind .. "/30", 1, true), h.ns_if .. " in " .. h.ns .. " does not have " .. h.bind .. ": " .. out)
  out = H.sh(IP .. " -4 route get " .. h.bind)
  assert(out:find("dev " .. h.root_if, 1, true), "the route to " .. h.bind .. " does not go through " .. h.root_if .. ": " .. out)
  h.checked = true
  local _, rc = H.sh("curl -s -o /dev/null -m 2 http://" .. h.bind .. ":9/")
  assert(rc == 7, h.bind .. " did not answer (curl exit " .. tostring(rc) .. "; 7 is connection refused)")
end


-- two instances on 127.0.0.1, each on its own range of ports (H.free_port_range takes them below
-- the kernel's ephemeral ports, where no outgoing connection holds one)
local function loopback_hosts()
  local hosts = {}
  for i, side in ipairs({ "a", "b" }) do
    local base
    repeat
      base = H.free_port_range(WORKERS)
    until i == 1 or base + WORKERS <= hosts[1].port or base >= hosts[1].port + WORKERS
    hosts[i] = { name = side, bind = "127.0.0.1", proxy_addr = "127.0.0.1", port = base, checked = true }
  end
  return hosts
end


local function start_instance(h)
  h.dir = H.app({ ["app.lua"] = APP })
  h.control = h.dir .. "/control.sock"
  local argv = { H.bin, "-m", "ports", "-w", WORKERS, "-p", h.port, "--control", h.control, h.dir .. "/app.lua" }
  if h.ns then
    argv = { IP, "netns", "exec", h.ns, unpack(argv) }
  end
  for i = 1, #argv do
    argv[i] = tostring(argv[i])
  end
  h.proc = H.spawn(argv, { dir = h.dir,
    env = { LC_SPEC_HOST = h.name, LC_SPEC_BIND = h.bind, LC_SPEC_TRUSTED = h.proxy_addr } })
  -- every slot answers directly (only addresses checked above are ever sent to)
  assert(h.checked)
  for slot = 1, WORKERS do
    local url = "http://" .. h.bind .. ":" .. (h.port + slot - 1) .. "/direct"
    local ok = H.wait_for(function()
      local out, rc = H.sh("curl -s -m 2 " .. url)
      return rc == 0 and out:find("host=" .. h.name .. " slot=" .. slot, 1, true)
    end, 10000, 100)
    assert(ok, "instance " .. h.name .. " slot " .. slot .. " did not answer on " .. url .. "\n" .. h.proc:output())
  end
end


local function start_nginx(env)
  local dir = H.tmpdir()
  env.nginx_dir = dir
  -- nginx's workers (nobody, when started as root) read the static files and the temp folders
  H.sh("chmod 755 " .. q(dir))
  H.sh("mkdir -p " .. q(dir .. "/static") .. " && chmod 755 " .. q(dir .. "/static"))
  H.write_file(dir .. "/static/hello.txt", "hello from disk\n")
  env.nginx_port = H.free_port()
  local hosts = {}
  for _, h in ipairs(env.hosts) do
    hosts[#hosts + 1] = h.ns and h.bind or (h.bind .. ":" .. h.port)
  end
  local args = { "nginx-conf", env.hosts[1].dir .. "/app.lua", "-w", WORKERS, "-p", NS_PORT,
    "--hosts", table.concat(hosts, ","), "--listen", "127.0.0.1:" .. env.nginx_port,
    "--static", "/static/=" .. dir .. "/static" }
  local fragment, err, code = run(args)
  assert(code == 0, "nginx-conf failed: " .. err)
  env.fragment = fragment
  H.write_file(dir .. "/fragment.conf", fragment)
  H.write_file(dir .. "/nginx.conf", table.concat({
    "daemon off;",
    "worker_processes 1;",
    "pid " .. dir .. "/nginx.pid;",
    "error_log " .. dir .. "/error.log info;",
    "events { worker_connections 1024; }",
    "http {",
    "    access_log " .. dir .. "/access.log;",
    "    client_body_temp_path " .. dir .. "/client_body_temp;",
    "    proxy_temp_path " .. dir .. "/proxy_temp;",
    "    fastcgi_temp_path " .. dir .. "/fastcgi_temp;",
    "    uwsgi_temp_path " .. dir .. "/uwsgi_temp;",
    "    scgi_temp_path " .. dir .. "/scgi_temp;",
    "    include " .. dir .. "/fragment.conf;",
    "}",
    "",
  }, "\n"))
  local base = NGINX .. " -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf") .. " -e " .. q(dir .. "/error.log")
  local out, rc = H.sh(base .. " -t")
  assert(rc == 0, "nginx -t refused the printed fragment:\n" .. out .. "\n" .. fragment)
  env.nginx = H.spawn({ NGINX, "-p", dir, "-c", dir .. "/nginx.conf", "-e", dir .. "/error.log" }, { dir = dir })
  local up = H.wait_for(function()
    local s = H.connect(env.nginx_port)
    if s then
      s:close()
      return true
    end
  end, 5000)
  assert(up, "nginx did not start: " .. env.nginx:output() .. H.read_file(dir .. "/error.log"))
end


-- Stops nginx and the instances, deletes the veth pairs and namespaces: every step runs even
-- when an earlier one fails, and the first error is raised at the end.
local function teardown(env)
  local first_err
  local function step(fn, ...)
    local ok, err = pcall(fn, ...)
    if not ok then
      io.stderr:write("nginx_spec: teardown: ", tostring(err), "\n")
      first_err = first_err or err
    end
  end
  if env.nginx then
    step(function()
      env.nginx:kill(3) -- SIGQUIT: nginx's graceful stop
      env.nginx:stop(3000)
    end)
  end
  for _, h in ipairs(env.hosts or {}) do
    if h.proc then
      step(function() h.proc:stop(5000) end)
    end
  end
  step(H.cleanup)
  if env.net then
    for _, link in ipairs(env.net.links) do
      step(H.sh, IP .. " link del " .. link)
    end
    for _, ns in ipairs(env.net.namespaces) do
      step(H.sh, IP .. " netns del " .. ns)
    end
    step(function()
      local left = H.sh(IP .. " netns list")
      for _, ns in ipairs(env.net.namespaces) do
        assert(not left:find(ns, 1, true), "could not delete network namespace " .. ns)
      end
    end)
    if not env.net.run_netns_was_mounted then
      step(function()
        -- leave no mount behind, unless namespaces of someone else's live there by now
        for _ = 1, 3 do
          if not run_netns_mounted() or not H.sh(IP .. " netns list"):match("^%s*$") then
            break
          end
          H.sh("umount /run/netns")
        end
        assert(not run_netns_mounted() or not H.sh(IP .. " netns list"):match("^%s*$"),
          "the mount of /run/netns made by `ip netns add` is left behind")
      end)
    end
    env.net = nil
  end
  if first_err then
    error(first_err, 0)
  end
end


-- ---- specs ----

describe("luacluster nginx-conf", function()
  after_each(function()
    H.cleanup()
  end)

  local dir
  before_each(function()
    dir = H.app({ ["app.lua"] = "return", ["public/a.txt"] = "a\n" })
  end)

  it("prints an upstream with one server per worker slot and host, keep-alive, health checks and the proxy headers", function()
    local out, err, code = run({ "nginx-conf", dir .. "/app.lua", "-w", 3, "-p", 9000, "--hosts", "10.1.0.1,10.1.0.2:7000" })
    assert.equal(0, code, err)
    for _, s in ipairs({ "10.1.0.1:9000", "10.1.0.1:9001", "10.1.0.1:9002", "10.1.0.2:7000", "10.1.0.2:7001", "10.1.0.2:7002" }) do
      assert.matches("server " .. s .. " max_fails=%d+ fail_timeout=%d+s;", out)
    end
    local _, n = out:gsub("\n%s*server [%d.]+:%d+ ", "")
    assert.equal(6, n)
    for _, line in ipairs({ "keepalive %d+;", "proxy_http_version 1%.1;", 'proxy_set_header Connection "";',
      "proxy_set_header Host %$host;", "proxy_set_header X%-Real%-IP %$remote_addr;",
      "proxy_set_header X%-Forwarded%-For %$proxy_add_x_forwarded_for;", "listen 80;",
      "proxy_next_upstream error timeout http_502" }) do
      assert.matches(line, out)
    end
    assert.not_matches("non_idempotent", (out:gsub("#[^\n]*", "")))
  end)

  it("defaults to 127.0.0.1, -p 8080 and a worker per CPU", function()
    local out, err, code = run({ "nginx-conf", dir .. "/app.lua" })
    assert.equal(0, code, err)
    local cpus = tonumber((H.sh("nproc"):match("%d+")))
    local _, n = out:gsub("\n%s*server 127%.0%.0%.1:%d+ ", "")
    assert.equal(cpus, n)
    assert.matches("server 127.0.0.1:8080 ", out, 1, true)
  end)

  it("refuses bad input with one line and a non-zero exit", function()
    local cases = {
      { { "--static", "nothing" }, "--static needs URL_PREFIX=DIR" },
      { { "--static", "/s/=" .. dir .. "/missing" }, "is not a folder" },
      { { "--static", "/s/=" .. dir .. "/public/a.txt" }, "is not a folder" },
      { { "--static", "/=" .. dir .. "/public" }, "URL prefix /" },
      { { "--static", "static=" .. dir .. "/public" }, "URL prefix" },
      { { "--static", "/a b/=" .. dir .. "/public" }, "URL prefix" },
      { { "--hosts", "bad_host!" }, "not a valid host name" },
      { { "--hosts", "a..b" }, "not a valid host name" },
      { { "--hosts", "300.1.1.1" }, "not a valid host name" },
      { { "--hosts", "h1,,h2" }, "empty host name" },
      { { "--hosts", "h1:99999" }, "bad port" },
      { { "--hosts", "h1,h1" }, "given twice" },
      { { "--listen", "80;" }, "--listen" },
      { { "-w", 0 }, "at least 1" },
      { { "-p", 0 }, "--port" },
      { { "-m", "dispatch" }, "ports" },
    }
    for _, c in ipairs(cases) do
      local args = { "nginx-conf", dir .. "/app.lua" }
      for _, a in ipairs(c[1]) do
        args[#args + 1] = a
      end
      local out, err, code = run(args)
      assert.not_equal(0, code, table.concat(c[1], " "))
      assert.equal("", out)
      assert.matches("^luacluster: [^\n]+\n$", err)
      assert.matches(c[2], err, 1, true)
    end
    local _, err, code = run({ "nginx-conf", dir .. "/nope.lua" })
    assert.not_equal(0, code)
    assert.matches("no such file", err, 1, true)
    _, err, code = run({ "--static", "/s/=" .. dir, dir .. "/app.lua" })
    assert.not_equal(0, code)
    assert.matches("nginx-conf only", err, 1, true)
  end)

  ;(NGINX and it or pending)("prints a fragment that nginx -t accepts (IPv4, IPv6, names, several statics)", function()
    local out, err, code = run({ "nginx-conf", dir .. "/app.lua", "-w", 2, "--hosts", "10.1.0.1,[::1]:9000,localhost",
      "--listen", "127.0.0.1:8099", "--static", "/static=" .. dir .. "/public", "--static", "/img/=" .. dir .. "/public" })
    assert.equal(0, code, err)
    local tmp = H.tmpdir()
    H.write_file(tmp .. "/fragment.conf", out)
    H.write_file(tmp .. "/nginx.conf", "pid " .. tmp .. "/nginx.pid;\nerror_log " .. tmp .. "/error.log;\n"
      .. "events {}\nhttp {\n    include " .. tmp .. "/fragment.conf;\n}\n")
    local t, rc = H.sh(NGINX .. " -t -p " .. tmp .. " -c " .. tmp .. "/nginx.conf -e " .. tmp .. "/error.log")
    assert.equal(0, rc, t .. "\n" .. out)
    assert.matches("location ^~ /static/ {", out, 1, true)
    assert.matches("location ^~ /img/ {", out, 1, true)
    assert.matches("expires ", out, 1, true)
    assert.matches("Cache-Control", out, 1, true)
  end)
end)


describe("http trusted_proxies", function()
  after_each(function()
    H.cleanup()
  end)

  it("takes remote_address from X-Forwarded-For only when the peer is a trusted proxy", function()
    local ports = H.free_ports(2)
    local p = H.start_app(string.format([[
      local http = require("luacluster.http")
      local function show(req) return 200, tostring(req.remote_address) end
      if cluster.is_worker then
        http.create_server(show, { trusted_proxies = { "127.0.0.1", "10.0.0.0/8" } }):listen(%d)
        http.create_server(show):listen(%d)
      else
        local ok, err = pcall(http.create_server, show, { trusted_proxies = { "not an address" } })
        say("bad option", tostring(ok), err)
        ok, err = pcall(http.create_server, show, { trusted_proxies = 5 })
        say("bad option", tostring(ok), err)
      end
    ]], ports[1], ports[2]), { "-w", 1 })
    local function remote(port, xff)
      local req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      if xff then
        req = req .. "X-Forwarded-For: " .. xff .. "\r\n"
      end
      local data = H.http_raw(port, req .. "\r\n")
      return data and data:match("\r\n\r\n(.*)$")
    end
    assert.truthy(H.wait_for(function() return remote(ports[1]) and remote(ports[2]) end, 10000), p:output())
    assert.equal("127.0.0.1", remote(ports[1]))
    assert.equal("203.0.113.5", remote(ports[1], "203.0.113.5"))
    -- the right-most address that is not a trusted proxy: what a client sends at the left is not believed
    assert.equal("198.51.100.7", remote(ports[1], "203.0.113.5, 198.51.100.7"))
    assert.equal("198.51.100.7", remote(ports[1], "203.0.113.5, 198.51.100.7, 10.2.3.4"))
    assert.equal("10.9.9.9", remote(ports[1], "10.9.9.9, 10.2.3.4"))
    assert.equal("10.2.3.4", remote(ports[1], "garbage, 10.2.3.4"))
    assert.equal("2001:db8::1", remote(ports[1], "[2001:db8::1]:443"))
    -- off by default
    assert.equal("127.0.0.1", remote(ports[2], "203.0.113.5"))
    local out = p:output()
    assert.matches("bad option false [^\n]*trusted_proxies: 'not an address' is not an IPv4 or IPv6 address", out)
    assert.matches("bad option false [^\n]*trusted_proxies must be a list", out)
  end)
end)


if not NGINX then
  describe("ports mode behind nginx", function()
    pending("nginx is not installed (vendor/install-deps.sh installs it): the nginx integration specs are skipped")
  end)
  return
end


describe("ports mode behind nginx, two hosts", function()
  local env = {}
  local fail_timeout

  local function via_nginx(path, headers, method)
    return get(env.nginx_port, path, headers, nil, method)
  end

  lazy_setup(function()
    local ok, err = xpcall(function()
      local hosts, why = make_namespaces(env)
      if hosts then
        io.stdout:write("\nnginx_spec: hosts a and b run in network namespaces ", hosts[1].ns, " (", hosts[1].bind,
          ") and ", hosts[2].ns, " (", hosts[2].bind, "); nginx in the root namespace\n")
        for _, h in ipairs(hosts) do
          check_namespace_host(h)
        end
      else
        teardown(env) -- whatever part of the namespaces was made
        hosts = loopback_hosts()
        io.stdout:write("\nnginx_spec: network namespaces not available (", why, "); falling back to two instances on ",
          "127.0.0.1, ports ", hosts[1].port, " and ", hosts[2].port, "\n")
      end
      io.stdout:flush()
      env.hosts = hosts
      for _, h in ipairs(hosts) do
        start_instance(h)
      end
      start_nginx(env)
      fail_timeout = tonumber(env.fragment:match("fail_timeout=(%d+)s"))
    end, debug.traceback)
    if not ok then
      teardown(env)
      error(err, 0)
    end
  end)

  lazy_teardown(function()
    teardown(env)
  end)

  it("sends requests to every worker slot of both hosts, with the client's address and the Host header", function()
    local seen, n, statuses = {}, 0, {}
    for _ = 1, 80 do
      -- a client that claims another address in X-Forwarded-For is not believed (the spoof
      -- only "works" where the client itself sits on a trusted proxy's address: the fallback)
      local headers = { Host = "spec.test" }
      if env.hosts[1].ns then
        headers["X-Forwarded-For"] = "203.0.113.9"
      end
      local status, body = via_nginx("/hello", headers)
      statuses[#statuses + 1] = tostring(status)
      assert.equal(200, status, body)
      local r = parse_body(body)
      assert.equal("127.0.0.1", r.remote, body)
      assert.equal("127.0.0.1", r.xrip, body)
      assert.equal("spec.test", r.hosthdr, body)
      if not seen[r.host .. r.slot] then
        seen[r.host .. r.slot] = true
        n = n + 1
      end
      if n == 2 * WORKERS then
        break
      end
    end
    for _, h in ipairs({ "a", "b" }) do
      for slot = 1, WORKERS do
        assert.truthy(seen[h .. slot], "no request reached host " .. h .. " slot " .. slot)
      end
    end
  end)

  it("serves --static files from disk in nginx, with caching headers, without a worker seeing the request", function()
    local status, body, head = via_nginx("/static/hello.txt")
    assert.equal(200, status, head)
    assert.equal("hello from disk\n", body)
    assert.matches("\r\nCache%-Control: max%-age=%d+", head)
    assert.matches("\r\nCache%-Control: public", head)
    assert.matches("\r\nExpires: ", head)
    status = via_nginx("/static/missing.txt")
    assert.equal(404, status)
    -- a dynamic request afterwards does reach a worker and shows in its output...
    for _ = 1, 2 * WORKERS do
      assert.equal(200, (via_nginx("/after-static")))
    end
    local logged = H.wait_for(function()
      return env.hosts[1].proc:output():find("saw /after-static", 1, true)
        and env.hosts[2].proc:output():find("saw /after-static", 1, true)
    end, 5000)
    assert.truthy(logged, "the workers' request log does not show /after-static")
    -- ...the static ones never did
    for _, h in ipairs(env.hosts) do
      assert.not_matches("saw /static", h.proc:output(), 1, true)
    end
  end)

  it("loses no request while one host reloads under load", function()
    local a = env.hosts[1]
    local load
    if WRK then
      load = H.spawn({ WRK, "-t", "2", "-c", "8", "-d", "5s", "http://127.0.0.1:" .. env.nginx_port .. "/load" })
    end
    H.sleep(700)
    local reload = H.spawn({ H.bin, "reload", "--control", a.control })
    local total, failed, gens = 0, {}, {}
    local deadline = H.now() + 30000
    repeat
      -- POSTs too: nginx never sends those twice, so none may meet a connection that is dropped
      local method = total % 2 == 0 and "GET" or "POST"
      local status, body = via_nginx("/load-seq", nil, method)
      total = total + 1
      if status ~= 200 then
        failed[#failed + 1] = method .. " " .. tostring(status) .. " " .. body
      else
        local r = parse_body(body)
        if r.host == "a" then
          gens[r.gen] = (gens[r.gen] or 0) + 1
        end
      end
    until not (reload:alive() or (load and load:alive())) or H.now() > deadline
    assert.equal(0, (reload:wait(1000)), reload:output())
    assert.matches("reloaded: generation 2 serves", reload:stdout(), 1, true)
    assert.equal(0, #failed, total .. " requests, failed: " .. table.concat(failed, "; "))
    assert.truthy(total > 20, "only " .. total .. " requests were sent during the reload")
    if load then
      assert.equal(0, (load:wait(5000)), load:output())
      local out = load:stdout()
      local n = tonumber(out:match("(%d+) requests in"))
      assert.truthy(n and n > 100, out)
      assert.is_nil(out:find("Non-2xx", 1, true), out)
      assert.is_nil(out:find("Socket errors", 1, true), out)
    end
    -- host a's slots now answer from generation 2
    local new = {}
    local ok = H.wait_for(function()
      local status, body = via_nginx("/after-reload")
      local r = parse_body(body)
      if status == 200 and r.host == "a" and r.gen == "2" then
        new[r.slot] = true
      end
      return new["1"] and new["2"]
    end, 10000, 0)
    assert.truthy(ok, "host a's slots did not all answer from generation 2")
  end)

  it("routes around a stopped host: no failed request after the first fail_timeout", function()
    assert.truthy(fail_timeout, env.fragment)
    local b = env.hosts[2]
    -- a long request in flight on host b: its stop waits for it (graceful), and meanwhile
    -- new connections to b must be refused at once, not left in an accept queue
    local slow = H.spawn({ CURL, "-s", "-m", "15", "http://" .. b.bind .. ":" .. b.port .. "/slow" })
    assert.truthy(b.proc:wait_output("saw /slow", 5000, true), b.proc:output())
    local t0 = H.now()
    local stop = H.spawn({ H.bin, "stop", "--control", b.control })
    local slowest = 0
    local late_failures, early_failures, ok_after, from_b_after = {}, 0, 0, 0
    local window_end = t0 + fail_timeout * 1000
    local b_gone_at
    local n = 0
    repeat
      -- POSTs too: nginx sends one to the next slot only when the first refused the connection
      local method = n % 2 == 0 and "GET" or "POST"
      n = n + 1
      local sent = H.now()
      local status, body = via_nginx("/after-stop", nil, method)
      local now = H.now()
      slowest = math.max(slowest, now - sent)
      if not b_gone_at and not b.proc:alive() then
        b_gone_at = now
      end
      if status ~= 200 then
        if now > window_end then
          late_failures[#late_failures + 1] = string.format("%.1fs: %s %s %s", (now - t0) / 1000, method, tostring(status), body)
        else
          early_failures = early_failures + 1
          io.stdout:write(string.format("\nnginx_spec: %.1fs after the stop: %s %s %s", (now - t0) / 1000, method, tostring(status), body))
        end
      elseif now > window_end then
        ok_after = ok_after + 1
        if b_gone_at and parse_body(body).host == "b" then
          from_b_after = from_b_after + 1
        end
      end
    until now > window_end + 3000
    assert.equal(0, (stop:wait(10000)), stop:output())
    assert.truthy(b_gone_at, "host b's instance did not exit: " .. b.proc:output())
    assert.equal(0, (slow:wait(10000)))
    assert.matches("host=b slot=1", slow:stdout(), 1, true)
    assert.truthy(slowest < 2000, "a request took " .. slowest .. " ms while host b was stopping")
    if early_failures > 0 then
      io.stdout:write("\nnginx_spec: ", early_failures, " request(s) failed within the first fail_timeout\n")
    end
    assert.equal(0, #late_failures, table.concat(late_failures, "; "))
    assert.truthy(ok_after > 20, "only " .. ok_after .. " requests after the fail_timeout")
    assert.equal(0, from_b_after)
    -- nginx did try host b and moved on (passive health check)
    assert.matches("Connection refused", H.read_file(env.nginx_dir .. "/error.log"), 1, true)
  end)
end)
