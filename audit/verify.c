/*
 * verify.c - `mspflow audit chain|verify|prune` (audit.h, docs/audit.md).
 * One-shot commands: blocking libpq is fine here.
 *
 * chain links a tenant's committed, unchained entries now (what the
 * server's chainer does every half second), waiting for a chainer that
 * holds the tenant rather than skipping it.  verify and prune run such a
 * pass first (verify unless --no-chain), so that they see everything
 * committed before they started as chained.
 *
 * verify reads a tenant's newest checkpoint, its chain head, every chained
 * entry after the checkpoint and the count and age of the unchained ones
 * in one REPEATABLE READ snapshot, recomputes each entry's hash in C
 * (chain.c) and names what is wrong and where:
 *   edited       an entry's hash does not cover its stored fields
 *   deleted      seq numbers missing (inside the chain, at its start after
 *                the checkpoint, or at its end below the head)
 *   reordered    an entry holds the fields of another position (they hash
 *                right with that position's seq and prev_hash), or links
 *                to an entry other than the one before it
 *   broken_link  an intact entry whose prev_hash is no stored hash at all
 *   head_mismatch the head (the next append's predecessor) disagrees with
 *                the last entry
 *   stale_unchained an entry older than --max-unchained-age (300 s) is not
 *                chained yet: no chainer is running, and edits to it would
 *                go unseen
 * Exit 0 intact (one JSON summary line), 1 tampered (one JSON line per
 * problem), 2 usage, 3 could not check (database unreachable...).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "audit/audit.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"

#define HEX_LEN (2 * AUDIT_HASH_BYTES)
/* Mismatched entries whose fields are kept to recognise a swap; more
 * than this are reported as edited without looking for their position. */
#define MAX_KEPT 256
#define PRUNE_BATCH "100000"
#define CHAIN_BATCH 10000
#define CHAIN_BATCH_S "10000"
#define MAX_UNCHAINED_AGE_S 300

enum { EXIT_INTACT = 0, EXIT_TAMPERED = 1, EXIT_USAGE = 2, EXIT_UNCHECKED = 3 };

typedef struct row {
	long long seq;
	unsigned char stored[AUDIT_HASH_BYTES], prev[AUDIT_HASH_BYTES], computed[AUDIT_HASH_BYTES];
	int kept;		/* index into the kept fields, or -1 */
} row_t;

/* The hashed text fields of a mismatched entry (owned copies). */
typedef struct kept {
	char *at, *actor, *action, *target, *detail;
} kept_t;

typedef struct chain {
	const char *tenant;
	long long cp_seq, head_seq;
	unsigned char cp_hash[AUDIT_HASH_BYTES], head_hash[AUDIT_HASH_BYTES];
	bool have_head;
	row_t *rows;
	size_t n, cap;
	kept_t kept[MAX_KEPT];
	int nkept;
	size_t *by_hash;	/* row indexes sorted by stored hash */
	long long unchained;
	double unchained_age_s;	/* of the oldest unchained entry, by its at */
	double max_unchained_age_s;
	int problems;
} chain_t;

static void chain_free(chain_t *c)
{
	for (int i = 0; i < c->nkept; i++) {
		free(c->kept[i].at);
		free(c->kept[i].actor);
		free(c->kept[i].action);
		free(c->kept[i].target);
		free(c->kept[i].detail);
	}
	free(c->rows);
	free(c->by_hash);
}

static bool hex32(const char *s, unsigned char out[AUDIT_HASH_BYTES])
{
	size_t n = 0;

	return strlen(s) == HEX_LEN && sodium_hex2bin(out, AUDIT_HASH_BYTES, s, HEX_LEN, NULL, &n, NULL) == 0 &&
	       n == AUDIT_HASH_BYTES;
}

static json_t *hexj(const unsigned char h[AUDIT_HASH_BYTES])
{
	char s[HEX_LEN + 1];

	sodium_bin2hex(s, sizeof(s), h, AUDIT_HASH_BYTES);
	return json_string(s);
}

/* Prints one problem line: {"tenant", "problem", "message", ...extra}
 * (extra stolen). */
static void problem(chain_t *c, const char *what, json_t *extra, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void problem(chain_t *c, const char *what, json_t *extra, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	json_t *j = json_pack("{s:s,s:s}", "tenant", c->tenant, "problem", what);
	char *line;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (j && extra)
		json_object_update(j, extra);
	json_decref(extra);
	if (j)
		json_object_set_new(j, "message", json_string(msg));
	line = j ? json_dumps(j, JSON_COMPACT) : NULL;
	printf("%s\n", line ? line : "{\"problem\":\"out_of_memory\"}");
	free(line);
	json_decref(j);
	c->problems++;
}

/* ---- reading ---- */

static bool res_ok(PGconn *conn, PGresult *r, ExecStatusType want, const char *what)
{
	if (PQresultStatus(r) == want)
		return true;
	fprintf(stderr, "mspflow: audit: %s: %s", what, PQerrorMessage(conn));
	return false;
}

static int exec_ok(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	int rc = res_ok(conn, r, PGRES_COMMAND_OK, sql) ? 0 : -1;

	PQclear(r);
	return rc;
}

static int add_row(chain_t *c, const PGresult *r, int i)
{
	audit_entry_t e = {
		.tenant = c->tenant, .seq = atoll(PQgetvalue(r, i, 0)), .at = PQgetvalue(r, i, 1),
		.actor = PQgetvalue(r, i, 2), .action = PQgetvalue(r, i, 3), .target = PQgetvalue(r, i, 4),
		.detail = PQgetvalue(r, i, 5),
	};
	row_t *w;

	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 1024;
		row_t *rows = realloc(c->rows, cap * sizeof(*rows));

		if (rows == NULL)
			return -1;
		c->rows = rows;
		c->cap = cap;
	}
	w = &c->rows[c->n];
	w->seq = e.seq;
	w->kept = -1;
	/* a prev or hash that is not 32 bytes of hex cannot match anything */
	if (!hex32(PQgetvalue(r, i, 6), w->prev))
		memset(w->prev, 0xff, sizeof(w->prev));
	if (!hex32(PQgetvalue(r, i, 7), w->stored))
		memset(w->stored, 0xff, sizeof(w->stored));
	memcpy(e.prev, w->prev, sizeof(e.prev));
	audit_entry_hash(&e, w->computed);
	if (memcmp(w->computed, w->stored, AUDIT_HASH_BYTES) != 0 && c->nkept < MAX_KEPT) {
		kept_t *k = &c->kept[c->nkept];

		k->at = strdup(e.at);
		k->actor = strdup(e.actor);
		k->action = strdup(e.action);
		k->target = strdup(e.target);
		k->detail = strdup(e.detail);
		w->kept = c->nkept++;
		if (!k->at || !k->actor || !k->action || !k->target || !k->detail)
			return -1;
	}
	c->n++;
	return 0;
}

static const char *const entries_sql =
	"SELECT seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), actor, action, target, "
	"detail::text, encode(prev_hash, 'hex'), encode(hash, 'hex') FROM platform.audit_events "
	"WHERE tenant_id = $1::uuid AND seq > $2::bigint ORDER BY seq";

/* entries the chainer has not linked yet: how many, and how old the oldest
 * is by its own time (its writer's transaction start) */
static const char *const unchained_sql =
	"SELECT count(*), coalesce(extract(epoch FROM now() - min(at)), 0)::float8 FROM platform.audit_events "
	"WHERE tenant_id = $1::uuid AND hash IS NULL";

/* Checkpoint, head and entries, in one snapshot. */
static int load(PGconn *conn, chain_t *c)
{
	const char *p[2] = { c->tenant, NULL };
	char seq[24];
	PGresult *r;
	int rc = -1;

	if (exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") < 0)
		return -1;
	r = PQexecParams(conn, "SELECT seq, encode(hash, 'hex') FROM platform.audit_checkpoints "
			 "WHERE tenant_id = $1::uuid ORDER BY seq DESC LIMIT 1", 1, NULL, p, NULL, NULL, 0);
	if (!res_ok(conn, r, PGRES_TUPLES_OK, "reading the checkpoint"))
		goto out;
	if (PQntuples(r) == 1) {
		c->cp_seq = atoll(PQgetvalue(r, 0, 0));
		if (!hex32(PQgetvalue(r, 0, 1), c->cp_hash))
			memset(c->cp_hash, 0xff, sizeof(c->cp_hash));
	}
	PQclear(r);
	r = PQexecParams(conn, "SELECT seq, encode(hash, 'hex') FROM platform.audit_heads WHERE tenant_id = $1::uuid",
			 1, NULL, p, NULL, NULL, 0);
	if (!res_ok(conn, r, PGRES_TUPLES_OK, "reading the chain head"))
		goto out;
	if (PQntuples(r) == 1) {
		c->have_head = true;
		c->head_seq = atoll(PQgetvalue(r, 0, 0));
		if (!hex32(PQgetvalue(r, 0, 1), c->head_hash))
			memset(c->head_hash, 0xff, sizeof(c->head_hash));
	}
	PQclear(r);
	r = PQexecParams(conn, unchained_sql, 1, NULL, p, NULL, NULL, 0);
	if (!res_ok(conn, r, PGRES_TUPLES_OK, "counting unchained entries"))
		goto out;
	c->unchained = atoll(PQgetvalue(r, 0, 0));
	c->unchained_age_s = atof(PQgetvalue(r, 0, 1));
	PQclear(r);
	r = NULL;
	snprintf(seq, sizeof(seq), "%lld", c->cp_seq);
	p[1] = seq;
	/* rows one by one: a long chain is never one result in memory */
	if (!PQsendQueryParams(conn, entries_sql, 2, NULL, p, NULL, NULL, 0) || !PQsetSingleRowMode(conn)) {
		fprintf(stderr, "mspflow: audit: reading the entries: %s", PQerrorMessage(conn));
		goto out;
	}
	rc = 0;
	while ((r = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(r);

		if (st == PGRES_SINGLE_TUPLE) {
			if (rc == 0 && add_row(c, r, 0) < 0) {
				fprintf(stderr, "mspflow: audit: out of memory\n");
				rc = -1;
			}
		} else if (st != PGRES_TUPLES_OK) {
			fprintf(stderr, "mspflow: audit: reading the entries: %s", PQerrorMessage(conn));
			rc = -1;
		}
		PQclear(r);
	}
out:
	PQclear(r);
	if (exec_ok(conn, "COMMIT") < 0)
		rc = -1;
	return rc;
}

/* ---- checking ---- */

static const chain_t *sort_chain;

static int cmp_hash(const void *a, const void *b)
{
	return memcmp(sort_chain->rows[*(const size_t *)a].stored, sort_chain->rows[*(const size_t *)b].stored,
		      AUDIT_HASH_BYTES);
}

/* The seq of the entry whose stored hash is h, or -1. */
static long long seq_of_hash(const chain_t *c, const unsigned char h[AUDIT_HASH_BYTES])
{
	size_t lo = 0, hi = c->n;

	if (memcmp(h, c->cp_hash, AUDIT_HASH_BYTES) == 0 && c->cp_seq > 0)
		return c->cp_seq;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = memcmp(c->rows[c->by_hash[mid]].stored, h, AUDIT_HASH_BYTES);

		if (d == 0)
			return c->rows[c->by_hash[mid]].seq;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static bool hashes_as(const chain_t *c, const kept_t *k, long long seq, const unsigned char prev[AUDIT_HASH_BYTES],
		      const unsigned char want[AUDIT_HASH_BYTES])
{
	audit_entry_t e = { .tenant = c->tenant, .seq = seq, .at = k->at, .actor = k->actor, .action = k->action,
			    .target = k->target, .detail = k->detail };
	unsigned char h[AUDIT_HASH_BYTES];

	memcpy(e.prev, prev, sizeof(e.prev));
	audit_entry_hash(&e, h);
	return memcmp(h, want, AUDIT_HASH_BYTES) == 0;
}

/* An entry whose hash does not cover its fields: moved here from another
 * position (its fields hash right there), or edited. */
static void mismatch(chain_t *c, const row_t *w)
{
	const kept_t *k = w->kept >= 0 ? &c->kept[w->kept] : NULL;
	long long m;

	for (size_t j = 0; k && j < c->n; j++) {
		const row_t *o = &c->rows[j];

		if (o != w && o->kept >= 0 && hashes_as(c, k, o->seq, o->prev, o->stored)) {
			problem(c, "reordered", json_pack("{s:I,s:I}", "seq", w->seq, "holds_entry_of_seq", o->seq),
				"entry %lld holds the fields of entry %lld", w->seq, o->seq);
			return;
		}
	}
	/* its own prev_hash and hash, written under another seq: moved whole
	 * (to where another moved entry was, or after its predecessor) */
	for (size_t j = 0; k && j < c->n; j++) {
		const row_t *o = &c->rows[j];

		if (o != w && o->kept >= 0 && hashes_as(c, k, o->seq, w->prev, w->stored)) {
			problem(c, "reordered", json_pack("{s:I,s:I}", "seq", w->seq, "moved_from_seq", o->seq),
				"entry %lld was written as entry %lld", w->seq, o->seq);
			return;
		}
	}
	m = seq_of_hash(c, w->prev);
	if (k && m >= 0 && m + 1 != w->seq && hashes_as(c, k, m + 1, w->prev, w->stored)) {
		problem(c, "reordered", json_pack("{s:I,s:I}", "seq", w->seq, "moved_from_seq", m + 1),
			"entry %lld was written as entry %lld", w->seq, m + 1);
		return;
	}
	problem(c, "edited", json_pack("{s:I,s:o,s:o}", "seq", w->seq, "stored_hash", hexj(w->stored),
				       "computed_hash", hexj(w->computed)),
		"entry %lld was changed after it was written: its hash does not cover its fields", w->seq);
}

static void check(chain_t *c)
{
	long long expected = c->cp_seq + 1;
	unsigned char last[AUDIT_HASH_BYTES];

	memcpy(last, c->cp_hash, sizeof(last));
	for (size_t i = 0; i < c->n; i++) {
		const row_t *w = &c->rows[i];
		bool gap = w->seq != expected;

		if (w->seq > expected)
			problem(c, "deleted", json_pack("{s:I,s:I}", "from_seq", expected, "to_seq", w->seq - 1),
				"entries %lld to %lld are missing", expected, w->seq - 1);
		if (memcmp(w->computed, w->stored, AUDIT_HASH_BYTES) != 0) {
			mismatch(c, w);
		} else if (memcmp(w->prev, last, AUDIT_HASH_BYTES) != 0 && !gap) {
			long long m = seq_of_hash(c, w->prev);

			if (m >= 0)
				problem(c, "reordered", json_pack("{s:I,s:I,s:I}", "seq", w->seq, "links_to_seq", m,
								  "expected_link_seq", w->seq - 1),
					"entry %lld follows entry %lld, not entry %lld", w->seq, m, w->seq - 1);
			else
				problem(c, "broken_link", json_pack("{s:I,s:o,s:o}", "seq", w->seq, "prev_hash",
								    hexj(w->prev), "expected_prev_hash", hexj(last)),
					"entry %lld follows no entry the chain holds", w->seq);
		}
		memcpy(last, w->stored, sizeof(last));
		expected = w->seq + 1;
	}
	if (!c->have_head) {
		if (c->n > 0)
			problem(c, "head_mismatch", json_pack("{s:I}", "last_seq", expected - 1),
				"the tenant has entries but no chain head");
	} else if (c->head_seq >= expected) {
		problem(c, "deleted", json_pack("{s:I,s:I}", "from_seq", expected, "to_seq", c->head_seq),
			"entries %lld to %lld (the end of the chain) are missing", expected, c->head_seq);
	} else if (c->head_seq < expected - 1 || memcmp(c->head_hash, last, AUDIT_HASH_BYTES) != 0) {
		problem(c, "head_mismatch", json_pack("{s:I,s:I,s:o}", "head_seq", c->head_seq, "last_seq",
						      expected - 1, "head_hash", hexj(c->head_hash)),
			"the chain head (seq %lld) is not the last entry (seq %lld)", c->head_seq, expected - 1);
	}
	if (c->unchained > 0 && c->unchained_age_s > c->max_unchained_age_s)
		problem(c, "stale_unchained", json_pack("{s:I,s:f,s:f}", "unchained", c->unchained,
							"oldest_unchained_age_s", c->unchained_age_s,
							"max_unchained_age_s", c->max_unchained_age_s),
			"%lld entries are not chained, the oldest for %.0f s: is the chainer running?",
			c->unchained, c->unchained_age_s);
}

/* 0 intact, 1 tampered, -1 could not check. */
static int verify_tenant(PGconn *conn, const char *tenant, double max_unchained_age_s)
{
	chain_t c = { .tenant = tenant, .max_unchained_age_s = max_unchained_age_s };
	int rc = -1;

	if (load(conn, &c) < 0)
		goto out;
	c.by_hash = malloc((c.n ? c.n : 1) * sizeof(*c.by_hash));
	if (c.by_hash == NULL) {
		fprintf(stderr, "mspflow: audit: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < c.n; i++)
		c.by_hash[i] = i;
	sort_chain = &c;
	qsort(c.by_hash, c.n, sizeof(*c.by_hash), cmp_hash);
	check(&c);
	if (c.problems == 0) {
		json_t *j = json_pack("{s:s,s:s,s:I,s:o,s:o,s:I,s:o,s:I,s:o}", "tenant", tenant, "status", "intact",
				      "entries", (json_int_t)c.n,
				      "first_seq", c.n ? json_integer(c.rows[0].seq) : json_null(),
				      "last_seq", c.n ? json_integer(c.rows[c.n - 1].seq) : json_null(),
				      "checkpoint_seq", (json_int_t)c.cp_seq,
				      "head_hash", c.have_head ? hexj(c.head_hash) : json_null(),
				      "unchained", (json_int_t)c.unchained,
				      "oldest_unchained_age_s",
				      c.unchained ? json_real(c.unchained_age_s) : json_null());
		char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;

		json_decref(j);
		if (line == NULL) {
			fprintf(stderr, "mspflow: audit: out of memory\n");
			goto out;
		}
		printf("%s\n", line);
		free(line);
	}
	rc = c.problems ? 1 : 0;
out:
	chain_free(&c);
	return rc;
}

/* ---- chain ---- */

/* Chains the tenant's committed entries, a batch per transaction, waiting
 * for a chainer that holds the tenant; the number chained, or -1. */
static long long chain_tenant(PGconn *conn, const char *tenant)
{
	const char *p[1] = { tenant };
	long long total = 0, n;

	do {
		PGresult *r = PQexecParams(conn, "SELECT platform.audit_chain($1::uuid, " CHAIN_BATCH_S ", true)",
					   1, NULL, p, NULL, NULL, 0);

		if (!res_ok(conn, r, PGRES_TUPLES_OK, "chaining")) {
			PQclear(r);
			return -1;
		}
		n = atoll(PQgetvalue(r, 0, 0));
		total += n;
		PQclear(r);
	} while (n >= CHAIN_BATCH);
	return total;
}

static int print_count(const char *tenant, const char *what, long long n)
{
	json_t *j = json_pack("{s:s,s:I}", "tenant", tenant, what, (json_int_t)n);
	char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (line == NULL)
		return -1;
	printf("%s\n", line);
	free(line);
	return 0;
}

/* ---- prune ---- */

static int prune_tenant(PGconn *conn, const char *tenant)
{
	const char *p[1] = { tenant };
	long long total = 0, n;

	/* what is committed gets chained first: only chained entries are
	 * sealed, and retention should reach all of them */
	if (chain_tenant(conn, tenant) < 0)
		return -1;
	/* each call seals and deletes one batch in its own transaction */
	do {
		PGresult *r = PQexecParams(conn, "SELECT platform.audit_prune($1::uuid, "
					   "now() - platform.audit_retention($1::uuid), " PRUNE_BATCH ")",
					   1, NULL, p, NULL, NULL, 0);

		if (!res_ok(conn, r, PGRES_TUPLES_OK, "pruning")) {
			PQclear(r);
			return -1;
		}
		n = atoll(PQgetvalue(r, 0, 0));
		total += n;
		PQclear(r);
	} while (n > 0);
	return print_count(tenant, "pruned", total);
}

/* ---- the command ---- */

static void usage(void)
{
	fprintf(stderr, "usage: mspflow audit chain (--tenant ID|SLUG | --all) [--config FILE]\n"
			"       mspflow audit verify (--tenant ID|SLUG | --all) [--no-chain] "
			"[--max-unchained-age SECONDS] [--config FILE]\n"
			"       mspflow audit prune (--tenant ID|SLUG | --all) [--config FILE]\n");
}

static bool uuid_shaped(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
		if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-'
		    : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/* The tenants to act on (a new result of one text column), or NULL. */
static PGresult *tenants(PGconn *conn, const char *tenant)
{
	const char *p[1] = { tenant };
	PGresult *r;

	if (tenant == NULL)
		/* chained or not yet (a loose scan of the unchained index) */
		r = PQexec(conn, "WITH RECURSIVE due(t) AS ("
			   "(SELECT tenant_id FROM platform.audit_events WHERE hash IS NULL ORDER BY tenant_id LIMIT 1) "
			   "UNION ALL SELECT (SELECT a.tenant_id FROM platform.audit_events a WHERE a.hash IS NULL "
			   "AND a.tenant_id > due.t ORDER BY a.tenant_id LIMIT 1) FROM due WHERE due.t IS NOT NULL) "
			   "SELECT tenant_id::text FROM platform.audit_heads UNION "
			   "SELECT t::text FROM due WHERE t IS NOT NULL ORDER BY 1");
	else if (uuid_shaped(tenant))
		/* a tenant deleted long ago still has its audit log */
		r = PQexecParams(conn, "SELECT lower($1)", 1, NULL, p, NULL, NULL, 0);
	else
		r = PQexecParams(conn, "SELECT id::text FROM platform.tenants WHERE slug = $1 AND deleted_at IS NULL",
				 1, NULL, p, NULL, NULL, 0);
	if (!res_ok(conn, r, PGRES_TUPLES_OK, "finding the tenant")) {
		PQclear(r);
		return NULL;
	}
	return r;
}

static int load_config(mf_config_t *cfg, const char *path)
{
	mf_err_t err = { 0 };

	if (mf_config_init(cfg) < 0) {
		fprintf(stderr, "mspflow: out of memory\n");
		return -1;
	}
	if (mf_config_load(cfg, path, &err) < 0 || mf_config_apply_env(cfg, &err) < 0 ||
	    mf_config_validate(cfg, &err) < 0) {
		fprintf(stderr, "mspflow: %s\n", err.detail);
		mf_config_free(cfg);
		return -1;
	}
	mf_log_set_level(cfg->log_level);
	return 0;
}

int audit_main(int argc, char **argv)
{
	const char *config = NULL, *tenant = NULL;
	bool all = false, chain_first = true;
	double max_age = MAX_UNCHAINED_AGE_S;
	enum { CHAIN, VERIFY, PRUNE } cmd;
	mf_config_t cfg;
	PGconn *conn;
	PGresult *ts;
	int rc = EXIT_INTACT;

	if (argc < 1) {
		usage();
		return EXIT_USAGE;
	}
	if (strcmp(argv[0], "chain") == 0) {
		cmd = CHAIN;
	} else if (strcmp(argv[0], "verify") == 0) {
		cmd = VERIFY;
	} else if (strcmp(argv[0], "prune") == 0) {
		cmd = PRUNE;
	} else {
		usage();
		return EXIT_USAGE;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0) {
			all = true;
		} else if (cmd == VERIFY && strcmp(argv[i], "--no-chain") == 0) {
			chain_first = false;
		} else if (cmd == VERIFY && strcmp(argv[i], "--max-unchained-age") == 0 && i + 1 < argc) {
			char *end;

			max_age = strtod(argv[++i], &end);
			if (end == argv[i] || *end != '\0' || !(max_age >= 0 && max_age < 1e9)) {
				fprintf(stderr, "mspflow: --max-unchained-age takes seconds (a number from 0)\n");
				return EXIT_USAGE;
			}
		} else if ((strcmp(argv[i], "--tenant") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
			*(argv[i][2] == 't' ? &tenant : &config) = argv[i + 1];
			i++;
		} else if (strncmp(argv[i], "--tenant=", 9) == 0) {
			tenant = argv[i] + 9;
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			config = argv[i] + 9;
		} else {
			fprintf(stderr, "mspflow: unknown option %s\n", argv[i]);
			usage();
			return EXIT_USAGE;
		}
	}
	if (all == (tenant != NULL) || (tenant && tenant[0] == '\0')) {
		usage();
		return EXIT_USAGE;
	}
	if (load_config(&cfg, config) < 0)
		return EXIT_USAGE;
	if (cfg.database_url[0] == '\0') {
		fprintf(stderr, "mspflow: database_url is not set (config file or MSPFLOW_DATABASE_URL)\n");
		mf_config_free(&cfg);
		return EXIT_USAGE;
	}
	conn = PQconnectdb(cfg.database_url);
	mf_config_free(&cfg);
	if (PQstatus(conn) != CONNECTION_OK) {
		/* libpq's message names host and database, never the password */
		fprintf(stderr, "mspflow: audit: cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return EXIT_UNCHECKED;
	}
	ts = tenants(conn, tenant);
	if (ts == NULL) {
		rc = EXIT_UNCHECKED;
	} else if (tenant && PQntuples(ts) == 0) {
		fprintf(stderr, "mspflow: audit: no such tenant \"%s\"\n", tenant);
		rc = EXIT_USAGE;
	}
	for (int i = 0; ts && rc != EXIT_USAGE && i < PQntuples(ts); i++) {
		const char *t = PQgetvalue(ts, i, 0);
		long long n = 0;
		int r;

		if (cmd == PRUNE) {
			r = prune_tenant(conn, t);
		} else if (cmd == CHAIN) {
			n = chain_tenant(conn, t);
			r = n < 0 ? -1 : print_count(t, "chained", n);
		} else {
			r = chain_first && chain_tenant(conn, t) < 0 ? -1 : verify_tenant(conn, t, max_age);
		}
		if (r < 0)
			rc = EXIT_UNCHECKED;
		else if (r > 0 && rc == EXIT_INTACT)
			rc = EXIT_TAMPERED;
	}
	PQclear(ts);
	PQfinish(conn);
	fflush(stdout);
	return rc;
}
