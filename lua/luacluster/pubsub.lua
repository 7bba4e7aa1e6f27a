-- luacluster.pubsub: publish/subscribe across every process of the cluster.
--
--   local sub = pubsub.subscribe(topic, function(data, topic, kind) end)   -- master or worker
--   sub:cancel()                                                           -- (:unsubscribe() too)
--   pubsub.publish(topic, data [, kind])                                   -- master or worker
--   pubsub.set_bridge(bridge), pubsub.deliver_remote(topic, data, kind)    -- master (other hosts)
--
-- The routing is in C (runtime/ps_route.c, pubsub.h): the master keeps, per topic, the worker
-- channels that have subscribers of it (a worker registers a topic when it gets its first
-- subscriber, Lua or WebSocket, and unregisters it when the last leaves; a worker that exits
-- leaves every topic: a draining worker keeps its topics until then) and forwards each
-- publish as the same bytes to each of them, without Lua. A worker's own publish goes through
-- the master too, so that every subscriber sees one publisher's messages in publish order
-- (frames keep their order on each channel). In a worker the runtime queues each publish on
-- its subscribed WebSockets (ws:subscribe, runtime/ws_fanout.c) and calls this module for its
-- Lua subscribers. The master's Lua sees a worker's publish when it has subscribers of the
-- topic, or every one once a bridge is set.
-- The bridge (another host's publishes, e.g. through Redis): bridge.publish(topic, data, kind)
-- is called in the master once per publish made on this host (master or worker), in publish
-- order, each in a coroutine of its own (it should queue and return); deliver_remote hands a
-- publish from elsewhere to this host's subscribers without calling the bridge.
-- A reload (master/reload.lua) stops the master's subscriptions of the old code as it stops
-- its timers: each is tagged with the generation of the code that made it (runtime.master_timers,
-- whose entries have _gen and :stop()); a subscription of the new code's top level (made while
-- it stages) is dormant until the switch, so a publish meanwhile reaches the serving code's
-- subscribers only, and a refused reload's never run.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local worker = require("luacluster.worker.side")

local ps_local, ps_publish, ps_stats = core.ps_local, core.ps_publish, core.ps_stats
local utf8_valid = core.utf8_valid

local _M = {}

-- this process's subscribers: topic -> array of subscriptions (copied on every change)
local subs = {}
local OPCODE = { text = 1, binary = 2 }
local bridge -- the master: pubsub.set_bridge's, or nil
local serving_generation -- the master: master/core.lua's generation() (attach), the code that serves
local master_config -- the master: master/core.lua's config() (attach): its max_message_size


local function check_topic(fname, topic)
  if type(topic) ~= "string" or topic == "" then
    error("pubsub." .. fname .. ": topic must be a non-empty string", 3)
  end
end


local function in_cluster(fname)
  if runtime.role ~= "master" and runtime.role ~= "worker" then
    error("pubsub." .. fname .. " is only available in the master and in workers", 3)
  end
end


local function master_only(fname)
  if runtime.role ~= "master" then
    error("pubsub." .. fname .. " is only available in the master", 3)
  end
end


local function on_error(err)
  log.error("pubsub subscriber failed: " .. debug.traceback(tostring(err), 2))
end


local function call(fn, data, topic, kind)
  xpcall(fn, on_error, data, topic, kind)
end


-- delivers one publish to this process's subscribers of topic, once each, in the order they
-- subscribed (the array is replaced, never changed, so a subscriber that cancels or subscribes
-- during a delivery does not disturb it)
local function deliver(topic, data, kind)
  local list = subs[topic]
  if not list then
    return
  end
  local serving = serving_generation and serving_generation() or math.huge
  for i = 1, #list do
    local s = list[i]
    if not s.cancelled and (s.gen == nil or s.gen <= serving) then
      coro.spawn(call, s.fn, data, topic, kind)
    end
  end
end


local function bridge_failed(err)
  log.error("pubsub bridge failed: " .. debug.traceback(tostring(err), 2))
end


local function to_bridge(topic, data, kind)
  local b = bridge
  if b then
    coro.spawn(function()
      xpcall(b.publish, bridge_failed, topic, data, kind)
    end)
  end
end


-- the runtime hands this process's Lua the publishes it wants: a worker's, those of its
-- topics; the master's, those of a worker (from_worker) for its subscribers and the bridge
local function on_publish(topic, data, kind, from_worker)
  deliver(topic, data, kind)
  if from_worker then
    to_bridge(topic, data, kind)
  end
end


local ready = false


-- the runtime's side: the handler, and in a worker its channel to the master
local function init()
  if ready then
    return
  end
  ready = true
  core.ps_handler(on_publish)
  if runtime.role == "worker" then
    local ch = worker.channel()
    if ch then
      core.ps_attach(ch.handle)
    end
  end
end


-- the master's half (master/plugins.lua): attached before the app, so that the master takes
-- a worker's publish whatever the master's own code requires
local function attach(master)
  serving_generation = master and master.generation
  master_config = master and master.config
  init()
end


-- ---- the public API ----

local sub_mt = {}
sub_mt.__index = sub_mt


-- sub:cancel(): this subscriber gets no more publishes (a second call does nothing)
function sub_mt:cancel()
  if getmetatable(self) ~= sub_mt then
    error("pubsub: call cancel with a colon (sub:cancel())", 2)
  end
  if self.cancelled then
    return true
  end
  self.cancelled = true
  if self.stopper then
    runtime.master_timers[self.stopper] = nil
  end
  local topic = self.topic
  local list = subs[topic]
  if not list then
    return true
  end
  local rest = {}
  for i = 1, #list do
    if list[i] ~= self then
      rest[#rest + 1] = list[i]
    end
  end
  if #rest > 0 then
    subs[topic] = rest
  else
    subs[topic] = nil
    ps_local(topic, false)
  end
  return true
end
sub_mt.unsubscribe = sub_mt.cancel


-- pubsub.subscribe(topic, fn(data, topic, kind)) -> subscription
function _M.subscribe(topic, fn)
  in_cluster("subscribe")
  check_topic("subscribe", topic)
  if type(fn) ~= "function" then
    error("pubsub.subscribe: expected a function", 2)
  end
  init()
  local s = setmetatable({ topic = topic, fn = fn }, sub_mt)
  if runtime.role == "master" then
    -- the code that subscribes: the new one while a reload stages its top level, else the serving one
    local gen = runtime.staging and runtime.code_generation
      or (serving_generation and serving_generation() or runtime.code_generation)
    s.gen = gen
    -- (a key of the weak table: kept while s is, which the topic's list holds until cancelled)
    s.stopper = { _gen = gen, stop = function() s:cancel() end }
    runtime.master_timers[s.stopper] = true
  end
  local list = subs[topic]
  if not list then
    list = {}
    ps_local(topic, true)
  end
  local copy = {}
  for i = 1, #list do
    copy[i] = list[i]
  end
  copy[#list + 1] = s -- the new one last
  subs[topic] = copy
  return s
end


local function check_publish(fname, topic, data, kind)
  check_topic(fname, topic)
  if type(data) ~= "string" then
    error("pubsub." .. fname .. ": data must be a string", 3)
  end
  if kind == nil then
    kind = "text"
  elseif not OPCODE[kind] then
    error("pubsub." .. fname .. ': kind must be "text" or "binary"', 3)
  end
  return kind
end


-- a publish to this host's subscribers: the workers' through the runtime, then in the master
-- its own (and the bridge when bridged) -> n | nil, err (over max_message_size: nobody has it)
local function publish_here(topic, data, kind, bridged)
  init()
  if runtime.role ~= "master" then
    return ps_publish(topic, data, OPCODE[kind])
  end
  local n, err = ps_publish(topic, data, OPCODE[kind], _M.max_size())
  if not n then
    return nil, err
  end
  deliver(topic, data, kind)
  if bridged then
    to_bridge(topic, data, kind)
  end
  return n
end


-- pubsub.publish(topic, data [, kind]) -> true | nil, err (a worker whose master is gone; topic
-- and data over max_message_size)
function _M.publish(topic, data, kind)
  in_cluster("publish")
  kind = check_publish("publish", topic, data, kind)
  -- a WebSocket client must fail a text message that is not UTF-8 (1007): refused, as by ws:send
  if kind == "text" and not utf8_valid(data) then
    error('pubsub.publish: text is not valid UTF-8 (publish bytes as "binary")', 2)
  end
  local n, err = publish_here(topic, data, kind, true)
  return n and true, err
end


-- master: a publish made on another host, to this host's subscribers (not to the bridge)
-- -> true | nil, err (over this host's max_message_size)
function _M.deliver_remote(topic, data, kind)
  master_only("deliver_remote")
  kind = check_publish("deliver_remote", topic, data, kind)
  if kind == "text" and not utf8_valid(data) then
    return nil, "text is not valid UTF-8"
  end
  local n, err = publish_here(topic, data, kind, false)
  return n and true, err
end


-- master: the largest publish (topic and data) this host takes: its max_message_size
function _M.max_size()
  return master_config and master_config().max_message_size or core.ps_default_max
end


-- master: bridge.publish(topic, data, kind) gets every publish made on this host; nil: none
function _M.set_bridge(b)
  master_only("set_bridge")
  if b ~= nil and (type(b) ~= "table" or type(b.publish) ~= "function") then
    error("pubsub.set_bridge: expected a table with a publish function, or nil", 2)
  end
  init()
  bridge = b
  core.ps_bridge(b ~= nil)
end


-- pubsub.stats() -> this process's counters: the master's published (publishes routed),
-- forwarded (frames to workers) and dropped (not given to a worker that does not read); a worker's published (sent), received (from the master),
-- delivered (queued on WebSockets) and slow_closed (WebSockets closed by the backlog rule)
function _M.stats()
  return ps_stats()
end


-- ws:subscribe's side (luacluster.ws.socket): makes the runtime ready for a WebSocket's topics
function _M.ready_for_sockets()
  init() -- (ws:subscribe has checked that this is a worker)
end


-- master only: the topics and how many workers have subscribers of each
function _M.topics()
  return core.ps_topics()
end


return {
  subscribe = _M.subscribe,
  publish = _M.publish,
  stats = _M.stats,
  topics = _M.topics,
  set_bridge = _M.set_bridge,
  deliver_remote = _M.deliver_remote,
  max_size = _M.max_size, -- (master/pubsub_redis.lua: what it reads from Redis)
  ready_for_sockets = _M.ready_for_sockets,
  deliver = deliver,
  attach = attach, -- the master's half (master/plugins.lua)
}
