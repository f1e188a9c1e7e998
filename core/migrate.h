/*
 * migrate.h - versioned schema migrations compiled into the binary.
 *
 * Two sets: "platform" (applied to the platform schema) and "tenant"
 * (applied to every tenant schema listed in platform.tenants).  Each set is
 * an ordered list of (version, name, sql) generated at build time from
 * tenants/migrations/<set>/NNNN_name.sql.
 *
 * A run takes a session advisory lock so that concurrent runs (several
 * instances starting, an operator's `mspflow migrate`) serialise; each
 * schema is brought up to date in its own transaction, recording applied
 * versions in <schema>.schema_migrations, so an interrupted run leaves
 * every schema either fully at some version or untouched, and re-running
 * resumes where it stopped.  Runs on a plain blocking connection: it is a
 * command-line / start-up step, never called from an event loop.
 */
#ifndef MF_MIGRATE_H
#define MF_MIGRATE_H

#include <libpq-fe.h>
#include "core/err.h"

typedef struct mf_migration {
	int version;
	const char *name;
	const char *sql;
} mf_migration_t;

typedef struct mf_migration_set {
	const char *name;			/* "platform" | "tenant" */
	const mf_migration_t *items;
	int count;
} mf_migration_set_t;

extern const mf_migration_set_t mf_migrations_platform;
extern const mf_migration_set_t mf_migrations_tenant;

#define MF_PLATFORM_SCHEMA "platform"

/* Highest version of a set (0 when empty). */
int mf_migration_set_latest(const mf_migration_set_t *set);

/* Summary of one run, for the command's output and tests. */
typedef struct mf_migrate_report {
	int schemas_total;		/* platform + tenant schemas considered */
	int schemas_changed;		/* those that got at least one migration */
	int migrations_applied;
} mf_migrate_report_t;

/* Migrates the platform schema and then every tenant schema.  Returns 0, or
 * -1 with err (the schema and version that failed in err->detail); schemas
 * done before the failure stay done. */
int mf_migrate_all(PGconn *conn, mf_migrate_report_t *report, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Creates (if needed) and migrates one tenant schema; the name must match
 * ^t_[0-9a-z_]{1,60}$ (names are generated, never user input). */
int mf_migrate_tenant_schema(PGconn *conn, const char *schema, mf_err_t *err)
	__attribute__((warn_unused_result));
/* The SQL script that creates a new tenant schema at the latest version,
 * for running inside a transaction of the async pool (tenant provisioning):
 * waits for a concurrent `mspflow migrate`, creates the schema, applies
 * every tenant migration and records them.  Appended to out. */
struct mf_buf;
int mf_migrate_tenant_script(const char *schema, struct mf_buf *out, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Current version of a schema's set (0 = none / no such schema). */
int mf_migrate_current(PGconn *conn, const char *schema, mf_err_t *err);

/* SQL with one parameter ($1 = mf_migration_set_latest(&mf_migrations_platform)
 * as text) returning one row, one boolean column: true when the platform
 * schema is at that version.  Used by /readyz through the async pool. */
extern const char *const mf_migrate_ready_sql;

#endif
