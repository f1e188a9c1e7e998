/*
 * engine.h - the orchestration engine (CONTRACT 6): durable workflow runs
 * for every tenant, driven by one platform-level ready queue.
 *
 * State lives in PostgreSQL only: definitions, runs, their timeline,
 * tasks and events in the tenant's schema (tenants/migrations/tenant/
 * 0004_engine.sql), and platform.run_queue saying which run needs a
 * worker and when (platform/0006_engine.sql).  A worker thread claims due
 * runs in batches (FOR UPDATE SKIP LOCKED, tenants served round-robin up
 * to their concurrent-run limit) under a lease, advances each run as far
 * as it can go in memory (transform, decide and emit steps cost no
 * commit), and writes what changed for many runs in one statement
 * (platform.eng_apply) that checks the lease is still its own.  HTTP steps
 * go through cx_call() with Idempotency-Key "<run>:<step>", so a run
 * re-done after a crash has its effects once at a well-behaved peer.
 * Workers are woken by LISTEN/NOTIFY (channel mspflow_engine) and look
 * every engine_poll_ms for timers.
 *
 * Threading: eng_t is shared (read-only after creation); an
 * eng_worker_t belongs to one worker thread.
 */
#ifndef ENG_ENGINE_H
#define ENG_ENGINE_H

#include <stdbool.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "core/config.h"
#include "core/err.h"
#include "gateway/gateway.h"

struct mf_worker;
struct tn;

typedef struct eng eng_t;
typedef struct eng_worker eng_worker_t;

/* cfg is borrowed and must outlive the result. */
eng_t *eng_new(const mf_config_t *cfg, mf_err_t *err);
void eng_free(eng_t *e);	/* accepts NULL; after every worker is gone */
/* The engine's routes (workflows, runs, events, tasks, hooks, webhooks). */
int eng_routes_add(eng_t *e, struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));
/* On the worker's thread, once w->pg and w->cx exist.  run_engine false:
 * the worker serves the routes but claims no runs (a gateway-only
 * instance). */
eng_worker_t *eng_worker_new(eng_t *e, struct mf_worker *w, bool run_engine, mf_err_t *err);
/* Shutdown, in two steps around the database pool's: close stops claims
 * and cancels calls in flight (before the connector state goes); free,
 * after the pool (whose pending callbacks still find the worker), drops
 * the runs in memory: their leases expire and another worker takes them
 * over. */
void eng_worker_close(eng_worker_t *ew);
void eng_worker_free(eng_worker_t *ew);

/* ---- starting runs (start.c): pure, shared by the routes and the engine ---- */

/* The statement listing the workflows an event of type $1 starts: rows
 * (name, version, definition) of each workflow's latest version. */
extern const char eng_triggers_sql[];

/* For an event {id, type, data}, the runs to start, as eng_start /
 * eng_event take them: one entry per row of eng_triggers_sql whose
 * trigger.when (absent = true) holds over {"data": data, "tenant":
 * tenant}; a `when` that fails to evaluate starts nothing (and is not an
 * error of the event).  tenant may be NULL.  New reference, or NULL when
 * out of memory. */
json_t *eng_runs_for_event(const PGresult *triggers, const char *event_id, const char *type,
			   const json_t *data, const json_t *tenant);
/* One run entry of workflow name at version for def (validated; borrowed)
 * with input (borrowed, may be NULL = {}) and, when started by an event,
 * its id, type and data.  New reference, NULL when out of memory or the
 * definition has no start step. */
json_t *eng_run_entry(const char *name, int version, const json_t *def, const json_t *input,
		      const char *event_id, const char *type, const json_t *data);

/* A run's trace for its ctx ("trace", see runner.c): a new span of the
 * trace of parent (the starting request's; its parent_id, the request's
 * span, becomes the run span's parent) or, with parent NULL, of a new
 * trace; started now.  New reference, NULL when out of memory. */
json_t *eng_trace_json(const mf_trace_t *parent);
/* Puts eng_trace_json(parent) into the ctx of each entry of runs (as
 * eng_runs_for_event / eng_run_entry make them); one span per run. */
void eng_runs_set_trace(json_t *runs, const mf_trace_t *parent);

/* ---- the client portal's view (api_portal.c, docs/portal.md) ----
 * Called by portal-api/ from a guarded handler whose tenant is the client
 * the portal belongs to; each answers the request.  They show requests,
 * tasks and status without run contexts, step outputs or connector
 * summaries. */
struct tn_call;
/* GET /portal/v1/request-types: the types and their forms. */
void eng_portal_request_types(struct tn_call *call, eng_t *e);
/* POST /portal/v1/requests {"type", "fields"} (Idempotency-Key): 201 the
 * request, 200 the first one for a repeated key. */
void eng_portal_submit(struct tn_call *call, eng_t *e);
void eng_portal_list_requests(struct tn_call *call, eng_t *e);
/* The path's {request_id}. */
void eng_portal_get_request(struct tn_call *call, eng_t *e);
void eng_portal_list_tasks(struct tn_call *call, eng_t *e);
/* The path's {task_id}: {"decision", "comment"}. */
void eng_portal_decide(struct tn_call *call, eng_t *e);
void eng_portal_status(struct tn_call *call, eng_t *e);

/* Counters for /metrics (any thread, approximate). */
typedef struct eng_stats {
	unsigned long long claims, claimed, applied, lost_leases, steps, runs_finished, runs_failed;
	unsigned long long retries, calls;
	unsigned long long ai_auto, ai_review, ai_invalid;	/* ai step answers */
	int in_memory;
	/* outbound webhooks: attempts by outcome (retrying = failed, another
	 * attempt scheduled; failed = attempts exhausted) */
	unsigned long long wh_delivered, wh_retrying, wh_failed;
	int wh_in_flight;
} eng_stats_t;
void eng_worker_stats(const eng_worker_t *ew, eng_stats_t *out);
/* Prometheus text of the engine's process-wide metrics: queue depth and
 * dead letters (refreshed by worker 0 every engine_gauge_ms), claim latency, step
 * latency by type, lease expiries, runs started.  Any thread. */
struct mf_buf;
int eng_metrics_render(struct mf_buf *out) __attribute__((warn_unused_result));

#endif
