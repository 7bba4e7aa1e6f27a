-- What a newcomer to HTTPS (issue 18) hit by following README alone: a passphrase-protected key
-- (as nginx users keep them) that prompted on the terminal and hung the start, or was called
-- "not a PEM private key"; and SNI lists that were accepted but could never serve an entry (a
-- second entry without server_name, a name given twice, a wildcard where matching is exact).
-- Real luacluster processes; keys and certificates made by `openssl` (spec/tls_util.lua).
local H = require("helper")
local T = require("tls_util")

local q = T.q

-- an HTTPS app on PORT whose opts.tls is the Lua expression TLS (with D the certificates' folder)
local APP = [[
local http = require("luacluster.http")
local D = os.getenv("CERTS")
if cluster.is_worker then
  local tls = assert(loadstring("local D = ...; return " .. os.getenv("TLS")))(D)
  http.create_server(function(req) return 200, "ok " .. tostring(req.tls.server_name) .. "\n" end,
    { tls = tls }):listen(tonumber(os.getenv("PORT")))
end
]]

describe("newcomer: HTTPS mistakes", function()
  local dir
  setup(function()
    dir = T.certs()
    -- localhost's key under a passphrase, as `openssl genpkey -aes256` or a CA's bundle gives it
    T.sh_ok(T.OPENSSL .. " pkey -in " .. dir .. "/localhost.key -aes256 -passout pass:secret -out " .. dir .. "/enc.key")
  end)
  teardown(H.cleanup)

  -- starts the app with tls (a Lua expression); -> exit code, output (the start must end)
  local function boot(tls)
    local port = H.free_port()
    local p = H.start_app(APP, { "-w", "1" }, { env = { CERTS = dir, TLS = tls, PORT = tostring(port) } })
    local code = p:wait(10000)
    if code == nil then
      local out = p:output()
      p:stop()
      error("the start did not end:\n" .. out)
    end
    return code, p:output()
  end

  it("an encrypted key is refused at once, saying so, without asking a terminal for a passphrase", function()
    local code, out = boot('{ cert = D .. "/localhost.pem", key = D .. "/enc.key" }')
    assert.equal(1, code, out)
    assert.matches("tls: cannot load " .. (dir .. "/enc.key"):gsub("%p", "%%%0") .. ": the key is encrypted", out)
    -- with a terminal (a master started by hand): OpenSSL's default was to prompt on it and wait
    local adir = H.app({ ["app.lua"] = H.prelude .. APP })
    local cmd = "CERTS=" .. q(dir) .. " PORT=" .. H.free_port() .. " TLS=" .. q('{ cert = D .. "/localhost.pem", key = D .. "/enc.key" }') ..
      " " .. H.bin .. " -w 1 --control " .. adir .. "/control.sock " .. adir .. "/app.lua"
    out, code = H.sh("timeout 10 script -qec " .. q(cmd) .. " /dev/null </dev/null 2>&1")
    assert.not_matches("pass phrase", out)
    assert.matches("the key is encrypted", out)
    assert.equal(1, code, out)
  end)

  it("a list entry after the first without server_name, a name twice, or a wildcard raises at create_server", function()
    local code, out = boot('{ { cert = D .. "/localhost.pem", key = D .. "/localhost.key" }, ' ..
      '{ cert = D .. "/sni.test.pem", key = D .. "/sni.test.key" } }')
    assert.equal(1, code, out)
    assert.matches("app.lua:%d+: http.create_server: tls%[2%].server_name is needed", out)
    code, out = boot('{ { cert = D .. "/localhost.pem", key = D .. "/localhost.key" }, ' ..
      '{ server_name = "sni.test", cert = D .. "/sni.test.pem", key = D .. "/sni.test.key" }, ' ..
      '{ server_name = "SNI.test", cert = D .. "/localhost.pem", key = D .. "/localhost.key" } }')
    assert.equal(1, code, out)
    assert.matches("http.create_server: tls%[3%].server_name 'sni.test' is also tls%[2%]'s", out)
    code, out = boot('{ { cert = D .. "/localhost.pem", key = D .. "/localhost.key" }, ' ..
      '{ server_name = "*.test", cert = D .. "/sni.test.pem", key = D .. "/sni.test.key" } }')
    assert.equal(1, code, out)
    assert.matches("http.create_server: tls%[2%].server_name '%*.test': names match exactly", out)
  end)

  it("the first entry may have a name or not; the list still serves each name its certificate", function()
    local port = H.free_port()
    local p = H.start_app(APP, { "-w", "1" }, { env = { CERTS = dir, PORT = tostring(port), TLS =
      '{ { server_name = "localhost", cert = D .. "/localhost.pem", key = D .. "/localhost.key" }, ' ..
      '{ server_name = "sni.test", cert = D .. "/sni.test.pem", key = D .. "/sni.test.key" } }' } })
    assert(H.wait_listening(port, 10000), p:output())
    for name, cn in pairs({ ["sni.test"] = "sni.test", localhost = "localhost", ["other.test"] = "localhost" }) do
      local out = H.sh("timeout 10 " .. T.OPENSSL .. " s_client -connect 127.0.0.1:" .. port .. " -servername " .. name ..
        " </dev/null 2>&1")
      assert.matches("subject=CN = " .. cn:gsub("%p", "%%%0") .. "\n", out)
    end
    p:stop()
  end)
end)
