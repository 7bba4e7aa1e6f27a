/* test_ps_topics.c: checks of the publish/subscribe topic table (ps_topics.c), run by
 * spec/ps_topics_spec.lua one case at a time: `test_ps_topics CASE` prints "ok CASE" and exits
 * 0, or names the failed check and exits 1. */
#include "../pubsub.h"
#include "test_cases.h"

static size_t name_of(char *out, size_t i) { return (size_t)sprintf(out, "topic/%zu", i); }

/* topics made, found, unlinked; binary names (a 0 inside) are names like any other */
static void t_basic(void) {
  lc_ps_table t = {0};
  char name[32];
  for (size_t i = 0; i < 1000; i++) {
    size_t n = name_of(name, i);
    lc_ps_topic *e = lc_ps_get(&t, name, n, 1);
    CHECK(e != NULL && e->len == n && memcmp(e->name, name, n) == 0 && e->name[n] == 0);
    CHECK(lc_ps_add(e, (void *)(i + 1)) == 0 && e->n == 1);
  }
  CHECK(t.count == 1000);
  for (size_t i = 0; i < 1000; i++) {
    size_t n = name_of(name, i);
    lc_ps_topic *e = lc_ps_get(&t, name, n, 0);
    CHECK(e != NULL && e->items[0] == (void *)(i + 1));
  }
  CHECK(lc_ps_get(&t, "topic/1000", 10, 0) == NULL);
  CHECK(lc_ps_get(&t, "a\0b", 3, 1) != lc_ps_get(&t, "a\0c", 3, 1));
  CHECK(lc_ps_get(&t, "a", 1, 0) == NULL);
  for (size_t i = 0; i < 1000; i += 2) {
    size_t n = name_of(name, i);
    lc_ps_unlink(&t, lc_ps_get(&t, name, n, 0));
  }
  CHECK(t.count == 502);
  for (size_t i = 0; i < 1000; i++) {
    size_t n = name_of(name, i);
    CHECK((lc_ps_get(&t, name, n, 0) != NULL) == (i % 2 == 1));
  }
  lc_ps_table_free(&t);
  CHECK(t.count == 0 && t.buckets == NULL);
}

/* a table that held many topics gives its buckets back as they go: a worker that once had
 * 100,000 topics keeps neither 800 KB of buckets nor a walk of all of them per channel close */
static void t_shrink(void) {
  lc_ps_table t = {0};
  char name[32];
  for (size_t i = 0; i < 100000; i++) CHECK(lc_ps_get(&t, name, name_of(name, i), 1) != NULL);
  CHECK(t.nbuckets >= 100000);
  for (size_t i = 0; i < 99990; i++) {
    size_t n = name_of(name, i);
    lc_ps_unlink(&t, lc_ps_get(&t, name, n, 0));
  }
  CHECK(t.count == 10);
  CHECK(t.nbuckets <= 64);
  for (size_t i = 99990; i < 100000; i++) CHECK(lc_ps_get(&t, name, name_of(name, i), 0) != NULL);
  lc_ps_table_free(&t);
}

/* a walk of the buckets that unlinks as it goes (lc_ps_channel_gone) sees every topic once:
 * with walking set the buckets do not move under it */
static void t_walk(void) {
  lc_ps_table t = {0};
  char name[32];
  for (size_t i = 0; i < 10000; i++) CHECK(lc_ps_get(&t, name, name_of(name, i), 1) != NULL);
  size_t seen = 0;
  t.walking = 1;
  for (size_t b = 0; b < t.nbuckets; b++) {
    lc_ps_topic *e = t.buckets[b];
    while (e) {
      lc_ps_topic *next = e->next;
      seen++;
      lc_ps_unlink(&t, e);
      e = next;
    }
  }
  t.walking = 0;
  CHECK(seen == 10000 && t.count == 0);
  lc_ps_shrink(&t);
  CHECK(t.nbuckets == 64);
  lc_ps_table_free(&t);
}

int main(int argc, char **argv) {
  static const lc_test_case cases[] = { { "basic", t_basic }, { "shrink", t_shrink }, { "walk", t_walk } };
  return lc_test_run(argc, argv, cases, sizeof cases / sizeof cases[0]);
}
