/*
 * test_audit.c - the audit chain's byte encoding (audit/chain.c) against
 * the fixed vector of docs/audit.md, which anyone can recompute with
 * printf and sha256sum; platform.audit_hash must give the same (it_audit).
 */
#include <sodium.h>

#include "audit/audit.h"
#include "t.h"

#define TENANT "6f1c2f0e-3b7a-4c55-9d2e-0a1b2c3d4e5f"
#define H1 "bbb90c1b21f1016f88af595a5bb0ab310b23c9b9f5077cc0107b401590829350"
#define H2 "40cf5c4488a0cbe18a99c17bee158fd71206e036331abbd57d85afe4ee63ebd8"

static const char *hex(const unsigned char h[AUDIT_HASH_BYTES], char out[2 * AUDIT_HASH_BYTES + 1])
{
	return sodium_bin2hex(out, 2 * AUDIT_HASH_BYTES + 1, h, AUDIT_HASH_BYTES);
}

int main(void)
{
	audit_entry_t e1 = { .tenant = TENANT, .seq = 1, .at = "2024-05-01T12:00:00.000000Z", .actor = "s:alice",
			     .action = "policy.update", .target = "policy",
			     .detail = "{\"after\": {\"retention\": {\"audit\": \"P30D\"}}}" };
	audit_entry_t e2 = { .tenant = TENANT, .seq = 2, .at = "2024-05-01T12:00:01.250000Z", .actor = "engine",
			     .action = "run.created", .target = "run:0d9b7a52-4c1e-4f7a-9a64-2f1e5d6c7b8a",
			     .detail = "{}" };
	unsigned char h1[AUDIT_HASH_BYTES], h2[AUDIT_HASH_BYTES], h[AUDIT_HASH_BYTES];
	char s[2 * AUDIT_HASH_BYTES + 1];

	if (sodium_init() < 0)
		return 1;
	audit_entry_hash(&e1, h1);
	T_STREQ(hex(h1, s), H1, "a tenant's first entry: prev is 32 zero bytes");
	memcpy(e2.prev, h1, sizeof(h1));
	audit_entry_hash(&e2, h2);
	T_STREQ(hex(h2, s), H2, "the second links to the first's hash");

	/* every field counts, and the length prefixes keep fields apart */
	e2.seq = 3;
	audit_entry_hash(&e2, h);
	T_OK(memcmp(h, h2, sizeof(h)) != 0, "seq is covered");
	e2.seq = 2;
	e2.prev[0] ^= 1;
	audit_entry_hash(&e2, h);
	T_OK(memcmp(h, h2, sizeof(h)) != 0, "prev_hash is covered");
	e2.prev[0] ^= 1;
	e2.actor = "engin";
	e2.action = "erun.created";
	audit_entry_hash(&e2, h);
	T_OK(memcmp(h, h2, sizeof(h)) != 0, "moving bytes from one field to the next changes the hash");
	e2.actor = "engine";
	e2.action = "run.created";
	e2.detail = "{}\n";
	audit_entry_hash(&e2, h);
	T_OK(memcmp(h, h2, sizeof(h)) != 0, "a trailing newline in a field is not the separator");
	e2.detail = "{}";
	audit_entry_hash(&e2, h);
	T_OK(memcmp(h, h2, sizeof(h)) == 0, "the same fields give the same hash");
	return t_done();
}
