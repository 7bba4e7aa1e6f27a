/* signal_names.h: signal names and numbers (signal_names.c). */
#ifndef LC_SIGNAL_NAMES_H
#define LC_SIGNAL_NAMES_H

int lc_signum(const char *name);                /* "SIGTERM" or "TERM" -> 15; 0 when unknown */
const char *lc_signame(int signum);             /* 15 -> "SIGTERM"; NULL when unknown */

#endif
