-- Raw DEFLATE (RFC 1951) through the system's zlib (LuaJIT FFI) for spec/ws_raw_client.lua's
-- permessage-deflate vectors (RFC 7692): compress(s) gives a message's compressed payload (a
-- fresh stream, flushed, the final 00 00 ff ff removed, 7.2.1); an inflater takes the server's
-- compressed messages (7.2.2: the tail appended again), keeping the window between them unless
-- the server said server_no_context_takeover.
local ffi = require("ffi")

pcall(ffi.cdef, [[
typedef struct lc_z_stream {
  const unsigned char *next_in; unsigned avail_in; unsigned long total_in;
  unsigned char *next_out; unsigned avail_out; unsigned long total_out;
  const char *msg; void *state; void *zalloc; void *zfree; void *opaque;
  int data_type; unsigned long adler; unsigned long reserved;
} lc_z_stream;
const char *zlibVersion(void);
int deflateInit2_(lc_z_stream *s, int level, int method, int window_bits, int mem_level, int strategy, const char *version, int size);
int deflate(lc_z_stream *s, int flush);
int deflateEnd(lc_z_stream *s);
int inflateInit2_(lc_z_stream *s, int window_bits, const char *version, int size);
int inflate(lc_z_stream *s, int flush);
int inflateEnd(lc_z_stream *s);
int inflateReset(lc_z_stream *s);
]])
local z = ffi.load("libz.so.1")
local Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_SYNC_FLUSH, Z_DEFLATED = 0, 1, -5, 2, 8
local CHUNK = 65536

local M = {}

-- runs fn(stream) over `input` until it has taken all and produced all: -> output | nil, err
local function pump(stream, input, fn)
  local out, buf = {}, ffi.new("unsigned char[?]", CHUNK)
  stream.next_in = input
  stream.avail_in = #input
  repeat
    stream.next_out = buf
    stream.avail_out = CHUNK
    local rc = fn(stream)
    if rc ~= Z_OK and rc ~= Z_STREAM_END and rc ~= Z_BUF_ERROR then
      return nil, "zlib error " .. rc .. (stream.msg ~= nil and (": " .. ffi.string(stream.msg)) or "")
    end
    out[#out + 1] = ffi.string(buf, CHUNK - stream.avail_out)
    if rc == Z_STREAM_END then break end
  until stream.avail_out > 0 and stream.avail_in == 0
  return table.concat(out)
end

function M.compress(s)
  local stream = ffi.new("lc_z_stream")
  assert(z.deflateInit2_(stream, 6, Z_DEFLATED, -15, 8, 0, z.zlibVersion(), ffi.sizeof(stream)) == Z_OK)
  local out, err = pump(stream, s, function(st) return z.deflate(st, Z_SYNC_FLUSH) end)
  z.deflateEnd(stream)
  assert(out, err)
  assert(out:sub(-4) == "\0\0\255\255", "a sync flush ends with 00 00 ff ff")
  return out:sub(1, -5)
end

local inflater_mt = {}
inflater_mt.__index = inflater_mt

-- new_inflater(no_context) -> inflater; inflater:message(payload) -> data | nil, err
function M.new_inflater(no_context)
  local stream = ffi.new("lc_z_stream")
  assert(z.inflateInit2_(stream, -15, z.zlibVersion(), ffi.sizeof(stream)) == Z_OK)
  ffi.gc(stream, z.inflateEnd)
  return setmetatable({ stream = stream, no_context = no_context }, inflater_mt)
end

function inflater_mt:message(payload)
  if self.no_context then z.inflateReset(self.stream) end
  return pump(self.stream, payload .. "\0\0\255\255", function(st) return z.inflate(st, Z_SYNC_FLUSH) end)
end

return M
