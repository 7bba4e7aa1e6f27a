-- examples/proxy/app.lua with the real binary in front of Debian's nginx: bodies of every
-- framing come through, the upstream's connections are pooled (nginx's $connection stays the
-- same across requests), and an upstream that is down is a 502 saying why.
local H = require("helper")
local U = require("http_client_util")

;(U.have_nginx() and describe or pending)("examples/proxy", function()
  local nginx, app, port

  setup(function()
    nginx = U.nginx()
    port = H.free_port()
    app = H.start(H.root .. "/examples/proxy/app.lua", { "-w", "1", "-p", port },
      { dir = H.tmpdir(), env = { UPSTREAM = "http://127.0.0.1:" .. nginx.port } })
    assert(H.wait_for(function()
      local s = H.connect(port)
      if s then
        s:close()
        return true
      end
    end, 10000), app:output())
  end)

  teardown(function()
    if app then app:stop() end
    if nginx then nginx:stop() end
  end)

  local function get(path, extra)
    return H.curl("http://127.0.0.1:" .. port .. path, extra)
  end

  it("answers with the upstream's status and body", function()
    assert.same({ "hello", 200 }, { get("/cl") })
    assert.same({ "one,two,three", 200 }, { get("/chunked") })
    assert.same({ "", 204 }, { get("/204") })
    assert.same({ "POST - a=1", 200 }, { get("/echo", "-d a=1") })
    assert.same({ "nothing here", 404 }, { get("/nothing-here") })
  end)

  it("keeps its connection to the upstream", function()
    local a = get("/conn")
    local b = get("/conn")
    assert.matches("^%d+$", a)
    assert.equal(a, b)
  end)

  it("answers 502 with the reason when the upstream is down", function()
    nginx:stop()
    local body, status = get("/cl")
    assert.equal(502, status)
    assert.matches("^bad gateway: ", body)
  end)
end)
