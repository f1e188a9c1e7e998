/*
 * hooks_int.h - private to engine/hooks.c and engine/outbox.c: sealing
 * and opening webhook secrets with the tenant's vault data key, the
 * outbound subscription routes, and the pure helpers of the delivery
 * schedule (unit-tested in tests/unit/test_webhook_backoff.c).
 *
 * Secrets (inbound hook and outbound subscription signing secrets,
 * "whsec_...") are sealed like vault credentials (connectors/vault.h):
 * XChaCha20-Poly1305 under the tenant's data key, associated data
 * "cred|<tenant>|<name>|1|<key_version>" where name is "hook:<id>" or
 * "webhook:<name>"; ':' cannot occur in a credential name, so no box can
 * pass for a credential's or another object's.
 */
#ifndef ENG_HOOKS_INT_H
#define ENG_HOOKS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <libpq-fe.h>

#include "connectors/vault.h"
#include "connectors/webhooks.h"
#include "core/pg.h"
#include "engine/eng.h"
#include "tenants/tenants.h"

/* ---- the delivery schedule (outbox.c) ---- */

#define ENG_WEBHOOK_BACKOFF_MAX_MS (3600LL * 1000)	/* one attempt an hour at most apart */
#define ENG_WEBHOOK_RETRY_AFTER_MAX_MS (6 * 3600LL * 1000)	/* a receiver's Retry-After is honoured up to 6 h */
#define ENG_WEBHOOK_TIMEOUT_MS 10000			/* one attempt, connection included */
#define ENG_WEBHOOK_LEASE_MS 60000			/* a claimed delivery's lease (> the timeout) */
#define ENG_WEBHOOK_BATCH 32				/* deliveries per claim */
#define ENG_WEBHOOK_INFLIGHT 256			/* deliveries in flight per worker thread */
#define ENG_WEBHOOK_EVENTS_MAX 64			/* event types of one subscription */
#define ENG_EVENT_MAX 128				/* bytes of an event type (definition.c) */
#define ENG_HOOK_BODY_MAX (256 * 1024)			/* bytes of a message POST /hooks/{id} accepts */

/* The wait before attempt (failed attempts so far = attempt, >= 1):
 * base_ms * 2^(attempt-1) capped at ENG_WEBHOOK_BACKOFF_MAX_MS, plus up to
 * 20% jitter drawn from rnd (still capped); at least retry_after_ms (>= 0,
 * the receiver's Retry-After; -1 = none) capped at
 * ENG_WEBHOOK_RETRY_AFTER_MAX_MS. */
long long eng_webhook_backoff_ms(int attempt, long long base_ms, long long retry_after_ms, uint32_t rnd);
/* A Retry-After value (delta-seconds or an HTTP-date) as milliseconds
 * from now (unix seconds), 0 for a date past, -1 when absent or neither. */
long long eng_webhook_retry_after_ms(const char *value, time_t now);

/* ---- secrets (hooks.c) ---- */

typedef struct eng_seal eng_seal_t;
/* box_text (bytea text) and key_version are valid during the callback;
 * err NULL on success. */
typedef void (*eng_seal_cb)(const char *box_text, int key_version, const mf_err_t *err, void *arg);

/* Inside the open transaction conn: takes the tenant's vault lock
 * (shared, so a data-key rotation waits), finds the tenant's current
 * data key (creating its first one like the vault does), seals secret
 * under name and calls cb exactly once, from the loop.  vw is the
 * worker's vault; secret is copied.  Returns 0, or -1 (out of memory, no
 * master key) without calling cb. */
int eng_secret_seal(mf_pg_conn_t *conn, cx_vault_worker_t *vw, const char *tenant_id, const char *name,
		    const char *secret, eng_seal_cb cb, void *arg) __attribute__((warn_unused_result));

/* Opens a box read from a row: key_version, the data key's kid and
 * wrapped bytea text (from platform.tenant_keys, "" when missing) and the
 * box's bytea text.  out receives the NUL-terminated secret (wipe it
 * after use).  Returns 0, or -1 with err 409 "secret_unreadable". */
int eng_secret_open(cx_vault_worker_t *vw, const char *tenant_id, const char *name, int key_version,
		    const char *kid, const char *wrapped, const char *box_text, char out[CX_WEBHOOK_SECRET_SIZE],
		    mf_err_t *err) __attribute__((warn_unused_result));

/* ---- the transaction of a hook or webhook route ---- */

/* The first member of each route's request state (so a callback's arg is
 * the whole state): BEGIN with the guard's schema first on the
 * search_path, statements on that connection, and on any error a
 * rollback and a problem answer. */
typedef struct eng_wtx {
	tn_call_t *call;		/* NULL on POST /hooks/{id}, which has no guard */
	gw_req_t *req;
	mf_pg_conn_t *conn;		/* the open transaction, or NULL */
	mf_pg_cb next;			/* after BEGIN and search_path */
	mf_err_t err;
} eng_wtx_t;

/* Rolls back (when open) and answers e; an undefined schema (a tenant
 * deleted meanwhile) answers 404. */
void eng_wtx_fail(eng_wtx_t *t, const mf_err_t *e);
void eng_wtx_fail_status(eng_wtx_t *t, int status, const char *code, const char *detail);
/* One statement on the transaction; cb gets t as its arg. */
void eng_wtx_q(eng_wtx_t *t, const char *sql, int n, const char *const *p, mf_pg_cb cb);
/* BEGIN on the request's worker, search_path, then next(…, t). */
void eng_wtx_begin(eng_wtx_t *t, mf_pg_cb next);

/* ---- routes ---- */
/* The outbound subscriptions' routes (outbox.c). */
int eng_webhook_routes(eng_t *e, struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));
/* Sets the transaction's search_path to the tenant schema then platform
 * (the platform's engine functions name their tables unqualified). */
#define ENG_SEARCH_PATH_SQL "SELECT set_config('search_path', quote_ident($1) || ', platform', true)"

#endif
