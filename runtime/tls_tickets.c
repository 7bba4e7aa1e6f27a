/* tls_tickets.c: the session ticket key ring (tls_tickets.h) and OpenSSL's ticket key callback
 * over it (SSL_CTX_set_tlsext_ticket_key_evp_cb: TLS 1.2 tickets and TLS 1.3 stateless
 * resumption alike). Owns the ring's memory (the keys are cleansed when replaced or freed); the
 * ring is found from a context through an ex_data slot holding a reference, dropped by the
 * slot's free callback when OpenSSL frees the context. */
#include "tls_tickets.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

typedef struct ticket_key {
  unsigned char name[16], hmac[32], aes[32];
} ticket_key;

struct lc_tls_tickets {
  size_t refs;
  size_t n;
  ticket_key keys[LC_TLS_TICKET_KEYS_MAX];
};

static int ring_index = -1;   /* the SSL_CTX ex_data slot (process-wide, like OpenSSL's own) */

lc_tls_tickets *lc_tls_tickets_new(void) {
  lc_tls_tickets *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->refs = 1;
  r->n = 1;
  if (RAND_bytes((unsigned char *)&r->keys[0], sizeof r->keys[0]) != 1) {
    free(r);
    return NULL;
  }
  return r;
}

void lc_tls_tickets_ref(lc_tls_tickets *r) {
  r->refs++;
}

void lc_tls_tickets_unref(lc_tls_tickets *r) {
  if (!r || --r->refs > 0) return;
  OPENSSL_cleanse(r->keys, sizeof r->keys);
  free(r);
}

int lc_tls_tickets_set(lc_tls_tickets *r, const unsigned char *keys, size_t len) {
  if (len == 0 || len % LC_TLS_TICKET_KEY_SIZE != 0 || len / LC_TLS_TICKET_KEY_SIZE > LC_TLS_TICKET_KEYS_MAX)
    return -1;
  OPENSSL_cleanse(r->keys, sizeof r->keys);
  r->n = len / LC_TLS_TICKET_KEY_SIZE;
  for (size_t i = 0; i < r->n; i++) {
    const unsigned char *k = keys + i * LC_TLS_TICKET_KEY_SIZE;
    memcpy(r->keys[i].name, k, 16);
    memcpy(r->keys[i].hmac, k + 16, 32);
    memcpy(r->keys[i].aes, k + 48, 32);
  }
  return 0;
}

static int mac_init(EVP_MAC_CTX *hctx, const ticket_key *k) {
  OSSL_PARAM params[2];
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  return EVP_MAC_init(hctx, k->hmac, sizeof k->hmac, params) == 1;
}

/* OpenSSL's ticket callback: enc 1, a new ticket (1 made, -1 failed); enc 0, a ticket to open
 * (0 not ours: a full handshake, 1 resumed, 2 resumed and renewed under the first key) */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc) {
  /* the context the session started with (SNI may have switched SSL_get_SSL_CTX since) */
  SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
  lc_tls_tickets *r = ctx ? SSL_CTX_get_ex_data(ctx, ring_index) : NULL;
  if (!r) return enc ? -1 : 0;
  if (enc) {
    const ticket_key *k = &r->keys[0];
    if (RAND_bytes(iv, 16) != 1) return -1;
    memcpy(name, k->name, 16);
    if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 || !mac_init(hctx, k)) return -1;
    return 1;
  }
  for (size_t i = 0; i < r->n; i++) {
    const ticket_key *k = &r->keys[i];
    if (CRYPTO_memcmp(name, k->name, 16) != 0) continue;
    if (!mac_init(hctx, k) || EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1) return -1;
    return i == 0 ? 1 : 2;
  }
  return 0;
}

static void ring_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
  lc_tls_tickets_unref(ptr);
}

int lc_tls_tickets_use(lc_tls_tickets *r, SSL_CTX *ctx) {
  if (ring_index < 0) {
    ring_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ring_free_cb);
    if (ring_index < 0) return -1;
  }
  if (SSL_CTX_set_ex_data(ctx, ring_index, r) != 1) return -1;
  lc_tls_tickets_ref(r);
  if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) return -1;
  return 0;
}
