-- trial 1 (newcomer): a chat with rooms, two workers; /ws?room=R&style=receive|on&compress=1
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")

if cluster.is_master then
  cluster.setup{ workers = 2, drain_timeout = 5000 }
  return
end

local wid = cluster.worker.id

http.create_server(function(req, res)
  local args = req:args()
  if req.path == "/ws" then
    local ws, err = req:websocket{ compress = args.compress == "1", max_message_size = 65536 }
    if not ws then print("upgrade failed", err) return end
    local room = args.room or "lobby"
    ws:subscribe("room:" .. room)
    ws:send("hello from worker " .. wid .. " room " .. room .. " style " .. tostring(args.style))
    if args.style == "receive" then
      while true do
        local data, e, code, reason = ws:receive()
        if not data then print("receive ended", e, code, reason) break end
        pubsub.publish("room:" .. room, "[w" .. wid .. "] " .. data)
      end
    else
      ws:on("message", function(data, kind)
        pubsub.publish("room:" .. room, "[w" .. wid .. "] " .. data, kind)
      end)
      ws:on("close", function(code, reason) print("closed", code, reason) end)
    end
  elseif req.path == "/returns" then
    -- newcomer mistake: upgrade, send, return without keeping the socket
    local ws = req:websocket{}
    ws:send("bye soon")
    return
  elseif req.path == "/after-close" then
    local ws = req:websocket{}
    ws:close(1000, "done")
    local ok, e = ws:send("after close")
    print("send after close ->", ok, e)
    local ok2, e2 = pcall(ws.send, ws, "again")
    print("pcall send after close ->", ok2, e2)
  elseif req.path == "/stats" then
    return 200, require("cjson").encode(pubsub.stats()) .. "\n"
  else
    return 404, "not found\n"
  end
end):listen()
