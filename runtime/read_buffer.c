/* read_buffer.c: the pattern matching of read_buffer.h over a connection's buffered bytes.
 * Owns nothing. A search resumes where the last one stopped (w->scanned), so a line or a
 * delimiter that arrives in many small reads costs one pass over the bytes, not one per read. */
#define _GNU_SOURCE
#include "read_buffer.h"

#include <string.h>

/* the length of the longest suffix of p[0..len) that is a proper prefix of d[0..dlen) */
static size_t prefix_tail(const char *p, size_t len, const char *d, size_t dlen) {
  size_t k = dlen - 1 < len ? dlen - 1 : len;
  for (; k > 0; k--)
    if (memcmp(p + len - k, d, k) == 0) return k;
  return 0;
}

static int match_until(const char *p, size_t len, lc_rb_want *w, lc_rb_take *t) {
  size_t from = w->scanned >= w->dlen ? w->scanned - (w->dlen - 1) : 0;
  const char *hit = from < len ? memmem(p + from, len - from, w->delim, w->dlen) : NULL;
  if (hit) {
    size_t at = (size_t)(hit - p);
    if (w->n > 0 && at > w->n) {          /* more than a chunk before delim: a chunk first */
      t->give = t->drop = w->n;
      t->found = 0;
      return 1;
    }
    t->give = at + (w->inclusive ? w->dlen : 0);
    t->drop = at + w->dlen;
    t->found = 1;
    return 1;
  }
  w->scanned = len;
  if (w->n > 0) {
    size_t safe = len - prefix_tail(p, len, w->delim, w->dlen);
    if (safe >= w->n) {
      t->give = t->drop = w->n;
      t->found = 0;
      return 1;
    }
  }
  return 0;
}

int lc_rb_match(const char *p, size_t len, lc_rb_want *w, int eof, lc_rb_take *t) {
  t->found = 0;
  switch (w->kind) {
  case LC_RB_ANY:
    if (len == 0) return 0;
    t->give = t->drop = (w->n > 0 && len > w->n) ? w->n : len;
    return 1;
  case LC_RB_EXACT:
    if (len < w->n) return 0;
    t->give = t->drop = w->n;
    return 1;
  case LC_RB_LINE: {
    const char *nl = w->scanned < len ? memchr(p + w->scanned, '\n', len - w->scanned) : NULL;
    if (nl == NULL) { w->scanned = len; return 0; }
    size_t at = (size_t)(nl - p);
    t->give = at > 0 && p[at - 1] == '\r' ? at - 1 : at;
    t->drop = at + 1;
    return 1;
  }
  case LC_RB_UNTIL:
    return match_until(p, len, w, t);
  case LC_RB_ALL:
    if (!eof) return 0;
    t->give = t->drop = len;
    return 1;
  }
  return 0;
}
