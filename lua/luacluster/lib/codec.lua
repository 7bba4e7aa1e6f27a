-- Lua values <-> bytes for messages, on LuaJIT's string.buffer serializer (C, fast, and it
-- refuses functions, userdata, threads and cycles by itself). A message is nil, a boolean,
-- a number, a string, or a table of those, nested at most 100 levels deep.
local buffer = require("string.buffer")
-- the C runtime: absent only when this file runs without it (plain luajit)
local has_core, core = pcall(require, "luacluster.core")
-- a pcall the JIT cannot inline (runtime/protect.c says why); without the runtime, a pcall
-- kept away from the JIT
local protect = has_core and core.protect or function(fn)
  local function protected(...)
    return pcall(fn, ...)
  end
  if debug.getinfo(fn, "S").what == "Lua" then
    jit.off(fn)
  end
  jit.off(protected)
  return protected
end

local type = type
local find = string.find

local encode, decode

local enc = buffer.new()
local dec = buffer.new()


local function explain(err)
  err = tostring(err):gsub("^.-:%d+: ", "")
  if find(err, "too deep", 1, true) then
    return "cannot send a table that contains itself (a cycle) or nests more than 100 levels"
  end
  local what = err:match("cannot serialize '(%w+)'")
  if what then
    return "cannot send a value of type " .. what .. " (a message is made of nil, booleans,"
      .. " numbers, strings and tables of those)"
  end
  return "cannot encode message: " .. err
end


-- string.buffer's module-level encode and decode, called straight from C: no Lua function
-- runs around them (one called from C could not be compiled: "return to lower frame")
local encode_protected = protect(buffer.encode)

local function decode_raw(bytes)
  dec:set(bytes)
  local value = dec:decode()
  local left = #dec
  dec:reset()
  if left ~= 0 then
    error("left-over data in buffer")
  end
  return value
end

-- runtime/codec_check.c's bounds check, then string.buffer's decode protected, in one C call
-- (string.buffer sizes tables from the counts in front of them: a few bytes could claim
-- gigabytes; the check also refuses left-over bytes). Without the runtime: the decode alone,
-- protected, with the left-over check done here.
local decode_checked = has_core and core.checked(buffer.decode) or protect(decode_raw)


-- -> string | nil, err
function encode(value)
  local ok, s = encode_protected(value)
  if not ok then
    enc:reset()
    return nil, explain(s)
  end
  return s
end


-- decode_checked's failure -> the message decode gives for it
local function decode_error(err)
  dec:reset()
  return "cannot decode message: " .. tostring(err):gsub("^.-:%d+: ", "")
end


-- -> true, value | nil, err   (the value itself may be nil)
function decode(bytes)
  if type(bytes) ~= "string" then
    return nil, "cannot decode message: not a string"
  end
  local ok, value = decode_checked(bytes)
  if not ok then
    return nil, decode_error(value)
  end
  return true, value
end


return {
  encode = encode,
  decode = decode,
  -- the receive path's form, for a caller that already has a string (a frame's payload):
  -- decode_string(bytes) -> true, value | false, e; decode_error(e) -> decode's err for it
  decode_string = decode_checked,
  decode_error = decode_error,
}
