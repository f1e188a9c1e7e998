/*
 * serve.h - the composition root shared by `mspflow serve` and `mspflow dev`:
 * builds the routers (operations routes plus each module's), creates the
 * per-worker state (PostgreSQL pool) and runs the gateway until SIGTERM.
 */
#ifndef MF_SERVE_H
#define MF_SERVE_H

#include <stdbool.h>
#include <stdio.h>

#include "core/config.h"
#include "core/err.h"
#include "gateway/gateway.h"

/* Extra routes hook (tests use it to add their own routes). */
typedef int (*mf_routes_fn)(gw_router_t *api, gw_router_t *admin, void *arg);

typedef struct mf_serve_hooks {
	mf_routes_fn routes;		/* extra routes, or NULL */
	/* once the listeners are bound: the API's actual port (dev writes
	 * credentials.json with it) */
	void (*on_serving)(int api_port, void *arg);
	void *arg;
	/* mspflow worker: the engine only; the API listener answers the
	 * operations routes (/healthz, /readyz) and nothing else */
	bool worker_only;
} mf_serve_hooks_t;

/* hooks may be NULL. */
int mf_serve(const mf_config_t *cfg, const mf_serve_hooks_t *hooks, mf_err_t *err)
	__attribute__((warn_unused_result));

/* Prints "LISTENER METHOD PATTERN" for every route mspflow serves (what
 * `mspflow routes` shows; the OpenAPI test compares it with the document). */
int mf_serve_print_routes(FILE *out) __attribute__((warn_unused_result));

#endif
