-- Unit specs of the message codec (lua/luacluster/codec.lua): what a message may be, what
-- it may not be, and how garbage is refused. The integration specs check the same rules
-- through real processes.
local codec = require("luacluster.lib.codec")


local function roundtrip(v)
  local bytes, err = codec.encode(v)
  assert(bytes, err)
  assert.is_string(bytes)
  local ok, out = codec.decode(bytes)
  assert.is_true(ok, out)
  return out
end


describe("codec", function()
  it("round-trips scalars", function()
    assert.equal(true, roundtrip(true))
    assert.equal(false, roundtrip(false))
    assert.equal(0, roundtrip(0))
    assert.equal(-42, roundtrip(-42))
    assert.equal(3.25, roundtrip(3.25))
    assert.equal(2 ^ 53, roundtrip(2 ^ 53))
    assert.equal(math.huge, roundtrip(math.huge))
    assert.equal("", roundtrip(""))
    assert.equal("hello", roundtrip("hello"))
    local nan = roundtrip(0 / 0)
    assert.is_true(nan ~= nan)
  end)

  it("takes nil as a message", function()
    local bytes, err = codec.encode(nil)
    assert.is_string(bytes, err)
    local ok, v = codec.decode(bytes)
    assert.is_true(ok)
    assert.is_nil(v)
  end)

  it("round-trips nested tables", function()
    local v = { a = { b = { c = { d = { 1, 2, { e = "deep" } } } } }, list = { "x", "y" }, n = 1.5 }
    assert.same(v, roundtrip(v))
    local deep = {}
    local t = deep
    for i = 1, 50 do
      t.next = { level = i }
      t = t.next
    end
    assert.same(deep, roundtrip(deep))
  end)

  it("keeps binary strings with NUL bytes intact", function()
    local all = {}
    for i = 0, 255 do
      all[#all + 1] = string.char(i)
    end
    local s = table.concat(all) .. "\0\0end\0"
    assert.equal(s, roundtrip(s))
    assert.same({ [s] = s, k = "a\0b" }, roundtrip({ [s] = s, k = "a\0b" }))
  end)

  it("carries a 10 MB string", function()
    local s = string.rep("0123456789abcdef", 10 * 65536) -- 10 MiB
    local out = roundtrip({ blob = s })
    assert.equal(#s, #out.blob)
    assert.is_true(out.blob == s)
  end)

  it("keeps sparse arrays sparse", function()
    local v = { [1] = "a", [3] = "c", [1000] = "m", [1000000] = "far" }
    local out = roundtrip(v)
    assert.same(v, out)
    assert.is_nil(out[2])
    assert.is_nil(out[999])
  end)

  it("keeps numeric, string and boolean keys apart", function()
    local v = {
      [1] = "int", ["1"] = "str", [1.5] = "float", [-7] = "neg",
      [true] = "yes", [false] = "no", name = "n", [0] = "zero",
    }
    local out = roundtrip(v)
    assert.same(v, out)
    assert.equal("int", out[1])
    assert.equal("str", out["1"])
    assert.equal("yes", out[true])
    assert.equal("no", out[false])
    assert.equal("float", out[1.5])
  end)

  it("takes tables used as keys", function()
    local out = roundtrip({ [{ 1, 2 }] = "k" })
    local k, v = next(out)
    assert.same({ 1, 2 }, k)
    assert.equal("k", v)
  end)

  it("shares nothing between a sent table and the received one", function()
    local shared = { 1 }
    local out = roundtrip({ a = shared, b = shared })
    assert.same({ 1 }, out.a)
    assert.same({ 1 }, out.b)
  end)

  describe("refuses", function()
    local function refused(v, pattern)
      local bytes, err = codec.encode(v)
      assert.is_nil(bytes)
      assert.is_string(err)
      assert.matches(pattern, err)
      return err
    end

    it("functions, with a clear error", function()
      local err = refused(print, "type function")
      assert.matches("a message is made of nil, booleans, numbers, strings and tables", err, 1, true)
      refused({ cb = function() end }, "type function")
      refused({ 1, 2, { 3, function() end } }, "type function")
    end)

    it("userdata", function()
      refused(io.stdout, "type userdata")
      refused({ f = io.stderr }, "type userdata")
    end)

    it("coroutines", function()
      refused(coroutine.create(function() end), "type thread")
      refused({ co = coroutine.create(function() end) }, "type thread")
    end)

    it("cycles", function()
      local t = {}
      t.self = t
      refused(t, "cycle")
      local a, b = {}, {}
      a.b, b.a = b, a
      refused({ a }, "cycle")
    end)

    it("a function as a key", function()
      refused({ [print] = 1 }, "type function")
    end)

    it("and encodes the next value normally after a refusal", function()
      assert.is_nil(codec.encode({ print }))
      assert.same({ after = true }, roundtrip({ after = true }))
    end)
  end)

  describe("decode", function()
    it("refuses garbage with an error, never raising", function()
      for _, bad in ipairs({ "\255\255\255\255", "garbage bytes", "\7", string.rep("\200", 64) }) do
        local ok, err = codec.decode(bad)
        assert.is_nil(ok)
        assert.matches("^cannot decode message: ", err)
      end
    end)

    it("refuses a truncated message", function()
      local bytes = assert(codec.encode({ a = string.rep("x", 100), b = { 1, 2, 3 } }))
      for _, n in ipairs({ 1, 2, 10, #bytes - 1 }) do
        local ok, err = codec.decode(bytes:sub(1, n))
        assert.is_nil(ok)
        assert.matches("^cannot decode message: ", err)
      end
    end)

    it("refuses left-over bytes after a value", function()
      local bytes = assert(codec.encode("x"))
      local ok, err = codec.decode(bytes .. bytes)
      assert.is_nil(ok)
      assert.matches("left%-over", err)
    end)

    it("refuses the empty string and non-strings", function()
      local ok, err = codec.decode("")
      assert.is_nil(ok)
      assert.is_string(err)
      ok, err = codec.decode(42)
      assert.is_nil(ok)
      assert.matches("not a string", err)
    end)

    it("survives refusals and decode errors in a hot loop (once crashed LuaJIT's JIT)", function()
      -- its own process, so that a crash shows as a failure here rather than ending busted
      local H = require("helper")
      local dir = H.app({ ["loop.lua"] = [[
        local codec = require("luacluster.lib.codec")
        for _ = 1, 50 do
          local bytes = codec.encode({ a = string.rep("x", 100), b = { 1, 2, 3 } })
          for _, n in ipairs({ 1, 2, 10, #bytes - 1 }) do codec.decode(bytes:sub(1, n)) end
          for _, bad in ipairs({ "\255\255\255\255", "garbage bytes", "\7", string.rep("\200", 64) }) do
            codec.decode(bad)
          end
          local b = codec.encode("x")
          codec.decode(b .. b)
          local ok, v = codec.decode(codec.encode({ blob = string.rep("0123456789abcdef", 100) }))
          assert(ok and #v.blob == 1600)
          assert(codec.encode({ print }) == nil)
          local cycle = {}
          cycle.self = cycle
          assert(codec.encode(cycle) == nil)
        end
        print("survived", (pcall(require, "luacluster.core")))
      ]] })
      -- with the runtime (core.protect, core.checked) and without it (plain pcall, JIT off);
      -- the sanitizer run's core.so needs ASan's runtime preloaded, as busted has it
      local with_core = "package.cpath = \"" .. H.build_dir .. "/lib/?.so;\" .. package.cpath "
      local preload = os.getenv("LD_PRELOAD")
      preload = preload and preload ~= "" and ("LD_PRELOAD='" .. preload .. "' ") or ""
      for _, extra in ipairs({ with_core, "" }) do
        for _ = 1, 3 do
          local out, rc = H.sh("cd " .. H.root .. " && " .. (extra ~= "" and preload or "")
            .. "luajit -e 'package.path = \"./lua/?.lua;\" .. package.path " .. extra .. "' " .. dir .. "/loop.lua")
          assert.equal(0, rc, out)
          assert.matches("survived\t" .. tostring(extra ~= ""), out)
        end
      end
    end)

    it("refuses what would make string.buffer raise: nil and NaN keys, light userdata", function()
      local nan = "\0\0\0\0\0\0\248\127"
      for name, bad in pairs({
        ["a nil table key"] = "\9\1\0\2",
        ["a NaN table key"] = "\9\1\7" .. nan .. "\2",
        ["a light userdata"] = "\5\1\0\0\0\0\0\0\0",
        ["a table too large"] = "\10\255\0\0\0\16",
      }) do
        local ok, err = codec.decode(bad)
        assert.is_nil(ok, name)
        assert.equal("cannot decode message: " .. name, err)
      end
      -- a NaN as a value is fine
      local ok, v = codec.decode("\9\1\33a\7" .. nan)
      assert.is_true(ok)
      assert.is_true(v.a ~= v.a)
    end)

    it("answers every mutation of real messages with a value or an error, never raising", function()
      -- codec.decode runs hot on the receive path, in the JIT's traces: whatever the bytes,
      -- true and a value, or nil and "cannot decode message: ...". Both outcomes must occur.
      local buffer = require("string.buffer")
      local seeds = {
        { op = "echo", seq = 1, name = "small" },
        { 1, 2, 3, { a = true, b = false }, [10] = "x", [1.5] = -0.0, [true] = { {} } },
        { [{ 1 }] = "k", s = string.rep("z", 300), n = 2 ^ 53 },
      }
      math.randomseed(7)
      local decoded, refused = 0, 0
      for i = 1, 30000 do
        local b = { string.byte(buffer.encode(seeds[i % #seeds + 1]), 1, -1) }
        for _ = 1, math.random(1, 4) do
          local at = math.random(1, #b)
          local r = math.random(1, 4)
          if r == 1 then b[at] = math.random(0, 255)
          elseif r == 2 then table.remove(b, at)
          elseif r == 3 then table.insert(b, at, math.random(0, 40))
          else b[at] = ({ 0, 3, 4, 5, 7, 8, 9, 13, 14, 15, 0xe0, 0xff })[math.random(1, 12)] end
        end
        local ok, v = codec.decode(string.char(unpack(b)))
        if ok then
          decoded = decoded + 1
        else
          assert(ok == nil and v:find("^cannot decode message: "), tostring(v))
          refused = refused + 1
        end
      end
      assert.is_true(decoded > 1000 and refused > 1000, decoded .. " decoded, " .. refused .. " refused")
      -- a key twice (string.buffer's decoder refuses it; the bounds check does not look)
      local ok, err = codec.decode("\9\2\33a\2\33a\1")
      assert.is_nil(ok)
      assert.matches("^cannot decode message: .*duplicate", err)
    end)

    it("still decodes good input after bad input", function()
      codec.decode("\255garbage")
      assert.same({ 1, 2 }, roundtrip({ 1, 2 }))
    end)
  end)
end)
