/*
 * route.h - router internals shared by the server and the router tests.
 */
#ifndef GW_ROUTE_H
#define GW_ROUTE_H

#include <stddef.h>

#include "gateway/gateway.h"

#define GW_MAX_PARAMS 8
#define GW_MAX_SEGMENTS 16

typedef struct gw_route {
	char *method, *pattern;
	int nseg;
	char *seg[GW_MAX_SEGMENTS];	/* literal text, or NULL for a {param} */
	char *param[GW_MAX_SEGMENTS];	/* parameter name where seg is NULL */
	gw_handler_fn fn;
	void *arg;
	unsigned flags;
	int id;				/* index, for metrics */
} gw_route_t;

/* Headers for the router's own refusals of paths under a prefix. */
typedef struct gw_refusal_hook {
	char prefix[32];
	void (*fn)(gw_req_t *req);
} gw_refusal_hook_t;

#define GW_MAX_REFUSAL_HOOKS 4

struct gw_router {
	gw_route_t *routes;
	int n, cap;
	gw_refusal_hook_t hooks[GW_MAX_REFUSAL_HOOKS];
	int nhooks;
};

typedef struct gw_match {
	const gw_route_t *route;	/* NULL: not found or method not allowed */
	int status;			/* 0 ok, 404, 405, 400 (bad escape) */
	char allow[96];			/* for 405: "GET, HEAD, POST" */
	int nparams;
	const char *pname[GW_MAX_PARAMS];
	char *pvalue[GW_MAX_PARAMS];	/* decoded into the caller's scratch */
} gw_match_t;

/* Matches path (no query) for method.  Decoded parameter values are written
 * to scratch, which must hold at least strlen(path) + GW_MAX_PARAMS bytes. */
void gw_router_match(const gw_router_t *r, const char *method, const char *path, size_t path_len,
		     char *scratch, gw_match_t *m);

/* Calls fn for each route in registration order. */
void gw_router_each(const gw_router_t *r, void (*fn)(const gw_route_t *route, void *arg), void *arg);

#endif
