-- Shared by the outbound socket specs (net_connect_spec, net_read_spec, net_pool_spec): a
-- scripted TCP server (a luacluster app of its own, a real process) and a client app whose
-- checks print "ok NAME" or "FAIL NAME detail", then "done".
local ffi = require("ffi")
local H = require("helper")

local N = {}

-- The scripted server: each line it receives is a command, its argument %XX-escaped.
--   echo X          writes X
--   later MS X      writes X after MS ms (other commands go on meanwhile)
--   drip X          writes X one byte every 5 ms
--   id              writes this connection's number (1, 2, ... in accept order) and "\n"
--   close           closes the connection; closelater MS closes it after MS ms
--   hold            reads nothing more (the client's writes fill the buffers)
N.server_src = [[
local net = require("luacluster.net")
cluster.setup({ workers = 0 })
local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end
local count = 0
local server = net.create_server(function(sock)
  count = count + 1
  local id = count
  sock:nodelay(true) -- drip's bytes leave one by one, not gathered by Nagle's algorithm
  local buf = ""
  while true do
    local d = sock:read()
    if not d then return end
    buf = buf .. d
    while true do
      local line, rest = buf:match("^([^\n]*)\n(.*)$")
      if not line then break end
      buf = rest
      local cmd, arg = line:match("^(%S+) ?(.*)$")
      if cmd == "echo" then
        sock:write(unescape(arg))
      elseif cmd == "later" then
        local ms, x = arg:match("^(%d+) ?(.*)$")
        timer.after(tonumber(ms), function() sock:write(unescape(x)) end)
      elseif cmd == "drip" then
        local x = unescape(arg)
        for i = 1, #x do
          timer.sleep(5)
          sock:write(x:sub(i, i))
        end
      elseif cmd == "id" then
        sock:write(id .. "\n")
      elseif cmd == "close" then
        sock:close()
        return
      elseif cmd == "closelater" then
        timer.after(tonumber(arg), function() sock:close() end)
      elseif cmd == "hold" then
        timer.sleep(1e9)
      end
    end
  end
end)
server:on("listening", function() say("server listening") end)
server:listen(tonumber(os.getenv("SERVER_PORT")), os.getenv("SERVER_HOST"))
]]


-- starts the scripted server on port (host: 127.0.0.1 unless given); returns its process
function N.server(port, host)
  local p = H.start_app(N.server_src, { "-p", port }, { env = { SERVER_PORT = port, SERVER_HOST = host or "127.0.0.1" } })
  assert(p:wait_output("server listening", 10000, true), "the scripted server did not start:\n" .. p:output())
  return p
end


-- The client's lines before its body: net, core, esc(s) (for the server's commands),
-- check(name, cond, ...), server_id(s) and a body run in a timer's coroutine, then "done".
N.client_head = [[
local net = require("luacluster.net")
local core = require("luacluster.core")
cluster.setup({ workers = 0 })
local function esc(s)
  return (s:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end))
end
local function check(name, cond, ...)
  local t = {}
  for i = 1, select("#", ...) do t[i] = ("%q"):format(tostring((select(i, ...)))) end
  say((cond and "ok " or "FAIL ") .. name .. " " .. table.concat(t, " "))
end
local function env_port(name) return tonumber(os.getenv(name)) end
-- the scripted server's number for the connection of s (its "id" command)
local function server_id(s)
  assert(s:write("id\n"))
  return s:read_line()
end
timer.after(0, function()
]]
N.client_tail = [[
  say("done")
end)
]]


-- runs body in a client app with env (ports...); returns the process once it said "done"
-- (or failed to, then its output is in the assertion)
function N.client(body, env, opts)
  opts = opts or {}
  local src = N.client_head .. body .. N.client_tail
  local p
  if opts.spawn then
    p = opts.spawn(src, env)
  else
    p = H.start_app(src, { "-p", H.free_port() }, { env = env })
  end
  assert(p:wait_output("\ndone\n", opts.timeout or 30000, true) or p:output():match("^done\n"),
    "the client did not finish:\n" .. p:output())
  return p
end


-- a struct lc_sockaddr_in (declared by helper.lua) for 127.0.0.1:port
function N.sockaddr(port)
  local sa = ffi.new("struct lc_sockaddr_in")
  sa.family = 2
  sa.port = bit.bor(bit.lshift(bit.band(port, 0xff), 8), bit.rshift(port, 8))
  sa.addr = 0x0100007f
  return sa
end


-- a socket listening on 127.0.0.1:port with backlog, from which nothing is ever accepted (the
-- kernel completes connects while its queue has room; none is answered) -> its fd, to close
function N.listener(port, backlog)
  local sa = N.sockaddr(port)
  local fd = ffi.C.socket(2, 1, 0)
  assert(ffi.C.bind(fd, sa, ffi.sizeof(sa)) == 0 and ffi.C.listen(fd, backlog) == 0, "listen failed")
  return fd
end


-- asserts that p printed "ok NAME" for each name, and no FAIL line
function N.assert_checks(p, names)
  local out = p:output()
  local fail = out:match("FAIL [^\n]*")
  assert(fail == nil, fail and (fail .. "\n" .. out))
  for _, name in ipairs(names) do
    assert(out:find("\nok " .. name .. " ", 1, true) or out:find("^ok " .. name .. " "),
      "no check " .. name .. ":\n" .. out)
  end
end


-- starts the scripted server on a free port, runs body in a client app (the port in env PORT)
-- and asserts its checks names; returns the client's process
function N.run(body, names)
  local port = H.free_port()
  N.server(port)
  local p = N.client(body, { PORT = port })
  N.assert_checks(p, names)
  return p
end


return N
