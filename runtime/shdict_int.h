/* shdict_int.h: the layout of a shared dictionary's region and its undo journal, shared by
 * the store (shdict.c) and its allocator (shdict_alloc.c). Everything in a region is found by
 * 32-bit offsets from the region's start (each process maps it at its own address). The
 * crash-safety argument is at the top of shdict.c. */
#ifndef LC_SHDICT_INT_H
#define LC_SHDICT_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SHD_MAGIC 0x31444853636c7563ULL     /* "culcSHD1" */
#define SHD_JOURNAL 512                     /* undo entries of one step (the worst step uses ~300) */
#define SHD_MIN_ORDER 5                     /* the smallest block: 32 bytes */
#define SHD_ORDERS 32
#define SHD_NIL 0u                          /* offset 0 is the header: never a block */

/* a block's tag (its first word): what it is and its order (size 1 << order) */
#define SHD_TAG_FREE 0x46520000u
#define SHD_TAG_NODE 0x4e440000u
#define SHD_TAG_ELEM 0x454c0000u
#define SHD_TAG_KIND(t) ((t) & 0xffff0000u)
#define SHD_TAG_ORDER(t) ((t) & 0xffu)

typedef struct shd_jent {
  uint32_t off;          /* where (from the region's start) */
  uint32_t len;          /* 1..8 bytes */
  uint64_t old;          /* the bytes that were there */
} shd_jent;

typedef struct shd_hdr {
  uint64_t magic;
  uint32_t size;         /* the region's bytes */
  uint32_t nbuckets;     /* a power of two */
  uint32_t buckets;      /* offset of the bucket array (uint32_t offsets of chain heads) */
  uint32_t arena;        /* offset of the blocks */
  uint32_t arena_len;
  uint32_t seed;         /* the hash's basis, drawn at format */
  /* the lock on a cache line of its own: the fields above are read before taking it */
  pthread_mutex_t mutex __attribute__((aligned(64))); /* process-shared, robust */
  /* below: changed only by the mutex's holder, each write through the journal */
  uint32_t lru_head __attribute__((aligned(64)));     /* nodes, most recently used first */
  uint32_t lru_tail;
  uint32_t free_head[SHD_ORDERS];/* free blocks by order (doubly linked through their blocks) */
  uint32_t garbage;              /* detached list nodes whose elements are still to be freed */
  uint32_t entries;              /* nodes in the table */
  uint32_t used;                 /* bytes of blocks in use */
  uint32_t evict_lo, evict_hi;   /* live entries evicted to make room */
  uint32_t repairs;              /* holders found dead (EOWNERDEAD): written by the repairer */
  /* the journal: jn entries of the step in progress (0: none) */
  uint32_t jn;
  uint32_t pad1;
  shd_jent j[SHD_JOURNAL];
} shd_hdr;

/* a free block: tag, next, prev (the only bytes of it that mean anything) */
typedef struct shd_free {
  uint32_t tag, next, prev;
} shd_free;

/* an entry of the table: its block starts with this, then the key, then the value
 * (a list's value is its head and tail offsets and its length is vlen) */
typedef struct shd_node {
  uint32_t tag;
  uint32_t hnext;        /* next node of the hash chain */
  uint32_t lprev, lnext; /* LRU neighbours */
  uint32_t hash;
  int32_t flags;         /* user flags */
  uint32_t exp_lo, exp_hi; /* expiry, ms on CLOCK_MONOTONIC (0: never) */
  uint32_t vlen;         /* value bytes (a list: its element count) */
  uint16_t klen;
  uint8_t vtype;
  uint8_t pad;
  /* key bytes, then value bytes; a list: uint32_t head, tail at shd_list_at */
} shd_node;

/* an element of a list */
typedef struct shd_elem {
  uint32_t tag;
  uint32_t next, prev;
  uint32_t vlen;
  uint8_t vtype;
  uint8_t pad[3];
} shd_elem;

#define SHD_AT(h, off) ((void *)((char *)(h) + (off)))
#define SHD_OFF(h, p) ((uint32_t)((char *)(p) - (char *)(h)))

/* Fault injection for the specs (core.shdict_crash_at): when it counts down to 0 at one of
 * the points of a step (around each journaled write, at the commit), this process SIGKILLs
 * itself there, the lock held. 0: off (one load and a compare per point). */
extern int lc_shd_crash_countdown;
#define SHD_POINT() do { \
    if (__builtin_expect(lc_shd_crash_countdown > 0, 0) && --lc_shd_crash_countdown == 0) raise(SIGKILL); \
  } while (0)

/* the compiler keeps these writes in program order: a process killed at any instruction has
 * made exactly the writes before it (the CPU's own order is settled by the futex hand-over) */
#define SHD_ORDER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

/* Writes len bytes of src at p after recording the bytes there in the journal. */
static inline void shd_jwrite(shd_hdr *h, void *p, const void *src, uint32_t len) {
  uint32_t n = h->jn;
  if (n >= SHD_JOURNAL) abort();   /* a step longer than the journal: a bug, never a state */
  shd_jent *e = &h->j[n];
  SHD_POINT();
  e->off = SHD_OFF(h, p);
  e->len = len;
  e->old = 0;
  memcpy(&e->old, p, len);
  SHD_ORDER();
  __atomic_store_n(&h->jn, n + 1, __ATOMIC_RELAXED);
  SHD_ORDER();
  SHD_POINT();
  memcpy(p, src, len);
  SHD_ORDER();
  SHD_POINT();
}

static inline void shd_j32(shd_hdr *h, uint32_t *p, uint32_t v) {
  if (*p != v) shd_jwrite(h, p, &v, 4);
}

/* the step is done: what it wrote stays */
static inline void shd_commit(shd_hdr *h) {
  SHD_POINT();
  SHD_ORDER();
  __atomic_store_n(&h->jn, 0, __ATOMIC_RELAXED);
  SHD_ORDER();
}

/* shdict_alloc.c: the buddy allocator (every write journaled; bytes of the block past the
 * first 12 are the caller's, unjournaled) */
void lc_shd_arena_init(shd_hdr *h);
uint32_t lc_shd_alloc(shd_hdr *h, size_t bytes);     /* SHD_NIL when nothing is free */
void lc_shd_free(shd_hdr *h, uint32_t off);
uint32_t lc_shd_order_of(size_t bytes);              /* SHD_ORDERS when too big */
size_t lc_shd_free_bytes(const shd_hdr *h);          /* walks the free lists (holder only) */
int lc_shd_arena_verify(shd_hdr *h, uint32_t *used); /* 0, or -1 when a block is wrong */

#endif
