-- luacluster.lib.crossing: the one registry of the master's state that crosses a binary
-- upgrade (`luacluster upgrade`, SIGUSR2: master/upgrade.lua). Each piece registers a name and
-- two functions: export() -> a plain value (nil, booleans, numbers, strings and tables of
-- those: it travels as a codec message) in the old master, import(value) in the new master,
-- before the app's top level runs. A new piece plugs in with one line:
--   crossing.register("tls_tickets", tickets.export, tickets.import)
-- What a piece needs besides plain data travels beside the message: export() may return a
-- second value, { key = socket | fd }, and import gets the same keys as its second argument.
-- A socket (a core TCP handle: a listening socket) goes over the upgrade's channel (SCM_RIGHTS),
-- an fd (a number: the control socket, the shared dictionaries' memfd) is inherited by the new
-- master's process (master/upgrade.lua); import gets a core TCP handle or the fd's number.
-- A name is taken once (a second registration raises); register returns a remover.
local codec = require("luacluster.lib.codec")

local _M = {}

local pieces = {}   -- name -> { export =, import =, where = }
local order = {}    -- names, in the order they registered (imports run in this order)


local function caller()
  local info = debug.getinfo(3, "Sl")
  return info and (info.short_src .. ":" .. tostring(info.currentline)) or "?"
end


-- register(name, export, import) -> remover
function _M.register(name, export, import)
  if type(name) ~= "string" or type(export) ~= "function" or type(import) ~= "function" then
    error("crossing.register(name, export, import) takes a string and two functions", 2)
  end
  local here = caller()
  if pieces[name] then
    error(string.format("upgrade state '%s' is registered twice: at %s and at %s", name, pieces[name].where, here), 2)
  end
  pieces[name] = { export = export, import = import, where = here }
  order[#order + 1] = name
  return function()
    if pieces[name] and pieces[name].export == export then
      pieces[name] = nil
      for i, n in ipairs(order) do
        if n == name then
          table.remove(order, i)
          break
        end
      end
    end
  end
end


-- The old master: every piece's export, checked to travel -> { name = value },
-- { name = { key = socket | fd } } | nil, err
function _M.export_all()
  local out, handles = {}, {}
  for _, name in ipairs(order) do
    local ok, v, h = pcall(pieces[name].export)
    if not ok then
      return nil, "upgrade state '" .. name .. "': export failed: " .. tostring(v)
    end
    local bytes, err = codec.encode({ v })
    if not bytes then
      return nil, "upgrade state '" .. name .. "' cannot cross: " .. tostring(err)
    end
    out[name] = v
    handles[name] = h
  end
  return out, handles
end


-- The new master: each registered piece imports its value (a piece the old master did not
-- export, an older binary, imports nil). -> true | nil, err
function _M.import_all(values, handles)
  values, handles = values or {}, handles or {}
  for _, name in ipairs(order) do
    local ok, err = pcall(pieces[name].import, values[name], handles[name] or {})
    if not ok then
      return nil, "upgrade state '" .. name .. "': import failed: " .. tostring(err)
    end
  end
  return true
end


-- the registered names, in order (status, the notes)
function _M.names()
  local list = {}
  for i, n in ipairs(order) do
    list[i] = n
  end
  return list
end


return _M
