/* ipc_frame.h: the wire format of an IPC frame, shared by the channel (ipc.c) and its fuzz target.
 * A frame is a 16-byte header followed by `len` payload bytes (a string.buffer encoding of a
 * Lua value, or raw bytes for some control kinds). Integers are little-endian.
 *   u32 len | u8 kind | u8 flags | u16 zero | u32 peer | u32 seq
 * `peer` is a worker id (the sender for a routed message, the target for a route request);
 * `seq` matches a reply to its request. */
#ifndef LC_IPC_FRAME_H
#define LC_IPC_FRAME_H

#include <stdint.h>
#include <string.h>

#define LC_FRAME_HEADER ((size_t)16)

/* The largest payload a frame may carry: the longest string LuaJIT can make (its LJ_MAX_STR is
 * 0x7fffff00 in every 2.1 branch, OpenResty's luajit2 2.1-20230119 that Debian ships included,
 * and lj_str_new refuses a length equal to it: "string length overflow"). A payload becomes one
 * Lua string, so a longer one could never be delivered; the limit also keeps every frame size
 * (header + payload) far from any 32-bit wrap. Sizes are size_t everywhere all the same. */
#define LC_MAX_FRAME_PAYLOAD ((size_t)0x7ffffeffu)

/* header + payload bytes of a frame whose header says `len` (no wrap: len < 2^32) */
static inline size_t lc_frame_size(uint32_t len) { return LC_FRAME_HEADER + (size_t)len; }

enum lc_frame_kind {
  LC_KIND_MSG = 1,      /* a user message */
  LC_KIND_CTRL = 2,     /* the runtime's own control messages */
  LC_KIND_REQ = 3,      /* a user request: expects a REPLY with the same seq */
  LC_KIND_REPLY = 4,    /* the answer to a REQ */
  LC_KIND_ROUTE = 5,    /* worker -> master: forward this MSG to worker `peer` */
  LC_KIND_BCAST = 6,    /* worker -> master: forward this MSG to every other worker */
  LC_KIND_ROUTE_FAIL = 7, /* master -> worker: a ROUTE with this seq found no live target */
  LC_KIND_CONN = 8,     /* master -> worker: an accepted connection for the server with key `peer` */
  LC_KIND_PS_PUB = 9,   /* a publish (pubsub.h): peer = opcode, seq = topic length, topic .. data */
  LC_KIND_PS_SUB = 10,  /* worker -> master: its first subscriber of the topic (the payload) */
  LC_KIND_PS_UNSUB = 11, /* worker -> master: its last subscriber of the topic left */
  LC_KIND_MAX = 11
};

enum lc_frame_flags {
  LC_FLAG_HANDLE = 1,   /* a socket travels with this frame (SCM_RIGHTS) */
  LC_FLAG_SERVER = 2,   /* that socket is a listening one */
  LC_FLAG_ALL = 3
};

typedef struct lc_frame_header {
  uint32_t len;
  uint8_t kind;
  uint8_t flags;
  uint32_t peer;
  uint32_t seq;
} lc_frame_header;

static inline uint32_t lc_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void lc_put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static inline void lc_frame_encode(unsigned char *out, const lc_frame_header *h) {
  lc_put_le32(out, h->len);
  out[4] = h->kind;
  out[5] = h->flags;
  out[6] = 0;
  out[7] = 0;
  lc_put_le32(out + 8, h->peer);
  lc_put_le32(out + 12, h->seq);
}

/* 0 when the header is well formed; otherwise a reason. The length is checked by the caller
 * against its own limit, since an oversized frame can be skipped without losing sync. */
static inline const char *lc_frame_decode(const unsigned char *in, lc_frame_header *h) {
  h->len = lc_le32(in);
  h->kind = in[4];
  h->flags = in[5];
  h->peer = lc_le32(in + 8);
  h->seq = lc_le32(in + 12);
  if (h->kind < 1 || h->kind > LC_KIND_MAX) return "unknown frame kind";
  if (h->flags & ~LC_FLAG_ALL) return "unknown frame flags";
  if ((h->flags & LC_FLAG_SERVER) && !(h->flags & LC_FLAG_HANDLE)) return "server flag without a handle";
  if (in[6] != 0 || in[7] != 0) return "reserved header bytes are not zero";
  return 0;
}

#endif
