/*
 * vault_int.h - private to connectors/vault*.c: the vault's process and
 * worker state and the data-key helpers its handlers share.
 */
#ifndef CX_VAULT_INT_H
#define CX_VAULT_INT_H

#include <stdatomic.h>

#include "connectors/vault.h"

/* advisory lock class of a tenant's vault (the second key is
 * hashtext(tenant id)): writers share it, a data-key rotation takes it
 * alone */
#define CX_VAULT_LOCK_CLASS "31078753"

struct cx_vault {
	const mf_config_t *cfg;
	mf_master_t *master;
};

typedef struct cx_dek_entry {
	char tenant[37];
	int version;			/* 0 = empty slot */
	long long expires_ms;
	long long used_ms;
} cx_dek_entry_t;

struct cx_vault_worker {
	cx_vault_t *v;
	struct event_base *base;
	mf_pg_pool_t *pg;
	int nsets, ways, ttl_ms;
	cx_dek_entry_t *entries;	/* nsets * ways */
	unsigned char *keys;		/* sodium_malloc'd, one 32-byte slot per entry */
	/* counters: written by this worker, read anywhere (relaxed) */
	_Atomic unsigned long long n_opened, n_failed, n_hits, n_misses;
};

/* Why a data key is not available. */
enum cx_dek_why { CX_DEK_OK = 0, CX_DEK_MISSING, CX_DEK_UNKNOWN_KID, CX_DEK_BAD };

/* The DEK (tenant, version) into dek: from the cache, else unwrapped from
 * (kid, wrapped bytea text) with the master ring (re-reading the key file
 * once when kid is unknown) and cached.  wrapped is NULL or "" when the
 * row is missing: then the answer is CX_DEK_MISSING even if the key is
 * still cached (the database decides that a key exists).  Returns
 * CX_DEK_OK or why not. */
enum cx_dek_why cx_dek_get(cx_vault_worker_t *vw, const char *tenant, int version, const char *kid,
			   const char *wrapped, unsigned char dek[CX_DEK_BYTES]);
/* Caches a DEK this worker just created. */
void cx_dek_put(cx_vault_worker_t *vw, const char *tenant, int version, const unsigned char dek[CX_DEK_BYTES]);
const char *cx_dek_why_name(enum cx_dek_why w);

/* The detail and log line of a credential that does not open. */
void cx_unreadable(mf_err_t *err, const char *tenant, const char *name, const char *reason);

#endif
