-- Out of memory inside the HTTP runtime's libuv callbacks: a Lua call there that raises (the
-- request's strings, the connection's userdata, a registry reference) must be caught and
-- logged, and the request answered by the runtime, not end in LuaJIT's panic (which aborts the
-- worker). The worker's Lua heap is filled under an address-space limit (prlimit, set and
-- lifted by the spec), a request arrives, then the limit is lifted and the same worker serves.
local H = require("helper")
local U = require("http_util")

local AS = require("address_limit")
local vm_size = AS.vm_size

local function set_as_limit(pid, bytes)
  assert(AS.set(pid, bytes), "prlimit failed")
end

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  local ffi = require("ffi")
  ffi.cdef("void *malloc(size_t); void free(void *);")
  local new_tab = require("table.new")
  local ballast, n = nil, 0
  local function fill(size) n = n + 1 ballast[n] = string.rep("x", size) .. n end
  local sizes = { 1048576, 65536, 4096, 512, 64, 8, 1 }
  local out, FILLED = io.stdout, "filled\n"
  http.create_server(function(req, res)
    if req.path == "/fill" then
      -- room in the C heap for the runtime's own small mallocs (a connection, its read buffer):
      -- freed chunks below a pinned one stay in glibc's bins, out of the limit's reach
      local ps = {}
      for i = 1, 64 do ps[i] = ffi.C.malloc(32768) end
      ffi.C.malloc(64)
      for i = 1, 64 do ffi.C.free(ps[i]) end
      ballast = new_tab(400000, 0)
      collectgarbage("collect")
      collectgarbage("stop")
      for i = 1, #sizes do
        while pcall(fill, sizes[i]) do end
      end
      out:write(FILLED)
      out:flush()
      return -- no answer: allocating one would fail
    elseif req.path == "/release" then
      ballast = nil
      collectgarbage("restart")
      collectgarbage("collect")
      return 200, "released " .. n
    end
    return 200, tostring(process.pid)
  end):listen()
  say("ready", process.pid)
end
]]


describe("http out of memory in a libuv callback", function()
  local p, port

  lazy_setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", 1, "-p", port })
    assert(p:wait_output("ready %d+", 5000), p:output())
  end)

  lazy_teardown(function()
    if p then p:stop() end
    H.cleanup()
  end)

  -- ASan's allocator and shadow memory cannot live under an address-space limit: the
  -- sanitized run (spec/run_sanitized) skips this one
  local it_ = os.getenv("ASAN_OPTIONS") and pending or it

  it_("logs the error, answers 500 and keeps the worker", function()
    local wpid = tonumber(p:stdout():match("ready (%d+)"))
    local first = H.wait_for(function() return U.once(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") end, 5000)
    assert.equal(tostring(wpid), first and first.body, p:output())
    local a = assert(H.connect(port))
    set_as_limit(wpid, vm_size(wpid) + 48 * 1048576)
    a:send("GET /fill HTTP/1.1\r\nHost: a\r\n\r\n")
    local filled = p:wait_output("filled", 20000)
    local r, data, how
    if filled then
      r, data, how = U.once(port, "GET /victim-of-the-full-heap HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 3000)
    end
    set_as_limit(wpid, nil)
    a:close()
    assert(filled, p:output())
    assert.is_truthy(r, "no answer while the heap was full: " .. tostring(how) .. " " .. ("%q"):format(data or "") .. "\n" .. p:output())
    assert.equal(500, r.status)
    assert.equal("text/plain", r.headers["content-type"])
    -- the log line goes through the log writer's thread: it may come just after the answer
    assert(p:wait_output("error: http: a request: not enough memory", 5000, true), p:output())
    local rel = U.once(port, "GET /release HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 5000)
    assert.equal(200, rel and rel.status, p:output())
    assert.equal(tostring(wpid), U.once(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").body)
    assert.equal(0, p:count("worker %d+ %(pid %d+%) exited"), p:output())
  end)
end)
