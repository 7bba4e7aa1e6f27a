-- The control channel: a Unix socket per running app, in a per-user folder with mode 0700
-- (the socket itself 0600), that `luacluster reload|status|stop` talk to. A message on it
-- is a 4-byte little-endian length and a codec-encoded table.
local core = require("luacluster.core")
local codec = require("luacluster.lib.codec")
local coro = require("luacluster.lib.coro")
local hash = require("luacluster.lib.hash")

local runtime_dir, default_path, serve, serve_fd, request

local MAX_MESSAGE = 16 * 1024 * 1024


-- FNV-1a, shared with the ip_hash policy
local function fnv1a(s)
  return bit.tohex(hash.fnv1a(s))
end


-- the per-user folder for control sockets: -> path | nil, err
function runtime_dir()
  local base = os.getenv("XDG_RUNTIME_DIR")
  local dir
  if base and base ~= "" and core.private_dir(base) then
    dir = base .. "/luacluster"
  else
    dir = "/tmp/luacluster-" .. core.getuid()
  end
  local ok, err = core.private_dir(dir)
  if not ok then
    return nil, err
  end
  return dir
end


-- the control socket of an app, from its absolute path
function default_path(app_abs)
  local dir, err = runtime_dir()
  if not dir then
    return nil, err
  end
  local name = (app_abs:match("([^/]+)$") or "app"):gsub("%.lua$", ""):gsub("[^%w_.-]", "_"):sub(1, 40)
  return dir .. "/" .. name .. "-" .. fnv1a(app_abs) .. ".sock"
end


local function encode(msg)
  local bytes = assert(codec.encode(msg))
  local n = #bytes
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216)) .. bytes
end


-- a reader that calls on_msg(msg) for each complete message of a byte stream
local function framer(on_msg, on_error)
  local buf = ""
  return function(data)
    buf = buf .. data
    while #buf >= 4 do
      local a, b, c, d = buf:byte(1, 4)
      local n = a + b * 256 + c * 65536 + d * 16777216
      if n > MAX_MESSAGE then
        return on_error("control message too large")
      end
      if #buf < 4 + n then
        return
      end
      local ok, msg = codec.decode(buf:sub(5, 4 + n))
      buf = buf:sub(5 + n)
      if not ok then
        return on_error(msg)
      end
      on_msg(msg)
    end
  end
end


-- conn:reply(msg) for the handler; handler(msg, conn) per request
local conn_mt = {}
conn_mt.__index = conn_mt

function conn_mt:reply(msg)
  if not self.closed then
    self.stream:write(encode(msg))
  end
end

function conn_mt:close()
  if not self.closed then
    self.closed = true
    self.stream:close()
  end
end


-- the function a control server calls per connection: handler(msg, conn) per request
local function on_connection(handler)
  return function(stream)
    if type(stream) ~= "userdata" then
      return -- the listening socket's own "close" (a bind that failed is closed too)
    end
    local conn = setmetatable({ stream = stream }, conn_mt)
    stream:read_start(function(event, data)
      if event == "data" then
        conn.feed(data)
      elseif event == "end" or event == "error" then
        conn:close()
      elseif event == "close" then
        conn.closed = true
      end
    end)
    conn.feed = framer(function(msg)
      coro.spawn(handler, msg, conn)
    end, function()
      conn:close()
    end)
  end
end


-- Serves a control socket this process inherited (a binary upgrade's new master) -> server | nil, err
function serve_fd(fd, handler)
  return core.pipe_listen_fd(fd, on_connection(handler))
end


-- Serves the control socket at path: -> server | nil, err. Refuses to take over the socket
-- of a master that still answers.
function serve(path, handler, on_ready)
  local function bind()
    -- the socket is 0600 from the start (core.pipe_listen)
    return core.pipe_listen(path, on_connection(handler))
  end
  local srv, err, name = bind()
  if srv or name ~= "EADDRINUSE" then
    on_ready(srv, err)
    return
  end
  -- a socket file is there: a live master answers it; a dead one left it behind
  core.pipe_connect(path, function(stream)
    if stream then
      stream:close()
      on_ready(nil, "another luacluster master is running for this app (control socket " .. path .. ")")
    else
      core.unlink(path)
      on_ready(bind())
    end
  end)
end


-- One request to a running master: -> reply | nil, err (waits). Replies keep coming for
-- some commands (stop): on_extra(msg) gets the later ones.
function request(path, msg, timeout_ms)
  local w = coro.waiter("control.request")
  local stream
  local timer = core.timer_new(function()
    w:wake(nil, "no answer from the master within " .. timeout_ms .. " ms")
  end)
  timer:start(timeout_ms or 60000, 0)
  core.pipe_connect(path, function(s, err)
    if not s then
      w:wake(nil, "cannot reach a running master at " .. path .. " (" .. tostring(err) .. ")")
      return
    end
    stream = s
    local feed = framer(function(reply)
      w:wake(reply)
    end, function(ferr)
      w:wake(nil, ferr)
    end)
    s:read_start(function(event, data)
      if event == "data" then
        feed(data)
      elseif event == "end" or event == "error" then
        w:wake(nil, "the master closed the control connection")
      end
    end)
    s:write(encode(msg))
  end)
  local reply, err = w:wait()
  timer:close()
  return reply, err, stream
end


return {
  runtime_dir = runtime_dir,
  default_path = default_path,
  serve = serve,
  serve_fd = serve_fd,
  request = request,
}
