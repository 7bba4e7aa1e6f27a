-- Forked helpers: the master accepts TCP connections itself (a net server started in the
-- master runs its handler there) and hands each socket to one of N helper processes started
-- with child_process.fork, round robin. A helper serves the socket it was given: it answers
-- each line with the line upper-cased and its own id. Ownership of a socket moves with it.
-- Run: build/luacluster examples/fork_helpers/app.lua [helpers]   (port: -p, default 8080)
-- then: printf 'hello\nworld\n' | nc -q1 127.0.0.1 8080
local cluster = require("luacluster.cluster")
local net = require("luacluster.net")
local cp = require("luacluster.child_process")

cluster.setup({ workers = 0 }) -- the master alone: the helpers do the serving

local count = tonumber(arg[1]) or 2
local helpers = {}
local turn = 0


local function start_helper(i)
  local h = assert(cp.fork("helper.lua", { tostring(i) }))
  h:on("message", function(msg)
    print(string.format("helper %d (pid %d): %s", i, h.pid, tostring(msg)))
  end)
  h:on("exit", function(code, signal)
    print(string.format("helper %d exited (%s)", i, signal or ("code " .. tostring(code))))
    helpers[i] = nil
  end)
  helpers[i] = h
end


local function next_helper()
  for _ = 1, count do
    turn = turn % count + 1
    if helpers[turn] then
      return helpers[turn]
    end
  end
end


for i = 1, count do
  start_helper(i)
end

local server = net.create_server(function(sock)
  local h = next_helper()
  local ok, err = false, "no helper is running"
  if h then
    ok, err = h:send({ op = "serve" }, sock) -- the socket now belongs to the helper
  end
  if not ok then
    sock:write("unavailable: " .. tostring(err) .. "\n")
    sock:close()
  end
end)

server:on("listening", function(address)
  print(string.format("listening on %s:%d with %d helpers", address.address, address.port, count))
end)
server:listen()
