-- Figures 5 and 6: TechEmpower's plaintext and JSON tests, as their rules and their wrk command
-- have them: wrk -t1 -c256 --timeout 8 with their Accept header; plaintext pipelined, 16
-- requests per write (bench/lib/wrk_pipeline.lua); JSON one request at a time, its message
-- encoded per request (lua-cjson in luacluster and in nginx's content_by_lua, JSON.stringify in
-- Node.js). luacluster runs bench/apps/techempower.lua; nginx's configs are in systems.lua.
-- Every system is started once and serves both tests; the runs are rotated repeat after
-- repeat as in figure 1 (rounds.lua), so that the machine's noise lands on every system alike.
local S = require("sys")
local Sys = require("systems")
local Rounds = require("rounds")

local F = {}

local TE_APP = "/bench/apps/techempower.lua"
local PIPELINE = "/bench/lib/wrk_pipeline.lua"
local ACCEPT = {
  plaintext = "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7",
  json = "Accept: application/json,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7",
}

F.tests = {
  plaintext = { path = "/plaintext", depth = 16 },
  json = { path = "/json" },
}

-- id, label, kind, start, and which tests it takes part in
local function all_systems(cfg)
  local function lc(mode)
    return function() return Sys.luacluster{ mode = mode, app = Sys.ctx().root .. TE_APP } end
  end
  local both = { plaintext = true, json = true }
  local list = {
    { id = "lc_dispatch", label = "luacluster dispatch", kind = "luacluster", tests = both, start = lc("dispatch") },
    { id = "lc_shared", label = "luacluster shared", kind = "luacluster", tests = both, start = lc("shared") },
    { id = "lc_reuseport", label = "luacluster reuseport", kind = "luacluster", tests = both, start = lc("reuseport") },
    { id = "node_rr", label = "Node cluster, round robin", kind = "peer", needs_node = true, tests = both,
      start = function() return Sys.node{ sched = "rr" } end },
    { id = "nginx", label = "nginx return 200", kind = "peer", needs_nginx = true, tests = { plaintext = true },
      start = function() return Sys.nginx{ te = true } end },
    { id = "nginx_lua", label = "nginx content_by_lua (cjson)", kind = "peer", needs_nginx = true, needs_lua = true, tests = both,
      start = function() return Sys.nginx{ te = true, lua = true } end },
  }
  return Sys.select(list, cfg.te_only)
end

F.systems = all_systems

-- One answer of each test, read back: every system must send what the rules ask for before
-- it is measured. -> nil | an error message
local function check(srv, test)
  local s = S.H.connect(srv.port)
  if not s then return "refused" end
  s:send("GET " .. F.tests[test].path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
  local data = s:read_all(3000)
  s:close()
  local head, body = data:match("^(.-\r\n)\r\n(.*)$")
  if not head or not head:match("^HTTP/1%.1 200 ") then return "no 200: " .. data:sub(1, 200) end
  local lower = head:lower()
  for _, h in ipairs({ "server: ", "date: ", "content-type: " .. (test == "json" and "application/json" or "text/plain") }) do
    if not lower:find("\r\n" .. h, 1, true) then return "no '" .. h .. "' header:\n" .. head end
  end
  local want_body = test == "json" and '{"message":"Hello, World!"}' or "Hello, World!"
  if body ~= want_body then return "body " .. string.format("%q", body) end
end

-- -> data[id] = { label=, kind=, plaintext = {rps...}, json = {rps...}, failed = { plaintext=n, json=n } }
function F.run(cfg, R, tests)
  local systems = all_systems(cfg)
  local root = Sys.ctx().root
  local servers, data = {}, {}
  local ok, err = pcall(function()
    S.log("techempower (%s): starting %d servers", table.concat(tests, ", "), #systems)
    for _, s in ipairs(systems) do servers[s.id] = s.start() end
    local runs = {}
    for _, s in ipairs(systems) do
      Sys.ready(servers[s.id])
      data[s.id] = { label = s.label, kind = s.kind, plaintext = {}, json = {}, failed = { plaintext = 0, json = 0 } }
      for _, t in ipairs(tests) do
        if s.tests[t] then
          local bad = check(servers[s.id], t)
          if bad then error(string.format("%s, %s: %s", s.label, t, bad), 0) end
          runs[#runs + 1] = { s = s, test = t }
        end
      end
    end
    local function wrk(run, seconds)
      local t = F.tests[run.test]
      return S.wrk{ port = servers[run.s.id].port, path = t.path, seconds = seconds, connections = 256, timeout = 8,
        headers = { ACCEPT[run.test], "Connection: keep-alive" },
        script = t.depth and (root .. PIPELINE) or nil, args = t.depth and { t.depth } or nil }
    end
    if cfg.warmup > 0 then
      for _, run in ipairs(runs) do wrk(run, cfg.warmup) end
    end
    local seconds = cfg.te_duration or cfg.duration
    Rounds.run(runs, cfg.repeats, "techempower", seconds, function(run, rep)
      local r, werr = wrk(run, seconds)
      Rounds.record(data[run.s.id], run.test, rep, run.s.label, r, werr)
    end)
  end)
  for _, srv in pairs(servers) do Sys.stop(srv, 2000) end
  if not ok then error(err, 0) end
  R.te = data
  return data
end

return F
