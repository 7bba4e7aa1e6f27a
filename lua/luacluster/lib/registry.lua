-- luacluster.lib.registry: the extension points of a side of the cluster (the master's and a
-- worker's control operations, the master's hook lists). Registering is explicit, as skynet's
-- register_protocol: a name is taken once (a second registration raises, naming both places),
-- and every registration returns a function that removes it. Hooks run in the order they were
-- registered (master/plugins.lua lists that order for the master).

local registry_mt = {}
registry_mt.__index = registry_mt


-- where the registering call is: "file:line" (a registration names the module that made it)
local function caller()
  local info = debug.getinfo(3, "Sl")
  return info and (info.short_src .. ":" .. tostring(info.currentline)) or "?"
end


-- what: the name errors use ("master control op"); lists: the hook lists it has
local function new(what, lists)
  local self = setmetatable({ what = what, ops = {}, owners = {}, hooks = {}, hook_owners = {} }, registry_mt)
  for _, name in ipairs(lists or {}) do
    self.hooks[name] = {}
    self.hook_owners[name] = {}
  end
  return self
end


-- name -> fn: the handler of one name. Raises if the name is taken. Returns the remover.
function registry_mt:op(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error(self.what .. ": op(name, fn) takes a string and a function", 2)
  end
  local here = caller()
  if self.ops[name] then
    error(string.format("%s '%s' is registered twice: at %s and at %s", self.what, name, self.owners[name], here), 2)
  end
  self.ops[name], self.owners[name] = fn, here
  return function()
    if self.ops[name] == fn then
      self.ops[name], self.owners[name] = nil, nil
    end
  end
end


-- the handler of name, or nil
function registry_mt:handler(name)
  return self.ops[name]
end


-- Adds fn at the end of hook list `list`. Returns the remover.
function registry_mt:hook(list, fn)
  local hooks = self.hooks[list]
  if not hooks then
    error(self.what .. ": no hook list '" .. tostring(list) .. "'", 2)
  end
  if type(fn) ~= "function" then
    error(self.what .. ": hook(list, fn) takes a function", 2)
  end
  hooks[#hooks + 1] = fn
  self.hook_owners[list][fn] = caller()
  return function()
    for i = #hooks, 1, -1 do
      if hooks[i] == fn then
        table.remove(hooks, i)
        self.hook_owners[list][fn] = nil
        return
      end
    end
  end
end


-- Runs every hook of `list` in order with the arguments (a hook removed while the list runs
-- is still called this time; one added is not).
function registry_mt:run(list, ...)
  local hooks = self.hooks[list]
  local n = #hooks
  if n == 0 then
    return
  end
  local copy = { unpack(hooks, 1, n) }
  for i = 1, n do
    copy[i](...)
  end
end


-- Runs the hooks of `list` until one returns a value, and returns it (a check that refuses).
function registry_mt:first(list, ...)
  for _, fn in ipairs({ unpack(self.hooks[list]) }) do
    local r = fn(...)
    if r ~= nil then
      return r
    end
  end
  return nil
end


-- the two functions a side hands its plugins: register_op(name, fn) -> remover and
-- add_hook(list, fn) -> remover (tail calls: a registration names the plugin's line)
function registry_mt:api()
  local function register_op(name, fn)
    return self:op(name, fn)
  end
  local function add_hook(list, fn)
    return self:hook(list, fn)
  end
  return register_op, add_hook
end


-- "list: file:line, ..." per hook list and "op name: file:line" per op: what is plugged in
function registry_mt:describe()
  local lines = {}
  local names = {}
  for name in pairs(self.ops) do
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    lines[#lines + 1] = "op " .. name .. ": " .. self.owners[name]
  end
  local lists = {}
  for name in pairs(self.hooks) do
    lists[#lists + 1] = name
  end
  table.sort(lists)
  for _, list in ipairs(lists) do
    local where = {}
    for _, fn in ipairs(self.hooks[list]) do
      where[#where + 1] = self.hook_owners[list][fn]
    end
    lines[#lines + 1] = "hooks " .. list .. ": " .. table.concat(where, ", ")
  end
  return table.concat(lines, "\n")
end


return {
  new = new,
}
