/* log_forward.h: the master's line forwarder of a child's output (log_forward.c). */
#ifndef LC_LOG_FORWARD_H
#define LC_LOG_FORWARD_H

#include <uv.h>

typedef struct lc_rt lc_rt;
typedef struct lc_forward lc_forward;

/* a forwarder of lines to out_fd, each prefixed; its pipe is initialised, not open (spawn's) */
lc_forward *lc_forward_new(lc_rt *rt, int out_fd, const char *prefix);
uv_pipe_t *lc_forward_pipe(lc_forward *f);
int lc_forward_start(lc_forward *f, int pid);   /* reads the lines of child pid; 0 or UV_E* */
void lc_forward_close(lc_forward *f);           /* a spawn that failed: it frees itself */

#endif
