/*
 * audit.h - the tamper-evident audit log (docs/audit.md): the hash chain's
 * byte encoding, the `mspflow audit` command (verify, prune) and the
 * server's periodic pruning.
 *
 * The chain itself is kept by the database (platform/0010_audit_chain.sql):
 * writers insert plain rows, and a chainer (platform.audit_chain) links the
 * committed ones to their tenant's chain afterwards, off the writers' path.
 * The server runs it continuously (audit_chainer_new), the command line on
 * demand.  This module recomputes the chain independently in C, so a
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

/* `mspflow audit chain|verify|prune ...` (argv after "audit"); returns the
 * exit code: 0 intact / done, 1 tampered, 2 usage, 3 not checked. */
int audit_main(int argc, char **argv);

/* Seals and prunes entries past every tenant's retention now and then
 * (platform.audit_prune_due), on w's loop; NULL when out of memory.  Free
 * before w's pool and loop go. */
typedef struct audit_pruner audit_pruner_t;
audit_pruner_t *audit_pruner_new(struct mf_worker *w);
void audit_pruner_free(audit_pruner_t *p);

/* Chains committed, unchained entries of every tenant every half second
 * (platform.audit_chain_due), on w's loop; NULL when out of memory.
 * audit_chainer_close stops it and hands it over: it is freed at once, or
 * when the pool fails the pass on the wire (so close before freeing w's
 * pool). */
typedef struct audit_chainer audit_chainer_t;
audit_chainer_t *audit_chainer_new(struct mf_worker *w);
void audit_chainer_close(audit_chainer_t *c);

#endif
