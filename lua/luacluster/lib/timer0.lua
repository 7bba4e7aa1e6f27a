-- luacluster.lib.timer0: run a function in a later loop turn (a zero-delay one-shot timer
-- that closes itself), the one way the library defers work to the next turn.
local core = require("luacluster.core")


-- fn() in a later loop turn; unref: the timer does not keep the loop alive. -> the timer
local function next_turn(fn, unref)
  local t
  t = core.timer_new(function()
    t:close()
    fn()
  end)
  t:start(0, 0)
  if unref then
    t:unref()
  end
  return t
end


return {
  next_turn = next_turn,
}
