-- Lua values <-> bytes for messages, on LuaJIT's string.buffer serializer (C, fast, and it
-- refuses functions, userdata, threads and cycles by itself). A message is nil, a boolean,
-- a number, a string, or a table of those, nested at most 100 levels deep.
local buffer = require("string.buffer")
-- the bounds check of runtime/codec_check.c; absent only when this file runs without the runtime
local has_core, core = pcall(require, "luacluster.core")
local codec_check = has_core and core.codec_check or function() return true end

local pcall, type = pcall, type
local find = string.find

local _M = {}

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


-- -> string | nil, err
function _M.encode(value)
  local ok, err = pcall(enc.encode, enc, value)
  if not ok then
    enc:reset()
    return nil, explain(err)
  end
  local s = enc:get()
  return s
end


-- -> true, value | nil, err   (the value itself may be nil)
function _M.decode(bytes)
  if type(bytes) ~= "string" then
    return nil, "cannot decode message: not a string"
  end
  -- string.buffer sizes tables from the counts in front of them: a few bytes can claim
  -- gigabytes. core.codec_check (runtime/codec_check.c) refuses counts not backed by bytes.
  local sane, why = codec_check(bytes)
  if not sane then
    return nil, "cannot decode message: " .. why
  end
  dec:set(bytes)
  local ok, value = pcall(dec.decode, dec)
  if ok and #dec ~= 0 then
    ok, value = false, "left-over data in buffer"
  end
  dec:reset()
  if not ok then
    return nil, "cannot decode message: " .. tostring(value):gsub("^.-:%d+: ", "")
  end
  return true, value
end


-- LuaJIT 2.1 (OpenResty's 2.1-20230119, the one Debian ships) can compile a pcall of
-- string.buffer's encode/decode into a trace, and an error raised inside it there (a function
-- in a message, a garbled frame) then corrupts the Lua state and crashes the process. These
-- two functions stay interpreted: the work is in string.buffer's C code either way.
jit.off(_M.encode)
jit.off(_M.decode)


return _M
