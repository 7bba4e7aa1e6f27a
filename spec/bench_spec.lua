-- bench/run --smoke: one short repeat of one figure per kind (HTTP, IPC, start/RSS) against the
-- build in ./build, so that CI proves the benchmark suite still runs; checks the shape of the
-- JSON it writes (bench/README.md describes it) and that everything it started is gone.
local H = require("helper")

local json_ok, json = pcall(require, "dkjson") -- a dependency of busted on Debian

-- bench/run --smoke --only PARTS against ./build, into a folder of its own; it must end well and
-- write its JSON: -> the document, its output
local function smoke_only(parts, timeout_s)
  local out = H.tmpdir()
  local output, rc = H.sh(string.format("cd '%s' && timeout -k 5 %d bench/run --smoke --only %s --bin '%s' --out '%s'",
    H.root, timeout_s, parts, H.bin, out))
  local text = H.read_file(out .. "/latest.json")
  H.sh("rm -rf '" .. out .. "'")
  assert.are.equal(0, rc, output)
  assert.truthy(json_ok, "dkjson is needed to read the JSON")
  local doc = json.decode(text)
  assert.are.equal("table", type(doc), output)
  return doc, output
end

-- a JSON document's rows by figure id, then row id
local function rows_by_figure(doc)
  local by_id = {}
  for _, f in ipairs(doc.figures) do
    local rows = {}
    for _, r in ipairs(f.rows) do rows[r.id] = r end
    by_id[f.id] = rows
  end
  return by_id
end

describe("bench/run --smoke", function()
  local out, output, rc

  setup(function()
    out = H.tmpdir()
    output, rc = H.sh(string.format("cd '%s' && timeout -k 5 60 bench/run --smoke --bin '%s' --out '%s'", H.root, H.bin, out))
  end)

  teardown(function()
    H.sh("rm -rf '" .. out .. "'")
  end)

  it("runs, prints the table and writes latest.json, latest.svg and latest.md", function()
    assert.are.equal(0, rc, output)
    assert.truthy(output:find("targets (issue 7):", 1, true), output)
    assert.truthy(output:find("luacluster dispatch", 1, true), output)
    for _, f in ipairs({ "latest.json", "latest.svg", "latest.md" }) do
      assert.truthy(#H.read_file(out .. "/" .. f) > 100, f .. " is missing or empty")
    end
    local svg = H.read_file(out .. "/latest.svg")
    assert.truthy(svg:match("^<svg ") and svg:match("</svg>%s*$"), "not an SVG document")
  end)

  it("writes a JSON document with a figure of each kind, medians and ratios", function()
    local text = H.read_file(out .. "/latest.json")
    assert.truthy(json_ok, "dkjson is needed to read the JSON")
    local doc = json.decode(text)
    assert.are.equal("table", type(doc), "latest.json does not parse")
    assert.are.equal("smoke", doc.meta.mode)
    assert.truthy(doc.meta.versions.luacluster)
    local by_id = {}
    for _, f in ipairs(doc.figures) do
      assert.truthy(f.id and f.title and f.unit and (f.better == "higher" or f.better == "lower"), f.id)
      for _, r in ipairs(f.rows) do
        assert.truthy(r.id and r.label and (r.kind == "luacluster" or r.kind == "peer" or r.kind == "probe"), f.id)
        assert.are.equal("table", type(r.ratios))
      end
      by_id[f.id] = f
    end
    -- one figure per kind, each with a measured luacluster row
    for _, id in ipairs({ "http_keepalive", "ipc_pingpong_small", "rss_worker", "start_200" }) do
      local f = by_id[id]
      assert.truthy(f, "figure " .. id .. " is missing")
      local lc = f.rows[1]
      assert.are.equal("luacluster", lc.kind, id)
      assert.are.equal("number", type(lc.median), id .. ": no median")
      assert.truthy(lc.median > 0, id)
      assert.are.equal("number", type(lc.min), id)
      assert.are.equal("number", type(lc.max), id)
    end
    -- ratios against a peer and against the probe
    local http = by_id.http_keepalive.rows[1]
    assert.truthy(#http.ratios >= 1 and type(http.ratios[1].median) == "number", "no HTTP ratio")
    local ipc = by_id.ipc_pingpong_small.rows[1]
    local vs = {}
    for _, r in ipairs(ipc.ratios) do vs[r.vs] = r.median end
    if select(2, H.sh("command -v node")) == 0 then
      assert.are.equal("number", type(vs.node), "no IPC ratio to Node")
    end
    assert.are.equal("number", type(vs.probe), "no IPC ratio to the probe")
    assert.truthy(#doc.targets > 0)
    for _, t in ipairs(doc.targets) do
      assert.truthy(t.name and t.text)
    end
  end)

  it("leaves no process of its own behind", function()
    local id = output:match("run id: (%S+)")
    assert.truthy(id, "bench/run did not say its run id")
    local left = H.sh("grep -lzxF 'BENCH_RUN_ID=" .. id .. "' /proc/[0-9]*/environ 2>/dev/null")
    assert.are.equal("", left)
  end)
end)


-- issue 16's figures, which --smoke runs only when named: shared dictionaries against
-- OpenResty's lua_shared_dict (the same loops) and the rate limiter against its request/reply
-- version
describe("bench/run --smoke --only shdict,ratelimit", function()
  local out, output, rc

  setup(function()
    out = H.tmpdir()
    output, rc = H.sh(string.format("cd '%s' && timeout -k 5 120 bench/run --smoke --only shdict,ratelimit --bin '%s' --out '%s'",
      H.root, H.bin, out))
  end)

  teardown(function()
    H.sh("rm -rf '" .. out .. "'")
  end)

  it("measures operations per second, memory per entry and the rate limiter, with ratios", function()
    assert.are.equal(0, rc, output)
    assert.truthy(json_ok, "dkjson is needed to read the JSON")
    local doc = json.decode(H.read_file(out .. "/latest.json"))
    assert.are.equal("table", type(doc), output)
    local by_id = rows_by_figure(doc)
    local nginx_lua = H.sh("ls /usr/lib/nginx/modules/ngx_http_lua_module.so 2>/dev/null") ~= ""
    for _, fid in ipairs({ "shdict_ops_1", "shdict_ops_2", "shdict_mem" }) do
      assert.truthy(by_id[fid], "figure " .. fid .. " is missing\n" .. output)
    end
    for _, rid in ipairs({ "lc_get", "lc_get_hot", "lc_set", "lc_incr" }) do
      for _, fid in ipairs({ "shdict_ops_1", "shdict_ops_2" }) do
        local r = by_id[fid][rid]
        assert.truthy(r and type(r.median) == "number" and r.median > 0, fid .. " " .. rid .. "\n" .. output)
        if nginx_lua then
          assert.are.equal("number", type(r.ratios[1] and r.ratios[1].median), fid .. " " .. rid .. ": no ratio to OpenResty")
        end
      end
    end
    for _, rid in ipairs({ "lc_16", "lc_256" }) do
      local r = by_id.shdict_mem[rid]
      assert.truthy(r and type(r.median) == "number" and r.median > 0, rid)
    end
    local rl = by_id.ratelimit
    assert.truthy(rl and rl.lc_shdict and rl.lc_rr, "figure ratelimit is missing\n" .. output)
    assert.truthy(rl.lc_shdict.median > 0 and rl.lc_rr.median > 0)
    assert.are.equal("lc_rr", rl.lc_shdict.ratios[1].vs)
    local id = output:match("run id: (%S+)")
    assert.are.equal("", H.sh("grep -lzxF 'BENCH_RUN_ID=" .. tostring(id) .. "' /proc/[0-9]*/environ 2>/dev/null"))
  end)
end)


-- issue 17's figures 14-16 (WebSocket echo, fan-out, memory per idle WebSocket) with
-- bench/probes/ws_load.c, 1,000 subscribers and idle connections in --smoke: each figure has a
-- measured luacluster row, the C probe's rows are there, and the peers' ratios when Node's ws
-- (bench/run installs it) and nginx+Lua are installed
describe("bench/run --smoke --only ws", function()
  it("measures figures 14, 15 and 16 with a luacluster row, the probe and the peers", function()
    local doc, output = smoke_only("ws", 300)
    local by_id = {}
    for _, f in ipairs(doc.figures) do by_id[f.id] = f end
    local have_node = io.open(H.root .. "/bench/.peers/node_modules/ws/package.json") ~= nil
    local have_lua = io.open("/usr/lib/nginx/modules/ngx_http_lua_module.so") ~= nil
    for fid, lc_id in pairs({ ws_echo = "lc", ws_fanout_rate = "lc_lua", ws_fanout_last = "lc_lua", ws_idle_kb = "lc" }) do
      assert.truthy(by_id[fid], "figure " .. fid .. " is missing\n" .. output)
      local rows = {}
      for _, r in ipairs(by_id[fid].rows) do rows[r.id] = r end
      local lc = rows[lc_id]
      assert.truthy(lc and lc.kind == "luacluster" and type(lc.median) == "number" and lc.median > 0, fid .. "\n" .. output)
      local vs = {}
      for _, x in ipairs(lc.ratios) do vs[x.vs] = x.median end
      if have_node then assert.are.equal("number", type(vs.node), fid .. ": no ratio to Node") end
      if have_lua and fid ~= "ws_fanout_rate" and fid ~= "ws_fanout_last" then
        assert.are.equal("number", type(vs.openresty), fid .. ": no ratio to OpenResty")
      end
      if fid ~= "ws_idle_kb" then
        assert.are.equal("probe", rows.probe and rows.probe.kind, fid .. ": no probe row")
        assert.are.equal("number", type(vs.probe), fid .. ": no ratio to the probe")
      end
    end
    local id = output:match("run id: (%S+)")
    assert.are.equal("", H.sh("grep -lzxF 'BENCH_RUN_ID=" .. tostring(id) .. "' /proc/[0-9]*/environ 2>/dev/null"))
  end)
end)


-- issue 18's figure 17 (TLS against nginx with the same certificate): full and resumed
-- handshakes with bench/probes/tls_load.c and the HTTPS keep-alive hello with wrk over TLS. nginx
-- shares its ticket keys between its workers, so nearly every offered ticket resumes; a
-- luacluster row with a ratio to nginx in each figure (a build from before the TLS server says
-- "unknown option 'tls'" and has none)
describe("bench/run --smoke --only tls", function()
  it("measures full and resumed handshakes and the HTTPS keep-alive hello against nginx", function()
    local doc, output = smoke_only("tls", 120)
    local by_id = rows_by_figure(doc)
    local lc_tls = not output:find("unknown option 'tls'", 1, true)
    for _, fid in ipairs({ "tls_full", "tls_full_cpu", "tls_resume", "tls_resume_cpu", "tls_ka", "tls_ka_cpu" }) do
      local rows = by_id[fid]
      assert.truthy(rows, "figure " .. fid .. " is missing\n" .. output)
      local ng = rows.nginx
      assert.truthy(ng and type(ng.median) == "number" and ng.median > 0, fid .. ": no nginx figure\n" .. output)
      if lc_tls then
        local lc = rows.lc_dispatch
        assert.truthy(lc and lc.kind == "luacluster" and type(lc.median) == "number" and lc.median > 0, fid .. "\n" .. output)
        assert.are.equal("nginx", lc.ratios[1] and lc.ratios[1].vs, fid .. ": no ratio to nginx")
        assert.are.equal("number", type(lc.ratios[1].median), fid)
      end
    end
    -- the client really resumes: nginx's workers share its master's ticket keys
    local pct = tonumber((by_id.tls_resume.nginx.note or ""):match("^(%d+)%% of handshakes resumed"))
    assert.truthy(pct and pct >= 90, "nginx resumed: " .. tostring(by_id.tls_resume.nginx.note))
    local id = output:match("run id: (%S+)")
    assert.are.equal("", H.sh("grep -lzxF 'BENCH_RUN_ID=" .. tostring(id) .. "' /proc/[0-9]*/environ 2>/dev/null"))
  end)
end)
