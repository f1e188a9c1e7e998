/*
 * module.c - the tenants module's life cycle (process and worker state),
 * its route table, and the small helpers its handlers share.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "core/json.h"
#include "core/log.h"
#include "core/masterkey.h"
#include "core/offload.h"
#include "core/urlenc.h"
#include "tenants/tn.h"

static json_t *load_issuers(const char *path, mf_err_t *err)
{
	json_error_t je;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);

	if (doc == NULL)
		mf_err_set(err, 400, "invalid_config", "jwt_issuers_file %s: %s (line %d)", path, je.text, je.line);
	return doc;
}

tn_t *tn_new(const mf_config_t *cfg, struct mf_master *master, mf_err_t *err)
{
	tn_t *tn = calloc(1, sizeof(*tn));
	mf_master_ring_t *ring;
	char pw[32];

	if (tn == NULL || sodium_init() < 0) {
		free(tn);
		mf_err_set(err, 500, "internal_error", "cannot initialise");
		return NULL;
	}
	tn->cfg = cfg;
	tn->master = master;
	ring = mf_master_get(master);
	tn->have_master = mf_master_ring_count(ring) > 0;
	mf_master_ring_unref(ring);
	if (cfg->jwt_issuers_file[0]) {
		tn->issuers = load_issuers(cfg->jwt_issuers_file, err);
		if (tn->issuers == NULL)
			goto fail;
		/* check it once here so a bad file stops the start, not each worker */
		gw_keyring_t *probe = gw_keyring_new(cfg->jwt_issuer, cfg->jwt_audience, cfg->jwt_leeway_s);

		if (probe == NULL || gw_keyring_add_issuers_json(probe, tn->issuers, err) < 0) {
			gw_keyring_free(probe);
			goto fail;
		}
		gw_keyring_free(probe);
	}
	tn->gcra = gw_gcra_new(100000);
	tn->offload = mf_offload_new(2);
	/* a real Argon2id hash to verify against when an email is unknown */
	randombytes_buf(pw, sizeof(pw));
	tn->dummy_hash = malloc(crypto_pwhash_STRBYTES);
	if (tn->gcra == NULL || tn->offload == NULL || tn->dummy_hash == NULL ||
	    crypto_pwhash_str(tn->dummy_hash, pw, sizeof(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
			      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto fail;
	}
	return tn;
fail:
	tn_free(tn);
	return NULL;
}

void tn_free(tn_t *tn)
{
	if (tn == NULL)
		return;
	mf_offload_free(tn->offload);
	gw_gcra_free(tn->gcra);
	json_decref(tn->issuers);
	free(tn->dummy_hash);
	PQclear(tn->seed);
	tn_routes_free(tn);
	free(tn);
}

tn_worker_t *tn_worker_new(tn_t *tn, mf_worker_t *w)
{
	tn_worker_t *tw = calloc(1, sizeof(*tw));

	if (tw == NULL)
		return NULL;
	tw->tn = tn;
	tw->w = w;
	tw->tokens = gw_tokcache_new((size_t)tn->cfg->token_cache_size, tn->cfg->jwt_leeway_s);
	tw->dir = tn_dir_new(tw, tn->cfg->auth_cache_ttl_ms, 65536);
	if ((tn->cfg->token_cache_size > 0 && tw->tokens == NULL) || tw->dir == NULL ||
	    tn_keys_worker_start(tw) < 0) {
		tn_worker_free(tw);
		return NULL;
	}
	return tw;
}

void tn_worker_free(tn_worker_t *tw)
{
	if (tw == NULL)
		return;
	/* no Argon2 job may post its answer to this loop once it is gone */
	mf_offload_wait_idle(tw->tn->offload);
	if (tw->key_timer)
		event_free(tw->key_timer);
	gw_keyring_free(tw->ring);
	gw_tokcache_free(tw->tokens);
	tn_dir_free(tw->dir);
	free(tw);
}

/* ---- public, unauthenticated routes ---- */

static void handle_jwks(gw_req_t *req, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	json_t *jwks = w && w->tn && w->tn->ring ? gw_keyring_jwks(w->tn->ring) : json_pack("{s:[]}", "keys");

	if (jwks == NULL) {
		gw_respond_error(req, 500, "internal_error", "cannot encode the key set");
		return;
	}
	gw_res_header(req, "Cache-Control", "public, max-age=60");
	gw_respond_json(req, 200, jwks);
}

int tn_routes_add(tn_t *tn, gw_router_t *api)
{
	if (gw_router_add(api, "GET", "/.well-known/jwks.json", handle_jwks, tn, 0) < 0)
		return -1;
	if (tn_tenants_routes(tn, api) < 0 || tn_clients_routes(tn, api) < 0 || tn_users_routes(tn, api) < 0 ||
	    tn_policy_routes(tn, api) < 0 || tn_branding_routes(tn, api) < 0 || tn_audit_routes(tn, api) < 0)
		return -1;
	return 0;
}

/* ---- helpers for handlers ---- */

void tn_fail(tn_ctx_t *ctx, const mf_err_t *err)
{
	gw_respond_problem(ctx->req, err);
}

static void abort_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	gw_respond_problem(ctx->req, &ctx->err);
}

void tn_abort(tn_ctx_t *ctx, const mf_err_t *err)
{
	if (err != &ctx->err)
		ctx->err = *err;
	if (ctx->conn) {
		mf_pg_conn_t *c = ctx->conn;

		ctx->conn = NULL;
		if (mf_pg_tx_end(c, false, abort_done, ctx) == 0)
			return;
	}
	gw_respond_problem(ctx->req, &ctx->err);
}

void tn_q(tn_ctx_t *ctx, const char *sql, int n, const char *const *p, mf_pg_cb cb)
{
	int rc = ctx->conn ? mf_pg_conn_query(ctx->conn, sql, n, p, cb, ctx)
			   : mf_pg_query(ctx->tw->w->pg, sql, n, p, cb, ctx);

	if (rc < 0) {
		mf_err_t err;

		mf_err_set(&err, 503, "over_capacity", "out of memory; retry");
		err.retry_after = 1;
		tn_abort(ctx, &err);
	}
}

bool tn_failed(tn_ctx_t *ctx, const mf_err_t *err)
{
	if (err == NULL)
		return false;
	tn_abort(ctx, err);
	return true;
}

bool tn_found(tn_ctx_t *ctx, const PGresult *res, const char *noun)
{
	if (PQntuples(res) > 0)
		return true;
	mf_err_set(&ctx->err, 404, "not_found", "no such %s", noun);
	tn_abort(ctx, &ctx->err);
	return false;
}

static void begun(mf_pg_conn_t *conn, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (err) {
		gw_respond_problem(ctx->req, err);
		return;
	}
	ctx->conn = conn;
	ctx->next(NULL, NULL, ctx);
}

void tn_begin(tn_ctx_t *ctx, mf_pg_cb first)
{
	ctx->next = first;
	if (mf_pg_tx_begin(ctx->tw->w->pg, begun, ctx) < 0) {
		mf_err_t err;

		mf_err_set(&err, 503, "over_capacity", "out of memory; retry");
		err.retry_after = 1;
		gw_respond_problem(ctx->req, &err);
	}
}

static void committed(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (err) {
		gw_respond_problem(ctx->req, err);
		return;
	}
	ctx->next(NULL, NULL, ctx);
}

void tn_commit(tn_ctx_t *ctx, mf_pg_cb then)
{
	mf_pg_conn_t *c = ctx->conn;

	ctx->conn = NULL;
	ctx->next = then;
	if (mf_pg_tx_end(c, true, committed, ctx) < 0) {
		mf_err_t err;

		mf_err_set(&err, 503, "over_capacity", "out of memory; retry");
		gw_respond_problem(ctx->req, &err);
	}
}

static void audited(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	tn_commit(ctx, ctx->after_audit);
}

void tn_audit_commit(tn_ctx_t *ctx, const char *tenant_id, const char *action, const char *target,
		     json_t *detail, mf_pg_cb done)
{
	char *d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
	const char *p[5] = { tenant_id, ctx->actor, action, target ? target : "", d ? d : "{}" };

	json_decref(detail);
	ctx->after_audit = done;
	tn_q(ctx, TN_AUDIT_SQL, 5, p, audited);
	free(d);
}

json_t *tn_body(tn_ctx_t *ctx, const char *const *keys)
{
	mf_err_t err;
	json_t *errors = NULL;

	ctx->body = gw_req_json(ctx->req, &err);
	if (ctx->body == NULL) {
		gw_respond_problem(ctx->req, &err);
		return NULL;
	}
	if (keys && tn_only_keys(ctx->body, keys, &err, &errors) < 0) {
		gw_respond_problem_ext(ctx->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return NULL;
	}
	return ctx->body;
}

void tn_invalid(tn_ctx_t *ctx, const char *path, const char *msg)
{
	mf_err_t err;

	mf_err_set(&err, 400, "validation_failed", "%s: %s", path, msg);
	gw_respond_problem_ext(ctx->req, &err, json_pack("{s:[{s:s,s:s}]}", "errors", "path", path, "message", msg));
}

int tn_page_params(tn_ctx_t *ctx, int *limit, char cursor[64], mf_err_t *err)
{
	if (tn_req_page(ctx->req, limit, cursor, err) < 0)
		return -1;
	if (cursor[0] && !tn_uuid_ok(cursor))
		return mf_err_set(err, 400, "validation_failed", "cursor is not one this server issued");
	return 0;
}

int tn_req_page(gw_req_t *req, int *limit, char cursor[64], mf_err_t *err)
{
	const char *q = gw_req_query(req);
	char v[96];	/* base64url of a 63-byte cursor is 84 */
	int rc;

	*limit = 50;
	cursor[0] = '\0';
	rc = mf_form_get(q, q ? strlen(q) : 0, "limit", v, sizeof(v));
	if (rc < 0)
		return mf_err_set(err, 400, "validation_failed", "limit must be a whole number from 1 to 500");
	if (rc > 0) {
		char *e;
		long l = strtol(v, &e, 10);

		if (*e || e == v || l < 1 || l > 500)
			return mf_err_set(err, 400, "validation_failed", "limit must be a whole number from 1 to 500");
		*limit = (int)l;
	}
	rc = mf_form_get(q, q ? strlen(q) : 0, "cursor", v, sizeof(v));
	if (rc < 0)
		return mf_err_set(err, 400, "validation_failed", "cursor is not one this server issued");
	if (rc > 0) {
		/* the cursor is the last key of the previous page, base64url */
		unsigned char bin[64];
		size_t n = 0;

		if (sodium_base642bin(bin, sizeof(bin) - 1, v, strlen(v), NULL, &n, NULL,
				      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || n == 0 || n > 63)
			return mf_err_set(err, 400, "validation_failed", "cursor is not one this server issued");
		for (size_t i = 0; i < n; i++)
			if (bin[i] < 0x21 || bin[i] > 0x7e)
				return mf_err_set(err, 400, "validation_failed", "cursor is not one this server issued");
		bin[n] = '\0';
		memcpy(cursor, bin, n + 1);
	}
	return 0;
}

json_t *tn_page_cursor(const char *last_id)
{
	char out[64];

	if (last_id == NULL)
		return json_null();
	sodium_bin2base64(out, sizeof(out), (const unsigned char *)last_id, strlen(last_id),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return json_string(out);
}

int tn_only_keys(const json_t *obj, const char *const *allowed, mf_err_t *err, json_t **errors)
{
	const char *k;
	json_t *v;

	if (!json_is_object(obj))
		return mf_err_set(err, 400, "validation_failed", "the body must be a JSON object");
	json_object_foreach((json_t *)obj, k, v) {
		bool ok = false;

		for (const char *const *a = allowed; *a; a++)
			if (strcmp(k, *a) == 0)
				ok = true;
		if (!ok) {
			if (errors) {
				char path[300];

				mf_json_pointer(path, sizeof(path), "", k);
				*errors = json_pack("[{s:s,s:s}]", "path", path, "message", "unknown field");
			}
			return mf_err_set(err, 400, "validation_failed", "unknown field \"%.60s\"", k);
		}
	}
	return 0;
}

json_t *tn_pg_text_array(const char *v)
{
	/* role names are [a-z0-9_]: PostgreSQL prints them unquoted, {a,b} */
	json_t *arr = json_array();
	const char *p = v;

	if (arr == NULL || p == NULL || *p != '{')
		return arr;
	p++;
	while (*p && *p != '}') {
		size_t n = strcspn(p, ",}");
		json_t *s = json_stringn(p, n);

		if (s)
			json_array_append_new(arr, s);
		p += n;
		if (*p == ',')
			p++;
	}
	return arr;
}

char *tn_pg_array_literal(const json_t *arr)
{
	size_t i, len = 3;
	json_t *v;
	char *out, *o;

	json_array_foreach(arr, i, v)
		len += strlen(json_string_value(v)) + 1;
	out = malloc(len);
	if (out == NULL)
		return NULL;
	o = out;
	*o++ = '{';
	json_array_foreach(arr, i, v) {
		/* callers pass role names only (checked [a-z0-9_]) */
		o += sprintf(o, "%s%s", i ? "," : "", json_string_value(v));
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

/* Roles of a new API client or user: an array of grantable role names
 * (non-empty, no duplicates, at most 16).  Default: the tenant's admin. */
int tn_roles_check(enum pol_kind kind, json_t *roles, mf_err_t *err, json_t **errors)
{
	size_t i, j;
	json_t *v;

	if (!json_is_array(roles) || json_array_size(roles) == 0 || json_array_size(roles) > 16) {
		*errors = json_pack("[{s:s,s:s}]", "path", "/roles", "message", "must be an array of 1 to 16 role names");
		return mf_err_set(err, 400, "validation_failed", "roles must be an array of 1 to 16 role names");
	}
	json_array_foreach(roles, i, v) {
		char path[32];

		snprintf(path, sizeof(path), "/roles/%zu", i);
		if (!json_is_string(v) || !pol_role_grantable(kind, json_string_value(v))) {
			*errors = json_pack("[{s:s,s:s}]", "path", path, "message",
					    "not a role a tenant of this kind can grant");
			return mf_err_set(err, 400, "validation_failed", "%s is not a role a %s tenant can grant",
					  path, pol_kind_name(kind));
		}
		for (j = 0; j < i; j++)
			if (json_equal(v, json_array_get(roles, j))) {
				*errors = json_pack("[{s:s,s:s}]", "path", path, "message", "duplicate role");
				return mf_err_set(err, 400, "validation_failed", "%s repeats a role", path);
			}
	}
	return 0;
}

/* ---- sub-resources of a tenant: list, get one, delete (API clients, users) ---- */

static void sub_listed(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *items;
	int n, limit = ctx->limit;

	if (tn_failed(ctx, err))
		return;
	items = json_array();
	n = PQntuples(res);
	for (int i = 0; i < n && i < limit; i++)
		json_array_append_new(items, ctx->sub->row_json(res, i));
	gw_respond_json(ctx->req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor",
		tn_page_cursor(n > limit ? PQgetvalue(res, limit - 1, 0) : NULL)));
}

void tn_subres_list(tn_ctx_t *ctx, const tn_subres_t *d)
{
	char cursor[64], lim[16];
	const char *p[3] = { ctx->target.id, cursor, lim };
	mf_err_t err;

	ctx->sub = d;
	if (tn_page_params(ctx, &ctx->limit, cursor, &err) < 0) {
		gw_respond_problem(ctx->req, &err);
		return;
	}
	snprintf(lim, sizeof(lim), "%d", ctx->limit + 1);
	tn_q(ctx, d->list_sql, 3, p, sub_listed);
}

static void sub_missing(tn_ctx_t *ctx)
{
	gw_respond_error(ctx->req, 404, "not_found", "no such %s", ctx->sub->noun);
}

static void sub_got(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (PQntuples(res) == 0)
		sub_missing(ctx);
	else
		gw_respond_json(ctx->req, 200, ctx->sub->row_json(res, 0));
}

/* The path's id of the sub-resource into ctx->id; false (answered 404)
 * when it is not a UUID. */
static bool sub_id(tn_ctx_t *ctx, const tn_subres_t *d)
{
	const char *id = gw_req_param(ctx->req, d->param);

	ctx->sub = d;
	if (!tn_uuid_ok(id)) {
		sub_missing(ctx);
		return false;
	}
	snprintf(ctx->id, sizeof(ctx->id), "%s", id);
	return true;
}

void tn_subres_get(tn_ctx_t *ctx, const tn_subres_t *d)
{
	const char *p[2] = { ctx->target.id, ctx->id };

	if (sub_id(ctx, d))
		tn_q(ctx, d->get_sql, 2, p, sub_got);
}

static void sub_deleted_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	/* a deleted subject's tokens stop here at once, elsewhere within
	 * auth_cache_ttl_ms */
	tn_dir_forget(ctx->tw->dir, ctx->id);
	gw_respond_raw(ctx->req, 204, NULL, "", 0);
}

static void sub_deleted(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, ctx->sub->noun))
		return;
	tn_audit_commit(ctx, ctx->target.id, ctx->sub->delete_action, ctx->id, NULL, sub_deleted_done);
}

static void sub_delete_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[2] = { ctx->target.id, ctx->id };

	tn_q(ctx, ctx->sub->delete_sql, 2, p, sub_deleted);
}

void tn_subres_delete(tn_ctx_t *ctx, const tn_subres_t *d)
{
	if (sub_id(ctx, d))
		tn_begin(ctx, sub_delete_begun);
}
