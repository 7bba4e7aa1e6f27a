-- The command line: luacluster [options] app.lua [script args...] and the subcommands.
-- parse(argv) -> options | nil, message (a one-line error for stderr).
local defaults = require("luacluster.lib.defaults")

local usage, parse

usage = [[
usage: luacluster [options] app.lua [script args...]   run an app: a master plus workers
  -w, --workers N        worker count (default: number of CPUs)
  -m, --mode MODE        dispatch | shared | reuseport | ports   (default dispatch)
  -p, --port N           the port that server:listen() without a port uses (default 8080)
  --host ADDR            the address that server:listen() without a host uses (default 127.0.0.1)
  --watch                reload when a .lua file under the app's folder changes
  --control PATH         the control socket (default: derived from the app's absolute path)
  --log-format FORMAT    text | json: the runtime's log lines on stderr (default text)
luacluster reload  [app.lua | --control PATH]          zero-downtime reload
luacluster upgrade [app.lua | --control PATH] [--binary PATH]
                                                     replace the running binary, no connection lost
luacluster status  [app.lua | --control PATH] [--json] one row per worker
luacluster metrics [app.lua | --control PATH]          Prometheus text exposition
luacluster stop    [app.lua | --control PATH]          graceful stop
luacluster check   app.lua                             load-check only
luacluster nginx-conf app.lua [-w N] [-p N] [--hosts H1,H2[:PORT],...] [--listen ADDR]
                      [--static URL_PREFIX=DIR]...   print an nginx config for ports mode
luacluster --version | --help]]

local COMMANDS = { upgrade = true, reload = true, status = true, stop = true, check = true, ["nginx-conf"] = true, metrics = true }

local takes_value = {
  ["-w"] = "workers", ["--workers"] = "workers",
  ["-m"] = "mode", ["--mode"] = "mode",
  ["-p"] = "port", ["--port"] = "port",
  ["--control"] = "control",
  ["--binary"] = "binary",
  ["--host"] = "host",
  ["--log-format"] = "log_format",
  ["--hosts"] = "hosts", ["--listen"] = "listen", ["--static"] = "static",
}
local flags = { ["--watch"] = "watch", ["--json"] = "json" }


local function check_value(name, value)
  if name == "workers" then
    local n = tonumber(value)
    if not n or n < 0 or n % 1 ~= 0 or n > 4096 then
      return nil, "--workers needs a whole number from 0 to 4096, not '" .. value .. "'"
    end
    return n
  elseif name == "port" then
    local n = tonumber(value)
    if not n or n < 0 or n > 65535 or n % 1 ~= 0 then
      return nil, "--port needs a port number from 0 to 65535, not '" .. value .. "'"
    end
    return n
  elseif name == "log_format" then
    if value ~= "text" and value ~= "json" then
      return nil, "--log-format must be text or json, not '" .. value .. "'"
    end
  elseif name == "mode" then
    if not defaults.is_mode(value) then
      return nil, "--mode must be " .. defaults.MODE_NAMES .. ", not '" .. value .. "'"
    end
  end
  return value
end


-- the message for a command given after an option: it must come first (as the usage says)
local function command_first(argv, at)
  local fixed = { "luacluster", argv[at] }
  for j = 1, #argv do
    if j ~= at then
      fixed[#fixed + 1] = argv[j]
    end
  end
  return "'" .. argv[at] .. "' is a command: it comes first (" .. table.concat(fixed, " ") .. ")"
end


function parse(argv)
  local o = { command = "run", args = {}, static = {} }
  local i = 1
  if COMMANDS[argv[1]] then
    o.command = argv[1]
    i = 2
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      o.command = "help"
      return o
    elseif a == "--version" or a == "-V" then
      o.command = "version"
      return o
    elseif a == "--" then
      i = i + 1
      if o.app == nil and argv[i] then
        o.app = argv[i]
        i = i + 1
      end
      break
    end
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    if takes_value[name] then
      local value = inline
      if value == nil then
        i = i + 1
        value = argv[i]
      end
      if value == nil then
        return nil, name .. " needs a value"
      end
      local key = takes_value[name]
      local v, err = check_value(key, value)
      if v == nil then
        return nil, err
      end
      if key == "static" then
        o.static[#o.static + 1] = v
      else
        o[key] = v
      end
    elseif flags[name] and inline == nil then
      o[flags[name]] = true
    elseif a:sub(1, 1) == "-" and #a > 1 then
      return nil, "unknown option '" .. a .. "' (see luacluster --help)"
    elseif o.app == nil then
      if o.command == "run" and COMMANDS[a] then -- `luacluster --control PATH stop`
        return nil, command_first(argv, i)
      end
      o.app = a
      if o.command == "run" then
        i = i + 1
        break -- the rest belongs to the script
      end
    else
      return nil, "unexpected argument '" .. a .. "' (see luacluster --help)"
    end
    i = i + 1
  end
  for j = i, #argv do
    o.args[#o.args + 1] = argv[j]
  end
  if (o.command == "run" or o.command == "check" or o.command == "nginx-conf") and not o.app then
    return nil, "no app given (see luacluster --help)"
  end
  if o.binary and o.command ~= "upgrade" then
    return nil, "--binary is an option of luacluster upgrade only"
  end
  if o.command ~= "nginx-conf" and (o.hosts or o.listen or #o.static > 0) then
    local opt = o.hosts and "--hosts" or o.listen and "--listen" or "--static"
    return nil, opt .. " is an option of luacluster nginx-conf only"
  end
  return o
end


return {
  usage = usage,
  parse = parse,
}
