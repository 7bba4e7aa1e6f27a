-- luacluster.master.plugins: the one list of what plugs into the master's core (master/core.lua),
-- in the order it is attached (as lua-resty-core keeps one list of the modules it loads for
-- their effects). Each module's attach(master) registers its control ops and hooks there;
-- an op name taken twice raises, naming both places. Hooks of one list run in this order.
-- What each registers (ops: a worker's control message; hooks: see master/core.lua):
local jit_flush = require("luacluster.master.jit")
local jobs = require("luacluster.master.jobs")
local metrics = require("luacluster.master.metrics")
local ops = require("luacluster.master.ops")
local pubsub_redis = require("luacluster.master.pubsub_redis")
local reload = require("luacluster.master.reload")
local shdict = require("luacluster.master.shdict")

local BEFORE_APP = {
  -- the listening sockets, dispatch and the scheduler call: ops listen, unlisten, closed;
  -- hooks draining, adopt, gone, stop (close every listening socket)
  "luacluster.master.listen",
  -- the live worker ids each worker's send_to checks: hooks fork, gone, adopt
  "luacluster.worker.peers",
  -- the TLS session ticket keys, one ring for every worker and generation: setup_check
  -- (tls_ticket_rotate); hooks fork (the ring, before the worker can get a socket), gone
  "luacluster.master.tls_tickets",
  -- max_requests, max_memory, the heartbeat: setup_check; ops pong, recycle; hooks fork,
  -- ready, gone
  "luacluster.master.limits",
  -- cluster.setup{ metrics = }: setup_check
  "luacluster.master.metrics",
  -- pool.map in the master and a worker's pool.map: ops task_done, pool_map; hooks online, gone
  "luacluster.pool",
  -- pubsub.publish/subscribe: the runtime routes publishes (runtime/ps_route.c); the master's
  -- Lua takes a worker's publish for its own subscribers and the bridge
  "luacluster.pubsub",
  -- cluster.setup{ pubsub = { redis = } }: publishes across hosts (pubsub's bridge); hooks
  -- setup_check (pubsub =), stop
  "luacluster.master.pubsub_redis",
  -- the workers' counters (status, metrics): op stats_result
  "luacluster.master.stats",
  -- cluster.job's schedule: op job_done; hooks gone, ready, adopt, stop, setup_check (jobs =)
  "luacluster.master.jobs",
}
-- Also hooked, by the modules themselves when they act:
--   master/sequence.lua  hooks ready, gone (at the first sequential start or stop)
--   master/reload.lua    hooks ready, gone (while a reload waits for its new workers, removed after)
-- After the app's top level has run (it may have called cluster.setup): attach_after_app.
--   master/ops.lua       hooks fork, gone, stop; reload events (logs, SIGUSR1, systemd, metrics listener)
--   master/jit.lua       hook gone; reload event done (jit.flush)


-- before the app's top level runs
local function attach(master)
  for _, name in ipairs(BEFORE_APP) do
    require(name).attach(master)
  end
end


-- once the app's top level has run
local function attach_after_app(master, options)
  ops.master_init(options, master, reload, metrics)
  jit_flush.init(master, reload)
  pubsub_redis.start(master, reload) -- the link to Redis, if the top level named one; again per reload
  jobs.start() -- the schedule of the top level's cluster.job calls; a reload's "done" takes it over
  -- a reload's new code may drop a shared dictionary: it is kept, and logged (master/shdict.lua)
  reload.add_hook(function(event)
    if event == "done" then
      shdict.reload_done()
    elseif event == "refused" then
      shdict.reload_refused()
    end
  end)
end


return {
  BEFORE_APP = BEFORE_APP,
  attach = attach,
  attach_after_app = attach_after_app,
}
