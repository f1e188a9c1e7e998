/* test_migrate_sets.c - the compiled-in migration sets are well formed. */
#include "core/migrate.h"
#include "t.h"

static void check(const mf_migration_set_t *s, const char *name)
{
	char what[128];

	snprintf(what, sizeof(what), "%s: named", name);
	T_STREQ(s->name, name, what);
	snprintf(what, sizeof(what), "%s: has migrations", name);
	T_OK(s->count >= 1, what);
	for (int i = 0; i < s->count; i++) {
		snprintf(what, sizeof(what), "%s: version %d is contiguous and has SQL", name, i + 1);
		T_OK(s->items[i].version == i + 1 && s->items[i].sql && strlen(s->items[i].sql) > 10 &&
		     s->items[i].name && s->items[i].name[0], what);
	}
	snprintf(what, sizeof(what), "%s: latest is the last version", name);
	T_OK(mf_migration_set_latest(s) == s->count, what);
}

int main(void)
{
	check(&mf_migrations_platform, "platform");
	check(&mf_migrations_tenant, "tenant");
	T_OK(strstr(mf_migrations_platform.items[0].sql, "CREATE TABLE tenants") != NULL,
	     "platform 1 creates the tenant registry");
	T_OK(strstr(mf_migrate_ready_sql, "$1") != NULL, "readiness SQL takes the version as a parameter");
	return t_done();
}
