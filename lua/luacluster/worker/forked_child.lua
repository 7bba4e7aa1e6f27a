-- The side of a process started by child_process.fork: the channel to its parent (fd 3),
-- behind process.send, process.on("message"), process.disconnect and process.on("disconnect").
-- The channel keeps the process alive only while a message handler listens; with nothing
-- else to do, the process exits 0 once the channel closes. When the parent goes away without
-- disconnecting (it died), a child that is not detached finishes its in-flight work and exits;
-- one that was disconnected gets SIGTERM when its parent dies (Linux's parent-death signal).
local core = require("luacluster.core")
local channel = require("luacluster.lib.channel")
local emitter = require("luacluster.lib.emitter")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local signals = require("luacluster.lib.signals")

local _M = {}

local MAX_QUEUED = 10000      -- messages kept while no message handler listens
local ORPHAN_DRAIN_MS = 10000 -- a child whose parent died: longest wait for in-flight work

local ch
local events = emitter.mixin({})
local queue = {}              -- messages that came before a message handler
local dropped = false
local detached = false
local told_to_disconnect = false -- the parent's disconnect() or our own
local flush_timer



local function deliver(msg, handle)
  if not events:emit("message", msg, handle) and handle then
    handle:close()
  end
end


local function flush_queue()
  if flush_timer then
    flush_timer:close()
    flush_timer = nil
  end
  local q = queue
  queue = {}
  for i = 1, #q do
    deliver(q[i][1], q[i][2])
  end
end


local function on_message(msg, handle)
  if events:has_listeners("message") and #queue == 0 then
    deliver(msg, handle)
    return
  end
  if #queue >= MAX_QUEUED then
    if handle then
      handle:close()
    end
    if not dropped then
      dropped = true
      log.warn("forked child: no process.on(\"message\") handler; dropping messages")
    end
    return
  end
  queue[#queue + 1] = { msg, handle }
end


local function exit_now()
  local code = runtime.exit_code or 0
  runtime.end_children(function() core.exit(code) end)
end


-- SIGTERM (a stop of the parent's cluster, child:kill(), the parent's death): this process's
-- own children go first, then it dies of the signal, as its parent expects to see.
local function die_of(name)
  local function go()
    core.signal_default(name, true)
  end
  if runtime.live_children() > 0 then
    runtime.end_children(go)
  else
    go()
  end
end


-- The parent died (or exited without disconnecting): stop serving, finish, exit.
local function orphaned()
  runtime.run_drain_hooks()
  local deadline = core.timer_new(exit_now)
  deadline:start(ORPHAN_DRAIN_MS, 0)
  deadline:unref()
  runtime.when_idle(exit_now)
end


local function on_close()
  events:emit("disconnect")
  if not told_to_disconnect and not detached then
    orphaned()
  end
end


local function on_control(msg, handle)
  if handle then
    handle:close()
  end
  if type(msg) == "table" and msg.op == "disconnect" then
    told_to_disconnect = true
  end
end


function _M.init(opts)
  if not opts.ipc_fd then
    return nil, "a forked child needs LUACLUSTER_IPC_FD from its parent"
  end
  detached = os.getenv("LUACLUSTER_DETACHED") == "1"
  core.unsetenv("LUACLUSTER_DETACHED")
  if not detached then
    core.signal_ignore("SIGINT") -- Ctrl-C reaches the whole group: the parent decides
    -- ends with its parent even after a disconnect (then no channel would tell); a parent
    -- that died before this line closed the channel, which orphaned() handles
    core.set_parent_death_signal("SIGTERM")
  end
  signals.set_action("SIGTERM", die_of)
  core.set_cloexec(opts.ipc_fd)
  local err
  ch, err = channel.open_fd(opts.ipc_fd, {
    message = on_message,
    control = on_control,
    request = emitter.request_handler(events, "the forked child has no process.on(\"request\") handler"),
    error = function(e)
      if not events:emit("error", e) then
        log.error(e)
      end
    end,
    close = on_close,
  })
  if not ch then
    return nil, "cannot open the channel to the parent: " .. tostring(err)
  end
  ch.handle:ref(false) -- a message handler is what keeps the process alive (see on)
  return true
end


function _M.after_top_level()
end


-- process.on(event, fn) in a forked child
function _M.on(event, fn)
  emitter.on(events, event, fn)
  if event == "message" and ch and not ch:is_closed() then
    ch.handle:ref(true)
    if #queue > 0 and not flush_timer then
      flush_timer = core.timer_new(flush_queue)
      flush_timer:start(0, 0)
    end
  end
  return true
end


-- -> true | nil, err. A handle's ownership moves to the parent.
function _M.send(msg, handle)
  if ch == nil or ch:is_closed() then
    return nil, "the channel to the parent is closed"
  end
  local ok, err = ch:send(msg, handle)
  if ok and handle then
    handle:close()
  end
  return ok, err
end


function _M.request(msg, timeout_ms, cb)
  if ch == nil or ch:is_closed() then
    return nil, "the channel to the parent is closed"
  end
  return ch:request(msg, timeout_ms, cb)
end


function _M.disconnect()
  if ch == nil or ch:is_closed() then
    return
  end
  told_to_disconnect = true
  ch:close()
end


function _M.connected()
  return ch ~= nil and not ch:is_closed()
end


function _M.channel()
  return ch
end


return {
  init = _M.init,
  after_top_level = _M.after_top_level,
  on = _M.on,
  send = _M.send,
  request = _M.request,
  disconnect = _M.disconnect,
  connected = _M.connected,
  channel = _M.channel,
}
