/*
 * portal.h - the white-label client portal (CONTRACT 9, docs/portal.md):
 * the /portal/v1 routes a client's own users call, answered under their
 * msp's brand, and the portal domains a client claims and verifies
 * (/v1/tenants/{t}/domains).
 *
 * Each portal route exists twice: /portal/v1/<route>, whose portal is the
 * client with a verified domain equal to the request's Host, and
 * /portal/v1/c/{portal}/<route>, whose portal is the client with that slug
 * (for deployments without their own domains).  A missing, deleted or
 * suspended portal is 404 before anything else; a token of another tenant
 * is 404 like a missing object.  Every portal answer carries the security
 * headers and, for an Origin among the portal's verified domains, CORS.
 *
 * Threading: pa_t is built before the server runs and only read after.
 */
#ifndef PA_PORTAL_H
#define PA_PORTAL_H

#include "core/err.h"
#include "gateway/gateway.h"

struct tn;
struct eng;

typedef struct pa pa_t;

/* tn and eng are borrowed and must outlive the result. */
pa_t *pa_new(struct tn *tn, struct eng *eng, mf_err_t *err);
void pa_free(pa_t *pa);		/* accepts NULL; after the server has stopped */
int pa_routes_add(pa_t *pa, gw_router_t *api) __attribute__((warn_unused_result));
/* On a worker's thread as it stops, before its event base goes: waits for
 * the module's jobs in flight (a domain's DNS lookup).  Accepts NULL. */
void pa_worker_fini(pa_t *pa);

#endif
