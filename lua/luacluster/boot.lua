-- Entry point of every luacluster process (called by runtime/main.c).
-- The master parses the command line and runs the app; a worker or a forked child (started
-- by its parent with LUACLUSTER_ROLE set) runs its script. main() returns an exit code to
-- end at once, or nil to run the event loop; loop_ended() gives the code when it empties.
-- Each process loads only its own role's parts: they are required where the role is known,
-- marked "lazy" (luacluster.cluster also takes its shape from the role when it loads), so an
-- idle worker holds the worker's side and not the master's or the command line's.
local core = require("luacluster.core")
local channel = require("luacluster.lib.channel")
local error_line = require("luacluster.lib.error_line")
local log = require("luacluster.lib.log")
local ops = require("luacluster.master.ops")
local runtime = require("luacluster.lib.runtime")

-- a socket or server a message carries is a net socket or server (net loads at the first one)
channel.set_handle_wrappers(function(h)
  return require("luacluster.net").adopt(h) -- lazy: at the first socket a message carries
end, function(obj)
  return require("luacluster.net").raw(obj) -- lazy: as above
end)

local main, loop_ended


-- through the log writer (queued, written at exit at the latest): a full stderr never blocks;
-- a JSON record once --log-format json is in force
local function stderr(msg)
  error_line.report(tostring(msg))
end


local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end


local function set_paths(app_dir)
  package.path = app_dir .. "/?.lua;" .. app_dir .. "/?/init.lua;" .. package.path
  package.cpath = app_dir .. "/?.so;" .. package.cpath
end


-- The LUACLUSTER_* variables are for this process only: its own children must not see them.
local function take_env(name)
  local v = os.getenv(name)
  core.unsetenv(name)
  return v
end


local function set_argv(script, args)
  local argv = { [0] = script }
  for i = 1, #args do
    argv[i] = args[i]
  end
  runtime.argv = argv
  _G.arg = argv
end


local function traceback(err)
  return debug.traceback(tostring(err), 2)
end


-- Loads the app: nil, message when it does not compile.
local function load_app(path)
  local chunk, err = loadfile(path)
  if not chunk then
    return nil, err
  end
  return chunk
end


local function run_top_level(chunk)
  local ok, err = xpcall(chunk, traceback, unpack(runtime.argv))
  if not ok then
    return nil, err
  end
  return true
end


local function version_line()
  return string.format("luacluster %s (%s, libuv %s)", core.version, jit.version, core.uv_version or "?")
end


local function main_child(role, argv)
  local app = argv[1]
  local args = {}
  for i = 2, #argv do
    args[#args + 1] = argv[i]
  end
  runtime.role = role
  runtime.app = app
  runtime.app_dir = dirname(app)
  runtime.options = {
    port = tonumber(take_env("LUACLUSTER_PORT")) or 8080,
    host = take_env("LUACLUSTER_HOST"),
    mode = take_env("LUACLUSTER_MODE") or "dispatch",
    workers = tonumber(take_env("LUACLUSTER_WORKERS")),
  }
  set_paths(runtime.app_dir)
  set_argv(app, args)
  -- log format and SIGUSR1 (access logs reopen) before anything can log or be signalled
  ops.child_init(role, take_env("LUACLUSTER_LOG_FORMAT"), tonumber(os.getenv("LUACLUSTER_WORKER_ID")))
  -- the shared dictionaries' file, inherited from the master: mapped before the app's first line
  local shd = take_env("LUACLUSTER_SHDICT")
  if shd and role == "worker" then
    local fd, list = shd:match("^(%d+);(.*)$")
    local mapped, serr = core.shdict_attach(tonumber(fd) or -1, list or "")
    if not mapped then
      log.error(serr)
      return 1
    end
  end
  local side = require(role == "worker" and "luacluster.worker.side" or "luacluster.worker.forked_child")
  local ok, err = side.init({
    ipc_fd = tonumber(take_env("LUACLUSTER_IPC_FD")),
    id = tonumber(take_env("LUACLUSTER_WORKER_ID")),
    generation = tonumber(take_env("LUACLUSTER_GENERATION")),
    drain_timeout = tonumber(take_env("LUACLUSTER_DRAIN_TIMEOUT")),
    max_message_size = tonumber(take_env("LUACLUSTER_MAX_MESSAGE_SIZE")),
  })
  take_env("LUACLUSTER_ROLE")
  if not ok then
    log.error(err)
    return 1
  end
  if role == "worker" then
    require("luacluster.worker.plugins").attach(side) -- lazy: a worker's own parts
  end
  local chunk, lerr = load_app(app)
  if not chunk then
    log.error(lerr)
    return 1
  end
  local ran, rerr = run_top_level(chunk)
  if not ran then
    if role == "worker" then -- the master reports it: once, not at every restart
      side.boot_failed(rerr)
    else
      log.error(rerr)
    end
    return 1
  end
  side.after_top_level()
  return nil
end


local function main_master(argv)
  local cli = require("luacluster.cli.args") -- lazy: the command line is the master's
  local o, err = cli.parse(argv)
  if not o then
    stderr(err)
    return 2
  end
  if o.command == "help" then
    io.stdout:write(cli.usage, "\n")
    return 0
  elseif o.command == "version" then
    io.stdout:write(version_line(), "\n")
    return 0
  end
  if o.command ~= "run" and o.command ~= "check" then
    local optional = require("luacluster.lib.optional") -- lazy: a command's module, by its name
    local cmd, lerr = optional.require("luacluster.cmd_" .. o.command:gsub("-", "_"))
    if cmd == false then
      stderr("'" .. o.command .. "' is not available in this build")
      return 2
    elseif not cmd then
      stderr("the '" .. o.command .. "' command does not load: " .. lerr)
      return 1
    end
    return cmd.run(o)
  end
  local abs = core.realpath(o.app)
  if not abs then
    stderr("cannot open " .. o.app .. ": no such file")
    return 1
  end
  local chunk, lerr = load_app(o.app)
  if not chunk then
    stderr(lerr)
    if os.getenv("LUACLUSTER_UPGRADE_FD") then -- an upgrade's new master: the old one hears why
      require("luacluster.master.upgraded").fail_early(tonumber(os.getenv("LUACLUSTER_UPGRADE_FD")), lerr) -- lazy: as below
    end
    return 1
  end
  if o.command == "check" then
    -- every require("literal") must resolve on the paths the app will have (nothing is run)
    set_paths(dirname(abs))
    local problems, notes = require("luacluster.cli.check").check(o.app, dirname(abs)) -- lazy: luacluster check
    for _, note in ipairs(notes) do
      stderr("note: " .. note)
    end
    if #problems > 0 then
      for _, p in ipairs(problems) do
        stderr(p)
      end
      return 1
    end
    io.stdout:write(o.app, ": ok\n")
    return 0
  end
  runtime.role = "master"
  runtime.app = abs
  runtime.app_dir = dirname(abs)
  runtime.options = o
  o.port = o.port or 8080
  o.mode = o.mode or "dispatch"
  set_paths(runtime.app_dir)
  set_argv(o.app, o.args)
  log.set_prefix("[master] ")
  -- the app's print in the master goes through the log writer: a full stdout (a slow
  -- journald, a pipe nobody reads) must not stall the loop that accepts and dispatches
  _G.print = log.print
  -- the log format, and what systemd put in the environment (children must not see it)
  local oerr = ops.master_early(o, take_env("LUACLUSTER_LOG_FORMAT"))
  if oerr then
    stderr(oerr)
    return 2
  end
  -- a binary upgrade's new master: the old master's channel is fd N (master/upgraded.lua)
  local upgrade_fd = tonumber(take_env("LUACLUSTER_UPGRADE_FD"))
  local master = require("luacluster.master.core") -- lazy: the master's parts
  master.init(o, require("luacluster.cluster")) -- lazy: the role is known now (cluster.on's events are the master's)
  local plugins = require("luacluster.master.plugins") -- lazy: the master's parts load luacluster.cluster
  plugins.attach(master) -- what plugs into the master (a worker's pool.map, ...)
  local control = require("luacluster.master.control") -- lazy: as plugins
  -- what was loaded before the app: a reload unloads everything else so new code is read
  runtime.preloaded = {}
  for name in pairs(package.loaded) do
    runtime.preloaded[name] = true
  end
  local upgraded = upgrade_fd and require("luacluster.master.upgraded") -- lazy: only in an upgrade's new master
  local function start_app()
    local ran, rerr = run_top_level(chunk)
    if not ran then
      stderr(error_line.line(rerr)) -- the reason and its file:line, not require's search list
      return 1
    end
    master.after_top_level()
    plugins.attach_after_app(master, o)
    control.start(o)
    if upgraded then
      upgraded.started()
    end
    return nil
  end
  -- the control socket first: a second master for this app stops here, before its top level
  -- and its workers (a socket file already there is probed on the loop, and the app starts then)
  local decided, code, waiting = false, nil, false
  local take = control.take_control
  if upgraded then -- the old master's sockets and state instead (its control socket at the switch)
    take = function(_, on_taken)
      upgraded.receive(upgrade_fd, control.serve_inherited, on_taken)
    end
  end
  take(o, function(ok, cerr)
    if ok then
      code = start_app()
    else
      stderr(cerr)
      code = 1
    end
    decided = true
    if waiting and code then
      runtime.exit(code)
    end
  end)
  if decided then
    return code
  end
  waiting = true
  return nil
end


-- the path this process was started as, made absolute (not resolved through symlinks: a
-- binary upgrade starts what is installed there now)
local function invoked_as(name)
  if not name or name == "" then
    return nil
  end
  if name:sub(1, 1) == "/" then
    return name
  elseif name:find("/", 1, true) then
    local cwd = core.cwd()
    return cwd and (cwd .. "/" .. name:gsub("^%./", "")) or nil
  end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local path = dir .. "/" .. name
    if core.realpath(path) then
      return path:sub(1, 1) == "/" and path or invoked_as(path)
    end
  end
  return nil
end


function main(argv, libdir)
  runtime.libdir = libdir
  runtime.exe = core.exepath()
  runtime.exe_invoked = invoked_as(argv[0])
  runtime.cmdline = {} -- the arguments, as given (a binary upgrade starts the new master with them)
  for i = 1, #argv do
    runtime.cmdline[i] = argv[i]
  end
  local role = os.getenv("LUACLUSTER_ROLE")
  if role == "worker" or role == "child" then
    return main_child(role, argv)
  end
  return main_master(argv)
end


function loop_ended()
  if runtime.control_path then
    os.remove(runtime.control_path)
  end
  return runtime.exit_code
end


return {
  main = main,
  loop_ended = loop_ended,
}
