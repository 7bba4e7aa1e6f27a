/* shdict.h: the shared dictionary store (shdict.c, shdict_alloc.c): one dictionary in one
 * shared memory region that every process of the cluster maps (shdict_lua.c maps them).
 * Pure C, no Lua: each call takes the region's robust mutex, does its steps and lets go, so
 * that nothing can raise while the mutex is held. Values are flat bytes with a type tag.
 * Results are LC_SHD_* codes (>= 0) or a negative UV_E* code (UV_EBUSY: the lock could not
 * be had in time, see lc_shd_lock_timeout). */
#ifndef LC_SHDICT_H
#define LC_SHDICT_H

#include <stddef.h>
#include <stdint.h>

/* value types, as OpenResty numbers them (Lua's type tags) */
enum { LC_SHD_TNIL = 0, LC_SHD_TBOOLEAN = 1, LC_SHD_TNUMBER = 3, LC_SHD_TSTRING = 4, LC_SHD_TLIST = 5 };

/* results */
enum {
  LC_SHD_OK = 0,
  LC_SHD_NOT_FOUND,      /* "not found" (or: no such key, for reads) */
  LC_SHD_EXISTS,         /* "exists" */
  LC_SHD_NO_MEMORY,      /* "no memory" */
  LC_SHD_NOT_NUMBER,     /* "not a number" */
  LC_SHD_NOT_LIST,       /* "value not a list" */
  LC_SHD_IS_LIST,        /* "value is a list" */
};

/* store operations (OpenResty's set / add / replace, safe_ = never evict) */
enum { LC_SHD_SET = 0, LC_SHD_ADD = 1, LC_SHD_REPLACE = 2, LC_SHD_SAFE = 4 };

#define LC_SHD_MIN_SIZE ((size_t)32 * 1024)          /* nginx's smallest zone: 8 pages */
#define LC_SHD_MAX_SIZE ((size_t)2 * 1024 * 1024 * 1024 - 4096)  /* offsets are 32-bit */
#define LC_SHD_MAX_KEY 65535

/* a value read out of (or going into) a dictionary; str points into a buffer the caller owns
 * (reads: lc_shd_scratch's, valid until the next read in this process) */
typedef struct lc_shd_value {
  int type;
  double num;            /* numbers; booleans as 0/1 */
  const char *str;
  size_t len;
  int32_t flags;         /* user flags */
} lc_shd_value;

typedef struct lc_shd_stats {
  size_t capacity, used, free;
  uint64_t entries, evictions;
  uint32_t repairs;      /* times a holder was found dead and its step undone */
} lc_shd_stats;

/* formats a fresh region (zeroed memory of `size` bytes): 0 or a negative UV_E* code */
int lc_shd_format(void *base, size_t size);
/* checks that a region mapped from elsewhere is one of ours, of this size */
int lc_shd_valid(const void *base, size_t size);
/* the master's operations wait at most this long for the lock (0: forever, the default),
 * then fail with UV_EBUSY: it never waits forever for a worker stopped with the lock held */
void lc_shd_lock_timeout(int ms);

int lc_shd_get(void *base, const char *key, size_t klen, int stale, lc_shd_value *v, int *is_stale);
int lc_shd_store(void *base, int op, const char *key, size_t klen, const lc_shd_value *v,
                 int64_t exptime_ms, int *forcible);
int lc_shd_incr(void *base, const char *key, size_t klen, double *value, int has_init,
                double init, int64_t init_ttl_ms, int *forcible);
int lc_shd_push(void *base, const char *key, size_t klen, int left, const lc_shd_value *v, uint32_t *len);
int lc_shd_pop(void *base, const char *key, size_t klen, int left, lc_shd_value *v);
int lc_shd_llen(void *base, const char *key, size_t klen, uint32_t *len);
int lc_shd_ttl(void *base, const char *key, size_t klen, int64_t *ms);
int lc_shd_expire(void *base, const char *key, size_t klen, int64_t exptime_ms);
int lc_shd_flush_all(void *base);
int lc_shd_flush_expired(void *base, uint32_t max, uint32_t *freed);
/* the live keys, oldest first, at most max (0: all), into the scratch buffer as (u16 len, bytes)... */
int lc_shd_keys(void *base, uint32_t max, const char **buf, uint32_t *count);
/* never locks: counters read as they are (the master's status and metrics) */
void lc_shd_stats_read(const void *base, lc_shd_stats *s);
/* a structural check of the whole region under the lock (specs): 0 or a negative code */
int lc_shd_verify(void *base);

#endif
