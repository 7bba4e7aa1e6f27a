-- Shared dictionaries (luacluster.shared, ngx.shared) in one worker: every method against
-- Debian's nginx + lua-nginx-module running the same calls (spec/shdict_cases.lua) on a
-- lua_shared_dict; least-recently-used eviction and `forcible`; safe_* never evicting;
-- cluster.setup's checks of names and sizes; the master's own use; the rows of
-- `luacluster status` and of the metrics.
local H = require("helper")
local nginx_lua = require("nginx_lua")

local APP = [[
local shared = require("luacluster.shared")
if cluster.is_master then
  cluster.setup{ workers = 1, shared_dicts = { cases = "1m", small = "256k", big = 1048576 * 2 } }
  shared.big:set("from master", "hello")
  say("master capacity", shared.big:capacity(), shared.small:capacity())
  return
end
package.path = os.getenv("SPEC_DIR") .. "/?.lua;" .. package.path
local http = require("luacluster.http")
local ngx = require("luacluster.ngx")
http.create_server(function(req)
  if req.path == "/cases" then
    local lines = require("shdict_cases").run(shared.cases, function(s) timer.sleep(s * 1000) end)
    return 200, table.concat(lines, "\n") .. "\n"
  elseif req.path == "/same" then
    return 200, tostring(ngx.shared.cases == shared.cases and ngx.shared.small == shared.small
      and ngx.shared.nope == nil and shared.nope == nil)
  elseif req.path == "/master" then
    return 200, tostring(shared.big:get("from master"))
  elseif req.path == "/evict" then
    local d, out = shared.small, {}
    d:flush_all()
    d:flush_expired()
    local v100 = string.rep("v", 100)
    local first_forcible
    for i = 1, 2000 do
      local ok, err, forcible = d:set("k" .. i, v100)
      if not ok then return 500, "set failed: " .. tostring(err) end
      if forcible and not first_forcible then first_forcible = i end
    end
    out[#out + 1] = "first forcible " .. tostring(first_forcible)
    out[#out + 1] = "newest " .. tostring(d:get("k2000") ~= nil) .. " oldest " .. tostring(d:get("k1"))
    -- the oldest entry left, read now, is not the next one out: the one after it is
    local oldest
    for i = 1, 2000 do
      if d:get("k" .. i) then oldest = i break end
    end
    for i = 2001, 2010 do d:set("k" .. i, v100) end
    out[#out + 1] = "touched kept " .. tostring(d:get("k" .. oldest) ~= nil)
      .. " next gone " .. tostring(d:get("k" .. (oldest + 1)) == nil)
    local ok, err, forcible = d:safe_set("safe", v100)
    out[#out + 1] = "safe_set " .. tostring(ok) .. " " .. tostring(err) .. " " .. tostring(forcible)
    ok, err, forcible = d:safe_add("safe2", v100)
    out[#out + 1] = "safe_add " .. tostring(ok) .. " " .. tostring(err) .. " " .. tostring(forcible)
    ok, err = d:set("huge", string.rep("s", 300000))
    out[#out + 1] = "too big " .. tostring(ok) .. " " .. tostring(err)
    ok, err, forcible = d:set("half", v100)
    out[#out + 1] = "set evicts " .. tostring(ok) .. " " .. tostring(err) .. " " .. tostring(forcible)
    out[#out + 1] = "incr init " .. tostring(d:incr("counter", 1, 0))
    local len, lerr = d:lpush("list", v100)
    out[#out + 1] = "lpush " .. tostring(len) .. " " .. tostring(lerr)
    out[#out + 1] = "verify " .. tostring(d:verify())
    out[#out + 1] = "free " .. tostring(d:free_space() < d:capacity())
    return 200, table.concat(out, "\n")
  end
  return 404, "none"
end):listen()
]]


describe("shared dictionaries, one worker", function()
  local app, port, ctl, dir

  setup(function()
    port = H.free_port()
    dir = H.tmpdir()
    ctl = dir .. "/control.sock"
    app = H.start_app(APP, { "-p", port, "--control", ctl }, { env = { SPEC_DIR = H.root .. "/spec" } })
    assert(H.wait_listening(port, 10000), app:output())
  end)

  teardown(function()
    if app then
      app:stop()
    end
    H.cleanup()
  end)

  it("answers every case of spec/shdict_cases.lua as OpenResty's lua_shared_dict does", function()
    assert(nginx_lua.available(), "this spec needs nginx and libnginx-mod-http-lua (vendor/install-deps.sh)")
    local nginx, nport, ndir = nginx_lua.start({ "ngx_cases.lua", "shdict_cases.lua" }, "/cases",
      "for _, line in ipairs(require('shdict_cases').run(ngx.shared.cases, ngx.sleep)) do ngx.say(line) end",
      { "lua_shared_dict cases 1m;" })
    local theirs, status = H.curl("http://127.0.0.1:" .. nport .. "/cases")
    nginx:stop()
    assert.equal(200, status, theirs .. H.read_file(ndir .. "/error.log"))
    local ours, ostatus = H.curl("http://127.0.0.1:" .. port .. "/cases")
    assert.equal(200, ostatus, ours .. app:output())
    local a, b = nginx_lua.lines(theirs), nginx_lua.lines(ours)
    assert.equal("", nginx_lua.diff(a, b))
    assert.is_true(#b > 100)
  end)

  it("is the same object as ngx.shared.NAME; an undeclared name is nil", function()
    assert.equal("true", (H.curl("http://127.0.0.1:" .. port .. "/same")))
  end)

  it("is usable in the master, which created it, and sees what the master wrote", function()
    assert.truthy(app:output():find("master capacity 2097152 262144", 1, true), app:output())
    assert.equal("hello", (H.curl("http://127.0.0.1:" .. port .. "/master")))
  end)

  it("evicts the least recently used entries when full and says so with forcible; safe_* never evict", function()
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/evict")
    assert.equal(200, status, body .. app:output())
    local first = tonumber(body:match("first forcible (%d+)"))
    assert.is_truthy(first and first > 500 and first < 2000, body)
    assert.truthy(body:find("newest true oldest nil", 1, true), body)
    assert.truthy(body:find("touched kept true next gone true", 1, true), body)
    assert.truthy(body:find("safe_set false no memory false", 1, true), body)
    assert.truthy(body:find("safe_add false no memory false", 1, true), body)
    assert.truthy(body:find("too big false no memory", 1, true), body)
    assert.truthy(body:find("set evicts true nil true", 1, true), body)
    assert.truthy(body:find("incr init 1", 1, true), body)
    assert.truthy(body:find("lpush 1", 1, true), body)
    assert.truthy(body:find("verify true", 1, true), body)
  end)

  it("shows each dictionary in `luacluster status` and in the metrics", function()
    H.curl("http://127.0.0.1:" .. port .. "/evict")
    local out, rc = H.sh(H.bin .. " status --control " .. ctl)
    assert.equal(0, rc, out)
    assert.matches("shared dict big: capacity 2%.0M, used %d+K, entries 1, evictions 0", out)
    assert.matches("shared dict small: capacity 256K, used %d+K, entries %d+, evictions [1-9]%d*", out)
    local json
    json, rc = H.sh(H.bin .. " status --json --control " .. ctl)
    assert.equal(0, rc, json)
    assert.matches('"shared_dicts":%[', json)
    assert.matches('"name":"small"', json)
    local m
    m, rc = H.sh(H.bin .. " metrics --control " .. ctl)
    assert.equal(0, rc, m)
    assert.matches('luacluster_shared_dict_capacity_bytes{dict="cases"} 1048576', m, 1, true)
    assert.matches('luacluster_shared_dict_entries{dict="big"} 1\n', m, 1, true)
    assert.matches('luacluster_shared_dict_evictions_total{dict="small"} [1-9]', m)
    assert.matches('luacluster_shared_dict_used_bytes{dict="small"} %d+', m)
  end)
end)


describe("cluster.setup{ shared_dicts }", function()
  after_each(function()
    H.cleanup()
  end)

  it("refuses bad names and sizes with a clear error, and takes nginx's size units", function()
    local app = H.start_app([[
local function try(t)
  local ok, err = pcall(cluster.setup, { workers = 0, shared_dicts = t })
  say(ok and "ok" or (err:gsub("^[^\n]-:%d+: ", "")))
end
try({ a = "1q" })
try({ a = 1000 })
try({ a = "16k" })
try({ a = {} })
try({ [""] = "1m" })
try({ ["a b"] = "1m" })
try({ a = 3.5 * 1024 * 1024 + 0.5 })
try("1m")
try({ a = "3G" })
try({ ok1 = "512k", ok2 = "1m", ["ok.3-x_"] = 40000 })
try({ ok1 = "1m" })
local s = require("luacluster.shared")
say("sizes", s.ok1:capacity(), s.ok2:capacity(), s["ok.3-x_"]:capacity())
]], { "-w", "0" })
    local code = app:wait(10000)
    local out = app:output()
    assert.equal(0, code, out)
    local lines = nginx_lua.lines(app:stdout())
    assert.matches('shared_dicts.a: size must be bytes or a string such as "10m" or "512k", not "1q"', lines[1], 1, true)
    assert.matches("shared_dicts.a: size must be a whole number of bytes from 32768 (32k)", lines[2], 1, true)
    assert.matches("shared_dicts.a: size must be a whole number of bytes from 32768", lines[3], 1, true)
    assert.matches("shared_dicts.a: size must be a number of bytes or a string", lines[4], 1, true)
    assert.matches("a dictionary's name is 1 to 63 letters", lines[5], 1, true)
    assert.matches("a dictionary's name is 1 to 63 letters", lines[6], 1, true)
    assert.matches("size must be a whole number", lines[7], 1, true)
    assert.matches("shared_dicts must be a table", lines[8], 1, true)
    assert.matches("size must be a whole number of bytes from 32768 (32k) to", lines[9], 1, true)
    assert.equal("ok", lines[10])
    assert.matches("shared_dicts.ok1 is 524288 bytes in the running cluster and 1048576 in the new code", lines[11], 1, true)
    assert.equal("sizes 524288 1048576 40960", lines[12])
  end)

  it("refuses a dictionary declared after a worker started", function()
    local app = H.start_app([[
if cluster.is_master then
  cluster.setup{ workers = 0 }
  local w = cluster.fork()
  local ok, err = pcall(cluster.setup, { shared_dicts = { late = "1m" } })
  say(ok, err)
  w:kill()
  timer.after(200, function() cluster.stop() end)
end
]], { "-w", "0" })
    app:wait(10000)
    assert.matches("'late' is declared after workers started", app:output(), 1, true)
  end)
end)
