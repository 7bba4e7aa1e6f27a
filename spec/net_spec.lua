-- Integration specs of runtime/tcp.c through luacluster.net and the listening sockets it owns:
-- a listening socket handed from one kind of server to another by a reload, a net socket's
-- send timeout at close, and accepting under fd exhaustion (EMFILE).
local H = require("helper")

local function ctl(ctl_path, cmd)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. ctl_path)
end

-- writes src as app.lua in a new folder; starts it with -p port and its own control socket
local function start(src, port, extra)
  local dir = H.tmpdir()
  local app = { dir = dir, path = dir .. "/app.lua", ctl = dir .. "/ctl.sock", port = port }
  H.write_file(app.path, H.prelude .. src)
  local argv = { "-p", port, "--control", app.ctl }
  for _, o in ipairs(extra or {}) do
    argv[#argv + 1] = o
  end
  app.p = H.start(app.path, argv)
  return app
end

local function rewrite(app, src)
  H.write_file(app.path .. ".new", H.prelude .. src)
  os.rename(app.path .. ".new", app.path)
end

-- one line from a new connection to port (what a net server says first), or nil
local function hello(port)
  local s = H.connect(port)
  if not s then
    return nil
  end
  local data = s:read_until(function(d) return d:find("\n") end, 3000)
  s:close()
  return data ~= "" and data or nil
end


describe("net", function()
  after_each(function()
    H.cleanup()
  end)

  -- The master's own servers: a reload's new code takes the old code's listening socket over
  -- (listen.lua, listen_here). The new server is another kind: its connections must reach it,
  -- not the C taker of the old HTTP server, which is freed once it has drained.
  for _, kind in ipairs({ "http->net", "net->http" }) do
    it("hands a master's listening socket to a server of another kind on reload (" .. kind .. ")", function()
      local http_src = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 0 })
  http.create_server(function() return 200, "http\n" end):listen()
end
]]
      local net_src = [[
local net = require("luacluster.net")
if cluster.is_master then
  cluster.setup({ workers = 0 })
  net.create_server(function(sock) sock:write("net\n") sock:close() end):listen()
end
]]
      local first, second = http_src, net_src
      if kind == "net->http" then
        first, second = net_src, http_src
      end
      local port = H.free_port()
      local app = start(first, port)
      assert.truthy(H.wait_for(function()
        local s = H.connect(port)
        if s then s:close() end
        return s ~= nil
      end, 8000), app.p:output())
      rewrite(app, second)
      local out, rc = ctl(app.ctl, "reload")
      assert.equal(0, rc, out .. app.p:output())
      local want = second == net_src and "net\n" or "http\n"
      for i = 1, 20 do
        local got
        if second == net_src then
          got = hello(port)
        else
          got = (H.curl("http://127.0.0.1:" .. port .. "/"))
        end
        assert.equal(want, got, "connection " .. i .. " after the reload:\n" .. app.p:output())
      end
      assert.truthy(app.p:alive(), app.p:output())
    end)
  end
end)
