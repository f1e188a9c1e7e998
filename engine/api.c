/*
 * api.c - the engine's public routes (CONTRACT 6) behind the access guard,
 * and the transaction chain they share (api.h).  The routes themselves are
 * in api_workflows.c (definitions, starting runs), api_runs.c (runs and
 * tasks) and api_events.c (events).
 *
 * Permissions: definitions are written with POL_WORKFLOWS; starting,
 * cancelling and retrying runs and posting events need POL_RUNS; reads
 * need POL_READ; a task decision needs POL_READ and the task's assignee
 * role in the token (no admin bypasses that).  Reads are not behind
 * POL_RUNS because approvers often hold nothing but a tenant-defined role
 * (e.g. finance_approver), and they must find and read their tasks.  Only
 * msps and clients run workflows: on any other tenant every route answers
 * 404, as the guard does for POL_WORKFLOWS / POL_RUNS there.
 *
 * The search_path is the tenant's schema then platform: the engine's
 * platform functions (platform/0006_engine.sql) name the platform's
 * tables without a schema.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/urlenc.h"
#include "core/worker.h"
#include "engine/api.h"
#include "tenants/tn.h"

static void req_free(void *p)
{
	eng_req_t *r = p;

	for (size_t i = 0; i < sizeof(r->text) / sizeof(r->text[0]); i++)
		free(r->text[i]);
	json_decref(r->body);
	json_decref(r->out);
	free(r);
}

eng_req_t *eng_req_new(tn_call_t *call, eng_t *e)
{
	eng_req_t *r;

	if (call->kind != POL_MSP && call->kind != POL_CLIENT) {
		/* like the permissions that only exist for msps and clients */
		gw_respond_error(call->req, 404, "not_found", "no such tenant");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return NULL;
	}
	r->call = call;
	r->e = e;
	call->data = r;
	call->data_free = req_free;
	return r;
}

int eng_req_text(eng_req_t *r, int i, const char *s)
{
	free(r->text[i]);
	r->text[i] = NULL;
	if (s && (r->text[i] = strdup(s)) == NULL)
		return -1;
	return 0;
}

bool eng_workflow_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' ||
		      s[i] == '-'))
			return false;
	return true;
}

/* ---- the transaction chain ---- */

void eng_fail_ext(eng_req_t *r, const mf_err_t *err, json_t *ext)
{
	if (r->conn) {
		mf_pg_conn_t *c = r->conn;

		r->conn = NULL;
		if (mf_pg_tx_end(c, false, NULL, NULL) < 0) {
			/* the connection goes back to the pool either way */
		}
	}
	gw_respond_problem_ext(r->call->req, err, ext);
}

bool eng_req_body(eng_req_t *r, const char *const *keys)
{
	json_t *errors = NULL;
	mf_err_t err;

	if ((r->body = gw_req_json(r->call->req, &err)) == NULL) {
		gw_respond_problem(r->call->req, &err);
		return false;
	}
	if (tn_only_keys(r->body, keys, &err, &errors) < 0) {
		gw_respond_problem_ext(r->call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return false;
	}
	return true;
}

bool eng_page(eng_req_t *r, bool uuid_cursor, char cursor[64], int lim_slot)
{
	char lim[16];
	mf_err_t err;

	if (tn_req_page(r->call->req, &r->limit, cursor, &err) < 0) {
		gw_respond_problem(r->call->req, &err);
		return false;
	}
	if (uuid_cursor && cursor[0] && !tn_uuid_ok(cursor)) {
		gw_respond_error(r->call->req, 400, "validation_failed", "cursor is not one this server issued");
		return false;
	}
	snprintf(lim, sizeof(lim), "%d", r->limit + 1);
	if (eng_req_text(r, lim_slot, lim) < 0) {
		gw_respond_error(r->call->req, 503, "over_capacity", "out of memory; retry");
		return false;
	}
	return true;
}

void eng_fail(eng_req_t *r, const mf_err_t *err)
{
	eng_fail_ext(r, err, NULL);
}

void eng_fail_code(eng_req_t *r, int status, const char *code, const char *detail)
{
	mf_err_t e;

	mf_err_set(&e, status, code, "%s", detail);
	eng_fail(r, &e);
}

static void fail_503(eng_req_t *r)
{
	mf_err_t e;

	mf_err_set(&e, 503, "database_unavailable", "the database is not reachable");
	e.retry_after = 1;
	eng_fail(r, &e);
}

void eng_finish(eng_req_t *r, int status, json_t *body)
{
	if (r->conn) {
		mf_pg_conn_t *c = r->conn;

		r->conn = NULL;
		if (mf_pg_tx_end(c, false, NULL, NULL) < 0) {
			/* as in eng_fail */
		}
	}
	if (body == NULL) {
		gw_respond_error(r->call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	gw_respond_json(r->call->req, status, body);
}

static void step_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_req_t *r = arg;

	if (err) {
		eng_fail(r, err);
		return;
	}
	r->next(r, res);
}

void eng_q(eng_req_t *r, const char *sql, int n, const char *const *params, eng_step_fn next)
{
	r->next = next;
	if (mf_pg_conn_query(r->conn, sql, n, params, step_done, r) < 0)
		fail_503(r);
}

static void path_set(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_req_t *r = arg;

	if (err) {
		eng_fail(r, err);
		return;
	}
	r->next(r, NULL);
}

static void began(mf_pg_conn_t *conn, const mf_err_t *err, void *arg)
{
	eng_req_t *r = arg;
	const char *p[1] = { r->call->schema };

	if (conn == NULL) {
		gw_respond_problem(r->call->req, err);
		return;
	}
	r->conn = conn;
	/* transaction-local: the connection goes back to the pool clean.  The
	 * schema is a generated name (t_[a-z0-9_]+); quote_ident all the same */
	if (mf_pg_conn_query(conn, "SELECT set_config('search_path', quote_ident($1) || ', platform', true)", 1, p,
			     path_set, r) < 0)
		fail_503(r);
}

void eng_tx(eng_req_t *r, eng_step_fn first)
{
	mf_worker_t *w = gw_req_worker_data(r->call->req);

	r->next = first;
	if (w == NULL || mf_pg_tx_begin(w->pg, began, r) < 0)
		gw_respond_error(r->call->req, 503, "database_unavailable", "the database is not reachable");
}

static void committed(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_req_t *r = arg;
	json_t *out = r->out;

	r->conn = NULL;
	if (err) {
		gw_respond_problem(r->call->req, err);
		return;
	}
	r->out = NULL;
	gw_respond_json(r->call->req, r->status, out);
}

void eng_commit(eng_req_t *r)
{
	if (r->out == NULL) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (mf_pg_tx_end(r->conn, true, committed, r) < 0)
		fail_503(r);
}

static void audited(eng_req_t *r, const PGresult *res)
{
	(void)res;
	eng_commit(r);
}

void eng_audit_commit(eng_req_t *r, const char *action, const char *target, json_t *detail)
{
	char *d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
	const char *p[5] = { r->call->tenant_id, r->call->actor, action, target, d };

	json_decref(detail);
	if (d == NULL) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	eng_q(r, TN_AUDIT_SQL, 5, p, audited);
	free(d);
}

/* ---- reads ---- */

static void admitted(eng_req_t *r, const PGresult *res)
{
	eng_step_fn next = r->admit_next;

	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		gw_res_header(r->call->req, "Retry-After", "60");
		eng_fail_code(r, 429, "too_many_runs",
			      "the tenant has as many unfinished runs as its policy's engine.max_queued_runs allows; "
			      "retry when some have finished");
		return;
	}
	next(r, NULL);
}

void eng_admit(eng_req_t *r, int n, const char *key, eng_step_fn next)
{
	char nbuf[16];
	const char *p[4] = { r->call->tenant_id, r->call->schema, nbuf, key };

	snprintf(nbuf, sizeof(nbuf), "%d", n);
	r->admit_next = next;
	eng_q(r, "SELECT platform.eng_admit($1::uuid, $2, $3::int, $4)", 4, p, admitted);
}

json_t *eng_json_col(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return json_null();
	return json_loads(PQgetvalue(res, row, col), JSON_DECODE_ANY, NULL);
}

static void got_one(eng_req_t *r, const PGresult *res)
{
	if (PQntuples(res) != 1) {
		eng_fail_code(r, 404, "not_found", r->missing);
		return;
	}
	eng_finish(r, 200, eng_json_col(res, 0, 0));
}

static void read_one(eng_req_t *r, const PGresult *res)
{
	(void)res;
	eng_q(r, r->sql, r->nparams, (const char *const *)r->text, got_one);
}

void eng_read_one(eng_req_t *r)
{
	eng_tx(r, read_one);
}

static void got_page(eng_req_t *r, const PGresult *res)
{
	int n = PQntuples(res);
	json_t *items = json_array(), *page;

	for (int i = 0; items && i < n && i < r->limit; i++) {
		json_t *item = eng_json_col(res, i, 1);

		if (item == NULL || json_array_append_new(items, item) < 0) {
			json_decref(items);
			items = NULL;
		}
	}
	page = items ? json_pack("{s:o,s:o}", "items", items, "next_cursor",
				 tn_page_cursor(n > r->limit ? PQgetvalue(res, r->limit - 1, 0) : NULL)) : NULL;
	eng_finish(r, 200, page);
}

static void read_page(eng_req_t *r, const PGresult *res)
{
	(void)res;
	eng_q(r, r->sql, r->nparams, (const char *const *)r->text, got_page);
}

void eng_read_page(eng_req_t *r)
{
	eng_tx(r, read_page);
}

int eng_query_param(eng_req_t *r, const char *name, char *out, size_t outlen)
{
	const char *q = gw_req_query(r->call->req);

	out[0] = '\0';
	return mf_form_get(q, q ? strlen(q) : 0, name, out, outlen);
}

void eng_invalid(eng_req_t *r, const char *path, const char *msg)
{
	mf_err_t err;

	mf_err_set(&err, 400, "validation_failed", "%s: %s", path, msg);
	gw_respond_problem_ext(r->call->req, &err,
			       json_pack("{s:[{s:s,s:s}]}", "errors", "path", path, "message", msg));
}

void eng_too_large(eng_req_t *r, const char *path)
{
	mf_err_t err;

	mf_err_set(&err, 413, "payload_too_large", "%s is larger than %d bytes as JSON", path, ENG_API_MAX_DATA);
	gw_respond_problem(r->call->req, &err);
}

/* ---- the route table ---- */

int eng_api_routes(eng_t *e, struct tn *tn, gw_router_t *api)
{
	const unsigned J = GW_ROUTE_JSON_BODY;
	static const struct {
		const char *method, *path;
		enum pol_perm perm;
		unsigned flags;
		tn_call_fn fn;
	} routes[] = {
		{ "PUT", "/workflows/{name}", POL_WORKFLOWS, 1, eng_put_workflow },
		{ "GET", "/workflows", POL_READ, 0, eng_list_workflows },
		{ "GET", "/workflows/{name}", POL_READ, 0, eng_get_workflow },
		{ "GET", "/workflows/{name}/versions/{version}", POL_READ, 0, eng_get_workflow_version },
		{ "POST", "/workflows/{name}/runs", POL_RUNS, 1, eng_start_run },
		{ "GET", "/runs", POL_READ, 0, eng_list_runs },
		{ "GET", "/runs/{run_id}", POL_READ, 0, eng_get_run },
		{ "POST", "/runs/{run_id}/cancel", POL_RUNS, 0, eng_cancel_run },
		{ "POST", "/runs/{run_id}/retry", POL_RUNS, 0, eng_retry_run },
		{ "GET", "/tasks", POL_READ, 0, eng_list_tasks },
		{ "GET", "/tasks/{task_id}", POL_READ, 0, eng_get_task },
		/* POL_READ: the assignee role is checked against the task */
		{ "POST", "/tasks/{task_id}/decision", POL_READ, 1, eng_decide_task },
		{ "POST", "/events", POL_RUNS, 1, eng_post_event },
		/* installing a template writes a definition: POL_WORKFLOWS */
		{ "POST", "/installations", POL_WORKFLOWS, 1, eng_install },
		{ "GET", "/installations", POL_READ, 0, eng_list_installs },
		{ "GET", "/installations/{installation_id}", POL_READ, 0, eng_get_install },
		/* insights: the tenant's admins and operators (docs/insights.md) */
		{ "GET", "/insights", POL_WORKFLOWS, 0, eng_get_insights },
	};

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		char pattern[128];

		snprintf(pattern, sizeof(pattern), "/v1/tenants/{tenant_id}%s", routes[i].path);
		if (tn_guard_add(api, tn, routes[i].method, pattern, routes[i].perm, routes[i].flags ? J : 0,
				 routes[i].fn, e) < 0)
			return -1;
	}
	return 0;
}
