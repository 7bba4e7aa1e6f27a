-- luacluster.lock: OpenResty's resty.lock on a shared dictionary, with its interface and error
-- strings: new(dict_name [, opts]) (also as lock:new(...)), lock:lock(key) -> elapsed | nil,
-- err, lock:unlock() -> true | nil, "unlocked" (resty.lock's 1 is true here, as the contract
-- says), lock:expire([exptime]) -> true | nil, err.
-- A lock is one dictionary entry made with `safe_add` and an expiry (exptime), so it is held across
-- every process of the cluster, and a holder that dies (SIGKILL included) releases it at
-- exptime at the latest. Waiting for a busy lock sleeps by growing steps (step, ratio,
-- max_step, as resty.lock does) on the event loop's timers: the caller's coroutine yields and
-- the loop goes on serving. The entry's value is a token of this lock object, so an unlock
-- (or expire) of a lock that expired under its holder never removes the next holder's.
-- A lock object holds at most one key at a time; one object per coroutine, as resty.lock asks.
local ffi = require("ffi")
local shared = require("luacluster.shared")
local timer = require("luacluster.timer")
local process = require("luacluster.process")
local coro = require("luacluster.lib.coro")

local type, tostring, setmetatable, getmetatable = type, tostring, setmetatable, getmetatable
local min, max = math.min, math.max
local sleep, now = timer.sleep, timer.now
local error_at_caller = coro.error_at_caller

local _M = { _VERSION = "0.08" }
local mt = { __index = _M }

-- tokens: unique in the cluster (pid) and in this process (a counter)
local token_prefix = tostring(process.pid) .. ":"
local token_seq = 0

-- Locks whose objects were collected while held: released by the next call into this module.
-- A finalizer may run at any allocation, in the middle of another dictionary operation of this
-- process, so it only queues.
local orphans, n_orphans = {}, 0


-- Locks this process holds (orphans not yet released included), and the timer that releases
-- orphans while there are any: without it, an orphan of a process that makes no further call
-- into this module stayed held until its exptime, where resty.lock's is released at collection.
local n_held = 0
local sweeper = nil


local function release_orphans()
  local list, n = orphans, n_orphans
  orphans, n_orphans = {}, 0
  n_held = n_held - n
  for i = 1, n do
    local o = list[i]
    if o.dict:get(o.key) == o.token then
      o.dict:delete(o.key)
    end
  end
end


-- The collector's hook: a cdata whose finalizer sees only the held-state table (never the lock
-- object, which would then never be collected).
local function sweep()
  if n_orphans > 0 then
    release_orphans()
  end
  if n_held == 0 and sweeper then
    sweeper:stop()
    sweeper = nil
  end
end


local function guard(state)
  return ffi.gc(ffi.new("char[1]"), function()
    if state.key ~= nil then
      n_orphans = n_orphans + 1
      orphans[n_orphans] = { dict = state.dict, key = state.key, token = state.token }
      state.key = nil
    end
  end)
end


local function check_number(opts, name)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0) then
    error_at_caller("lock.new: " .. name .. " must be a number >= 0")
  end
  return v
end


-- new(dict_name [, opts]) -> lock | nil, "dictionary not found"
function _M.new(dict_name, opts, more)
  if dict_name == _M then -- lock:new(dict_name, opts), as resty.lock is called
    dict_name, opts = opts, more
  end
  if type(dict_name) ~= "string" then
    error_at_caller("lock.new: the dictionary's name must be a string")
  end
  if opts ~= nil and type(opts) ~= "table" then
    error_at_caller("lock.new: opts must be a table")
  end
  if n_orphans > 0 then
    release_orphans()
  end
  local dict = shared[dict_name]
  if not dict then
    return nil, "dictionary not found"
  end
  opts = opts or {}
  local exptime = check_number(opts, "exptime") or 30
  local timeout = check_number(opts, "timeout")
  local step = check_number(opts, "step")
  local ratio = check_number(opts, "ratio")
  local max_step = check_number(opts, "max_step")
  -- as resty.lock: a given timeout is at most exptime, a given step at most that timeout
  if timeout then
    timeout = min(timeout, exptime)
    if step then
      step = min(step, timeout)
    end
  end
  local state = { dict = dict }
  local self = {
    dict = dict,
    timeout = timeout or 5,
    exptime = exptime,
    step = step or 0.001,
    ratio = ratio or 2,
    max_step = max_step or 0.5,
    state = state,
    gc = guard(state),
  }
  return setmetatable(self, mt)
end


local function take(self, key, exptime)
  token_seq = token_seq + 1
  local token = token_prefix .. token_seq
  -- safe_add, where resty.lock has add: in a full dictionary add would evict the least
  -- recently used entry, which may be a lock another holder still counts on
  local ok, err = self.dict:safe_add(key, token, exptime)
  if ok then
    local state = self.state
    state.key, state.token = key, token
    self.key = key
    n_held = n_held + 1
    if not sweeper then
      sweeper = timer.every(100, sweep)
    end
  end
  return ok, err
end


-- lock(key) -> seconds waited (the sum of the sleeps) | nil, "timeout" | "locked" (this object
-- already holds a lock) | "nil key" | the dictionary's error ("no memory", ...)
local function check_self(self, name)
  if type(self) ~= "table" or getmetatable(self) ~= mt then
    error_at_caller("lock:" .. name .. ": call it as l:" .. name .. "(...), on an object of lock.new")
  end
end


function _M.lock(self, key)
  check_self(self, "lock")
  if key == nil then
    return nil, "nil key"
  end
  if self.state.key ~= nil then
    return nil, "locked"
  end
  if n_orphans > 0 then
    release_orphans()
  end
  local exptime = self.exptime
  local ok, err = take(self, key, exptime)
  if ok then
    return 0
  end
  if err ~= "exists" then
    return nil, err
  end
  -- held by another: sleep by steps and try again (the loop serves meanwhile)
  -- The timeout is kept on the loop's clock, not only as the sum of the steps: on a busy loop
  -- a 1 ms sleep lasts a loop turn, and 0.3 s of 1 ms steps took seconds.
  local step, ratio, max_step = self.step, self.ratio, self.max_step
  local timeout = self.timeout
  local deadline = now() + timeout * 1000
  local elapsed = 0
  while timeout > 0 do
    sleep(step * 1000)
    elapsed = elapsed + step
    timeout = min(timeout - step, (deadline - now()) / 1000)
    ok, err = take(self, key, exptime)
    if ok then
      return elapsed
    end
    if err ~= "exists" then
      return nil, err
    end
    if timeout <= 0 then
      break
    end
    step = min(max(0.001, step * ratio), timeout, max_step)
  end
  return nil, "timeout"
end


-- unlock() -> true | nil, "unlocked" (this object holds no lock). A lock that expired while held
-- and was taken by another is left to that holder.
function _M.unlock(self)
  check_self(self, "unlock")
  local state = self.state
  local key = state.key
  if key == nil then
    return nil, "unlocked"
  end
  local dict = self.dict
  if dict:get(key) == state.token then
    local ok, err = dict:delete(key)
    if not ok then
      return nil, err
    end
  end
  state.key, state.token = nil, nil
  self.key = nil
  n_held = n_held - 1
  return true
end


-- expire([exptime]) -> true | nil, "unlocked" | "not found" (the lock expired under its holder):
-- the held lock now expires exptime seconds from now (the object's exptime by default; 0: never)
function _M.expire(self, exptime)
  check_self(self, "expire")
  local state = self.state
  local key = state.key
  if key == nil then
    return nil, "unlocked"
  end
  if exptime ~= nil and (type(exptime) ~= "number" or exptime ~= exptime or exptime < 0) then
    error_at_caller("lock:expire: the time must be a number of seconds >= 0")
  end
  local dict = self.dict
  if dict:get(key) ~= state.token then
    return nil, "not found"
  end
  local ok, err = dict:replace(key, state.token, exptime or self.exptime)
  if not ok then
    return nil, err
  end
  return true
end


return _M
