/*
 * serve.h - the composition root shared by `mspflow serve` and `mspflow dev`:
 * builds the routers (operations routes plus each module's), creates the
 * per-worker state (PostgreSQL pool) and runs the gateway until SIGTERM.
 */
#ifndef MF_SERVE_H
#define MF_SERVE_H

#include <stdio.h>

#include "core/config.h"
#include "core/err.h"
#include "gateway/gateway.h"

/* Extra routes hook (tests use it to add their own routes). */
typedef int (*mf_routes_fn)(gw_router_t *api, gw_router_t *admin, void *arg);

int mf_serve(const mf_config_t *cfg, mf_routes_fn extra, void *arg, mf_err_t *err)
	__attribute__((warn_unused_result));

/* Prints "LISTENER METHOD PATTERN" for every route mspflow serves (what
 * `mspflow routes` shows; the OpenAPI test compares it with the document). */
int mf_serve_print_routes(FILE *out) __attribute__((warn_unused_result));

#endif
