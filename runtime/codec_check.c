/* codec_check.c: a bounds check of an encoded message before LuaJIT's string.buffer decodes it.
 * string.buffer's decoder sizes a table from the counts written in front of it before it has
 * read a single element, so a 6-byte payload that claims 2^27 array slots makes it allocate
 * ~2 GB (found by fuzz_ipc). This walks the same format (lj_serialize.c) without allocating
 * and accepts a payload only if it is one complete value (string.buffer's own types, but no
 * dictionary references: the codec uses none), nested at most 100 levels, whose every count is
 * backed by bytes that are really there: a decode then allocates O(payload) at most. The caller
 * decodes with string.buffer as before, in a protected call: core.checked(decode)
 * (runtime/protect.c) makes one C call of the check and the decode. The check also refuses a nil
 * or NaN table key, a light userdata and tables past LuaJIT's size limits, with a clearer reason
 * than the decoder's; what it lets through may still fail there (a duplicate key), as an error. */
#include "lc.h"
#include "codec_check.h"

#include <string.h>

enum {
  TAG_NIL = 0, TAG_TRUE = 2, TAG_NULL = 3, TAG_LIGHTUD32 = 4, TAG_LIGHTUD64 = 5, TAG_INT = 6, TAG_NUM = 7,
  TAG_TAB = 8, TAG_TAB_LAST = 13, TAG_INT64 = 16, TAG_UINT64 = 17, TAG_COMPLEX = 18, TAG_STR = 32,
};
#define MAX_DEPTH 100

typedef struct scan { const unsigned char *r, *w; const char *err; } scan;

static int ru124(scan *s, uint32_t *v) {
  if (s->r >= s->w) return 0;
  uint32_t x = *s->r++;
  if (x >= 0xe0) {
    if (x != 0xff) {
      if (s->r >= s->w) return 0;
      x = ((x & 0x1f) << 8) + *s->r++ + 0xe0;
    } else {
      if (s->w - s->r < 4) return 0;
      x = (uint32_t)s->r[0] | (uint32_t)s->r[1] << 8 | (uint32_t)s->r[2] << 16 | (uint32_t)s->r[3] << 24;
      s->r += 4;
    }
  }
  *v = x;
  return 1;
}

/* a double's 8 little-endian bytes are a NaN */
static int is_nan(const unsigned char *p) {
  uint64_t u = 0;
  for (int i = 7; i >= 0; i--) u = u << 8 | p[i];
  return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull && (u & 0x000fffffffffffffull) != 0;
}

/* is_key: the value is a table key, which may be neither nil nor NaN */
static int value(scan *s, int depth, int is_key) {
  uint32_t tp;
  if (!ru124(s, &tp)) { s->err = "truncated"; return 0; }
  size_t left = (size_t)(s->w - s->r);
  if (tp >= TAG_STR) {
    if (tp - TAG_STR > left) { s->err = "truncated string"; return 0; }
    s->r += tp - TAG_STR;
  } else if (tp <= TAG_NULL) {
    if (is_key && tp == TAG_NIL) { s->err = "a nil table key"; return 0; }
  } else if (tp == TAG_LIGHTUD32 || tp == TAG_LIGHTUD64) {
    s->err = "a light userdata";  /* a pointer means nothing in another process */
    return 0;
  } else if (tp <= TAG_NUM || (tp >= TAG_INT64 && tp <= TAG_COMPLEX)) {  /* fixed sizes */
    size_t n = tp == TAG_INT ? 4 : tp == TAG_COMPLEX ? 16 : 8;
    if (left < n) { s->err = "truncated number"; return 0; }
    if (is_key && tp == TAG_NUM && is_nan(s->r)) { s->err = "a NaN table key"; return 0; }
    s->r += n;
  } else if (tp >= TAG_TAB && tp <= TAG_TAB_LAST) {
    uint32_t narray = 0, nhash = 0;
    if (depth >= MAX_DEPTH) { s->err = "tables nested more than 100 levels"; return 0; }
    if (tp >= TAG_TAB + 2 && !ru124(s, &narray)) { s->err = "truncated"; return 0; }
    if ((tp & 1) && !ru124(s, &nhash)) { s->err = "truncated"; return 0; }
    /* LuaJIT's own limits (lj_def.h: LJ_MAX_ASIZE, LJ_MAX_HBITS), past which lj_tab_new raises */
    if (narray > (1u << 27) || nhash > (1u << 26)) { s->err = "a table too large"; return 0; }
    uint64_t elems = narray > 0 && tp >= TAG_TAB + 4 ? narray - 1u : narray;
    left = (size_t)(s->w - s->r);
    /* every element takes a byte at least, every key and value too */
    if (elems > left || (uint64_t)nhash * 2 > left - elems) { s->err = "a table larger than its bytes"; return 0; }
    for (uint64_t i = 0; i < elems; i++)
      if (!value(s, depth + 1, 0)) return 0;
    for (uint64_t i = 0; i < nhash; i++)
      if (!value(s, depth + 1, 1) || !value(s, depth + 1, 0)) return 0;
  } else {
    s->err = "unknown or dictionary tag";
    return 0;
  }
  return 1;
}

/* NULL when p..p+len is one complete, bounded value; else why not */
const char *lc_codec_check(const char *p, size_t len) {
  scan s = {(const unsigned char *)p, (const unsigned char *)p + len, NULL};
  if (!value(&s, 0, 0)) return s.err;
  if (s.r != s.w) return "left-over data in buffer";
  return NULL;
}
