/*
 * api.h - private to the engine's route files (api*.c): the per-request
 * state and the transaction chain every route uses.
 *
 * Each route is a short chain of statements on one pinned connection:
 * eng_tx() opens a transaction with the tenant's schema (from the guard,
 * never the request) first on the search_path, and each eng_q() names the
 * step that runs with its result.  Any error ends the transaction (rolled
 * back) and answers problem+json; the last step commits (eng_commit,
 * eng_audit_commit) or, for reads and refusals, rolls back and answers at
 * once (eng_finish).  After any eng_* call that answers, the request state
 * is gone: a step never touches r after it.
 */
#ifndef ENG_API_H
#define ENG_API_H

#include <stdbool.h>
#include <jansson.h>

#include "core/pg.h"
#include "engine/eng.h"
#include "tenants/tenants.h"

/* The engine caps a run's input and an event's data (serialized). */
#define ENG_API_MAX_DATA (256 * 1024)

typedef struct eng_req eng_req_t;
typedef void (*eng_step_fn)(eng_req_t *r, const PGresult *res);

struct eng_req {
	tn_call_t *call;
	eng_t *e;
	mf_pg_conn_t *conn;		/* the open transaction, or NULL */
	eng_step_fn next;		/* runs with the current statement's result */
	eng_step_fn admit_next;		/* after an admission (eng_admit) */
	/* the route's values; every string here is owned and freed with r */
	char id[37];			/* the path's run / task id, or a new event id */
	char name[64];			/* the path's workflow name */
	char *text[6];
	json_t *body;			/* the parsed request body, or NULL */
	json_t *out;			/* the answer being built */
	int status;			/* its status */
	int limit;			/* a list page's size */
	int version;
	/* a read: one statement answering one row (200 / 404) or a page */
	const char *sql;
	int nparams;
	const char *missing;		/* the 404's detail */
	/* eng_store_version: runs after the version is stored or found unchanged */
	eng_step_fn stored;
	bool unchanged;			/* the definition equalled the latest version */
	/* eng_event_post: runs when the event and its runs are written (not
	 * for a replay), r->out = {"event_id", "run_ids"} */
	eng_step_fn evented;
	bool replay;			/* ... also for a replay (r->out the first outcome) */
	bool portal;			/* answer the client portal's shapes (api_portal.c) */
};

/* A new request state owned by call (freed after the response), or NULL
 * after answering: 503 when out of memory, 404 when the tenant runs no
 * workflows (the platform, partners). */
eng_req_t *eng_req_new(tn_call_t *call, eng_t *e);
/* strdup into r->text[i] (NULL stays NULL); -1 when out of memory. */
int eng_req_text(eng_req_t *r, int i, const char *s);

/* BEGIN; search_path = the tenant's schema, platform; then first(r, NULL). */
void eng_tx(eng_req_t *r, eng_step_fn first);
/* One statement on the transaction; next(r, res) on success (res is
 * borrowed for the call), else the transaction fails with the error. */
void eng_q(eng_req_t *r, const char *sql, int n, const char *const *params, eng_step_fn next);
/* Rolls back (if open) and answers err / a problem of this status and code. */
void eng_fail(eng_req_t *r, const mf_err_t *err);
/* The same with ext's members (stolen; may be NULL) in the problem. */
void eng_fail_ext(eng_req_t *r, const mf_err_t *err, json_t *ext);
void eng_fail_code(eng_req_t *r, int status, const char *code, const char *detail);
/* Rolls back (nothing to keep: a read, an idempotent replay) and answers
 * status with body (stolen). */
void eng_finish(eng_req_t *r, int status, json_t *body);
/* COMMIT, then answers r->status with r->out. */
void eng_commit(eng_req_t *r);
/* The audit row (detail stolen; never secret or input values), then
 * eng_commit. */
void eng_audit_commit(eng_req_t *r, const char *action, const char *target, json_t *detail);

/* Reads: a transaction with r->sql over r->text[0 .. r->nparams).  One:
 * the row's first column is the answer's JSON text; no row is 404 with
 * r->missing.  Page: rows (key, JSON text), at most r->limit + 1 of them
 * (the extra one says there is a next page). */
void eng_read_one(eng_req_t *r);
void eng_read_page(eng_req_t *r);
/* The request's JSON body into r->body, with no keys but keys
 * (NULL-terminated); false when it answered (400, 413, ...). */
bool eng_req_body(eng_req_t *r, const char *const *keys);
/* A list route's ?limit= (into r->limit) and ?cursor= (into cursor, "" when
 * absent; a UUID when uuid_cursor), and the limit + 1 the page query asks
 * for into r->text[lim_slot].  false when it answered (400, 503). */
bool eng_page(eng_req_t *r, bool uuid_cursor, char cursor[64], int lim_slot);
/* ?name= of the query into out: 1 found, 0 absent, -1 malformed. */
int eng_query_param(eng_req_t *r, const char *name, char *out, size_t outlen);

/* Admission (platform.eng_admit): may n more runs start under the
 * tenant's engine.max_queued_runs?  key: the request's Idempotency-Key or
 * NULL (a repeated key is admitted: it starts nothing).  next(r, NULL)
 * when admitted, else 429 too_many_runs. */
void eng_admit(eng_req_t *r, int n, const char *key, eng_step_fn next);

/* A parsed column of JSON text (trusted: the database built it); new
 * reference or NULL. */
json_t *eng_json_col(const PGresult *res, int row, int col);
/* Answers 400 validation_failed with one error at path. */
void eng_invalid(eng_req_t *r, const char *path, const char *msg);
/* Answers 413 payload_too_large (as the gateway names it): a value over ENG_API_MAX_DATA. */
void eng_too_large(eng_req_t *r, const char *path);
/* Workflow names: ^[a-z0-9][a-z0-9_.-]{0,62}$. */
bool eng_workflow_name_ok(const char *s);

/* RFC 3339 UTC text of a timestamptz expression, in SQL. */
#define ENG_TS(x) "to_char(" x " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* A run as the routes answer it, without its context (r: runs). */
#define ENG_RUN_JSON \
	"json_build_object('id', r.id, 'workflow', r.workflow, 'version', r.version, 'state', r.state, " \
	"'step', r.step, 'attempt', r.attempt, 'error', r.error, 'event_id', r.event_id, " \
	"'created_at', " ENG_TS("r.created_at") ", 'updated_at', " ENG_TS("r.updated_at") ", " \
	"'finished_at', " ENG_TS("r.finished_at") ")"

/* In the open transaction: stores r->text[0] (a validated definition's
 * compact JSON, trigger event r->text[1]) as the next version of workflow
 * r->name, as PUT /workflows/{name} does (the workflow's row locked; no
 * new version when it equals the latest one: r->unchanged), audits
 * workflow.version_created when new, then done(r, NULL) with r->version
 * the version (new or unchanged). */
void eng_store_version(eng_req_t *r, eng_step_fn done);

/* In the open transaction: posts the event r->text[0] (its type) with
 * data = r->body's "data" member, r->id its new id, r->text[1] the request
 * hash, r->text[2] the Idempotency-Key or NULL, as POST /events does;
 * then evented(r, NULL) with r->out = {"event_id", "run_ids"} when it is
 * set, else commits and answers 202 with that.  A replay of a stored key
 * with the same request hash calls evented too, with r->replay set and
 * nothing written. */
void eng_event_post(eng_req_t *r, eng_step_fn evented);
/* The same with the rows of eng_triggers_sql for r->text[0] already read
 * in the open transaction (triggers, borrowed for the call). */
void eng_event_post_matched(eng_req_t *r, const PGresult *triggers, eng_step_fn evented);
/* An Idempotency-Key: 1 to 255 printable ASCII characters. */
bool eng_idempotency_key_ok(const char *k);
/* A task decision of the path's {task_id} with r->body unparsed yet, as
 * POST /tasks/{id}/decision does; r->portal answers the portal's task
 * shape and refuses an edited AI answer ("output"). */
void eng_decide(eng_req_t *r);

/* ---- the routes (api_workflows.c, api_runs.c, api_events.c) ---- */
void eng_put_workflow(tn_call_t *call, void *arg);
void eng_list_workflows(tn_call_t *call, void *arg);
void eng_get_workflow(tn_call_t *call, void *arg);
void eng_get_workflow_version(tn_call_t *call, void *arg);
void eng_start_run(tn_call_t *call, void *arg);
void eng_list_runs(tn_call_t *call, void *arg);
void eng_get_run(tn_call_t *call, void *arg);
void eng_cancel_run(tn_call_t *call, void *arg);
void eng_retry_run(tn_call_t *call, void *arg);
void eng_list_tasks(tn_call_t *call, void *arg);
void eng_get_task(tn_call_t *call, void *arg);
void eng_decide_task(tn_call_t *call, void *arg);
void eng_post_event(tn_call_t *call, void *arg);
void eng_install(tn_call_t *call, void *arg);
void eng_list_installs(tn_call_t *call, void *arg);
void eng_get_install(tn_call_t *call, void *arg);
/* api_insights.c */
void eng_get_insights(tn_call_t *call, void *arg);

#endif
