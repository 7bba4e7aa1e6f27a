-- luacluster.worker.plugins: the one list of what plugs into a worker's side
-- (worker/side.lua), attached once its channel to the master is open, before the app's top
-- level runs. Each module's attach_worker(side) registers control ops from the master (a name
-- taken twice raises, naming both places) and hooks.
local WORKER = {
  -- server:listen() in a worker: ops listen_result, extra_listener, unlisten_ok; hook close
  "luacluster.serve.listen",
  -- pool tasks: op task
  "luacluster.pool",
  -- the heartbeat and max_requests: ops ping, limits
  "luacluster.worker.limits",
  -- the counters for status and metrics: op stats
  "luacluster.worker.stats",
}
-- worker/side.lua registers op peers itself (the live worker ids, worker/peers.lua); pool
-- registers op pool_map_done at a worker's first pool.map.


local function attach(side)
  for _, name in ipairs(WORKER) do
    require(name).attach_worker(side)
  end
end


return {
  WORKER = WORKER,
  attach = attach,
}
