/* ipc.h: the framed message channel between two processes (ipc.c). */
#ifndef LC_IPC_H
#define LC_IPC_H

#include <stdint.h>
#include <uv.h>
#include <lua.h>

typedef struct lc_rt lc_rt;
typedef struct lc_ipc lc_ipc;
struct lc_frame_header;

lc_ipc *lc_ipc_new(lua_State *L, int cb_idx);   /* pushes the box; pipe initialised, not open */
uv_pipe_t *lc_ipc_pipe(lc_ipc *ch);
int lc_ipc_start(lc_ipc *ch);                     /* starts reading once the pipe is open */
/* takes ownership of conn; seq != 0: the master keeps a copy, the peer acknowledges that frame */
int lc_ipc_send_conn(lc_ipc *ch, int key, uv_tcp_t *conn, uint32_t seq);
uint64_t lc_ipc_serial(const lc_ipc *ch);         /* unique per channel in this process */
int lc_ipc_unacked(const lc_ipc *ch);             /* CONN frames with a copy not acknowledged yet */
void lc_ipc_acked(lc_ipc *ch);                    /* dispatch.c: one of those is settled */
lc_ipc *lc_ipc_by_serial(lc_rt *rt, int id, uint64_t serial); /* worker id's channel serial, if open */
lc_ipc *lc_ipc_route(lc_rt *rt, int id);          /* the channel registered for worker id */
void lc_ipc_flush_all(lc_rt *rt);                 /* best-effort synchronous flush (before exit) */
int lc_ipc_send_frame(lc_ipc *ch, const struct lc_frame_header *h, const char *payload); /* 0 or UV_E* */
lc_rt *lc_ipc_rt(const lc_ipc *ch);
size_t lc_ipc_max_frame(const lc_ipc *ch);
size_t lc_ipc_queued(const lc_ipc *ch);           /* bytes written to it that the peer has not taken */        /* the largest payload it reads (max_message_size) */
#define LC_IPC_DEFAULT_MAX_FRAME ((size_t)64 << 20)  /* cluster.setup's max_message_size default */
void lc_open_ipc(lua_State *L);

#endif
