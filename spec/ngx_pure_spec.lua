-- luacluster.ngx in-process (the functions that need no worker and no waiting): ngx.re's
-- PCRE2 error strings, its `o` cache and its bound, OpenResty's escape sets, base64 and
-- digests, the time cache, and what luacluster.ngx leaves out. What must equal OpenResty's own
-- answers is compared with Debian's nginx in spec/ngx_compat_spec.lua.
local ngx = require("luacluster.ngx")
local re = require("luacluster.ngx.re")
local lru = require("luacluster.lib.lru")
local core = require("luacluster.core")


describe("luacluster.ngx", function()
  it("is the global ngx, and leaves one that is already there alone", function()
    assert.equal(ngx, rawget(_G, "ngx"))
    local saved = package.loaded["luacluster.ngx"]
    local other = {}
    rawset(_G, "ngx", other)
    package.loaded["luacluster.ngx"] = nil
    local fresh = require("luacluster.ngx")
    assert.equal(other, rawget(_G, "ngx"))
    assert.not_equal(other, fresh)
    assert.equal("function", type(fresh.re.match))
    package.loaded["luacluster.ngx"] = saved
    rawset(_G, "ngx", ngx)
  end)

  it("has ngx.null, the NULL light userdata that cjson.null is too", function()
    assert.equal("userdata", type(ngx.null))
    assert.equal(core.null, ngx.null)
    local ok, cjson = pcall(require, "cjson")
    if ok then
      assert.equal(cjson.null, ngx.null)
    end
  end)

  it("says which lua-nginx-module it follows", function()
    assert.equal(10026, ngx.config.ngx_lua_version)
    assert.equal("http", ngx.config.subsystem)
    assert.is_false(ngx.config.debug)
  end)
end)


describe("ngx.re", function()
  it("reports a bad regex with PCRE2's message and where it stopped, as OpenResty on PCRE2", function()
    local m, err = ngx.re.match("abc", "(abc")
    assert.is_nil(m)
    assert.equal('pcre2_compile() failed: missing closing parenthesis in "(abc"', err)
    local from, to, ferr = ngx.re.find("abc", "a)b")
    assert.is_nil(from)
    assert.is_nil(to)
    assert.equal('pcre2_compile() failed: unmatched closing parenthesis in "a)b" at ")b"', ferr)
    local it, gerr = ngx.re.gmatch("abc", "a{2,1}")
    assert.is_nil(it)
    assert.matches('^pcre2_compile%(%) failed: numbers out of order in {} quantifier in "a{2,1}" at "', gerr)
    local s, n, serr = ngx.re.gsub("abc", "[a", "x")
    assert.is_nil(s)
    assert.is_nil(n)
    assert.equal('pcre2_compile() failed: missing terminating ] for character class in "[a"', serr)
  end)

  it("cuts a long compile error at 255 bytes, as lua-resty-core's buffer does", function()
    local pat = "(" .. string.rep("a", 400)
    local _, err = ngx.re.match("a", pat)
    assert.equal(255, #err)
    assert.equal('pcre2_compile() failed: missing closing parenthesis in "(aaaa', err:sub(1, 61))
  end)

  it("raises an unknown option letter at the caller's line", function()
    local ok, err = pcall(function()
      ngx.re.match("a", "a", "iz")
    end)
    assert.is_false(ok)
    assert.matches('ngx_pure_spec.lua:%d+: unknown flag "z" %(flags "iz"%)$', err)
  end)

  it("returns PCRE2's match errors as pcre_exec() failed: N", function()
    local m, err = ngx.re.match("\255", ".", "u")
    assert.is_nil(m)
    assert.matches("^pcre_exec%(%) failed: %-%d+$", err)
    local _, _, ferr = ngx.re.find("abc", "a", "", { pos = 10 })
    assert.equal("pcre_exec() failed: -33", ferr) -- PCRE2_ERROR_BADOFFSET
  end)

  it("J is PCRE1's JavaScript mode: \\u0041 and []", function()
    assert.equal("A", ngx.re.match("A", [[\u0041]], "J")[0])
    local m, err = ngx.re.match("A", [[\u0041]])
    assert.is_nil(m)
    assert.matches("^pcre2_compile", err)
  end)

  it("U skips the UTF-8 check and otherwise matches as u", function()
    assert.equal("美好", ngx.re.match("hello, 美好生活", "HELLO, (.{2})", "iU")[1])
  end)

  it("sets false for every group that took no part, numbered and named", function()
    local m = ngx.re.match("b", "(a)?(?<x>x)?(b)(c)?")
    assert.same({ [0] = "b", false, false, "b", false, x = false }, m)
  end)

  it("keeps `o` regexes in a cache bounded by lua_regex_cache_max_entries (1024)", function()
    local before = re.cache_entries()
    for i = 1, 1100 do
      assert.equal(tostring(i), ngx.re.match("x" .. i, "[0-9]+" .. "|n" .. i, "o")[0])
    end
    assert.equal(1024, re.cache_entries())
    ngx.re.match("x1", "[0-9]+", "") -- not `o`: not cached
    ngx.re.gsub("x1", "[0-9]+", "y") -- not `o`
    assert.equal(1024, re.cache_entries())
    re.set_cache_max_entries(3)
    assert.equal(3, re.cache_entries())
    for i = 1, 10 do
      ngx.re.find("x" .. i, "[0-9]+|m" .. i, "jo")
      ngx.re.gsub("x" .. i, "[0-9]+|g" .. i, "y", "o")
    end
    assert.equal(3, re.cache_entries())
    re.set_cache_max_entries(0) -- none kept: `o` still matches
    assert.equal(0, re.cache_entries())
    assert.equal("7", ngx.re.match("x7", "[0-9]", "o")[0])
    assert.equal(0, re.cache_entries())
    re.set_cache_max_entries(1024)
    assert.is_true(before <= 1024)
  end)

  it("an iterator over a cached regex survives the regex leaving the cache", function()
    re.set_cache_max_entries(1)
    local it = ngx.re.gmatch("a1b2c3", "[0-9]", "o")
    assert.equal("1", it()[0])
    ngx.re.match("z", "z", "o") -- evicts the iterator's regex from the cache
    collectgarbage()
    assert.equal("2", it()[0])
    assert.equal("3", it()[0])
    assert.is_nil(it())
    re.set_cache_max_entries(1024)
  end)

  it("frees a regex once: a second free is nothing, a use after it raises", function()
    local r = core.regex_compile("a(b)", "", false)
    assert.equal(1, (r:info()))
    r:free()
    r:free()
    assert.has_error(function()
      r:exec("ab", 0, false, false, {})
    end)
  end)

  it("a gsub function that raises leaves ngx.re working", function()
    local ok = pcall(ngx.re.gsub, "abc", "b", function()
      error("in the replacement")
    end)
    assert.is_false(ok)
    assert.equal("aXc", (ngx.re.gsub("abc", "b", "X")))
  end)
end)


describe("lib.lru", function()
  it("forgets the least recently used entry past its bound", function()
    local c = lru.new(2)
    c:set("a", 1)
    c:set("b", 2)
    assert.equal(1, c:get("a")) -- a is now the most recent
    c:set("c", 3)               -- b goes
    assert.is_nil(c:get("b"))
    assert.equal(1, c:get("a"))
    assert.equal(3, c:get("c"))
    c:set("a", 10)
    assert.equal(2, c:count())
    c:set_max(1)                -- c (least recent) goes
    assert.is_nil(c:get("c"))
    assert.equal(10, c:get("a"))
  end)
end)


describe("ngx escaping, base64, digests", function()
  local function escaped_set(ty)
    local set = {}
    for b = 0, 255 do
      local c = string.char(b)
      if ngx.escape_uri(c, ty) ~= c then
        assert.equal(string.format("%%%02X", b), ngx.escape_uri(c, ty))
        set[#set + 1] = b
      end
    end
    return set
  end

  it("escapes a URI component as OpenResty: all but ALPHA, DIGIT and - . _ ~ ! ' ( ) *", function()
    local want = {}
    for b = 0, 255 do
      local c = string.char(b)
      if not (c:match("^[%w]$") or ("-._~!'()*"):find(c, 1, true)) then
        want[#want + 1] = b
      end
    end
    assert.same(want, escaped_set(2))
    assert.same(want, escaped_set(nil))
  end)

  it("escapes a full URI (type 0): space # % ? and the controls and bytes 0x7F-0xFF", function()
    local want = {}
    for b = 0, 255 do
      if b < 0x20 or b >= 0x7f or b == 32 or b == 35 or b == 37 or b == 63 then
        want[#want + 1] = b
      end
    end
    assert.same(want, escaped_set(0))
  end)

  it("unescapes what it escapes, for any bytes", function()
    math.randomseed(15)
    for _ = 1, 200 do
      local t = {}
      for i = 1, math.random(0, 40) do
        t[i] = string.char(math.random(0, 255))
      end
      local s = table.concat(t)
      for _, ty in ipairs({ 0, 1, 2, 3, 4 }) do
        assert.equal(s, ngx.unescape_uri((ngx.escape_uri(s, ty):gsub("%+", "%%2B"))))
      end
      assert.equal(s, ngx.decode_base64(ngx.encode_base64(s)))
      assert.equal(s, ngx.decode_base64(ngx.encode_base64(s, true)))
    end
  end)

  it("decodes base64 as nginx: nil for a byte outside the alphabet or a length of 4n+1", function()
    assert.equal("hello", ngx.decode_base64("aGVsbG8="))
    assert.equal("hello", ngx.decode_base64("aGVsbG8"))
    assert.is_nil(ngx.decode_base64("aGVsbG8*"))
    assert.is_nil(ngx.decode_base64("Y"))
    assert.is_nil(ngx.decode_base64("aGVs bG8="))
    assert.is_nil(ngx.decode_base64("-_-_"))
    assert.equal("a", ngx.decode_base64("YQ==whatever*follows"))
    assert.has_error(function()
      ngx.decode_base64(nil)
    end, "string argument only")
  end)

  it("has MD5 and SHA-1 from libcrypto", function()
    assert.equal("d41d8cd98f00b204e9800998ecf8427e", ngx.md5(""))
    assert.equal("5d41402abc4b2a76b9719d911017c592", ngx.md5("hello"))
    assert.equal(16, #ngx.md5_bin("hello"))
    assert.equal("5d41402abc4b2a76b9719d911017c592", (ngx.md5_bin("hello"):gsub(".", function(c)
      return string.format("%02x", c:byte())
    end)))
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", (ngx.sha1_bin("abc"):gsub(".", function(c)
      return string.format("%02x", c:byte())
    end)))
  end)
end)


describe("ngx time, worker and what is left out", function()
  it("reads the wall clock once per loop turn; update_time reads it again", function()
    ngx.update_time()
    local a = ngx.now()
    local t0 = os.clock()
    while os.clock() - t0 < 0.02 do end
    assert.equal(a, ngx.now()) -- the loop did not turn
    ngx.update_time()
    local b = ngx.now()
    assert.is_true(b > a)
    assert.is_true(math.abs(b - os.time()) < 2)
    assert.equal(math.floor(b), ngx.time())
    assert.equal(b, math.floor(b * 1000) / 1000)
  end)

  it("has no worker id outside a worker, and this process's pid", function()
    assert.is_nil(ngx.worker.id())
    assert.equal(core.pid(), ngx.worker.pid())
    assert.equal("number", type(ngx.worker.count()))
    assert.is_false(ngx.worker.exiting())
  end)

  it("ngx.sleep waits, so it raises outside a callback luacluster runs", function()
    assert.has_error(function()
      ngx.sleep(0.01)
    end)
    local ok, err = pcall(ngx.sleep, -1)
    assert.is_false(ok)
    assert.matches('invalid sleep duration "%-1000"', err)
  end)

  it("says what is not there and what to use instead", function()
    -- ngx.shared is luacluster.shared: a dictionary nobody declared is nil, as in OpenResty
    assert.equal(require("luacluster.shared"), ngx.shared)
    assert.is_nil(ngx.shared.cache)
    local ok, err
    local sock = ngx.socket.tcp()
    sock:settimeout(1000)
    ok, err = pcall(sock.connect, sock, "127.0.0.1", 1) -- (a cosocket waits: in a handler only)
    assert.is_false(ok)
    assert.matches("waits, so it can only be called inside a handler", err, 1, true)
    for _, name in ipairs({ "req", "var", "say", "ctx", "exit", "header", "status" }) do
      ok, err = pcall(function() return ngx[name] end)
      assert.is_false(ok)
      assert.matches("ngx." .. name .. " is not provided by luacluster.ngx: use ", err, 1, true)
    end
    assert.is_nil(ngx.no_such_field)
  end)
end)


describe("Debian's lua-nginx-* drivers", function()
  it("load unmodified with luacluster.ngx as their ngx", function()
    assert.equal(ngx, rawget(_G, "ngx"))
    for _, name in ipairs({ "nginx.redis", "nginx.memcached", "nginx.dns.resolver", "nginx.websocket.client",
      "nginx.redis.connector" }) do
      local ok, mod = pcall(require, name)
      assert(ok, name .. ": " .. tostring(mod))
      assert.equal("table", type(mod), name)
    end
  end)
end)
