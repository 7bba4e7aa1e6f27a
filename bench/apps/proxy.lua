-- bench/apps/proxy.lua: figure 9 of bench/run. Each request goes to the upstream with
-- http.request over keep-alive connections pooled per worker, and the upstream's status,
-- Content-Type and body come back (examples/proxy is the full proxy: headers both ways).
-- Its peers are nginx's own proxy_pass with upstream keepalive and a Node.js cluster with a
-- keep-alive Agent (bench/peers/node_proxy.js), against the same upstream (bench/lib/fig_proxy.lua).
-- UPSTREAM: the upstream's origin, e.g. http://127.0.0.1:8081
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

local UPSTREAM = os.getenv("UPSTREAM") or "http://127.0.0.1:8081"

if cluster.is_worker then
  local request = http.request
  http.create_server(function(req)
    local res, err = request(UPSTREAM .. req.url, { keepalive = true, timeout = 10000 })
    if not res then
      return 502, { ["Content-Type"] = "text/plain" }, "bad gateway: " .. err .. "\n"
    end
    return res.status, { ["Content-Type"] = res.headers["content-type"] or "text/plain" }, res.body
  end):listen()
end
