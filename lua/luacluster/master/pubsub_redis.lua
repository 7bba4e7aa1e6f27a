-- luacluster.master.pubsub_redis: cluster.setup{ pubsub = { redis = "host:port" [, prefix =
-- "luacluster:"] } } carries publishes between hosts through Redis: every master naming the
-- same Redis (and prefix) delivers every host's publishes to its own subscribers.
--   * The bridge (pubsub.set_bridge) is given each publish made on this host, after it was
--     delivered here; it sends PUBLISH <prefix><topic> <message> on one connection, pipelined,
--     in publish order.
--   * One subscription connection per master: PSUBSCRIBE <prefix>* (the prefix's glob
--     characters escaped). A pattern, not SUBSCRIBE per topic: the bridge needs no view of which
--     topics have subscribers here (those live in pubsub's routing, in C later), there is no
--     window where a new subscriber misses a publish while its SUBSCRIBE travels, and a reload
--     or a reconnect sends one command. The cost: every master receives every topic under the
--     prefix, and drops those with no subscriber here (deliver_remote finds nobody).
--   * A message is "\1", the kind ("t" text | "b" binary), this master's origin id (8 random
--     bytes, made once per master process: a reload keeps it), then the data as it is (Redis
--     strings are binary-safe). A master drops its own messages (they were delivered here
--     already) and messages not in this form (another client's PUBLISH on the prefix).
--   * Both connections are named with CLIENT SETNAME luacluster-pubsub-<pid> and
--     luacluster-publish-<pid> (visible in CLIENT LIST).
-- While Redis does not answer (refused, closed, a reply no Redis gives, silence past a PING),
-- both connections are closed, publishes reach this host's subscribers only (other hosts miss
-- them: pub/sub keeps nothing), the outage is logged once, and both connections are made again
-- (100 ms, doubling to 3 s between attempts); the next line says when it answers again, once the
-- link has stayed up for a second (a Redis or a proxy that accepts and closes at once is one
-- outage, tried with the same backoff, not a reconnect loop logging two lines a try).
-- A message over this host's max_message_size (topic and data) is read in 1 MiB pieces and
-- dropped, not held (logged once per link). A PUBLISH that Redis refuses (an error reply: an ACL without it) is logged once per link; the
-- link stays. Publishes made before the first connection is up wait for it. At most 16 MiB of publishes wait
-- for Redis (a burst faster than Redis takes them): the later ones stay on this host (logged
-- once until the queue is empty again); a single publish over 16 MiB always does (logged once).
-- A reload keeps the link as it is when the option is unchanged, else closes it and opens the
-- new one; stop closes it.
local coro = require("luacluster.lib.coro")
local core = require("luacluster.core")
local jobs_redis = require("luacluster.master.jobs_redis")
local log = require("luacluster.lib.log")
local pubsub = require("luacluster.pubsub")
local timer = require("luacluster.timer")

local _M = {}

local TIMEOUT_MS = 2000        -- connect, a write, a reply to a command
local PING_MS = 5000           -- silence on the subscription before a PING; as long again: down
local BACKOFF_FIRST_MS, BACKOFF_MAX_MS = 100, 3000
local STABLE_MS = 1000         -- a link up this long is back (logged, backoff reset); shorter: the outage goes on
local QUEUE_MAX_BYTES = 16 * 1048576 -- publishes waiting for Redis, beyond which they stay here
local DEFAULT_PREFIX = "luacluster:"
local VERSION = "\1"
local KIND_TAG = { text = "t", binary = "b" }
local TAG_KIND = { t = "text", b = "binary" }
local HEADER_LEN = 10          -- version, kind, origin
local DISCARD_CHUNK = 1048576  -- a string from Redis over what this host takes is read in pieces this big
local TOO_BIG = {}             -- reply()'s value for such a string (dropped as it was read)

local command, shown = jobs_redis.command, jobs_redis.shown

local origin       -- this master's 8 random bytes
local link         -- the link in force | nil
local counts = { sent = 0, received = 0, dropped = 0, refused = 0, own = 0, foreign = 0, too_big = 0 }


-- cluster.setup{ pubsub = } -> nil | what is wrong with it
function _M.check(opts)
  if type(opts) ~= "table" then
    return "pubsub must be a table: { redis = \"host:port\" }"
  end
  for k in pairs(opts) do
    if k ~= "redis" and k ~= "prefix" then
      return "pubsub: unknown option '" .. tostring(k) .. "' (expected redis, prefix)"
    end
  end
  if opts.redis ~= nil and not jobs_redis.parse_address(opts.redis) then
    return "pubsub.redis must be \"host:port\", not " .. tostring(opts.redis)
  end
  if opts.prefix ~= nil and type(opts.prefix) ~= "string" then
    return "pubsub.prefix must be a string"
  end
end


local function make_origin()
  local f = io.open("/dev/urandom", "rb")
  local id = f and f:read(8)
  if f then
    f:close()
  end
  if not id or #id ~= 8 then -- (no /dev/urandom: the pid and the clock, still unique per master)
    id = string.format("%08x", (core.pid() * 2654435761 + math.floor(core.time() * 1e6)) % 2 ^ 32)
  end
  return id
end


-- "luacluster:" -> "luacluster:*", the prefix's own glob characters escaped
local function pattern_of(prefix)
  return (prefix:gsub("[%*%?%[%]\\]", "\\%0")) .. "*"
end


-- ---- the link's connections ----

local function close_sockets(l)
  if l.pub then
    l.pub:close(true)
    l.pub = nil
  end
  if l.sub then
    l.sub:close(true)
    l.sub = nil
  end
end


-- the link failed (err): closed, its queue dropped, logged once per outage. Each connection
-- has an epoch: a failure seen by a coroutine of an earlier one changes nothing.
local function fail(l, epoch, err)
  if l.epoch ~= epoch then
    return
  end
  l.epoch = epoch + 1
  l.state = "down"
  counts.dropped = counts.dropped + #l.queue
  l.queue, l.queued = {}, 0
  l.sending = false
  close_sockets(l)
  if not l.stopped and not l.down then
    log.warn("pubsub: Redis at " .. l.addr .. " does not answer (" .. tostring(err) .. "); publishes reach"
      .. " this host's subscribers only until it does")
  end
  l.down = err
end


-- the rest of a reply whose first line is line -> value (a string, a number, an array) | nil, err;
-- a string longer than max (default: any length) is read and dropped: TOO_BIG
local function reply(sock, line, max)
  local t, rest = line:sub(1, 1), line:sub(2)
  if t == "*" or t == "$" or t == ":" then
    local n = tonumber(rest)
    if not n or n % 1 ~= 0 or n < -1 then
      return nil, "not a Redis reply: " .. shown(line)
    end
    if t == ":" then
      return n
    elseif t == "$" then
      if n < 0 then
        return false
      end
      if max and n > max then
        local left = n + 2
        while left > 0 do
          local d, err = sock:read(math.min(left, DISCARD_CHUNK))
          if not d then
            return nil, err or "closed"
          end
          left = left - #d
        end
        return TOO_BIG
      end
      local d, err = sock:read(n + 2)
      if not d or #d ~= n + 2 then
        return nil, err or "closed"
      end
      return d:sub(1, n)
    end
    local arr = {}
    for i = 1, n do
      local l2, err = sock:read_line()
      if not l2 then
        return nil, err
      end
      local v, verr = reply(sock, l2, max)
      if v == nil then
        return nil, verr
      end
      arr[i] = v
    end
    return arr
  elseif t == "+" then
    return rest
  elseif t == "-" then
    return nil, "Redis answered " .. shown(rest)
  end
  return nil, "not a Redis reply: " .. shown(line)
end


local function read_reply(sock)
  local line, err = sock:read_line()
  if not line then
    return nil, err
  end
  return reply(sock, line)
end


-- a connection named luacluster-<role>-<pid> (CLIENT SETNAME) -> the socket | nil, err
local function named(l, role)
  local net = require("luacluster.net") -- lazy: only a master with cluster.setup{ pubsub = { redis = } }
  -- (a pool of its own: never an app's idle connection, which may have done AUTH or SELECT)
  local sock, err = net.connect(l.host, l.port, { timeout = TIMEOUT_MS, pool = "luacluster.pubsub." .. role .. " " .. l.addr })
  if not sock then
    return nil, err
  end
  sock:set_timeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
  local ok, werr = sock:write(command({ "CLIENT", "SETNAME", "luacluster-" .. role .. "-" .. core.pid() }))
  local answer, rerr = nil, werr
  if ok then
    answer, rerr = read_reply(sock)
  end
  if answer ~= "OK" then
    sock:close(true)
    return nil, rerr or ("CLIENT SETNAME answered " .. shown(tostring(answer)))
  end
  return sock
end


-- one named connection of the link, kept in l[field] -> the socket | nil, err ("stopped": a stop
-- came while it was made, and it is closed)
local function open(l, epoch, field, role)
  local sock, err = named(l, role)
  if sock and l.epoch ~= epoch then
    sock:close(true)
    sock, err = nil, "stopped"
  end
  l[field] = sock
  return sock, err
end


-- the publishing connection, then the subscription -> nil | err
local function connect(l, epoch)
  local _, err = open(l, epoch, "pub", "publish")
  if err then
    return err
  end
  local sub
  sub, err = open(l, epoch, "sub", "pubsub")
  if not sub then
    return err
  end
  local ok, werr = sub:write(command({ "PSUBSCRIBE", l.pattern }))
  if not ok then
    return werr
  end
  local answer, rerr = read_reply(sub)
  if type(answer) ~= "table" or answer[1] ~= "psubscribe" or answer[2] ~= l.pattern then
    return rerr or "PSUBSCRIBE answered something else"
  end
  sub:set_timeouts(TIMEOUT_MS, TIMEOUT_MS, PING_MS)
  return nil
end


-- a message over this host's max_message_size: counted, logged once per link
local function too_big(l, err)
  counts.too_big = counts.too_big + 1
  if not l.too_big then
    l.too_big = true
    log.warn("pubsub: a publish from Redis at " .. l.addr .. " is over this host's max_message_size ("
      .. pubsub.max_size() .. " bytes, topic and data): not delivered here" .. (err and " (" .. err .. ")" or ""))
  end
end


-- one message from the subscription: another host's publish -> delivered here
local function on_message(l, msg)
  if msg[1] ~= "pmessage" then
    return -- "pong" (our PING's answer)
  end
  local channel, payload = msg[3], msg[4]
  if channel == TOO_BIG or payload == TOO_BIG then
    return too_big(l)
  end
  if type(channel) ~= "string" or type(payload) ~= "string" then
    return
  end
  local kind = TAG_KIND[payload:sub(2, 2)]
  if #payload < HEADER_LEN or payload:sub(1, 1) ~= VERSION or not kind
      or channel:sub(1, #l.prefix) ~= l.prefix or #channel == #l.prefix then
    counts.foreign = counts.foreign + 1
    return
  end
  if payload:sub(3, HEADER_LEN) == origin then
    counts.own = counts.own + 1
    return
  end
  counts.received = counts.received + 1
  local ok, err = pubsub.deliver_remote(channel:sub(#l.prefix + 1), payload:sub(HEADER_LEN + 1), kind)
  if not ok then
    too_big(l, err)
  end
end


-- reads the subscription until it fails -> err. Silence for PING_MS: a PING; silence as long
-- again: Redis is gone (a host that vanished sends no FIN).
local function listen(l, epoch)
  local sub, pinged = l.sub, false
  while l.epoch == epoch do
    local line, err = sub:read_line()
    if not line then
      if err ~= "timeout" or pinged then
        return err == "timeout" and "no answer to PING in " .. PING_MS .. " ms" or err
      end
      pinged = true
      local ok, werr = sub:write(command({ "PING" }))
      if not ok then
        return werr
      end
    else
      pinged = false
      -- (a channel is the prefix and a topic, a message our header and data: what this host takes)
      local msg, rerr = reply(sub, line, pubsub.max_size() + HEADER_LEN + #l.prefix)
      if msg == nil then
        return rerr
      end
      if type(msg) == "table" then
        on_message(l, msg)
      end
    end
  end
  return "closed"
end


-- sends the queue, pipelined, until it is empty; one coroutine per link at a time
local function send_queue(l, epoch)
  while l.epoch == epoch and #l.queue > 0 do
    local batch = l.queue
    l.queue, l.queued = {}, 0
    local pub = l.pub
    local ok, err = pub:write(table.concat(batch))
    if not ok then
      return fail(l, epoch, err)
    end
    for _ = 1, #batch do
      local line, rerr = pub:read_line()
      local t = line and line:sub(1, 1)
      if t == "-" then
        -- Redis answered, and refused (an ACL without PUBLISH): the link stays, logged once
        counts.refused = counts.refused + 1
        if not l.refused then
          l.refused = true
          log.warn("pubsub: Redis at " .. l.addr .. " refuses PUBLISH (" .. shown(line:sub(2)) .. "); refused"
            .. " publishes reach this host's subscribers only")
        end
      elseif t ~= ":" then
        if rerr == "timeout" then
          rerr = "no answer to PUBLISH in " .. TIMEOUT_MS .. " ms"
        end
        return fail(l, epoch, rerr or ("PUBLISH answered " .. shown(line)))
      else
        counts.sent = counts.sent + 1
      end
    end
  end
  if l.epoch == epoch then
    l.sending, l.behind = false, false
  end
end


-- an outage ends once the link that came back has stayed up STABLE_MS
local function confirm(l, epoch)
  timer.sleep(STABLE_MS)
  if l.epoch == epoch and l.state == "up" and l.down then
    log.info("pubsub: Redis at " .. l.addr .. " answers again; publishes cross hosts again")
    l.down = nil
  end
end


-- the link's life: connect, listen, and again after a failure (with backoff), until stopped
local function run(l)
  local backoff = BACKOFF_FIRST_MS
  while not l.stopped do
    local epoch = l.epoch
    local err = connect(l, epoch)
    if not err and l.epoch == epoch then
      l.state = "up"
      local up_at = timer.now()
      if l.down then
        coro.spawn(confirm, l, epoch)
      elseif not l.announced then
        log.info("pubsub: publishes cross hosts through Redis at " .. l.addr .. " (" .. l.pattern .. ")")
      end
      l.announced = true
      if #l.queue > 0 and not l.sending then
        l.sending = true
        coro.spawn(send_queue, l, epoch)
      end
      err = listen(l, epoch)
      if timer.now() - up_at >= STABLE_MS then
        backoff = BACKOFF_FIRST_MS
      end
    end
    fail(l, epoch, err)
    if l.stopped then
      return
    end
    timer.sleep(backoff)
    backoff = math.min(backoff * 2, BACKOFF_MAX_MS)
  end
end


-- ---- the bridge ----

-- a publish made on this host (pubsub calls it in publish order): queued for Redis, unless the
-- link is down (this host's subscribers have it already) or the queue is full
local function publish(topic, data, kind)
  local l = link
  if not l then
    return
  end
  if #data > QUEUE_MAX_BYTES then -- never crosses (and would outgrow a Redis subscriber's 32 MB output limit)
    counts.dropped = counts.dropped + 1
    if not l.big then
      l.big = true
      log.warn("pubsub: a publish of " .. #data .. " bytes is over the " .. QUEUE_MAX_BYTES .. " bytes that may wait"
        .. " for Redis at " .. l.addr .. "; publishes that big reach this host's subscribers only")
    end
    return
  end
  if l.state == "down" or l.queued + #data > QUEUE_MAX_BYTES then
    counts.dropped = counts.dropped + 1
    if l.state ~= "down" and not l.behind then
      l.behind = true
      log.warn("pubsub: more than " .. QUEUE_MAX_BYTES .. " bytes of publishes wait for Redis at " .. l.addr
        .. "; the next ones reach this host's subscribers only until they have left")
    end
    return
  end
  local q = l.queue
  q[#q + 1] = command({ "PUBLISH", l.prefix .. topic, VERSION .. KIND_TAG[kind] .. origin .. data })
  l.queued = l.queued + #data
  if l.state == "up" and not l.sending then
    l.sending = true
    coro.spawn(send_queue, l, l.epoch)
  end
end


local BRIDGE = { publish = publish }


local function stop_link(l)
  l.stopped = true
  fail(l, l.epoch, "stopped")
end


-- the option now in force (at the start, after a reload): the link as it is if unchanged
local function configure(opts)
  local want
  if opts and opts.redis then
    local host, port = jobs_redis.parse_address(opts.redis)
    want = { addr = opts.redis, host = host, port = port, prefix = opts.prefix or DEFAULT_PREFIX }
  end
  if link and want and link.addr == want.addr and link.prefix == want.prefix then
    return
  end
  if link then
    stop_link(link)
    link = nil
    pubsub.set_bridge(nil) -- ours only: without the option, a bridge the app set itself stays
  end
  if not want then
    return
  end
  origin = origin or make_origin()
  want.pattern = pattern_of(want.prefix)
  want.state, want.epoch, want.queue, want.queued, want.sending = "connecting", 0, {}, 0, false
  link = want
  pubsub.set_bridge(BRIDGE)
  coro.spawn(run, link)
end


-- before the app's top level (master/plugins.lua): the option's check, the stop
function _M.attach(m)
  m.add_hook("setup_check", function(opts)
    if opts.pubsub ~= nil then
      return _M.check(opts.pubsub)
    end
  end)
  m.add_hook("stop", function()
    if link then
      stop_link(link)
      link = nil
      pubsub.set_bridge(nil)
    end
  end)
end


-- once the app's top level has run, and after each reload
function _M.start(m, reload)
  configure(m.config().pubsub)
  reload.add_hook(function(event)
    if event == "done" then
      configure(m.config().pubsub)
    end
  end)
end


-- publishes sent to Redis, received from other hosts, dropped (Redis down or behind), refused
-- (an error reply to PUBLISH), own (this master's, come back), foreign (not published by a
-- luacluster master), too_big (over this host's max_message_size); and the state
function _M.stats()
  return { sent = counts.sent, received = counts.received, dropped = counts.dropped, refused = counts.refused,
    own = counts.own, foreign = counts.foreign, too_big = counts.too_big, state = link and link.state or "off" }
end


local SERIES = {
  { "sent", "Publishes made on this host sent to Redis (pubsub across hosts)." },
  { "received", "Publishes of other hosts received from Redis and delivered here." },
  { "dropped", "Publishes made on this host that did not go to Redis (down, behind by 16 MiB, or over 16 MiB)." },
  { "refused", "Publishes Redis refused (an error reply to PUBLISH)." },
  { "too_big", "Messages from Redis over this host's max_message_size, not delivered." },
  { "foreign", "Messages on the prefix not published by a luacluster master, ignored." },
}


-- the metrics (master/metrics.lua), while cluster.setup names a Redis: the link's state and counts
function _M.series(out, family, sample)
  if not link then
    return
  end
  sample(family(out, "luacluster_pubsub_redis_up", "gauge", "1 while the link to Redis (pubsub across hosts) is up, else 0."),
    nil, nil, link.state == "up" and 1 or 0)
  for _, s in ipairs(SERIES) do
    sample(family(out, "luacluster_pubsub_redis_" .. s[1] .. "_total", "counter", s[2]), nil, nil, counts[s[1]])
  end
end


return {
  check = _M.check,
  attach = _M.attach,
  start = _M.start,
  stats = _M.stats,
  series = _M.series,
}
