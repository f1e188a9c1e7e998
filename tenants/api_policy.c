/*
 * api_policy.c - GET/PUT /v1/tenants/{tenant_id}/policy.
 *
 * The document is validated by policies/policy.c (every problem reported
 * with its JSON Pointer), stored on the tenant's row with a version number,
 * and audited with its previous value in the same transaction.  GET shows
 * the tenant's own document and the effective one: the parent's effective
 * policy applied under it, with the parent's limits capping the child's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "tenants/tn.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static const char read_sql[] =
	"SELECT t.policy::text, t.policy_version, coalesce(" TS("t.policy_updated_at") ", ''), "
	"p.policy::text, g.policy::text, (p.id IS NOT NULL)::int + (g.id IS NOT NULL)::int "
	"FROM platform.tenants t LEFT JOIN platform.tenants p ON p.id = t.parent_id "
	"LEFT JOIN platform.tenants g ON g.id = p.parent_id WHERE t.id = $1::uuid AND t.deleted_at IS NULL";

static json_t *doc(const PGresult *r, int col)
{
	json_t *j = PQgetisnull(r, 0, col) ? NULL : json_loads(PQgetvalue(r, 0, col), 0, NULL);

	return j;
}

static json_t *policy_json(tn_ctx_t *ctx, const PGresult *r)
{
	json_t *own = doc(r, 0);
	int depth = atoi(PQgetvalue(r, 0, 5));
	const char *docs[3];
	json_t *eff;
	const char *upd = PQgetvalue(r, 0, 2);

	/* root first: grandparent (col 4), parent (col 3), own (col 0) */
	for (int i = 0; i <= depth; i++) {
		int col = i == depth ? 0 : (depth - i == 2 ? 4 : 3);

		docs[i] = PQgetisnull(r, 0, col) ? NULL : PQgetvalue(r, 0, col);
	}
	eff = tn_policy_chain(docs, depth + 1);
	json_t *out = json_pack("{s:s,s:i,s:o,s:o,s:o}", "tenant_id", ctx->target.id,
		"version", atoi(PQgetvalue(r, 0, 1)), "updated_at", upd[0] ? json_string(upd) : json_null(),
		"document", own ? own : json_object(), "effective", eff ? eff : json_object());

	return out;
}

static void got_policy(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	gw_respond_json(ctx->req, 200, policy_json(ctx, res));
}

static void get_policy(tn_ctx_t *ctx)
{
	const char *p[1] = { ctx->target.id };

	tn_q(ctx, read_sql, 1, p, got_policy);
}

static void put_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *out = ctx->out;

	ctx->out = NULL;
	/* this worker sees the new plan at once; others within auth_cache_ttl_ms */
	tn_dir_forget(ctx->tw->dir, ctx->target.id);
	mf_info("tenants", "policy changed", MF_S("request_id", gw_req_id(ctx->req)), MF_S("tenant_id", ctx->target.id));
	gw_respond_json(ctx->req, 200, out);
}

static void put_reread(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *before;

	if (tn_failed(ctx, err))
		return;
	ctx->out = policy_json(ctx, res);
	before = ctx->data;
	ctx->data = NULL;
	tn_audit_commit(ctx, ctx->target.id, "policy.update", ctx->target.id,
			json_pack("{s:o,s:O,s:O}", "before", before ? before : json_null(), "after",
				  json_object_get(ctx->out, "document"), "version", json_object_get(ctx->out, "version")),
			put_done);
}

static void put_updated(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[1] = { ctx->target.id };

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	ctx->data = PQgetisnull(res, 0, 0) ? NULL : json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	tn_q(ctx, read_sql, 1, p, put_reread);
}

static void put_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[2] = { ctx->target.id, ctx->text };

	/* the old document comes back for the audit row: FOR UPDATE in a
	 * subquery keeps two writers from both reading the same "before" */
	tn_q(ctx, "UPDATE platform.tenants t SET policy = $2::jsonb, policy_version = t.policy_version + 1, "
		  "policy_updated_at = now() FROM (SELECT id, policy FROM platform.tenants WHERE id = $1::uuid "
		  "AND deleted_at IS NULL FOR UPDATE) old WHERE t.id = old.id RETURNING old.policy::text",
	     2, p, put_updated);
}

static void policy_data_free(void *p)
{
	json_decref(p);
}

static void put_policy(tn_ctx_t *ctx)
{
	mf_err_t err;
	json_t *errors = NULL;

	if (tn_body(ctx, NULL) == NULL)
		return;
	if (pol_policy_validate(ctx->body, &errors, &err) < 0) {
		gw_respond_problem_ext(ctx->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	ctx->text = json_dumps(ctx->body, JSON_COMPACT | JSON_SORT_KEYS);
	if (ctx->text == NULL) {
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	ctx->data_free = policy_data_free;
	tn_begin(ctx, put_begun);
}

int tn_policy_routes(tn_t *tn, gw_router_t *api)
{
	if (tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/policy", POL_POLICY, 0, get_policy) < 0 ||
	    tn_route(api, tn, "PUT", "/v1/tenants/{tenant_id}/policy", POL_POLICY, GW_ROUTE_JSON_BODY, put_policy) < 0)
		return -1;
	return 0;
}
