-- luacluster.ngx against the real thing: Debian's nginx with libnginx-mod-http-lua (and the
-- lua-resty-core it loads) runs spec/ngx_cases.lua in a content_by_lua handler on a free
-- loopback port; the same cases run in-process on luacluster.ngx; every line must be equal.
-- What differs on purpose (Debian's module is on PCRE1, luacluster's ngx.re on PCRE2, as
-- OpenResty 1.25's) stays out of the cases: spec/ngx_pure_spec.lua asserts it.
local H = require("helper")
local cases = require("ngx_cases")
local nginx_lua = require("nginx_lua")

describe("luacluster.ngx against Debian's nginx + lua-nginx-module", function()
  local have = nginx_lua.available()
  local nginx, port, dir

  setup(function()
    if have then
      nginx, port, dir = nginx_lua.start({ "ngx_cases.lua" }, "/cases",
        "for _, line in ipairs(require('ngx_cases').run(ngx)) do ngx.say(line) end")
    end
  end)

  teardown(function()
    if nginx then
      nginx:stop()
    end
    H.cleanup()
  end)

  it("answers every case of spec/ngx_cases.lua as OpenResty does", function()
    assert(have, "this spec needs nginx and libnginx-mod-http-lua (vendor/install-deps.sh)")
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/cases")
    assert.equal(200, status, body .. H.read_file(dir .. "/error.log"))
    local ours = cases.run(require("luacluster.ngx"))
    assert.equal("", nginx_lua.diff(nginx_lua.lines(body), ours))
    assert.is_true(#ours > 100)
  end)
end)
