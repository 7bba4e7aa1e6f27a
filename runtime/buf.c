/* buf.c: the growable byte buffer of buf.h. Owns nothing but each buffer's bytes. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

void lc_buf_init(lc_buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = (max == 0 || max > LC_BUF_NO_CAP) ? LC_BUF_NO_CAP : max;
}

int lc_buf_next_cap(size_t cap, size_t need, size_t max, size_t *out) {
  if (max == 0 || max > LC_BUF_NO_CAP) max = LC_BUF_NO_CAP;
  if (need > max) return UV_E2BIG;
  size_t c = cap >= LC_BUF_MIN ? cap : LC_BUF_MIN;
  while (c < need) c = c > max / 2 ? max : c * 2;   /* c * 2 <= max <= SIZE_MAX / 2: no wrap */
  if (c > max) c = max;                             /* a first LC_BUF_MIN over a small max */
  *out = c;
  return 0;
}

int lc_buf_reserve(lc_buf *b, size_t extra) {
  /* max first: a buffer handed over from another owner may have more room than its max allows */
  size_t max = (b->max == 0 || b->max > LC_BUF_NO_CAP) ? LC_BUF_NO_CAP : b->max;
  if (b->len > max || extra > max - b->len) return UV_E2BIG;
  if (b->cap - b->len >= extra) return 0;
  size_t cap;
  int r = lc_buf_next_cap(b->cap, b->len + extra, b->max, &cap);
  if (r != 0) return r;
  char *p = realloc(b->data, cap);
  if (p == NULL) return UV_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int lc_buf_append(lc_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  int r = lc_buf_reserve(b, n);
  if (r != 0) return r;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void lc_buf_consume(lc_buf *b, size_t n) {
  if (n >= b->len) { b->len = 0; return; }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void lc_buf_free(lc_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void lc_buf_set_max(lc_buf *b, size_t max) {
  b->max = (max == 0 || max > LC_BUF_NO_CAP) ? LC_BUF_NO_CAP : max;
  if (b->cap <= b->max) return;
  if (b->len == 0) { lc_buf_free(b); return; }
  if (b->len > b->max) return;
  char *p = realloc(b->data, b->max);
  if (p == NULL) return;
  b->data = p;
  b->cap = b->max;
}
