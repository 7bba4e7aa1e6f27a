-- luacluster.master.jobs_redis: cluster.setup{ jobs = { redis = "host:port" [, prefix =,
-- lease = ms ] } }. Before the master sends a run to a worker it claims it in Redis:
--   SET <prefix><job>:<slot> <host>:<pid> <slot> NX PX <interval>   the run: one host only
--   SET <prefix><job>:running <same value> NX PX <lease>             the job: no overlap
-- The slot is the run's scheduled time, the same on every host: a cron run's minute (epoch
-- seconds), an every run's period of the wall clock (epoch ms / period). Of several masters
-- naming the same Redis the first to set the run's key runs it; the others skip it quietly.
-- The run's key expires after the job's interval (at least a second). The job's key is held
-- while the run goes on (renewed every lease/3, deleted at its end if it is still ours): a
-- run due while another host runs the job is skipped and counted, as on one host; a host
-- that dies mid-run loses the job's key when its lease expires, and the later runs go to
-- whichever host claims them.
-- While Redis does not answer (or gives a line no Redis gives to these commands), runs are
-- skipped (and counted as skipped): running them on every host would break "once per cluster". That is logged once when it starts and once
-- when Redis answers again.
-- The client is the master's outbound socket (luacluster.net, pooled connections) and RESP.
local core = require("luacluster.core")
local log = require("luacluster.lib.log")

local _M = {}

local TIMEOUT_MS = 2000
local DEFAULT_PREFIX = "luacluster:job:"
local DEFAULT_LEASE_MS = 10000

local cfg       -- { host =, port =, prefix =, addr = "host:port" } | nil
local down      -- the error Redis gave while it is down (logged once)
local me = nil  -- the value of our claims: host name and master pid


local function parse(v)
  if type(v) ~= "string" then
    return nil
  end
  local host, port = v:match("^%[([%x:.]+)%]:(%d+)$")
  if not host then
    host, port = v:match("^([^:]+):(%d+)$")
  end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil
  end
  return host, port
end


-- cluster.setup{ jobs = } -> nil | what is wrong with it
function _M.check(opts)
  if type(opts) ~= "table" then
    return "jobs must be a table: { redis = \"host:port\" }"
  end
  for k in pairs(opts) do
    if k ~= "redis" and k ~= "prefix" and k ~= "lease" then
      return "jobs: unknown option '" .. tostring(k) .. "' (expected redis, prefix, lease)"
    end
  end
  if opts.lease ~= nil and (type(opts.lease) ~= "number" or opts.lease < 300 or opts.lease % 1 ~= 0) then
    return "jobs.lease must be a whole number of ms >= 300"
  end
  if opts.redis ~= nil and not parse(opts.redis) then
    return "jobs.redis must be \"host:port\", not " .. tostring(opts.redis)
  end
  if opts.prefix ~= nil and type(opts.prefix) ~= "string" then
    return "jobs.prefix must be a string"
  end
end


-- the setup now in force (a reload may change it): cluster.setup's jobs table or nil
function _M.configure(opts)
  if not opts or not opts.redis then
    cfg = nil
    return
  end
  local host, port = parse(opts.redis)
  cfg = { host = host, port = port, prefix = opts.prefix or DEFAULT_PREFIX, addr = opts.redis,
    lease = opts.lease or DEFAULT_LEASE_MS }
  if not me then
    local f = io.open("/proc/sys/kernel/hostname")
    local name = f and f:read("*l") or "host"
    if f then
      f:close()
    end
    me = name .. ":" .. core.pid()
  end
end


function _M.active()
  return cfg ~= nil
end


local function bulk(s)
  return "$" .. #s .. "\r\n" .. s .. "\r\n"
end


-- (a number goes as its digits: tostring writes 1e14 as "1e+14", which Redis refuses)
local function command(args)
  local parts = { "*" .. #args .. "\r\n" }
  for i, a in ipairs(args) do
    parts[i + 1] = bulk(type(a) == "number" and string.format("%.0f", a) or tostring(a))
  end
  return table.concat(parts)
end


-- a reply line as a message shows it: printable, at most 60 bytes
local function shown(line)
  local s = line:sub(1, 60):gsub("[^\32-\126]", "?")
  return "'" .. s .. (#line > 60 and "...'" or "'")
end


-- one command, one reply line: -> the line | nil, err. The commands here answer a status
-- (+), an error (-), an integer (:) or the nil bulk ($-1); any other line is not Redis's
-- answer to them (another service on the port): an error, and the connection is closed.
local function ask(c, args)
  local net = require("luacluster.net") -- lazy: only a master with cluster.setup{ jobs = { redis = } }
  local sock, err = net.connect(c.host, c.port, { timeout = TIMEOUT_MS, pool = "luacluster.jobs " .. c.addr })
  if not sock then
    return nil, err
  end
  sock:set_timeouts(TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS)
  local ok, werr = sock:write(command(args))
  if not ok then
    sock:close()
    return nil, "redis " .. c.addr .. ": " .. tostring(werr)
  end
  local line, rerr = sock:read_line()
  if not line then
    sock:close()
    return nil, "redis " .. c.addr .. ": " .. tostring(rerr)
  end
  local kind = line:sub(1, 1)
  if kind ~= "+" and kind ~= "-" and kind ~= ":" and line ~= "$-1" then
    sock:close()
    return nil, "redis " .. c.addr .. ": not a Redis reply to " .. args[1] .. ": " .. shown(line)
  end
  -- refused while bytes no command asked for wait unread, or the peer has ended: closed then,
  -- never left open
  if not sock:set_keepalive(60000, 4) then
    sock:close()
  end
  return line
end


local function failed(c, err)
  if not down then
    log.warn("jobs: cannot claim runs in Redis (" .. tostring(err) .. "); runs are skipped until it answers")
  end
  down = err
  return "down", "Redis does not answer: " .. tostring(err)
end


local function answered(c)
  if down then
    down = nil
    log.info("jobs: Redis at " .. c.addr .. " answers again; runs are claimed there")
  end
end


-- one command -> its reply line | nil, err (an error reply is an error)
local function call(c, args)
  local line, err = ask(c, args)
  if line and line:sub(1, 1) == "-" then
    return nil, "redis " .. c.addr .. ": " .. line:sub(2)
  end
  return line, err
end


local RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
local RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


-- claim(job, slot, ttl_ms) (waits) -> what to do with the run:
--   "ok", lease   ours: run it (lease: what renew and release take; lease.key is the run's key)
--   "taken"       another host claimed this run
--   "busy"        this run is ours, but another host still runs the job: skipped
--   "down", why   Redis does not answer: skipped
-- SET key value NX PX ms -> "+OK" | "$-1" (the key is someone else's) | nil, err (no answer, or
-- an answer that is not Redis's)
local function set_nx(c, key, value, ms)
  local line, err = call(c, { "SET", key, value, "NX", "PX", ms })
  if line and line ~= "+OK" and line ~= "$-1" then
    return nil, "redis " .. c.addr .. ": SET NX answered " .. shown(line), true
  end
  return line, err
end


function _M.claim(name, slot, ttl_ms)
  local c = cfg
  local key = c.prefix .. name .. ":" .. slot
  local value = me .. " " .. slot
  local line, err = set_nx(c, key, value, math.floor(ttl_ms))
  if not line then
    return failed(c, err)
  end
  if line == "$-1" then
    answered(c)
    return "taken"
  end
  local lease = { c = c, key = key, running = c.prefix .. name .. ":running", value = value }
  local answered_badly
  line, err, answered_badly = set_nx(c, lease.running, value, c.lease)
  if not line then
    if not answered_badly then
      -- Redis may have done the SET whose answer did not come: the job's lease is given back
      -- if it is ours, not held by nobody until it expires
      call(c, { "EVAL", RELEASE, 1, lease.running, value })
    end
    return failed(c, err)
  end
  if line == "$-1" then
    answered(c)
    return "busy"
  end
  answered(c) -- (once the whole claim went through: a Redis that answers half is not back)
  return "ok", lease
end


-- while a run of ours goes on: its lease again (waits) -> true | nil, err
function _M.renew(lease)
  local line, err = call(lease.c, { "EVAL", RENEW, 1, lease.running, lease.value, lease.c.lease })
  if line == ":1" then
    return true
  elseif line == ":0" then
    return nil, "the lease " .. lease.running .. " is no longer ours (it expired)"
  end
  return nil, err or ("redis " .. lease.c.addr .. ": EVAL answered " .. shown(line))
end


-- the run is over: the job is free for the next run, on any host (waits)
function _M.release(lease)
  return call(lease.c, { "EVAL", RELEASE, 1, lease.running, lease.value })
end


-- how often a lease is renewed while its run goes on (ms)
function _M.renew_every(lease)
  return math.max(100, math.floor(lease.c.lease / 3))
end


return {
  check = _M.check,
  configure = _M.configure,
  active = _M.active,
  claim = _M.claim,
  renew = _M.renew,
  release = _M.release,
  renew_every = _M.renew_every,
  -- shared with master/pubsub_redis.lua: "host:port" -> host, port | nil; a command in RESP
  parse_address = parse,
  command = command,
  shown = shown,
}
