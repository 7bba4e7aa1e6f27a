-- Unit specs of the event emitter's emit3 (lua/luacluster/lib/emitter.lua), the path a worker's
-- messages take: handlers share one pooled coroutine while none waits, and one that waits keeps
-- its coroutine while the next events still run at once.
local emitter = require("luacluster.lib.emitter")
local coro = require("luacluster.lib.coro")


local function new()
  return emitter.mixin({})
end


describe("emitter.emit3", function()
  it("runs the handler now, with exactly three arguments, inside a luacluster coroutine", function()
    local e, got = new(), nil
    e:on("message", function(...)
      got = { n = select("#", ...), in_handler = coro.in_handler(), ... }
    end)
    assert.is_true(emitter.emit3(e, "message", "m", nil, nil))
    assert.same({ n = 3, in_handler = true, "m" }, got)
    assert.is_false(emitter.emit3(e, "other", 1, 2, 3))
  end)

  it("runs every handler in order, and the next ones after one that raises", function()
    local e, seen = new(), {}
    e:on("message", function(m) seen[#seen + 1] = "a" .. m end)
    e:on("message", function() error("boom") end)
    e:on("message", function(m) seen[#seen + 1] = "c" .. m end)
    emitter.emit3(e, "message", 1)
    emitter.emit3(e, "message", 2)
    assert.same({ "a1", "c1", "a2", "c2" }, seen)
  end)

  it("lets a handler wait while the next events run at once, and resumes it where it waited", function()
    local e, seen, waiters = new(), {}, {}
    e:on("message", function(m)
      seen[#seen + 1] = "start " .. m
      if m % 2 == 1 then
        local w = coro.waiter("test")
        waiters[m] = w
        local r = w:wait()
        seen[#seen + 1] = "woke " .. m .. " " .. tostring(r)
      end
      seen[#seen + 1] = "end " .. m
    end)
    for i = 1, 4 do
      emitter.emit3(e, "message", i)
    end
    assert.same({ "start 1", "start 2", "end 2", "start 3", "start 4", "end 4" }, seen)
    waiters[3]:wake("x")
    waiters[1]:wake("y")
    emitter.emit3(e, "message", 6)
    assert.same({ "start 1", "start 2", "end 2", "start 3", "start 4", "end 4",
      "woke 3 x", "end 3", "woke 1 y", "end 1", "start 6", "end 6" }, seen)
  end)

  it("gives the coroutine of a handler that waited back to coro's pool when that handler ends", function()
    local e, w, co_waited = new(), nil, nil
    e:on("message", function()
      co_waited = coroutine.running()
      w = coro.waiter("test")
      w:wait()
    end)
    emitter.emit3(e, "message", 1)
    w:wake()
    local co_next
    coro.spawn(function() co_next = coroutine.running() end)
    assert.equal(co_waited, co_next)
  end)

  it("runs an event emitted from inside a handler at once", function()
    local e, seen = new(), {}
    e:on("inner", function(m) seen[#seen + 1] = "inner " .. m end)
    e:on("message", function(m)
      seen[#seen + 1] = "outer " .. m
      emitter.emit3(e, "inner", m)
      seen[#seen + 1] = "outer end " .. m
    end)
    emitter.emit3(e, "message", 1)
    emitter.emit3(e, "message", 2)
    assert.same({ "outer 1", "inner 1", "outer end 1", "outer 2", "inner 2", "outer end 2" }, seen)
  end)

  it("keeps neither the last handler nor its arguments alive once it has run", function()
    local weak = setmetatable({}, { __mode = "v" })
    -- in a function of its own: a do block's dead locals stay in this frame's slots, where the
    -- collector may still see them (CI's fresh root did); a returned frame's are gone
    local function run_once()
      local e = new()
      local handler = function() end
      local msg = {}
      weak.handler, weak.msg = handler, msg
      e:on("message", handler)
      emitter.emit3(e, "message", msg, nil, nil)
    end
    run_once()
    -- a compiled trace of the dispatcher's loop may hold the closure it specialised on as a
    -- constant (LuaJIT's cache, not the emitter's reference; CI saw it once): traces go first
    jit.flush()
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak.handler)
    assert.is_nil(weak.msg)
  end)
end)
