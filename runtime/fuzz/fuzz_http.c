/* fuzz_http.c: fuzz target for the HTTP connection layer: runtime/http.c (keep-alive,
 * pipelining, limits, backpressure, response framing), http_head.c (the strict head parse),
 * http_body.c (body framing), and lua/luacluster/http.lua with a handler. Input bytes are
 * what a client sends on one connection (a socketpair whose server end the runtime takes as
 * an accepted connection); what comes back is checked to be a well-framed sequence of HTTP
 * responses (a response-splitting or framing bug traps).
 * Input: byte 0 selects how it is delivered, the rest is the client's byte stream.
 *   bit 0-1  write size: 1, 13, 200 bytes or all at once, with a loop turn between writes
 *   bit 2    the client half-closes right after its last byte (else only once it is idle)
 *   bit 3    the client reads nothing until it has written everything (backpressure)
 * Handler paths: /stream (chunked, echoes the body), /big (300 kB), /err (raises),
 * /nc (204), /close (Connection: close), /wait (answers after a timer: input arrives and
 * output drains while a handler waits), anything else a short summary of the request. */
#include "fuzz_common.h"

static lua_State *L;
static lc_rt *rt;

static const char INIT[] =
  "local http = require('luacluster.http')\n"
  "require('luacluster.log').error = function() end\n"
  "local timer = require('luacluster.timer')\n"
  "local big = string.rep('x', 300000)\n"
  "local server = http.create_server(function(req, res)\n"
  "  local path, h, body = req.path, req.headers, req:body()\n"
  "  if path == '/stream' then\n"
  "    res:header('X-Stream', { 'a', 'b' })\n"
  "    res:write('a') res:write(body) res:finish('z')\n"
  "  elseif path == '/big' then return 200, big\n"
  "  elseif path == '/err' then error('fuzz: a handler that raises')\n"
  "  elseif path == '/wait' then timer.sleep(0) res:write('w') timer.sleep(0) res:finish(body)\n"
  "  elseif path == '/nc' then return 204, ''\n"
  "  elseif path == '/close' then return 200, { Connection = 'close' }, 'bye'\n"
  "  else\n"
  "    local n = 0 for _ in pairs(h) do n = n + 1 end\n"
  "    return 200, { ['Content-Type'] = 'text/plain' }, req.method .. ' ' .. path .. ' ' ..\n"
  "      tostring(req.query) .. ' ' .. n .. ' ' .. #body .. ' ' .. tostring(req.remote_address) .. '\\n'\n"
  "  end\n"
  "end, { max_header_size = 2048, max_body_size = 8192 })\n"
  "assert(server._srv:sink(1, true))\n"
  "function fuzz_open_conns() return server:stats().connections > 0 end\n";

static void init(void) {
  L = fuzz_lua_new(INIT);
  rt = lc_rt_get(L);
}

/* ---- the response checker ---- */

static const char *find2(const char *p, size_t n, const char *pat, size_t m) {
  return memmem(p, n, pat, m);
}

/* the value of header `name` in a head [p, p+n), or NULL */
static const char *header(const char *p, size_t n, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  const char *line = find2(p, n, "\r\n", 2);
  while (line && line + 2 < p + n) {
    const char *s = line + 2;
    const char *e = find2(s, (size_t)(p + n - s), "\r\n", 2);
    if (e == NULL || e == s) return NULL;
    if ((size_t)(e - s) > nl + 1 && strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
      const char *v = s + nl + 1;
      while (v < e && *v == ' ') v++;
      *vlen = (size_t)(e - v);
      return v;
    }
    line = e;
  }
  return NULL;
}

/* 0: what arrived is a sequence of well-framed responses (the last may be cut short);
 * otherwise the offset + 1 where it stops making sense */
static size_t check_responses(const char *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    const char *r = p + off;
    size_t left = n - off;
    if (left < 12) return memcmp(r, "HTTP/1.", left < 7 ? left : 7) == 0 ? 0 : off + 1;
    if (memcmp(r, "HTTP/1.", 7) != 0 || (r[7] != '0' && r[7] != '1') || r[8] != ' ') return off + 1;
    int status = (r[9] - '0') * 100 + (r[10] - '0') * 10 + (r[11] - '0');
    if (status < 100 || status > 599) return off + 1;
    const char *he = find2(r, left, "\r\n\r\n", 4);
    if (he == NULL) return 0;
    size_t hlen = (size_t)(he + 4 - r);
    for (size_t i = 0; i < hlen; i++)  /* no bare CR or LF inside the head */
      if ((r[i] == '\n' && (i == 0 || r[i - 1] != '\r')) || (r[i] == '\r' && r[i + 1] != '\n')) return off + 1;
    size_t cl_len, te_len;
    const char *cl = header(r, hlen, "Content-Length", &cl_len);
    const char *te = header(r, hlen, "Transfer-Encoding", &te_len);
    if (cl && te) return off + 1;
    off += hlen;
    if (status < 200 || status == 204 || status == 304) continue;
    if (te) {
      if (te_len != 7 || strncmp(te, "chunked", 7) != 0) return off + 1;
      for (;;) {
        const char *le = find2(p + off, n - off, "\r\n", 2);
        if (le == NULL) return 0;
        char *end;
        unsigned long sz = strtoul(p + off, &end, 16);
        if (end != le || le == p + off) return off + 1;
        off = (size_t)(le + 2 - p);
        if (sz == 0) {
          if (n - off < 2) return 0;
          if (memcmp(p + off, "\r\n", 2) != 0) return off + 1;
          off += 2;
          break;
        }
        if (n - off < sz + 2) return 0;
        off += sz;
        if (memcmp(p + off, "\r\n", 2) != 0) return off + 1;
        off += 2;
      }
    } else if (cl) {
      unsigned long len = strtoul(cl, NULL, 10);
      if (n - off < len) return 0;
      off += len;
    } else {
      return 0; /* the body runs to the end of the connection */
    }
  }
  return 0;
}

/* ---- the driver ---- */

#define OUT_CAP (8u << 20)
static char out[OUT_CAP];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (L == NULL) init();
  unsigned flags = data[0];
  data++;
  size--;
  size_t out_len;
  fuzz_play(rt, L, "fuzz_http", flags, data, size, out, OUT_CAP, &out_len);
  if (getenv("FUZZ_HTTP_SHOW")) fprintf(stderr, "%.*s\n", (int)(out_len < 4000 ? out_len : 4000), out);
  /* HEAD answers carry a Content-Length without a body: framing cannot be checked blind */
  if (out_len < OUT_CAP && memmem(data, size, "HEAD", 4) == NULL) {
    size_t bad = check_responses(out, out_len);
    if (bad) {
      fprintf(stderr, "fuzz_http: malformed response stream at byte %zu of %zu:\n%.*s\n", bad - 1, out_len,
              (int)(out_len - (bad - 1) < 400 ? out_len - (bad - 1) : 400), out + bad - 1);
      abort();
    }
  }
  return 0;
}
