/*
 * api_tenants.c - the tenant hierarchy over HTTP: create msps and partners
 * (platform admin), provision an msp's clients, read, edit, suspend,
 * resume and delete tenants, and /access (what the caller may do there).
 *
 * Provisioning is one transaction: the tenant row, its schema (generated
 * name t_<uuid hex>) with every tenant migration, and the audit row.  It
 * answers 201 only after COMMIT, so a created tenant is usable at once and
 * a failure leaves nothing behind.  Deletion is also one transaction: it
 * drops the schema, deletes the tenant's vault data keys (crypto-shredding),
 * revokes the tenant's API clients and users, and keeps
 * a tombstone row so that its tokens keep failing until they expire.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/migrate.h"
#include "tenants/tn.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define TENANT_COLS "id, kind, coalesce(parent_id::text, ''), name, slug, status, branding::text, " \
	TS("created_at") ", " TS("updated_at")

static json_t *tenant_json(const PGresult *r, int row)
{
	const char *parent = PQgetvalue(r, row, 2);
	json_t *branding = json_loads(PQgetvalue(r, row, 6), 0, NULL);

	return json_pack("{s:s,s:s,s:o,s:s,s:s,s:s,s:o,s:s,s:s}",
		"id", PQgetvalue(r, row, 0), "kind", PQgetvalue(r, row, 1),
		"parent_id", parent[0] ? json_string(parent) : json_null(),
		"name", PQgetvalue(r, row, 3), "slug", PQgetvalue(r, row, 4), "status", PQgetvalue(r, row, 5),
		"branding", branding ? branding : json_object(),
		"created_at", PQgetvalue(r, row, 7), "updated_at", PQgetvalue(r, row, 8));
}

/* ---- validation ---- */

static int invalid(tn_ctx_t *ctx, const char *path, const char *msg)
{
	tn_invalid(ctx, path, msg);
	return -1;
}

static bool slug_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

/* Branding (the white-label basics; templates and the portal use it). */
static int branding_check(tn_ctx_t *ctx, const json_t *b)
{
	json_t *errors = json_array(), *first;
	int rc = 0;

	if (errors == NULL) {
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return -1;
	}
	tn_branding_validate(b, "/branding", errors);
	first = json_array_get(errors, 0);
	if (first)
		rc = invalid(ctx, json_string_value(json_object_get(first, "path")),
			     json_string_value(json_object_get(first, "message")));
	json_decref(errors);
	return rc;
}

/* ---- create: POST /v1/tenants and POST /v1/tenants/{id}/clients ---- */

static const char insert_sql[] =
	"INSERT INTO platform.tenants (id, parent_id, kind, name, slug, schema_name, branding) "
	"VALUES ($1::uuid, nullif($2, '')::uuid, $3, $4, $5, $6, $7::jsonb) RETURNING " TENANT_COLS;

/* The schema of a new tenant: t_<its generated id without dashes>, never
 * anything from input. */
static void schema_for(const char *id, char out[64])
{
	char *p = out;

	p += sprintf(p, "t_");
	for (const char *s = id; *s; s++)
		if (*s != '-')
			*p++ = *s;
	*p = '\0';
}

/* The tenant.create audit detail (new reference) of the tenant o (borrowed). */
static json_t *create_detail(const json_t *o)
{
	return json_pack("{s:O,s:O,s:O}", "kind", json_object_get(o, "kind"), "slug", json_object_get(o, "slug"),
			 "parent_id", json_object_get(o, "parent_id"));
}

static void prov_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *out = ctx->out;

	ctx->out = NULL;
	mf_info("tenants", "tenant provisioned", MF_S("request_id", gw_req_id(ctx->req)), MF_S("tenant_id", ctx->id));
	gw_res_header(ctx->req, "Location", ctx->text);
	gw_respond_json(ctx->req, 201, out);
}

static void prov_schema(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *o = ctx->out;

	if (tn_failed(ctx, err))
		return;
	tn_audit_commit(ctx, ctx->id, "tenant.create", ctx->id, create_detail(o), prov_done);
}

static void prov_inserted(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	mf_buf_t script = MF_BUF_INIT;

	if (err && err->status == 409) {
		mf_err_set(&ctx->err, 409, "slug_taken", "a tenant with this slug already exists");
		tn_abort(ctx, &ctx->err);
		return;
	}
	if (tn_failed(ctx, err))
		return;
	ctx->out = tenant_json(res, 0);
	if (mf_migrate_tenant_script(ctx->schema, &script, &ctx->err) < 0 ||
	    mf_pg_conn_script(ctx->conn, script.data, prov_schema, ctx) < 0) {
		mf_buf_free(&script);
		if (ctx->err.status == 0)
			mf_err_set(&ctx->err, 503, "over_capacity", "out of memory; retry");
		tn_abort(ctx, &ctx->err);
		return;
	}
	mf_buf_free(&script);
}

static void prov_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *b = ctx->body;
	json_t *branding = json_object_get(b, "branding");
	char *btext = branding ? json_dumps(branding, JSON_COMPACT) : NULL;
	const char *p[7] = {
		ctx->id, ctx->route_kind == POL_CLIENT ? ctx->target.id : ctx->me.id,
		pol_kind_name(ctx->route_kind), json_string_value(json_object_get(b, "name")),
		json_string_value(json_object_get(b, "slug")), ctx->schema, btext ? btext : "{}",
	};

	tn_q(ctx, insert_sql, 7, p, prov_inserted);
	free(btext);
}

/* a new tenant's domains must be free (tn_branding_claim) */
static void prov_claim(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	tn_branding_claim(ctx, ctx->id, json_object_get(ctx->body, "branding"), prov_begun);
}

static void provision(tn_ctx_t *ctx, enum pol_kind kind)
{
	static const char *const keys[] = { "kind", "name", "slug", "branding", NULL };
	static const char *const client_keys[] = { "name", "slug", "branding", NULL };
	json_t *v;

	if (tn_body(ctx, kind == POL_CLIENT ? client_keys : keys) == NULL)
		return;
	if (kind != POL_CLIENT) {
		const char *k = json_string_value(json_object_get(ctx->body, "kind"));

		kind = k ? pol_kind_parse(k) : POL_KIND_NONE;
		if (kind != POL_MSP && kind != POL_PARTNER) {
			invalid(ctx, "/kind", "must be \"msp\" or \"partner\" (clients are created under their msp)");
			return;
		}
	}
	if (!tn_text_ok(json_object_get(ctx->body, "name"), 200)) {
		invalid(ctx, "/name", "must be 1 to 200 printable characters");
		return;
	}
	v = json_object_get(ctx->body, "slug");
	if (!json_is_string(v) || !slug_ok(json_string_value(v))) {
		invalid(ctx, "/slug", "must be 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit");
		return;
	}
	v = json_object_get(ctx->body, "branding");
	if (v && branding_check(ctx, v) < 0)
		return;
	ctx->route_kind = kind;
	tn_uuid_new(ctx->id);
	schema_for(ctx->id, ctx->schema);
	if (asprintf(&ctx->text, "/v1/tenants/%s", ctx->id) < 0) {
		ctx->text = NULL;
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	tn_begin(ctx, prov_claim);
}

static void create_tenant(tn_ctx_t *ctx)
{
	provision(ctx, POL_KIND_NONE);
}

static void create_client(tn_ctx_t *ctx)
{
	provision(ctx, POL_CLIENT);
}

/* ---- read ---- */

static void got_tenant(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	gw_respond_json(ctx->req, 200, tenant_json(res, 0));
}

static void get_tenant(tn_ctx_t *ctx)
{
	const char *p[1] = { ctx->target.id };

	tn_q(ctx, "SELECT " TENANT_COLS " FROM platform.tenants WHERE id = $1::uuid AND deleted_at IS NULL", 1, p,
	     got_tenant);
}

static const tn_subres_t children = {
	.noun = "tenant",
	.param = "",
	.list_sql = "SELECT " TENANT_COLS " FROM platform.tenants WHERE parent_id = $1::uuid AND deleted_at IS NULL "
		    "AND id > coalesce(nullif($2, ''), '00000000-0000-0000-0000-000000000000')::uuid "
		    "ORDER BY id LIMIT $3::int",
	.row_json = tenant_json,
};

static void list_clients(tn_ctx_t *ctx)
{
	if (ctx->target.kind != POL_MSP) {
		gw_respond_error(ctx->req, 404, "not_found", "only an msp has clients");
		return;
	}
	tn_subres_list(ctx, &children);
}

/* ---- edit ---- */

static void edit_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *out = ctx->out;

	ctx->out = NULL;
	tn_dir_forget(ctx->tw->dir, ctx->target.id);
	gw_respond_json(ctx->req, 200, out);
}

static void edit_updated(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	ctx->out = tenant_json(res, 0);
	tn_audit_commit(ctx, ctx->target.id, ctx->action, ctx->target.id, json_deep_copy(ctx->body), edit_done);
}

static void edit_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *b = json_object_get(ctx->body, "branding");
	char *btext = b ? json_dumps(b, JSON_COMPACT) : NULL;
	const char *p[3] = { ctx->target.id, json_string_value(json_object_get(ctx->body, "name")), btext };

	tn_q(ctx, "UPDATE platform.tenants SET name = coalesce($2, name), branding = coalesce($3::jsonb, branding), "
		  "updated_at = now() WHERE id = $1::uuid AND deleted_at IS NULL RETURNING " TENANT_COLS,
	     3, p, edit_updated);
	free(btext);
}

static void edit_claim(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	tn_branding_claim(ctx, ctx->target.id, json_object_get(ctx->body, "branding"), edit_begun);
}

static void patch_tenant(tn_ctx_t *ctx)
{
	static const char *const keys[] = { "name", "branding", NULL };
	json_t *v;

	if (tn_body(ctx, keys) == NULL)
		return;
	v = json_object_get(ctx->body, "name");
	if (v && !tn_text_ok(v, 200)) {
		invalid(ctx, "/name", "must be 1 to 200 printable characters");
		return;
	}
	v = json_object_get(ctx->body, "branding");
	if (v && branding_check(ctx, v) < 0)
		return;
	ctx->action = "tenant.update";
	tn_begin(ctx, edit_claim);
}

/* ---- suspend / resume ---- */

static void set_status_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[2] = { ctx->target.id, ctx->status_to };

	tn_q(ctx, "UPDATE platform.tenants SET status = $2, updated_at = now() "
		  "WHERE id = $1::uuid AND deleted_at IS NULL RETURNING " TENANT_COLS, 2, p, edit_updated);
}

static void suspend_tenant(tn_ctx_t *ctx)
{
	ctx->status_to = "suspended";
	ctx->action = "tenant.suspend";
	tn_begin(ctx, set_status_begun);
}

static void resume_tenant(tn_ctx_t *ctx)
{
	ctx->status_to = "active";
	ctx->action = "tenant.resume";
	tn_begin(ctx, set_status_begun);
}

/* ---- delete ---- */

static void del_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	tn_dir_forget(ctx->tw->dir, ctx->target.id);
	mf_info("tenants", "tenant deleted", MF_S("request_id", gw_req_id(ctx->req)), MF_S("tenant_id", ctx->target.id));
	gw_respond_raw(ctx->req, 204, NULL, "", 0);
}

static void del_dropped(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	tn_audit_commit(ctx, ctx->target.id, "tenant.delete", ctx->target.id, NULL, del_done);
}

static void del_revoked(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	char script[160];

	if (tn_failed(ctx, err))
		return;
	if (ctx->target.schema[0] == '\0') {
		del_dropped(NULL, NULL, ctx);
		return;
	}
	/* target.schema came from the database and matched ^t_[0-9a-f]+$ when
	 * it was generated; quoting it keeps it an identifier */
	snprintf(script, sizeof(script), "DROP SCHEMA IF EXISTS \"%s\" CASCADE", ctx->target.schema);
	if (strspn(ctx->target.schema, "t_0123456789abcdef") != strlen(ctx->target.schema) ||
	    mf_pg_conn_script(ctx->conn, script, del_dropped, ctx) < 0) {
		mf_err_set(&ctx->err, 500, "internal_error", "unexpected schema name");
		tn_abort(ctx, &ctx->err);
	}
}

static void del_marked(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[1] = { ctx->target.id };

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	/* the vault's data keys go in the same transaction as the schema:
	 * without them its sealed credentials can never be opened again,
	 * wherever a copy of them survives (crypto-shredding); so do the
	 * engine's platform rows naming the schema (queued runs, deliveries,
	 * hooks: a worker still holding one is fenced off by its lease) */
	tn_q(ctx, "WITH c AS (UPDATE platform.api_clients SET deleted_at = now() "
		  "WHERE tenant_id = $1::uuid AND deleted_at IS NULL RETURNING 1), "
		  "k AS (DELETE FROM platform.tenant_keys WHERE tenant_id = $1::uuid RETURNING 1), "
		  "rq AS (DELETE FROM platform.run_queue WHERE tenant_id = $1::uuid RETURNING 1), "
		  "et AS (DELETE FROM platform.engine_tenants WHERE tenant_id = $1::uuid RETURNING 1), "
		  "dq AS (DELETE FROM platform.delivery_queue WHERE tenant_id = $1::uuid RETURNING 1), "
		  "hk AS (DELETE FROM platform.hooks WHERE tenant_id = $1::uuid RETURNING 1) "
		  "UPDATE platform.users SET deleted_at = now() WHERE tenant_id = $1::uuid AND deleted_at IS NULL",
	     1, p, del_revoked);
}

static void del_checked(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[1] = { ctx->target.id };

	if (tn_failed(ctx, err))
		return;
	if (!tn_found(ctx, res, "tenant"))
		return;
	if (strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
		mf_err_set(&ctx->err, 409, "tenant_has_clients", "delete this tenant's clients first");
		tn_abort(ctx, &ctx->err);
		return;
	}
	tn_q(ctx, "UPDATE platform.tenants SET status = 'deleted', deleted_at = now(), schema_name = NULL, "
		  "policy = NULL, updated_at = now() WHERE id = $1::uuid AND deleted_at IS NULL RETURNING id",
	     1, p, del_marked);
}

static void del_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	const char *p[1] = { ctx->target.id };

	/* FOR UPDATE conflicts with the key-share lock a concurrent client
	 * insert takes on its parent, so no client can appear meanwhile */
	tn_q(ctx, "SELECT (SELECT count(*) FROM platform.tenants c WHERE c.parent_id = t.id AND c.deleted_at IS NULL) "
		  "FROM platform.tenants t WHERE t.id = $1::uuid AND t.deleted_at IS NULL FOR UPDATE", 1, p, del_checked);
}

static void delete_tenant(tn_ctx_t *ctx)
{
	tn_begin(ctx, del_begun);
}

/* ---- /access: what the caller may do on a tenant (no database) ---- */

/* Rendered by hand: this is the gateway's cheapest authenticated route
 * (the identity benchmark's), and jansson's encoder cost more than the
 * rest of the request. */
static void get_access(tn_ctx_t *ctx)
{
	pol_tenant_t t = { ctx->target.id, ctx->target.parent_id, ctx->target.kind };
	mf_buf_t b = MF_BUF_INIT;
	const char *kind = pol_kind_name(ctx->target.kind);
	int rc = 0;

	rc |= mf_buf_adds(&b, "{\"tenant_id\":\"");
	rc |= mf_buf_adds(&b, ctx->target.id);		/* a canonical UUID */
	rc |= mf_buf_adds(&b, "\",\"kind\":\"");
	rc |= mf_buf_adds(&b, kind);
	rc |= mf_buf_adds(&b, "\",\"subject\":");
	rc |= mf_buf_add_json_str(&b, ctx->claims.sub, strlen(ctx->claims.sub));
	rc |= mf_buf_adds(&b, ",\"subject_tenant_id\":\"");
	rc |= mf_buf_adds(&b, ctx->me.id);
	rc |= mf_buf_adds(&b, "\",\"roles\":[");
	for (int i = 0; i < ctx->claims.nroles; i++) {
		if (i)
			rc |= mf_buf_addc(&b, ',');
		rc |= mf_buf_add_json_str(&b, ctx->claims.roles[i], strlen(ctx->claims.roles[i]));
	}
	rc |= mf_buf_adds(&b, "],\"permissions\":{");
	for (int p = 0; p < POL_PERM_COUNT; p++) {
		rc |= mf_buf_adds(&b, p ? ",\"" : "\"");
		rc |= mf_buf_adds(&b, pol_perm_name((enum pol_perm)p));
		rc |= mf_buf_adds(&b, pol_decide(&ctx->who, &t, (enum pol_perm)p) == POL_ALLOW ? "\":true" : "\":false");
	}
	rc |= mf_buf_adds(&b, "}}");
	if (rc)
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
	else
		gw_respond_raw(ctx->req, 200, "application/json", b.data, b.len);
	mf_buf_free(&b);
}

/* One permission: 204 when the caller holds it here, 403 when not; an
 * unknown permission name is 404.  No body: the cheapest question a
 * portal or an integration can ask before it offers an action. */
static void get_access_one(tn_ctx_t *ctx)
{
	const char *name = gw_req_param(ctx->req, "permission");
	pol_tenant_t t = { ctx->target.id, ctx->target.parent_id, ctx->target.kind };

	for (int p = 0; p < POL_PERM_COUNT; p++) {
		if (strcmp(name, pol_perm_name((enum pol_perm)p)) != 0)
			continue;
		if (pol_decide(&ctx->who, &t, (enum pol_perm)p) == POL_ALLOW)
			gw_respond_raw(ctx->req, 204, NULL, "", 0);
		else
			gw_respond_error(ctx->req, 403, "forbidden", "your roles do not grant this permission here");
		return;
	}
	gw_respond_error(ctx->req, 404, "not_found", "no such permission");
}

int tn_tenants_routes(tn_t *tn, gw_router_t *api)
{
	const unsigned J = GW_ROUTE_JSON_BODY;

	if (tn_route(api, tn, "POST", "/v1/tenants", POL_CREATE_TENANT, J, create_tenant) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}", POL_READ, 0, get_tenant) < 0 ||
	    tn_route(api, tn, "PATCH", "/v1/tenants/{tenant_id}", POL_EDIT, J, patch_tenant) < 0 ||
	    tn_route(api, tn, "DELETE", "/v1/tenants/{tenant_id}", POL_LIFECYCLE, 0, delete_tenant) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/clients", POL_CREATE_CLIENT, J, create_client) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/clients", POL_READ, 0, list_clients) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/suspend", POL_LIFECYCLE, 0, suspend_tenant) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/resume", POL_LIFECYCLE, 0, resume_tenant) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/access", POL_READ, 0, get_access) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/access/{permission}", POL_READ, 0, get_access_one) < 0)
		return -1;
	return 0;
}

/* ---- blocking: a tenant created by a command (the catalog seed) ---- */

int tn_tenant_create(PGconn *c, enum pol_kind kind, const char *parent_id, const char *name, const char *slug,
		     const char *actor, char id[37], mf_err_t *err)
{
	json_t *jname = json_string(name), *o = NULL;
	mf_buf_t script = MF_BUF_INIT;
	char schema[64], *detail = NULL;
	PGresult *r;
	int rc = -1;

	if (kind == POL_PLATFORM || kind == POL_KIND_NONE || !slug_ok(slug) || !tn_text_ok(jname, 200)) {
		json_decref(jname);
		return mf_err_set(err, 400, "validation_failed", "a tenant needs a kind below the platform, a name of 1 "
				  "to 200 printable characters and a slug of a-z, 0-9 and '-'");
	}
	json_decref(jname);
	tn_uuid_new(id);
	schema_for(id, schema);
	{
		const char *p[7] = { id, parent_id, pol_kind_name(kind), name, slug, schema, "{}" };

		r = mf_pg_exec(c, insert_sql, 7, p, err);
	}
	if (r == NULL) {
		if (strcmp(err->sqlstate, "23505") == 0)
			mf_err_set(err, 409, "slug_taken", "a tenant with this slug already exists");
		return -1;
	}
	o = tenant_json(r, 0);
	PQclear(r);
	if (o) {
		json_t *d = create_detail(o);

		detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
		json_decref(d);
	}
	if (detail == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	if (mf_migrate_tenant_script(schema, &script, err) < 0)
		goto out;
	/* the same script as the route's, on this connection's transaction */
	r = PQexec(c, script.data);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

		mf_err_set(err, 500, "database_error", "creating the tenant schema: %s", m ? m : PQerrorMessage(c));
		PQclear(r);
		goto out;
	}
	PQclear(r);
	{
		const char *p[5] = { id, actor, "tenant.create", id, detail };

		r = mf_pg_exec(c, TN_AUDIT_SQL, 5, p, err);
	}
	if (r == NULL)
		goto out;
	PQclear(r);
	rc = 0;
out:
	free(detail);
	mf_buf_free(&script);
	json_decref(o);
	return rc;
}
