/* shdict_alloc.c: the blocks of a shared dictionary's region: a buddy allocator over the
 * arena (blocks of 1 << order bytes, 32 bytes and up, aligned to their size from the arena's
 * start). A free block holds its tag and its free-list links in its first 12 bytes; a block in
 * use starts with its owner's tag (shd_node, shd_elem), so a block's buddy is free exactly
 * when the buddy's first word says FREE with the same order. Every write goes through the
 * journal (shdict_int.h): a holder killed half-way through an allocation or a free leaves
 * writes the next holder undoes. Owns nothing outside the region. */
#include "shdict_int.h"

static inline shd_free *blk(shd_hdr *h, uint32_t off) { return SHD_AT(h, off); }

uint32_t lc_shd_order_of(size_t bytes) {
  uint32_t k = SHD_MIN_ORDER;
  while (k < SHD_ORDERS - 1 && ((size_t)1 << k) < bytes) k++;
  return ((size_t)1 << k) < bytes ? SHD_ORDERS : k;
}

static void list_push(shd_hdr *h, uint32_t off, uint32_t k) {
  shd_free *b = blk(h, off);
  uint32_t head = h->free_head[k];
  shd_j32(h, &b->tag, SHD_TAG_FREE | k);
  shd_j32(h, &b->next, head);
  shd_j32(h, &b->prev, SHD_NIL);
  if (head != SHD_NIL) shd_j32(h, &blk(h, head)->prev, off);
  shd_j32(h, &h->free_head[k], off);
}

static void list_remove(shd_hdr *h, uint32_t off, uint32_t k) {
  shd_free *b = blk(h, off);
  if (b->prev != SHD_NIL) shd_j32(h, &blk(h, b->prev)->next, b->next);
  else shd_j32(h, &h->free_head[k], b->next);
  if (b->next != SHD_NIL) shd_j32(h, &blk(h, b->next)->prev, b->prev);
}

/* the arena cut into the largest aligned blocks that fit, all free (a fresh region: no journal
 * is needed, nobody else has it yet, but the same writes are used) */
void lc_shd_arena_init(shd_hdr *h) {
  uint32_t rel = 0;
  while (h->arena_len - rel >= (1u << SHD_MIN_ORDER)) {
    uint32_t k = SHD_ORDERS - 1;
    while (k > SHD_MIN_ORDER && ((rel & ((1u << k) - 1)) != 0 || h->arena_len - rel < (1u << k))) k--;
    list_push(h, h->arena + rel, k);
    rel += 1u << k;
  }
  shd_commit(h);
}

uint32_t lc_shd_alloc(shd_hdr *h, size_t bytes) {
  uint32_t want = lc_shd_order_of(bytes);
  if (want >= SHD_ORDERS) return SHD_NIL;
  uint32_t k = want;
  while (k < SHD_ORDERS && h->free_head[k] == SHD_NIL) k++;
  if (k >= SHD_ORDERS) return SHD_NIL;
  uint32_t off = h->free_head[k];
  list_remove(h, off, k);
  while (k > want) {           /* split: the upper half goes free one order down */
    k--;
    list_push(h, off + (1u << k), k);
  }
  shd_free *b = blk(h, off);
  /* the bytes a free block means something by, saved before the caller writes over them
   * without the journal: always journaled, even when they already hold the new value
   * (shd_j32 would skip them, and an undone allocation would find them overwritten) */
  static const uint32_t nil2[2] = { SHD_NIL, SHD_NIL };
  shd_j32(h, &b->tag, SHD_TAG_NODE | k);
  shd_jwrite(h, &b->next, nil2, sizeof nil2);
  shd_j32(h, &h->used, h->used + (1u << k));
  return off;
}

void lc_shd_free(shd_hdr *h, uint32_t off) {
  uint32_t k = SHD_TAG_ORDER(blk(h, off)->tag);
  shd_j32(h, &h->used, h->used - (1u << k));
  while (k < SHD_ORDERS - 1) {
    uint32_t rel = off - h->arena;
    uint32_t brel = rel ^ (1u << k);
    if ((uint64_t)brel + (1u << k) > h->arena_len) break;
    shd_free *b = blk(h, h->arena + brel);
    if (b->tag != (SHD_TAG_FREE | k)) break;
    list_remove(h, h->arena + brel, k);
    if (brel < rel) off = h->arena + brel;
    k++;
  }
  list_push(h, off, k);
}

size_t lc_shd_free_bytes(const shd_hdr *h) {
  return (size_t)h->arena_len - h->used;
}

/* walks the arena block by block: every block a valid tag, free ones on their list */
int lc_shd_arena_verify(shd_hdr *h, uint32_t *used) {
  uint32_t rel = 0, u = 0;
  while (rel + (1u << SHD_MIN_ORDER) <= h->arena_len) {
    uint32_t t = blk(h, h->arena + rel)->tag;
    uint32_t kind = SHD_TAG_KIND(t), k = SHD_TAG_ORDER(t);
    if ((kind != SHD_TAG_FREE && kind != SHD_TAG_NODE && kind != SHD_TAG_ELEM) || k < SHD_MIN_ORDER
        || k >= SHD_ORDERS || (rel & ((1u << k) - 1)) != 0 || (uint64_t)rel + (1u << k) > h->arena_len)
      return -1;
    if (kind == SHD_TAG_FREE) {
      uint32_t p = h->free_head[k];
      int found = 0;
      for (uint32_t n = 0; p != SHD_NIL && n < h->arena_len / 32; n++, p = blk(h, p)->next)
        if (p == h->arena + rel) { found = 1; break; }
      if (!found) return -1;
    } else {
      u += 1u << k;
    }
    rel += 1u << k;
  }
  *used = u;
  return 0;
}
