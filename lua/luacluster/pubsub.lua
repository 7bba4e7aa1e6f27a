-- luacluster.pubsub: publish/subscribe across every process of the cluster.
--
--   local sub = pubsub.subscribe(topic, function(data, topic, kind) end)   -- master or worker
--   sub:cancel()                                                           -- (:unsubscribe() too)
--   pubsub.publish(topic, data [, kind])                                   -- master or worker
--
-- The master keeps, per topic, the set of worker objects that have subscribers of it: a worker
-- says "ps_sub" on its first subscription to a topic and "ps_unsub" when its last one is
-- cancelled; a worker that is gone is dropped from every topic. A publish goes to the master
-- ("ps_pub", a runtime control frame, so it never reaches on("message")), which delivers it to
-- its own subscribers and forwards it once ("ps_msg") to each worker that has subscribers of the
-- topic, draining workers included (a reload's new worker is a new object that registers its own
-- topics as its code subscribes). A worker delivers a forwarded publish once to each of its
-- subscribers. A worker's own publish goes through the master too, so that every subscriber sees
-- one publisher's messages in publish order (control frames keep their order on each channel).
-- Across hosts (master only): set_bridge(bridge) gives every publish made on this host (the
-- master's or a worker's) once, in publish order, to bridge.publish(topic, data, kind)
-- (master/pubsub_redis.lua carries it through Redis); deliver_remote(topic, data, kind) routes
-- another host's publish to this host's subscribers without giving it to the bridge again.
-- Not yet: the C fan-out to WebSockets (ws:subscribe plugs into deliver()).
local coro = require("luacluster.lib.coro")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local worker = require("luacluster.worker.side")

local _M = {}

-- this process's subscribers: topic -> array of subscriptions (copied on every change)
local subs = {}
-- what this process has seen (worker: publishes forwarded to it; master: forwarded to workers)
local stats = { received = 0, forwarded = 0, published = 0 }

local send_up -- worker: sends a control message to the master


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
  for i = 1, #list do
    local s = list[i]
    if not s.cancelled then
      coro.spawn(call, s.fn, data, topic, kind)
    end
  end
end


-- ---- the master's side ----

local topics = {} -- topic -> { [worker object] = true }
local lists = {}  -- topic -> array of the same workers, made at the first publish after a change
local bridge      -- set_bridge's: { publish = fn(topic, data, kind) } | nil


-- a publish to the master's subscribers and to each worker with subscribers of topic
local function route(topic, data, kind)
  stats.published = stats.published + 1
  deliver(topic, data, kind)
  local list = lists[topic]
  if not list then
    local set = topics[topic]
    if not set then
      return
    end
    list = {}
    for w in pairs(set) do
      list[#list + 1] = w
    end
    lists[topic] = list
  end
  for _, w in ipairs(list) do
    if w:_control({ op = "ps_msg", topic = topic, data = data, kind = kind }) then
      stats.forwarded = stats.forwarded + 1
    end
  end
end


-- a publish made on this host: routed here, then given to the bridge (other hosts)
local function forward(topic, data, kind)
  route(topic, data, kind)
  if bridge then
    bridge.publish(topic, data, kind)
  end
end


local function drop(w)
  for topic, set in pairs(topics) do
    if set[w] then
      set[w] = nil
      lists[topic] = nil
      if next(set) == nil then
        topics[topic] = nil
      end
    end
  end
end


local function valid_kind(kind)
  return kind == "text" or kind == "binary"
end


local function attach(m)
  m.register_op("ps_sub", function(w, msg)
    if type(msg.topic) == "string" and w.state ~= "dead" then
      topics[msg.topic] = topics[msg.topic] or {}
      topics[msg.topic][w] = true
      lists[msg.topic] = nil
    end
  end)
  m.register_op("ps_unsub", function(w, msg)
    local set = type(msg.topic) == "string" and topics[msg.topic]
    if set then
      set[w] = nil
      lists[msg.topic] = nil
      if next(set) == nil then
        topics[msg.topic] = nil
      end
    end
  end)
  m.register_op("ps_pub", function(_, msg)
    if type(msg.topic) == "string" and type(msg.data) == "string" and valid_kind(msg.kind) then
      forward(msg.topic, msg.data, msg.kind)
    end
  end)
  m.add_hook("gone", drop)
end


-- ---- the worker's side ----

local worker_side_ready = false


local function init_worker_side()
  if worker_side_ready then
    return
  end
  worker_side_ready = true
  worker.register_op("ps_msg", function(msg)
    if type(msg.topic) == "string" and type(msg.data) == "string" then
      stats.received = stats.received + 1
      deliver(msg.topic, msg.data, msg.kind)
    end
  end)
  send_up = function(msg)
    local ch = worker.channel()
    if not ch or ch:is_closed() then
      return nil, "the channel to the master is closed"
    end
    return ch:control(msg)
  end
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
    if runtime.role == "worker" then
      send_up({ op = "ps_unsub", topic = topic })
    end
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
  if runtime.role == "worker" then
    init_worker_side()
  end
  local s = setmetatable({ topic = topic, fn = fn }, sub_mt)
  local list = subs[topic]
  if not list then
    list = {}
    if runtime.role == "worker" then
      send_up({ op = "ps_sub", topic = topic })
    end
  end
  local copy = {}
  for i = 1, #list do
    copy[i] = list[i]
  end
  copy[#list + 1] = s -- the new one last
  subs[topic] = copy
  return s
end


-- pubsub.publish(topic, data [, kind]) -> true | nil, err (a worker whose master is gone)
function _M.publish(topic, data, kind)
  in_cluster("publish")
  check_topic("publish", topic)
  if type(data) ~= "string" then
    error("pubsub.publish: data must be a string", 2)
  end
  if kind == nil then
    kind = "text"
  elseif not valid_kind(kind) then
    error('pubsub.publish: kind must be "text" or "binary"', 2)
  end
  if runtime.role == "master" then
    forward(topic, data, kind)
    return true
  end
  init_worker_side()
  return send_up({ op = "ps_pub", topic = topic, data = data, kind = kind })
end


-- pubsub.stats() -> { received, forwarded, published } of this process (specs, later metrics)
function _M.stats()
  return { received = stats.received, forwarded = stats.forwarded, published = stats.published }
end


-- master only: set_bridge(bridge | nil): bridge.publish(topic, data, kind) is given every
-- publish made on this host from now on, once each, in publish order
function _M.set_bridge(b)
  if runtime.role ~= "master" then
    error("pubsub.set_bridge is only available in the master", 2)
  end
  if b ~= nil and (type(b) ~= "table" or type(b.publish) ~= "function") then
    error("pubsub.set_bridge: expected nil or a table with a publish function", 2)
  end
  bridge = b
end


-- master only: deliver_remote(topic, data, kind): another host's publish, to this host's
-- subscribers (the master's and the workers'), not given to the bridge
function _M.deliver_remote(topic, data, kind)
  if runtime.role ~= "master" then
    error("pubsub.deliver_remote is only available in the master", 2)
  end
  check_topic("deliver_remote", topic)
  if type(data) ~= "string" then
    error("pubsub.deliver_remote: data must be a string", 2)
  end
  if not valid_kind(kind) then
    error('pubsub.deliver_remote: kind must be "text" or "binary"', 2)
  end
  route(topic, data, kind)
end


-- master only: the topics and how many workers have subscribers of each
function _M.topics()
  local out = {}
  for topic, set in pairs(topics) do
    local n = 0
    for _ in pairs(set) do
      n = n + 1
    end
    out[topic] = n
  end
  return out
end


return {
  subscribe = _M.subscribe,
  publish = _M.publish,
  stats = _M.stats,
  topics = _M.topics,
  set_bridge = _M.set_bridge,
  deliver_remote = _M.deliver_remote,
  deliver = deliver, -- for ws:subscribe later
  attach = attach, -- the master's half (master/plugins.lua)
}
