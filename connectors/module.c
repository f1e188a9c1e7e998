/*
 * module.c - the connectors module's process state: the egress guard
 * built from the platform's allow-list and the table every worker shares
 * (OAuth2 tokens, peer holds).
 */
#include <stdlib.h>

#include "connectors/cx.h"

cx_t *cx_new(const mf_config_t *cfg, struct cx_vault *vault, mf_err_t *err)
{
	cx_t *cx = calloc(1, sizeof(*cx));

	if (cx == NULL) {
		mf_err_set(err, 500, "internal", "out of memory");
		return NULL;
	}
	cx->cfg = cfg;
	cx->vault = vault;
	if ((cx->egress = cx_egress_new(cfg->egress_allow, err)) == NULL) {
		free(cx);
		return NULL;
	}
	if ((cx->shared = cx_shared_new(100000)) == NULL) {
		cx_egress_free(cx->egress);
		free(cx);
		mf_err_set(err, 500, "internal", "out of memory");
		return NULL;
	}
	return cx;
}

void cx_free(cx_t *cx)
{
	if (cx == NULL)
		return;
	cx_shared_free(cx->shared);
	cx_egress_free(cx->egress);
	free(cx);
}
