/*
 * vault.h - the credential vault: tenant secrets under envelope encryption.
 *
 * Keys: the master key ring (core/masterkey.h) wraps one random 32-byte
 * data key (DEK) per tenant and version (platform.tenant_keys); each DEK
 * seals that tenant's credentials (<tenant schema>.credentials) with
 * XChaCha20-Poly1305.  Associated data binds every box to where it belongs:
 *
 *   wrapped DEK:  "dek|" tenant "|" dek_version "|" master_kid
 *   secret:       "cred|" tenant "|" name "|" version "|" dek_version
 *
 * so a ciphertext moved to another tenant, row, version or key fails to
 * open.  Secrets are never returned by a route nor logged: routes answer
 * metadata, and only code inside the process (connectors) opens them, with
 * cx_vault_open(), receiving the plaintext in sodium_malloc'd memory.
 *
 * Threads: cx_vault_t is the process's (the master ring holder, shared,
 * see masterkey.h); cx_vault_worker_t belongs to one worker thread (its
 * PostgreSQL pool, its DEK cache) and is used only from that thread.
 */
#ifndef CX_VAULT_H
#define CX_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <libpq-fe.h>

#include "core/config.h"
#include "core/err.h"
#include "core/masterkey.h"
#include "core/pg.h"
#include "gateway/gateway.h"

struct event_base;
struct tn;

typedef struct cx_vault cx_vault_t;			/* process: master ring */
typedef struct cx_vault_worker cx_vault_worker_t;	/* per worker: DEK cache, pool */

#define CX_DEK_BYTES 32
#define CX_NONCE_BYTES 24
#define CX_TAG_BYTES 16
#define CX_WRAPPED_BYTES (CX_NONCE_BYTES + CX_DEK_BYTES + CX_TAG_BYTES)
#define CX_SEAL_OVERHEAD (CX_NONCE_BYTES + CX_TAG_BYTES)
#define CX_NAME_MAX 63
#define CX_SECRET_MAX 16384			/* the sealed JSON of one credential */

/* A credential's or connector's name: ^[a-z0-9][a-z0-9_.-]{0,62}$. */
bool cx_name_ok(const char *s);

/* ---- process and worker state ---- */

/* cfg and master are borrowed and must outlive the vault; master may hold
 * no ring (then every vault route answers 503 vault_unavailable). */
cx_vault_t *cx_vault_new(const mf_config_t *cfg, mf_master_t *master, mf_err_t *err);
void cx_vault_free(cx_vault_t *v);		/* accepts NULL */
/* On the worker's own thread; pg borrowed (may be NULL: no database). */
cx_vault_worker_t *cx_vault_worker_new(cx_vault_t *v, struct event_base *base, mf_pg_pool_t *pg);
void cx_vault_worker_free(cx_vault_worker_t *vw);	/* accepts NULL; wipes the cache */
/* Drops a tenant's cached data keys on this worker (tenant deleted). */
void cx_vault_worker_forget(cx_vault_worker_t *vw, const char *tenant_id);

typedef struct cx_vault_stats {
	unsigned long long opened, failed, cache_hits, cache_misses;
} cx_vault_stats_t;
void cx_vault_worker_stats(const cx_vault_worker_t *vw, cx_vault_stats_t *out);	/* any thread */

/* ---- opening a secret (connectors) ---- */

typedef struct cx_secret {
	char type[32];		/* bearer | basic | api_key_header | oauth2_client_credentials */
	int version;
	unsigned char *data;	/* JSON object text, NUL-terminated, sodium_malloc'd */
	size_t len;
} cx_secret_t;

/* Wipes and frees (accepts NULL). */
void cx_secret_free(cx_secret_t *s);

/* s is owned by the callee (free it with cx_secret_free), NULL on error:
 * 404 not_found (no such credential), 409 credential_unreadable (a box or
 * data key that does not open: tampered, moved, or its key is gone), 503
 * (database).  err->detail names the credential, never its bytes. */
typedef void (*cx_secret_cb)(cx_secret_t *s, const mf_err_t *err, void *arg);

/* Opens the current version of credential name of tenant_id, whose
 * schema is schema (from the guard's context, never client input): one
 * query, then the data key from the worker's cache or unwrapped.  Returns
 * 0 (cb is called exactly once, always after this returns), or -1 (bad
 * name, out of memory, no database or no master key) without calling cb. */
int cx_vault_open(cx_vault_worker_t *vw, const char *tenant_id, const char *schema, const char *name,
		  cx_secret_cb cb, void *arg) __attribute__((warn_unused_result));

/* ---- routes (CONTRACT 7), behind the guard of tenants/ ---- */

int cx_vault_routes(cx_vault_t *v, struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));

/* ---- the cryptography, pure (unit tests, the command) ---- */

/* Wraps dek under the ring key whose index is key (0 = the sealing key);
 * kid receives that key's kid. */
int cx_vault_dek_wrap(const mf_master_ring_t *ring, int key, const char *tenant_id, int version,
		      const unsigned char dek[CX_DEK_BYTES], unsigned char out[CX_WRAPPED_BYTES],
		      char kid[MF_MASTER_KID_HEX + 1]) __attribute__((warn_unused_result));
/* Returns 0, -1 (does not open: tampered or moved), or -2 (no key of the
 * ring has this kid). */
int cx_vault_dek_unwrap(const mf_master_ring_t *ring, const char *tenant_id, int version, const char *kid,
			const unsigned char *wrapped, size_t len, unsigned char dek[CX_DEK_BYTES])
	__attribute__((warn_unused_result));
/* out must hold mlen + CX_SEAL_OVERHEAD bytes. */
int cx_vault_seal(const unsigned char dek[CX_DEK_BYTES], const char *tenant_id, const char *name, int version,
		  int key_version, const unsigned char *m, size_t mlen, unsigned char *out)
	__attribute__((warn_unused_result));
/* out must hold blen - CX_SEAL_OVERHEAD bytes; -1 when it does not open. */
int cx_vault_unseal(const unsigned char dek[CX_DEK_BYTES], const char *tenant_id, const char *name, int version,
		    int key_version, const unsigned char *box, size_t blen, unsigned char *out, size_t *outlen)
	__attribute__((warn_unused_result));

/* bytea text ("\x" + hex) to bytes (malloc'd); NULL when malformed. */
unsigned char *cx_bytea_decode(const char *text, size_t *len);
/* bytes to bytea text (malloc'd). */
char *cx_bytea_encode(const unsigned char *b, size_t len);

/* ---- `mspflow vault rotate-master` (blocking, vault_admin.c) ---- */

/* With master_key_file: a new key, the file rewritten as new + old, every
 * data key re-wrapped and every signing key re-sealed row by row, then the
 * file rewritten with the new key only.  With master_key / the environment:
 * re-wraps under the first key of the list.  Prints a JSON summary (counts
 * and kids, never keys) to out. */
int cx_vault_rotate_master(const mf_config_t *cfg, FILE *out, mf_err_t *err) __attribute__((warn_unused_result));

#endif
