/*
 * tenants.h - identity, tenants and isolation: the tenant hierarchy and its
 * schemas, API clients and the OAuth token endpoint, portal users and
 * login, policy documents, the platform key ring, and the access guard that
 * every tenant-scoped route goes through.
 *
 * The composition root (cmd/serve.c) creates one tn_t for the process, adds
 * its routes, and gives each worker thread its tn_worker_t.  The commands
 * (bootstrap, dev, rotate-keys) use the blocking helpers at the bottom,
 * which never run inside an event loop.
 */
#ifndef TN_TENANTS_H
#define TN_TENANTS_H

#include <stdio.h>
#include <libpq-fe.h>

#include "core/config.h"
#include "core/err.h"
#include "gateway/gateway.h"
#include "policies/authz.h"

typedef struct tn tn_t;
typedef struct tn_worker tn_worker_t;
struct mf_worker;

struct mf_master;
struct mf_master_ring;
struct gw_claims;

/* Reads the external issuers file; cfg and master (the master key ring
 * holder of core/masterkey.h, NULL = none) are borrowed and must outlive
 * the result. */
tn_t *tn_new(const mf_config_t *cfg, struct mf_master *master, mf_err_t *err);
void tn_free(tn_t *tn);	/* after the server has stopped */
int tn_routes_add(tn_t *tn, gw_router_t *api) __attribute__((warn_unused_result));
/* On the worker's thread, after its database pool exists. */
tn_worker_t *tn_worker_new(tn_t *tn, struct mf_worker *w);
void tn_worker_free(tn_worker_t *tw);

/* ---- the guard, for routes of other modules ---- */

/* What the guard proved about a call before the handler runs: the token
 * is valid, its subject and tenant are live, the rate limits admitted it,
 * and the caller holds the route's permission on the route's {tenant_id}
 * (else it answered 401 / 404 / 403 / 429 itself).  Every pointer is valid
 * until the response; the tenant's schema is the only one the handler may
 * touch, and it never comes from anything the client sent. */
typedef struct tn_call {
	gw_req_t *req;
	const char *tenant_id;		/* the route's {tenant_id} (else the caller's own) */
	const char *schema;		/* that tenant's generated schema ("" for the platform) */
	enum pol_kind kind;		/* that tenant's kind */
	const char *caller_tenant_id;	/* the token's tenant */
	const char *actor;		/* the caller, as audit rows name it */
	const struct gw_claims *claims;	/* the verified token (all its roles: tn_call_has_role) */
	/* The handler's own per-request state (the handler must not use
	 * gw_req_set_data): freed with data_free after the response. */
	void *data;
	void (*data_free)(void *);
	/* What a module's own first step handed tn_guard_enter (NULL on a
	 * route of tn_guard_add); freed after the response. */
	void *pre;
} tn_call_t;
typedef void (*tn_call_fn)(tn_call_t *call, void *arg);

/* Adds a route behind the guard (see tn_call_t).  A route without
 * {tenant_id} acts on the caller's own tenant. */
int tn_guard_add(gw_router_t *r, tn_t *tn, const char *method, const char *pattern, enum pol_perm perm,
		 unsigned flags, tn_call_fn fn, void *arg) __attribute__((warn_unused_result));

/* A guard that is no route of its own, for a module that must look at a
 * request before the guard does (the portal resolves its tenant from Host
 * first, so that a missing or suspended portal is 404 before any token
 * check).  Owned by tn; the route's pattern has no {tenant_id}, so perm is
 * checked against the caller's own tenant. */
typedef struct tn_route tn_guard_t;
tn_guard_t *tn_guard_new(tn_t *tn, enum pol_perm perm, tn_call_fn fn, void *arg);
/* Runs g on req as if req had been routed to it.  pre (may be NULL) is the
 * module's state: the guard owns it from here on, hands it to fn as
 * call->pre and frees it with pre_free after the response, whatever the
 * outcome. */
void tn_guard_enter(tn_guard_t *g, gw_req_t *req, void *pre, void (*pre_free)(void *));

/* POST /portal/v1/login {"email", "password"} (docs/identity.md): answers
 * the token, 401 invalid_credentials, or 429 after too many failures per
 * account and per address.  tenant_id (copied; NULL = not on a portal)
 * limits the sign-in to that tenant's users; without it, a Host listed in
 * some tenant's branding domains limits it to that tenant. */
void tn_portal_login(gw_req_t *req, const char *tenant_id);

/* The effective branding (new reference, NULL when out of memory) of the
 * last tenant of a chain of branding documents from the root down (JSON
 * text, NULL = none): each tenant's own fields over its ancestors'
 * (api_branding.c). */
json_t *tn_branding_chain(const char *const *docs, int n);
/* Branding's value checks (api_branding.c), for tenant names and domain
 * claims too: a string of 1 to max bytes without control characters or
 * NUL; a lower-case DNS name of at least two labels (no trailing dot, no
 * label starting or ending with '-'). */
bool tn_text_ok(const json_t *v, size_t max);
bool tn_domain_ok(const char *s);

/* Does the caller's token carry this role?  Any name, tenant-defined
 * ones (e.g. "finance_approver") too: approvals ask this, not the
 * permission table. */
bool tn_call_has_role(const tn_call_t *call, const char *role);

/* The audit insert: $1 tenant id, $2 actor, $3 action, $4 target, $5
 * detail (jsonb text; never secret values). */
#define TN_AUDIT_SQL \
	"INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail) " \
	"VALUES ($1::uuid, $2, $3, $4, $5::jsonb)"

/* List pages (CONTRACT 2): ?limit= 1..500 (default 50) and ?cursor=
 * (the last key of the previous page, opaque to clients; "" when absent).
 * Returns -1 with err (400) for a bad value. */
int tn_req_page(gw_req_t *req, int *limit, char cursor[64], mf_err_t *err) __attribute__((warn_unused_result));
/* next_cursor for a page whose last key is last_id (NULL: no next page);
 * new reference. */
json_t *tn_page_cursor(const char *last_id);
/* A JSON body's strict shape check: every key of obj must be in allowed
 * (NULL-terminated); the first other one fails with err (400) and, when
 * errors is not NULL, a new "errors" array naming its path. */
int tn_only_keys(const json_t *obj, const char *const *allowed, mf_err_t *err, json_t **errors);

/* Counters of a worker's guard, for /metrics (any thread, approximate). */
typedef struct tn_stats {
	unsigned long long verified;	/* tokens whose signature was checked and accepted */
	unsigned long long cached;	/* tokens found in the verified-token cache */
	unsigned long long refused;	/* 401s of the guard */
	unsigned long long ip_limited;	/* 429s before a signature check (per-IP budget) */
	unsigned long long rate_limited;	/* 429s of the tenant / API-client limits */
} tn_stats_t;
void tn_worker_stats(const tn_worker_t *tw, tn_stats_t *out);

/* ---- blocking helpers for the command line ---- */

/* Makes sure a signing key exists (creates the first one, sealed under
 * the ring's first key). */
int tn_keys_ensure(PGconn *conn, const struct mf_master_ring *master, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Start-up: reads the ring rows every worker of tn starts with. */
int tn_keys_seed(tn_t *tn, PGconn *conn, mf_err_t *err) __attribute__((warn_unused_result));
/* Adds a new signing key that takes over after every instance has loaded
 * it; older keys keep verifying until tokens signed by them have expired. */
int tn_keys_rotate(PGconn *conn, const mf_config_t *cfg, const struct mf_master_ring *master, FILE *out,
		   mf_err_t *err) __attribute__((warn_unused_result));
/* Re-seals every signing key that opens under another key of the ring
 * under its first key, one row per statement (each only if unchanged
 * meanwhile), so an interruption leaves every row openable. */
typedef struct tn_reseal_report {
	int resealed, already, unopenable;
} tn_reseal_report_t;
int tn_keys_reseal(PGconn *conn, const struct mf_master_ring *master, tn_reseal_report_t *rep, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Creates the platform tenant if missing and a new platform-admin API
 * client; writes {"client_id","client_secret","tenant_id"} to *json
 * (malloc'd). */
int tn_bootstrap(PGconn *conn, const char *name, char **json, mf_err_t *err)
	__attribute__((warn_unused_result));
/* True when client_id exists, is live and secret matches it. */
bool tn_client_valid(PGconn *conn, const char *client_id, const char *secret);
/* Inside the caller's open transaction on conn: creates a tenant as POST
 * /v1/tenants does - the row (no branding) under parent_id, its generated
 * schema with every tenant migration, and the audit row tenant.create by
 * actor - and writes its new id to id.  Nothing is committed here.  A
 * taken slug is err 409 slug_taken; err is required. */
int tn_tenant_create(PGconn *conn, enum pol_kind kind, const char *parent_id, const char *name, const char *slug,
		     const char *actor, char id[37], mf_err_t *err) __attribute__((warn_unused_result));

#endif
