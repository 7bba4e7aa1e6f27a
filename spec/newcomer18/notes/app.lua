-- Newcomer's HTTPS notes app: JSON API on a shared dictionary, WSS broadcast, HTTP -> HTTPS redirect.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local shared = require("luacluster.shared")
local pubsub = require("luacluster.pubsub")
local cjson = require("cjson")

local HTTPS_PORT = tonumber(os.getenv("HTTPS_PORT") or "18443")
local HTTP_PORT = tonumber(os.getenv("HTTP_PORT") or "18080")
local DIR = os.getenv("CERTDIR") or "."

local function tls_config()
  if os.getenv("SNI") then
    return {
      { cert = DIR .. "/a.pem", key = DIR .. "/a.key" },
      { server_name = "b.test", cert = DIR .. "/b.pem", key = DIR .. "/b.key" },
    }
  end
  return { cert = DIR .. "/cert.pem", key = DIR .. "/key.pem" }
end

if cluster.is_master then
  cluster.setup{ workers = 2, shared_dicts = { notes = "1m" }, drain_timeout = 3000 }
else
  local server = http.create_server(function(req, res)
    if req.path == "/notes" and req.method == "GET" then
      local n = shared.notes:get("count") or 0
      local out = {}
      for i = 1, n do out[#out + 1] = cjson.decode(shared.notes:get("note:" .. i)) end
      return 200, { ["Content-Type"] = "application/json" },
        (#out == 0 and "[]" or cjson.encode(out)) .. "\n"
    elseif req.path == "/notes" and req.method == "POST" then
      local ok, note = pcall(cjson.decode, req:body())
      if not ok or type(note) ~= "table" or type(note.text) ~= "string" then
        return 400, { ["Content-Type"] = "application/json" }, '{"error":"want {\\"text\\": string}"}\n'
      end
      local id = shared.notes:incr("count", 1, 0)
      local rec = cjson.encode({ id = id, text = note.text, worker = cluster.worker.id })
      shared.notes:set("note:" .. id, rec)
      pubsub.publish("notes", rec)
      return 201, { ["Content-Type"] = "application/json" }, rec .. "\n"
    elseif req.path == "/ws" then
      local ws, err = req:websocket{}
      if not ws then return 400, err .. "\n" end
      ws:subscribe("notes")
      ws:send(cjson.encode({ hello = cluster.worker.id, protocol = req.tls and req.tls.protocol }))
      ws:on("message", function(data) end)
      return
    elseif req.path == "/who" then
      return 200, "worker " .. cluster.worker.id .. " gen " .. cluster.worker.generation ..
        " " .. tostring(req.tls and req.tls.server_name) .. " reused=" ..
        tostring(req.tls and req.tls.session_reused) .. "\n"
    end
    return 404, "not found\n"
  end, { tls = tls_config() })
  server:listen(HTTPS_PORT)

  http.create_server(function(req, res)
    local host = (req.headers.host or "localhost"):gsub(":%d+$", "")
    return 301, { Location = "https://" .. host .. ":" .. HTTPS_PORT .. req.url }, ""
  end):listen(HTTP_PORT)
end
