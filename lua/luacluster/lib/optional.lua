-- Modules that may be absent (a scheduler named by the app, a command of the CLI): tells "no
-- such module" apart from a module that is there and fails to load (a syntax error, an error
-- at its top level, a require inside it that fails), whose own message must reach the user
-- instead of being taken for "unknown".
local _M = {}


-- require(name) -> module | false (no module of that name) | nil, err (it failed to load)
function _M.require(name)
  local ok, mod = pcall(require, name)
  if ok then
    return mod
  end
  local err = tostring(mod)
  -- only require's own "not found" for this very name means absent: a module that is there
  -- but requires a missing one says "module 'other' not found", which is a load error
  if err:find("module '" .. name .. "' not found", 1, true) == 1 then
    return false
  end
  return nil, err
end


return {
  require = _M.require,
}
