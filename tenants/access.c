/*
 * access.c - the guard in front of every /v1 and /portal/v1 route that
 * needs a token, and the one place where reach and permissions are
 * decided (policies/authz.c holds the rules).  A handler registered with
 * tn_route() runs only after:
 *
 *   1. a Bearer token was verified (or found in the worker's cache of
 *      verified tokens; signature checks on a cache miss are limited per
 *      client IP first, so a flood of junk tokens costs little CPU);
 *   2. its subject (API client or user) is still live and belongs to the
 *      token's tenant, and that tenant and its parent are active;
 *   3. the tenant's and the API client's rate limits admitted the call
 *      (the tenant comes from the verified token only);
 *   4. the route's {tenant_id} exists, is within the caller's reach
 *      (else 404, exactly like a missing tenant) and the caller holds the
 *      route's permission there (else 403).
 *
 * The handler then finds ctx->me and ctx->target filled: the tenant schema
 * it may touch is ctx->target.schema, never anything the client sent.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/log.h"
#include "tenants/tn.h"

struct tn_route {
	struct tn_route *next;		/* in tn->routes, freed by tn_free */
	tn_t *tn;
	enum pol_perm perm;
	bool has_tenant;
	tn_handler_fn fn;
	tn_call_fn ext;			/* a handler of another module (tn_guard_add) */
	void *ext_arg;
};

bool tn_uuid_ok(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };

	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0, d = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (s[i] != '-')
				return false;
			d++;
		} else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
			return false;	/* canonical form: lower-case hex only */
		}
	}
	return true;
}

void tn_uuid_new(char out[37])
{
	unsigned char b[16];

	randombytes_buf(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

void tn_respond_unauthorized(gw_req_t *req, const char *detail)
{
	gw_res_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
	gw_respond_error(req, 401, "invalid_token", "%s", detail);
}

/* Copies the used part of a claims record (the role table is mostly empty). */
static void claims_copy(gw_claims_t *dst, const gw_claims_t *src)
{
	memcpy(dst, src, offsetof(gw_claims_t, roles));
	memcpy(dst->roles, src->roles, (size_t)src->nroles * sizeof(src->roles[0]));
	memcpy((char *)dst + offsetof(gw_claims_t, roles) + sizeof(dst->roles),
	       (const char *)src + offsetof(gw_claims_t, roles) + sizeof(src->roles),
	       sizeof(*src) - offsetof(gw_claims_t, roles) - sizeof(src->roles));
}

static void ctx_free(void *p)
{
	tn_ctx_t *ctx = p;

	json_decref(ctx->body);
	json_decref(ctx->out);
	free(ctx->text);
	free(ctx->claim_domains);
	if (ctx->data_free)
		ctx->data_free(ctx->data);
	if (ctx->call.data_free)
		ctx->call.data_free(ctx->call.data);
	if (ctx->pre_free)
		ctx->pre_free(ctx->call.pre);
	free(ctx);
}

/* Decimal text of v >= 0 at the end of buf[24]; returns its start.  The
 * rate-limit headers go on every authenticated answer: no printf. */
static const char *utoa(long long v, char buf[24])
{
	char *p = buf + 23;

	*p = '\0';
	if (v < 0)
		v = 0;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v && p > buf);
	return p;
}

static void rl_headers(gw_req_t *req, const gw_rl_result_t *r)
{
	char v[24];

	gw_res_header(req, "RateLimit-Limit", utoa(r->limit, v));
	gw_res_header(req, "RateLimit-Remaining", utoa(r->remaining, v));
	gw_res_header(req, "RateLimit-Reset", utoa(r->reset_s > 0 ? r->reset_s : 1, v));
}

#define COUNT(tw, field) atomic_fetch_add_explicit(&(tw)->field, 1, memory_order_relaxed)

void tn_worker_stats(const tn_worker_t *tw, tn_stats_t *out)
{
	tn_worker_t *t = (tn_worker_t *)tw;

	out->verified = atomic_load_explicit(&t->n_verified, memory_order_relaxed);
	out->cached = atomic_load_explicit(&t->n_cached, memory_order_relaxed);
	out->refused = atomic_load_explicit(&t->n_refused, memory_order_relaxed);
	out->ip_limited = atomic_load_explicit(&t->n_ip_limited, memory_order_relaxed);
	out->rate_limited = atomic_load_explicit(&t->n_rate_limited, memory_order_relaxed);
}

static void rate_limited(tn_ctx_t *ctx, const gw_rl_result_t *r, const char *what)
{
	mf_err_t err;

	COUNT(ctx->tw, n_rate_limited);
	rl_headers(ctx->req, r);
	mf_err_set(&err, 429, "rate_limited", "the %s rate limit of %d requests is used up; retry after %d s",
		   what, r->limit, r->reset_s > 0 ? r->reset_s : 1);
	err.retry_after = r->reset_s > 0 ? r->reset_s : 1;
	gw_respond_problem(ctx->req, &err);
}

static void decide(tn_ctx_t *ctx);

static void target_found(const tn_tenant_t *t, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	pol_tenant_t pt;

	if (err) {
		gw_respond_problem(ctx->req, err);
		return;
	}
	if (t == NULL || t->status == TN_DELETED) {
		gw_respond_error(ctx->req, 404, "not_found", "no such tenant");
		return;
	}
	ctx->target = *t;
	pt.id = ctx->target.id;
	pt.parent_id = ctx->target.parent_id;
	pt.kind = ctx->target.kind;
	switch (pol_decide(&ctx->who, &pt, ctx->route->perm)) {
	case POL_NOT_FOUND:
		gw_respond_error(ctx->req, 404, "not_found", "no such tenant");
		return;
	case POL_FORBIDDEN:
		gw_respond_error(ctx->req, 403, "forbidden", "your roles do not allow this on that tenant");
		return;
	case POL_ALLOW:
		break;
	}
	gw_req_set_tenant(ctx->req, ctx->target.id);
	ctx->route->fn(ctx);
}

static void decide(tn_ctx_t *ctx)
{
	if (ctx->route->has_tenant) {
		tn_dir_tenant(ctx->tw->dir, gw_req_param(ctx->req, "tenant_id"), target_found, ctx);
		return;
	}
	/* no tenant in the path: the permission applies to the caller's own */
	target_found(&ctx->me, NULL, ctx);
}

static void client_rl_done(enum gw_rl_outcome o, const gw_rl_result_t *r, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (o == GW_RL_REJECT) {
		char key[48];

		/* a refused call consumes nothing: give the tenant its unit back */
		snprintf(key, sizeof(key), "t:%s", ctx->me.id);
		gw_rl_refund(ctx->tw->w->rl, key, ctx->me.plan.window_s);
		rate_limited(ctx, r, "API client");
		return;
	}
	/* report the tighter of the two budgets */
	rl_headers(ctx->req, r->remaining < ctx->rl_tenant.remaining ? r : &ctx->rl_tenant);
	decide(ctx);
}

static void tenant_rl_done(enum gw_rl_outcome o, const gw_rl_result_t *r, void *arg)
{
	tn_ctx_t *ctx = arg;
	gw_rl_result_t cr;

	if (o == GW_RL_REJECT) {
		rate_limited(ctx, r, "tenant");
		return;
	}
	ctx->rl_tenant = *r;
	if (ctx->claims.issuer != 0) {
		/* an external issuer's subject has no API client of ours */
		rl_headers(ctx->req, r);
		decide(ctx);
		return;
	}
	o = gw_rl_acquire(ctx->tw->w->rl, ctx->actor, ctx->me.plan.client_requests, ctx->me.plan.window_s, &cr,
			  client_rl_done, ctx);
	if (o != GW_RL_PENDING)
		client_rl_done(o, &cr, ctx);
}

static void limit(tn_ctx_t *ctx)
{
	char key[48];
	gw_rl_result_t r;
	enum gw_rl_outcome o;

	if (ctx->tw->w->rl == NULL) {
		decide(ctx);
		return;
	}
	snprintf(key, sizeof(key), "t:%s", ctx->me.id);
	o = gw_rl_acquire(ctx->tw->w->rl, key, ctx->me.plan.tenant_requests, ctx->me.plan.window_s, &r,
			  tenant_rl_done, ctx);
	if (o != GW_RL_PENDING)
		tenant_rl_done(o, &r, ctx);
}

static void me_found(const tn_tenant_t *t, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	unsigned roles = 0;

	if (err) {
		gw_respond_problem(ctx->req, err);
		return;
	}
	if (t == NULL || t->status != TN_ACTIVE || !t->parent_active) {
		COUNT(ctx->tw, n_refused);
		tn_respond_unauthorized(ctx->req, "the token's tenant is suspended or gone");
		return;
	}
	ctx->me = *t;
	for (int i = 0; i < ctx->claims.nroles; i++)
		roles |= pol_role_bit(ctx->claims.roles[i]);
	ctx->who.tenant.id = ctx->me.id;
	ctx->who.tenant.parent_id = ctx->me.parent_id;
	ctx->who.tenant.kind = ctx->me.kind;
	/* a role its tenant's kind cannot hold grants nothing */
	ctx->who.roles = roles & pol_roles_allowed(ctx->me.kind);
	limit(ctx);
}

static void principal_found(const char *tenant_id, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;

	if (err) {
		gw_respond_problem(ctx->req, err);
		return;
	}
	if (tenant_id == NULL || strcmp(tenant_id, ctx->claims.tenant_id) != 0) {
		COUNT(ctx->tw, n_refused);
		tn_respond_unauthorized(ctx->req, "the token's client or user no longer exists");
		return;
	}
	tn_dir_tenant(ctx->tw->dir, ctx->claims.tenant_id, me_found, ctx);
}

/* A module's state that never reached a context: freed at once, since the
 * guard answers right away in each case that calls this. */
static void pre_drop(void *pre, void (*pre_free)(void *))
{
	if (pre_free)
		pre_free(pre);
}

static void guard_run(gw_req_t *req, const struct tn_route *route, void *pre, void (*pre_free)(void *))
{
	mf_worker_t *w = gw_req_worker_data(req);
	tn_worker_t *tw = w ? w->tn : NULL;
	const char *auth = gw_req_header(req, "authorization"), *token, *reason = NULL;
	const gw_claims_t *cached;
	tn_ctx_t *ctx;
	size_t len;
	long long now = time(NULL);

	if (tw == NULL || tw->ring == NULL || w->pg == NULL) {
		gw_respond_error(req, 503, "not_ready", "no database is configured or the server is starting");
		pre_drop(pre, pre_free);
		return;
	}
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
		tn_respond_unauthorized(req, "a Bearer token is required");
		pre_drop(pre, pre_free);
		return;
	}
	token = auth + 7;
	while (*token == ' ')
		token++;
	len = strlen(token);
	if (len == 0 || len > GW_JWT_MAX_TOKEN) {
		tn_respond_unauthorized(req, "the token is malformed");
		pre_drop(pre, pre_free);
		return;
	}
	/* the claims (most of the context's size, for 32 roles of 64 bytes)
	 * are written before they are read: zero only the rest */
	ctx = malloc(sizeof(*ctx));
	if (ctx)
		memset((char *)ctx + offsetof(tn_ctx_t, me), 0, sizeof(*ctx) - offsetof(tn_ctx_t, me));
	if (ctx == NULL) {
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		pre_drop(pre, pre_free);
		return;
	}
	gw_req_set_data(req, ctx, ctx_free);
	ctx->call.pre = pre;
	ctx->pre_free = pre_free;
	ctx->req = req;
	ctx->tw = tw;
	ctx->tn = route->tn;
	ctx->route = route;
	cached = gw_tokcache_get(tw->tokens, token, len, now);
	if (cached) {
		COUNT(tw, n_cached);
		claims_copy(&ctx->claims, cached);
	} else {
		const mf_config_t *cfg = tw->tn->cfg;
		const char *ip = gw_req_peer(req);
		struct timespec ts;
		uint64_t retry_ms = 0;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (!gw_gcra_take(tw->tn->gcra, ip, strlen(ip), cfg->auth_ip_rate, cfg->auth_ip_burst,
				  (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, &retry_ms)) {
			mf_err_t err;

			COUNT(tw, n_ip_limited);
			mf_err_set(&err, 429, "rate_limited", "too many token checks from this address; retry later");
			err.retry_after = (int)((retry_ms + 999) / 1000);
			if (err.retry_after < 1)
				err.retry_after = 1;
			gw_respond_problem(req, &err);
			return;
		}
		if (gw_jwt_verify(tw->ring, token, len, now, &ctx->claims, &reason) < 0) {
			/* the reason is a fixed word; the token itself is never logged */
			mf_info("auth", "token refused", MF_S("request_id", gw_req_id(req)), MF_S("reason", reason),
				MF_S("remote", ip));
			COUNT(tw, n_refused);
			tn_respond_unauthorized(req, "the token is invalid or expired");
			return;
		}
		COUNT(tw, n_verified);
		gw_tokcache_put(tw->tokens, token, len, &ctx->claims);
	}
	snprintf(ctx->actor, sizeof(ctx->actor), "s:%.44s", ctx->claims.sub);
	if (ctx->claims.issuer != 0) {
		/* an external issuer vouches for its own subjects */
		snprintf(ctx->actor, sizeof(ctx->actor), "x:%.44s", ctx->claims.sub);
		tn_dir_tenant(tw->dir, ctx->claims.tenant_id, me_found, ctx);
		return;
	}
	tn_dir_principal(tw->dir, ctx->claims.sub, principal_found, ctx);
}

static void guard(gw_req_t *req, void *arg)
{
	guard_run(req, arg, NULL, NULL);
}

void tn_guard_enter(tn_guard_t *g, gw_req_t *req, void *pre, void (*pre_free)(void *))
{
	guard_run(req, g, pre, pre_free);
}

int tn_route(gw_router_t *r, tn_t *tn, const char *method, const char *pattern, enum pol_perm perm,
	     unsigned flags, tn_handler_fn fn)
{
	struct tn_route *route = calloc(1, sizeof(*route));

	if (route == NULL)
		return -1;
	route->tn = tn;
	route->perm = perm;
	route->has_tenant = strstr(pattern, "{tenant_id}") != NULL;
	route->fn = fn;
	if (gw_router_add(r, method, pattern, guard, route, flags) < 0) {
		free(route);
		return -1;
	}
	route->next = tn->routes;
	tn->routes = route;
	return 0;
}

/* The guard's answer for a handler of another module: what it proved, in
 * the public shape of tenants.h, pointing into ctx (valid until the
 * response). */
static void ext_handler(tn_ctx_t *ctx)
{
	tn_call_t *c = &ctx->call;

	c->req = ctx->req;
	c->tenant_id = ctx->target.id;
	c->schema = ctx->target.schema;
	c->kind = ctx->target.kind;
	c->caller_tenant_id = ctx->me.id;
	c->actor = ctx->actor;
	c->claims = &ctx->claims;
	ctx->route->ext(c, ctx->route->ext_arg);
}

bool tn_call_has_role(const tn_call_t *call, const char *role)
{
	const gw_claims_t *c = call->claims;

	for (int i = 0; c && i < c->nroles; i++)
		if (strcmp(c->roles[i], role) == 0)
			return true;
	return false;
}

int tn_guard_add(gw_router_t *r, tn_t *tn, const char *method, const char *pattern, enum pol_perm perm,
		 unsigned flags, tn_call_fn fn, void *arg)
{
	if (tn_route(r, tn, method, pattern, perm, flags, ext_handler) < 0)
		return -1;
	tn->routes->ext = fn;
	tn->routes->ext_arg = arg;
	return 0;
}

tn_guard_t *tn_guard_new(tn_t *tn, enum pol_perm perm, tn_call_fn fn, void *arg)
{
	struct tn_route *route = calloc(1, sizeof(*route));

	if (route == NULL)
		return NULL;
	route->tn = tn;
	route->perm = perm;
	route->fn = ext_handler;
	route->ext = fn;
	route->ext_arg = arg;
	route->next = tn->routes;
	tn->routes = route;
	return route;
}

void tn_routes_free(tn_t *tn)
{
	while (tn->routes) {
		struct tn_route *next = tn->routes->next;

		free(tn->routes);
		tn->routes = next;
	}
}
