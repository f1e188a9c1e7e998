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

#endif
