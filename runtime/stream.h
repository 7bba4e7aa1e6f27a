/* stream.h: byte pipes bound to Lua (stream.c). */
#ifndef LC_STREAM_H
#define LC_STREAM_H

#include <uv.h>
#include <lua.h>

typedef struct lc_handle_base lc_handle_base;
typedef struct lc_stream lc_stream;

lc_stream *lc_stream_new(lua_State *L, int cb_idx);   /* pushes the box */
uv_pipe_t *lc_stream_pipe(lc_stream *s);
lc_handle_base *lc_stream_base(lc_stream *s);
int lc_stream_start(lc_stream *s);                    /* reads (a child's pipe, once spawned) */
void lc_stream_close(lc_stream *s);                   /* after its queued writes (send timeout) */
void lc_open_stream(lua_State *L);
void lc_open_unix_socket(lua_State *L);               /* unix_socket.c: pipe_listen, pipe_connect */

#endif
