/*
 * pa.h - private to portal-api/: the module's state and the domain routes.
 */
#ifndef PA_PA_H
#define PA_PA_H

#include "engine/engine.h"
#include "portal-api/portal.h"
#include "tenants/tenants.h"

struct pa_route;

struct pa {
	tn_t *tn;
	eng_t *eng;
	tn_guard_t *read;		/* POL_READ on the caller's own tenant */
	tn_guard_t *runs;		/* POL_RUNS: submitting a request */
	struct pa_route *routes;	/* one per registered route, freed by pa_free */
	struct mf_offload *dns;		/* DNS TXT lookups of verify, off the event loops (domains.c) */
};

/* POST/GET/DELETE /v1/tenants/{tenant_id}/domains[/{domain}[/verify|/confirm]] (domains.c). */
int pa_domains_routes(pa_t *pa, gw_router_t *api) __attribute__((warn_unused_result));

/* The portal of req, as the /portal/v1 routes find it (portal.c): by Host,
 * or by the {portal} path parameter when the route has one.  Calls
 * found(req, tenant_id, arg) once, on req's thread, with the live client's
 * id, or with NULL when the request is for no portal (unknown, suspended,
 * another client's Host); answers 503 itself, without calling found, when
 * the database cannot be asked.  tenant_id is valid during the call only. */
typedef void (*pa_found_fn)(gw_req_t *req, const char *tenant_id, void *arg);
void pa_portal_find(gw_req_t *req, pa_found_fn found, void *arg);

/* The portal page's files, compiled in by portal-api/gen_web.py; the array
 * ends with an entry whose name is NULL.  etag is quoted, ready to send. */
typedef struct pa_web_asset {
	const char *name, *content_type, *etag;
	size_t len;
	const char *data;
} pa_web_asset_t;
extern const pa_web_asset_t pa_web_assets[];

/* GET /portal/[{asset}] and /portal/c/{portal}/[{asset}]: the page (web.c). */
int pa_web_routes(pa_t *pa, gw_router_t *api) __attribute__((warn_unused_result));

#endif
