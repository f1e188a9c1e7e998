/*
 * connectors.h - how a tenant's workflows reach its CRM, PSA, ERP and ITSM
 * systems: connector definitions (base URL, vault credential, default
 * headers, timeout, outbound rate limit, retry hints) kept in the tenant's
 * schema, their routes, and cx_call(), the one way the engine (and the
 * "try a call" route) sends a request through a connector.
 *
 * A call is: connector looked up (per-worker cache), credential opened from
 * the vault and turned into an auth header (bearer, basic, API-key header,
 * or an OAuth2 client-credentials token fetched once and shared by every
 * worker until shortly before it expires), the connector's hold honoured
 * (a peer's 429/503 Retry-After holds every call to that connector in the
 * process), its cluster-wide outbound rate limit taken, then the request
 * sent with libcurl on the worker's loop behind the egress guard, carrying
 * Idempotency-Key and traceparent.  429/503 and failures before the
 * request reached the peer are retried within the connector's budget.
 *
 * Threading: cx_t is shared by every worker (its tables are synchronised
 * inside); a cx_worker_t and every call on it belong to one worker thread.
 */
#ifndef CX_CONNECTORS_H
#define CX_CONNECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "core/config.h"
#include "core/err.h"
#include "connectors/http.h"
#include "gateway/gateway.h"

struct mf_worker;
struct tn;
struct cx_vault;

typedef struct cx cx_t;
typedef struct cx_worker cx_worker_t;
typedef struct cx_op cx_op_t;

/* cfg and vault are borrowed and must outlive the result. */
cx_t *cx_new(const mf_config_t *cfg, struct cx_vault *vault, mf_err_t *err);
void cx_free(cx_t *cx);		/* after every worker is gone */
int cx_routes_add(cx_t *cx, struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));
/* On the worker's thread, once its pool, limiter and vault exist. */
cx_worker_t *cx_worker_new(cx_t *cx, struct mf_worker *w, mf_err_t *err);
/* Calls in flight end with error "shutting_down" (their callbacks run
 * before it returns). */
void cx_worker_free(cx_worker_t *xw);

/* One request through a connector.  Strings are copied by cx_call. */
typedef struct cx_call_opts {
	const char *tenant_id;
	const char *schema;		/* the tenant's schema, from the guard or the engine */
	const char *connector;
	const char *method;		/* "GET", "POST", ... */
	const char *path;		/* appended to base_url; may carry a query; "" = base_url */
	const cx_http_header_t *headers;	/* the caller's own; auth and hop headers are refused */
	int nheaders;
	const void *body;
	size_t body_len;
	const char *idempotency_key;	/* NULL: a new UUID, the same for every attempt */
	const char *traceparent;	/* the caller's trace context, or NULL */
	/* Attempts within this call (429/503, connect failures); 0 = the
	 * connector's retry.max_attempts.  The engine passes 1: a step's own
	 * retry policy decides, with the peer's Retry-After in the result. */
	int max_attempts;
} cx_call_opts_t;

typedef struct cx_result {
	int status;			/* the peer's last status; 0 = no response */
	const char *error;		/* NULL, or a code: "not_found", "credential_missing",
					 * "egress_refused", "timeout", "too_large", "unreachable",
					 * "rate_limited", "oauth_failed", ... */
	char detail[256];		/* safe to show the tenant */
	int http_status;		/* the status an API answer for this error should carry */
	const cx_http_response_t *res;	/* the last response, or NULL */
	int attempts;
	long long retry_after_ms;	/* when error is "rate_limited" or status 429/503 */
	long long duration_ms;
	const void *priv;		/* for cx_result_summary */
} cx_result_t;

/* cb is called exactly once, always from the worker's loop (never inside
 * cx_call), unless the call is cancelled first; *r is valid during it. */
typedef void (*cx_call_cb)(const cx_result_t *r, void *arg);
/* The call's summary for a run timeline, built when asked (only during the
 * callback): {"request": {method, url, headers}, "response": {status,
 * headers, body}, "attempts", "duration_ms", "error"?} with credentials,
 * secret values (and their base64 forms) and the connector's
 * redact_fields replaced by "[redacted]", bodies cut at 4 KiB.  New
 * reference, NULL when out of memory.  Building it costs about as much as
 * the rest of the layer together, so callers that keep no timeline skip
 * it. */
json_t *cx_result_summary(const cx_result_t *r);
cx_op_t *cx_call(cx_worker_t *xw, const cx_call_opts_t *opts, cx_call_cb cb, void *arg, mf_err_t *err);
void cx_cancel(cx_op_t *op);

/* Counters for /metrics (any thread, approximate). */
typedef struct cx_stats {
	unsigned long long calls, failures, retries, token_fetches, held;
	cx_http_stats_t http;
} cx_stats_t;
void cx_worker_stats(const cx_worker_t *xw, cx_stats_t *out);
/* Prometheus text of the calls by connector kind and outcome and their
 * latency (process-wide; any thread). */
struct mf_buf;
int cx_metrics_render(struct mf_buf *out) __attribute__((warn_unused_result));

#endif
