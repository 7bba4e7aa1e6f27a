/* ps_topics.c: a table topic -> members for publish/subscribe (pubsub.h), a chained hash that
 * doubles when it holds as many topics as buckets, and halves (down to MIN_BUCKETS) when it
 * holds fewer than a quarter: many topics that came and went leave no big bucket array behind
 * (nor a walk of it per closed channel, lc_ps_channel_gone). Owns its buckets and topic entries (each with
 * its items array); the items themselves belong to the caller. Freed by lc_ps_unlink (one
 * topic) or lc_ps_table_free (all). */
#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_of(const char *s, size_t len) {   /* FNV-1a */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

#define MIN_BUCKETS 64

/* the topics into n buckets (a power of two): 0 or UV_ENOMEM (the table as it was) */
static int rehash(lc_ps_table *t, size_t n) {
  lc_ps_topic **b = calloc(n, sizeof *b);
  if (b == NULL) return UV_ENOMEM;
  for (size_t i = 0; i < t->nbuckets; i++) {
    lc_ps_topic *e = t->buckets[i];
    while (e) {
      lc_ps_topic *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
  return 0;
}

lc_ps_topic *lc_ps_get(lc_ps_table *t, const char *name, size_t len, int create) {
  uint32_t h = hash_of(name, len);
  if (t->nbuckets > 0) {
    for (lc_ps_topic *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next)
      if (e->hash == h && e->len == len && memcmp(e->name, name, len) == 0) return e;
  }
  if (!create) return NULL;
  if (t->count >= t->nbuckets && rehash(t, t->nbuckets ? t->nbuckets * 2 : MIN_BUCKETS) != 0 && t->nbuckets == 0)
    return NULL;
  if (len > SIZE_MAX - sizeof(lc_ps_topic) - 1) return NULL;
  lc_ps_topic *e = calloc(1, sizeof *e + len + 1);
  if (e == NULL) return NULL;
  e->hash = h;
  e->len = len;
  memcpy(e->name, name, len);
  size_t b = h & (t->nbuckets - 1);
  e->next = t->buckets[b];
  t->buckets[b] = e;
  t->count++;
  return e;
}

int lc_ps_add(lc_ps_topic *e, void *item) {
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 4;
    if (cap > SIZE_MAX / sizeof *e->items) return UV_ENOMEM;
    void **p = realloc(e->items, cap * sizeof *p);
    if (p == NULL) return UV_ENOMEM;
    e->items = p;
    e->cap = cap;
  }
  e->items[e->n++] = item;
  return 0;
}

void lc_ps_unlink(lc_ps_table *t, lc_ps_topic *e) {
  lc_ps_topic **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
  while (*pp && *pp != e) pp = &(*pp)->next;
  if (*pp) {
    *pp = e->next;
    t->count--;
  }
  free(e->items);
  free(e);
  if (!t->walking) lc_ps_shrink(t);
}

void lc_ps_shrink(lc_ps_table *t) {
  while (t->nbuckets > MIN_BUCKETS && t->count < t->nbuckets / 4)
    if (rehash(t, t->nbuckets / 2) != 0) return;   /* (out of memory: as it was) */
}

void lc_ps_table_free(lc_ps_table *t) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    lc_ps_topic *e = t->buckets[i];
    while (e) {
      lc_ps_topic *next = e->next;
      free(e->items);
      free(e);
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = NULL;
  t->nbuckets = t->count = 0;
}
