-- A chat server: every browser (or any WebSocket client) in a room gets every line said in it,
-- whichever worker its socket landed on and, with REDIS set, whichever host. Each socket
-- subscribes to its room's topic; a line a client sends is published to that topic once, and the
-- runtime delivers it: the master forwards it to the workers with subscribers of the room, each
-- worker frames it once and writes it to its sockets; Redis carries it to the other hosts.
-- Run (one host):   build/luacluster -w 2 examples/chat/app.lua
-- Run (two hosts):  REDIS=10.0.0.5:6379 build/luacluster -w 2 examples/chat/app.lua   (on each)
-- then open http://127.0.0.1:8080/ in two browsers (or: python3 -m websockets ws://127.0.0.1:8080/ws?room=lobby&name=ann)
local cluster = require("luacluster.cluster")
local process = require("luacluster.process")

local MAX_LINE = 4096 -- bytes a client may say at once (a longer message closes its socket with 1009)

if cluster.is_master then
  local redis = process.env.REDIS
  cluster.setup({ pubsub = redis and { redis = redis } or nil })
  return
end

local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
local cjson = require("cjson")

local PAGE = [[<!doctype html>
<meta charset="utf-8"><title>luacluster chat</title>
<style>body{font:15px sans-serif;max-width:40em;margin:2em auto}#log{height:60vh;overflow:auto;border:1px solid #ccc;padding:.5em}</style>
<div id="log"></div>
<form id="f"><input id="name" placeholder="name" size="10"> <input id="line" placeholder="say something" size="50" autofocus> <button>send</button></form>
<script>
const log = document.getElementById("log"), room = location.hash.slice(1) || "lobby";
let ws;
function connect() {
  const name = document.getElementById("name").value || "guest";
  ws = new WebSocket(`ws://${location.host}/ws?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`);
  ws.onmessage = e => { const m = JSON.parse(e.data); const p = document.createElement("p");
    p.textContent = m.name + (m.joined ? " joined" : m.left ? " left" : ": " + m.text); log.append(p); log.scrollTop = 1e9; };
  ws.onclose = () => setTimeout(connect, 1000); // a reload or a restart closes with 1001: come back
}
connect();
document.getElementById("f").onsubmit = e => { e.preventDefault(); const l = document.getElementById("line");
  if (ws.readyState === 1 && l.value) ws.send(l.value); l.value = ""; };
</script>
]]

-- ?room=lobby&name=ann -> "lobby", "ann": letters, digits, "-", "_", "." and spaces only (what
-- goes out in a text frame must be UTF-8), at most 32 of them; both have a default
local function room_and_name(req)
  local args = req:args(10)
  local function arg(k, default)
    local v = args[k]
    v = type(v) == "string" and v:gsub("[^%w%-_%. ]", ""):sub(1, 32) or ""
    return v ~= "" and v or default
  end
  return arg("room", "lobby"), arg("name", "guest")
end

http.create_server(function(req, res)
  if req.path == "/" then
    return 200, { ["Content-Type"] = "text/html; charset=utf-8" }, PAGE
  elseif req.path ~= "/ws" then
    return 404, "not found\n"
  end
  -- a client that sends nothing for 60 s (browsers answer pings by themselves) is closed
  local ws, err = req:websocket({ max_message_size = MAX_LINE, ping_interval = 20000, idle_timeout = 60000 })
  if not ws then
    return nil -- the runtime has answered the client (400 or 426); err says why
  end
  local room, name = room_and_name(req)
  local topic = "chat:" .. room
  ws:subscribe(topic) -- this socket now gets every line of the room, from any worker or host
  pubsub.publish(topic, cjson.encode({ name = name, joined = true }))
  ws:on("message", function(data, kind)
    if kind == "text" then
      pubsub.publish(topic, cjson.encode({ name = name, text = data }))
    end
  end)
  ws:on("close", function()
    pubsub.publish(topic, cjson.encode({ name = name, left = true }))
  end)
end):listen()
