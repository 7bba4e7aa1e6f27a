-- HTTPS (and WSS): one server with a certificate, served by one worker per CPU.
-- A self-signed certificate for a try (the browser or curl must be told to trust it):
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
--     -keyout key.pem -out cert.pem -subj /CN=localhost -addext subjectAltName=DNS:localhost
-- Run: CERT=cert.pem KEY=key.pem build/luacluster examples/https/app.lua
-- then: curl --cacert cert.pem https://localhost:8443/
-- New certificate files (same paths): `luacluster reload examples/https/app.lua`.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

if cluster.is_worker then
  local server = http.create_server(function(req, res)
    return 200, { ["Content-Type"] = "text/plain" },
      "Hello over " .. req.tls.protocol .. " (" .. req.tls.cipher .. ")\n"
  end, { tls = { cert = os.getenv("CERT") or "cert.pem", key = os.getenv("KEY") or "key.pem" } })
  server:listen(8443)
end
