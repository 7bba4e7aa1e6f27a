-- luacluster.master.shdict: the master's side of the shared dictionaries
-- (cluster.setup{ shared_dicts = { NAME = SIZE } }). It reads the sizes, creates each
-- dictionary's region before any worker starts (runtime/shdict_lua.c), hands the regions'
-- file to every worker it spawns (an inherited fd named in LUACLUSTER_SHDICT), and decides
-- what a reload may change: a new dictionary is created; one whose size changed refuses the
-- reload (the running one keeps its contents); one the new code no longer declares is kept,
-- with its contents, and logged. The master reads their counters without their locks.
local core = require("luacluster.core")
local log = require("luacluster.lib.log")

local _M = {}

local MIN = 32 * 1024                 -- nginx refuses a zone under 8 pages; so do we (32k)
local MAX = 2 * 1024 * 1024 * 1024 - 4096
local CHILD_FD = 4                    -- the fd a worker gets the file as (stdio entry 5)
local LOCK_TIMEOUT_MS = 5000          -- the master waits at most this for a dictionary's lock

local sizes = {}                      -- name -> bytes asked for (as declared)
local declared_by_stage               -- during a reload: the names the new code declared


-- "10m", "512k", "1g", 65536 -> bytes | nil, err (k = 1024, m = 1048576, as nginx reads them)
function _M.parse_size(v)
  local n
  if type(v) == "number" then
    n = v
  elseif type(v) == "string" then
    local digits, unit = v:match("^%s*(%d+)%s*([kKmMgG]?)%s*$")
    if not digits then
      return nil, "size must be bytes or a string such as \"10m\" or \"512k\", not " .. string.format("%q", v)
    end
    n = tonumber(digits) * (({ k = 1024, m = 1048576, g = 1073741824 })[unit:lower()] or 1)
  else
    return nil, "size must be a number of bytes or a string such as \"10m\", not a " .. type(v)
  end
  if n % 1 ~= 0 or n < MIN or n > MAX then
    return nil, string.format("size must be a whole number of bytes from %d (32k) to %d (2g - 4k), not %s",
      MIN, MAX, tostring(v))
  end
  return n
end


local function check_name(name)
  if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") or #name > 63 then
    return nil, "shared_dicts: a dictionary's name is 1 to 63 letters, digits, '_', '-' or '.', not "
      .. (type(name) == "string" and string.format("%q", name) or "a " .. type(name))
  end
  return true
end


-- Checks a shared_dicts table: -> { name = bytes } | nil, err
function _M.check(t)
  if type(t) ~= "table" then
    return nil, "shared_dicts must be a table of name = size"
  end
  local out = {}
  for name, v in pairs(t) do
    local ok, err = check_name(name)
    if not ok then
      return nil, err
    end
    local n, serr = _M.parse_size(v)
    if not n then
      return nil, "shared_dicts." .. name .. ": " .. serr
    end
    out[name] = n
  end
  return out
end


-- Creates what `want` (checked) declares: -> true | nil, err.
-- staging: a reload's new code; started: workers exist already (outside a reload)
function _M.declare(want, staging, started)
  local new = {}
  for name, n in pairs(want) do
    local have = sizes[name]
    if have and have ~= n then
      return nil, string.format("shared_dicts.%s is %d bytes in the running cluster and %d in the new code: "
        .. "a dictionary cannot change its size while the master runs (its contents would be lost); "
        .. "restart the cluster to resize it", name, have, n)
    elseif not have then
      if started and not staging then
        return nil, "shared_dicts: '" .. name .. "' is declared after workers started: declare every "
          .. "dictionary in cluster.setup before the first worker (cluster.fork) starts"
      end
      new[#new + 1] = name
    end
  end
  table.sort(new)
  for _, name in ipairs(new) do
    local d, err = core.shdict_create(name, want[name])
    if not d then
      return nil, "shared_dicts." .. name .. ": " .. tostring(err)
    end
    sizes[name] = want[name]
    if staging then
      log.info("reload: shared dictionary '" .. name .. "' created (" .. want[name] .. " bytes)")
    end
  end
  core.shdict_lock_timeout(LOCK_TIMEOUT_MS)
  if staging then
    declared_by_stage = declared_by_stage or {}
    for name in pairs(want) do
      declared_by_stage[name] = true
    end
  end
  return true
end


-- after a reload: the dictionaries the new code did not declare are kept; say so
function _M.reload_done()
  local staged = declared_by_stage or {}
  declared_by_stage = nil
  local kept = {}
  for name in pairs(sizes) do
    if not staged[name] then
      kept[#kept + 1] = name
    end
  end
  table.sort(kept)
  for _, name in ipairs(kept) do
    log.warn("reload: shared dictionary '" .. name .. "' is no longer declared: it is kept with its contents "
      .. "(and still reachable) until the master stops")
  end
end


function _M.reload_refused()
  declared_by_stage = nil
end


-- for a worker's spawn: the stdio entry and the environment value, or nil when there is none
function _M.stdio_entry()
  local fd = core.shdict_fd()
  return fd and { inherit = fd } or nil
end


function _M.env_value()
  if not core.shdict_fd() then
    return nil
  end
  return CHILD_FD .. ";" .. core.shdict_spec()
end


-- { { name=, capacity=, used=, free=, entries=, evictions= }, ... } by name; never locks
function _M.stats()
  local list = core.shdict_stats()
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end


-- A binary upgrade (lib/crossing.lua): the arena file (a memfd) crosses as an inherited fd;
-- the new master maps the same pages at the same offsets (core.shdict_adopt), so what was
-- written before the upgrade is read after it, and its workers get the same file.
function _M.export()
  local fd = core.shdict_fd()
  if not fd then
    return nil
  end
  return { spec = core.shdict_spec(), sizes = sizes }, { arena = fd }
end


function _M.import(v, fds)
  if type(v) ~= "table" or not fds.arena then
    return
  end
  assert(core.shdict_adopt(fds.arena, v.spec))
  for name, n in pairs(v.sizes or {}) do
    sizes[name] = n
  end
  core.shdict_lock_timeout(LOCK_TIMEOUT_MS)
end


_M.CHILD_FD = CHILD_FD

return _M
