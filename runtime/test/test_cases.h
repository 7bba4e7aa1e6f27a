/* test_cases.h: the runner of a C test binary whose spec runs one case at a time:
 * `PROG CASE` runs that case, prints "ok CASE" and exits 0; a failed CHECK names itself and
 * exits 1; a missing or unknown case exits 2. (test_ps_topics.c uses it; test_ws_frame.c and
 * test_ws_deflate.c have the same runner written out.) */
#ifndef LC_TEST_CASES_H
#define LC_TEST_CASES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

typedef struct lc_test_case { const char *name; void (*fn)(void); } lc_test_case;

static inline int lc_test_run(int argc, char **argv, const lc_test_case *cases, size_t n) {
  if (argc != 2) { fprintf(stderr, "usage: %s CASE\n", argv[0]); return 2; }
  for (size_t i = 0; i < n; i++) {
    if (strcmp(argv[1], cases[i].name) != 0) continue;
    cases[i].fn();
    printf("ok %s\n", cases[i].name);
    return 0;
  }
  fprintf(stderr, "no case %s\n", argv[1]);
  return 2;
}

#endif
