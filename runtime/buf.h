/* buf.h: the runtime's one growable byte buffer, with checked growth.
 * A buffer owns its bytes (data, freed by lc_buf_free, the one place); len bytes are in use of
 * cap allocated, and it never grows past max. Growth doubles, every sum and product is checked:
 * a size that would pass max (or wrap) is UV_E2BIG, an allocation that fails is UV_ENOMEM, and
 * on either error the buffer is left as it was. Nothing aborts. */
#ifndef LC_BUF_H
#define LC_BUF_H

#include <stddef.h>
#include <stdint.h>

#define LC_BUF_MIN 256                 /* the first allocation, unless more is asked for */
#define LC_BUF_NO_CAP (SIZE_MAX / 2)   /* the largest max: no allocation can be bigger anyway */

typedef struct lc_buf {
  char *data;     /* NULL until the first growth */
  size_t len;     /* bytes in use */
  size_t cap;     /* bytes allocated */
  size_t max;     /* cap never passes it; 0: LC_BUF_NO_CAP (a zeroed lc_buf is empty, uncapped) */
} lc_buf;

void lc_buf_init(lc_buf *b, size_t max);   /* empty, nothing allocated; max 0: LC_BUF_NO_CAP */
/* the capacity to grow cap to for need bytes under max (0: no cap): 0 and *out, or UV_E2BIG */
int lc_buf_next_cap(size_t cap, size_t need, size_t max, size_t *out);
int lc_buf_reserve(lc_buf *b, size_t extra);          /* room for extra more bytes after len */
int lc_buf_append(lc_buf *b, const void *p, size_t n);
void lc_buf_consume(lc_buf *b, size_t n);             /* drops the first n bytes (n <= len) */
void lc_buf_free(lc_buf *b);                          /* frees the bytes; empty again, max kept */
/* gives b (bytes handed over from another owner) the max max (0: no cap); an allocation bigger
 * than max is freed when b is empty, else shrunk to max when its bytes fit (kept on failure:
 * lc_buf_reserve refuses past max whatever cap is) */
void lc_buf_set_max(lc_buf *b, size_t max);

static inline char *lc_buf_end(lc_buf *b) { return b->data + b->len; }
static inline size_t lc_buf_room(const lc_buf *b) { return b->cap - b->len; }

#endif
