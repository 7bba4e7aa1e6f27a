-- luacluster.worker.plugins: the one list of what plugs into a worker's side
-- (worker/side.lua): attached once its channel to the master is open, before the app's top
-- level runs. A control op from the master is registered once (a name taken twice raises,
-- naming both places). What only some apps use loads when it is first needed, so that an idle
-- worker holds no more than it uses.
local limits = require("luacluster.worker.limits")
local stats = require("luacluster.worker.stats")
local tls_tickets = require("luacluster.worker.tls_tickets")

--   worker/side.lua         op peers (the live worker ids, worker/peers.lua): its own
--   worker/stats.lua        op stats (the counters for status and metrics)
--   worker/limits.lua       ops ping, limits (the heartbeat, max_requests)
--   worker/tls_tickets.lua  op tls_keys (the cluster's TLS session ticket keys, at the start
--                           and at each rotation)
--   luacluster.pool         op task (loaded at the first task); op pool_map_done (at the
--                           worker's first pool.map)
--   luacluster.pubsub       no op: publishes are runtime frames (runtime/ps_route.c); loaded at
--                           the worker's first pubsub.subscribe, publish or ws:subscribe
--   worker/jobs.lua         op job_run (a run of a cluster.job; loaded at the first run)
--   serve/listen.lua        ops listen_result, extra_listener, unlisten_ok; hook close (at the
--                           worker's first server:listen())


local function attach(side)
  stats.attach_worker(side)
  limits.attach_worker(side)
  side.register_op("tls_keys", tls_tickets.on_keys)
  side.register_op("task", function(msg)
    return require("luacluster.pool").on_task(msg) -- lazy: a worker loads pool at its first task
  end)
  side.register_op("job_run", function(msg)
    return require("luacluster.worker.jobs").on_run(msg) -- lazy: a worker loads jobs at its first run
  end)
end


return {
  attach = attach,
}
