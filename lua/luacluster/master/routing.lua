-- luacluster.master.routing: worker-to-worker messages (cluster.worker:send_to, :broadcast).
-- The C runtime routes them (runtime/ipc.c, route()): a worker's channel gets a route, its
-- worker id, when the worker takes its slot (route_to: a first start, a restart, a reload's
-- switch), and ROUTE and BCAST frames from a routed channel go from worker to worker without
-- entering Lua. The ones that do reach Lua are forwarded here.
local core = require("luacluster.core")

local K = core.kind


-- is a frame of this kind a worker-to-worker one (send_to, broadcast)?
local function is_routed(kind)
  return kind == K.ROUTE or kind == K.BCAST
end


-- worker w's channel (its ipc handle) takes the route of w's id: routed frames now reach it
local function route_to(w, ipc)
  ipc:set_route(w.id)
end


-- A message frame for x from worker `from`, as it was encoded by the sender -> true | nil, err
local function send_frame(x, from, payload)
  if x.state == "dead" or not x._ch or x._ch:is_closed() then
    return nil, "worker " .. x.id .. " has exited"
  end
  return x._ch.handle:send(K.MSG, from, 0, payload)
end


-- ROUTE and BCAST frames reach Lua only from a channel that has no route in C yet: a reload's
-- new worker before the switch (ipc.c's route() forwards every other one without Lua). They
-- go where route() sends them: a broadcast to every routed worker (the serving generation,
-- the older ones still draining), a send_to to the serving worker of that id or back as a
-- ROUTE_FAIL; never dropped. (workers: id -> the serving worker; retired: an old
-- generation's draining workers)
local function forward(workers, retired, w, kind, peer, seq, payload)
  if kind == K.BCAST then
    for _, x in pairs(workers) do
      if x ~= w then
        send_frame(x, w.id, payload)
      end
    end
    for x in pairs(retired) do
      if x ~= w then
        send_frame(x, w.id, payload)
      end
    end
    return
  end
  local to = workers[peer]
  if not (to and send_frame(to, w.id, payload)) and w._ch and not w._ch:is_closed() then
    w._ch.handle:send(K.ROUTE_FAIL, peer, seq, "")
  end
end


return {
  forward = forward,
  is_routed = is_routed,
  route_to = route_to,
}
