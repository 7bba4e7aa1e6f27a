-- bench/run --smoke --only ws: figures 14-16 (WebSocket echo, fan-out, memory per idle
-- WebSocket) run end to end with bench/probes/ws_load.c against the build in ./build, with
-- 1,000 subscribers and idle connections: each figure has a measured luacluster row, the C
-- probe's rows are there, and the peers' rows and ratios when Node's ws / nginx+Lua are installed.
local H = require("helper")

local json_ok, json = pcall(require, "dkjson") -- a dependency of busted on Debian

describe("bench/run --smoke --only ws", function()
  local out, output, rc

  setup(function()
    out = H.tmpdir()
    output, rc = H.sh(string.format("cd '%s' && timeout -k 5 300 bench/run --smoke --only ws --bin '%s' --out '%s'", H.root, H.bin, out))
  end)

  teardown(function()
    H.sh("rm -rf '" .. out .. "'")
  end)

  it("measures figures 14, 15 and 16 with a luacluster row each", function()
    assert.are.equal(0, rc, output)
    assert.truthy(json_ok, "dkjson is needed to read the JSON")
    local doc = json.decode(H.read_file(out .. "/latest.json"))
    assert.are.equal("table", type(doc), "latest.json does not parse")
    local by_id = {}
    for _, f in ipairs(doc.figures) do by_id[f.id] = f end
    local have_node = io.open(H.root .. "/bench/.peers/node_modules/ws/package.json") ~= nil
    local have_lua = io.open("/usr/lib/nginx/modules/ngx_http_lua_module.so") ~= nil
    for id, lc_id in pairs({ ws_echo = "lc", ws_fanout_rate = "lc_lua", ws_fanout_last = "lc_lua", ws_idle_kb = "lc" }) do
      local f = by_id[id]
      assert.truthy(f, "figure " .. id .. " is missing\n" .. output)
      local rows = {}
      for _, r in ipairs(f.rows) do rows[r.id] = r end
      local lc = rows[lc_id]
      assert.truthy(lc, id .. ": no " .. lc_id .. " row")
      assert.are.equal("luacluster", lc.kind)
      assert.are.equal("number", type(lc.median), id .. ": no median")
      assert.truthy(lc.median > 0, id)
      local vs = {}
      for _, x in ipairs(lc.ratios) do vs[x.vs] = x.median end
      if have_node then assert.are.equal("number", type(vs.node), id .. ": no ratio to Node") end
      if have_lua and (id == "ws_echo" or id == "ws_idle_kb") then
        assert.are.equal("number", type(vs.openresty), id .. ": no ratio to OpenResty")
      end
      if id ~= "ws_idle_kb" then
        assert.are.equal("probe", rows.probe and rows.probe.kind, id .. ": no probe row")
        assert.are.equal("number", type(vs.probe), id .. ": no ratio to the probe")
      end
    end
    assert.truthy(output:find("WebSocket echo >= 1.5x Node ws cluster", 1, true) or not have_node, output)
  end)

  it("leaves no process of its own behind", function()
    local id = output:match("run id: (%S+)")
    assert.truthy(id, "bench/run did not say its run id")
    local left = H.sh("grep -lzxF 'BENCH_RUN_ID=" .. id .. "' /proc/[0-9]*/environ 2>/dev/null")
    assert.are.equal("", left)
  end)
end)
