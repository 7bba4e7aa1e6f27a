/* tls_tickets.h: the session ticket key ring of a runtime (tls_tickets.c), for TLS servers.
 * One ring per lc_rt (rt->tls_tickets), counted: the runtime's reference (let go in rt.c's free
 * path) and one per server SSL_CTX that uses it (tls.c), so a context freed after the runtime's
 * end still finds it. The ring holds 1 to LC_TLS_TICKET_KEYS_MAX keys: the first encrypts new
 * tickets, every key decrypts (a ticket under a later key is renewed). Until the keys are set
 * (core.tls_ticket_keys, the master's keys) the ring has one random key of this process, so a
 * session resumes only on the worker that made it. */
#ifndef LC_TLS_TICKETS_H
#define LC_TLS_TICKETS_H

#include <stddef.h>
#include <openssl/ssl.h>

#define LC_TLS_TICKET_KEY_SIZE 80      /* 16 bytes name, 32 HMAC-SHA256 key, 32 AES-256-CBC key */
#define LC_TLS_TICKET_KEYS_MAX 8

typedef struct lc_tls_tickets lc_tls_tickets;

lc_tls_tickets *lc_tls_tickets_new(void);          /* one random key; NULL: out of memory */
void lc_tls_tickets_ref(lc_tls_tickets *r);
void lc_tls_tickets_unref(lc_tls_tickets *r);      /* NULL is fine */
/* replaces the keys with len / 80 records (len a multiple of 80, 1 to 8 records): 0, or -1 */
int lc_tls_tickets_set(lc_tls_tickets *r, const unsigned char *keys, size_t len);
/* the ring's keys encrypt and decrypt ctx's tickets (a reference is taken, let go with ctx) */
int lc_tls_tickets_use(lc_tls_tickets *r, SSL_CTX *ctx);

#endif
