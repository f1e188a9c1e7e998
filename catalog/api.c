/*
 * api.c - the catalog's routes (CONTRACT 8, docs/templates.md):
 *
 *   POST /v1/tenants/{partner}/signing-keys                 201 a new active Ed25519 key
 *   GET  /v1/tenants/{partner}/signing-keys                 the partner's keys, paged by id
 *   POST /v1/tenants/{partner}/signing-keys/{key_id}/revoke 200; verifies nothing new afterwards
 *   POST /v1/tenants/{partner}/templates                    201 a signed version; 409 if it exists
 *   POST /v1/tenants/{partner}/templates/{name}/versions/{version}/yank
 *   GET  /v1/catalog/templates?q=&cursor=&limit=            latest non-yanked version of each
 *   GET  /v1/catalog/templates/{partner_slug}/{name}        its versions
 *   GET  /v1/catalog/templates/{partner_slug}/{name}/versions/{version}   the document
 *
 * The partner routes need permission templates (a partner's own
 * partner_admin; other kinds of tenant have no such collection: 404), the
 * catalog routes permission catalog.  A publish is checked in this order,
 * each failure storing nothing: shape (400 validation_failed, every
 * problem), integers only (400 non_integer_number), the key (400
 * unknown_key / key_revoked), the signature over the canonical JSON (400
 * bad_signature), then the insert (409 version_exists) with its audit row
 * in one transaction.
 *
 * The handlers use the guard's own request context (tenants/tn.h: tn_route,
 * tn_q, tn_begin, tn_audit_commit), as engine/hooks.c does, rather than
 * tn_guard_add's tn_call_t: the same transaction and audit helpers, no
 * second copy of them here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "catalog/catalog.h"
#include "catalog/publish.h"
#include "catalog/template.h"
#include "core/canon.h"
#include "core/log.h"
#include "core/urlenc.h"
#include "tenants/tn.h"

#define TS(col) CAT_TS(col)
#define J GW_ROUTE_JSON_BODY

/* ---- signing keys ---- */

#define KEY_COLS CAT_KEY_COLS

static json_t *key_json(const PGresult *r, int i)
{
	const char *rev = PQgetvalue(r, i, 4);

	return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", PQgetvalue(r, i, 0), "public_key", PQgetvalue(r, i, 1),
			 "state", PQgetvalue(r, i, 2), "created_at", PQgetvalue(r, i, 3), "revoked_at",
			 rev[0] ? json_string(rev) : json_null());
}

static const tn_subres_t keys_sub = {
	.noun = "signing key",
	.param = "key_id",
	.list_sql = "SELECT " KEY_COLS " FROM platform.partner_signing_keys WHERE partner_id = $1::uuid "
		    "AND ($2 = '' OR id > $2::uuid) ORDER BY id LIMIT $3::int",
	.row_json = key_json,
};

static void list_keys(tn_ctx_t *ctx)
{
	tn_subres_list(ctx, &keys_sub);
}

/* ctx->out holds the answer; status in ctx->limit */
static void answer_out(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *out = ctx->out;

	ctx->out = NULL;
	gw_respond_json(ctx->req, ctx->limit, out);
}

static void key_written(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err) || !tn_found(ctx, res, "signing key"))
		return;
	ctx->out = key_json(res, 0);
	tn_audit_commit(ctx, ctx->target.id, ctx->action, ctx->id,
			cat_key_audit_detail(json_string_value(json_object_get(ctx->out, "public_key"))), answer_out);
}

static void key_insert(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[3] = { ctx->id, ctx->target.id, ctx->text };

	tn_q(ctx, cat_key_insert_sql, 3, p, key_written);
}

static void create_key(tn_ctx_t *ctx)
{
	static const char *const keys[] = { "public_key", NULL };
	const json_t *pk;
	unsigned char bin[crypto_sign_PUBLICKEYBYTES + 1];
	size_t n = 0;
	char b64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, sodium_base64_VARIANT_ORIGINAL)];

	if (tn_body(ctx, keys) == NULL)
		return;
	pk = json_object_get(ctx->body, "public_key");
	if (!json_is_string(pk) || sodium_base642bin(bin, sizeof(bin), json_string_value(pk), json_string_length(pk),
						      NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    n != crypto_sign_PUBLICKEYBYTES) {
		tn_invalid(ctx, "/public_key", pk ? "must be a 32-byte Ed25519 public key in base64" : "is required");
		return;
	}
	if (!crypto_core_ed25519_is_valid_point(bin)) {
		tn_invalid(ctx, "/public_key", "is not a valid Ed25519 public key");
		return;
	}
	sodium_bin2base64(b64, sizeof(b64), bin, n, sodium_base64_VARIANT_ORIGINAL);
	ctx->text = strdup(b64);
	if (ctx->text == NULL) {
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	tn_uuid_new(ctx->id);
	ctx->limit = 201;
	ctx->action = "signing_key.create";
	tn_begin(ctx, key_insert);
}

static void key_revoke(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[2] = { ctx->target.id, ctx->id };

	tn_q(ctx, "UPDATE platform.partner_signing_keys SET state = 'revoked', revoked_at = coalesce(revoked_at, now()) "
		  "WHERE partner_id = $1::uuid AND id = $2::uuid RETURNING " KEY_COLS, 2, p, key_written);
}

static void revoke_key(tn_ctx_t *ctx)
{
	const char *id = gw_req_param(ctx->req, "key_id");

	if (id == NULL || !tn_uuid_ok(id)) {
		gw_respond_error(ctx->req, 404, "not_found", "no such signing key");
		return;
	}
	snprintf(ctx->id, sizeof(ctx->id), "%s", id);
	ctx->limit = 200;
	ctx->action = "signing_key.revoke";
	tn_begin(ctx, key_revoke);
}

/* ---- publish ---- */

static void published(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const json_t *b = ctx->body;
	char target[200];

	if (tn_failed(ctx, err))
		return;
	if (PQntuples(res) == 0) {
		mf_err_set(&ctx->err, 409, "version_exists", "version %s of %s is already published; publish a new version",
			   json_string_value(json_object_get(b, "version")), json_string_value(json_object_get(b, "name")));
		tn_abort(ctx, &ctx->err);
		return;
	}
	snprintf(target, sizeof(target), "%s/%s@%s", PQgetvalue(res, 0, 1), json_string_value(json_object_get(b, "name")),
		 json_string_value(json_object_get(b, "version")));
	ctx->out = json_pack("{s:s,s:s,s:s,s:s,s:O,s:s,s:b}", "id", target, "name",
			     json_string_value(json_object_get(b, "name")), "version",
			     json_string_value(json_object_get(b, "version")), "published_at", PQgetvalue(res, 0, 0),
			     "key_id", json_object_get(b, "key_id"), "partner", PQgetvalue(res, 0, 1), "yanked", 0);
	if (ctx->out)	/* the id without the version */
		*strrchr(target, '@') = '\0';
	json_object_set_new(ctx->out, "id", json_string(target));
	ctx->limit = 201;
	tn_audit_commit(ctx, ctx->target.id, "template.publish", target, cat_publish_audit_detail(b), answer_out);
}

static void publish_insert(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	cat_publish_args_t a;

	if (cat_publish_args_init(&a, ctx->target.id, ctx->body) < 0) {
		mf_err_set(&ctx->err, 503, "over_capacity", "out of memory; retry");
		tn_abort(ctx, &ctx->err);
		return;
	}
	/* the slug comes back for the catalog id */
	tn_q(ctx, cat_publish_sql, 13, a.p, published);
	cat_publish_args_free(&a);
}

static void unknown_key(tn_ctx_t *ctx)
{
	mf_err_set(&ctx->err, 400, "unknown_key", "key_id names no signing key of this partner");
	gw_respond_problem_ext(ctx->req, &ctx->err, json_pack("{s:[{s:s,s:s}]}", "errors", "path", "/key_id", "message",
							      "names no signing key of this partner"));
}

static void got_key(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (PQntuples(res) == 0) {
		unknown_key(ctx);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "active") != 0) {
		mf_err_set(&ctx->err, 400, "key_revoked", "signing key %s is revoked; sign with an active key", ctx->id);
		gw_respond_problem(ctx->req, &ctx->err);
		return;
	}
	if (!cat_signature_ok(PQgetvalue(res, 0, 0), json_object_get(ctx->body, "signature"), ctx->text,
			      strlen(ctx->text))) {
		gw_respond_error(ctx->req, 400, "bad_signature",
				 "the signature does not verify with key %s over the canonical JSON of the template "
				 "without \"signature\" (docs/templates.md)", ctx->id);
		return;
	}
	tn_begin(ctx, publish_insert);
}

static void publish(tn_ctx_t *ctx)
{
	json_t *errors = NULL;
	mf_err_t err;
	mf_buf_t b = MF_BUF_INIT;
	const char *kid;
	const char *p[2];
	int rc;

	if (tn_body(ctx, NULL) == NULL)
		return;
	if (!json_is_object(ctx->body)) {
		tn_invalid(ctx, "", "a template is a JSON object");
		return;
	}
	rc = cat_template_validate(ctx->body, &errors, &err);
	if (rc == 0) {
		rc = cat_signed_bytes(ctx->body, &b, &errors, &err);
		if (rc == -1)
			mf_err_set(&err, 503, "over_capacity", "out of memory; retry");
	}
	if (rc < 0) {
		mf_buf_free(&b);
		gw_respond_problem_ext(ctx->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	ctx->text = mf_buf_detach(&b, NULL);
	kid = json_string_value(json_object_get(ctx->body, "key_id"));
	if (ctx->text == NULL || !tn_uuid_ok(kid)) {
		if (ctx->text == NULL)
			gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		else
			unknown_key(ctx);
		return;
	}
	snprintf(ctx->id, sizeof(ctx->id), "%s", kid);
	p[0] = ctx->target.id;
	p[1] = ctx->id;
	tn_q(ctx, cat_key_lookup_sql, 2, p, got_key);
}

/* ---- yank ---- */

static void yanked(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	char target[200];

	if (tn_failed(ctx, err) || !tn_found(ctx, res, "template version"))
		return;
	snprintf(target, sizeof(target), "%s/%s", PQgetvalue(res, 0, 0), gw_req_param(ctx->req, "name"));
	ctx->out = json_pack("{s:s,s:s,s:b,s:s}", "id", target, "version", gw_req_param(ctx->req, "version"),
			     "yanked", 1, "yanked_at", PQgetvalue(res, 0, 1));
	ctx->limit = 200;
	tn_audit_commit(ctx, ctx->target.id, "template.yank", target,
			json_pack("{s:s}", "version", gw_req_param(ctx->req, "version")), answer_out);
}

static void yank_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[3] = { ctx->target.id, gw_req_param(ctx->req, "name"), gw_req_param(ctx->req, "version") };

	tn_q(ctx, "UPDATE platform.templates t SET yanked = true, yanked_at = coalesce(yanked_at, now()) "
		  "WHERE partner_id = $1::uuid AND name = $2 AND version = $3 "
		  "RETURNING (SELECT slug FROM platform.tenants WHERE id = $1::uuid), " TS("t.yanked_at"), 3, p, yanked);
}

static void yank(tn_ctx_t *ctx)
{
	cat_semver_t sv;
	const char *name = gw_req_param(ctx->req, "name"), *version = gw_req_param(ctx->req, "version");

	if (name == NULL || version == NULL || !cat_name_ok(name) || !cat_semver_parse(version, &sv)) {
		gw_respond_error(ctx->req, 404, "not_found", "no such template version");
		return;
	}
	tn_begin(ctx, yank_begun);
}

/* ---- the catalog ---- */

/* Latest version of each template: a release if it has one, else its
 * latest pre-release; $1 q ('' = all), $2 the cursor id ('' = first),
 * $3 limit + 1. */
static const char catalog_sql[] =
	"WITH latest AS (SELECT DISTINCT ON (t.partner_id, t.name) p.slug || '/' || t.name AS id, p.slug, t.name, "
	"t.version, t.description, t.tags, t.published_at, t.document "
	"FROM platform.templates t JOIN platform.tenants p ON p.id = t.partner_id AND p.deleted_at IS NULL "
	"WHERE NOT t.yanked ORDER BY t.partner_id, t.name, t.is_release DESC, t.v_major DESC, t.v_minor DESC, "
	"t.v_patch DESC, t.v_pre DESC), "
	"pat AS (SELECT '%' || replace(replace(replace($1, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%' AS p) "
	"SELECT l.id, l.slug, l.name, l.version, l.description, array_to_json(l.tags)::text, " TS("l.published_at") ", "
	"coalesce((l.document->'parameters')::text, '{}'), coalesce((l.document->'connectors')::text, '[]') "
	"FROM latest l, pat WHERE ($1 = '' OR l.name ILIKE pat.p OR l.description ILIKE pat.p "
	"OR EXISTS (SELECT 1 FROM unnest(l.tags) g WHERE g ILIKE pat.p)) AND ($2 = '' OR l.id COLLATE \"C\" > $2) "
	"ORDER BY l.id COLLATE \"C\" LIMIT $3::int";

static json_t *loads(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);

	return j ? j : json_null();
}

static void got_catalog(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *items;
	int n;

	if (tn_failed(ctx, err))
		return;
	items = json_array();
	n = PQntuples(res);
	for (int i = 0; i < n && i < ctx->limit; i++)
		json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:o}", "id", PQgetvalue(res, i, 0),
			"partner", PQgetvalue(res, i, 1), "name", PQgetvalue(res, i, 2), "latest_version",
			PQgetvalue(res, i, 3), "description", PQgetvalue(res, i, 4), "tags", loads(PQgetvalue(res, i, 5)),
			"published_at", PQgetvalue(res, i, 6), "parameters", loads(PQgetvalue(res, i, 7)),
			"connectors", loads(PQgetvalue(res, i, 8))));
	if (n > ctx->limit) {
		const char *last = PQgetvalue(res, ctx->limit - 1, 0);
		char out[sodium_base64_ENCODED_LEN(160, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];

		sodium_bin2base64(out, sizeof(out), (const unsigned char *)last, strlen(last),
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		gw_respond_json(ctx->req, 200, json_pack("{s:o,s:s}", "items", items, "next_cursor", out));
	} else
		gw_respond_json(ctx->req, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

static void search(tn_ctx_t *ctx)
{
	const char *qs = gw_req_query(ctx->req);
	size_t ql = qs ? strlen(qs) : 0;
	char q[256], lim[16], v[256], cursor[160];
	const char *p[3] = { q, cursor, lim };
	int rc;

	ctx->limit = 50;
	q[0] = cursor[0] = '\0';
	rc = mf_form_get(qs, ql, "limit", v, sizeof(v));
	if (rc > 0) {
		char *e;
		long l = strtol(v, &e, 10);

		rc = (*e || e == v || l < 1 || l > 500) ? -1 : 1;
		ctx->limit = (int)l;
	}
	if (rc < 0) {
		gw_respond_error(ctx->req, 400, "validation_failed", "limit must be a whole number from 1 to 500");
		return;
	}
	rc = mf_form_get(qs, ql, "q", q, sizeof(q));
	if (rc < 0 || strlen(q) > 100) {
		gw_respond_error(ctx->req, 400, "validation_failed", "q is at most 100 bytes");
		return;
	}
	rc = mf_form_get(qs, ql, "cursor", v, sizeof(v));
	if (rc > 0) {
		size_t n = 0;

		/* the cursor is the last id of the previous page, base64url */
		if (sodium_base642bin((unsigned char *)cursor, sizeof(cursor) - 1, v, strlen(v), NULL, &n, NULL,
				      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || n == 0 || memchr(cursor, 0, n))
			rc = -1;
		cursor[n] = '\0';
	}
	if (rc < 0) {
		gw_respond_error(ctx->req, 400, "validation_failed", "cursor is not one this server issued");
		return;
	}
	snprintf(lim, sizeof(lim), "%d", ctx->limit + 1);
	tn_q(ctx, catalog_sql, 3, p, got_catalog);
}

static void got_versions(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *versions, *latest = json_null();
	int n;

	if (tn_failed(ctx, err) || !tn_found(ctx, res, "template"))
		return;
	versions = json_array();
	n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		bool y = PQgetvalue(res, i, 1)[0] == 't';

		if (!y && json_is_null(latest))
			latest = json_string(PQgetvalue(res, i, 0));
		json_array_append_new(versions, json_pack("{s:s,s:b,s:s,s:s,s:s}", "version", PQgetvalue(res, i, 0),
			"yanked", y, "published_at", PQgetvalue(res, i, 2), "description", PQgetvalue(res, i, 3),
			"key_id", PQgetvalue(res, i, 4)));
	}
	gw_respond_json(ctx->req, 200, json_pack("{s:s++,s:s,s:s,s:o,s:o}", "id", gw_req_param(ctx->req, "partner_slug"),
		"/", gw_req_param(ctx->req, "name"), "partner", gw_req_param(ctx->req, "partner_slug"), "name",
		gw_req_param(ctx->req, "name"), "latest_version", latest, "versions", versions));
}

/* Newest first, in the catalog's order (releases before pre-releases). */
static void versions(tn_ctx_t *ctx)
{
	const char *p[2] = { gw_req_param(ctx->req, "partner_slug"), gw_req_param(ctx->req, "name") };

	if (p[0] == NULL || p[1] == NULL || !cat_name_ok(p[0]) || !cat_name_ok(p[1])) {
		gw_respond_error(ctx->req, 404, "not_found", "no such template");
		return;
	}
	tn_q(ctx, "SELECT t.version, t.yanked, " TS("t.published_at") ", t.description, t.key_id::text "
		  "FROM platform.templates t JOIN platform.tenants p ON p.id = t.partner_id AND p.deleted_at IS NULL "
		  "AND p.kind = 'partner' WHERE p.slug = $1 AND t.name = $2 ORDER BY t.is_release DESC, t.v_major DESC, "
		  "t.v_minor DESC, t.v_patch DESC, t.v_pre DESC", 2, p, got_versions);
}

static void got_version(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err) || !tn_found(ctx, res, "template version"))
		return;
	gw_respond_json(ctx->req, 200, json_pack("{s:s++,s:s,s:b,s:s,s:o}", "id", gw_req_param(ctx->req, "partner_slug"),
		"/", gw_req_param(ctx->req, "name"), "version", PQgetvalue(res, 0, 0), "yanked",
		PQgetvalue(res, 0, 1)[0] == 't', "published_at", PQgetvalue(res, 0, 2), "document",
		loads(PQgetvalue(res, 0, 3))));
}

static void version(tn_ctx_t *ctx)
{
	cat_semver_t sv;
	const char *p[3] = { gw_req_param(ctx->req, "partner_slug"), gw_req_param(ctx->req, "name"),
			     gw_req_param(ctx->req, "version") };

	if (p[0] == NULL || p[1] == NULL || p[2] == NULL || !cat_name_ok(p[0]) || !cat_name_ok(p[1]) ||
	    !cat_semver_parse(p[2], &sv)) {
		gw_respond_error(ctx->req, 404, "not_found", "no such template version");
		return;
	}
	tn_q(ctx, "SELECT t.version, t.yanked, " TS("t.published_at") ", t.document::text "
		  "FROM platform.templates t JOIN platform.tenants p ON p.id = t.partner_id AND p.deleted_at IS NULL "
		  "AND p.kind = 'partner' WHERE p.slug = $1 AND t.name = $2 AND t.version = $3", 3, p, got_version);
}

int cat_routes_add(struct tn *tn, gw_router_t *api)
{
	if (tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/signing-keys", POL_TEMPLATES, J, create_key) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/signing-keys", POL_TEMPLATES, 0, list_keys) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/signing-keys/{key_id}/revoke", POL_TEMPLATES, 0,
		     revoke_key) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/templates", POL_TEMPLATES, J, publish) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/templates/{name}/versions/{version}/yank", POL_TEMPLATES,
		     0, yank) < 0 ||
	    tn_route(api, tn, "GET", "/v1/catalog/templates", POL_CATALOG, 0, search) < 0 ||
	    tn_route(api, tn, "GET", "/v1/catalog/templates/{partner_slug}/{name}", POL_CATALOG, 0, versions) < 0 ||
	    tn_route(api, tn, "GET", "/v1/catalog/templates/{partner_slug}/{name}/versions/{version}", POL_CATALOG, 0,
		     version) < 0)
		return -1;
	return 0;
}
