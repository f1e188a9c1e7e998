/*
 * mf_testsrv.c - the test server: the same library and composition root as
 * mspflow (mf_serve), plus a few routes the integration tests need and the
 * product does not have yet: a JSON echo (body limits, 415, duplicate
 * keys), parameterised routes (routing, 405), a slow route (graceful
 * shutdown), a database sleep (pool behaviour), the window rate limiter
 * (GET /rl/{key}?limit=N&window=W), the request's trace context as a
 * handler sees it (GET /trace), and the vault's open path
 * (GET /test/vault/{tenant_id}/{name}: the type, version and SHA-256 of
 * the plaintext, never the plaintext).  Never installed.
 *
 *   mspflow-testsrv serve --config FILE
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include <sodium.h>

#include "cmd/serve.h"
#include "connectors/vault.h"
#include "core/log.h"
#include "core/trace.h"
#include "core/worker.h"
#include "gateway/ratelimit.h"

static void echo(gw_req_t *req, void *arg)
{
	mf_err_t err;
	json_t *j = gw_req_json(req, &err);

	if (j == NULL) {
		gw_respond_problem(req, &err);
		return;
	}
	gw_respond_json(req, 200, json_pack("{so}", "received", j));
}

static void item(gw_req_t *req, void *arg)
{
	const char *part = gw_req_param(req, "part");

	gw_respond_json(req, 200, json_pack("{ss ss ss? ss}", "id", gw_req_param(req, "id"), "route",
					    gw_req_route(req), "part", part, "method", gw_req_method(req)));
}

/* What an outgoing call of this request would send as its traceparent. */
static void trace_route(gw_req_t *req, void *arg)
{
	char tp[MF_TRACE_HEADER_SIZE];

	if (mf_trace_format(gw_req_trace(req), tp, sizeof(tp)) != 0) {
		gw_respond_error(req, 500, "internal_error", "no trace");
		return;
	}
	gw_respond_json(req, 200, json_pack("{ss}", "traceparent", tp));
}

static void item_new(gw_req_t *req, void *arg)
{
	gw_respond_json(req, 200, json_pack("{ss}", "route", gw_req_route(req)));
}

static long query_ms(gw_req_t *req)
{
	const char *q = gw_req_query(req), *p = q ? strstr(q, "ms=") : NULL;
	long ms = p ? strtol(p + 3, NULL, 10) : 0;

	return ms < 0 ? 0 : ms > 30000 ? 30000 : ms;
}

static void sleep_done(evutil_socket_t fd, short what, void *arg)
{
	gw_respond_json(arg, 200, json_pack("{sb}", "slept", 1));
}

static void sleep_route(gw_req_t *req, void *arg)
{
	long ms = query_ms(req);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (event_base_once(gw_req_base(req), -1, EV_TIMEOUT, sleep_done, req, &tv) < 0)
		gw_respond_error(req, 500, "internal_error", "no timer");
}

static void db_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	if (err)
		gw_respond_problem(arg, err);
	else
		gw_respond_json(arg, 200, json_pack("{ss}", "db", "ok"));
}

static void db_sleep(gw_req_t *req, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	char secs[32];
	const char *params[1] = { secs };

	snprintf(secs, sizeof(secs), "%.3f", (double)query_ms(req) / 1000.0);
	if (w == NULL || w->pg == NULL || mf_pg_query(w->pg, "SELECT pg_sleep($1::float8)", 1, params, db_done, req) < 0)
		gw_respond_error(req, 503, "database_unavailable", "no database");
}

/* POST-less transaction probe: GET /db/tx?commit=0|1&v=N inserts v into
 * tx_probe inside a transaction and commits or rolls back. */
struct tx {
	gw_req_t *req;
	bool commit, fail;	/* fail: make the insert fail, then COMMIT anyway */
	char v[32];
};

static void tx_ended(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct tx *t = arg;

	if (err)
		gw_respond_problem(t->req, err);
	else
		gw_respond_json(t->req, 200, json_pack("{sb}", "committed", t->commit));
	free(t);
}

static void tx_inserted(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct tx *t = arg;
	mf_pg_conn_t *conn = *(mf_pg_conn_t **)(t + 1);

	if (err && !t->fail) {
		gw_respond_problem(t->req, err);
		if (mf_pg_tx_end(conn, false, NULL, NULL) < 0)
			mf_warn("testsrv", "rollback not sent");
		free(t);
		return;
	}
	if (mf_pg_tx_end(conn, t->commit, tx_ended, t) < 0) {
		gw_respond_error(t->req, 500, "internal_error", "commit not sent");
		free(t);
	}
}

static void tx_begun(mf_pg_conn_t *conn, const mf_err_t *err, void *arg)
{
	struct tx *t = arg;
	const char *params[1] = { t->v };

	if (err) {
		gw_respond_problem(t->req, err);
		free(t);
		return;
	}
	*(mf_pg_conn_t **)(t + 1) = conn;
	if (mf_pg_conn_query(conn, "INSERT INTO tx_probe (v) VALUES ($1::int)", 1, params, tx_inserted, t) < 0) {
		gw_respond_error(t->req, 500, "internal_error", "insert not sent");
		free(t);
	}
}

static void db_tx(gw_req_t *req, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	const char *q = gw_req_query(req) ? gw_req_query(req) : "";
	const char *v = strstr(q, "v=");
	struct tx *t = calloc(1, sizeof(*t) + sizeof(mf_pg_conn_t *));

	if (t == NULL || w == NULL || w->pg == NULL) {
		free(t);
		gw_respond_error(req, 503, "database_unavailable", "no database");
		return;
	}
	t->req = req;
	t->commit = strstr(q, "commit=1") != NULL;
	t->fail = strstr(q, "fail=1") != NULL;
	if (t->fail)
		snprintf(t->v, sizeof(t->v), "not-a-number");
	else
		snprintf(t->v, sizeof(t->v), "%ld", v ? strtol(v + 2, NULL, 10) : 0L);
	if (mf_pg_tx_begin(w->pg, tx_begun, t) < 0) {
		free(t);
		gw_respond_error(req, 500, "internal_error", "begin not sent");
	}
}

static long query_long(gw_req_t *req, const char *name, long dflt)
{
	const char *q = gw_req_query(req);
	size_t n = strlen(name);

	for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
		if (strncmp(p, name, n) == 0 && p[n] == '=')
			return strtol(p + n + 1, NULL, 10);
	return dflt;
}

static void rl_answer(enum gw_rl_outcome outcome, const gw_rl_result_t *res, void *arg)
{
	gw_req_t *req = arg;
	char v[16];

	snprintf(v, sizeof(v), "%d", res->limit);
	gw_res_header(req, "RateLimit-Limit", v);
	snprintf(v, sizeof(v), "%d", res->remaining);
	gw_res_header(req, "RateLimit-Remaining", v);
	snprintf(v, sizeof(v), "%d", res->reset_s);
	gw_res_header(req, "RateLimit-Reset", v);
	if (outcome == GW_RL_ADMIT) {
		gw_respond_json(req, 200, json_pack("{sb}", "admitted", 1));
	} else {
		mf_err_t err;

		mf_err_set(&err, 429, "rate_limited", "too many requests; retry later");
		err.retry_after = res->reset_s;	/* the window's end: whole seconds, >= 1 */
		gw_respond_problem(req, &err);
	}
}

static void rl_route(gw_req_t *req, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	const char *key = gw_req_param(req, "key");
	long limit = query_long(req, "limit", 10), window = query_long(req, "window", 10);
	gw_rl_result_t res;
	enum gw_rl_outcome o;

	if (w == NULL || w->rl == NULL) {
		gw_respond_error(req, 500, "internal_error", "no rate limiter");
		return;
	}
	if (strlen(key) > GW_RL_MAX_KEY || limit < 1 || limit > 1000000000 || window < 1 || window > 3600) {
		gw_respond_error(req, 400, "bad_request", "key up to 80 bytes, limit >= 1, window 1..3600");
		return;
	}
	o = gw_rl_acquire(w->rl, key, (int)limit, (int)window, &res, rl_answer, req);
	if (o != GW_RL_PENDING)
		rl_answer(o, &res, req);
}

/* The vault's open path without a connector: the tenant's schema is read
 * from platform.tenants (deleted tenants included, so a test can restore
 * a shredded tenant's rows and see that they no longer open). */
struct vopen {
	gw_req_t *req;
	char tenant[37];
	char name[64];
};

static void vault_opened(cx_secret_t *s, const mf_err_t *err, void *arg)
{
	struct vopen *o = arg;
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof(h) + 1];

	if (s == NULL) {
		gw_respond_problem(o->req, err);
		free(o);
		return;
	}
	crypto_hash_sha256(h, s->data, s->len);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	gw_respond_json(o->req, 200, json_pack("{ss si ss si}", "type", s->type, "version", s->version, "sha256", hex,
					       "length", (int)s->len));
	cx_secret_free(s);
	free(o);
}

static void vault_schema(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct vopen *o = arg;
	mf_worker_t *w = gw_req_worker_data(o->req);

	if (err || PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		if (err)
			gw_respond_problem(o->req, err);
		else
			gw_respond_error(o->req, 404, "not_found", "no such tenant");
		free(o);
		return;
	}
	if (cx_vault_open(w->vault, o->tenant, PQgetvalue(res, 0, 0), o->name, vault_opened, o) < 0) {
		gw_respond_error(o->req, 400, "bad_request", "cannot open");
		free(o);
	}
}

static void vault_open_route(gw_req_t *req, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	struct vopen *o = calloc(1, sizeof(*o));
	const char *p[1];

	if (o == NULL || w == NULL || w->pg == NULL || w->vault == NULL) {
		free(o);
		gw_respond_error(req, 503, "database_unavailable", "no database");
		return;
	}
	o->req = req;
	snprintf(o->tenant, sizeof(o->tenant), "%s", gw_req_param(req, "tenant_id"));
	snprintf(o->name, sizeof(o->name), "%s", gw_req_param(req, "name"));
	p[0] = o->tenant;
	if (strlen(o->tenant) != 36 ||
	    mf_pg_query(w->pg, "SELECT schema_name FROM platform.tenants WHERE id = $1::uuid", 1, p, vault_schema, o) < 0) {
		free(o);
		gw_respond_error(req, 400, "bad_request", "bad tenant id");
	}
}

static int add_routes(gw_router_t *api, gw_router_t *admin, void *arg)
{
	return gw_router_add(api, "POST", "/echo", echo, NULL, GW_ROUTE_JSON_BODY) |
	       gw_router_add(api, "GET", "/items/{id}", item, NULL, 0) |
	       gw_router_add(api, "DELETE", "/items/{id}", item, NULL, 0) |
	       gw_router_add(api, "GET", "/items/new", item_new, NULL, 0) |
	       gw_router_add(api, "GET", "/items/{id}/parts/{part}", item, NULL, 0) |
	       gw_router_add(api, "GET", "/sleep", sleep_route, NULL, 0) |
	       gw_router_add(api, "GET", "/db/sleep", db_sleep, NULL, 0) |
	       gw_router_add(api, "GET", "/db/tx", db_tx, NULL, 0) |
	       gw_router_add(api, "GET", "/rl/{key}", rl_route, NULL, 0) |
	       gw_router_add(api, "GET", "/trace", trace_route, NULL, 0) |
	       gw_router_add(api, "GET", "/test/vault/{tenant_id}/{name}", vault_open_route, NULL, 0);
}

int main(int argc, char **argv)
{
	mf_config_t cfg;
	mf_err_t err = { 0 };
	int rc;

	if (argc != 4 || strcmp(argv[1], "serve") || strcmp(argv[2], "--config")) {
		fprintf(stderr, "usage: %s serve --config FILE\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (mf_config_init(&cfg) < 0 || mf_config_load(&cfg, argv[3], &err) < 0 ||
	    mf_config_apply_env(&cfg, &err) < 0 || mf_config_validate(&cfg, &err) < 0) {
		fprintf(stderr, "mspflow-testsrv: %s\n", err.detail);
		mf_config_free(&cfg);
		return 1;
	}
	mf_log_set_level(cfg.log_level);
	rc = mf_serve(&cfg, &(mf_serve_hooks_t){ .routes = add_routes }, &err);
	if (rc < 0)
		fprintf(stderr, "mspflow-testsrv: %s\n", err.detail);
	mf_config_free(&cfg);
	return rc < 0 ? 1 : 0;
}
