-- bench/apps/tls_hello.lua: figure 17's luacluster side (bench/lib/fig_tls.lua): the hello of
-- bench/apps/hello.lua over HTTPS, with the certificate and key the bench made (TLS_CERT,
-- TLS_KEY: the same files nginx serves).
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

if cluster.is_worker then
  local tls = { cert = assert(os.getenv("TLS_CERT"), "TLS_CERT"), key = assert(os.getenv("TLS_KEY"), "TLS_KEY") }
  http.create_server(function()
    return 200, { ["Content-Type"] = "text/plain" }, "Hello, World!\n"
  end, { tls = tls }):listen()
end
