/*
 * directory.c - each worker's cache of what the guard must know on every
 * request: a tenant's kind, parent, status and rate plan, and whether an API
 * client or user (a token's subject) is still live.
 *
 * Entries are trusted for auth_cache_ttl_ms (default 2 s), which bounds how
 * late a suspension or an API-client deletion takes effect on any instance:
 * no notification channel to lose, and the cost is one small query per
 * tenant and per subject per worker every couple of seconds.  A lookup that
 * misses queues on the entry, so a burst of requests for one tenant makes
 * one query.  The table is per worker: no locks.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "tenants/tn.h"

#define DIR_BUCKETS 4096

enum { E_TENANT = 't', E_PRINCIPAL = 'p' };

typedef struct waiter {
	struct waiter *next;
	void *cb;
	void *arg;
} waiter_t;

typedef struct entry {
	struct entry *next;
	char type;
	char id[37];
	bool loading, found;
	long long expires;
	tn_tenant_t t;			/* E_TENANT */
	char tenant_id[37];		/* E_PRINCIPAL */
	waiter_t *waiters, **wtail;
} entry_t;

struct tn_dir {
	tn_worker_t *tw;
	int ttl_ms;
	size_t cap, count;
	entry_t *b[DIR_BUCKETS];
};

static const char tenant_sql[] =
	"SELECT t.id, coalesce(t.parent_id::text, ''), t.kind, t.status, coalesce(p.status, 'active'), "
	"coalesce(t.schema_name, ''), g.policy::text, p.policy::text, t.policy::text, "
	"(p.id IS NOT NULL)::int + (g.id IS NOT NULL)::int "
	"FROM platform.tenants t LEFT JOIN platform.tenants p ON p.id = t.parent_id "
	"LEFT JOIN platform.tenants g ON g.id = p.parent_id "
	"WHERE t.id = $1::uuid AND t.deleted_at IS NULL";

static const char principal_sql[] =
	"SELECT tenant_id::text FROM platform.api_clients WHERE id = $1::uuid AND deleted_at IS NULL "
	"UNION ALL SELECT tenant_id::text FROM platform.users WHERE id = $1::uuid AND deleted_at IS NULL";

long long tn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned hash(char type, const char *id)
{
	unsigned h = 2166136261u ^ (unsigned char)type;

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h & (DIR_BUCKETS - 1);
}

tn_dir_t *tn_dir_new(tn_worker_t *tw, int ttl_ms, size_t capacity)
{
	tn_dir_t *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->tw = tw;
	d->ttl_ms = ttl_ms;
	d->cap = capacity ? capacity : 65536;
	return d;
}

static void entry_free(entry_t *e)
{
	waiter_t *w = e->waiters;

	while (w) {
		waiter_t *n = w->next;

		free(w);
		w = n;
	}
	free(e);
}

void tn_dir_free(tn_dir_t *d)
{
	if (d == NULL)
		return;
	for (int i = 0; i < DIR_BUCKETS; i++) {
		entry_t *e = d->b[i];

		while (e) {
			entry_t *n = e->next;

			/* loading entries have a query in flight whose callback
			 * holds e: the pool is freed first and answers it */
			entry_free(e);
			e = n;
		}
	}
	free(d);
}

static entry_t *find(tn_dir_t *d, char type, const char *id, entry_t ***link)
{
	entry_t **p = &d->b[hash(type, id)];

	for (; *p; p = &(*p)->next)
		if ((*p)->type == type && strcmp((*p)->id, id) == 0) {
			if (link)
				*link = p;
			return *p;
		}
	return NULL;
}

/* Makes room: drops expired entries that no query is filling. */
static void sweep(tn_dir_t *d, bool all)
{
	long long now = tn_now_ms();

	for (int i = 0; i < DIR_BUCKETS && d->count >= d->cap / 2; i++) {
		entry_t **p = &d->b[i];

		while (*p) {
			entry_t *e = *p;

			if (!e->loading && (all || e->expires <= now)) {
				*p = e->next;
				entry_free(e);
				d->count--;
			} else {
				p = &e->next;
			}
		}
	}
}

void tn_dir_forget(tn_dir_t *d, const char *id)
{
	static const char types[] = { E_TENANT, E_PRINCIPAL };

	for (size_t i = 0; i < sizeof(types); i++) {
		entry_t **link, *e = find(d, types[i], id, &link);

		if (e && !e->loading) {
			*link = e->next;
			entry_free(e);
			d->count--;
		} else if (e) {
			e->expires = 0;	/* the answer in flight may predate the change */
		}
	}
}

static void answer(entry_t *e, const mf_err_t *err)
{
	waiter_t *w = e->waiters;

	e->waiters = NULL;
	e->wtail = &e->waiters;
	while (w) {
		waiter_t *n = w->next;

		if (e->type == E_TENANT)
			((tn_tenant_cb)w->cb)(err == NULL && e->found ? &e->t : NULL, err, w->arg);
		else
			((tn_principal_cb)w->cb)(err == NULL && e->found ? e->tenant_id : NULL, err, w->arg);
		free(w);
		w = n;
	}
}

json_t *tn_policy_chain(const char *const *docs, int n)
{
	json_t *eff = NULL;

	/* docs[0] is the root's: nothing above it caps it; every later
	 * tenant is capped by the effective policy of the one before */
	for (int i = 0; i < n; i++) {
		json_t *d = docs[i] && docs[i][0] ? json_loads(docs[i], 0, NULL) : NULL;
		json_t *next = pol_policy_effective(eff, d);

		json_decref(d);
		json_decref(eff);
		eff = next;
		if (eff == NULL)
			return NULL;
	}
	return eff;
}

static enum tn_status status_parse(const char *s)
{
	return !strcmp(s, "active") ? TN_ACTIVE : !strcmp(s, "suspended") ? TN_SUSPENDED : TN_DELETED;
}

static void loaded(tn_dir_t *d, entry_t *e, const PGresult *res, const mf_err_t *err)
{
	e->loading = false;
	if (err) {
		/* not cached: the next request asks again */
		e->expires = 0;
		answer(e, err);
		return;
	}
	e->found = PQntuples(res) > 0;
	if (e->found && e->type == E_TENANT) {
		tn_tenant_t *t = &e->t;

		memset(t, 0, sizeof(*t));
		snprintf(t->id, sizeof(t->id), "%s", PQgetvalue(res, 0, 0));
		snprintf(t->parent_id, sizeof(t->parent_id), "%s", PQgetvalue(res, 0, 1));
		t->kind = pol_kind_parse(PQgetvalue(res, 0, 2));
		t->status = status_parse(PQgetvalue(res, 0, 3));
		t->parent_active = strcmp(PQgetvalue(res, 0, 4), "active") == 0;
		snprintf(t->schema, sizeof(t->schema), "%s", PQgetvalue(res, 0, 5));
		{
			int depth = atoi(PQgetvalue(res, 0, 9));	/* ancestors: 0..2 */
			const char *docs[3];
			json_t *eff;

			for (int i = 0; i <= depth; i++)
				docs[i] = PQgetisnull(res, 0, 8 - depth + i) ? NULL : PQgetvalue(res, 0, 8 - depth + i);
			eff = tn_policy_chain(docs, depth + 1);
			pol_policy_rate_plan(eff, &t->plan);
			json_decref(eff);
		}
	} else if (e->found) {
		snprintf(e->tenant_id, sizeof(e->tenant_id), "%s", PQgetvalue(res, 0, 0));
	}
	if (e->expires != 0)	/* 0: forgotten while loading, so the answer may be stale */
		e->expires = tn_now_ms() + d->ttl_ms;
	answer(e, NULL);
}

struct load {
	tn_dir_t *d;
	char type;
	char id[37];
};

static void load_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct load *l = arg;
	entry_t *e = find(l->d, l->type, l->id, NULL);

	if (e)
		loaded(l->d, e, res, err);
	free(l);
}

static void lookup(tn_dir_t *d, char type, const char *id, void *cb, void *arg)
{
	entry_t *e;
	waiter_t *w;
	struct load *l;
	mf_err_t err;
	const char *params[1] = { id };

	if (!tn_uuid_ok(id)) {
		if (type == E_TENANT)
			((tn_tenant_cb)cb)(NULL, NULL, arg);
		else
			((tn_principal_cb)cb)(NULL, NULL, arg);
		return;
	}
	e = find(d, type, id, NULL);
	if (e && !e->loading && e->expires > tn_now_ms()) {
		if (type == E_TENANT)
			((tn_tenant_cb)cb)(e->found ? &e->t : NULL, NULL, arg);
		else
			((tn_principal_cb)cb)(e->found ? e->tenant_id : NULL, NULL, arg);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (e == NULL) {
		if (d->count >= d->cap)
			sweep(d, false);
		if (d->count >= d->cap)
			sweep(d, true);
		e = calloc(1, sizeof(*e));
		if (e) {
			unsigned h = hash(type, id);

			e->type = type;
			snprintf(e->id, sizeof(e->id), "%s", id);
			e->wtail = &e->waiters;
			e->next = d->b[h];
			d->b[h] = e;
			d->count++;
		}
	}
	if (w == NULL || e == NULL) {
		free(w);
		mf_err_set(&err, 503, "over_capacity", "the server is out of memory; retry");
		err.retry_after = 1;
		if (type == E_TENANT)
			((tn_tenant_cb)cb)(NULL, &err, arg);
		else
			((tn_principal_cb)cb)(NULL, &err, arg);
		return;
	}
	w->cb = cb;
	w->arg = arg;
	*e->wtail = w;
	e->wtail = &w->next;
	if (e->loading)
		return;
	e->loading = true;
	e->expires = 1;
	l = malloc(sizeof(*l));
	if (l) {
		l->d = d;
		l->type = type;
		snprintf(l->id, sizeof(l->id), "%s", id);
	}
	if (l == NULL || mf_pg_query(d->tw->w->pg, type == E_TENANT ? tenant_sql : principal_sql, 1, params,
				     load_done, l) < 0) {
		free(l);
		mf_err_set(&err, 503, "over_capacity", "the server is out of memory; retry");
		err.retry_after = 1;
		e->loading = false;
		e->expires = 0;
		answer(e, &err);
	}
}

void tn_dir_tenant(tn_dir_t *d, const char *id, tn_tenant_cb cb, void *arg)
{
	lookup(d, E_TENANT, id, (void *)cb, arg);
}

void tn_dir_principal(tn_dir_t *d, const char *id, tn_principal_cb cb, void *arg)
{
	lookup(d, E_PRINCIPAL, id, (void *)cb, arg);
}
