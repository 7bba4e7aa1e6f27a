/* log.h: the runtime's log lines, the forwarding of a worker's output lines, and the writer
 * thread of fds 1 and 2 (log.c: bounded queues, never waits). */
#ifndef LC_LOG_H
#define LC_LOG_H

#include <stddef.h>
#include <lua.h>

typedef struct lc_rt lc_rt;

void lc_log_emit(lc_rt *rt, const char *msg, size_t len);
void lc_log_forward(lc_rt *rt, int fd, const char *prefix, int pid, const char *line, size_t len);
void lc_log_queue(int fd, const char *buf, size_t len);   /* whole lines; dropped (counted) when full */
void lc_log_flush(void);                                  /* before exit: waits (bounded) until written */
void lc_open_log(lua_State *L);

#endif
