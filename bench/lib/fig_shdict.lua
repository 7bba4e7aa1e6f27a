-- Figures 11-13 (issue 16): shared dictionaries against OpenResty's lua_shared_dict, and the
-- rate limiter example on one against its request/reply version.
-- 11. get, get of one hot key, set and incr per second: the loops of bench/apps/shdict_ops.lua,
--     run unchanged by luacluster (bench/apps/shdict.lua) and by nginx + libnginx-mod-http-lua
--     (ngx.shared, through Debian's lua-resty-core), 2 workers each: one worker alone (one
--     request), then both at once (two requests sent together, answered by two different
--     worker processes: the sum of their rates). A loop runs rounds of 1000 operations for a
--     set time and answers how many it did in how long (the monotonic clock, in the worker):
--     HTTP is not in the figure.
-- 12. memory per entry: N entries of a given size stored in a flushed dictionary; the drop of
--     free_space over N, for both.
-- 13. the rate limiter: examples/rate_limiter/app.lua (one incr per request in a shared
--     dictionary) against bench/apps/rate_limiter_rr.lua (a request/reply round trip to the
--     master per request), 2 workers, a limit no request reaches, wrk -t1 -c64.
local S = require("sys")
local Sys = require("systems")
local Rounds = require("rounds")

local F = {}

F.OPS = { "get", "get_hot", "set", "incr" }
F.OP_LABEL = { get = "get", get_hot = "get of one hot key", set = "set", incr = "incr" }
F.SIZES = { 16, 256 } -- value bytes of figure 12

local OPENRESTY_HTTP = [[
  lua_package_path "%s/bench/apps/?.lua;;";
  lua_shared_dict bench 8m;
  lua_shared_dict mem 64m;
  init_by_lua_block { require("shdict_ops") }]]

local OPENRESTY_SERVER = [[
    location / {
      content_by_lua_block {
        local body = require("shdict_ops").handle(ngx.shared, ngx.var.uri, ngx.var.args, ngx.worker.pid())
        ngx.header["Content-Length"] = #body
        ngx.print(body)
      }
    }]]

local function systems()
  local root = Sys.ctx().root
  return Sys.select({
    { id = "lc", label = "luacluster shared dictionary", kind = "luacluster",
      start = function() return Sys.luacluster{ mode = "dispatch", app = root .. "/bench/apps/shdict.lua" } end },
    { id = "openresty", label = "OpenResty lua_shared_dict", kind = "peer", needs_nginx = true, needs_lua = true,
      start = function()
        return Sys.nginx{ lua = true, name = "openresty-shdict", listen = " reuseport",
          http = string.format(OPENRESTY_HTTP, root), server = OPENRESTY_SERVER }
      end },
  })
end


-- GET path: -> body | raises
local function get(srv, path, timeout_ms)
  local status, body = S.get(srv.port, path, timeout_ms or 60000)
  if status ~= 200 or tostring(body):match("^error") then
    error(string.format("%s: %s %s", path, tostring(status), tostring(body)), 0)
  end
  return body
end


-- "OP COUNT SECONDS PID" -> operations per second, pid
local function parse_run(body)
  local count, secs, pid = body:match("^%S+ (%d+) ([%d%.e%-]+) (%d+)")
  if not count then error("/run: " .. body, 0) end
  return tonumber(count) / tonumber(secs), tonumber(pid)
end


-- the same GET on two connections at once, answered by two different workers (tried again
-- while one worker answers both): -> body1, body2 | raises
local function get_two(srv, path)
  local last
  for _ = 1, 30 do
    local a, b = S.H.connect(srv.port), S.H.connect(srv.port)
    if not a or not b then error("connect to port " .. srv.port .. " refused", 0) end
    local req = "GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    a:send(req)
    b:send(req)
    local ra, rb = a:read_all(60000), b:read_all(60000)
    a:close()
    b:close()
    local ba, bb = ra:match("\r\n\r\n(.*)$") or ra, rb:match("\r\n\r\n(.*)$") or rb
    local _, pa = parse_run(ba)
    local _, pb = parse_run(bb)
    if pa ~= pb then return ba, bb end
    last = pa
  end
  error("30 pairs of requests were all answered by one worker (pid " .. tostring(last) .. ")", 0)
end


-- one measurement: -> ops/s
local function one(srv, op, ms)
  return (parse_run(get(srv, "/run?op=" .. op .. "&ms=" .. ms)))
end


-- both workers for the same time, side by side: the sum of their rates
local function two(srv, op, ms)
  local a, b = get_two(srv, "/run?op=" .. op .. "&ms=" .. ms)
  local rate_a, rate_b = parse_run(a), parse_run(b)
  return rate_a + rate_b
end


-- -> R.shdict = { ms =, entries =, ops = { [id] = { label=, kind=, [op .. "_1"|"_2"] = {ops/s...} } },
--    mem = { [id] = { label=, kind=, [size] = {bytes...} } } }
function F.run(cfg, R)
  local list = systems()
  local ms, entries = cfg.shdict_ms, cfg.shdict_entries
  local servers, data, mem = {}, {}, {}
  local ok, err = pcall(function()
    S.log("shared dictionaries: starting %d servers", #list)
    for _, s in ipairs(list) do servers[s.id] = s.start() end
    for _, s in ipairs(list) do
      local srv = servers[s.id]
      Sys.ready(srv)
      get(srv, "/prepare")
      data[s.id] = { label = s.label, kind = s.kind }
      mem[s.id] = { label = s.label, kind = s.kind }
      for _, op in ipairs(F.OPS) do data[s.id][op .. "_1"], data[s.id][op .. "_2"] = {}, {} end
      for _, size in ipairs(F.SIZES) do mem[s.id][size] = {} end
      -- warm: every loop compiled in both workers before it is timed
      for _, op in ipairs(F.OPS) do get_two(srv, "/run?op=" .. op .. "&ms=" .. math.min(ms, 200)) end
    end
    Rounds.run(list, cfg.repeats, "shared dictionary", math.ceil(2 * #F.OPS * ms / 1000), function(s, rep)
      local srv = servers[s.id]
      for _, op in ipairs(F.OPS) do
        local d = data[s.id]
        d[op .. "_1"][rep] = one(srv, op, ms)
        d[op .. "_2"][rep] = two(srv, op, ms)
        S.debug("  %-32s %-10s %12.0f ops/s (1 worker) %12.0f ops/s (2 at once)", s.label, op, d[op .. "_1"][rep], d[op .. "_2"][rep])
      end
      for _, size in ipairs(F.SIZES) do
        local body = get(srv, "/fill?n=" .. entries .. "&size=" .. size)
        mem[s.id][size][rep] = tonumber(body:match("^([%d%.%-]+)"))
        S.debug("  %-32s %d entries of %d bytes: %.1f bytes each", s.label, entries, size, mem[s.id][size][rep])
      end
    end)
  end)
  for _, srv in pairs(servers) do Sys.stop(srv, 2000) end
  if not ok then error(err, 0) end
  R.shdict = { ms = ms, entries = entries, ops = data, mem = mem, ops_list = F.OPS, op_labels = F.OP_LABEL, sizes = F.SIZES }
  return R.shdict
end


-- -> R.ratelimit = data[id] = { label=, kind=, take = {req/s...}, failed = { take = n } }
function F.ratelimit(cfg, R)
  local root = Sys.ctx().root
  local args = { "1000000000", "60000" } -- a limit no request reaches: every request counted and let through
  local list = {
    { id = "lc_shdict", label = "rate limiter on a shared dictionary", kind = "luacluster",
      start = function() return Sys.luacluster{ mode = "dispatch", app = root .. "/examples/rate_limiter/app.lua", args = args } end },
    { id = "lc_rr", label = "rate limiter by request/reply to the master", kind = "peer",
      start = function() return Sys.luacluster{ mode = "dispatch", app = root .. "/bench/apps/rate_limiter_rr.lua", args = args } end },
  }
  R.ratelimit = Rounds.keepalive_figure(cfg, list, { what = "rate limiter", key = "take",
    check = function(status, body) return status == 200 and tostring(body):match("^hello 127%.0%.0%.1 from worker %d+\n$") end })
  return R.ratelimit
end

return F
