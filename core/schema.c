/*
 * schema.c - the migration runner (see migrate.h).
 *
 * Uses a plain blocking connection: it runs from `mspflow migrate` and at
 * the start of `mspflow dev`, before any event loop exists.  The migration
 * texts are multi-statement SQL compiled into the binary, so they go through
 * PQexec; everything that carries a value (schema name in search_path,
 * version numbers) is a parameter.  Schema names are additionally checked
 * against the generated-name pattern before they are used as identifiers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/migrate.h"

#define MIGRATE_LOCK_KEY "31078753305488503"	/* "mspflow" as a number */

const char *const mf_migrate_ready_sql =
	"SELECT coalesce(max(version), 0) >= $1::int FROM platform.schema_migrations";

int mf_migration_set_latest(const mf_migration_set_t *set)
{
	return set->count > 0 ? set->items[set->count - 1].version : 0;
}

static bool schema_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (strcmp(s, MF_PLATFORM_SCHEMA) == 0)
		return true;
	if (n < 3 || n > 62 || s[0] != 't' || s[1] != '_')
		return false;
	for (size_t i = 2; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* Runs a statement that must succeed; on failure fills err (with the
 * server's message: this is an operator-facing command) and returns -1. */
static int run(PGconn *c, const char *sql, int n, const char *const *params, PGresult **out, mf_err_t *err,
	       const char *what)
{
	PGresult *r = n >= 0 ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

		mf_err_set(err, 500, "migration_failed", "%s: %s", what, msg ? msg : PQerrorMessage(c));
		if (err && state)
			snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state);
		PQclear(r);
		return -1;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return 0;
}

/* Brings one schema up to date in one transaction.  Returns the number of
 * migrations applied, or -1. */
static int migrate_schema(PGconn *c, const char *schema, const mf_migration_set_t *set, mf_err_t *err)
{
	const char *p1[1] = { schema };
	char what[160], *ident = NULL, create[200];
	PGresult *r = NULL;
	bool *applied = NULL;
	int count = 0;

	if (!schema_name_ok(schema))
		return mf_err_set(err, 500, "migration_failed", "refusing schema name \"%.64s\"", schema);
	applied = calloc((size_t)set->count + 1, sizeof(bool));
	ident = PQescapeIdentifier(c, schema, strlen(schema));
	if (applied == NULL || ident == NULL) {
		free(applied);
		PQfreemem(ident);
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	snprintf(create, sizeof(create), "CREATE SCHEMA IF NOT EXISTS %s", ident);
	PQfreemem(ident);
	snprintf(what, sizeof(what), "schema %s", schema);
	if (run(c, "BEGIN", -1, NULL, NULL, err, what) < 0)
		goto fail;
	if (run(c, create, -1, NULL, NULL, err, what) < 0 ||
	    run(c, "SELECT set_config('search_path', $1, true)", 1, p1, NULL, err, what) < 0 ||
	    run(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
		   "version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
		-1, NULL, NULL, err, what) < 0 ||
	    run(c, "SELECT version FROM schema_migrations", 0, NULL, &r, err, what) < 0)
		goto rollback;
	for (int i = 0; i < PQntuples(r); i++) {
		int v = atoi(PQgetvalue(r, i, 0));

		if (v > set->count) {
			PQclear(r);
			mf_err_set(err, 500, "migration_failed",
				   "schema %s is at version %d, newer than this binary knows (%d)", schema, v, set->count);
			goto rollback;
		}
		if (v >= 1)
			applied[v] = true;
	}
	PQclear(r);
	for (int i = 0; i < set->count; i++) {
		const mf_migration_t *m = &set->items[i];
		char vbuf[16];
		const char *p2[2] = { vbuf, m->name };

		if (applied[m->version])
			continue;
		snprintf(vbuf, sizeof(vbuf), "%d", m->version);
		snprintf(what, sizeof(what), "schema %s, migration %04d_%s", schema, m->version, m->name);
		if (run(c, m->sql, -1, NULL, NULL, err, what) < 0 ||
		    run(c, "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", 2, p2, NULL, err,
			what) < 0)
			goto rollback;
		count++;
	}
	if (run(c, "COMMIT", -1, NULL, NULL, err, what) < 0)
		goto fail;
	if (count)
		mf_info("migrate", "schema migrated", MF_S("schema", schema), MF_S("set", set->name),
			MF_I("applied", count), MF_I("version", mf_migration_set_latest(set)));
	free(applied);
	return count;
rollback:
	PQclear(PQexec(c, "ROLLBACK"));
fail:
	free(applied);
	return -1;
}

int mf_migrate_tenant_schema(PGconn *c, const char *schema, mf_err_t *err)
{
	if (strcmp(schema, MF_PLATFORM_SCHEMA) == 0)
		return mf_err_set(err, 500, "migration_failed", "not a tenant schema");
	return migrate_schema(c, schema, &mf_migrations_tenant, err) < 0 ? -1 : 0;
}

int mf_migrate_tenant_script(const char *schema, mf_buf_t *out, mf_err_t *err)
{
	const mf_migration_set_t *set = &mf_migrations_tenant;
	int rc = 0;

	if (!schema_name_ok(schema) || strcmp(schema, MF_PLATFORM_SCHEMA) == 0)
		return mf_err_set(err, 500, "internal_error", "refusing schema name");
	/* the name matched ^t_[0-9a-z_]+$, so double quotes make it a safe
	 * identifier; the shared lock waits for a running `mspflow migrate` */
	rc |= mf_buf_addf(out,
		"SELECT pg_advisory_xact_lock_shared(" MIGRATE_LOCK_KEY ");\n"
		"CREATE SCHEMA \"%s\";\n"
		"SET LOCAL search_path = \"%s\";\n"
		"CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
		"applied_at timestamptz NOT NULL DEFAULT now());\n", schema, schema);
	for (int i = 0; i < set->count; i++)
		rc |= mf_buf_addf(out, "%s;\nINSERT INTO schema_migrations (version, name) VALUES (%d, '%s');\n",
				  set->items[i].sql, set->items[i].version, set->items[i].name);
	rc |= mf_buf_addf(out, "SET LOCAL search_path = %s;\n", MF_PLATFORM_SCHEMA);
	return rc < 0 ? mf_err_set(err, 500, "out_of_memory", "out of memory") : 0;
}

int mf_migrate_all(PGconn *c, mf_migrate_report_t *rep, mf_err_t *err)
{
	const char *key[1] = { MIGRATE_LOCK_KEY };
	PGresult *r = NULL;
	int rc = -1, n;

	memset(rep, 0, sizeof(*rep));
	/* serialise concurrent runs (instances starting, an operator's
	 * `mspflow migrate`): the lock is released with the session too */
	if (run(c, "SELECT pg_advisory_lock($1::bigint)", 1, key, NULL, err, "advisory lock") < 0)
		return -1;
	n = migrate_schema(c, MF_PLATFORM_SCHEMA, &mf_migrations_platform, err);
	if (n < 0)
		goto out;
	rep->schemas_total++;
	rep->schemas_changed += n > 0;
	rep->migrations_applied += n;
	if (run(c, "SELECT schema_name FROM platform.tenants "
		   "WHERE schema_name IS NOT NULL AND deleted_at IS NULL ORDER BY schema_name",
		0, NULL, &r, err, "listing tenant schemas") < 0)
		goto out;
	for (int i = 0; i < PQntuples(r); i++) {
		n = migrate_schema(c, PQgetvalue(r, i, 0), &mf_migrations_tenant, err);
		if (n < 0)
			goto out;
		rep->schemas_total++;
		rep->schemas_changed += n > 0;
		rep->migrations_applied += n;
	}
	rc = 0;
out:
	PQclear(r);
	PQclear(PQexecParams(c, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, key, NULL, NULL, 0));
	return rc;
}

int mf_migrate_current(PGconn *c, const char *schema, mf_err_t *err)
{
	const char *p1[1] = { schema };
	PGresult *r = NULL;
	int v = 0;

	if (!schema_name_ok(schema))
		return mf_err_set(err, 500, "migration_failed", "refusing schema name");
	if (run(c, "SELECT (to_regclass(quote_ident($1) || '.schema_migrations') IS NULL)::int * -1",
		1, p1, &r, err, "version") < 0)
		return -1;
	v = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (v < 0)
		return 0;
	/* the table exists: read it under the schema's own search_path */
	if (run(c, "BEGIN", -1, NULL, NULL, err, "version") < 0)
		return -1;
	if (run(c, "SELECT set_config('search_path', $1, true)", 1, p1, NULL, err, "version") < 0 ||
	    run(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, &r, err, "version") < 0) {
		PQclear(PQexec(c, "ROLLBACK"));
		return -1;
	}
	v = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQclear(PQexec(c, "COMMIT"));
	return v;
}
