-- cluster.keep(name [, initial]) -> table: the master's state that a reload carries into the
-- new code. A reload runs the new app.lua's top level again in the master: its locals (and the
-- app's own modules, loaded anew) start afresh. A table kept under a name is the exception:
-- the new code's cluster.keep(name) returns a table with the same data.
--   * The data crosses as a message would (luacluster.lib.codec): plain data only (nil, booleans,
--     numbers, strings, tables of those). A kept table that holds anything else refuses the
--     reload, with the reason; so does one whose name the new code keeps with a non-table.
--   * The new top level gets a copy taken when it runs; the old code keeps serving (and may
--     change its table) until the switch. At the switch the old table is copied again into
--     the new code's table, key by key (first level): a key the new top level changed keeps
--     its new value, every other key takes the old code's value at that moment. So nothing
--     the old code wrote while the new workers started is lost, and a reload that fails
--     leaves the old table as it was.
--   * A name the new code does not keep is dropped with the old code.
-- A binary upgrade (master/upgrade.lua) carries them to the new master the same way: export()
-- in the old master, import() before the new master's top level, whose cluster.keep(name) then
-- gets the old data; at the switch refresh() merges the old code's latest data, as carry() does.
local codec = require("luacluster.lib.codec")
local tables = require("luacluster.lib.tables")

local keep, carry, names

local kept = {}  -- name -> table, the running code's
local inherited  -- a binary upgrade's new master: name -> the old master's table, until its top level keeps it
local given = {} -- ... and a copy of what its top level was given (name -> table), until the switch


-- plain data compared by value (tables key by key)
local function same(a, b, depth)
  if a == b then
    return true
  end
  if type(a) ~= "table" or type(b) ~= "table" or depth > 100 then
    return false
  end
  for k, v in pairs(a) do
    if not same(v, b[k], depth + 1) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end


local function copy_of(name, t)
  local bytes, err = codec.encode(t)
  if not bytes then
    return nil, "cluster.keep('" .. name .. "') cannot be carried into the new code: " .. tostring(err)
  end
  local ok, value = codec.decode(bytes)
  if not ok then
    return nil, "cluster.keep('" .. name .. "') cannot be carried into the new code: " .. tostring(value)
  end
  return value
end


-- stage: a reload's stage (master.staging) while the new top level runs, else nil
function keep(stage, name, initial)
  if type(name) ~= "string" then
    error("cluster.keep: name must be a string", 3)
  end
  if initial ~= nil and type(initial) ~= "table" then
    error("cluster.keep: the initial value must be a table", 3)
  end
  if not stage then
    if kept[name] == nil then
      local old = inherited and inherited[name]
      if type(old) == "table" then
        kept[name] = old
        given[name] = copy_of(name, old)
      else
        kept[name] = initial or {}
      end
    end
    return kept[name]
  end
  stage.kept = stage.kept or {}
  local t = stage.kept[name]
  if t then
    return t
  end
  if kept[name] ~= nil then
    local value, err = copy_of(name, kept[name])
    if not value then
      stage.keep_error = stage.keep_error or err
      value = {}
    end
    t = value
    stage.seen = stage.seen or {}
    stage.seen[name] = copy_of(name, kept[name]) -- what the new top level was given
  else
    t = initial or {}
  end
  stage.kept[name] = t
  return t
end


-- t: the new code's table, given: what its top level was given, latest: the old code's data
-- now. Each key the new top level left as it was given takes the old code's latest value.
local function merge(t, given, latest)
  local keys = {}
  for k in pairs(t) do keys[k] = true end
  for k in pairs(given) do keys[k] = true end
  for k in pairs(latest) do keys[k] = true end
  for k in pairs(keys) do
    if same(t[k], given[k], 0) then
      t[k] = latest[k]
    end
  end
end


-- The switch: the old code's data, copied once more into the new code's tables; the new
-- tables become the running ones. -> true | nil, err (then nothing has changed)
function carry(stage)
  if stage.keep_error then
    return nil, stage.keep_error
  end
  local new, seen = stage.kept or {}, stage.seen or {}
  local copies = {}
  for name, t in pairs(new) do
    -- the new code's own data must cross a later reload as well
    local _, err = copy_of(name, t)
    if err then
      return nil, err
    end
    if kept[name] ~= nil and seen[name] then
      local value
      value, err = copy_of(name, kept[name])
      if not value then
        return nil, err
      end
      copies[name] = value
    end
  end
  for name, value in pairs(copies) do
    merge(new[name], seen[name], value)
  end
  kept = new
  return true
end


-- a binary upgrade, the old master: the kept tables as one plain value (lib/crossing.lua)
local function export()
  local out = {}
  for name, t in pairs(kept) do
    local value, err = copy_of(name, t)
    if not value then
      error(err, 0)
    end
    out[name] = value
  end
  return out
end


-- the new master, before its top level: what its cluster.keep(name) calls get
local function import(value)
  inherited = type(value) == "table" and value or nil
end


-- the new master, at the switch: the old master's latest data (what its code wrote while this
-- master started) into the kept tables, key by key, except the keys this top level changed
local function refresh(value)
  if type(value) == "table" then
    for name, latest in pairs(value) do
      local t, was = kept[name], given[name]
      if type(t) == "table" and type(was) == "table" and type(latest) == "table" then
        merge(t, was, latest)
      end
    end
  end
  inherited, given = nil, {}
end


-- the names the running code keeps (status, specs)
function names()
  return tables.sorted_keys(kept)
end


return {
  keep = keep,
  carry = carry,
  names = names,
  export = export,
  import = import,
  refresh = refresh,
}
