-- trial (newcomer mistakes): a misspelled req:websocket option, a wrong type, compress on a client that offers none
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
if cluster.is_master then cluster.setup{ workers = 1 } return end
http.create_server(function(req)
  local opts = ({ ["/typo"] = { compres = true }, ["/string"] = { idle_timeout = "5000" },
    ["/neg"] = { max_message_size = -1 }, ["/bits"] = { compress = { client_max_window_bits = 20 } } })[req.path] or {}
  local ok, ws, err = pcall(req.websocket, req, opts)
  print(req.path, "->", ok, ws, err)
  if ok and ws then ws:send("ok"); ws:close() end
end):listen()
