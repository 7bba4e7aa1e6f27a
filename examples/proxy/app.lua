-- A proxying handler: every request goes to an upstream with http.request, over keep-alive
-- connections pooled per worker, and the upstream's status, headers and body come back (the
-- hop-by-hop headers and the framing stay with each side; a HEAD answer keeps the upstream's
-- Content-Length).
-- Run: UPSTREAM=http://127.0.0.1:8081 build/luacluster examples/proxy/app.lua
--   then: curl http://127.0.0.1:8080/some/path
-- An upstream that cannot be reached, or answers garbage or too late, is a 502 naming why.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local process = require("luacluster.process")

local UPSTREAM = process.env.UPSTREAM or "http://127.0.0.1:8081"

-- what a proxy never passes on (RFC 9110 7.6.1), and the framing the runtime makes itself
local HOP = {
  ["connection"] = true, ["keep-alive"] = true, ["proxy-connection"] = true, ["te"] = true,
  ["trailer"] = true, ["transfer-encoding"] = true, ["upgrade"] = true, ["content-length"] = true,
}

if cluster.is_worker then
  http.create_server(function(req)
    -- the request headers the upstream sees (hop-by-hop ones and the framing stay here)
    local h = req.headers
    local headers = {
      ["accept"] = h["accept"], ["accept-language"] = h["accept-language"], ["content-type"] = h["content-type"],
      ["user-agent"] = h["user-agent"], ["authorization"] = h["authorization"], ["cookie"] = h["cookie"],
      ["x-forwarded-for"] = req.remote_address,
    }
    local body = req:body()
    local res, err = http.request(UPSTREAM .. req.url, {
      method = req.method,
      headers = headers,
      body = body ~= "" and body or nil,
      timeout = 10000,
      keepalive = true,
    })
    if not res then
      return 502, { ["Content-Type"] = "text/plain" }, "bad gateway: " .. err .. "\n"
    end
    local out = {}
    for name, value in pairs(res.headers) do
      if not HOP[name] then
        out[name] = value
      end
    end
    if req.method == "HEAD" then
      out["content-length"] = res.headers["content-length"]
    end
    return res.status, out, res.body
  end):listen()
end
