/* fuzz_ipc.c: fuzz target for the IPC channel (runtime/ipc.c) and the message decoder
 * (lua/luacluster/channel.lua + codec.lua on LuaJIT's string.buffer). Bytes from the input
 * arrive on a real channel (a libuv IPC pipe over a socketpair) exactly as a peer process's
 * frames would: the frame reader splits them, the channel decodes each payload and hands it
 * to handlers, requests are answered, ROUTE/BCAST frames are forwarded in C.
 * Input: byte 0 selects how it is delivered, the rest is the byte stream.
 *   bit 0  a socket travels (SCM_RIGHTS) with the first write
 *   bit 1  that socket is a unix socket (refused by the channel) instead of a TCP one
 *   bit 2  a small frame limit (256 bytes) so oversized frames are skipped
 *   bit 3  the channel is the master's side of worker 1 (ROUTE/BCAST forwarded in C)
 *   bit 4-5  write size: 1, 7, 64 bytes or all at once, with a loop turn between writes
 *   bit 6  the largest frame limit the runtime takes (core.max_message_size; 2^32 - 1 before
 *          it had one), unless bit 2 asks for the small one: headers near 4 GiB must be skipped */
#include "fuzz_common.h"

#include <netinet/in.h>

static lua_State *L;
static lc_rt *rt;

static const char INIT[] =
  "local channel = require('luacluster.channel')\n"
  "require('luacluster.log').error = function() end\n"
  "local ch, closed\n"
  "function fuzz_open(x)\n"
  "  local fd, flags = math.floor(x / 256), x % 256\n"
  "  closed = false\n"
  "  local function drop(_, handle) if handle then handle:close() end end\n"
  "  local err\n"
  "  ch, err = channel.open_fd(fd, { message = drop, control = drop,\n"
  "    request = function(msg) return msg end, error = function() end,\n"
  "    route_fail = function() end, close = function() closed = true end })\n"
  "  assert(ch, err)\n"
  "  local big = require('luacluster.core').max_message_size or 4294967295\n"
  "  ch.handle:set_max_frame(bit.band(flags, 4) ~= 0 and 256 or bit.band(flags, 64) ~= 0 and big or 1048576)\n"
  "  if bit.band(flags, 8) ~= 0 then ch.handle:set_route(1) end\n"
  "  ch:request('q', 0, function() end) -- seq 1 waits: a REPLY frame with seq 1 settles it\n"
  "  return true\n"
  "end\n"
  "function fuzz_closed() return closed end\n"
  "function fuzz_close() ch:close() return true end\n";

static void init(void) {
  L = fuzz_lua_new(INIT);
  rt = lc_rt_get(L);
}

static ssize_t send_with_fd(int fd, const uint8_t *p, size_t n, int unix_sock) {
  int extra = unix_sock ? socket(AF_UNIX, SOCK_STREAM, 0) : socket(AF_INET, SOCK_STREAM, 0);
  if (extra < 0) return send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  struct iovec iov = {(void *)p, n};
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
  memset(&u, 0, sizeof u);
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof u.buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &extra, sizeof(int));
  ssize_t r = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
  close(extra);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t chunks[4] = {1, 7, 64, (size_t)-1};
  if (size < 1) return 0;
  if (L == NULL) init();
  unsigned flags = data[0];
  data++;
  size--;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  fuzz_nonblock(sv[0]);
  fuzz_call(L, "fuzz_open", (lua_Integer)sv[1] * 256 + flags);
  size_t chunk = chunks[(flags >> 4) & 3], off = 0;
  int first = 1, closed = 0;
  for (int spins = 0; off < size && spins < 100000; spins++) {
    size_t n = size - off < chunk ? size - off : chunk;
    ssize_t w = first && (flags & 1) ? send_with_fd(sv[0], data + off, n, flags & 2)
                                     : send(sv[0], data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) { off += (size_t)w; first = 0; }
    else if (w < 0 && errno != EAGAIN && errno != EINTR) break;
    fuzz_drain(sv[0], NULL, 0, NULL);
    uv_run(&rt->loop, UV_RUN_NOWAIT);
    if ((closed = fuzz_call(L, "fuzz_closed", 0))) break;
  }
  shutdown(sv[0], SHUT_WR);
  for (int i = 0; i < 1000 && !closed; i++) {
    fuzz_drain(sv[0], NULL, 0, NULL);
    uv_run(&rt->loop, UV_RUN_NOWAIT);
    closed = fuzz_call(L, "fuzz_closed", 0);
  }
  if (!closed) {
    fuzz_call(L, "fuzz_close", 0);
    for (int i = 0; i < 1000 && !closed; i++) {
      fuzz_drain(sv[0], NULL, 0, NULL);
      uv_run(&rt->loop, UV_RUN_NOWAIT);
      closed = fuzz_call(L, "fuzz_closed", 0);
    }
    if (!closed) {
      fprintf(stderr, "fuzz_ipc: the channel did not close\n");
      abort();
    }
  }
  close(sv[0]);
  uv_run(&rt->loop, UV_RUN_NOWAIT);  /* close callbacks of handles that travelled */
  return 0;
}
