/*
 * api.c - the connector routes (CONTRACT 7), behind the access guard:
 *
 *   PUT    /v1/tenants/{tenant_id}/connectors/{name}        201 new, 200 changed (version + 1)
 *   GET    /v1/tenants/{tenant_id}/connectors[/{name}]
 *   DELETE /v1/tenants/{tenant_id}/connectors/{name}        204
 *   POST   /v1/tenants/{tenant_id}/connectors/{name}/calls  try a request through the connector
 *
 * Definitions live in the tenant's schema; writes run in one transaction
 * with search_path set from the guard's context (never from the request)
 * and their audit row.  The calls route answers the call's redacted
 * summary: what was sent and what came back, without secrets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/cx.h"
#include "core/log.h"
#include "core/worker.h"
#include "tenants/tenants.h"

typedef struct api_req {
	tn_call_t *call;
	cx_t *cx;
	mf_pg_conn_t *conn;
	char name[CX_CONN_NAME_MAX];
	char *params[12];		/* the upsert's values */
	json_t *out;
	int status;
	cx_op_t *op;
} api_req_t;

static void api_req_free(void *p)
{
	api_req_t *r = p;

	for (size_t i = 0; i < sizeof(r->params) / sizeof(r->params[0]); i++)
		free(r->params[i]);
	json_decref(r->out);
	if (r->op)
		cx_cancel(r->op);
	free(r);
}

static api_req_t *api_req_new(tn_call_t *call, cx_t *cx)
{
	api_req_t *r = calloc(1, sizeof(*r));
	const char *name = gw_req_param(call->req, "name");

	if (r == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return NULL;
	}
	r->call = call;
	r->cx = cx;
	call->data = r;
	call->data_free = api_req_free;
	if (name)
		snprintf(r->name, sizeof(r->name), "%s", name);
	return r;
}

static cx_worker_t *worker_of(gw_req_t *req)
{
	mf_worker_t *w = gw_req_worker_data(req);

	return w ? w->cx : NULL;
}

/* Ends a transaction that failed and answers err. */
static void tx_fail(api_req_t *r, const mf_err_t *err)
{
	if (r->conn) {
		mf_pg_conn_t *c = r->conn;

		r->conn = NULL;
		if (mf_pg_tx_end(c, false, NULL, NULL) < 0) {
			/* the connection is returned either way */
		}
	}
	gw_respond_problem(r->call->req, err);
}

static void respond_503(api_req_t *r)
{
	mf_err_t e;

	mf_err_set(&e, 503, "database_unavailable", "the database is not reachable");
	e.retry_after = 1;
	tx_fail(r, &e);
}

#define RET_COLS \
	"name, base_url, credential, headers::text, timeout_ms, rate_limit::text, retry::text, " \
	"redact_fields::text, max_response_bytes, follow_redirects, version, " \
	"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), " \
	"to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), kind"

static const char upsert_sql[] =
	"INSERT INTO connectors AS c (name, base_url, credential, headers, timeout_ms, rate_limit, retry, "
	"redact_fields, max_response_bytes, follow_redirects, created_by, kind) "
	"VALUES ($1, $2, $3, $4::jsonb, $5::int, $6::jsonb, coalesce($7::jsonb, '{}'), coalesce($8::jsonb, '[]'), "
	"$9::int, $10::int, $11, $12) "
	"ON CONFLICT (name) DO UPDATE SET base_url = EXCLUDED.base_url, credential = EXCLUDED.credential, "
	"headers = EXCLUDED.headers, timeout_ms = EXCLUDED.timeout_ms, rate_limit = EXCLUDED.rate_limit, "
	"retry = EXCLUDED.retry, redact_fields = EXCLUDED.redact_fields, "
	"max_response_bytes = EXCLUDED.max_response_bytes, follow_redirects = EXCLUDED.follow_redirects, "
	"kind = EXCLUDED.kind, version = c.version + 1, updated_at = now() "
	"RETURNING " RET_COLS ", (xmax = 0)::int";

static const char delete_sql[] = "DELETE FROM connectors WHERE name = $1 RETURNING name";

/* ---- the write transaction: BEGIN, search_path, statement, audit, COMMIT ---- */

static void committed(const PGresult *res, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;
	cx_worker_t *xw = worker_of(r->call->req);

	r->conn = NULL;
	if (err) {
		gw_respond_problem(r->call->req, err);
		return;
	}
	if (xw)
		cx_cache_forget(xw, r->call->tenant_id, r->name);
	mf_info("connectors", r->out ? "connector saved" : "connector deleted",
		MF_S("request_id", gw_req_id(r->call->req)), MF_S("tenant_id", r->call->tenant_id),
		MF_S("connector", r->name));
	if (r->out) {
		json_t *out = r->out;

		r->out = NULL;
		gw_respond_json(r->call->req, r->status, out);
	} else {
		gw_respond_raw(r->call->req, 204, NULL, NULL, 0);
	}
}

static void audited(const PGresult *res, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;

	if (err) {
		tx_fail(r, err);
		return;
	}
	if (mf_pg_tx_end(r->conn, true, committed, r) < 0)
		respond_503(r);
}

static void audit(api_req_t *r, const char *action, json_t *detail)
{
	char *d = json_dumps(detail, JSON_COMPACT);
	const char *p[5] = { r->call->tenant_id, r->call->actor, action, r->name, d ? d : "{}" };

	json_decref(detail);
	if (mf_pg_conn_query(r->conn, TN_AUDIT_SQL, 5, p, audited, r) < 0)
		respond_503(r);
	free(d);
}

static void upserted(const PGresult *res, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;
	bool created;

	if (err) {
		tx_fail(r, err);
		return;
	}
	created = atoi(PQgetvalue(res, 0, 14)) == 1;
	r->status = created ? 201 : 200;
	r->out = cx_conn_row_json(res, 0);
	audit(r, created ? "connector.create" : "connector.update",
	      json_pack("{s:s,s:o,s:i}", "base_url", PQgetvalue(res, 0, 1), "credential",
			PQgetisnull(res, 0, 2) ? json_null() : json_string(PQgetvalue(res, 0, 2)),
			"version", atoi(PQgetvalue(res, 0, 10))));
}

static void deleted(const PGresult *res, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;

	if (err) {
		tx_fail(r, err);
		return;
	}
	if (PQntuples(res) == 0) {
		mf_err_t e;

		mf_err_set(&e, 404, "not_found", "no such connector");
		tx_fail(r, &e);
		return;
	}
	audit(r, "connector.delete", json_object());
}

static void path_set(const PGresult *res, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;
	int rc;

	if (err) {
		tx_fail(r, err);
		return;
	}
	if (r->params[0]) {
		rc = mf_pg_conn_query(r->conn, upsert_sql, 12, (const char *const *)r->params, upserted, r);
	} else {
		const char *p[1] = { r->name };

		rc = mf_pg_conn_query(r->conn, delete_sql, 1, p, deleted, r);
	}
	if (rc < 0)
		respond_503(r);
}

static void began(mf_pg_conn_t *conn, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;
	const char *p[1] = { r->call->schema };

	if (conn == NULL) {
		gw_respond_problem(r->call->req, err);
		return;
	}
	r->conn = conn;
	/* transaction-local: the connection goes back to the pool clean */
	if (mf_pg_conn_query(conn, "SELECT set_config('search_path', $1, true)", 1, p, path_set, r) < 0)
		respond_503(r);
}

static void begin(api_req_t *r)
{
	mf_worker_t *w = gw_req_worker_data(r->call->req);

	if (mf_pg_tx_begin(w->pg, began, r) < 0)
		respond_503(r);
}

static char *dump_or_null(const json_t *j)
{
	return j && !json_is_null(j) ? json_dumps(j, JSON_COMPACT) : NULL;
}

static void put_connector(tn_call_t *call, void *arg)
{
	cx_t *cx = arg;
	api_req_t *r = api_req_new(call, cx);
	json_t *body, *errors = NULL;
	cx_conn_t c;
	mf_err_t err;
	char num[3][16];

	if (r == NULL)
		return;
	if (!cx_name_ok(r->name)) {
		gw_respond_problem_ext(call->req,
			(mf_err_set(&err, 400, "validation_failed", "the connector name is not valid"), &err),
			json_pack("{s:[{s:s,s:s}]}", "errors", "path", "/name", "message",
				  "1 to 63 of a-z 0-9 _ . -, starting with a letter or digit"));
		return;
	}
	if ((body = gw_req_json(call->req, &err)) == NULL) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (cx_conn_from_json(body, r->name, cx->egress, cx->cfg->connector_max_response_bytes, &c, &err,
			      &errors) < 0) {
		json_decref(body);
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	snprintf(num[0], sizeof(num[0]), "%d", c.timeout_ms);
	snprintf(num[1], sizeof(num[1]), "%d", c.max_response_bytes);
	snprintf(num[2], sizeof(num[2]), "%d", c.follow_redirects);
	r->params[0] = strdup(r->name);
	r->params[1] = strdup(c.base_url);
	r->params[2] = c.credential[0] ? strdup(c.credential) : NULL;
	r->params[3] = dump_or_null(json_object_get(body, "headers"));
	if (r->params[3] == NULL)
		r->params[3] = strdup("{}");
	r->params[4] = strdup(num[0]);
	r->params[5] = dump_or_null(json_object_get(body, "rate_limit"));
	r->params[6] = dump_or_null(json_object_get(body, "retry"));
	r->params[7] = dump_or_null(json_object_get(body, "redact_fields"));
	r->params[8] = strdup(num[1]);
	r->params[9] = strdup(num[2]);
	r->params[10] = strdup(call->actor);
	r->params[11] = strdup(cx_kinds[c.kind]);
	cx_conn_free(&c);
	json_decref(body);
	if (!r->params[0] || !r->params[1] || !r->params[3] || !r->params[4] || !r->params[8] || !r->params[9] ||
	    !r->params[10] || !r->params[11]) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	begin(r);
}

static void delete_connector(tn_call_t *call, void *arg)
{
	api_req_t *r = api_req_new(call, arg);

	if (r == NULL)
		return;
	if (!cx_name_ok(r->name)) {
		gw_respond_error(call->req, 404, "not_found", "no such connector");
		return;
	}
	begin(r);
}

/* ---- reads ---- */

static const char rows_sql[] = "SELECT * FROM platform.connector_rows($1, $2, $3, $4::int)";

static void got_one(const PGresult *res, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;

	if (err)
		gw_respond_problem(r->call->req, err);
	else if (PQntuples(res) != 1)
		gw_respond_error(r->call->req, 404, "not_found", "no such connector");
	else
		gw_respond_json(r->call->req, 200, cx_conn_row_json(res, 0));
}

static void get_connector(tn_call_t *call, void *arg)
{
	api_req_t *r = api_req_new(call, arg);
	mf_worker_t *w = gw_req_worker_data(call->req);
	const char *p[4] = { call->schema, r ? r->name : "", "", "1" };

	if (r == NULL)
		return;
	if (!cx_name_ok(r->name)) {
		gw_respond_error(call->req, 404, "not_found", "no such connector");
		return;
	}
	if (mf_pg_query(w->pg, rows_sql, 4, p, got_one, r) < 0)
		gw_respond_error(call->req, 503, "database_unavailable", "the database is not reachable");
}

static void got_page(const PGresult *res, const mf_err_t *err, void *arg)
{
	api_req_t *r = arg;
	int n, limit = r->status;
	json_t *items;

	if (err) {
		gw_respond_problem(r->call->req, err);
		return;
	}
	n = PQntuples(res);
	items = json_array();
	for (int i = 0; i < n && i < limit; i++)
		json_array_append_new(items, cx_conn_row_json(res, i));
	gw_respond_json(r->call->req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor",
		tn_page_cursor(n > limit ? PQgetvalue(res, limit - 1, 0) : NULL)));
}

static void list_connectors(tn_call_t *call, void *arg)
{
	api_req_t *r = api_req_new(call, arg);
	mf_worker_t *w = gw_req_worker_data(call->req);
	char cursor[64], lim[16];
	const char *p[4];
	mf_err_t err;
	int limit;

	if (r == NULL)
		return;
	if (tn_req_page(call->req, &limit, cursor, &err) < 0) {
		gw_respond_problem(call->req, &err);
		return;
	}
	r->status = limit;
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	p[0] = call->schema;
	p[1] = NULL;
	p[2] = cursor;
	p[3] = lim;
	if (mf_pg_query(w->pg, rows_sql, 4, p, got_page, r) < 0)
		gw_respond_error(call->req, 503, "database_unavailable", "the database is not reachable");
}

/* ---- POST .../calls: try a request ---- */

static void call_done(const cx_result_t *res, void *arg)
{
	api_req_t *r = arg;
	gw_req_t *req = r->call->req;
	json_t *out = cx_result_summary(res);

	r->op = NULL;
	if (out == NULL) {
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (res->retry_after_ms > 0 && (res->error || res->status == 429 || res->status == 503)) {
		char v[24];

		snprintf(v, sizeof(v), "%lld", (res->retry_after_ms + 999) / 1000);
		gw_res_header(req, "Retry-After", v);
	}
	if (res->error) {
		mf_err_t e;

		mf_err_set(&e, res->http_status, res->error, "%s", res->detail);
		json_object_del(out, "error");
		gw_respond_problem_ext(req, &e, json_pack("{s:o}", "call", out));
		return;
	}
	json_object_set_new(out, "status", json_integer(res->status));
	gw_respond_json(req, 200, out);
}

static int call_headers(const json_t *h, cx_http_header_t *out, int max, mf_err_t *err)
{
	const char *k;
	json_t *v;
	int n = 0;

	if (h == NULL || json_is_null(h))
		return 0;
	if (!json_is_object(h) || (int)json_object_size(h) > max)
		return mf_err_set(err, 400, "validation_failed", "headers must be an object of at most 32 strings");
	json_object_foreach((json_t *)h, k, v) {
		if (!json_is_string(v))
			return mf_err_set(err, 400, "validation_failed", "header values must be strings");
		out[n].name = k;
		out[n].value = json_string_value(v);
		n++;
	}
	return n;
}

static bool method_ok(const char *m)
{
	static const char *const ok[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(m, ok[i]) == 0)
			return true;
	return false;
}

static void try_call(tn_call_t *call, void *arg)
{
	static const char *const keys[] = { "method", "path", "headers", "body", NULL };
	api_req_t *r = api_req_new(call, arg);
	cx_worker_t *xw = worker_of(call->req);
	cx_http_header_t h[32];
	cx_call_opts_t o = { 0 };
	json_t *body, *errors = NULL;
	const char *method, *path;
	const mf_trace_t *tr;
	char tp[MF_TRACE_HEADER_SIZE];
	char *payload = NULL;
	mf_err_t err;
	int nh;

	if (r == NULL)
		return;
	if (xw == NULL) {
		gw_respond_error(call->req, 503, "not_ready", "connectors are not available on this server");
		return;
	}
	if ((body = gw_req_json(call->req, &err)) == NULL) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (tn_only_keys(body, keys, &err, &errors) < 0) {
		json_decref(body);
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	method = json_string_value(json_object_get(body, "method"));
	path = json_string_value(json_object_get(body, "path"));
	if (method == NULL)
		method = "GET";
	if (path == NULL)
		path = "";
	if (!method_ok(method) || !cx_call_path_ok(path) ||
	    (nh = call_headers(json_object_get(body, "headers"), h, 32, &err)) < 0) {
		if (!method_ok(method))
			mf_err_set(&err, 400, "validation_failed", "method must be GET, POST, PUT, PATCH, DELETE or HEAD");
		else if (!cx_call_path_ok(path))
			mf_err_set(&err, 400, "validation_failed",
				   "path must be empty or start with / or ?, printable ASCII without # or spaces");
		json_decref(body);
		gw_respond_problem(call->req, &err);
		return;
	}
	if (json_object_get(body, "body") && !json_is_null(json_object_get(body, "body")))
		payload = json_dumps(json_object_get(body, "body"), JSON_COMPACT | JSON_ENCODE_ANY);
	tr = gw_req_trace(call->req);
	if (tr == NULL || mf_trace_format(tr, tp, sizeof(tp)) < 0)
		tp[0] = '\0';
	o.tenant_id = call->tenant_id;
	o.schema = call->schema;
	o.connector = r->name;
	o.method = method;
	o.path = path;
	o.headers = h;
	o.nheaders = nh;
	o.body = payload;
	o.body_len = payload ? strlen(payload) : 0;
	o.idempotency_key = gw_req_header(call->req, "Idempotency-Key");
	o.traceparent = tp[0] ? tp : NULL;
	r->op = cx_call(xw, &o, call_done, r, &err);
	free(payload);
	json_decref(body);
	if (r->op == NULL)
		gw_respond_problem(call->req, &err);
}

int cx_routes_add(cx_t *cx, struct tn *tn, gw_router_t *api)
{
	const unsigned J = GW_ROUTE_JSON_BODY;

	if (tn_guard_add(api, tn, "PUT", "/v1/tenants/{tenant_id}/connectors/{name}", POL_CONNECTORS, J,
			 put_connector, cx) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/connectors", POL_CONNECTORS, 0,
			 list_connectors, cx) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/connectors/{name}", POL_CONNECTORS, 0,
			 get_connector, cx) < 0 ||
	    tn_guard_add(api, tn, "DELETE", "/v1/tenants/{tenant_id}/connectors/{name}", POL_CONNECTORS, 0,
			 delete_connector, cx) < 0 ||
	    tn_guard_add(api, tn, "POST", "/v1/tenants/{tenant_id}/connectors/{name}/calls", POL_CONNECTORS, J,
			 try_call, cx) < 0)
		return -1;
	return 0;
}
