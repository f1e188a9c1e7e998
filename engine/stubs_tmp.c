#include "engine/eng.h"
int eng_api_routes(eng_t *e, struct tn *tn, gw_router_t *api) { return 0; }
int eng_hooks_routes(eng_t *e, struct tn *tn, gw_router_t *api) { return 0; }
eng_outbox_t *eng_outbox_new(eng_worker_t *ew, mf_err_t *err) { return (eng_outbox_t *)1; }
void eng_outbox_free(eng_outbox_t *o) { }
