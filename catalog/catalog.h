/*
 * catalog.h - the partner template catalog (CONTRACT 8, docs/templates.md):
 * partners' Ed25519 signing keys, signed template versions, and the
 * catalog that msps, partners and the platform search.  Its routes go
 * through the access guard of tenants/ (permissions templates and
 * catalog); its tables are platform.partner_signing_keys and platform.templates.
 */
#ifndef CAT_CATALOG_H
#define CAT_CATALOG_H

#include "gateway/gateway.h"

struct tn;

/* Adds the catalog's routes; tn is borrowed and must outlive the router. */
int cat_routes_add(struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));

#endif
