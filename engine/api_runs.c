/*
 * api_runs.c - runs and human tasks (CONTRACT 6):
 *
 *   GET  /v1/tenants/{t}/runs?workflow=&state=     a page ordered by id
 *   GET  /v1/tenants/{t}/runs/{run_id}             the run, its input, step timeline and tasks
 *   POST /v1/tenants/{t}/runs/{run_id}/cancel      200; 409 run_finished when it already ended
 *   POST /v1/tenants/{t}/runs/{run_id}/retry       202; 409 run_not_failed unless it failed
 *   GET  /v1/tenants/{t}/tasks?state=              a page ordered by id
 *   GET  /v1/tenants/{t}/tasks/{task_id}
 *   POST /v1/tenants/{t}/tasks/{task_id}/decision  200; 403 not_assignee; 409 task_closed
 *
 * A cancel takes a run out of the queue unless a worker holds it; that
 * worker's write (platform.eng_apply) finds the run cancelled and drops
 * its work.  A retry makes a failed run pending at the step that failed,
 * and a decision wakes the run waiting on the task, both through
 * platform.eng_enqueue in the same transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ai.h"
#include "engine/api.h"
#include "tenants/tn.h"

/* An open AI review task's draft, reason and answer spec (docs/ai.md):
 * on the run while it waits (t: tasks). */
#define TASK_REVIEW \
	"SELECT rr.wait->'review' FROM runs rr WHERE rr.id = t.run_id AND rr.wait->>'task' = t.id::text"

/* A task (t: tasks). */
#define TASK_JSON \
	"json_build_object('id', t.id, 'run_id', t.run_id, 'step', t.step, 'title', t.title, " \
	"'assignee_role', t.assignee_role, 'state', t.state, 'due_at', " ENG_TS("t.due_at") ", " \
	"'escalated', t.escalated, 'decided_by', t.decided_by, 'comment', t.comment, 'output', t.output, " \
	"'review', (" TASK_REVIEW "), " \
	"'decided_at', " ENG_TS("t.decided_at") ", 'created_at', " ENG_TS("t.created_at") ")"

#define NIL_UUID "'00000000-0000-0000-0000-000000000000'"

static const char *const run_states[] = { "pending", "running", "waiting", "succeeded", "failed", "cancelled",
					  NULL };
static const char *const task_states[] = { "open", "approved", "rejected", "expired", "cancelled", NULL };

static bool one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

static void oom(tn_call_t *call)
{
	gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
}

/* The path's {param} into r->id and r->text[0]; false (after answering
 * 404) when it is not a canonical UUID: nothing could have that id. */
static bool path_id(eng_req_t *r, const char *param, const char *missing)
{
	const char *id = gw_req_param(r->call->req, param);

	if (!tn_uuid_ok(id)) {
		gw_respond_error(r->call->req, 404, "not_found", "%s", missing);
		return false;
	}
	snprintf(r->id, sizeof(r->id), "%s", id);
	if (eng_req_text(r, 0, id) < 0) {
		oom(r->call);
		return false;
	}
	return true;
}

/* ?limit, ?cursor (an id) and one filter ?fname= (one of set, or a
 * workflow name when set is NULL) of a list: text[0] filter or NULL,
 * text[1] cursor or NULL, text[2] limit + 1.  false after answering. */
static bool list_params(eng_req_t *r, const char *fname, const char *const *set)
{
	char cursor[64], v[80];
	int rc;

	if (!eng_page(r, true, cursor, 2))
		return false;
	rc = eng_query_param(r, fname, v, sizeof(v));
	if (rc < 0 || (rc > 0 && (set ? !one_of(v, set) : !eng_workflow_name_ok(v)))) {
		char path[32];

		snprintf(path, sizeof(path), "/query/%s", fname);
		eng_invalid(r, path, set ? "not a known state" : "not a workflow name");
		return false;
	}
	if ((rc > 0 && eng_req_text(r, 0, v) < 0) || eng_req_text(r, 1, cursor[0] ? cursor : NULL) < 0) {
		oom(r->call);
		return false;
	}
	return true;
}

/* ---- runs: reads ---- */

static const char runs_sql[] =
	"SELECT r.id::text, " ENG_RUN_JSON "::text FROM runs r "
	"WHERE ($1::text IS NULL OR r.workflow = $1) AND ($4::text IS NULL OR r.state = $4) "
	"AND r.id > coalesce($2::uuid, " NIL_UUID ") ORDER BY r.id LIMIT $3::int";

static const char run_sql[] =
	"SELECT (" ENG_RUN_JSON "::jsonb || jsonb_build_object("
	"'input', r.ctx -> 'input', "
	"'steps', coalesce((SELECT jsonb_agg(jsonb_build_object('seq', s.seq, 'step', s.step, 'type', s.type, "
	"  'attempt', s.attempt, 'state', s.state, 'started_at', " ENG_TS("s.started_at") ", "
	"  'finished_at', " ENG_TS("s.finished_at") ", 'output', s.output, 'error', s.error, "
	"  'summary', s.summary) ORDER BY s.seq) FROM run_steps s WHERE s.run_id = r.id), '[]'), "
	"'tasks', coalesce((SELECT jsonb_agg(" TASK_JSON " ORDER BY t.created_at, t.id) "
	"  FROM tasks t WHERE t.run_id = r.id), '[]')))::text "
	"FROM runs r WHERE r.id = $1::uuid";

void eng_list_runs(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);

	if (r == NULL)
		return;
	/* text[0] workflow, [1] cursor, [2] limit, [3] state */
	if (!list_params(r, "workflow", NULL))
		return;
	{
		char v[32];
		int rc = eng_query_param(r, "state", v, sizeof(v));

		if (rc < 0 || (rc > 0 && !one_of(v, run_states))) {
			eng_invalid(r, "/query/state", "not a known state");
			return;
		}
		if (rc > 0 && eng_req_text(r, 3, v) < 0) {
			oom(call);
			return;
		}
	}
	r->sql = runs_sql;
	r->nparams = 4;
	eng_read_page(r);
}

void eng_get_run(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);

	if (r == NULL || !path_id(r, "run_id", "no such run"))
		return;
	r->sql = run_sql;
	r->nparams = 1;
	r->missing = "no such run";
	eng_read_one(r);
}

/* ---- cancel and retry ---- */

/* Why a run the UPDATE left alone was left alone: 404, or its state. */
static const char state_sql[] = "SELECT state FROM runs WHERE id = $1::uuid";

static const char cancel_sql[] =
	"WITH r AS (UPDATE runs SET state = 'cancelled', finished_at = now(), updated_at = now(), wait = NULL, "
	"  wait_event = NULL WHERE id = $1::uuid AND state NOT IN ('succeeded', 'failed', 'cancelled') RETURNING *), "
	"t AS (UPDATE tasks SET state = 'cancelled' WHERE run_id IN (SELECT id FROM r) AND state = 'open' "
	"  RETURNING id), "
	"s AS (UPDATE run_steps SET state = 'cancelled', finished_at = now() "
	"  WHERE run_id IN (SELECT id FROM r) AND state = 'waiting' RETURNING 1), "
	"q AS (DELETE FROM platform.run_queue WHERE run_id IN (SELECT id FROM r) AND owner IS NULL RETURNING run_id) "
	"SELECT " ENG_RUN_JSON "::text, (SELECT count(*) FROM t)::int, (SELECT count(*) FROM s)::int, "
	"(SELECT count(*) FROM q)::int FROM r";

static const char retry_sql[] =
	"UPDATE runs r SET state = 'pending', attempt = 0, error = NULL, wait = NULL, wait_event = NULL, "
	"finished_at = NULL, updated_at = now() "
	"WHERE id = $1::uuid AND state = 'failed' RETURNING " ENG_RUN_JSON "::text, r.step";

static const char enqueue_sql[] = "SELECT platform.eng_enqueue($1::uuid, $2, ARRAY[$3::uuid], NULL)";

static void refused(eng_req_t *r, const PGresult *res)
{
	if (PQntuples(res) == 0)
		eng_fail_code(r, 404, "not_found", "no such run");
	else if (r->status == 200)
		eng_fail_code(r, 409, "run_finished", "the run has already ended");
	else
		eng_fail_code(r, 409, "run_not_failed", "only a failed run can be retried");
}

static void explain(eng_req_t *r)
{
	const char *p[1] = { r->id };

	eng_q(r, state_sql, 1, p, refused);
}

static void cancelled(eng_req_t *r, const PGresult *res)
{
	char target[48];

	if (PQntuples(res) == 0) {
		explain(r);
		return;
	}
	r->out = eng_json_col(res, 0, 0);
	snprintf(target, sizeof(target), "run:%s", r->id);
	eng_audit_commit(r, "run.cancelled", target,
			 json_pack("{s:O*,s:i}", "workflow", json_object_get(r->out, "workflow"),
				   "tasks_cancelled", atoi(PQgetvalue(res, 0, 1))));
}

static void cancel_begun(eng_req_t *r, const PGresult *res)
{
	const char *p[1] = { r->id };

	(void)res;
	eng_q(r, cancel_sql, 1, p, cancelled);
}

void eng_cancel_run(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);

	if (r == NULL || !path_id(r, "run_id", "no such run"))
		return;
	r->status = 200;
	eng_tx(r, cancel_begun);
}

static void retry_enqueued(eng_req_t *r, const PGresult *res)
{
	char target[48];

	(void)res;
	snprintf(target, sizeof(target), "run:%s", r->id);
	eng_audit_commit(r, "run.retried", target,
			 json_pack("{s:O*,s:O*}", "workflow", json_object_get(r->out, "workflow"), "step",
				   json_object_get(r->out, "step")));
}

static void retried(eng_req_t *r, const PGresult *res)
{
	const char *p[3] = { r->call->tenant_id, r->call->schema, r->id };

	if (PQntuples(res) == 0) {
		explain(r);
		return;
	}
	r->out = eng_json_col(res, 0, 0);
	eng_q(r, enqueue_sql, 3, p, retry_enqueued);
}

static void retry_begun(eng_req_t *r, const PGresult *res)
{
	const char *p[1] = { r->id };

	(void)res;
	eng_q(r, retry_sql, 1, p, retried);
}

void eng_retry_run(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);

	if (r == NULL || !path_id(r, "run_id", "no such run"))
		return;
	r->status = 202;
	eng_tx(r, retry_begun);
}

/* ---- tasks ---- */

static const char tasks_sql[] =
	"SELECT t.id::text, " TASK_JSON "::text FROM tasks t "
	"WHERE ($1::text IS NULL OR t.state = $1) "
	"AND t.id > coalesce($2::uuid, " NIL_UUID ") ORDER BY t.id LIMIT $3::int";

static const char task_sql[] = "SELECT " TASK_JSON "::text FROM tasks t WHERE t.id = $1::uuid";

void eng_list_tasks(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);

	if (r == NULL)
		return;
	/* text[0] state, [1] cursor, [2] limit */
	if (!list_params(r, "state", task_states))
		return;
	r->sql = tasks_sql;
	r->nparams = 3;
	eng_read_page(r);
}

void eng_get_task(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);

	if (r == NULL || !path_id(r, "task_id", "no such task"))
		return;
	r->sql = task_sql;
	r->nparams = 1;
	r->missing = "no such task";
	eng_read_one(r);
}

static const char task_lock_sql[] =
	"SELECT t.assignee_role, t.state, (" TASK_REVIEW ")::text FROM tasks t WHERE t.id = $1::uuid FOR UPDATE";

/* $1 id, $2 state, $3 actor, $4 comment, $5 a reviewer's edited AI answer. */
static const char decide_sql[] =
	"UPDATE tasks t SET state = $2, decided_by = $3, comment = $4, output = $5::jsonb, decided_at = now() "
	"WHERE id = $1::uuid AND state = 'open' RETURNING t.run_id::text, " TASK_JSON "::text";

static void decision_enqueued(eng_req_t *r, const PGresult *res)
{
	char target[48];

	(void)res;
	snprintf(target, sizeof(target), "task:%s", r->id);
	eng_audit_commit(r, "task.decided", target,
			 json_pack("{s:s,s:s,s:s,s:b}", "decision", r->text[1], "role", r->text[3],
				   "run_id", r->text[4], "edited", r->text[5] != NULL));
}

static void decided(eng_req_t *r, const PGresult *res)
{
	const char *p[3] = { r->call->tenant_id, r->call->schema, NULL };

	if (PQntuples(res) == 0) {
		/* the row is locked: only a concurrent writer of our own
		 * transaction could have closed it, so this cannot happen */
		eng_fail_code(r, 409, "task_closed", "the task has already been decided or closed");
		return;
	}
	r->out = eng_json_col(res, 0, 1);
	r->status = 200;
	if (r->portal && r->out) {
		/* the portal sees the decision, not the run behind it */
		static const char *const keep[] = { "id", "title", "state", "due_at", "decided_at", "created_at",
						    "comment", NULL };
		json_t *o = json_object();

		for (int i = 0; o && keep[i]; i++)
			json_object_set(o, keep[i], json_object_get(r->out, keep[i]) ? json_object_get(r->out, keep[i])
										: json_null());
		json_decref(r->out);
		r->out = o;
	}
	if (eng_req_text(r, 4, PQgetvalue(res, 0, 0)) < 0) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	p[2] = r->text[4];
	eng_q(r, enqueue_sql, 3, p, decision_enqueued);
}

/* An edited answer goes only to an AI review task, and must be an answer
 * its spec accepts (engine/ai.h); it is stored as checked. */
static bool edit_ok(eng_req_t *r, const PGresult *res)
{
	json_t *review = PQgetisnull(res, 0, 2) ? NULL : eng_json_col(res, 0, 2);
	json_t *edit = json_object_get(r->body, "output"), *clean = NULL;
	mf_err_t err;
	char path[64], full[80];
	bool ok = false;

	if (!json_is_object(review)) {
		mf_err_set(&err, 400, "validation_failed", "/output: only an AI review task takes an edited output");
		eng_fail_ext(r, &err, json_pack("{s:[{s:s,s:s}]}", "errors", "path", "/output", "message",
						"only an AI review task takes an edited output"));
	} else if (eng_ai_check(json_object_get(review, "spec"), edit, true, &clean, &err, path) < 0) {
		/* err.detail is "<path>: <message>" (or the message alone at the root) */
		char msg[256];

		snprintf(msg, sizeof(msg), "%s", path[0] ? err.detail + strlen(path) + 2 : err.detail);
		snprintf(full, sizeof(full), "/output%s", path);
		mf_err_set(&err, 400, "validation_failed", "%s: %s", full, msg);
		eng_fail_ext(r, &err, json_pack("{s:[{s:s,s:s}]}", "errors", "path", full, "message", msg));
	} else {
		char *text = json_dumps(clean, JSON_COMPACT);

		free(r->text[5]);
		r->text[5] = text;
		ok = text != NULL;
		if (!ok)
			eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
	}
	json_decref(clean);
	json_decref(review);
	return ok;
}

static void task_locked(eng_req_t *r, const PGresult *res)
{
	const char *p[5] = { r->id, strcmp(r->text[1], "approve") == 0 ? "approved" : "rejected", r->call->actor,
			     r->text[2], r->text[5] };

	if (PQntuples(res) == 0) {
		eng_fail_code(r, 404, "not_found", "no such task");
		return;
	}
	/* the assignee role, whoever else the caller is: admins of the
	 * tenant or its msp do not decide for the role's holders */
	if (!tn_call_has_role(r->call, PQgetvalue(res, 0, 0))) {
		eng_fail_code(r, 403, "not_assignee", "the task is assigned to a role your token does not hold");
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "open") != 0) {
		eng_fail_code(r, 409, "task_closed", "the task has already been decided or closed");
		return;
	}
	if (r->text[5] && !edit_ok(r, res))
		return;
	p[4] = r->text[5];	/* edit_ok replaced it */
	if (eng_req_text(r, 3, PQgetvalue(res, 0, 0)) < 0) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	eng_q(r, decide_sql, 5, p, decided);
}

static void decide_begun(eng_req_t *r, const PGresult *res)
{
	const char *p[1] = { r->id };

	(void)res;
	eng_q(r, task_lock_sql, 1, p, task_locked);
}

/* Characters (code points) of valid UTF-8 text, as jansson guarantees. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

void eng_decide_task(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);

	if (r == NULL)
		return;
	eng_decide(r);
}

void eng_decide(eng_req_t *r)
{
	static const char *const keys[] = { "decision", "comment", "output", NULL };
	static const char *const portal_keys[] = { "decision", "comment", NULL };
	tn_call_t *call = r->call;
	json_t *comment;
	const char *decision;

	if (!path_id(r, "task_id", "no such task"))
		return;
	if (!eng_req_body(r, r->portal ? portal_keys : keys))
		return;
	decision = json_string_value(json_object_get(r->body, "decision"));
	if (decision == NULL || (strcmp(decision, "approve") != 0 && strcmp(decision, "reject") != 0)) {
		eng_invalid(r, "/decision", "must be \"approve\" or \"reject\"");
		return;
	}
	comment = json_object_get(r->body, "comment");
	if (comment && !json_is_null(comment) &&
	    (!json_is_string(comment) || utf8_chars(json_string_value(comment)) > 2000 ||
	     strlen(json_string_value(comment)) != json_string_length(comment))) {
		eng_invalid(r, "/comment", "must be a string of at most 2000 characters without NUL");
		return;
	}
	if (json_object_get(r->body, "output") &&
	    (!json_is_object(json_object_get(r->body, "output")) || strcmp(decision, "approve") != 0)) {
		eng_invalid(r, "/output", "must be an object, and only with \"approve\" (an edited AI answer)");
		return;
	}
	if (json_object_get(r->body, "output") && (r->text[5] = strdup("{}")) == NULL) {	/* checked under the lock */
		oom(call);
		return;
	}
	if (eng_req_text(r, 1, decision) < 0 || eng_req_text(r, 2, json_string_value(comment)) < 0) {
		oom(call);
		return;
	}
	eng_tx(r, decide_begun);
}
