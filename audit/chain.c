/*
 * chain.c - the audit chain's byte encoding and hash (audit.h), the C twin
 * of platform.audit_hash in platform/0010_audit_chain.sql.  docs/audit.md
 * shows a test vector that tests/unit/test_audit.c checks, so a third
 * party can recompute an entry's hash with nothing but sha256sum.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "audit/audit.h"

static void field(crypto_hash_sha256_state *st, const char *s, size_t n)
{
	char len[24];
	int k = snprintf(len, sizeof(len), "%zu:", n);

	crypto_hash_sha256_update(st, (const unsigned char *)len, (unsigned long long)k);
	crypto_hash_sha256_update(st, (const unsigned char *)s, n);
	crypto_hash_sha256_update(st, (const unsigned char *)"\n", 1);
}

static void sfield(crypto_hash_sha256_state *st, const char *s)
{
	field(st, s, strlen(s));
}

void audit_entry_hash(const audit_entry_t *e, unsigned char out[AUDIT_HASH_BYTES])
{
	crypto_hash_sha256_state st;
	char seq[24], prev[2 * AUDIT_HASH_BYTES + 1];

	snprintf(seq, sizeof(seq), "%lld", e->seq);
	sodium_bin2hex(prev, sizeof(prev), e->prev, AUDIT_HASH_BYTES);
	crypto_hash_sha256_init(&st);
	sfield(&st, "mspflow.audit.v1");
	sfield(&st, e->tenant);
	sfield(&st, seq);
	sfield(&st, e->at);
	sfield(&st, e->actor);
	sfield(&st, e->action);
	sfield(&st, e->target);
	sfield(&st, e->detail);
	field(&st, prev, 2 * AUDIT_HASH_BYTES);
	crypto_hash_sha256_final(&st, out);
}
