/* signal_names.c: the table of signal names and numbers ("SIGTERM" or "TERM" <-> 15), for
 * kill, signal handles and a child's exit. Owns nothing. */
#include "signal_names.h"

#include <signal.h>
#include <string.h>

static const struct { const char *name; int num; } SIGNALS[] = {
  {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT}, {"SIGILL", SIGILL},
  {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE},
  {"SIGKILL", SIGKILL}, {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM}, {"SIGCHLD", SIGCHLD},
  {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN},
  {"SIGTTOU", SIGTTOU}, {"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
  {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
  {"SIGSYS", SIGSYS}, {NULL, 0},
};

int lc_signum(const char *name) {
  for (int i = 0; SIGNALS[i].name; i++) {
    if (strcmp(SIGNALS[i].name, name) == 0 || strcmp(SIGNALS[i].name + 3, name) == 0)
      return SIGNALS[i].num;
  }
  return 0;
}

const char *lc_signame(int signum) {
  for (int i = 0; SIGNALS[i].name; i++)
    if (SIGNALS[i].num == signum) return SIGNALS[i].name;
  return NULL;
}
