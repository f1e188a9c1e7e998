/*
 * api_branding.c - GET/PUT /v1/tenants/{tenant_id}/branding and the
 * message preview POST /v1/tenants/{tenant_id}/render.
 *
 * Branding is the white-label basics (display name, logo, colour, support
 * address, portal domains), kept on the tenant's row in the branding
 * column that POST/PATCH /v1/tenants also write (0002_identity.sql), so
 * there is one copy.  The effective branding is a field-by-field merge
 * down the chain, platform -> msp -> client: a tenant's own fields win.
 * A domain belongs to one live tenant: every writer of branding (here and
 * in api_tenants.c, through tn_branding_claim) serialises on a
 * transaction-scoped advisory lock, then checks, then writes.
 *
 * The preview renders a logic-less template (core/render.h) over
 * {"brand": effective branding, "tenant": {...}} plus the caller's context.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/render.h"
#include "tenants/tn.h"

/* pg_advisory_xact_lock key of branding writes ("brnd") */
#define BRANDING_LOCK "1651666532"

static const char read_sql[] =
	"SELECT t.branding::text, p.branding::text, g.branding::text, "
	"(p.id IS NOT NULL)::int + (g.id IS NOT NULL)::int, t.name, t.slug, t.kind "
	"FROM platform.tenants t LEFT JOIN platform.tenants p ON p.id = t.parent_id "
	"LEFT JOIN platform.tenants g ON g.id = p.parent_id WHERE t.id = $1::uuid AND t.deleted_at IS NULL";

static json_t *load_obj(const PGresult *r, int col)
{
	json_t *j = PQgetisnull(r, 0, col) ? NULL : json_loads(PQgetvalue(r, 0, col), 0, NULL);

	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

json_t *tn_branding_chain(const char *const *docs, int n)
{
	json_t *eff = json_object();

	for (int i = 0; eff && i < n; i++) {
		json_t *d = docs[i] ? json_loads(docs[i], 0, NULL) : NULL;

		if (json_is_object(d) && json_object_update(eff, d) < 0) {
			json_decref(eff);
			eff = NULL;
		}
		json_decref(d);
	}
	return eff;
}

/* The effective branding of read_sql's row (new reference, NULL on OOM). */
static json_t *effective(const PGresult *r)
{
	int depth = atoi(PQgetvalue(r, 0, 3));
	const char *docs[3];

	/* root first: grandparent (col 2), parent (col 1), own (col 0) */
	for (int i = 0; i <= depth; i++) {
		int col = i == depth ? 0 : (depth - i == 2 ? 2 : 1);

		docs[i] = PQgetisnull(r, 0, col) ? NULL : PQgetvalue(r, 0, col);
	}
	return tn_branding_chain(docs, depth + 1);
}

static json_t *branding_json(tn_ctx_t *ctx, const PGresult *r)
{
	json_t *own = load_obj(r, 0), *eff = effective(r);

	return json_pack("{s:s,s:o,s:o}", "tenant_id", ctx->target.id, "document", own ? own : json_object(),
			 "effective", eff ? eff : json_object());
}

/* ---- validation ---- */

bool tn_text_ok(const json_t *v, size_t max)
{
	const char *s = json_string_value(v);
	size_t n = s ? json_string_length(v) : 0;

	if (s == NULL || n == 0 || n > max || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

bool tn_domain_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0, label = 0;

	if (n < 3 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || (c == '-' && label > 0)))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[n - 1] != '-' && strchr(s, '.') != NULL;
}

/* https://host[...]: a host of DNS characters, nothing that is not a
 * printable URL character. */
static bool https_url_ok(const json_t *v)
{
	const char *s = json_string_value(v);
	size_t i = 8;

	if (!tn_text_ok(v, 2048) || strncmp(s, "https://", 8) != 0)
		return false;
	for (; s[i] && s[i] != '/' && s[i] != ':' && s[i] != '?' && s[i] != '#'; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-')
			return false;
	if (i == 8)
		return false;
	for (; s[i]; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || strchr("\"<>\\^`{|}", s[i]))
			return false;
	return true;
}

/* local@domain.tld, no spaces, one @, at most 254 characters. */
static bool email_ok(const json_t *v)
{
	const char *s = json_string_value(v), *at;

	if (!tn_text_ok(v, 254))
		return false;
	at = strchr(s, '@');
	if (at == NULL || at == s || strchr(at + 1, '@') != NULL || at - s > 64)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || strchr("\"(),:;<>[\\]", *p))
			return false;
	{
		const char *d = at + 1, *dot = strrchr(d, '.');

		return dot != NULL && dot != d && dot[1] != '\0' && d[0] != '.' && strstr(d, "..") == NULL;
	}
}

static void add_error(json_t *errors, const char *prefix, const char *path, const char *msg)
{
	char full[400];

	snprintf(full, sizeof(full), "%s%s", prefix, path);
	json_array_append_new(errors, json_pack("{s:s,s:s}", "path", full, "message", msg));
}

void tn_branding_validate(const json_t *b, const char *prefix, json_t *errors)
{
	const char *k;
	json_t *v;

	if (!json_is_object(b)) {
		add_error(errors, prefix, "", "must be an object");
		return;
	}
	json_object_foreach((json_t *)b, k, v) {
		if (!strcmp(k, "display_name")) {
			if (!tn_text_ok(v, 100))
				add_error(errors, prefix, "/display_name", "must be 1 to 100 printable characters");
		} else if (!strcmp(k, "logo_url")) {
			if (!https_url_ok(v))
				add_error(errors, prefix, "/logo_url", "must be an https URL of at most 2048 characters");
		} else if (!strcmp(k, "primary_color")) {
			const char *s = json_string_value(v);
			bool ok = s && strlen(s) == 7 && s[0] == '#';

			for (int i = 1; ok && i < 7; i++)
				ok = isxdigit((unsigned char)s[i]);
			if (!ok)
				add_error(errors, prefix, "/primary_color", "must be #rrggbb");
		} else if (!strcmp(k, "support_email")) {
			if (!email_ok(v))
				add_error(errors, prefix, "/support_email", "must be an email address of at most 254 characters");
		} else if (!strcmp(k, "domains")) {
			size_t i;
			json_t *d;

			if (!json_is_array(v) || json_array_size(v) > 20) {
				add_error(errors, prefix, "/domains", "must be an array of at most 20 host names");
				continue;
			}
			json_array_foreach(v, i, d) {
				char path[48];
				const char *s = json_string_value(d);

				snprintf(path, sizeof(path), "/domains/%zu", i);
				if (s == NULL || strlen(s) != json_string_length(d) || !tn_domain_ok(s)) {
					add_error(errors, prefix, path, "must be a lower-case DNS name");
					continue;
				}
				for (size_t j = 0; j < i; j++)
					if (json_equal(d, json_array_get(v, j))) {
						add_error(errors, prefix, path, "is listed twice");
						break;
					}
			}
		} else {
			char path[300];

			snprintf(path, sizeof(path), "/%.256s", k);
			add_error(errors, prefix, path, "unknown field");
		}
	}
}

/* ---- GET ---- */

static void got_branding(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	gw_respond_json(ctx->req, 200, branding_json(ctx, res));
}

static void get_branding(tn_ctx_t *ctx)
{
	const char *p[1] = { ctx->target.id };

	tn_q(ctx, read_sql, 1, p, got_branding);
}

/* ---- PUT ---- */


static void put_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *out = ctx->out;

	ctx->out = NULL;
	mf_info("tenants", "branding changed", MF_S("request_id", gw_req_id(ctx->req)), MF_S("tenant_id", ctx->target.id));
	gw_respond_json(ctx->req, 200, out);
}

static void put_reread(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *before;

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	ctx->out = branding_json(ctx, res);
	before = ctx->data;
	ctx->data = NULL;
	tn_audit_commit(ctx, ctx->target.id, "branding.put", ctx->target.id,
			json_pack("{s:o,s:O}", "before", before ? before : json_null(), "after",
				  json_object_get(ctx->out, "document")),
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

/* ---- the domain claim (also POST/PATCH /v1/tenants, api_tenants.c) ---- */

static void claim_checked(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (PQntuples(res) > 0) {
		mf_err_set(&ctx->err, 409, "domain_taken", "the domain %.200s belongs to another tenant",
			   PQgetvalue(res, 0, 0));
		tn_abort(ctx, &ctx->err);
		return;
	}
	ctx->after_claim(NULL, NULL, ctx);
}

static void claim_locked(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[2] = { ctx->claim_tenant, ctx->claim_domains };

	if (tn_failed(ctx, err))
		return;
	/* a fresh statement after the lock: its snapshot sees every
	 * committed writer that held the lock before us */
	tn_q(ctx, "SELECT d FROM platform.tenants o CROSS JOIN LATERAL jsonb_array_elements_text("
		  "CASE WHEN jsonb_typeof(o.branding -> 'domains') = 'array' THEN o.branding -> 'domains' ELSE '[]' END) d "
		  "WHERE o.id <> $1::uuid AND o.deleted_at IS NULL AND d = ANY($2::text[]) ORDER BY d LIMIT 1",
	     2, p, claim_checked);
}

void tn_branding_claim(tn_ctx_t *ctx, const char *tenant_id, const json_t *branding, mf_pg_cb then)
{
	const json_t *domains = json_object_get(branding, "domains");

	if (json_array_size(domains) == 0) {
		then(NULL, NULL, ctx);
		return;
	}
	free(ctx->claim_domains);
	ctx->claim_domains = tn_pg_array_literal(domains);
	if (ctx->claim_domains == NULL) {
		mf_err_set(&ctx->err, 503, "over_capacity", "out of memory; retry");
		tn_abort(ctx, &ctx->err);
		return;
	}
	ctx->claim_tenant = tenant_id;
	ctx->after_claim = then;
	tn_q(ctx, "SELECT pg_advisory_xact_lock(" BRANDING_LOCK ")", 0, NULL, claim_locked);
}

/* ---- PUT: claim the domains, update, re-read, audit ---- */

static void put_claimed(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[2] = { ctx->target.id, ctx->text };

	/* the old document comes back for the audit row */
	tn_q(ctx, "UPDATE platform.tenants t SET branding = $2::jsonb, updated_at = now() "
		  "FROM (SELECT id, branding FROM platform.tenants WHERE id = $1::uuid AND deleted_at IS NULL FOR UPDATE) old "
		  "WHERE t.id = old.id RETURNING old.branding::text",
	     2, p, put_updated);
}

static void put_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	tn_branding_claim(ctx, ctx->target.id, ctx->body, put_claimed);
}

static void doc_free(void *p)
{
	json_decref(p);
}

static void put_branding(tn_ctx_t *ctx)
{
	json_t *errors;
	mf_err_t err;

	if (tn_body(ctx, NULL) == NULL)
		return;
	errors = json_array();
	if (errors == NULL) {
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	tn_branding_validate(ctx->body, "", errors);
	if (json_array_size(errors) > 0) {
		mf_err_set(&err, 400, "validation_failed", "%zu problem%s in the branding document, the first at %s",
			   json_array_size(errors), json_array_size(errors) == 1 ? "" : "s",
			   json_string_value(json_object_get(json_array_get(errors, 0), "path")));
		gw_respond_problem_ext(ctx->req, &err, json_pack("{s:o}", "errors", errors));
		return;
	}
	json_decref(errors);
	ctx->text = json_dumps(ctx->body, JSON_COMPACT | JSON_SORT_KEYS);
	ctx->data_free = doc_free;	/* the old document, for the audit row */
	if (ctx->text == NULL) {
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	tn_begin(ctx, put_begun);
}

/* ---- POST render ---- */

static void got_render_ctx(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *tpl = json_object_get(ctx->body, "template"), *extra = json_object_get(ctx->body, "context");
	json_t *scope, *brand;
	mf_render_err_t rerr;
	char *out = NULL;

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	brand = effective(res);
	scope = extra ? json_copy(extra) : json_object();
	if (scope == NULL || brand == NULL ||
	    json_object_set_new(scope, "brand", brand) < 0 ||
	    json_object_set_new(scope, "tenant", json_pack("{s:s,s:s,s:s,s:s}", "id", ctx->target.id, "name",
				PQgetvalue(res, 0, 4), "slug", PQgetvalue(res, 0, 5), "kind", PQgetvalue(res, 0, 6))) < 0) {
		json_decref(scope);
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (mf_render(json_string_value(tpl), json_string_length(tpl), scope, &out, &rerr) < 0) {
		json_decref(scope);
		gw_respond_problem_ext(ctx->req, &rerr.err,
				       rerr.offset >= 0 ? json_pack("{s:I}", "offset", (json_int_t)rerr.offset) : NULL);
		return;
	}
	json_decref(scope);
	gw_respond_json(ctx->req, 200, json_pack("{s:s%}", "output", out, strlen(out)));
	free(out);
}

static void post_render(tn_ctx_t *ctx)
{
	static const char *const keys[] = { "template", "context", NULL };
	json_t *tpl, *extra;
	mf_render_err_t rerr;

	if (tn_body(ctx, keys) == NULL)
		return;
	tpl = json_object_get(ctx->body, "template");
	extra = json_object_get(ctx->body, "context");
	if (!json_is_string(tpl)) {
		tn_invalid(ctx, "/template", "must be a string");
		return;
	}
	if (extra && !json_is_object(extra)) {
		tn_invalid(ctx, "/context", "must be an object");
		return;
	}
	if (extra && (json_object_get(extra, "brand") || json_object_get(extra, "tenant"))) {
		tn_invalid(ctx, json_object_get(extra, "brand") ? "/context/brand" : "/context/tenant",
			   "is set by the platform");
		return;
	}
	/* a broken template is answered before any query */
	if (mf_render_check(json_string_value(tpl), json_string_length(tpl), &rerr) < 0) {
		gw_respond_problem_ext(ctx->req, &rerr.err,
				       rerr.offset >= 0 ? json_pack("{s:I}", "offset", (json_int_t)rerr.offset) : NULL);
		return;
	}
	{
		const char *p[1] = { ctx->target.id };

		tn_q(ctx, read_sql, 1, p, got_render_ctx);
	}
}

int tn_branding_routes(tn_t *tn, gw_router_t *api)
{
	if (tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/branding", POL_READ, 0, get_branding) < 0 ||
	    tn_route(api, tn, "PUT", "/v1/tenants/{tenant_id}/branding", POL_EDIT, GW_ROUTE_JSON_BODY, put_branding) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/render", POL_READ, GW_ROUTE_JSON_BODY, post_render) < 0)
		return -1;
	return 0;
}
