/* read_buffer.h: reads by pattern over the bytes a connection has buffered (read_buffer.c).
 * Pure functions: given the buffered bytes and what a reader wants, they say whether the bytes
 * satisfy it and how many to hand out and to drop. The buffer itself (an lc_buf) and the wait for
 * more bytes are the connection's (conn.c).
 *
 * The kinds (conn.c's recv(kind, ...) and the Lua names on top of them):
 *   LC_RB_ANY    n: what is buffered, at most n bytes when n > 0 (read(), receiveany(max))
 *   LC_RB_EXACT  n: exactly n bytes (read(n), receive(n))
 *   LC_RB_LINE   a line, handed out without its "\n" or "\r\n" (read_line(), receive("*l"))
 *   LC_RB_UNTIL  the bytes before delim; delim is dropped (or handed out too when inclusive).
 *                With max n > 0 it hands out partial chunks: at most n bytes of what lies before
 *                delim, found = 0, as soon as n such bytes are known not to begin delim; the
 *                chunk that ends at delim comes with found = 1. This is the primitive under
 *                OpenResty's receiveuntil(pattern, {inclusive=})'s iterator(size): iterator(size)
 *                is recv(UNTIL, pattern, size, inclusive), and after a chunk with found = 1 the
 *                iterator returns nil once (the pattern was reached). Without max the whole
 *                part before delim comes at once (read_until(delim), iterator()).
 *   LC_RB_ALL    everything until the peer closes (read_all(), receive("*a"))
 * At the peer's end, a reader not satisfied gets what is left as its partial (conn.c). */
#ifndef LC_READ_BUFFER_H
#define LC_READ_BUFFER_H

#include <stddef.h>

enum { LC_RB_ANY = 1, LC_RB_EXACT, LC_RB_LINE, LC_RB_UNTIL, LC_RB_ALL };

typedef struct lc_rb_want {
  int kind;
  size_t n;              /* ANY: max (0: none); EXACT: the count; UNTIL: max chunk (0: none) */
  const char *delim;     /* UNTIL */
  size_t dlen;           /* UNTIL: >= 1 */
  int inclusive;         /* UNTIL: delim is handed out with the bytes before it */
  size_t scanned;        /* bytes already searched without a match (kept by the caller between calls) */
} lc_rb_want;

typedef struct lc_rb_take {
  size_t give;           /* bytes to hand out, from the start of the buffer */
  size_t drop;           /* bytes to consume (>= give: a line end, a delimiter) */
  int found;             /* UNTIL: the chunk ends at delim */
} lc_rb_take;

/* 1 when the len bytes at p satisfy w (t filled), 0 when more must come (w->scanned updated).
 * eof: the peer has ended; only ALL is satisfied by it (the others then take what is left). */
int lc_rb_match(const char *p, size_t len, lc_rb_want *w, int eof, lc_rb_take *t);

#endif
