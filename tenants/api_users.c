/*
 * api_users.c - portal users: created by an msp or client admin, signing in
 * at POST /portal/v1/login with email and password.
 *
 * Passwords are hashed with Argon2id (libsodium crypto_pwhash_str, the
 * "interactive" limits: 64 MiB, a few tens of milliseconds) on the offload
 * pool, never on an event loop.  Failed logins are limited per account and
 * per IP; an unknown email costs the same hash as a known one.  When the
 * request's Host is a domain in some tenant's branding, only that tenant's
 * users can sign in there (the white-label portal of CONTRACT section 9).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/json.h"
#include "core/log.h"
#include "core/offload.h"
#include "tenants/tn.h"

/* one address may fail this many times more than one account: a few
 * users behind one NAT should not lock each other out */
#define IP_FACTOR 5
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define USER_COLS "id, tenant_id, email, name, roles::text, " TS("created_at")
#define PW_MIN 12
#define PW_MAX 256

static json_t *user_json(const PGresult *r, int row)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s}", "id", PQgetvalue(r, row, 0), "tenant_id",
		PQgetvalue(r, row, 1), "email", PQgetvalue(r, row, 2), "name", PQgetvalue(r, row, 3),
		"roles", tn_pg_text_array(PQgetvalue(r, row, 4)), "created_at", PQgetvalue(r, row, 5));
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* An email address, lower-cased into out: local@domain, printable, no
 * spaces, at most 254 bytes. */
static bool email_norm(const json_t *v, char out[256])
{
	const char *s = json_string_value(v), *at;
	size_t n = s ? json_string_length(v) : 0;

	if (s == NULL || n < 3 || n > 254 || strlen(s) != n)
		return false;
	at = strchr(s, '@');
	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[n] = '\0';
	return true;
}

/* ---- Argon2id jobs ---- */

typedef struct pwjob {
	char password[PW_MAX + 1];
	char hash[crypto_pwhash_STRBYTES];
	bool verify;			/* verify password against hash, else hash it */
	bool ok;
	void (*then)(struct pwjob *j);
	void *ctx;
} pwjob_t;

static void pw_work(void *arg)
{
	pwjob_t *j = arg;

	if (j->verify)
		j->ok = crypto_pwhash_str_verify(j->hash, j->password, strlen(j->password)) == 0;
	else
		j->ok = crypto_pwhash_str(j->hash, j->password, strlen(j->password),
					  crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0;
	sodium_memzero(j->password, sizeof(j->password));
}

static void pw_done(void *arg)
{
	pwjob_t *j = arg;

	j->then(j);
}

static void pw_free(void *p)
{
	sodium_memzero(p, sizeof(pwjob_t));
	free(p);
}

/* ---- POST /v1/tenants/{tenant_id}/users ---- */

static void create_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *out = ctx->out;

	ctx->out = NULL;
	gw_respond_json(ctx->req, 201, out);
}

static void create_inserted(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (err && err->status == 409) {
		mf_err_set(&ctx->err, 409, "email_taken", "this tenant already has a user with this email");
		tn_abort(ctx, &ctx->err);
		return;
	}
	if (tn_failed(ctx, err))
		return;
	ctx->out = user_json(res, 0);
	tn_audit_commit(ctx, ctx->target.id, "user.create", ctx->id,
		     json_pack("{s:O}", "roles", json_object_get(ctx->out, "roles")), create_done);
}

static void create_begun(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	pwjob_t *j = ctx->data;
	char *roles = tn_pg_array_literal(json_object_get(ctx->body, "roles"));
	const char *name = json_string_value(json_object_get(ctx->body, "name"));
	const char *p[7] = { ctx->id, ctx->target.id, ctx->text, name ? name : "", roles ? roles : "{}", j->hash,
			     ctx->actor };

	tn_q(ctx, "INSERT INTO platform.users (id, tenant_id, email, name, roles, password_hash, created_by) "
		  "VALUES ($1::uuid, $2::uuid, $3, $4, $5::text[], $6, $7) RETURNING " USER_COLS, 7, p, create_inserted);
	free(roles);
}

static void create_hashed(pwjob_t *j)
{
	tn_ctx_t *ctx = j->ctx;

	if (!j->ok) {
		gw_respond_error(ctx->req, 503, "over_capacity", "cannot hash the password now; retry");
		return;
	}
	tn_begin(ctx, create_begun);
}

static void create_user(tn_ctx_t *ctx)
{
	static const char *const keys[] = { "email", "password", "name", "roles", NULL };
	mf_err_t err;
	json_t *errors = NULL, *pw, *name;
	char email[256];
	pwjob_t *j;
	const char *bad = NULL, *msg = NULL;

	if (tn_body(ctx, keys) == NULL)
		return;
	pw = json_object_get(ctx->body, "password");
	name = json_object_get(ctx->body, "name");
	if (!email_norm(json_object_get(ctx->body, "email"), email))
		bad = "/email", msg = "must be an email address of at most 254 characters";
	else if (!json_is_string(pw) || json_string_length(pw) < PW_MIN || json_string_length(pw) > PW_MAX ||
		 strlen(json_string_value(pw)) != json_string_length(pw))
		bad = "/password", msg = "must be 12 to 256 characters";
	else if (name && (!json_is_string(name) || json_string_length(name) > 200))
		bad = "/name", msg = "must be at most 200 characters";
	if (bad) {
		tn_invalid(ctx, bad, msg);
		return;
	}
	if (json_object_get(ctx->body, "roles") == NULL)
		json_object_set_new(ctx->body, "roles",
				    json_pack("[s]", ctx->target.kind == POL_MSP ? "msp_operator" : "client_user"));
	if (tn_roles_check(ctx->target.kind, json_object_get(ctx->body, "roles"), &err, &errors) < 0) {
		gw_respond_problem_ext(ctx->req, &err, json_pack("{s:o}", "errors", errors));
		return;
	}
	ctx->text = strdup(email);
	j = calloc(1, sizeof(*j));
	if (j == NULL || ctx->text == NULL) {
		free(j);
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	ctx->data = j;
	ctx->data_free = pw_free;
	memcpy(j->password, json_string_value(pw), json_string_length(pw) + 1);
	/* the body holds the password too: drop it now */
	json_object_del(ctx->body, "password");
	j->then = create_hashed;
	j->ctx = ctx;
	tn_uuid_new(ctx->id);
	if (mf_offload_submit(ctx->tn->offload, gw_req_base(ctx->req), pw_work, pw_done, j) < 0)
		gw_respond_error(ctx->req, 503, "over_capacity", "too many password operations; retry");
}

/* ---- GET list / GET one / DELETE ---- */

static const tn_subres_t users = {
	.noun = "user",
	.param = "user_id",
	.list_sql = "SELECT " USER_COLS " FROM platform.users WHERE tenant_id = $1::uuid AND deleted_at IS NULL "
		    "AND id > coalesce(nullif($2, ''), '00000000-0000-0000-0000-000000000000')::uuid "
		    "ORDER BY id LIMIT $3::int",
	.get_sql = "SELECT " USER_COLS " FROM platform.users WHERE tenant_id = $1::uuid AND id = $2::uuid "
		   "AND deleted_at IS NULL",
	.delete_sql = "UPDATE platform.users SET deleted_at = now() WHERE tenant_id = $1::uuid AND id = $2::uuid "
		      "AND deleted_at IS NULL RETURNING id",
	.delete_action = "user.delete",
	.row_json = user_json,
};

static void list_users(tn_ctx_t *ctx)
{
	tn_subres_list(ctx, &users);
}

static void get_user(tn_ctx_t *ctx)
{
	tn_subres_get(ctx, &users);
}

static void delete_user(tn_ctx_t *ctx)
{
	tn_subres_delete(ctx, &users);
}

/* ---- POST /portal/v1/login ---- */

typedef struct login {
	gw_req_t *req;
	tn_worker_t *tw;
	char email[256];
	char user_id[37], tenant_id[37];
	char *roles;
	bool found, active;
	pwjob_t job;
} login_t;

static void login_free(void *p)
{
	login_t *l = p;

	free(l->roles);
	sodium_memzero(l, sizeof(*l));
	free(l);
}

static void login_fail(login_t *l)
{
	const mf_config_t *cfg = l->tw->tn->cfg;
	double rate = cfg->auth_fail_per_min / 60.0;
	char key[300];
	uint64_t ra;

	snprintf(key, sizeof(key), "lfa:%s", l->email);
	gw_gcra_take(l->tw->tn->gcra, key, strlen(key), rate, cfg->auth_fail_per_min, mono_ns(), &ra);
	snprintf(key, sizeof(key), "lfi:%s", gw_req_peer(l->req));
	gw_gcra_take(l->tw->tn->gcra, key, strlen(key), rate * IP_FACTOR, cfg->auth_fail_per_min * IP_FACTOR,
		     mono_ns(), &ra);
	mf_info("auth", "portal login failed", MF_S("request_id", gw_req_id(l->req)), MF_S("remote", gw_req_peer(l->req)));
	gw_res_header(l->req, "Cache-Control", "no-store");
	gw_respond_error(l->req, 401, "invalid_credentials", "the email or password is not right");
}

static void login_verified(pwjob_t *j)
{
	login_t *l = j->ctx;
	json_t *out = NULL;
	mf_err_t err;

	if (!j->ok || !l->found || !l->active) {
		login_fail(l);
		return;
	}
	if (tn_issue_token(l->tw, l->user_id, l->tenant_id, l->roles, &out, &err) < 0) {
		gw_respond_problem(l->req, &err);
		return;
	}
	gw_res_header(l->req, "Cache-Control", "no-store");
	gw_respond_json(l->req, 200, out);
}

static void login_found(const PGresult *res, const mf_err_t *err, void *arg)
{
	login_t *l = arg;

	if (err) {
		gw_respond_problem(l->req, err);
		return;
	}
	/* several accounts with this email and no portal domain to choose:
	 * treat like an unknown one (the user signs in at their portal) */
	if (PQntuples(res) == 1) {
		l->found = true;
		snprintf(l->user_id, sizeof(l->user_id), "%s", PQgetvalue(res, 0, 0));
		snprintf(l->tenant_id, sizeof(l->tenant_id), "%s", PQgetvalue(res, 0, 1));
		l->roles = strdup(PQgetvalue(res, 0, 2));
		snprintf(l->job.hash, sizeof(l->job.hash), "%s", PQgetvalue(res, 0, 3));
		l->active = strcmp(PQgetvalue(res, 0, 4), "t") == 0 && l->roles != NULL;
	} else {
		snprintf(l->job.hash, sizeof(l->job.hash), "%s", l->tw->tn->dummy_hash);
	}
	l->job.verify = true;
	l->job.then = login_verified;
	l->job.ctx = l;
	if (mf_offload_submit(l->tw->tn->offload, gw_req_base(l->req), pw_work, pw_done, &l->job) < 0)
		gw_respond_error(l->req, 503, "over_capacity", "too many sign-ins at once; retry");
}

void tn_portal_login(gw_req_t *req, const char *portal_tenant)
{
	mf_worker_t *w = gw_req_worker_data(req);
	char tid[37];
	/* copied first: the caller's copy may go with the request data below */
	const char *tenant_id = portal_tenant ? (snprintf(tid, sizeof(tid), "%s", portal_tenant), tid) : NULL;
	tn_worker_t *tw = w ? w->tn : NULL;
	const mf_config_t *cfg;
	mf_err_t err;
	json_t *body, *pw;
	login_t *l;
	char key[300], host[256];
	const char *h = gw_req_header(req, "host");
	uint64_t ra;

	if (tw == NULL || w->pg == NULL || tw->ring == NULL) {
		gw_respond_error(req, 503, "not_ready", "sign-in is not available yet");
		return;
	}
	cfg = tw->tn->cfg;
	body = gw_req_json(req, &err);
	if (body == NULL) {
		gw_respond_problem(req, &err);
		return;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL) {
		json_decref(body);
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	gw_req_set_data(req, l, login_free);
	l->req = req;
	l->tw = tw;
	pw = json_object_get(body, "password");
	if (!json_is_object(body) || json_object_size(body) != 2 || !email_norm(json_object_get(body, "email"), l->email) ||
	    !json_is_string(pw) || json_string_length(pw) > PW_MAX || strlen(json_string_value(pw)) != json_string_length(pw)) {
		json_decref(body);
		gw_respond_error(req, 400, "validation_failed", "send {\"email\", \"password\"}");
		return;
	}
	memcpy(l->job.password, json_string_value(pw), json_string_length(pw) + 1);
	json_decref(body);
	snprintf(key, sizeof(key), "lfa:%s", l->email);
	if (!gw_gcra_check(tw->tn->gcra, key, strlen(key), cfg->auth_fail_per_min / 60.0, cfg->auth_fail_per_min,
			   mono_ns(), &ra) ||
	    (snprintf(key, sizeof(key), "lfi:%s", gw_req_peer(req)),
	     !gw_gcra_check(tw->tn->gcra, key, strlen(key), cfg->auth_fail_per_min * IP_FACTOR / 60.0,
			    cfg->auth_fail_per_min * IP_FACTOR, mono_ns(), &ra))) {
		mf_err_set(&err, 429, "rate_limited", "too many failed sign-ins; retry later");
		err.retry_after = (int)(ra / 1000) + 1;
		gw_respond_problem(req, &err);
		return;
	}
	if (tenant_id) {
		/* a portal resolved by its verified domain or its path: only
		 * that tenant's users sign in there */
		const char *p[2] = { l->email, tenant_id };

		if (mf_pg_query(w->pg,
			"SELECT u.id, u.tenant_id, u.roles::text, u.password_hash, "
			"(t.status = 'active' AND coalesce(pt.status, 'active') = 'active') "
			"FROM platform.users u JOIN platform.tenants t ON t.id = u.tenant_id "
			"LEFT JOIN platform.tenants pt ON pt.id = t.parent_id "
			"WHERE u.email = $1 AND u.tenant_id = $2::uuid AND u.deleted_at IS NULL AND t.deleted_at IS NULL "
			"LIMIT 2", 2, p, login_found, l) < 0)
			gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	/* the portal's host, without a port */
	snprintf(host, sizeof(host), "%s", h ? h : "");
	host[strcspn(host, ":")] = '\0';
	for (char *c = host; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	{
		const char *p[2] = { l->email, host };

		if (mf_pg_query(w->pg,
			"SELECT u.id, u.tenant_id, u.roles::text, u.password_hash, "
			"(t.status = 'active' AND coalesce(pt.status, 'active') = 'active') "
			"FROM platform.users u JOIN platform.tenants t ON t.id = u.tenant_id "
			"LEFT JOIN platform.tenants pt ON pt.id = t.parent_id "
			"WHERE u.email = $1 AND u.deleted_at IS NULL AND t.deleted_at IS NULL AND "
			"(t.branding -> 'domains' ? $2 OR NOT EXISTS (SELECT 1 FROM platform.tenants d "
			" WHERE d.deleted_at IS NULL AND d.branding -> 'domains' ? $2)) LIMIT 2",
			2, p, login_found, l) < 0)
			gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
	}
}

int tn_users_routes(tn_t *tn, gw_router_t *api)
{
	/* POST /portal/v1/login is the portal's route (portal-api/), which
	 * resolves the portal and then calls tn_portal_login */
	if (tn_route(api, tn, "POST", "/v1/tenants/{tenant_id}/users", POL_USERS, GW_ROUTE_JSON_BODY, create_user) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/users", POL_USERS, 0, list_users) < 0 ||
	    tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/users/{user_id}", POL_USERS, 0, get_user) < 0 ||
	    tn_route(api, tn, "DELETE", "/v1/tenants/{tenant_id}/users/{user_id}", POL_USERS, 0, delete_user) < 0)
		return -1;
	return 0;
}
