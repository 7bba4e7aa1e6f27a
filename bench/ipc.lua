-- Master <-> worker messaging, luacluster next to Node.js process.send, in the same run.
-- Figures (each runs for a fixed time, default 1 s, in 3 rounds; the best round counts):
--   ping-pong    one message at a time: the master sends, the worker echoes, the master sends
--                the next when the echo is back (round trips/s)
--   pipelined    master -> worker one way, in batches of 1000 with two batches in flight and
--                the worker acking each batch (messages/s)
--   request      w:request(msg) answered by the worker's on("request") handler, one at a time
--                and 100 in flight (round trips/s); Node's side is the usual id + Map of
--                pending promises over process.send
-- with a small table and a table of about 1 KiB. Node's peer is bench/peers/node_ipc.js (a
-- child_process.fork child, the channel cluster workers use, default JSON serialization).
-- Run: build/luacluster bench/ipc.lua [seconds_per_figure [rounds]]
-- On a small machine the figures swing with where the kernel puts the two processes (one core:
-- a hand-off; two cores: a wake-up across them). Pinning both sides to one core measures the
-- cost per message instead: taskset -c 1 build/luacluster bench/ipc.lua
local cluster = require("luacluster.cluster")
local process = require("luacluster.process")

local BATCH = 1000

local function kib()
  local items = {}
  for i = 1, 13 do
    items[i] = { k = string.format("item%03d", i), v = i * 1.5, s = string.rep("x", 40) }
  end
  return { id = 12345, user = "someone@example.com", tags = { "a", "b", "c" }, items = items }
end

local SMALL = { op = "echo", seq = 1, name = "small" }
local BIG = kib()

if cluster.is_worker then
  local me = cluster.worker
  local count = 0
  me:on("message", function(m)
    local op = m.op
    if op == "echo" then
      me:send(m)
    elseif op == "oneway" then
      count = count + 1
      if count % BATCH == 0 then
        me:send({ op = "ack" })
      end
    end
  end)
  me:on("request", function(m)
    return m
  end)
  return
end

local core = require("luacluster.core")
local codec = require("luacluster.codec")
local coro = require("luacluster.coro")
local child_process = require("luacluster.child_process")
local timer = require("luacluster.timer")

local seconds = tonumber(process.argv[1]) or 1
local rounds = tonumber(process.argv[2]) or 3
local now = core.hrtime

cluster.setup({ workers = 1 })

local on_msg
cluster.on("message", function(_, m)
  if on_msg then
    on_msg(m)
  end
end)


local function with(payload, op)
  local m = {}
  for k, v in pairs(payload) do
    m[k] = v
  end
  m.op = op
  return m
end


local function pingpong(w, payload)
  local msg = with(payload, "echo")
  local wait = coro.waiter("bench")
  local t0 = now()
  local deadline = t0 + seconds * 1000
  local n = 0
  on_msg = function()
    n = n + 1
    local t = now()
    if t < deadline then
      w:send(msg)
    else
      on_msg = nil
      wait:wake(n / ((t - t0) / 1000))
    end
  end
  w:send(msg)
  return wait:wait()
end


local function pipelined(w, payload)
  local msg = with(payload, "oneway")
  local wait = coro.waiter("bench")
  local t0 = now()
  local deadline = t0 + seconds * 1000
  local sent, acked, stop = 0, 0, false
  local function batch()
    for _ = 1, BATCH do
      w:send(msg)
    end
    sent = sent + 1
  end
  on_msg = function()
    acked = acked + 1
    local t = now()
    if not stop and t < deadline then
      batch()
    else
      stop = true
    end
    if stop and acked == sent then
      on_msg = nil
      wait:wake(acked * BATCH / ((t - t0) / 1000))
    end
  end
  batch()
  batch()
  return wait:wait()
end


local function requests(w, payload, inflight)
  local wait = coro.waiter("bench")
  local t0 = now()
  local deadline = t0 + seconds * 1000
  local n, running = 0, inflight
  for _ = 1, inflight do
    coro.spawn(function()
      while now() < deadline do
        assert(w:request(payload, 10000))
        n = n + 1
      end
      running = running - 1
      if running == 0 then
        wait:wake(n / ((now() - t0) / 1000))
      end
    end)
  end
  return wait:wait()
end


local FIGURES = {
  { "pingpong_small", "ping-pong, small table", "round trips/s" },
  { "pingpong_1k", "ping-pong, 1 KiB table", "round trips/s" },
  { "pipelined_small", "pipelined, small table", "messages/s" },
  { "pipelined_1k", "pipelined, 1 KiB table", "messages/s" },
  { "request_1", "request/reply, 1 in flight", "round trips/s" },
  { "request_100", "request/reply, 100 in flight", "round trips/s" },
}


local function node_figures()
  local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
  local out, err = child_process.exec_file("node", { here .. "/peers/node_ipc.js", tostring(seconds) },
    { timeout = (seconds * 8 + 30) * 1000 })
  local t = {}
  if not out then
    io.stderr:write("node peer failed: ", tostring(type(err) == "table" and err.message or err), "\n")
    return t
  end
  for k, v in out:gmatch("(%S+) (%S+)") do
    t[k] = tonumber(v) or v
  end
  return t
end


local function best(into, from)
  for k, v in pairs(from) do
    if type(v) == "number" and k:match("^[pr]") then
      into[k] = math.max(into[k] or 0, v)
    else
      into[k] = v
    end
  end
end


local started = false
cluster.on("online", function(w)
  if started then
    return
  end
  started = true
  timer.sleep(100)
  -- rounds of (every luacluster figure, then every Node figure): the best of each is kept, so
  -- that a moment of load from elsewhere on the machine does not decide a ratio
  local lc, node = {}, {}
  for round = 1, rounds do
    local r = {}
    r.pingpong_small = pingpong(w, SMALL)
    r.pingpong_1k = pingpong(w, BIG)
    r.pipelined_small = pipelined(w, SMALL)
    r.pipelined_1k = pipelined(w, BIG)
    r.request_1 = requests(w, SMALL, 1)
    r.request_100 = requests(w, SMALL, 100)
    best(lc, r)
    best(node, node_figures())
    io.stderr:write(string.format("round %d of %d done\n", round, rounds))
  end

  local cpus = io.open("/proc/self/status") and io.open("/proc/self/status"):read("*a"):match("Cpus_allowed_list:%s*(%S+)")
  print(string.format("master <-> worker messaging: best of %d rounds of %g s per figure; CPUs allowed: %s of %d",
    rounds, seconds, tostring(cpus), core.cpu_count()))
  print(string.format("luacluster: %s; node %s (process.send, JSON)", jit.version, tostring(node.version or "?")))
  print(string.format("message sizes: small %d bytes (Node JSON %s), 1 KiB table %d bytes (Node JSON %s)",
    #codec.encode(SMALL), tostring(node.bytes_small), #codec.encode(BIG), tostring(node.bytes_1k)))
  print(string.format("%-30s %-14s %12s %12s %7s", "figure", "unit", "luacluster", "node", "ratio"))
  for _, f in ipairs(FIGURES) do
    local a, b = lc[f[1]], node[f[1]]
    print(string.format("%-30s %-14s %12.0f %12s %7s", f[2], f[3], a, b and string.format("%.0f", b) or "-",
      b and string.format("%.2fx", a / b) or "-"))
  end
  if os.getenv("BENCH_IPC_LINES") then -- machine-readable too, for bench/run
    for k, v in pairs(lc) do print("lc." .. k .. " " .. string.format("%.0f", v)) end
    for k, v in pairs(node) do
      if type(v) == "number" then print("node." .. k .. " " .. string.format("%.0f", v)) end
    end
    print("lc.bytes_small " .. #codec.encode(SMALL))
    print("lc.bytes_1k " .. #codec.encode(BIG))
  end
  cluster.stop()
end)
