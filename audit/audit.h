/*
 * audit.h - the tamper-evident audit log (docs/audit.md): the hash chain's
 * byte encoding, the `mspflow audit` command (verify, prune) and the
 * server's periodic pruning.
 *
 * The chain itself is kept by the database (platform/0010_audit_chain.sql):
 * a trigger links every audit row to its tenant's previous one, whoever
 * writes it.  This module recomputes that chain independently in C, so a
 * verification does not trust the database's own hashing.
 */
#ifndef AUDIT_AUDIT_H
#define AUDIT_AUDIT_H

#include <stddef.h>

struct mf_worker;

#define AUDIT_HASH_BYTES 32

/* One entry as its hash covers it; every string is borrowed, UTF-8, and
 * exactly the text the encoding names: tenant the lower-case UUID, at
 * "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, microseconds), detail the jsonb's
 * canonical text (PostgreSQL's detail::text). */
typedef struct audit_entry {
	const char *tenant;
	long long seq;
	const char *at, *actor, *action, *target, *detail;
	unsigned char prev[AUDIT_HASH_BYTES];	/* all zeros before a tenant's first entry */
} audit_entry_t;

/* SHA-256 of the entry's encoding: nine fields, each "<byte length>:<bytes>\n"
 * - "mspflow.audit.v1", tenant, seq (decimal), at, actor, action, target,
 * detail, prev (64 lower-case hex digits). */
void audit_entry_hash(const audit_entry_t *e, unsigned char out[AUDIT_HASH_BYTES]);

/* `mspflow audit verify|prune ...` (argv after "audit"); returns the exit
 * code: 0 intact / done, 1 tampered / failed, 2 usage. */
int audit_main(int argc, char **argv);

/* Seals and prunes entries past every tenant's retention now and then
 * (platform.audit_prune_due), on w's loop; NULL when out of memory.  Free
 * before w's pool and loop go. */
typedef struct audit_pruner audit_pruner_t;
audit_pruner_t *audit_pruner_new(struct mf_worker *w);
void audit_pruner_free(audit_pruner_t *p);

#endif
