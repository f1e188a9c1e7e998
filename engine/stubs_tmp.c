#include "engine/eng.h"
int eng_api_routes(eng_t *e, struct tn *tn, gw_router_t *api) { return 0; }
