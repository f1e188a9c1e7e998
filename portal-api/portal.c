/*
 * portal.c - the /portal/v1 routes (portal.h): finding the portal a
 * request is for, the security and CORS headers, the public branding and
 * the sign-in, and the guarded routes, which the engine answers
 * (engine/api_portal.c) once the token is known to belong to the portal.
 *
 * Order of checks, so that nothing about one client shows through another
 * one's portal: the portal (Host or path) must be a live, active client,
 * else 404; then the guard (token, subject, tenant, rate limits); then the
 * token's tenant must be the portal's, else 404 like a missing object.
 * The lookup is one statement per request; a portal's answers are small
 * and its traffic is people, so nothing is cached here.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/offload.h"
#include "core/pg.h"
#include "core/worker.h"
#include "portal-api/pa.h"

enum pa_op {
	OP_BRANDING, OP_LOGIN, OP_TYPES, OP_REQUESTS, OP_SUBMIT, OP_REQUEST, OP_TASKS, OP_DECIDE, OP_STATUS, OP_OPTIONS
};

struct pa_route {
	struct pa_route *next;
	pa_t *pa;
	enum pa_op op;
	char allow[64];			/* OPTIONS: the path's methods */
};

/* One request's state between the portal lookup and the guard; the guard
 * owns it from tn_guard_enter on (call->pre). */
typedef struct pa_req {
	gw_req_t *req;
	const struct pa_route *route;
	char tenant_id[37];
	bool slug_given;
} pa_req_t;

static const struct {
	const char *method, *path;
	enum pa_op op;
	unsigned flags;
} table[] = {
	{ "GET", "/branding", OP_BRANDING, 0 },
	{ "POST", "/login", OP_LOGIN, GW_ROUTE_JSON_BODY },
	{ "GET", "/request-types", OP_TYPES, 0 },
	{ "GET", "/requests", OP_REQUESTS, 0 },
	{ "POST", "/requests", OP_SUBMIT, GW_ROUTE_JSON_BODY },
	{ "GET", "/requests/{request_id}", OP_REQUEST, 0 },
	{ "GET", "/tasks", OP_TASKS, 0 },
	{ "POST", "/tasks/{task_id}/decision", OP_DECIDE, GW_ROUTE_JSON_BODY },
	{ "GET", "/status", OP_STATUS, 0 },
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

/* The portal of a request: $1 the Host (without port, lower-case), $2 the
 * path's slug or NULL.  Columns: id, active, the msp's and the client's
 * own branding, the verified domains (space-separated), and the tenant
 * whose verified domain the Host is (NULL: none). */
static const char resolve_sql[] =
	"WITH h AS (SELECT d.tenant_id FROM platform.portal_domains d "
	"  JOIN platform.tenants x ON x.id = d.tenant_id AND x.deleted_at IS NULL "
	"  WHERE d.domain = $1 AND d.verified_at IS NOT NULL) "
	"SELECT t.id::text, (t.status = 'active' AND coalesce(p.status, 'active') = 'active' "
	"  AND p.deleted_at IS NULL), p.branding::text, t.branding::text, "
	"  array_to_string(ARRAY(SELECT d.domain FROM platform.portal_domains d "
	"    WHERE d.tenant_id = t.id AND d.verified_at IS NOT NULL ORDER BY d.domain), ' '), "
	"  (SELECT tenant_id::text FROM h) "
	"FROM platform.tenants t LEFT JOIN platform.tenants p ON p.id = t.parent_id "
	"WHERE t.deleted_at IS NULL AND t.kind = 'client' AND "
	"CASE WHEN $2::text IS NULL THEN t.id = (SELECT tenant_id FROM h) ELSE t.slug = $2 END";

static void security_headers(gw_req_t *req)
{
	gw_res_header(req, "X-Content-Type-Options", "nosniff");
	gw_res_header(req, "X-Frame-Options", "DENY");
	gw_res_header(req, "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
	gw_res_header(req, "Referrer-Policy", "no-referrer");
	gw_res_header(req, "Strict-Transport-Security", "max-age=31536000");
	gw_res_header(req, "Cross-Origin-Opener-Policy", "same-origin");
	gw_res_header(req, "Cache-Control", "no-store");
	gw_res_header(req, "Vary", "Origin");
}

static bool slug_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

/* The host part of a Host header or an Origin's authority, lower-case,
 * into out; "" when it is not a plain DNS name. */
static void host_of(const char *s, size_t n, char out[256])
{
	size_t k = 0;

	out[0] = '\0';
	if (s == NULL || n == 0 || n > 253)
		return;
	for (size_t i = 0; i < n && s[i] != ':'; i++) {
		char c = (char)tolower((unsigned char)s[i]);

		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '.' || c == '-'))
			return (void)(out[0] = '\0');
		out[k++] = c;
	}
	out[k] = '\0';
}

/* Is origin ("https://host[:port]") one of domains (space-separated)? */
static bool origin_allowed(const char *origin, const char *domains)
{
	const char *a = strstr(origin, "://");
	char host[256];
	size_t n;

	if (a == NULL || (strncmp(origin, "https://", 8) != 0 && strncmp(origin, "http://", 7) != 0))
		return false;
	a += 3;
	n = strcspn(a, "/");
	if (a[n] != '\0')
		return false;		/* an origin has no path */
	host_of(a, n, host);
	if (host[0] == '\0')
		return false;
	n = strlen(host);
	for (const char *d = domains; *d;) {
		size_t len = strcspn(d, " ");

		if (len == n && memcmp(d, host, n) == 0)
			return true;
		d += len;
		while (*d == ' ')
			d++;
	}
	return false;
}

static void not_found(gw_req_t *req)
{
	gw_respond_error(req, 404, "not_found", "no such resource");
}

/* ---- guarded routes ---- */

static void guarded(tn_call_t *call, void *arg)
{
	pa_t *pa = arg;
	const pa_req_t *p = call->pre;

	/* another tenant's token, an msp's included: as if nothing were here */
	if (p == NULL || call->kind != POL_CLIENT || strcmp(call->caller_tenant_id, p->tenant_id) != 0) {
		not_found(call->req);
		return;
	}
	switch (p->route->op) {
	case OP_TYPES: eng_portal_request_types(call, pa->eng); break;
	case OP_REQUESTS: eng_portal_list_requests(call, pa->eng); break;
	case OP_SUBMIT: eng_portal_submit(call, pa->eng); break;
	case OP_REQUEST: eng_portal_get_request(call, pa->eng); break;
	case OP_TASKS: eng_portal_list_tasks(call, pa->eng); break;
	case OP_DECIDE: eng_portal_decide(call, pa->eng); break;
	case OP_STATUS: eng_portal_status(call, pa->eng); break;
	default: not_found(call->req);
	}
}

/* ---- public routes ---- */

static void branding(gw_req_t *req, const PGresult *res)
{
	static const char *const fields[] = { "display_name", "logo_url", "primary_color", "support_email", NULL };
	/* the msp's brand under the client's own fields; never the
	 * platform's, and never the domains */
	const char *docs[2] = { PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2),
				PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3) };
	json_t *eff = tn_branding_chain(docs, 2), *out = json_object();

	for (int i = 0; eff && out && fields[i]; i++) {
		json_t *v = json_object_get(eff, fields[i]);

		if (json_is_string(v))
			json_object_set(out, fields[i], v);
	}
	json_decref(eff);
	if (eff == NULL || out == NULL) {
		json_decref(out);
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	gw_respond_json(req, 200, out);
}

/* Is resolve_sql's one row a portal to serve?  A Host that is another
 * client's portal never serves this one's path; a suspended client, or a
 * client of a suspended msp, has no portal. */
static bool portal_live(const PGresult *res)
{
	return (PQgetisnull(res, 0, 5) || strcmp(PQgetvalue(res, 0, 5), PQgetvalue(res, 0, 0)) == 0) &&
	       strcmp(PQgetvalue(res, 0, 1), "t") == 0;
}

static void resolved(const PGresult *res, const mf_err_t *err, void *arg)
{
	pa_req_t *p = arg;
	gw_req_t *req = p->req;
	const char *origin = gw_req_header(req, "origin");
	bool cors = false;

	if (err) {
		free(p);
		gw_respond_problem(req, err);
		return;
	}
	if (PQntuples(res) != 1) {
		/* not a portal: a sign-in on the API's own host keeps working
		 * as it always has (docs/identity.md) */
		bool legacy = p->route->op == OP_LOGIN && !p->slug_given;

		free(p);
		if (legacy)
			tn_portal_login(req, NULL);
		else
			not_found(req);
		return;
	}
	snprintf(p->tenant_id, sizeof(p->tenant_id), "%s", PQgetvalue(res, 0, 0));
	if (!portal_live(res)) {
		free(p);
		not_found(req);
		return;
	}
	if (origin && origin_allowed(origin, PQgetvalue(res, 0, 4))) {
		cors = true;
		gw_res_header(req, "Access-Control-Allow-Origin", origin);
		gw_res_header(req, "Access-Control-Expose-Headers",
			      "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset");
	}
	switch (p->route->op) {
	case OP_OPTIONS:
		if (origin && !cors) {
			free(p);
			gw_respond_error(req, 403, "origin_not_allowed", "this origin may not call this portal");
			return;
		}
		gw_res_header(req, "Allow", p->route->allow);
		if (cors) {
			gw_res_header(req, "Access-Control-Allow-Methods", p->route->allow);
			gw_res_header(req, "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
			gw_res_header(req, "Access-Control-Max-Age", "600");
		}
		free(p);
		gw_respond_raw(req, 204, NULL, "", 0);
		return;
	case OP_BRANDING:
		branding(req, res);
		free(p);
		return;
	case OP_LOGIN: {
		char id[37];

		memcpy(id, p->tenant_id, sizeof(id));
		free(p);
		tn_portal_login(req, id);
		return;
	}
	default:
		tn_guard_enter(p->route->op == OP_SUBMIT ? p->route->pa->runs : p->route->pa->read, req, p, free);
	}
}

static void portal_enter(gw_req_t *req, void *arg)
{
	const struct pa_route *rt = arg;
	mf_worker_t *w = gw_req_worker_data(req);
	const char *slug = gw_req_param(req, "portal"), *h = gw_req_header(req, "host");
	char host[256];
	const char *params[2];
	pa_req_t *p;

	security_headers(req);
	if (w == NULL || w->pg == NULL) {
		gw_respond_error(req, 503, "not_ready", "the portal is not available yet");
		return;
	}
	if (slug && !slug_ok(slug)) {
		not_found(req);
		return;
	}
	host_of(h, h ? strlen(h) : 0, host);
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	p->req = req;
	p->route = rt;
	p->slug_given = slug != NULL;
	params[0] = host;
	params[1] = slug;
	if (mf_pg_query(w->pg, resolve_sql, 2, params, resolved, p) < 0) {
		free(p);
		gw_respond_error(req, 503, "over_capacity", "too busy; retry");
	}
}

/* ---- the page's lookup (pa.h, web.c) ---- */

struct pa_find {
	gw_req_t *req;
	pa_found_fn found;
	void *arg;
};

static void find_resolved(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct pa_find f = *(struct pa_find *)arg;

	free(arg);
	if (err) {
		gw_respond_problem(f.req, err);
		return;
	}
	f.found(f.req, PQntuples(res) == 1 && portal_live(res) ? PQgetvalue(res, 0, 0) : NULL, f.arg);
}

void pa_portal_find(gw_req_t *req, pa_found_fn found, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	const char *slug = gw_req_param(req, "portal"), *h = gw_req_header(req, "host");
	const char *params[2];
	char host[256];
	struct pa_find *f;

	if (w == NULL || w->pg == NULL) {
		gw_respond_error(req, 503, "not_ready", "the portal is not available yet");
		return;
	}
	if (slug && !slug_ok(slug)) {
		found(req, NULL, arg);
		return;
	}
	host_of(h, h ? strlen(h) : 0, host);
	f = malloc(sizeof(*f));
	if (f == NULL) {
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	*f = (struct pa_find){ req, found, arg };
	params[0] = host;
	params[1] = slug;
	if (mf_pg_query(w->pg, resolve_sql, 2, params, find_resolved, f) < 0) {
		free(f);
		gw_respond_error(req, 503, "over_capacity", "too busy; retry");
	}
}

/* ---- set-up ---- */

pa_t *pa_new(struct tn *tn, struct eng *eng, mf_err_t *err)
{
	pa_t *pa = calloc(1, sizeof(*pa));

	if (pa == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	pa->tn = tn;
	pa->eng = eng;
	return pa;
}

void pa_free(pa_t *pa)
{
	if (pa == NULL)
		return;
	while (pa->routes) {
		struct pa_route *next = pa->routes->next;

		free(pa->routes);
		pa->routes = next;
	}
	mf_offload_free(pa->dns);
	free(pa);
}

void pa_worker_fini(pa_t *pa)
{
	/* no verify job may post its answer to a loop about to go */
	if (pa && pa->dns)
		mf_offload_wait_idle(pa->dns);
}

static struct pa_route *route_new(pa_t *pa, enum pa_op op)
{
	struct pa_route *rt = calloc(1, sizeof(*rt));

	if (rt == NULL)
		return NULL;
	rt->pa = pa;
	rt->op = op;
	rt->next = pa->routes;
	pa->routes = rt;
	return rt;
}

static int add_one(pa_t *pa, gw_router_t *api, const char *method, const char *pattern, enum pa_op op,
		   const char *allow, unsigned flags)
{
	struct pa_route *rt = route_new(pa, op);

	if (rt == NULL)
		return -1;
	snprintf(rt->allow, sizeof(rt->allow), "%s", allow ? allow : "");
	return gw_router_add(api, method, pattern, portal_enter, rt, flags);
}

int pa_routes_add(pa_t *pa, gw_router_t *api)
{
	static const char *const prefixes[] = { "/portal/v1", "/portal/v1/c/{portal}" };

	pa->read = tn_guard_new(pa->tn, POL_READ, guarded, pa);
	pa->runs = tn_guard_new(pa->tn, POL_RUNS, guarded, pa);
	if (pa->read == NULL || pa->runs == NULL)
		return -1;
	/* the gateway's own 404s and 405s under the portal carry its headers too */
	if (gw_router_on_refusal(api, "/portal/", security_headers) < 0)
		return -1;
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < NTABLE; i++) {
			char pattern[128], allow[64] = "OPTIONS";
			bool first = true;

			snprintf(pattern, sizeof(pattern), "%s%s", prefixes[k], table[i].path);
			if (add_one(pa, api, table[i].method, pattern, table[i].op, NULL, table[i].flags) < 0)
				return -1;
			/* one OPTIONS per path, after the path's first method */
			for (size_t j = 0; j < i; j++)
				if (strcmp(table[j].path, table[i].path) == 0)
					first = false;
			if (!first)
				continue;
			for (size_t j = 0; j < NTABLE; j++)
				if (strcmp(table[j].path, table[i].path) == 0) {
					size_t n = strlen(allow);

					snprintf(allow + n, sizeof(allow) - n, ", %s", table[j].method);
					if (strcmp(table[j].method, "GET") == 0) {
						n = strlen(allow);
						snprintf(allow + n, sizeof(allow) - n, ", HEAD");
					}
				}
			if (add_one(pa, api, "OPTIONS", pattern, OP_OPTIONS, allow, 0) < 0)
				return -1;
		}
	}
	if (pa_web_routes(pa, api) < 0)
		return -1;
	return pa_domains_routes(pa, api);
}
