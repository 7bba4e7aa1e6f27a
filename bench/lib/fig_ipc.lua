-- Figure 2: master <-> worker messaging. Each repeat runs bench/ipc.lua once (one round: every
-- luacluster figure, then bench/peers/node_ipc.js's same figures over Node's process.send) and
-- the raw socketpair probe (bench/probes/sock_echo.c) with the same bytes on the wire per
-- message; the probe goes before ipc.lua on odd repeats and after it on even ones.
-- Both run twice: as the kernel schedules them on the 2 cores ("2 cores"), and with every
-- process pinned to one core (taskset -c 1: "1 core"). On this VM a wake-up across cores costs
-- tens of microseconds, so the free ping-pong figures swing with where the scheduler puts the
-- two processes (the blocking probe lands anywhere from 16k to 200k round trips/s); pinned, a
-- round trip is two context switches on one core and the figure is the software's cost.
local S = require("sys")
local Sys = require("systems")

local F = {}

F.figures = {
  { id = "pingpong_small", title = "IPC ping-pong, small table", unit = "round trips/s", probe = { "pingpong", "small" } },
  { id = "pingpong_1k", title = "IPC ping-pong, 1 KiB table", unit = "round trips/s", probe = { "pingpong", "1k" } },
  { id = "pipelined_small", title = "IPC pipelined (batches of 1000, one way), small table", unit = "messages/s", probe = { "pipelined", "small" } },
  { id = "pipelined_1k", title = "IPC pipelined (batches of 1000, one way), 1 KiB table", unit = "messages/s", probe = { "pipelined", "1k" } },
  { id = "request_1", title = "IPC request/reply, 1 in flight", unit = "round trips/s", probe = { "pingpong", "small" } },
  { id = "request_100", title = "IPC request/reply, 100 in flight", unit = "round trips/s" },
}

local FRAME_HEADER = 16 -- runtime/ipc_frame.h

local function run_ipc_lua(cfg, dir, pin)
  local ctx = Sys.ctx()
  local cmd = string.format("cd '%s' && BENCH_IPC_LINES=1 timeout -k 2 %d %s'%s' --control '%s/ipc.sock' '%s/bench/ipc.lua' %s 1",
    dir, math.floor(cfg.ipc_seconds * 20 + 60), pin, ctx.bin, dir, ctx.root, tostring(cfg.ipc_seconds))
  local out, rc = S.sh(cmd)
  local lc, node = {}, {}
  for who, k, v in out:gmatch("\n(%a+)%.([%w_]+) ([%d%.]+)") do
    if who == "lc" then lc[k] = tonumber(v) elseif who == "node" then node[k] = tonumber(v) end
  end
  if rc ~= 0 or not lc.pingpong_small then
    S.log("ipc: bench/ipc.lua failed (exit %s): %s", tostring(rc), out:sub(-1500))
  end
  return lc, node
end

local function run_probe(mode, size, seconds, pin)
  local out = S.sh(string.format("timeout -k 2 %d %s'%s/sock_echo' %s %d %s", math.floor(seconds + 30), pin, Sys.ctx().probes, mode, size, tostring(seconds)))
  return tonumber(out:match("rate=([%d%.]+)"))
end

F.variants = {
  { id = "", title = "2 cores", pin = "" },
  { id = "_pinned", title = "1 core", pin = "taskset -c 1 " },
}

-- -> data[fig_id .. variant] = { lc = {...}, node = {...}, probe = {...} }
function F.run(cfg, R)
  local data = {}
  local dir = S.mkdir(Sys.ctx().tmp .. "/ipc")
  local sizes = { small = 34 + FRAME_HEADER, ["1k"] = 918 + FRAME_HEADER }
  local figs = {}
  local variants = F.variants
  if cfg.ipc_no_pin or S.sh("command -v taskset") == "" then variants = { F.variants[1] } end
  for _, v in ipairs(variants) do
    for _, f in ipairs(F.figures) do
      if not cfg.ipc_only or cfg.ipc_only[f.id] then
        local id = f.id .. v.id
        figs[#figs + 1] = { id = id, base = f.id, title = f.title .. " (" .. v.title .. ")", unit = f.unit, probe = f.probe, pin = v.pin, variant = v.id }
        data[id] = { lc = {}, node = {}, probe = {} }
      end
    end
  end
  local function probes(rep, v)
    for _, f in ipairs(figs) do
      if f.probe and f.variant == v.id then
        data[f.id].probe[rep] = run_probe(f.probe[1], sizes[f.probe[2]], cfg.ipc_seconds, v.pin) or 0 / 0
      end
    end
  end
  local function ipc(rep, v)
    local lc, node = run_ipc_lua(cfg, dir, v.pin)
    if lc.bytes_small then sizes.small = lc.bytes_small + FRAME_HEADER end
    if lc.bytes_1k then sizes["1k"] = lc.bytes_1k + FRAME_HEADER end
    for _, f in ipairs(figs) do
      if f.variant == v.id then
        data[f.id].lc[rep] = lc[f.base] or 0 / 0
        data[f.id].node[rep] = node[f.base] or 0 / 0
      end
    end
  end
  for rep = 1, cfg.ipc_repeats do
    S.log("ipc: repeat %d/%d", rep, cfg.ipc_repeats)
    for _, v in ipairs(variants) do
      if rep % 2 == 1 then probes(rep, v) ipc(rep, v) else ipc(rep, v) probes(rep, v) end
    end
  end
  R.ipc = { data = data, sizes = sizes, figures = figs }
  return data
end

return F
