-- luacluster.worker.side: the worker's side of the cluster. It owns the channel to the
-- master, cluster.worker, and the graceful exit (drain) when the master says so or goes away.
-- What plugs into it (control ops from the master, what runs when the channel closes) is
-- registered by worker/plugins.lua.
local core = require("luacluster.core")
local channel = require("luacluster.lib.channel")
local emitter = require("luacluster.lib.emitter")
local emit3 = emitter.emit3
local log = require("luacluster.lib.log")
local peers = require("luacluster.worker.peers")
local registry = require("luacluster.lib.registry")
local runtime = require("luacluster.lib.runtime")
local signals = require("luacluster.lib.signals")
local timer0 = require("luacluster.lib.timer0")

local _M = {}

local ch
local me            -- cluster.worker
local draining = false
local drain_timeout = 30000
local top_level_done, ready_said = false, false
-- control ops: the master's control message of that op -> fn(msg, handle); hooks fn():
-- close (the channel to the master closed)
local plugs = registry.new("worker", { "close" })

local worker_mt = {}
worker_mt.__index = worker_mt
emitter.mixin(worker_mt)


local function closed_err()
  return nil, "the channel to the master is closed"
end


function worker_mt:send(msg, handle)
  local ok, err = ch:send(msg, handle) -- refuses a closed channel itself: "channel closed"
  if not ok and err == "channel closed" then
    return closed_err()
  end
  if ok and handle then
    handle:close() -- ownership moved to the master
  end
  return ok, err
end


function worker_mt:send_to(id, msg)
  if type(id) ~= "number" or id < 1 or id % 1 ~= 0 then
    error("send_to: worker id must be a whole number >= 1", 2)
  end
  if ch:is_closed() then
    return closed_err()
  end
  if not peers.is_live(id) then -- the master's last word; a race is a ROUTE_FAIL "error" event
    return nil, "send_to: there is no live worker " .. id
  end
  return ch:route(id, msg)
end


function worker_mt:broadcast(msg)
  if ch:is_closed() then
    return closed_err()
  end
  return ch:broadcast(msg)
end


function worker_mt:request(msg, timeout_ms, cb)
  if ch:is_closed() then
    return channel.fail_request(timeout_ms, cb, "the channel to the master is closed")
  end
  return ch:request(msg, timeout_ms, cb)
end


function worker_mt:disconnect()
  if not draining and not ch:is_closed() then
    ch:control({ op = "disconnecting" }) -- the master then knows this exit was asked for
  end
  _M.drain()
end


-- cluster.setup{ ready = "manual" }: the app says when this worker is ready (a reload, a
-- sequential start, the first start wait for it); sent once its top level has run
function worker_mt:ready()
  if ready_said then
    return true
  end
  ready_said = true
  if top_level_done and not ch:is_closed() then
    ch:control({ op = "ready" })
  end
  return true
end


local function exit_now()
  -- children started through child_process end first (SIGTERM, then SIGKILL)
  runtime.end_children(function() core.exit(0) end)
end


-- Stops accepting, lets in-flight work finish, then closes the channel and exits 0.
function _M.drain()
  if draining then
    return
  end
  draining = true
  me.state = "draining"
  me:emit("disconnect")
  runtime.drain_deadline = core.now() + drain_timeout -- ws/socket.lua closes WebSockets with 1001 just before it
  runtime.run_drain_hooks()
  local deadline = core.timer_new(function()
    log.warn("drain did not finish within " .. drain_timeout .. " ms; exiting")
    exit_now()
  end)
  deadline:start(drain_timeout, 0)
  deadline:unref()
  runtime.when_idle(function()
    if ch:is_closed() then
      exit_now()
    else
      ch:close() -- its close event exits, once queued frames are written
    end
  end)
end


local function on_control(msg, handle)
  if type(msg) ~= "table" then
    return
  end
  if msg.op == "disconnect" then
    -- the master's drain_timeout now (a reload may have changed it since this worker started)
    if type(msg.drain_timeout) == "number" and msg.drain_timeout >= 0 then
      drain_timeout = msg.drain_timeout
    end
    _M.drain()
  elseif plugs:handler(msg.op) then
    plugs:handler(msg.op)(msg, handle)
  elseif handle then
    handle:close()
  end
end


-- register_op(name, fn) -> remover (a name taken already raises, naming both registrations);
-- add_hook(list, fn) -> remover
_M.register_op, _M.add_hook = plugs:api()


_M.register_op("peers", peers.set) -- the live worker ids (send_to)


function _M.init(opts)
  if not opts.ipc_fd or not opts.id then
    return nil, "a worker needs LUACLUSTER_IPC_FD and LUACLUSTER_WORKER_ID from its master"
  end
  drain_timeout = opts.drain_timeout or drain_timeout
  signals.ignore("SIGINT") -- Ctrl-C reaches the whole group: the master decides
  signals.ignore("SIGHUP")
  core.set_cloexec(opts.ipc_fd)
  me = setmetatable({ id = opts.id, pid = core.pid(), generation = opts.generation or 1, state = "starting" }, worker_mt)
  local err
  ch, err = channel.open_fd(opts.ipc_fd, {
    message = function(msg, handle, from)
      if not emit3(me, "message", msg, handle, from) and handle then
        handle:close()
      end
    end,
    control = on_control,
    request = emitter.request_handler(me, "worker " .. me.id .. " has no cluster.worker:on(\"request\") handler"),
    error = function(e)
      if not me:emit("error", e) then
        log.error(e)
      end
    end,
    route_fail = function(target)
      local e = "send_to: there is no live worker " .. tostring(target)
      if not me:emit("error", e) then
        log.error(e)
      end
    end,
    close = function()
      plugs:run("close") -- servers waiting for the master's unlisten_ok (serve/listen.lua)
      if draining then
        exit_now()
      else
        _M.drain()
      end
    end,
  })
  if not ch then
    return nil, "cannot open the channel to the master: " .. tostring(err)
  end
  if opts.max_message_size then
    ch.handle:set_max_frame(opts.max_message_size) -- the master's cluster.setup{max_message_size=}
  end
  _M.worker = me
  return true
end


-- The top level raised: the master reports it (once per slot, not at every restart; at the
-- first start it stops the cluster with it), so only its first line and the whole text go.
function _M.boot_failed(err)
  local text = tostring(err)
  if ch and not ch:is_closed() then
    ch:control({ op = "failed", err = text:match("^[^\n]*"), detail = text })
  else
    log.error(text)
  end
end


function _M.after_top_level()
  me.state = "online"
  top_level_done = true
  ch:control({ op = "online" })
  if ready_said then
    ch:control({ op = "ready" })
  end
  -- one loop turn later: a worker that has asked for no listening socket by then serves
  -- nothing, and counts as ready for a sequential start (luacluster.master.sequence)
  timer0.next_turn(function()
    if not ch:is_closed() then
      ch:control({ op = "settled" })
    end
  end, true)
end


function _M.channel()
  return ch
end


return _M
