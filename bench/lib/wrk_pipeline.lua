-- bench/lib/wrk_pipeline.lua: a wrk script (not a module of bench/lib) that sends DEPTH requests
-- per write on each connection, as TechEmpower's plaintext test does (`wrk -s pipeline.lua --
-- 16`); wrk reads the DEPTH responses before it writes again. Usage: wrk -s THIS URL -- DEPTH
local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  local one = wrk.format(nil)
  batch = string.rep(one, depth)
end

function request()
  return batch
end
