-- The master drops its compiled code (jit.flush) once a worker is gone and once a reload has
-- switched generations. LuaJIT's traces keep the closures they were specialised for as
-- constants, and through their upvalues everything those reach: the first workers' objects
-- (a channel handler of worker 1 is specialised on before there are enough workers to make
-- it generic) and an old generation's handlers with all of its state. Without this, the
-- master kept dead workers and one or two old generations for the rest of its life. The hot
-- paths compile again within moments; both events are rare next to the work between them.
local init

local flush = jit and jit.flush or function() end


function init(master, reload)
  master.add_hook("gone", function()
    flush()
  end)
  reload.add_hook(function(event)
    if event == "done" then
      flush()
    end
  end)
end


return {
  init = init,
}
