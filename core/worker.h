/*
 * worker.h - what each worker thread owns, handed to handlers through
 * gw_req_worker_data().  Created by the composition root (cmd/serve.c) on
 * the worker's own thread; never touched from another thread.
 */
#ifndef MF_WORKER_H
#define MF_WORKER_H

#include "core/config.h"
#include "core/pg.h"

struct event_base;

typedef struct mf_worker {
	int index;
	struct event_base *base;
	const mf_config_t *cfg;
	mf_pg_pool_t *pg;
	struct gw_rl *rl;		/* window rate limiter (gateway/ratelimit.h) */
	struct tn_worker *tn;		/* identity and tenants (tenants/tn.h) */
	struct cx_vault_worker *vault;
	struct cx_worker *cx;		/* connector calls (connectors/connectors.h) */
	struct eng_worker *eng;		/* workflow engine (engine/engine.h) */
	struct pa *pa;			/* the client portal (portal-api/portal.h; shared, read-only) */
	struct mf_otlp *otlp;		/* span exporter (core/otlp.h), NULL when off */
} mf_worker_t;

#endif
