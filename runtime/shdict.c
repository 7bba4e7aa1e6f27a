/* shdict.c: the shared dictionary store: a hash table of entries with an LRU order, expiry,
 * lists, and OpenResty's ngx.shared.DICT operations, in one region of shared memory that
 * every process maps (shdict_lua.c). Owns nothing but the region's contents and a per-process
 * scratch buffer (values and keys are copied there under the lock, so that no Lua call, which
 * may raise, runs while the lock is held); the scratch buffer lives as long as the process.
 *
 * Crash safety: why a holder killed at any instruction leaves no lock held and no torn entry.
 * - The lock is a process-shared robust mutex: when its holder dies, the kernel hands it to
 *   the next locker with EOWNERDEAD; that locker repairs the region (below) and marks the mutex
 *   consistent. Nothing is ever done while holding it that can block or raise.
 * - Every operation is a sequence of steps. Between two steps the region is consistent: every
 *   entry is either wholly in the table (hash chain, LRU list, counters) or not at all, and every
 *   block is either on a free list or owned by exactly one entry. An eviction, an expired entry's
 *   removal, a list element's free and a flush batch are each their own step.
 * - Within a step, every write to a word that means something to the structure (links, tags,
 *   free lists, counters, a number updated in place) goes through shd_jwrite: it first appends
 *   (where, old bytes) to the undo journal in the region's header, then bumps the journal's
 *   count, then writes; the compiler keeps that order (SHD_ORDER), and a process dies at an
 *   instruction boundary, so every write before the kill is there and none after it. The bytes
 *   of a block just allocated in this step (a new entry's key and value) are written without
 *   the journal: undoing the allocation makes them free memory again, so they never need undoing.
 * - A step ends with the journal's count set to 0 (one aligned store): the commit. The next
 *   holder after an EOWNERDEAD applies the journal's old bytes in reverse and sets the count to
 *   0: the interrupted step never happened (discarded). An entry is replaced by linking the new
 *   block and unlinking the old one in one step, so a reader sees the old value or the new one.
 *   A dead repairer leaves the journal as it was (undoing is idempotent): the next one redoes it.
 * - Freeing a list's elements is unbounded, so a list entry leaving the table is detached in
 *   one step onto the garbage list in the header, and its elements are freed one step each by
 *   whoever holds the lock next (finished, not discarded).
 * - The counters the master reads (entries, bytes used, evictions) are plain words it reads
 *   without the lock (lc_shd_stats_read): it never waits for a lock a worker holds. */
#define _GNU_SOURCE
#include "shdict.h"
#include "shdict_int.h"

#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

int lc_shd_crash_countdown;      /* shdict_int.h: fault injection for the specs */
static int lock_timeout_ms;      /* 0: wait as long as it takes (workers); the master sets it */

void lc_shd_lock_timeout(int ms) { lock_timeout_ms = ms; }

/* ---- the scratch buffer: where reads copy what they return ---- */

static char *scratch;
static size_t scratch_cap;

static int scratch_fit(size_t n) {
  if (n <= scratch_cap) return 0;
  size_t cap = scratch_cap ? scratch_cap : 256;
  while (cap < n) cap *= 2;
  char *p = realloc(scratch, cap);
  if (p == NULL) return -1;
  scratch = p;
  scratch_cap = cap;
  return 0;
}

/* ---- time, hashing, layout helpers ---- */

/* the coarse clock (the kernel's tick, 1 to 4 ms; a few ns to read where the precise one
 * costs ~40 ns on this kind of VM): expiry is as precise as OpenResty's cached time */
static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* FNV-1a from a basis drawn when the region was made: keys chosen to fall in one chain of
 * one dictionary do not do so in another */
static uint32_t hash_key(const shd_hdr *hd, const char *key, size_t len) {
  uint32_t h = 2166136261u ^ hd->seed;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)key[i]) * 16777619u;
  return h;
}

static inline shd_node *node_at(shd_hdr *h, uint32_t off) { return SHD_AT(h, off); }
static inline shd_elem *elem_at(shd_hdr *h, uint32_t off) { return SHD_AT(h, off); }
static inline char *node_key(shd_node *n) { return (char *)(n + 1); }
static inline char *node_val(shd_node *n) { return (char *)(n + 1) + n->klen; }
static inline uint32_t *bucket_of(shd_hdr *h, uint32_t hash) {
  return (uint32_t *)SHD_AT(h, h->buckets) + (hash & (h->nbuckets - 1));
}
/* a list's head and tail (element offsets), 4-byte aligned after the key */
static inline size_t list_pos(size_t klen) { return (sizeof(shd_node) + klen + 3) & ~(size_t)3; }
static inline uint32_t *list_ends(shd_node *n) { return (uint32_t *)((char *)n + list_pos(n->klen)); }

static inline uint64_t node_exp(const shd_node *n) { return (uint64_t)n->exp_hi << 32 | n->exp_lo; }
static inline int expired(const shd_node *n, uint64_t now) {
  uint64_t e = node_exp(n);
  return e != 0 && e <= now;
}

static void set_exp(shd_hdr *h, shd_node *n, uint64_t e, int journal) {
  if (journal) {
    shd_j32(h, &n->exp_lo, (uint32_t)e);
    shd_j32(h, &n->exp_hi, (uint32_t)(e >> 32));
  } else {
    n->exp_lo = (uint32_t)e;
    n->exp_hi = (uint32_t)(e >> 32);
  }
}

static uint64_t exp_from(uint64_t now, int64_t ms) { return ms > 0 ? now + (uint64_t)ms : 0; }

/* ---- the lock and the repair ---- */

static void rollback(shd_hdr *h) {
  uint32_t n = h->jn;
  if (n > SHD_JOURNAL) n = SHD_JOURNAL;
  while (n-- > 0) {
    shd_jent *e = &h->j[n];
    if (e->len == 0 || e->len > 8 || (uint64_t)e->off + e->len > h->size) continue;
    memcpy(SHD_AT(h, e->off), &e->old, e->len);
  }
  shd_commit(h);
}

/* A holder keeps the lock for a few hundred ns at most: spin a little before sleeping in the
 * kernel (as nginx's shmtx does; a robust mutex cannot be glibc's adaptive kind). The lock
 * word is only read while spinning (glibc's; 0 when free), and taken with trylock. */
#define SPIN_MAX 2048        /* nginx's lock spins up to 2047 pauses, doubling, before sleeping */
static int spin_trylock(shd_hdr *h) {
  int r = pthread_mutex_trylock(&h->mutex);
  for (int n = 1; r == EBUSY && n < SPIN_MAX; n <<= 1) {
    for (int i = 0; i < n; i++) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
#ifdef __GLIBC__
    if (__atomic_load_n(&h->mutex.__data.__lock, __ATOMIC_RELAXED) != 0) continue;
#endif
    r = pthread_mutex_trylock(&h->mutex);
  }
  return r;
}

static int shd_lock(shd_hdr *h) {
  int r = spin_trylock(h);
  if (r != EBUSY) {
    /* taken (or found its holder dead) without sleeping, and without a clock read */
  } else if (lock_timeout_ms > 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += lock_timeout_ms / 1000;
    ts.tv_nsec += (long)(lock_timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    r = pthread_mutex_timedlock(&h->mutex, &ts);
  } else {
    r = pthread_mutex_lock(&h->mutex);
  }
  if (r == EOWNERDEAD) {          /* its last holder died: undo its unfinished step */
    rollback(h);
    __atomic_store_n(&h->repairs, h->repairs + 1, __ATOMIC_RELAXED);
    r = pthread_mutex_consistent(&h->mutex);
    if (r != 0) { pthread_mutex_unlock(&h->mutex); return uv_translate_sys_error(r); }
    return 0;
  }
  if (r == ETIMEDOUT) return UV_EBUSY;
  if (r != 0) return uv_translate_sys_error(r);
  if (h->jn != 0) rollback(h);    /* never: a holder that lived committed; cheap to be sure */
  return 0;
}

static void shd_unlock(shd_hdr *h) { pthread_mutex_unlock(&h->mutex); }

/* ---- the table and the LRU list (each write journaled) ---- */

static uint32_t lookup(shd_hdr *h, const char *key, size_t klen, uint32_t hash) {
  for (uint32_t off = *bucket_of(h, hash); off != SHD_NIL;) {
    shd_node *n = node_at(h, off);
    if (n->hash == hash && n->klen == klen && memcmp(node_key(n), key, klen) == 0) return off;
    off = n->hnext;
  }
  return SHD_NIL;
}

static void hash_unlink(shd_hdr *h, uint32_t off) {
  shd_node *n = node_at(h, off);
  uint32_t *p = bucket_of(h, n->hash);
  while (*p != off) p = &node_at(h, *p)->hnext;
  shd_j32(h, p, n->hnext);
}

static void lru_unlink(shd_hdr *h, shd_node *n) {
  if (n->lprev != SHD_NIL) shd_j32(h, &node_at(h, n->lprev)->lnext, n->lnext);
  else shd_j32(h, &h->lru_head, n->lnext);
  if (n->lnext != SHD_NIL) shd_j32(h, &node_at(h, n->lnext)->lprev, n->lprev);
  else shd_j32(h, &h->lru_tail, n->lprev);
}

static void lru_push(shd_hdr *h, uint32_t off) {
  shd_node *n = node_at(h, off);
  uint32_t head = h->lru_head;
  shd_j32(h, &n->lprev, SHD_NIL);
  shd_j32(h, &n->lnext, head);
  if (head != SHD_NIL) shd_j32(h, &node_at(h, head)->lprev, off);
  else shd_j32(h, &h->lru_tail, off);
  shd_j32(h, &h->lru_head, off);
}

/* most recently used (a read's one write, skipped for the hot key already at the head) */
static void touch(shd_hdr *h, uint32_t off) {
  if (h->lru_head == off) return;
  lru_unlink(h, node_at(h, off));
  lru_push(h, off);
}

/* a node made in this step (its fields written plainly) joins the table */
static void link_new(shd_hdr *h, uint32_t off) {
  shd_node *n = node_at(h, off);
  uint32_t *b = bucket_of(h, n->hash);
  n->hnext = *b;
  n->lprev = SHD_NIL;
  n->lnext = SHD_NIL;
  shd_j32(h, b, off);
  lru_push(h, off);
  shd_j32(h, &h->entries, h->entries + 1);
}

/* the node leaves the table; its memory is freed now, or for a list with elements, put on the
 * garbage list for collect_garbage */
static void remove_node(shd_hdr *h, uint32_t off) {
  shd_node *n = node_at(h, off);
  hash_unlink(h, off);
  lru_unlink(h, n);
  shd_j32(h, &h->entries, h->entries - 1);
  if (n->vtype == LC_SHD_TLIST && list_ends(n)[0] != SHD_NIL) {
    shd_j32(h, &n->hnext, h->garbage);
    shd_j32(h, &h->garbage, off);
  } else {
    lc_shd_free(h, off);
  }
}

/* frees what detached lists still hold: one element (or the node) per step */
static void collect_garbage(shd_hdr *h) {
  while (h->garbage != SHD_NIL) {
    uint32_t off = h->garbage;
    shd_node *n = node_at(h, off);
    uint32_t *ends = list_ends(n);
    if (ends[0] != SHD_NIL) {
      uint32_t e = ends[0];
      shd_j32(h, &ends[0], elem_at(h, e)->next);
      lc_shd_free(h, e);
    } else {
      shd_j32(h, &h->garbage, n->hnext);
      lc_shd_free(h, off);
    }
    shd_commit(h);
  }
}

static void count_eviction(shd_hdr *h) {
  uint32_t lo = h->evict_lo + 1;
  shd_j32(h, &h->evict_lo, lo);
  if (lo == 0) shd_j32(h, &h->evict_hi, h->evict_hi + 1);
}

/* removes up to max expired entries from the LRU tail (OpenResty does two before a write) */
static void expire_tail(shd_hdr *h, uint64_t now, int max) {
  while (max-- > 0 && h->lru_tail != SHD_NIL && expired(node_at(h, h->lru_tail), now)) {
    remove_node(h, h->lru_tail);
    shd_commit(h);
    collect_garbage(h);
  }
}

/* evicts the least recently used entry (its own step): 0 when the table is empty */
static int evict_one(shd_hdr *h, uint64_t now, int *forcible) {
  uint32_t off = h->lru_tail;
  if (off == SHD_NIL) return 0;
  if (!expired(node_at(h, off), now)) {
    *forcible = 1;
    count_eviction(h);
  }
  remove_node(h, off);
  shd_commit(h);
  collect_garbage(h);
  return 1;
}

#define EVICT_TRIES 30   /* as OpenResty: at most this many entries evicted for one write */

/* a block of `bytes`, evicting least recently used entries when allowed: SHD_NIL when none */
static uint32_t alloc_evicting(shd_hdr *h, size_t bytes, int may_evict, uint64_t now, int *forcible) {
  if (bytes > h->arena_len) return SHD_NIL;
  uint32_t off = lc_shd_alloc(h, bytes);
  for (int tries = 0; off == SHD_NIL && may_evict && tries < EVICT_TRIES; tries++) {
    if (!evict_one(h, now, forcible)) break;
    off = lc_shd_alloc(h, bytes);
  }
  return off;
}

/* fills a node made in this step (plain writes: the block is new) */
static void fill_node(shd_node *n, const char *key, size_t klen, uint32_t hash, const lc_shd_value *v, uint64_t exp) {
  n->hash = hash;
  n->flags = v->flags;
  n->exp_lo = (uint32_t)exp;
  n->exp_hi = (uint32_t)(exp >> 32);
  n->klen = (uint16_t)klen;
  n->vtype = (uint8_t)v->type;
  n->pad = 0;
  memcpy(node_key(n), key, klen);
  char *val = node_val(n);
  if (v->type == LC_SHD_TSTRING) {
    n->vlen = (uint32_t)v->len;
    if (v->len) memcpy(val, v->str, v->len);
  } else if (v->type == LC_SHD_TNUMBER) {
    n->vlen = sizeof(double);
    memcpy(val, &v->num, sizeof(double));
  } else if (v->type == LC_SHD_TBOOLEAN) {
    n->vlen = 1;
    val[0] = v->num != 0;
  } else {                       /* a new, empty list */
    n->vlen = 0;
    uint32_t *ends = list_ends(n);
    ends[0] = ends[1] = SHD_NIL;
  }
}

static size_t value_bytes(const lc_shd_value *v) {
  return v->type == LC_SHD_TSTRING ? v->len : v->type == LC_SHD_TNUMBER ? sizeof(double) : 1;
}

/* A store over an entry whose block the new value fits as well (same order) and whose value
 * is small: written in place, every byte through the journal (as OpenResty reuses a node of
 * the same size, without an allocation and a free). 1 when done. */
#define IN_PLACE_MAX 64
static int store_in_place(shd_hdr *h, uint32_t off, const lc_shd_value *v, uint64_t exp) {
  shd_node *n = node_at(h, off);
  size_t vb = value_bytes(v);
  if (n->vtype == LC_SHD_TLIST || vb > IN_PLACE_MAX
      || lc_shd_order_of(sizeof(shd_node) + n->klen + vb) != SHD_TAG_ORDER(n->tag))
    return 0;
  char buf[IN_PLACE_MAX];
  if (v->type == LC_SHD_TSTRING) memcpy(buf, v->str, vb);
  else if (v->type == LC_SHD_TNUMBER) memcpy(buf, &v->num, vb);
  else buf[0] = v->num != 0;
  char *val = node_val(n);
  for (size_t at = 0; at < vb; at += 8) {
    uint32_t len = vb - at < 8 ? (uint32_t)(vb - at) : 8;
    if (memcmp(val + at, buf + at, len) != 0) shd_jwrite(h, val + at, buf + at, len);
  }
  shd_j32(h, &n->vlen, (uint32_t)vb);
  if (n->vtype != (uint8_t)v->type) {
    uint8_t t = (uint8_t)v->type;
    shd_jwrite(h, &n->vtype, &t, 1);
  }
  shd_j32(h, (uint32_t *)&n->flags, (uint32_t)v->flags);
  set_exp(h, n, exp, 1);
  touch(h, off);
  return 1;
}

/* copies a node's or element's value out into v (the scratch buffer for strings) */
static int read_value(int type, const char *val, uint32_t vlen, lc_shd_value *v) {
  v->type = type;
  v->str = NULL;
  v->len = 0;
  if (type == LC_SHD_TSTRING) {
    if (scratch_fit(vlen ? vlen : 1) != 0) return UV_ENOMEM;
    memcpy(scratch, val, vlen);
    v->str = scratch;
    v->len = vlen;
  } else if (type == LC_SHD_TNUMBER) {
    memcpy(&v->num, val, sizeof(double));
  } else {
    v->num = val[0] != 0;
  }
  return 0;
}

/* ---- the region ---- */

int lc_shd_format(void *base, size_t size) {
  if (size < LC_SHD_MIN_SIZE || size > LC_SHD_MAX_SIZE) return UV_EINVAL;
  shd_hdr *h = base;
  memset(h, 0, sizeof *h);
  h->size = (uint32_t)size;
  size_t nb = 16;
  while (nb * 2 <= size / 128) nb *= 2;
  h->nbuckets = (uint32_t)nb;
  h->buckets = (uint32_t)((sizeof *h + 63) & ~(size_t)63);
  memset(SHD_AT(h, h->buckets), 0, nb * sizeof(uint32_t));
  h->arena = (uint32_t)((h->buckets + nb * sizeof(uint32_t) + 63) & ~(size_t)63);
  h->arena_len = (uint32_t)((size - h->arena) & ~(size_t)((1u << SHD_MIN_ORDER) - 1));
  if (getrandom(&h->seed, sizeof h->seed, GRND_NONBLOCK) != (ssize_t)sizeof h->seed)
    h->seed = (uint32_t)now_ms() * 2654435761u ^ (uint32_t)getpid();
  pthread_mutexattr_t a;
  int r = pthread_mutexattr_init(&a);
  if (r == 0) r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (r == 0) r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (r == 0) r = pthread_mutex_init(&h->mutex, &a);
  pthread_mutexattr_destroy(&a);
  if (r != 0) return uv_translate_sys_error(r);
  lc_shd_arena_init(h);
  h->used = 0;
  h->magic = SHD_MAGIC;
  return 0;
}

int lc_shd_valid(const void *base, size_t size) {
  const shd_hdr *h = base;
  return h->magic == SHD_MAGIC && h->size == size;
}

void lc_shd_stats_read(const void *base, lc_shd_stats *s) {
  const shd_hdr *h = base;
  uint32_t used = __atomic_load_n(&h->used, __ATOMIC_RELAXED);
  s->capacity = h->size;
  s->used = used;
  s->free = h->arena_len > used ? h->arena_len - used : 0;
  s->entries = __atomic_load_n(&h->entries, __ATOMIC_RELAXED);
  s->evictions = (uint64_t)__atomic_load_n(&h->evict_hi, __ATOMIC_RELAXED) << 32
                 | __atomic_load_n(&h->evict_lo, __ATOMIC_RELAXED);
  s->repairs = __atomic_load_n(&h->repairs, __ATOMIC_RELAXED);
}

/* every operation: take the lock, finish what a dead holder left */
#define BEGIN(h) do { int r_ = shd_lock(h); if (r_ != 0) return r_; if ((h)->garbage) collect_garbage(h); } while (0)

/* the start of an operation that may write (with the lock): the clock, the two expired
 * entries OpenResty removes before each write, and the key's node, live or not */
static uint32_t find_key(shd_hdr *h, const char *key, size_t klen, uint32_t hash, uint64_t *now) {
  *now = now_ms();
  expire_tail(h, *now, 2);
  return lookup(h, key, klen, hash);
}

/* ---- reads ---- */

int lc_shd_get(void *base, const char *key, size_t klen, int stale, lc_shd_value *v, int *is_stale) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  *is_stale = 0;
  v->type = LC_SHD_TNIL;
  v->flags = 0;
  BEGIN(h);
  uint32_t off = lookup(h, key, klen, hash);
  int rc = LC_SHD_OK;
  if (off != SHD_NIL) {
    shd_node *n = node_at(h, off);
    int old = node_exp(n) != 0 && expired(n, now_ms());
    if (old && !stale) {
      /* gone for get */
    } else if (n->vtype == LC_SHD_TLIST) {
      rc = LC_SHD_IS_LIST;
    } else {
      if (!old) {
        touch(h, off);
        shd_commit(h);
      }
      rc = read_value(n->vtype, node_val(n), n->vlen, v);
      v->flags = n->flags;
      *is_stale = old;
    }
  }
  shd_unlock(h);
  return rc;
}

/* ---- writes ---- */

int lc_shd_store(void *base, int op, const char *key, size_t klen, const lc_shd_value *v,
                 int64_t exptime_ms, int *forcible) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  *forcible = 0;
  BEGIN(h);
  uint64_t now;
  uint32_t old = find_key(h, key, klen, hash, &now);
  int live = old != SHD_NIL && !expired(node_at(h, old), now);
  int rc = LC_SHD_OK;
  if ((op & LC_SHD_REPLACE) && !live) {
    rc = LC_SHD_NOT_FOUND;
  } else if ((op & LC_SHD_ADD) && live) {
    rc = LC_SHD_EXISTS;
  } else if (v->type == LC_SHD_TNIL) {
    if (old != SHD_NIL) {
      remove_node(h, old);
      shd_commit(h);
    }
  } else if (old != SHD_NIL && store_in_place(h, old, v, exp_from(now, exptime_ms))) {
    shd_commit(h);
  } else {
    size_t bytes = sizeof(shd_node) + klen + value_bytes(v);
    uint32_t off = alloc_evicting(h, bytes, !(op & LC_SHD_SAFE), now, forcible);
    if (off == SHD_NIL) {
      rc = LC_SHD_NO_MEMORY;
    } else {
      old = lookup(h, key, klen, hash);   /* an eviction may have taken it */
      fill_node(node_at(h, off), key, klen, hash, v, exp_from(now, exptime_ms));
      if (old != SHD_NIL) remove_node(h, old);
      link_new(h, off);
      shd_commit(h);
    }
  }
  collect_garbage(h);
  shd_unlock(h);
  return rc;
}

int lc_shd_incr(void *base, const char *key, size_t klen, double *value, int has_init,
                double init, int64_t init_ttl_ms, int *forcible) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  *forcible = 0;
  BEGIN(h);
  uint64_t now;
  uint32_t off = find_key(h, key, klen, hash, &now);
  int rc = LC_SHD_OK;
  if (off == SHD_NIL || expired(node_at(h, off), now)) {
    if (!has_init) {
      rc = LC_SHD_NOT_FOUND;
    } else {
      lc_shd_value v = { .type = LC_SHD_TNUMBER, .num = init + *value };
      uint32_t n = alloc_evicting(h, sizeof(shd_node) + klen + sizeof(double), 1, now, forcible);
      if (n == SHD_NIL) {
        rc = LC_SHD_NO_MEMORY;
      } else {
        off = lookup(h, key, klen, hash);
        fill_node(node_at(h, n), key, klen, hash, &v, exp_from(now, init_ttl_ms));
        if (off != SHD_NIL) remove_node(h, off);
        link_new(h, n);
        shd_commit(h);
        *value = v.num;
      }
    }
  } else {
    shd_node *n = node_at(h, off);
    if (n->vtype != LC_SHD_TNUMBER) {
      rc = LC_SHD_NOT_NUMBER;
    } else {
      double num;
      memcpy(&num, node_val(n), sizeof num);
      num += *value;
      touch(h, off);
      shd_jwrite(h, node_val(n), &num, sizeof num);
      shd_commit(h);
      *value = num;
    }
  }
  collect_garbage(h);
  shd_unlock(h);
  return rc;
}

/* ---- lists ---- */

int lc_shd_push(void *base, const char *key, size_t klen, int left, const lc_shd_value *v, uint32_t *len) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  int forcible = 0;
  BEGIN(h);
  uint64_t now;
  int rc = LC_SHD_OK;
  uint32_t off = find_key(h, key, klen, hash, &now);
  if (off != SHD_NIL && !expired(node_at(h, off), now) && node_at(h, off)->vtype != LC_SHD_TLIST) {
    rc = LC_SHD_NOT_LIST;
    goto out;
  }
  /* the element, and the entry when there is none (or it expired): both, or none and one
   * more entry evicted (its own step) until both fit */
  size_t vbytes = value_bytes(v), ebytes = sizeof(shd_elem) + vbytes, nbytes = list_pos(klen) + 2 * sizeof(uint32_t);
  uint32_t e, fresh;
  int have;
  for (int tries = 0;; tries++) {
    off = lookup(h, key, klen, hash);   /* an eviction may have taken it */
    have = off != SHD_NIL && !expired(node_at(h, off), now);
    e = ebytes + nbytes <= h->arena_len ? lc_shd_alloc(h, ebytes) : SHD_NIL;
    fresh = e != SHD_NIL && !have ? lc_shd_alloc(h, nbytes) : SHD_NIL;
    if (e != SHD_NIL && (have || fresh != SHD_NIL)) break;
    rollback(h);                        /* what was allocated of the two */
    if (e == SHD_NIL && ebytes + nbytes > h->arena_len) { rc = LC_SHD_NO_MEMORY; goto out; }
    if (tries >= EVICT_TRIES || !evict_one(h, now, &forcible)) { rc = LC_SHD_NO_MEMORY; goto out; }
  }
  if (!have) {
    if (off != SHD_NIL) remove_node(h, off);   /* expired: a new list replaces it */
    lc_shd_value lv = { .type = LC_SHD_TLIST };
    fill_node(node_at(h, fresh), key, klen, hash, &lv, 0);
    link_new(h, fresh);
    off = fresh;
  } else {
    touch(h, off);
  }
  shd_node *n = node_at(h, off);
  shd_elem *el = elem_at(h, e);
  el->tag = SHD_TAG_ELEM | SHD_TAG_ORDER(el->tag);
  el->vlen = (uint32_t)vbytes;
  el->vtype = (uint8_t)v->type;
  if (v->type == LC_SHD_TSTRING) {
    if (v->len) memcpy(el + 1, v->str, v->len);
  } else {
    memcpy(el + 1, &v->num, sizeof(double));
  }
  uint32_t *ends = list_ends(n);
  if (ends[0] == SHD_NIL) {
    el->next = el->prev = SHD_NIL;
    shd_j32(h, &ends[0], e);
    shd_j32(h, &ends[1], e);
  } else if (left) {
    el->prev = SHD_NIL;
    el->next = ends[0];
    shd_j32(h, &elem_at(h, ends[0])->prev, e);
    shd_j32(h, &ends[0], e);
  } else {
    el->next = SHD_NIL;
    el->prev = ends[1];
    shd_j32(h, &elem_at(h, ends[1])->next, e);
    shd_j32(h, &ends[1], e);
  }
  shd_j32(h, &n->vlen, n->vlen + 1);
  shd_commit(h);
  *len = n->vlen;
out:
  collect_garbage(h);
  shd_unlock(h);
  return rc;
}

int lc_shd_pop(void *base, const char *key, size_t klen, int left, lc_shd_value *v) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  v->type = LC_SHD_TNIL;
  BEGIN(h);
  uint64_t now;
  int rc = LC_SHD_OK;
  uint32_t off = find_key(h, key, klen, hash, &now);
  if (off != SHD_NIL && !expired(node_at(h, off), now)) {
    shd_node *n = node_at(h, off);
    uint32_t *ends = list_ends(n);
    if (n->vtype != LC_SHD_TLIST) {
      rc = LC_SHD_NOT_LIST;
    } else if (ends[0] != SHD_NIL) {
      uint32_t e = left ? ends[0] : ends[1];
      shd_elem *el = elem_at(h, e);
      rc = read_value(el->vtype, (char *)(el + 1), el->vlen, v);
      if (rc == 0) {
        if (n->vlen <= 1) {
          remove_node(h, off);        /* the list's last element: the key goes with it */
        } else {
          touch(h, off);
          if (left) {
            shd_j32(h, &ends[0], el->next);
            shd_j32(h, &elem_at(h, el->next)->prev, SHD_NIL);
          } else {
            shd_j32(h, &ends[1], el->prev);
            shd_j32(h, &elem_at(h, el->prev)->next, SHD_NIL);
          }
          shd_j32(h, &n->vlen, n->vlen - 1);
          lc_shd_free(h, e);
        }
        shd_commit(h);
      }
    }
  }
  collect_garbage(h);
  shd_unlock(h);
  return rc;
}

int lc_shd_llen(void *base, const char *key, size_t klen, uint32_t *len) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  *len = 0;
  BEGIN(h);
  uint64_t now;
  int rc = LC_SHD_OK;
  uint32_t off = find_key(h, key, klen, hash, &now);
  if (off != SHD_NIL && !expired(node_at(h, off), now)) {
    shd_node *n = node_at(h, off);
    if (n->vtype != LC_SHD_TLIST) {
      rc = LC_SHD_NOT_LIST;
    } else {
      touch(h, off);
      shd_commit(h);
      *len = n->vlen;
    }
  }
  shd_unlock(h);
  return rc;
}

/* ---- expiry ---- */

/* the time left, in ms (negative once expired, as OpenResty's: it does not look at expiry) */
int lc_shd_ttl(void *base, const char *key, size_t klen, int64_t *ms) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  BEGIN(h);
  uint32_t off = lookup(h, key, klen, hash);
  int rc = LC_SHD_NOT_FOUND;
  if (off != SHD_NIL) {
    uint64_t e = node_exp(node_at(h, off));
    *ms = e == 0 ? 0 : (int64_t)(e - now_ms());
    rc = LC_SHD_OK;
  }
  shd_unlock(h);
  return rc;
}

int lc_shd_expire(void *base, const char *key, size_t klen, int64_t exptime_ms) {
  shd_hdr *h = base;
  uint32_t hash = hash_key(h, key, klen);
  BEGIN(h);
  uint32_t off = lookup(h, key, klen, hash);
  int rc = LC_SHD_NOT_FOUND;
  if (off != SHD_NIL) {
    set_exp(h, node_at(h, off), exp_from(now_ms(), exptime_ms), 1);
    shd_commit(h);
    rc = LC_SHD_OK;
  }
  shd_unlock(h);
  return rc;
}

/* every entry expires (kept until evicted or flush_expired, as OpenResty does, which also
 * frees the three least recently used at once) */
int lc_shd_flush_all(void *base) {
  shd_hdr *h = base;
  BEGIN(h);
  int batch = 0;
  for (uint32_t off = h->lru_head; off != SHD_NIL; off = node_at(h, off)->lnext) {
    set_exp(h, node_at(h, off), 1, 1);
    if (++batch == 100) {          /* 200 journal entries a step */
      shd_commit(h);
      batch = 0;
    }
  }
  shd_commit(h);
  expire_tail(h, now_ms(), 3);
  shd_unlock(h);
  return LC_SHD_OK;
}

int lc_shd_flush_expired(void *base, uint32_t max, uint32_t *freed) {
  shd_hdr *h = base;
  *freed = 0;
  BEGIN(h);
  uint64_t now = now_ms();
  uint32_t off = h->lru_tail;
  while (off != SHD_NIL) {
    shd_node *n = node_at(h, off);
    uint32_t prev = n->lprev;
    if (expired(n, now)) {
      remove_node(h, off);
      shd_commit(h);
      collect_garbage(h);
      if (++*freed == max) break;
    }
    off = prev;
  }
  shd_unlock(h);
  return LC_SHD_OK;
}

/* the live keys, oldest first: in the scratch buffer as (uint16_t length, bytes) each */
int lc_shd_keys(void *base, uint32_t max, const char **buf, uint32_t *count) {
  shd_hdr *h = base;
  *count = 0;
  BEGIN(h);
  uint64_t now = now_ms();
  size_t at = 0;
  int rc = LC_SHD_OK;
  for (uint32_t off = h->lru_tail; off != SHD_NIL; off = node_at(h, off)->lprev) {
    shd_node *n = node_at(h, off);
    if (expired(n, now)) continue;
    if (scratch_fit(at + 2 + n->klen) != 0) { rc = UV_ENOMEM; break; }
    uint16_t kl = n->klen;
    memcpy(scratch + at, &kl, 2);
    memcpy(scratch + at + 2, node_key(n), kl);
    at += 2 + kl;
    if (++*count == max) break;
  }
  *buf = scratch;
  shd_unlock(h);
  return rc;
}

/* ---- a check of everything (specs, after a crash) ---- */

int lc_shd_verify(void *base) {
  shd_hdr *h = base;
  BEGIN(h);
  int bad = h->jn != 0;
  uint32_t count = 0, limit = h->arena_len / 32 + 1;
  for (uint32_t b = 0; b < h->nbuckets && !bad; b++) {
    for (uint32_t off = ((uint32_t *)SHD_AT(h, h->buckets))[b]; off != SHD_NIL && !bad; off = node_at(h, off)->hnext) {
      shd_node *n = node_at(h, off);
      if (off < h->arena || off >= h->arena + h->arena_len || SHD_TAG_KIND(n->tag) != SHD_TAG_NODE
          || (n->hash & (h->nbuckets - 1)) != b || n->hash != hash_key(h, node_key(n), n->klen) || ++count > limit)
        bad = 1;
      else if (n->vtype == LC_SHD_TLIST) {
        uint32_t len = 0, prev = SHD_NIL;
        for (uint32_t e = list_ends(n)[0]; e != SHD_NIL && !bad; prev = e, e = elem_at(h, e)->next)
          if (SHD_TAG_KIND(elem_at(h, e)->tag) != SHD_TAG_ELEM || elem_at(h, e)->prev != prev || ++len > limit) bad = 1;
        if (!bad && (len != n->vlen || list_ends(n)[1] != prev || len == 0)) bad = 1;
      }
    }
  }
  uint32_t lru = 0, prev = SHD_NIL;
  for (uint32_t off = h->lru_head; off != SHD_NIL && !bad; prev = off, off = node_at(h, off)->lnext)
    if (node_at(h, off)->lprev != prev || ++lru > limit) bad = 1;
  if (!bad && (count != h->entries || lru != count || h->lru_tail != prev || h->garbage != SHD_NIL)) bad = 1;
  uint32_t used = 0;
  if (!bad && (lc_shd_arena_verify(h, &used) != 0 || used != h->used)) bad = 1;
  shd_unlock(h);
  return bad ? UV_EINVAL : 0;
}
