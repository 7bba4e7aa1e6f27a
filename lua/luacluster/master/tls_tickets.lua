-- luacluster.master.tls_tickets: the cluster's TLS session ticket keys, so that a session
-- resumes on any worker and across reloads (nginx needs ssl_session_ticket_key files shared
-- by hand for that; here it is the default). The master makes the ring (lib/ticket_ring.lua)
-- from /dev/urandom when it starts and keeps it in its memory for its whole life: every
-- worker of every generation gets the same ring.
--   * A worker gets the ring in a "tls_keys" control message sent when it is forked (its
--     "fork" hook). The channel keeps its frames in order and a worker gets its listening
--     socket (or, in dispatch mode, its connections) only in later frames, so no worker serves
--     a TLS connection before it has the ring. The master's own TLS servers use it too.
--   * cluster.setup{ tls_ticket_rotate = ms } (default 12 hours): at each period's start, counted
--     from the master's start, a new key encrypts new tickets and the previous one still
--     decrypts for one more period; the ring goes to every live worker (a reload's workers not
--     yet serving and draining ones included). Tickets live one period (OpenSSL's lifetime hint
--     and session timeout: the second argument of core.tls_ticket_keys).
--   * The keys never go to a file, a log, status or metrics (metrics show the count and ages).
--   * export()/import(s): the ring as one secret string, for an upgrade's new master.
local core = require("luacluster.core")
local log = require("luacluster.lib.log")
local reload = require("luacluster.master.reload")
local ticket_ring = require("luacluster.lib.ticket_ring")

local _M = {}

_M.DEFAULT_ROTATE_MS = 12 * 3600 * 1000
local KEEP = 1 -- previous keys still accepted: a ticket resumes for one to two periods
local MIN_ROTATE_MS = 1000
local MAX_ROTATE_MS = 7 * 24 * 3600 * 1000

local master, ring, timer, scheduled
local live = {} -- worker -> true: forked and not gone (a reload's pending workers included)


-- n bytes from the kernel's random source; none is a fatal error of the master's start
local function urandom(n)
  local f, err = io.open("/dev/urandom", "rb")
  if not f then
    error("TLS session ticket keys: cannot open /dev/urandom: " .. tostring(err))
  end
  local s = f:read(n)
  f:close()
  return s
end


local function now_ms()
  return core.time() * 1000
end


-- ms between rotations: the live setup's, or that of worker w's generation (a reload's new
-- workers start before their setup is the live one)
local function period(w)
  return (w and master.setup_of(w) or master.config()).tls_ticket_rotate or _M.DEFAULT_ROTATE_MS
end


-- the keys to one worker (or, w == nil, to this process's own TLS servers), and the lifetime
-- of a ticket in seconds: one period, as long as the key that made it is sure to still open it
local function hand(w)
  if w then
    w:_control({ op = "tls_keys", keys = ring:blob(), lifetime = math.ceil(period(w) / 1000) })
  else
    core.tls_ticket_keys(ring:blob(), math.ceil(period() / 1000))
  end
end


local function hand_all()
  hand(nil)
  for w in pairs(live) do
    if w.state ~= "dead" then
      hand(w)
    end
  end
end


-- rotates if a period has started since the newest key (and hands the ring on), then waits
-- for the next period; -> true if it rotated
local function schedule()
  local p, t = period(), now_ms()
  local rotated = ring:due(t, p)
  if rotated then
    ring:rotate(urandom, t, p)
    log.info(string.format("TLS session ticket keys rotated (%d in the ring)", ring:count()))
    hand_all()
  end
  timer:stop()
  timer:start(math.max(1, math.ceil(ring:next_at(t, p) - t)), 0)
  return rotated
end


local function check_setup(opts)
  local v = opts.tls_ticket_rotate
  if v ~= nil and not (v >= MIN_ROTATE_MS and v <= MAX_ROTATE_MS) then
    return "tls_ticket_rotate must be from " .. MIN_ROTATE_MS .. " to " .. MAX_ROTATE_MS
      .. " ms (a week: the longest lifetime of a TLS 1.3 ticket)"
  end
end


-- plugs into the master (master/plugins.lua)
function _M.attach(m)
  master = m
  ring = ring or ticket_ring.new({ random = urandom, now = now_ms(), keep = KEEP })
  timer = core.timer_new(schedule)
  timer:unref()
  m.add_hook("setup_check", check_setup)
  m.add_hook("fork", function(w)
    live[w] = true
    hand(w) -- before anything that could give it a socket (the channel keeps the order)
    if not scheduled then -- the first fork: the top level's cluster.setup has run
      scheduled = true
      hand(nil)
      schedule()
    end
  end)
  m.add_hook("gone", function(w)
    live[w] = nil
  end)
  -- a reload's setup may change the period (its new lifetime, its next rotation)
  reload.add_hook(function(event)
    if event == "done" and scheduled and not schedule() then
      hand_all() -- its lifetime
    end
  end)
end


-- the ring as one secret string for an upgrade's new master (master/upgrade hands it on)
function _M.export()
  return ring:export()
end


-- import(s) -> true | nil, err: the ring an old master exported replaces this one (before
-- the first fork; after it, every live worker gets it at once)
function _M.import(s)
  local r, err = ticket_ring.import(s, KEEP)
  if not r then
    return nil, err
  end
  ring = r
  if scheduled and not schedule() then
    hand_all()
  end
  return true
end


-- what status and metrics may show: the number of keys and their ages in seconds (no key)
function _M.info()
  local newest, oldest = ring:ages(now_ms())
  return { keys = ring:count(), newest_age = newest / 1000, oldest_age = oldest / 1000, rotate_ms = period() }
end


return _M
