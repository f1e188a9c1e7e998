/* test_route.c - the router: parameters, precedence, 404/405 + Allow. */
#include <stdlib.h>

#include "gateway/route.h"
#include "t.h"

static void h1(gw_req_t *r, void *a) { (void)r; (void)a; }
static void h2(gw_req_t *r, void *a) { (void)r; (void)a; }

static gw_match_t m;
static char scratch[512];

static const gw_route_t *match(gw_router_t *r, const char *method, const char *path)
{
	gw_router_match(r, method, path, strlen(path), scratch, &m);
	return m.route;
}

int main(void)
{
	gw_router_t *r = gw_router_new();
	const gw_route_t *rt;

	T_OK(gw_router_add(r, "GET", "/v1/tenants/{id}", h1, NULL, 0) == 0, "add a parameter route");
	T_OK(gw_router_add(r, "PATCH", "/v1/tenants/{id}", h1, NULL, 0) == 0, "same path, other method");
	T_OK(gw_router_add(r, "GET", "/v1/tenants/me", h2, NULL, 0) == 0, "a literal sibling");
	T_OK(gw_router_add(r, "POST", "/v1/tenants/{id}/clients", h1, NULL, GW_ROUTE_JSON_BODY) == 0, "nested");
	T_OK(gw_router_add(r, "GET", "/v1/tenants/{t}/runs/{run}", h1, NULL, 0) == 0, "two parameters");
	T_OK(gw_router_add(r, "GET", "no-slash", h1, NULL, 0) < 0, "patterns start with /");

	rt = match(r, "GET", "/v1/tenants/abc");
	T_OK(rt && rt->fn == h1 && m.nparams == 1, "parameter route matches");
	T_STREQ(m.pvalue[0], "abc", "parameter value");
	T_STREQ(m.pname[0], "id", "parameter name");
	rt = match(r, "GET", "/v1/tenants/me");
	T_OK(rt && rt->fn == h2, "a literal beats a parameter");
	rt = match(r, "HEAD", "/v1/tenants/me");
	T_OK(rt && rt->fn == h2, "GET routes answer HEAD");
	rt = match(r, "GET", "/v1/tenants/t1/runs/r%2D9");
	T_OK(rt && m.nparams == 2, "two parameters");
	T_STREQ(m.pvalue[1], "r-9", "percent-decoded");
	T_OK(match(r, "GET", "/v1/tenants/a%2Fb") == NULL && m.status == 400, "encoded slash refused");
	T_OK(match(r, "GET", "/v1/tenants/a%00") == NULL && m.status == 400, "encoded NUL refused");
	T_OK(match(r, "GET", "/v1/tenants/a%4") == NULL && m.status == 400, "truncated escape refused");
	T_OK(match(r, "GET", "/v1/tenants/") == NULL && m.status == 404, "an empty parameter does not match");
	T_OK(match(r, "GET", "/v1/tenants/x/") == NULL && m.status == 404, "a trailing slash is another path");
	T_OK(match(r, "GET", "/v1/nothing") == NULL && m.status == 404, "unknown path is 404");
	T_OK(match(r, "DELETE", "/v1/tenants/x") == NULL && m.status == 405, "known path, other method is 405");
	T_STREQ(m.allow, "GET, HEAD, PATCH", "Allow lists the path's methods");
	T_OK(match(r, "GET", "/v1/tenants/x/clients") == NULL && m.status == 405, "POST-only path");
	T_STREQ(m.allow, "POST", "Allow for a POST-only path");
	/* a route of the same depth that does not match the path (here
	 * PUT /v1/other/{x}) must not be probed: that once recursed forever */
	T_OK(gw_router_add(r, "PUT", "/v1/other/{x}", h1, NULL, 0) == 0, "a same-depth route elsewhere");
	T_OK(match(r, "PUT", "/v1/tenants/x") == NULL && m.status == 405, "405 beside a same-depth route");
	T_STREQ(m.allow, "GET, HEAD, PATCH", "Allow names only the path's own methods");
	{
		char deep[200] = "";

		for (int i = 0; i < 20; i++)
			strcat(deep, "/a");
		T_OK(match(r, "GET", deep) == NULL && m.status == 404, "paths deeper than any route are 404");
	}
	gw_router_free(r);
	gw_router_free(NULL);
	return t_done();
}
