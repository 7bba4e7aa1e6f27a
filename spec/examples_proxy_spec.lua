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
    assert(H.wait_listening(port, 10000), app:output())
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

  it("passes the upstream's headers back, but not the hop-by-hop ones; a HEAD keeps its Content-Length", function()
    local head = H.sh("curl -s -m 5 -D - -o /dev/null http://127.0.0.1:" .. port .. "/moved")
    assert.matches("^HTTP/1.1 302", head)
    assert.matches("\r\n[Ll]ocation: http://example.test/cl\r\n", head)
    assert.matches("\r\n[Xx]%-[Uu]pstream: yes\r\n", head)
    local n = select(2, head:lower():gsub("\r\nconnection:", ""))
    assert.is_true(n <= 1, head)   -- the runtime's own, never a second one from upstream
    head = H.sh("curl -s -m 5 -I http://127.0.0.1:" .. port .. "/cl")
    assert.matches("\r\n[Cc]ontent%-[Ll]ength: 5\r\n", head)
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
