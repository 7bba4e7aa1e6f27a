-- luacluster.lib.ticket_ring: the ring of TLS session ticket keys, as a value with no I/O of
-- its own (the master's luacluster.master.tls_tickets owns the one ring of the cluster, its
-- random source and its clock). The newest key encrypts new tickets, every key in the ring
-- decrypts. Rotation follows a schedule counted in whole periods from the ring's origin (the
-- master's start): at each period's start a new key goes first and the oldest beyond `keep`
-- previous ones is dropped, so a ticket made with a key is accepted for one to keep+1 periods.
-- A key is 80 bytes, the layout core.tls_ticket_keys takes: 16 bytes key name, 32 bytes
-- HMAC-SHA256 key, 32 bytes AES-256-CBC key. export()/import() carry the whole ring (keys,
-- origin, times) as one string to another master (an upgrade); that string is a secret.
local buffer = require("string.buffer")

local KEY_BYTES = 80
local MAX_KEYS = 8        -- OpenSSL's callback takes any number; the binding takes 1..8
local EXPORT_VERSION = 1

local ring_mt = {}
ring_mt.__index = ring_mt


local function check_keep(keep)
  if type(keep) ~= "number" or keep < 0 or keep % 1 ~= 0 or keep + 1 > MAX_KEYS then
    error("ticket_ring: keep must be a whole number from 0 to " .. (MAX_KEYS - 1), 3)
  end
end


-- random(n) -> n bytes (a real random source; a short answer raises)
local function make_key(random)
  local k = random(KEY_BYTES)
  if type(k) ~= "string" or #k ~= KEY_BYTES then
    error("ticket_ring: the random source gave no " .. KEY_BYTES .. " bytes", 3)
  end
  return k
end


-- new{ random = fn(n) -> bytes, now = ms (wall clock), keep = previous keys kept (default 1) }:
-- one key, made now; now is also the origin of the schedule
local function new(opts)
  local keep = opts.keep or 1
  check_keep(keep)
  local self = setmetatable({ keep = keep, origin = opts.now, keys = {} }, ring_mt)
  self.keys[1] = { bytes = make_key(opts.random), made = opts.now }
  return self
end


-- the period (0, 1, ...) time t falls in, for period length `period` ms
function ring_mt:period_of(t, period)
  return math.floor((t - self.origin) / period)
end


-- a new key first; the ones beyond keep previous ones are dropped, and (with period) so are
-- the ones made more than keep periods before now's (a rotation that came late, by periods)
function ring_mt:rotate(random, now, period)
  table.insert(self.keys, 1, { bytes = make_key(random), made = now })
  for i = #self.keys, self.keep + 2, -1 do
    self.keys[i] = nil
  end
  if period then
    local oldest = self:period_of(now, period) - self.keep
    for i = #self.keys, 2, -1 do
      if self:period_of(self.keys[i].made, period) < oldest then
        self.keys[i] = nil
      end
    end
  end
end


-- true when the newest key was made in an earlier period than now's (the rotation is due)
function ring_mt:due(now, period)
  return self:period_of(self.keys[1].made, period) < self:period_of(now, period)
end


-- when (ms, wall clock) the period after now's starts: the next rotation
function ring_mt:next_at(now, period)
  return self.origin + (self:period_of(now, period) + 1) * period
end


-- the keys as core.tls_ticket_keys takes them: N * 80 bytes, the newest first
function ring_mt:blob()
  local parts = {}
  for i, k in ipairs(self.keys) do
    parts[i] = k.bytes
  end
  return table.concat(parts)
end


function ring_mt:count()
  return #self.keys
end


-- ms since the newest and since the oldest key was made (what status and metrics may show)
function ring_mt:ages(now)
  return now - self.keys[1].made, now - self.keys[#self.keys].made
end


-- the whole ring as one string (a secret: for another master's import, never for a file or a log)
function ring_mt:export()
  local keys = {}
  for i, k in ipairs(self.keys) do
    keys[i] = { bytes = k.bytes, made = k.made }
  end
  return buffer.encode({ v = EXPORT_VERSION, origin = self.origin, keep = self.keep, keys = keys })
end


-- import(s [, keep]) -> ring | nil, err: a ring made by export(); keep (if given) replaces the
-- exported one, dropping what is beyond it
local function import(s, keep)
  if type(s) ~= "string" then
    return nil, "ticket ring: expected the string export() made"
  end
  local ok, t = pcall(buffer.decode, s)
  if not ok or type(t) ~= "table" or t.v ~= EXPORT_VERSION then
    return nil, "ticket ring: not an export of this version"
  end
  if type(t.origin) ~= "number" or type(t.keys) ~= "table" or #t.keys < 1 or #t.keys > MAX_KEYS then
    return nil, "ticket ring: the export has no origin or not 1 to " .. MAX_KEYS .. " keys"
  end
  keep = keep or t.keep
  check_keep(keep)
  local self = setmetatable({ keep = keep, origin = t.origin, keys = {} }, ring_mt)
  for i, k in ipairs(t.keys) do
    if type(k) ~= "table" or type(k.bytes) ~= "string" or #k.bytes ~= KEY_BYTES or type(k.made) ~= "number" then
      return nil, "ticket ring: key " .. i .. " of the export is not " .. KEY_BYTES .. " bytes with its time"
    end
    if i <= keep + 1 then
      self.keys[i] = { bytes = k.bytes, made = k.made }
    end
  end
  return self
end


return {
  KEY_BYTES = KEY_BYTES,
  MAX_KEYS = MAX_KEYS,
  new = new,
  import = import,
}
