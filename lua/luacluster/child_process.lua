-- child_process: other programs started from a script, as Node.js's module of that name.
-- spawn (streams and an exit event), exec / exec_file (the whole output at once, with a
-- timeout and an output limit; a callback, or waiting inside a handler) and fork (a new
-- luacluster process with a message channel, the same channel code as the cluster's).
-- The processes and pipes are the C runtime's (runtime/process.c, stream.c, ipc.c).
-- Every child that is not detached is kept in a registry until it exits, so that stopping
-- the cluster can end them all (_kill_all, called by master/core.lua and worker/side.lua).
-- exec and exec_file run their command in a process group of its own (a new session): a
-- timeout, max_buffer, child:kill() and a stop signal the whole group, so the command's own
-- children (`sleep 30 &` in a shell line) end with it. A group exec killed (timeout,
-- max_buffer) is followed until it is empty: what is left of it after opts.kill_grace gets
-- SIGKILL, and a stop SIGKILLs it at once (it had its kill_signal already). A process that
-- leaves the group (setsid) is not followed.
-- opts.env, as in Node.js, is the child's whole environment (without it, this process's).
local core = require("luacluster.core")
local channel = require("luacluster.lib.channel")
local coro = require("luacluster.lib.coro")
local emitter = require("luacluster.lib.emitter")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local timer0 = require("luacluster.lib.timer0")

local concat = table.concat

local spawn, exec, exec_file, fork, _kill_all, _kill_all_now, _live_count -- the last three: runtime's (a stop)

local DEFAULT_MAX_BUFFER = 1048576
local KILL_GRACE_MS = 2000    -- _kill_all: how long a child has after SIGTERM before SIGKILL
local DEFAULT_KILL_GRACE = 2000 -- exec: how long a killed group has before SIGKILL
local STOP_POLL_MS = 50       -- _kill_all: how often a stop looks whether the groups are empty
local EXIT_GRACE_MS = 500     -- fork: after the exit, how long to wait for the last messages
local MAX_STDIO = 3

local live = {}               -- child -> true: started, not detached, not exited yet
local kill_waiters = {}       -- functions waiting for every live child to be gone
local kill_timer
local stop_poll               -- _kill_all: a timer looking at the followed groups
local groups = {}             -- pgid -> { child =, killed = bool, timer = t }: exec'd groups followed

local child_mt = {}
child_mt.__index = child_mt
emitter.mixin(child_mt)

local stream_mt = {}
stream_mt.__index = stream_mt
emitter.mixin(stream_mt)


-- ---- checking arguments (a wrong type is a programming mistake: it raises) ----

-- level: the stack level of the user's call, counted from the public function (2 there)
local function check_opts(opts, allowed, what, level)
  level = (level or 2) + 1
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" then
    error(what .. ": options must be a table", level)
  end
  for k, v in pairs(opts) do
    local want = allowed[k]
    if not want then
      error(what .. ": unknown option '" .. tostring(k) .. "'", level)
    end
    if want ~= true and type(v) ~= want then
      error(what .. ": option " .. k .. " must be a " .. want, level)
    end
  end
  return opts
end


local function check_args(args, what)
  if args == nil then
    return {}
  end
  if type(args) ~= "table" then
    error(what .. ": args must be an array of strings", 3)
  end
  local out = {}
  for i = 1, #args do
    local a = args[i]
    if type(a) ~= "string" and type(a) ~= "number" then
      error(what .. ": args[" .. i .. "] must be a string", 3)
    end
    out[i] = tostring(a)
  end
  return out
end


local function check_signal(signal, what, level)
  if type(signal) == "number" and signal >= 0 and signal % 1 == 0 then
    return signal
  end
  if type(signal) ~= "string" or not core.signum(signal) then
    error(what .. ": unknown signal '" .. tostring(signal) .. "'", level + 1)
  end
  return signal
end


-- env table -> { "K=V", ... }; nil keeps this process's environment
local function env_list(env, extra)
  if env == nil and extra == nil then
    return nil
  end
  local all = {}
  for k, v in pairs(env or core.environ()) do
    all[tostring(k)] = tostring(v)
  end
  for k, v in pairs(extra or {}) do
    all[k] = v
  end
  local list = {}
  for k, v in pairs(all) do
    list[#list + 1] = k .. "=" .. v
  end
  return list
end


local STDIO = { pipe = true, inherit = true, ignore = true }

-- "pipe" | "inherit" | "ignore" | { three of those } -> { three of those }
local function stdio_list(stdio, default, what)
  stdio = stdio or default
  if type(stdio) == "string" then
    stdio = { stdio, stdio, stdio }
  end
  if type(stdio) ~= "table" then
    error(what .. ": stdio must be \"pipe\", \"inherit\", \"ignore\" or an array of those", 3)
  end
  local out = {}
  for i = 1, MAX_STDIO do
    local s = stdio[i] or "ignore"
    if not STDIO[s] then
      error(what .. ": stdio[" .. i .. "] must be \"pipe\", \"inherit\" or \"ignore\"", 3)
    end
    out[i] = s
  end
  return out
end


-- ---- streams: a child's stdin, stdout, stderr ----

local function on_stream_event(s, event, data)
  if event == "data" then
    if s._sink then
      s._sink(data)
    end
    s:emit("data", data)
  elseif event == "end" then
    s.ended = true
    s:emit("end")
    s.handle:close()
  elseif event == "error" then
    if not s:emit("error", data) then
      log.warn("child process stream: " .. tostring(data))
    end
    s.handle:close()
  elseif event == "close" then
    s.closed = true
    s:emit("close")
    if s._on_close then
      s._on_close()
    end
  end
end


local function new_stream(readable)
  local s = setmetatable({ readable = readable, ended = false, closed = false }, stream_mt)
  s.handle = core.stream_new(function(event, data) on_stream_event(s, event, data) end)
  return s
end


-- -> true | nil, err
function stream_mt:write(data)
  if type(data) ~= "string" then
    if type(data) ~= "number" then
      error("write: data must be a string", 2)
    end
    data = tostring(data)
  end
  if self.readable then
    error("write: this stream is the child's output; write to child.stdin", 2)
  end
  if self.closed or self.closing then
    return nil, "EPIPE: the stream is closed"
  end
  return self.handle:write(data)
end


-- For stdin: sends what was written, then end of file. For an output: stops reading.
function stream_mt:close()
  if self.closed or self.closing then
    return
  end
  self.closing = true
  self.handle:close()
end


function stream_mt:pause()
  if not self.closed and not self.closing then
    self.handle:pause()
  end
end


function stream_mt:resume()
  if not self.closed and not self.closing and not self.ended then
    self.handle:resume()
  end
end


-- ---- children ----

-- true while a process of the group pgid lives (ESRCH: none left)
local function group_alive(pgid)
  return core.kill(-pgid, 0) ~= nil
end


-- stops following the group pgid; SIGKILL to what is left of it first when kill is set and
-- some of it is left (once the group is empty and its leader reaped, the id may be reused:
-- checking first narrows that window to the gap between the two calls)
local function group_end(pgid, kill)
  local g = groups[pgid]
  if not g then
    return
  end
  groups[pgid] = nil
  if g.timer then
    g.timer:close()
  end
  if kill and group_alive(pgid) then
    core.kill(-pgid, "SIGKILL")
  end
end


local function groups_empty()
  for pgid in pairs(groups) do
    if group_alive(pgid) then
      return false
    end
    group_end(pgid)
  end
  return true
end


local function run_kill_waiters()
  if next(live) ~= nil or #kill_waiters == 0 or not groups_empty() then
    return
  end
  if kill_timer then
    kill_timer:close()
    kill_timer = nil
  end
  if stop_poll then
    stop_poll:close()
    stop_poll = nil
  end
  local waiters = kill_waiters
  kill_waiters = {}
  for i = 1, #waiters do
    waiters[i]()
  end
end


local function maybe_close(child)
  if child._close_emitted or not child._exit_emitted or child._open_streams > 0 then
    return
  end
  child._close_emitted = true
  if child._on_close then
    child._on_close(child.exit_code, child.signal_code)
  end
  child:emit("close", child.exit_code, child.signal_code)
end


local function emit_exit(child)
  if child._exit_emitted then
    return
  end
  child._exit_emitted = true
  if child._grace then
    child._grace:close()
    child._grace = nil
  end
  if child.stdin then
    child.stdin:close() -- nobody reads it any more (Node does the same)
  end
  child:emit("exit", child.exit_code, child.signal_code)
  maybe_close(child)
  live[child] = nil -- gone once its exit handlers have run: a stop waits for that
  run_kill_waiters()
end


local function on_process_exit(child, code, signal)
  if child._exited then
    return
  end
  child._exited = true
  child.exit_code, child.signal_code = code, signal
  if child._ch and not child._disconnected then
    -- the channel may still hold the child's last messages: read them, but not forever
    child._grace = core.timer_new(function()
      child._ch:close()
    end)
    child._grace:start(EXIT_GRACE_MS, 0)
  else
    emit_exit(child)
  end
end


local function new_child(detached)
  return setmetatable({ detached = detached == true, killed = false, connected = false,
    _open_streams = 0, _exited = false }, child_mt)
end


-- Starts file with args; stdio is a list of three "pipe"|"inherit"|"ignore" and an optional
-- 4th entry (a core ipc handle). -> child | nil, err, ename
local function start(child, file, args, opts, stdio, env, what)
  local entries, streams = {}, {}
  for i = 1, #stdio do
    local s = stdio[i]
    if s == "pipe" then
      streams[i] = new_stream(i > 1)
      entries[i] = streams[i].handle
    else
      entries[i] = s
    end
  end
  local argv = { unpack(args) }
  local proc, err, ename = core.spawn({
    file = file, args = argv, env = env, cwd = opts.cwd, detached = opts.detached == true, stdio = entries,
    group = child.group,
  }, function(code, signal)
    on_process_exit(child, code, signal)
  end)
  if not proc then
    for _, s in pairs(streams) do
      s.handle:close()
    end
    return nil, what .. " " .. file .. ": " .. tostring(err), ename
  end
  child._proc = proc
  child.pid = proc:pid()
  if streams[1] and opts.send_timeout then
    streams[1].handle:set_send_timeout(opts.send_timeout)
  end
  child.spawnfile, child.spawnargs = file, args
  child.stdin, child.stdout, child.stderr = streams[1], streams[2], streams[3]
  for _, s in pairs(streams) do
    child._open_streams = child._open_streams + 1
    s._on_close = function()
      child._open_streams = child._open_streams - 1
      maybe_close(child)
    end
  end
  if not child.detached then
    live[child] = true
  end
  return child
end


-- child:kill([signal]) -> true | nil, err   (default "SIGTERM")
function child_mt:kill(signal)
  signal = check_signal(signal or "SIGTERM", "kill", 2)
  if self._exited or not self._proc then
    return nil, "ESRCH: the child has exited"
  end
  local ok, err = self._proc:kill(signal)
  if not ok then
    return nil, err
  end
  self.killed = true
  return true
end


-- Lets this process end while the child still runs (detached children, mostly).
function child_mt:unref()
  if self._proc and not self._exited then
    self._proc:unref()
  end
  if self._ch and not self._ch:is_closed() then
    self._ch.handle:ref(false)
  end
end


function spawn(file, args, opts)
  if type(file) ~= "string" or file == "" then
    error("spawn: file must be a non-empty string", 2)
  end
  if opts == nil and type(args) == "table" and args[1] == nil and next(args) ~= nil then
    args, opts = nil, args -- spawn(file, opts)
  end
  args = check_args(args, "spawn")
  opts = check_opts(opts, { cwd = "string", env = "table", stdio = true, detached = "boolean",
    send_timeout = "number" }, "spawn")
  if opts.send_timeout and not (opts.send_timeout >= 0) then
    error("spawn: send_timeout must be a number of milliseconds >= 0", 2)
  end
  local stdio = stdio_list(opts.stdio, "pipe", "spawn")
  local child = new_child(opts.detached)
  return start(child, file, args, opts, stdio, env_list(opts.env), "spawn")
end


-- ---- exec and exec_file ----

local function exec_error(code, signal, message, extra)
  local err = { code = code, signal = signal, message = message }
  for k, v in pairs(extra or {}) do
    err[k] = v
  end
  return setmetatable(err, { __tostring = function(e) return e.message end })
end


local function describe_exit(code, signal)
  if signal then
    return "killed by " .. signal
  end
  return "exit code " .. tostring(code)
end


-- Runs file with args and collects its output; done(err, stdout, stderr) is called once.
local function run_collect(file, args, opts, text, what, done)
  local max_buffer = opts.max_buffer or DEFAULT_MAX_BUFFER
  local kill_signal = opts.kill_signal or "SIGTERM"
  local kill_grace = opts.kill_grace or DEFAULT_KILL_GRACE
  local out, errout = { n = 0 }, { n = 0 }
  local finished, timer = false, nil
  local child = new_child(false)
  child.group = true -- the command leads its own process group: kills reach its children too

  local function finish(err)
    if finished then
      return
    end
    finished = true
    if timer then
      timer:close()
    end
    done(err, concat(out), concat(errout))
  end

  -- timeout or max_buffer: kill the command's whole process group, stop reading, answer now
  -- (a grandchild may hold the pipes)
  local function abort(reason, message)
    local code, signal = nil, kill_signal
    if child._exited then
      code, signal = child.exit_code, child.signal_code
    else
      child:kill(kill_signal)
    end
    if child._exited and child.pid then
      -- the group outlives its leader while a member lives (a shell's `cmd &` after it exited);
      -- its id cannot be reused meanwhile, and ESRCH just says nothing is left
      core.kill(-child.pid, kill_signal)
    end
    -- what is left of the group after kill_grace gets SIGKILL (`trap '' TERM` ignores the first)
    local pgid, g = child.pid, groups[child.pid]
    if g and not g.killed then
      g.killed = true
      g.timer = core.timer_new(function()
        group_end(pgid, true)
        run_kill_waiters()
      end)
      g.timer:start(kill_grace, 0)
    end
    child.stdout:close()
    child.stderr:close()
    finish(exec_error(code, signal, message, { killed = not child._exited, reason = reason }))
  end

  local function collector(buf, name)
    return function(data)
      if finished then
        return
      end
      local room = max_buffer - buf.n
      if #data > room then
        buf[#buf + 1] = data:sub(1, room)
        buf.n = max_buffer
        abort("max_buffer", string.format("max_buffer exceeded: %s passed %d bytes; killed with %s: %s",
          name, max_buffer, tostring(kill_signal), text))
        return
      end
      buf[#buf + 1] = data
      buf.n = buf.n + #data
    end
  end

  local stdio = { opts.input and "pipe" or "ignore", "pipe", "pipe" }
  local ok, err, ename = start(child, file, args, opts, stdio, env_list(opts.env), what)
  if not ok then
    finish(exec_error(ename or "ESPAWN", nil, err))
    return nil
  end
  groups[child.pid] = { killed = false, child = child }
  child.stdout._sink = collector(out, "stdout")
  child.stderr._sink = collector(errout, "stderr")
  child._on_close = function(code, signal)
    -- the command ended on its own: its group is no longer followed (what it left running,
    -- `daemon &` with its output elsewhere, is its own); a killed group waits for kill_grace
    local g = groups[child.pid]
    if g and not g.killed then
      group_end(child.pid)
    end
    if code == 0 and signal == nil then
      finish(nil)
    else
      finish(exec_error(code, signal, "command failed (" .. describe_exit(code, signal) .. "): " .. text))
    end
  end
  if opts.input then
    child.stdin:write(opts.input)
    child.stdin:close()
  end
  if opts.timeout and opts.timeout > 0 then
    timer = core.timer_new(function()
      abort("timeout", string.format("timeout: killed with %s after %d ms: %s", tostring(kill_signal), opts.timeout, text))
    end)
    timer:start(opts.timeout, 0)
  end
  return child
end


local EXEC_OPTS = {
  cwd = "string", env = "table", timeout = "number", max_buffer = "number", kill_signal = true,
  input = "string", kill_grace = "number",
}


local function check_exec_opts(opts, what)
  opts = check_opts(opts, EXEC_OPTS, what, 3)
  if opts.timeout and (opts.timeout < 0 or opts.timeout ~= opts.timeout) then
    error(what .. ": timeout must be a number of milliseconds >= 0", 3)
  end
  if opts.max_buffer and not (opts.max_buffer >= 0) then
    error(what .. ": max_buffer must be a number of bytes >= 0", 3)
  end
  if opts.kill_grace and not (opts.kill_grace >= 0) then
    error(what .. ": kill_grace must be a number of milliseconds >= 0", 3)
  end
  if opts.kill_signal ~= nil then
    check_signal(opts.kill_signal, what, 3)
  end
  return opts
end


-- The callback form calls cb(err, stdout, stderr) in a coroutine of its own and returns the
-- child; the waiting form returns stdout, stderr | nil, err, stdout, stderr.
local function collect(file, args, opts, cb, text, what)
  if cb then
    local returned = false
    local child = run_collect(file, args, opts, text, what, function(...)
      if returned then
        coro.spawn(cb, ...)
        return
      end
      -- it could not start: answer on the next loop turn, never before exec returns
      local r = { n = select("#", ...), ... }
      timer0.next_turn(function()
        coro.spawn(cb, unpack(r, 1, r.n))
      end)
    end)
    returned = true
    return child
  end
  local w = coro.waiter(what)
  run_collect(file, args, opts, text, what, function(...)
    w:wake(...)
  end)
  local err, out, errout = w:wait()
  if err then
    return nil, err, out, errout
  end
  return out, errout
end


-- exec(command [, opts] [, cb])
function exec(command, opts, cb)
  if type(command) ~= "string" then
    error("exec: command must be a string", 2)
  end
  if type(opts) == "function" and cb == nil then
    opts, cb = nil, opts
  end
  if cb ~= nil and type(cb) ~= "function" then
    error("exec: callback must be a function", 2)
  end
  if cb == nil then
    coro.current("child_process.exec") -- raises at top level, naming the caller's line
  end
  opts = check_exec_opts(opts, "exec")
  return collect("/bin/sh", { "-c", command }, opts, cb, command, "exec")
end


local function is_args(t)
  if type(t) ~= "table" then
    return false
  end
  for k in pairs(t) do
    if type(k) ~= "number" then
      return false
    end
  end
  return true
end


-- exec_file(file [, args] [, opts] [, cb])
function exec_file(file, args, opts, cb)
  if type(file) ~= "string" or file == "" then
    error("exec_file: file must be a non-empty string", 2)
  end
  if type(args) == "function" then
    args, opts, cb = nil, nil, args
  elseif type(opts) == "function" then
    opts, cb = nil, opts
  end
  if args ~= nil and not is_args(args) and opts == nil then
    args, opts = nil, args -- exec_file(file, opts [, cb])
  end
  if cb ~= nil and type(cb) ~= "function" then
    error("exec_file: callback must be a function", 2)
  end
  if cb == nil then
    coro.current("child_process.exec_file")
  end
  args = check_args(args, "exec_file")
  opts = check_exec_opts(opts, "exec_file")
  local text = file
  if #args > 0 then
    text = file .. " " .. concat(args, " ")
  end
  return collect(file, args, opts, cb, text, "exec_file")
end


-- ---- fork: a luacluster child with a channel ----

local function file_exists(path)
  return core.realpath(path)
end


-- A relative script is looked for from the current folder, then from the app's folder.
local function resolve_script(script)
  if script:sub(1, 1) == "/" then
    return file_exists(script)
  end
  local cwd = core.cwd()
  local found = cwd and file_exists(cwd .. "/" .. script)
  if not found and runtime.app_dir then
    found = file_exists(runtime.app_dir .. "/" .. script)
  end
  return found
end


local function on_channel_close(child)
  if child._disconnected then
    return
  end
  child._disconnected = true
  child.connected = false
  child:emit("disconnect")
  if child._exited then
    emit_exit(child)
  end
end


local function fork_channel(child)
  return channel.new({
    message = function(msg, handle)
      if not child:emit("message", msg, handle) and handle then
        handle:close()
      end
    end,
    control = function(_, handle)
      if handle then
        handle:close()
      end
    end,
    request = emitter.request_handler(child, "the parent has no child:on(\"request\") handler"),
    error = function(err)
      if not child:emit("error", err) then
        log.error("forked child " .. tostring(child.pid) .. ": " .. tostring(err))
      end
    end,
    close = function()
      on_channel_close(child)
    end,
  })
end


-- fork(script [, args] [, opts]) -> child | nil, err
function fork(script, args, opts)
  if type(script) ~= "string" or script == "" then
    error("fork: script must be a non-empty string", 2)
  end
  if opts == nil and args ~= nil and not is_args(args) then
    args, opts = nil, args
  end
  args = check_args(args, "fork")
  opts = check_opts(opts, { cwd = "string", env = "table", stdio = true, detached = "boolean" }, "fork")
  local path = resolve_script(script)
  if not path then
    return nil, "fork " .. script .. ": ENOENT: no such file", "ENOENT"
  end
  local stdio = stdio_list(opts.stdio, "inherit", "fork")
  local child = new_child(opts.detached)
  local ch, on_frame = fork_channel(child)
  ch.handle = core.ipc_new(on_frame)
  stdio[4] = ch.handle
  local argv = { path }
  for i = 1, #args do
    argv[#argv + 1] = args[i]
  end
  local env = env_list(opts.env, {
    LUACLUSTER_ROLE = "child",
    LUACLUSTER_IPC_FD = "3",
    LUACLUSTER_PORT = tostring(runtime.options and runtime.options.port or 8080),
    LUACLUSTER_DETACHED = opts.detached and "1" or nil,
  })
  local ok, err, ename = start(child, runtime.exe, argv, opts, stdio, env, "fork")
  if not ok then
    ch.handle:close()
    return nil, err, ename
  end
  child.connected = true
  child._ch = ch
  child.spawnargs = argv
  return child
end


-- child:send(msg [, handle]) -> true | nil, err. A handle's ownership moves to the child.
function child_mt:send(msg, handle)
  if not self._ch then
    error("send: this child was not started with fork", 2)
  end
  if self._ch:is_closed() then
    return nil, "the channel to the child is closed"
  end
  local ok, err = self._ch:send(msg, handle)
  if ok and handle then
    handle:close()
  end
  return ok, err
end


-- child:request(msg [, timeout_ms] [, cb]) -> reply | nil, err, answered by the child's
-- process.on("request", fn(msg) -> reply)
function child_mt:request(msg, timeout_ms, cb)
  if not self._ch then
    error("request: this child was not started with fork", 2)
  end
  if self._ch:is_closed() then
    return nil, "the channel to the child is closed"
  end
  return self._ch:request(msg, timeout_ms, cb)
end


-- Closes the channel: the child's "disconnect" fires; it exits once it has nothing left to do.
function child_mt:disconnect()
  local ch = self._ch
  if not ch or ch:is_closed() then
    return
  end
  ch:control({ op = "disconnect" })
  ch:close()
end


-- ---- ending every child (a cluster stop) ----

-- Sends SIGTERM to every live child that is not detached (to the whole group of an exec'd
-- one) and calls done() once they are all gone and every followed group is empty; what is
-- alive after KILL_GRACE_MS gets SIGKILL. A group exec already killed (it had its kill_signal)
-- gets SIGKILL at once: a stop does not wait for a command that ignores SIGTERM twice.
function _kill_all(done)
  if done ~= nil then
    kill_waiters[#kill_waiters + 1] = done
  end
  for pgid, g in pairs(groups) do
    if g.killed then
      group_end(pgid, true)
    elseif not g.term_sent and g.child._exited then
      g.term_sent = true -- the leader has exited; a member still holds its pipes
      core.kill(-pgid, "SIGTERM")
    end
  end
  for child in pairs(live) do
    if not child._term_sent then
      child._term_sent = true
      child:kill("SIGTERM")
    end
  end
  if next(live) == nil and groups_empty() then
    run_kill_waiters()
    return
  end
  if not kill_timer then
    kill_timer = core.timer_new(function()
      _kill_all_now()
      run_kill_waiters()
    end)
    kill_timer:start(KILL_GRACE_MS, 0)
  end
  if not stop_poll and next(groups) ~= nil then
    -- a group's members are not this process's children: no exit event says they are gone
    stop_poll = core.timer_new(run_kill_waiters)
    stop_poll:start(STOP_POLL_MS, STOP_POLL_MS)
  end
end


-- SIGKILL to every live child that is not detached and to every followed group, now (a stop
-- that cannot wait, or the end of a stop's grace).
function _kill_all_now()
  for child in pairs(live) do
    child:kill("SIGKILL")
  end
  for pgid in pairs(groups) do
    group_end(pgid, true)
  end
end


function _live_count()
  local n = 0
  for _ in pairs(live) do
    n = n + 1
  end
  return n
end


runtime.set_children_ender(_kill_all, _kill_all_now, _live_count) -- a stop ends them (master, worker, forked child)

return {
  spawn = spawn,
  exec = exec,
  exec_file = exec_file,
  fork = fork,
}
