/*
 * api_clients.c - API clients (OAuth 2.0 client credentials, RFC 6749
 * section 4.4) and the token endpoint.
 *
 * A client secret is 32 random bytes (base64url, prefixed "sk_"), shown
 * once in the answer that creates it.  Only its BLAKE2b-256 digest is
 * stored: a fast hash is right for a high-entropy secret (nothing to brute
 * force), and keeps the token endpoint cheap.  Digests are compared with
 * sodium_memcmp; an unknown client_id costs the same hash and comparison
 * as a known one.  Failed attempts are limited per client_id and per IP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/json.h"
#include "core/log.h"
#include "core/urlenc.h"
#include "tenants/tn.h"

/* one address may fail this many times more than one account: a few
 * users behind one NAT should not lock each other out */
#define IP_FACTOR 5
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define CLIENT_COLS "id, tenant_id, name, roles::text, created_by, " TS("created_at")
#define SECRET_PREFIX "sk_"

/* secret: "sk_" + 43 base64url chars; hex: 64 chars + "\x" */
static void new_secret(char secret[64], char hex[68])
{
	unsigned char raw[32], digest[32];

	randombytes_buf(raw, sizeof(raw));
	memcpy(secret, SECRET_PREFIX, 3);
	sodium_bin2base64(secret + 3, 61, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	crypto_generichash(digest, sizeof(digest), (const unsigned char *)secret, strlen(secret), NULL, 0);
	hex[0] = '\\';
	hex[1] = 'x';
	sodium_bin2hex(hex + 2, 65, digest, sizeof(digest));
	sodium_memzero(raw, sizeof(raw));
}

static json_t *client_json(const PGresult *r, int row)
{
	return json_pack("{s:s,s:s,s:s,s:o,s:s,s:s}", "client_id", PQgetvalue(r, row, 0),
		"tenant_id", PQgetvalue(r, row, 1), "name", PQgetvalue(r, row, 2),
		"roles", tn_pg_text_array(PQgetvalue(r, row, 3)), "created_by", PQgetvalue(r, row, 4),
		"created_at", PQgetvalue(r, row, 5));
}

static const char *admin_role(enum pol_kind k)
{
	switch (k) {
	case POL_PLATFORM: return "platform_admin";
	case POL_PARTNER: return "partner_admin";
	case POL_MSP: return "msp_admin";
	default: return "client_admin";
	}
}

/* ---- POST /v1/tenants/{tenant_id}/api-clients ---- */

struct secret_box {
	char secret[64];
};

static void secret_free(void *p)
{
	sodium_memzero(p, sizeof(struct secret_box));
	free(p);
}

static void create_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	struct secret_box *sb = ctx->data;
	json_t *out = ctx->out;

	ctx->out = NULL;
	json_object_set_new(out, "client_secret", json_string(sb->secret));
	gw_res_header(ctx->req, "Cache-Control", "no-store");
	gw_respond_json(ctx->req, 201, out);
}

static void create_inserted(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (tn_failed(ctx, err))
		return;
	ctx->out = client_json(res, 0);
	tn_audit_commit(ctx, ctx->target.id, "api_client.create", ctx->id,
		     json_pack("{s:O}", "roles", json_object_get(ctx->out, "roles")), create_done);
}

static void create_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	struct secret_box *sb = ctx->data;
	char hex[68];
	char *roles = tn_pg_array_literal(json_object_get(ctx->body, "roles"));
	const char *p[6] = { ctx->id, ctx->target.id, json_string_value(json_object_get(ctx->body, "name")),
			     roles ? roles : "{}", hex, ctx->actor };

	new_secret(sb->secret, hex);
	tn_q(ctx, "INSERT INTO platform.api_clients (id, tenant_id, name, roles, secret_hash, created_by) "
		  "VALUES ($1::uuid, $2::uuid, $3, $4::text[], $5::bytea, $6) RETURNING " CLIENT_COLS,
	     6, p, create_inserted);
	free(roles);
}

static void create_client(tn_ctx_t *ctx)
{
	static const char *const keys[] = { "name", "roles", NULL };
	mf_err_t err;
	json_t *errors = NULL, *name;

	if (tn_body(ctx, keys) == NULL)
		return;
	name = json_object_get(ctx->body, "name");
	if (!json_is_string(name) || json_string_length(name) < 1 || json_string_length(name) > 200) {
		tn_invalid(ctx, "/name", "must be 1 to 200 characters");
		return;
	}
	if (json_object_get(ctx->body, "roles") == NULL)
		json_object_set_new(ctx->body, "roles", json_pack("[s]", admin_role(ctx->target.kind)));
	if (tn_roles_check(ctx->target.kind, json_object_get(ctx->body, "roles"), &err, &errors) < 0) {
		gw_respond_problem_ext(ctx->req, &err, json_pack("{s:o}", "errors", errors));
		return;
	}
	ctx->data = calloc(1, sizeof(struct secret_box));
	if (ctx->data == NULL) {
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	ctx->data_free = secret_free;
	tn_uuid_new(ctx->id);
	tn_begin(ctx, create_begun);
}

/* ---- GET list / GET one / DELETE ---- */

static const tn_subres_t clients = {
	.noun = "API client",
	.param = "client_id",
	.list_sql = "SELECT " CLIENT_COLS " FROM platform.api_clients WHERE tenant_id = $1::uuid AND deleted_at IS NULL "
		    "AND id > coalesce(nullif($2, ''), '00000000-0000-0000-0000-000000000000')::uuid "
		    "ORDER BY id LIMIT $3::int",
	.get_sql = "SELECT " CLIENT_COLS " FROM platform.api_clients WHERE tenant_id = $1::uuid AND id = $2::uuid "
		   "AND deleted_at IS NULL",
	.delete_sql = "UPDATE platform.api_clients SET deleted_at = now() WHERE tenant_id = $1::uuid "
		      "AND id = $2::uuid AND deleted_at IS NULL RETURNING id",
	.delete_action = "api_client.delete",
	.row_json = client_json,
};

static void list_clients(tn_ctx_t *ctx)
{
	tn_subres_list(ctx, &clients);
}

static void get_client(tn_ctx_t *ctx)
{
	tn_subres_get(ctx, &clients);
}

static void delete_client(tn_ctx_t *ctx)
{
	tn_subres_delete(ctx, &clients);
}

/* ---- POST /oauth/token ---- */

typedef struct tok {
	gw_req_t *req;
	tn_worker_t *tw;
	char client_id[64];
	char secret[128];
	bool basic;
} tok_t;

static void tok_free(void *p)
{
	sodium_memzero(p, sizeof(tok_t));
	free(p);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void oauth_error(gw_req_t *req, int status, const char *error, const char *detail, int retry_after)
{
	mf_err_t err;

	mf_err_set(&err, status, error, "%s", detail);
	err.retry_after = retry_after;
	gw_res_header(req, "Cache-Control", "no-store");
	if (status == 401)
		gw_res_header(req, "WWW-Authenticate", "Basic realm=\"token\"");
	gw_respond_problem_ext(req, &err, json_pack("{s:s,s:s}", "error", error, "error_description", detail));
}

/* Counts a failure against the client id and the address. */
static void tok_failed(tok_t *t)
{
	const mf_config_t *cfg = t->tw->tn->cfg;
	double rate = cfg->auth_fail_per_min / 60.0;
	char key[96];
	uint64_t ra;

	snprintf(key, sizeof(key), "ocf:%s", t->client_id);
	gw_gcra_take(t->tw->tn->gcra, key, strlen(key), rate, cfg->auth_fail_per_min, mono_ns(), &ra);
	snprintf(key, sizeof(key), "oip:%s", gw_req_peer(t->req));
	gw_gcra_take(t->tw->tn->gcra, key, strlen(key), rate * IP_FACTOR, cfg->auth_fail_per_min * IP_FACTOR,
		     mono_ns(), &ra);
	mf_info("auth", "client authentication failed", MF_S("request_id", gw_req_id(t->req)),
		MF_S("client_id", t->client_id), MF_S("remote", gw_req_peer(t->req)));
	oauth_error(t->req, 401, "invalid_client", "client authentication failed", 0);
}

int tn_issue_token(tn_worker_t *tw, const char *sub, const char *tenant_id, const char *roles_text,
		   json_t **out, mf_err_t *err)
{
	gw_claims_t c;
	json_t *roles = tn_pg_text_array(roles_text);
	size_t i;
	json_t *v;
	char *token;
	long long now = time(NULL);

	memset(&c, 0, sizeof(c));
	snprintf(c.sub, sizeof(c.sub), "%s", sub);
	snprintf(c.tenant_id, sizeof(c.tenant_id), "%s", tenant_id);
	json_array_foreach(roles, i, v) {
		if (c.nroles < GW_JWT_MAX_ROLES)
			snprintf(c.roles[c.nroles++], sizeof(c.roles[0]), "%s", json_string_value(v));
	}
	json_decref(roles);
	c.iat = c.nbf = now;
	c.exp = now + tw->tn->cfg->token_ttl_s;
	if (gw_keyring_count(tw->ring) == 0) {
		mf_err_set(err, 503, "not_ready", "this instance has no signing key (master key or migrations missing)");
		err->retry_after = tw->tn->cfg->key_refresh_s;
		return -1;
	}
	token = gw_jwt_sign(tw->ring, &c, err);
	if (token == NULL)
		return -1;
	*out = json_pack("{s:s,s:s,s:i}", "access_token", token, "token_type", "Bearer",
			 "expires_in", tw->tn->cfg->token_ttl_s);
	sodium_memzero(token, strlen(token));
	free(token);
	return *out ? 0 : mf_err_set(err, 500, "out_of_memory", "out of memory");
}

static void tok_found(const PGresult *res, const mf_err_t *err, void *arg)
{
	tok_t *t = arg;
	unsigned char digest[32], stored[32];
	bool ok;
	json_t *out = NULL;
	mf_err_t e;

	if (err) {
		gw_respond_problem(t->req, err);
		return;
	}
	crypto_generichash(digest, sizeof(digest), (const unsigned char *)t->secret, strlen(t->secret), NULL, 0);
	/* compare even when the client is unknown, against zeros */
	memset(stored, 0, sizeof(stored));
	if (PQntuples(res) == 1) {
		size_t n = 0;

		sodium_hex2bin(stored, sizeof(stored), PQgetvalue(res, 0, 2), strlen(PQgetvalue(res, 0, 2)), NULL, &n,
			       NULL);
	}
	ok = sodium_memcmp(digest, stored, sizeof(digest)) == 0 && PQntuples(res) == 1;
	if (!ok || strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
		tok_failed(t);
		return;
	}
	if (tn_issue_token(t->tw, t->client_id, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), &out, &e) < 0) {
		gw_respond_problem(t->req, &e);
		return;
	}
	gw_res_header(t->req, "Cache-Control", "no-store");
	gw_res_header(t->req, "Pragma", "no-cache");
	gw_respond_json(t->req, 200, out);
}

/* Reads grant_type, client_id and client_secret from a form or JSON body. */
static int tok_params(gw_req_t *req, char *grant, size_t glen, tok_t *t, mf_err_t *err)
{
	const char *ct = gw_req_header(req, "content-type");
	size_t len;
	const char *body = gw_req_body(req, &len);

	grant[0] = '\0';
	if (ct && strncasecmp(ct, "application/json", 16) == 0) {
		json_t *j = mf_json_parse(body, len, 8, err), *v;

		if (j == NULL)
			return -1;
		if (!json_is_object(j)) {
			json_decref(j);
			return mf_err_set(err, 400, "invalid_request", "the body must be a JSON object");
		}
		if ((v = json_object_get(j, "grant_type")) && json_is_string(v))
			snprintf(grant, glen, "%s", json_string_value(v));
		if (!t->basic) {
			if ((v = json_object_get(j, "client_id")) && json_is_string(v) && json_string_length(v) < sizeof(t->client_id))
				snprintf(t->client_id, sizeof(t->client_id), "%s", json_string_value(v));
			if ((v = json_object_get(j, "client_secret")) && json_is_string(v) && json_string_length(v) < sizeof(t->secret))
				snprintf(t->secret, sizeof(t->secret), "%s", json_string_value(v));
		}
		json_decref(j);
		return 0;
	}
	if (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0)
		return mf_err_set(err, 415, "unsupported_media_type",
				  "send application/x-www-form-urlencoded or application/json");
	if (mf_form_get(body, len, "grant_type", grant, glen) < 0 ||
	    (!t->basic && (mf_form_get(body, len, "client_id", t->client_id, sizeof(t->client_id)) < 0 ||
			   mf_form_get(body, len, "client_secret", t->secret, sizeof(t->secret)) < 0)))
		return mf_err_set(err, 400, "invalid_request", "a form field is malformed or too long");
	return 0;
}

static void handle_token(gw_req_t *req, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	tn_worker_t *tw = w ? w->tn : NULL;
	const char *auth = gw_req_header(req, "authorization");
	char grant[64], key[96];
	tok_t *t;
	mf_err_t err;
	uint64_t ra;
	const mf_config_t *cfg;

	if (tw == NULL || w->pg == NULL || tw->ring == NULL) {
		gw_respond_error(req, 503, "not_ready", "the server cannot issue tokens yet");
		return;
	}
	cfg = tw->tn->cfg;
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	gw_req_set_data(req, t, tok_free);
	t->req = req;
	t->tw = tw;
	if (auth && strncasecmp(auth, "Basic ", 6) == 0) {
		unsigned char dec[200];
		size_t n = 0;
		const char *b64 = auth + 6;
		char *colon;

		t->basic = true;
		if (sodium_base642bin(dec, sizeof(dec) - 1, b64, strlen(b64), NULL, &n, NULL,
				      sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    (colon = memchr(dec, ':', n)) == NULL ||
		    mf_form_decode((char *)dec, (size_t)(colon - (char *)dec), t->client_id, sizeof(t->client_id)) < 0 ||
		    mf_form_decode(colon + 1, n - (size_t)(colon + 1 - (char *)dec), t->secret, sizeof(t->secret)) < 0) {
			sodium_memzero(dec, sizeof(dec));
			oauth_error(req, 401, "invalid_client", "malformed Basic credentials", 0);
			return;
		}
		sodium_memzero(dec, sizeof(dec));
	}
	if (tok_params(req, grant, sizeof(grant), t, &err) < 0) {
		if (err.status == 415)
			gw_respond_problem(req, &err);
		else
			oauth_error(req, 400, "invalid_request", err.detail, 0);
		return;
	}
	if (grant[0] == '\0') {
		oauth_error(req, 400, "invalid_request", "grant_type is required", 0);
		return;
	}
	if (strcmp(grant, "client_credentials") != 0) {
		oauth_error(req, 400, "unsupported_grant_type", "only client_credentials is supported", 0);
		return;
	}
	if (t->client_id[0] == '\0' || t->secret[0] == '\0') {
		oauth_error(req, 401, "invalid_client", "client_id and client_secret are required", 0);
		return;
	}
	/* repeated failures: refuse before any work */
	snprintf(key, sizeof(key), "ocf:%s", t->client_id);
	if (!gw_gcra_check(tw->tn->gcra, key, strlen(key), cfg->auth_fail_per_min / 60.0, cfg->auth_fail_per_min,
			   mono_ns(), &ra) ||
	    (snprintf(key, sizeof(key), "oip:%s", gw_req_peer(req)),
	     !gw_gcra_check(tw->tn->gcra, key, strlen(key), cfg->auth_fail_per_min * IP_FACTOR / 60.0,
			    cfg->auth_fail_per_min * IP_FACTOR, mono_ns(), &ra))) {
		oauth_error(req, 429, "rate_limited", "too many failed attempts; retry later",
			    ra / 1000 + 1 > 0 ? (int)(ra / 1000 + 1) : 1);
		return;
	}
	if (!tn_uuid_ok(t->client_id)) {
		tok_failed(t);
		return;
	}
	{
		const char *p[1] = { t->client_id };

		if (mf_pg_query(w->pg, "SELECT c.tenant_id, c.roles::text, encode(c.secret_hash, 'hex'), "
				       "(t.status = 'active' AND coalesce(p.status, 'active') = 'active') "
				       "FROM platform.api_clients c JOIN platform.tenants t ON t.id = c.tenant_id "
				       "LEFT JOIN platform.tenants p ON p.id = t.parent_id "
				       "WHERE c.id = $1::uuid AND c.deleted_at IS NULL AND t.deleted_at IS NULL",
				1, p, tok_found, t) < 0)
			gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
	}
}

int tn_clients_routes(tn_t *tn, gw_router_t *api)
{
	if (gw_router_add(api, "POST", "/oauth/token", handle_token, tn, 0) < 0 ||
	    tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/api-clients", POL_API_CLIENTS, GW_ROUTE_JSON_BODY,
		     create_client) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/api-clients", POL_API_CLIENTS, 0, list_clients) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/api-clients/{client_id}", POL_API_CLIENTS, 0,
		     get_client) < 0 ||
	    tn_route(api, tn, "DELETE", "/v1/tenants/{tenant_id}/api-clients/{client_id}", POL_API_CLIENTS, 0,
		     delete_client) < 0)
		return -1;
	return 0;
}

/* ---- blocking: bootstrap and dev ---- */

int tn_bootstrap(PGconn *c, const char *name, char **json, mf_err_t *err)
{
	char id[37], secret[64], hex[68], tid[37];
	PGresult *r;
	int rc = -1;

	*json = NULL;
	r = mf_pg_exec(c, "BEGIN", 0, NULL, err);
	if (r == NULL)
		return -1;
	PQclear(r);
	/* the unique index on the platform row makes a concurrent bootstrap
	 * wait here and then find the row */
	tn_uuid_new(tid);
	{
		const char *p[1] = { tid };

		r = mf_pg_exec(c, "INSERT INTO platform.tenants (id, kind, name, slug) VALUES ($1::uuid, 'platform', "
			     "'Platform', 'platform') ON CONFLICT DO NOTHING", 1, p, err);
	}
	if (r == NULL)
		goto rollback;
	PQclear(r);
	r = mf_pg_exec(c, "SELECT id FROM platform.tenants WHERE kind = 'platform'", 0, NULL, err);
	if (r == NULL || PQntuples(r) != 1) {
		if (r)
			mf_err_set(err, 500, "internal_error", "no platform tenant");
		PQclear(r);
		goto rollback;
	}
	snprintf(tid, sizeof(tid), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	tn_uuid_new(id);
	new_secret(secret, hex);
	{
		const char *p[4] = { id, tid, name, hex };

		r = mf_pg_exec(c, "INSERT INTO platform.api_clients (id, tenant_id, name, roles, secret_hash, created_by) "
			     "VALUES ($1::uuid, $2::uuid, $3, '{platform_admin}', $4::bytea, 'bootstrap')", 4, p, err);
	}
	if (r == NULL)
		goto rollback;
	PQclear(r);
	{
		const char *p[2] = { tid, id };

		r = mf_pg_exec(c, "INSERT INTO platform.audit_events (tenant_id, actor, action, target) "
			     "VALUES ($1::uuid, 'bootstrap', 'api_client.create', $2)", 2, p, err);
	}
	if (r == NULL)
		goto rollback;
	PQclear(r);
	r = mf_pg_exec(c, "COMMIT", 0, NULL, err);
	if (r == NULL)
		goto out;
	PQclear(r);
	if (asprintf(json, "{\"tenant_id\":\"%s\",\"client_id\":\"%s\",\"client_secret\":\"%s\"}", tid, id,
		     secret) < 0) {
		*json = NULL;
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	rc = 0;
	goto out;
rollback:
	PQclear(PQexec(c, "ROLLBACK"));
out:
	sodium_memzero(secret, sizeof(secret));
	return rc;
}

bool tn_client_valid(PGconn *c, const char *client_id, const char *secret)
{
	unsigned char digest[32], stored[32];
	const char *p[1] = { client_id };
	PGresult *r;
	bool ok = false;
	size_t n = 0;

	if (!tn_uuid_ok(client_id))
		return false;
	r = PQexecParams(c, "SELECT encode(secret_hash, 'hex') FROM platform.api_clients "
			    "WHERE id = $1::uuid AND deleted_at IS NULL", 1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	    sodium_hex2bin(stored, sizeof(stored), PQgetvalue(r, 0, 0), 64, NULL, &n, NULL) == 0 && n == 32) {
		crypto_generichash(digest, sizeof(digest), (const unsigned char *)secret, strlen(secret), NULL, 0);
		ok = sodium_memcmp(digest, stored, sizeof(digest)) == 0;
	}
	PQclear(r);
	return ok;
}
