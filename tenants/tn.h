/*
 * tn.h - private to tenants/: the module's process and worker state, the
 * per-worker directory cache, and the access guard's context that every
 * tenant-scoped handler receives.
 */
#ifndef TN_TN_H
#define TN_TN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <jansson.h>

#include "core/pg.h"
#include "core/worker.h"
#include "gateway/jwt.h"
#include "gateway/ratelimit.h"
#include "policies/authz.h"
#include "policies/policy.h"
#include "tenants/tenants.h"

struct event;
typedef struct mf_offload mf_offload_t;

enum tn_status { TN_ACTIVE = 0, TN_SUSPENDED, TN_DELETED };

/* What a worker remembers of a tenant (directory.c). */
typedef struct tn_tenant {
	char id[37];
	char parent_id[37];		/* "" for the platform */
	enum pol_kind kind;
	enum tn_status status;
	bool parent_active;
	char schema[64];		/* "" for the platform */
	pol_rate_plan_t plan;		/* from the effective policy */
} tn_tenant_t;

struct tn {
	const mf_config_t *cfg;
	struct mf_master *master;	/* the master key ring holder (borrowed; may be NULL) */
	bool have_master;
	json_t *issuers;		/* external issuers (jwt_issuers_file), or NULL */
	gw_gcra_t *gcra;		/* per-IP and per-account limits, all workers */
	mf_offload_t *offload;		/* Argon2id off the event loops */
	char *dummy_hash;		/* verified when an email is unknown, so timing says nothing */
	struct tn_route *routes;	/* the guard's route records (access.c) */
	PGresult *seed;			/* the key ring rows read at start-up (keys.c) */
};

typedef struct tn_dir tn_dir_t;

struct tn_worker {
	/* counters for /metrics: written by this worker, read anywhere (relaxed) */
	_Atomic unsigned long long n_verified, n_cached, n_refused, n_ip_limited, n_rate_limited;
	tn_t *tn;
	mf_worker_t *w;
	gw_keyring_t *ring;		/* this worker's copy; replaced on reload */
	gw_tokcache_t *tokens;
	tn_dir_t *dir;
	struct event *key_timer;
	bool key_loading;
	long long keys_loaded_at;
};

/* ---- directory.c: per-worker cache of tenants and principals ---- */

/* t == NULL and err == NULL: no such tenant (or deleted). */
typedef void (*tn_tenant_cb)(const tn_tenant_t *t, const mf_err_t *err, void *arg);
/* tenant_id == NULL and err == NULL: no such live API client or user. */
typedef void (*tn_principal_cb)(const char *tenant_id, const mf_err_t *err, void *arg);

tn_dir_t *tn_dir_new(tn_worker_t *tw, int ttl_ms, size_t capacity);
void tn_dir_free(tn_dir_t *d);
/* Calls cb at once when the answer is cached and fresh, else after one
 * query (concurrent lookups of the same id share it). */
void tn_dir_tenant(tn_dir_t *d, const char *id, tn_tenant_cb cb, void *arg);
void tn_dir_principal(tn_dir_t *d, const char *id, tn_principal_cb cb, void *arg);
/* Drops a cached entry (this worker saw a change). */
void tn_dir_forget(tn_dir_t *d, const char *id);
/* The effective policy (new reference) of the last tenant of a chain of
 * policy documents from the root down (JSON text, NULL = none); each is
 * capped by the effective policy of the one above it. */
json_t *tn_policy_chain(const char *const *docs, int n);

/* ---- access.c: the guard ---- */

typedef struct tn_ctx tn_ctx_t;
typedef void (*tn_handler_fn)(tn_ctx_t *ctx);

struct tn_ctx {
	gw_req_t *req;
	tn_worker_t *tw;
	tn_t *tn;
	const struct tn_route *route;
	gw_claims_t claims;
	tn_tenant_t me;			/* the token's tenant */
	tn_tenant_t target;		/* the route's {tenant_id}, else = me */
	pol_subject_t who;
	char actor[48];			/* "s:<subject>" (x: for external issuers): audit actor, rate-limit key */
	gw_rl_result_t rl_tenant;
	/* handler scratch, freed with the request */
	json_t *body;
	json_t *out;
	mf_pg_conn_t *conn;
	mf_err_t err;
	char id[37];
	char schema[64];
	char *text;
	mf_pg_cb next;			/* tn_begin / tn_commit continuation */
	mf_pg_cb after_audit;		/* tn_audit_commit continuation */
	const struct tn_subres *sub;	/* tn_subres_* */
	enum pol_kind route_kind;
	int limit;
	const char *action;		/* audit action of a shared step */
	const char *status_to;
	void *data;
	void (*data_free)(void *);
	tn_call_t call;			/* what a tn_guard_add handler sees */
	void (*pre_free)(void *);	/* frees call.pre (tn_guard_enter) */
	/* tn_branding_claim */
	mf_pg_cb after_claim;
	const char *claim_tenant;
	char *claim_domains;
};

/* Adds a route behind the guard: bearer token, principal and tenant
 * checks, rate limits, then (when the pattern has {tenant_id}) reach and
 * perm on that tenant.  Routes without {tenant_id} check perm against the
 * caller's own tenant. */
int tn_route(gw_router_t *r, tn_t *tn, const char *method, const char *pattern, enum pol_perm perm,
	     unsigned flags, tn_handler_fn fn) __attribute__((warn_unused_result));
void tn_routes_free(tn_t *tn);
/* Answers a guard-style 401. */
void tn_respond_unauthorized(gw_req_t *req, const char *detail);
/* Monotonic and wall clocks. */
long long tn_now_ms(void);
bool tn_uuid_ok(const char *s);
/* A new random v4 UUID in canonical text form. */
void tn_uuid_new(char out[37]);

/* ---- keys.c ---- */
void tn_keys_derive(const unsigned char master[32], unsigned char box[32]);
/* Starts the worker's key ring reload timer and loads it once. */
int tn_keys_worker_start(tn_worker_t *tw) __attribute__((warn_unused_result));

/* Signs an access token for sub in tenant_id with roles (a PostgreSQL
 * text[] literal); *out = {"access_token","token_type","expires_in"}. */
int tn_issue_token(tn_worker_t *tw, const char *sub, const char *tenant_id, const char *roles_text,
		   json_t **out, mf_err_t *err) __attribute__((warn_unused_result));

/* A kind of object that belongs to a tenant (API clients, users): the
 * list / get / delete handlers are the same but for these. */
typedef struct tn_subres {
	const char *noun;		/* "API client", in 404 details */
	const char *param;		/* the path parameter of its id */
	const char *list_sql;		/* $1 tenant, $2 cursor id or '', $3 limit; ORDER BY id */
	const char *get_sql;		/* $1 tenant, $2 id */
	const char *delete_sql;		/* $1 tenant, $2 id; RETURNING id */
	const char *delete_action;	/* audit action */
	json_t *(*row_json)(const PGresult *r, int row);	/* new reference; column 0 is the id */
} tn_subres_t;
void tn_subres_list(tn_ctx_t *ctx, const tn_subres_t *d);
void tn_subres_get(tn_ctx_t *ctx, const tn_subres_t *d);
void tn_subres_delete(tn_ctx_t *ctx, const tn_subres_t *d);

/* ---- handlers, by file ---- */
int tn_tenants_routes(tn_t *tn, gw_router_t *api) __attribute__((warn_unused_result));
int tn_clients_routes(tn_t *tn, gw_router_t *api) __attribute__((warn_unused_result));
int tn_users_routes(tn_t *tn, gw_router_t *api) __attribute__((warn_unused_result));
int tn_policy_routes(tn_t *tn, gw_router_t *api) __attribute__((warn_unused_result));
int tn_branding_routes(tn_t *tn, gw_router_t *api) __attribute__((warn_unused_result));
int tn_audit_routes(tn_t *tn, gw_router_t *api) __attribute__((warn_unused_result));
/* api_branding.c: inside a transaction on ctx->conn, makes sure no other
 * live tenant than tenant_id (kept by the caller until then runs) lists
 * one of branding's domains (borrowed; NULL or without domains passes at
 * once), holding the branding lock until the commit; then calls
 * then(NULL, NULL, ctx), or rolls back and answers 409 domain_taken. */
void tn_branding_claim(tn_ctx_t *ctx, const char *tenant_id, const json_t *branding, mf_pg_cb then);
/* Appends every problem of a branding document to errors as {path,
 * message}, each path prefixed (e.g. "/branding"). */
void tn_branding_validate(const json_t *b, const char *prefix, json_t *errors);

/* ---- common handler helpers (util.c) ---- */
/* Answers err; validation problems carry errors (stolen, may be NULL). */
void tn_fail(tn_ctx_t *ctx, const mf_err_t *err);
/* Sends one statement on ctx->conn (inside tn_begin) or the pool; a
 * statement that cannot be queued answers 503 itself. */
void tn_q(tn_ctx_t *ctx, const char *sql, int n, const char *const *p, mf_pg_cb cb);
/* err != NULL: rolls back, answers it and returns true. */
bool tn_failed(tn_ctx_t *ctx, const mf_err_t *err);
/* res has a row; else answers 404 "no such <noun>" (rolling back
 * ctx->conn first when a transaction is open) and returns false. */
bool tn_found(tn_ctx_t *ctx, const PGresult *res, const char *noun);
/* Opens a transaction on ctx->conn, then calls first(NULL, NULL, ctx). */
void tn_begin(tn_ctx_t *ctx, mf_pg_cb first);
/* Commits ctx->conn, then calls then(NULL, NULL, ctx); a failed commit is
 * answered. */
void tn_commit(tn_ctx_t *ctx, mf_pg_cb then);
/* Rolls back ctx->conn (if any) and answers err. */
void tn_abort(tn_ctx_t *ctx, const mf_err_t *err);
/* Inserts the audit row (detail stolen, may be NULL) on ctx->conn, commits,
 * then calls done(NULL, NULL, ctx); any failure rolls back and answers. */
void tn_audit_commit(tn_ctx_t *ctx, const char *tenant_id, const char *action, const char *target,
		     json_t *detail, mf_pg_cb done);
/* The request's JSON body, with only the given keys (NULL: any) allowed;
 * NULL when it was answered with the problem (400, 415...). */
json_t *tn_body(tn_ctx_t *ctx, const char *const *keys);
/* Answers a 400 validation_failed with one {path, message}. */
void tn_invalid(tn_ctx_t *ctx, const char *path, const char *msg);
/* ?limit= and ?cursor= of a list route: limit 1..500 (default 50); cursor
 * "" when absent.  Returns -1 with err for a bad value. */
int tn_page_params(tn_ctx_t *ctx, int *limit, char cursor[64], mf_err_t *err);
/* Roles of a new API client or user (see module.c); *errors gets the
 * problem's "errors" array on failure. */
int tn_roles_check(enum pol_kind kind, json_t *roles, mf_err_t *err, json_t **errors)
	__attribute__((warn_unused_result));
/* Text of a PostgreSQL text[] value as a JSON array (new reference). */
json_t *tn_pg_text_array(const char *v);
/* A JSON array of strings as a PostgreSQL text[] literal (malloc'd). */
char *tn_pg_array_literal(const json_t *arr);

#endif
