/*
 * runner.c - a worker thread's share of the engine: claim due runs, load
 * them, advance each as far as it can go, and write what changed.
 *
 * A run in memory goes LOAD -> (advance) -> one of:
 *   park   it waits (task, event, timer) or ended: its changes join the
 *          next apply, which also lets the lease go (with a timer when it
 *          needs one);
 *   call   an http step: if earlier steps of this pass changed anything,
 *          that is applied first with the lease kept, then the call goes
 *          out; its result is consumed by advancing again;
 *   emit   needs the workflows an event type starts: one query, cached.
 * Applies are batched: every run that reached a park or a call during one
 * pass of the event loop goes into one platform.eng_apply per tenant,
 * which writes only while this worker still holds each run's lease.  A
 * failed apply or a lost lease drops the run from memory; the lease
 * expires and whoever claims it next re-does the work from the last
 * committed state (steps run at least once; http steps carry
 * Idempotency-Key "<run>:<step>" so their effects happen once).
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <sodium.h>

#include "connectors/connectors.h"
#include "connectors/redact.h"
#include "core/render.h"
#include "engine/ai.h"
#include "core/duration.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/otlp.h"
#include "core/trace.h"
#include "core/worker.h"
#include "engine/definition.h"
#include "engine/eng.h"
#include "engine/expr.h"
#include "tenants/tn.h"

#define MAX_STEPS_PER_PASS 1000
#define APPLY_MAX 128			/* runs per eng_apply statement */
#define TRIGGER_TTL_MS 1000		/* how long a worker reuses the workflows an event type starts */
#define FACTS_TTL_MS 2000		/* how long a worker reuses a tenant's policy and branding */
#define WAIT_POLL_S 60			/* a run waiting for an event looks again at least this often */
#define WAIT_SINCE_MARGIN_S 5		/* events this much older than the wait still match it */
#define SWEEP_MS 2000
#define MAX_CTX_BYTES (4 * 1024 * 1024)

/* Default retry of a step without "retry": 3 attempts, 1 s doubling to 60 s. */
#define DEFAULT_ATTEMPTS 3
#define DEFAULT_BACKOFF_S 1
#define DEFAULT_MAX_BACKOFF_S 60

enum phase { P_LOAD, P_READY, P_TRIGGERS, P_FACTS, P_CALL, P_APPLY };
enum outcome { O_PARK, O_CALL, O_TRIGGERS, O_FACTS };

typedef struct run run_t;

struct run {
	run_t *next, *prev;		/* all runs of the runner */
	run_t *apply_next;		/* in the pending apply list */
	eng_runner_t *r;
	enum phase phase;
	char id[37];
	char tenant_id[37];
	char schema[64];
	char workflow[64];
	int version;
	json_t *def;			/* the version's definition (reference) */
	char state[16];
	char step[64];			/* current step id, "" at the end */
	int attempt;			/* attempts of the current step so far */
	int seq;			/* last timeline row written */
	json_t *ctx;
	json_t *wait;			/* what the run waits for, or NULL */
	json_t *task;			/* loaded task row, or NULL */
	json_t *events;			/* loaded events of the awaited type, or NULL */
	/* changes not applied yet */
	bool dirty;
	json_t *rows, *audit, *emitted, *task_new, *task_update, *error;
	char wait_event[130];
	bool has_due;
	double due;			/* unix seconds */
	bool keep;			/* the apply keeps the lease: a call follows */
	/* an http call */
	cx_op_t *op;
	struct event *timeout;
	json_t *result;			/* the call's outcome, consumed by advance */
	/* an ai step's call: its request body and answer spec, built while
	 * the tenant's policy was at hand; invalid answers so far */
	char *ai_body;
	char *ai_prompt;		/* for the timeline, when the policy logs prompts */
	json_t *ai_spec;
	int ai_invalid;
	char ai_complaint[256];		/* what was wrong with the last answer */
	char need_type[130];		/* P_TRIGGERS: the event type */
	char step_span[17];		/* the span of the call under way ("" = none) */
	char sql[512];			/* its statement (the pool keeps a pointer to the text) */
};

/* What ai and message steps need of a tenant, cached per worker. */
typedef struct facts {
	struct facts *next;
	char tenant_id[37];
	json_t *policy;			/* effective policy */
	json_t *brand;			/* effective branding */
	json_t *tenant;			/* {id, name, slug, kind} */
	long long at_ms;
} facts_t;

typedef struct trig {
	struct trig *next;
	char key[200];
	PGresult *res;
	long long at_ms;
} trig_t;

struct eng_runner {
	eng_worker_t *ew;
	mf_worker_t *w;
	const mf_config_t *cfg;
	char owner[37];
	char lease_ms[16], batch[16];
	run_t *runs;
	int nruns;
	run_t *apply_head, **apply_tail;
	struct event *claim_ev, *poll_ev, *renew_ev, *flush_ev, *sweep_ev;
	struct event *gauge_ev;		/* worker 0: one-shot, re-armed when a count ends */
	eng_listen_t *listen;
	bool claiming, claim_again;
	bool closing;			/* shutting down: callbacks only free */
	trig_t *trigs;
	facts_t *facts;
	_Atomic unsigned long long n_claims, n_claimed, n_applied, n_lost, n_steps, n_finished, n_failed;
	_Atomic unsigned long long n_retries, n_calls;
	_Atomic unsigned long long n_ai_auto, n_ai_review, n_ai_invalid;
	_Atomic int n_mem;
};

static void advance(run_t *run);
static void run_free(run_t *run);

/* ---- clocks and small helpers ---- */

double eng_wall_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

void eng_iso_time(double t, char out[64])
{
	time_t s = (time_t)t;
	struct tm tm;
	int ms = (int)((t - (double)s) * 1000.0);

	gmtime_r(&s, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, ms < 0 ? 0 : ms > 999 ? 999 : ms);
}

static json_t *iso_json(double t)
{
	char buf[64];

	eng_iso_time(t, buf);
	return json_string(buf);
}

/* RFC 3339 text from PostgreSQL's JSON (row_to_json) or ours, as unix seconds; 0 if unreadable. */
static double parse_time(const char *s)
{
	struct tm tm = { 0 };
	double frac = 0;
	const char *p;
	int off = 0;

	if (s == NULL)
		return 0;
	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		return 0;
	if (*p == '.') {
		char *end;

		frac = strtod(p, &end);
		p = end;
	}
	if (*p == '+' || *p == '-') {
		int hh = 0, mm = 0;

		if (sscanf(p + 1, "%d:%d", &hh, &mm) >= 1)
			off = (hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
	}
	return (double)timegm(&tm) + frac - off;
}

static long long dur_s(const json_t *v, long long dflt)
{
	long long s;

	if (!json_is_string(v) || mf_duration_parse(json_string_value(v), &s, NULL) < 0)
		return dflt;
	return s;
}

static const json_t *cur_step(const run_t *run)
{
	int i = eng_def_step_index(run->def, run->step);

	return i >= 0 ? eng_def_step_at(run->def, (size_t)i) : NULL;
}

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Appends a timeline row; returns it (borrowed) for later changes. */
/* ---- telemetry: metrics (process-wide relaxed atomics, read by
 * /metrics on any thread) and spans (core/otlp.h) ----
 * A run's trace lives in its ctx as "trace": {"id", "span", "parent",
 * "start"}: the trace id, the run's own span id, its parent (the span of
 * the request that started it, "" = none) and when it started (Unix ns, a
 * string).  The routes that start runs put it there (eng_runs_set_trace);
 * a run without one gets it when first loaded.  Steps' spans are children
 * of the run's span, so every worker that advances the run continues the
 * same trace. */
static const char *const step_types[] = { "transform", "decide", "emit", "http", "message", "ai", "approval",
					  "wait", "other" };
#define N_STEP_TYPES (sizeof(step_types) / sizeof(step_types[0]))
static mf_hist_t step_hist[N_STEP_TYPES];
static mf_hist_t claim_hist;
static unsigned long long n_lease_expiries, n_started;
/* refreshed by worker 0 of each process every engine_gauge_ms (the first
 * count right at start); -1 = not known yet, and the series is left out
 * rather than reported as a false 0 */
#define GAUGE_RETRY_MS 200	/* while the pool has no connection yet */
enum { G_READY, G_SCHEDULED, G_LEASED, G_EXPIRED, G_DLQ_RUNS, G_DLQ_DELIVERIES, G_N };
static long long gauges[G_N] = { -1, -1, -1, -1, -1, -1 };

static unsigned long long ns_of(double t)
{
	return t > 0 ? (unsigned long long)(t * 1e9) : 0;
}

static const json_t *run_trace(const run_t *run)
{
	const json_t *t = json_object_get(run->ctx, "trace");

	return json_is_string(json_object_get(t, "id")) && json_is_string(json_object_get(t, "span")) ? t : NULL;
}

/* One step attempt ended (or began waiting): its latency and its span. */
static void step_observe(run_t *run, const json_t *step, const char *state, double started)
{
	const char *type = str(step, "type");
	const json_t *t;
	double now = eng_wall_now();
	size_t k;
	mf_trace_t sp;
	json_t *a;

	for (k = 0; k < N_STEP_TYPES - 1 && (type == NULL || strcmp(type, step_types[k]) != 0); k++)
		;
	if (strcmp(state, "waiting") != 0)
		mf_hist_observe(&step_hist[k], now > started ? (unsigned long long)((now - started) * 1e6) : 0);
	if (!mf_otlp_enabled() || (t = run_trace(run)) == NULL) {
		run->step_span[0] = '\0';
		return;
	}
	if (run->step_span[0] == '\0') {
		mf_trace_new(&sp);
		memcpy(run->step_span, sp.parent_id, sizeof(run->step_span));
	}
	a = json_array();
	mf_otlp_attr_str(a, "mspflow.step.id", str(step, "id"));
	mf_otlp_attr_str(a, "mspflow.step.type", step_types[k]);
	mf_otlp_attr_int(a, "mspflow.step.attempt", run->attempt + 1);
	mf_otlp_attr_str(a, "mspflow.step.outcome", state);
	mf_otlp_attr_str(a, "mspflow.run_id", run->id);
	mf_otlp_attr_str(a, "mspflow.tenant_id", run->tenant_id);
	mf_otlp_span(str(t, "id"), run->step_span, str(t, "span"), "step", MF_SPAN_INTERNAL, ns_of(started),
		     ns_of(now), strcmp(state, "failed") == 0, a);
	run->step_span[0] = '\0';
}

/* The run reached an end state: its span, from its start to now. */
static void run_observe(const run_t *run, const char *state)
{
	const json_t *t = run_trace(run);
	const char *start = str(t, "start");
	char name[96];
	json_t *a;

	if (!mf_otlp_enabled() || t == NULL)
		return;
	a = json_array();
	mf_otlp_attr_str(a, "mspflow.run_id", run->id);
	mf_otlp_attr_str(a, "mspflow.workflow", run->workflow);
	mf_otlp_attr_int(a, "mspflow.workflow.version", run->version);
	mf_otlp_attr_str(a, "mspflow.run.state", state);
	mf_otlp_attr_str(a, "mspflow.tenant_id", run->tenant_id);
	snprintf(name, sizeof(name), "run %s", run->workflow);
	mf_otlp_span(str(t, "id"), str(t, "span"), str(t, "parent"), name, MF_SPAN_INTERNAL,
		     start ? strtoull(start, NULL, 10) : mf_otlp_now_ns(), mf_otlp_now_ns(), strcmp(state, "failed") == 0,
		     a);
}

static json_t *add_row(run_t *run, const json_t *step, const char *state, double started, json_t *output,
		       json_t *error)
{
	json_t *row = json_pack("{s:i, s:s, s:s, s:i, s:s, s:o, s:o, s:o, s:o}", "seq", ++run->seq, "step",
				str(step, "id"), "type", str(step, "type"), "attempt", run->attempt + 1, "state",
				state, "started_at", iso_json(started), "finished_at",
				strcmp(state, "waiting") == 0 ? json_null() : iso_json(eng_wall_now()), "output",
				output ? output : json_null(), "error", error ? error : json_null());

	step_observe(run, step, state, started);
	if (row == NULL || json_array_append_new(run->rows, row) < 0)
		return NULL;
	run->dirty = true;
	return row;
}

static void audit(run_t *run, const char *action, json_t *detail)
{
	json_t *a = json_pack("{s:s, s:o}", "action", action, "detail", detail ? detail : json_object());

	if (a)
		json_array_append_new(run->audit, a);
	run->dirty = true;
}

static void set_state(run_t *run, const char *state)
{
	if (strcmp(run->state, state) == 0)
		return;
	if (strcmp(state, "running") == 0 && strcmp(run->state, "pending") == 0)
		__atomic_fetch_add(&n_started, 1, __ATOMIC_RELAXED);
	if (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 || strcmp(state, "cancelled") == 0)
		run_observe(run, state);
	audit(run, strcmp(state, "running") == 0 && strcmp(run->state, "pending") == 0 ? "run.started"
		   : strcmp(state, "succeeded") == 0 ? "run.succeeded"
		   : strcmp(state, "failed") == 0 ? "run.failed"
		   : strcmp(state, "waiting") == 0 ? "run.waiting"
		   : "run.running",
	      json_pack("{s:s, s:s}", "from", run->state, "step", run->step));
	snprintf(run->state, sizeof(run->state), "%s", state);
}

static void set_output(run_t *run, const char *step_id, json_t *output)
{
	json_t *steps = json_object_get(run->ctx, "steps");

	if (!json_is_object(steps)) {
		steps = json_object();
		json_object_set_new(run->ctx, "steps", steps);
	}
	json_object_set_new(steps, step_id, json_pack("{s:O}", "output", output ? output : json_null()));
}

/* Goes on to step index i (ENG_DEF_END: the run succeeded). */
static void goto_step(run_t *run, int i)
{
	const json_t *s = i >= 0 ? eng_def_step_at(run->def, (size_t)i) : NULL;

	run->attempt = 0;
	run->ai_invalid = 0;
	json_decref(run->wait);
	run->wait = NULL;
	run->wait_event[0] = '\0';
	if (s == NULL) {
		run->step[0] = '\0';
		set_state(run, "succeeded");
		return;
	}
	snprintf(run->step, sizeof(run->step), "%s", str(s, "id"));
	set_state(run, "running");
}

/* Where a step goes when it succeeds: "next" (null ends), else the following step. */
static int next_of(const run_t *run, const json_t *step, const char *key)
{
	const json_t *n = json_object_get(step, key);
	int i;

	if (n == NULL && strcmp(key, "next") == 0) {
		i = eng_def_step_index(run->def, str(step, "id"));
		return i >= 0 && (size_t)(i + 1) < eng_def_step_count(run->def) ? i + 1 : ENG_DEF_END;
	}
	if (!json_is_string(n))
		return ENG_DEF_END;
	i = eng_def_step_index(run->def, json_string_value(n));
	return i >= 0 ? i : ENG_DEF_END;
}

static json_t *err_json(const char *code, const char *detail)
{
	return json_pack("{s:s, s:s}", "code", code, "detail", detail);
}

/* The step failed for good: the run is dead-lettered. */
static void dead_letter(run_t *run, const json_t *step, json_t *error)
{
	json_object_set_new(error, "step", json_string(str(step, "id")));
	json_object_set_new(error, "attempts", json_integer(run->attempt + 1));
	json_decref(run->error);
	run->error = json_incref(error);
	add_row(run, step, "failed", eng_wall_now(), NULL, error);
	set_state(run, "failed");
	run->r->n_failed++;
}

/* Templates of a JSON value (strings at any depth), rendered over ctx. */
static json_t *render(const json_t *v, const json_t *ctx, mf_err_t *err, int depth)
{
	if (depth > 40) {
		mf_err_set(err, 400, "expression_failed", "value nested too deeply");
		return NULL;
	}
	if (json_is_string(v)) {
		json_t *out = NULL;

		return eng_template_value(json_string_value(v), ctx, &out, err) == 0 ? out : NULL;
	}
	if (json_is_object(v)) {
		json_t *o = json_object();
		const char *k;
		json_t *x;

		json_object_foreach((json_t *)v, k, x) {
			json_t *y = render(x, ctx, err, depth + 1);

			if (y == NULL || json_object_set_new(o, k, y) < 0) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *x;

		json_array_foreach(v, i, x) {
			json_t *y = render(x, ctx, err, depth + 1);

			if (y == NULL || json_array_append_new(a, y) < 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	return json_deep_copy(v);
}

/* Evaluates an "output" object (name -> expression) over scope. */
static json_t *outputs(const json_t *spec, const json_t *scope, mf_err_t *err)
{
	json_t *out = json_object();
	const char *k;
	json_t *x;

	json_object_foreach((json_t *)spec, k, x) {
		const char *src = json_string_value(x);
		eng_expr_t *e = src ? eng_expr_parse(src, strlen(src), err) : NULL;
		json_t *v = NULL;

		if (e == NULL || eng_expr_eval(e, scope, &v, err) < 0) {
			eng_expr_free(e);
			json_decref(out);
			return NULL;
		}
		eng_expr_free(e);
		json_object_set_new(out, k, v);
	}
	return out;
}

static int eval_bool(const char *src, const json_t *scope, bool *out, mf_err_t *err)
{
	eng_expr_t *e = eng_expr_parse(src, strlen(src), err);
	json_t *v = NULL;

	if (e == NULL || eng_expr_eval(e, scope, &v, err) < 0) {
		eng_expr_free(e);
		return -1;
	}
	*out = eng_expr_truthy(v);
	json_decref(v);
	eng_expr_free(e);
	return 0;
}

static void park(run_t *run, bool has_due, double due)
{
	run->has_due = has_due;
	run->due = due;
}

/* ---- step types ---- */

static void step_failed_expr(run_t *run, const json_t *step, const mf_err_t *err)
{
	dead_letter(run, step, err_json(err->code[0] ? err->code : "expression_failed", err->detail));
}

/* The retry policy of a step: attempts, first backoff and cap (seconds). */
static void retry_policy(const json_t *step, int *max, long long *backoff, long long *cap)
{
	const json_t *p = json_object_get(step, "retry");

	*max = DEFAULT_ATTEMPTS;
	*backoff = DEFAULT_BACKOFF_S;
	*cap = DEFAULT_MAX_BACKOFF_S;
	if (json_is_object(p)) {
		*max = (int)json_integer_value(json_object_get(p, "max_attempts"));
		*backoff = dur_s(json_object_get(p, "backoff"), DEFAULT_BACKOFF_S);
		*cap = dur_s(json_object_get(p, "max_backoff"), DEFAULT_MAX_BACKOFF_S);
		if (*max < 1)
			*max = 1;
	}
}

/* Exponential backoff with jitter: a uniform draw in [d/2, d] where d =
 * backoff * 2^(attempt-1) capped; a peer's Retry-After wins when longer. */
static double backoff_s(int attempt, long long backoff, long long cap, long long retry_after_ms)
{
	double d = (double)backoff * pow(2.0, attempt > 30 ? 30 : attempt - 1);

	if (d > (double)cap)
		d = (double)cap;
	d = d / 2 + (d / 2) * ((double)randombytes_uniform(1000001) / 1e6);
	if (retry_after_ms > 0 && retry_after_ms / 1000.0 > d)
		d = retry_after_ms / 1000.0;
	return d;
}

/* A call that did not succeed (res: the call's outcome): retried after a
 * backoff if the failure may pass and the step's retry policy allows,
 * else the run is dead-lettered.  summary (may be NULL) goes on the row. */
static void call_failed(run_t *run, const json_t *step, const json_t *res, json_t *summary, double started)
{
	int status = (int)json_integer_value(json_object_get(res, "status"));
	const char *error = str(res, "error");
	bool retryable = error ? strcmp(error, "bad_request") != 0 && strcmp(error, "egress_refused") != 0 && strcmp(error, "not_found") != 0 &&
				 strcmp(error, "credential_missing") != 0 && strcmp(error, "too_large") != 0
			       : status == 408 || status == 429 || status >= 500;
	int max;
	long long backoff, cap;
	json_t *e = json_pack("{s:s, s:s, s:i}", "code", error ? error : "http_status", "detail",
			      str(res, "detail") ? str(res, "detail") : "", "status", status);
	json_t *row;

	retry_policy(step, &max, &backoff, &cap);
	if (retryable && run->attempt + 1 < max) {
		double d = backoff_s(run->attempt + 1, backoff, cap,
				     json_integer_value(json_object_get(res, "retry_after_ms")));

		row = add_row(run, step, "retrying", started, NULL, e);
		if (row && summary)
			json_object_set(row, "summary", summary);
		run->attempt++;
		run->r->n_retries++;
		park(run, true, eng_wall_now() + d);
	} else {
		row = NULL;
		dead_letter(run, step, e);
		if (run->rows && json_array_size(run->rows)) {
			row = json_array_get(run->rows, json_array_size(run->rows) - 1);
			if (summary)
				json_object_set(row, "summary", summary);
		}
	}
}

/* Consumes a finished call's result.  Returns true when the run moved on. */
static void http_done(run_t *run, const json_t *step)
{
	json_t *res = run->result;
	int status = (int)json_integer_value(json_object_get(res, "status"));
	const char *error = str(res, "error");
	json_t *summary = json_object_get(res, "summary");
	double started = json_real_value(json_object_get(res, "started"));

	run->result = NULL;
	if (error == NULL && status >= 200 && status < 300) {
		mf_err_t err;
		json_t *out;
		const json_t *spec = json_object_get(step, "output");

		json_object_set(run->ctx, "response", json_object_get(res, "response"));
		out = spec ? outputs(spec, run->ctx, &err) : json_pack("{s:i}", "status", status);
		json_object_del(run->ctx, "response");
		if (out == NULL) {
			step_failed_expr(run, step, &err);
		} else {
			json_t *row = add_row(run, step, "succeeded", started, json_incref(out), NULL);

			if (row && summary)
				json_object_set(row, "summary", summary);
			set_output(run, str(step, "id"), out);
			json_decref(out);
			goto_step(run, next_of(run, step, "next"));
		}
	} else {
		call_failed(run, step, res, summary, started);
	}
	json_decref(res);
}

static void approval(run_t *run, const json_t *step)
{
	double now = eng_wall_now();
	const json_t *t = run->task;
	const char *tstate = str(t, "state");
	long long sla = dur_s(json_object_get(step, "sla"), 86400);

	if (run->wait == NULL || t == NULL) {
		mf_err_t err;
		char id[37];
		json_t *title = NULL;
		double due = now + (double)sla;

		if (eng_template_value(str(step, "title"), run->ctx, &title, &err) < 0) {
			step_failed_expr(run, step, &err);
			return;
		}
		tn_uuid_new(id);
		json_decref(run->task_new);
		run->task_new = json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id, "step", str(step, "id"), "title",
					  json_is_string(title) ? json_string_value(title) : "", "assignee_role",
					  str(step, "assignee_role"), "due_at", iso_json(due));
		json_decref(title);
		add_row(run, step, "waiting", now, NULL, NULL);
		json_decref(run->wait);
		run->wait = json_pack("{s:s, s:i}", "task", id, "seq", run->seq);
		set_state(run, "waiting");
		park(run, true, due);
		return;
	}
	if (tstate && strcmp(tstate, "open") == 0) {
		double due = parse_time(str(t, "due_at"));

		if (now < due) {
			park(run, true, due);
			return;
		}
		if (strcmp(str(step, "on_timeout") ? str(step, "on_timeout") : "", "escalate") == 0 &&
		    !json_is_true(json_object_get(t, "escalated"))) {
			json_decref(run->task_update);
			run->task_update = json_pack("{s:s, s:s, s:b, s:o}", "id", str(t, "id"), "assignee_role",
						     str(step, "escalate_to"), "escalated", 1, "due_at",
						     iso_json(now + (double)sla));
			audit(run, "task.escalated", json_pack("{s:s, s:s, s:s}", "task", str(t, "id"), "from",
								str(t, "assignee_role"), "to", str(step, "escalate_to")));
			park(run, true, now + (double)sla);
			return;
		}
		json_decref(run->task_update);
		run->task_update = json_pack("{s:s, s:s}", "id", str(t, "id"), "state", "expired");
		audit(run, "task.expired", json_pack("{s:s}", "task", str(t, "id")));
		tstate = "expired";
	}
	{
		bool approved = tstate && strcmp(tstate, "approved") == 0;
		json_t *out = json_pack("{s:s, s:o, s:o}", "decision", approved ? "approved" : tstate ? tstate : "rejected",
					"by", json_incref(json_object_get(t, "decided_by") ? json_object_get(t, "decided_by") : json_null()),
					"comment", json_incref(json_object_get(t, "comment") ? json_object_get(t, "comment") : json_null()));
		json_t *row = json_pack("{s:I, s:s, s:s, s:i, s:s, s:o, s:o, s:O, s:n}", "seq",
					json_integer_value(json_object_get(run->wait, "seq")), "step", str(step, "id"),
					"type", "approval", "attempt", 1, "state", "succeeded", "started_at",
					json_incref(json_object_get(t, "created_at") ? json_object_get(t, "created_at") : json_null()),
					"finished_at", iso_json(now), "output", out, "error");

		if (row)
			json_array_append_new(run->rows, row);
		set_output(run, str(step, "id"), out);
		json_decref(out);
		goto_step(run, next_of(run, step, approved ? "next" : "next_on_reject"));
	}
}

static void wait_step(run_t *run, const json_t *step)
{
	double now = eng_wall_now();
	const char *type = str(step, "event");

	if (run->wait == NULL) {
		long long timeout = dur_s(json_object_get(step, "timeout"), 0);
		double until = type ? (timeout > 0 ? now + (double)timeout : 0)
				    : now + (double)dur_s(json_object_get(step, "duration"), 1);

		add_row(run, step, "waiting", now, NULL, NULL);
		run->wait = json_pack("{s:i, s:o, s:o}", "seq", run->seq, "since", iso_json(now - WAIT_SINCE_MARGIN_S),
				      "until", until > 0 ? iso_json(until) : json_null());
		if (type) {
			json_object_set_new(run->wait, "event", json_string(type));
			snprintf(run->wait_event, sizeof(run->wait_event), "%s", type);
		}
		set_state(run, "waiting");
		/* an event type: look once right away, for events that came meanwhile */
		park(run, true, type ? now : until);
		return;
	}
	{
		double until = parse_time(str(run->wait, "until"));
		json_t *out = NULL;
		size_t i;
		json_t *ev;

		if (type) {
			const char *match = str(step, "match");

			json_array_foreach(run->events, i, ev) {
				bool ok = true;

				if (match) {
					mf_err_t err;
					json_t *saved = json_incref(json_object_get(run->ctx, "data"));

					json_object_set(run->ctx, "data", json_object_get(ev, "data"));
					if (eval_bool(match, run->ctx, &ok, &err) < 0)
						ok = false;
					json_object_set_new(run->ctx, "data", saved ? saved : json_null());
				}
				if (ok) {
					out = json_pack("{s:{s:O, s:O, s:O}}", "event", "id", json_object_get(ev, "id"),
							"type", json_object_get(ev, "type"), "data", json_object_get(ev, "data"));
					break;
				}
			}
			if (out == NULL) {
				if (until > 0 && now >= until) {
					mf_err_t err;

					mf_err_set(&err, 400, "wait_timeout", "no matching event arrived in time");
					step_failed_expr(run, step, &err);
					return;
				}
				park(run, true, until > 0 && until < now + WAIT_POLL_S ? until : now + WAIT_POLL_S);
				return;
			}
		} else {
			if (now < until) {
				park(run, true, until);
				return;
			}
			out = json_object();
		}
		{
			json_t *row = json_pack("{s:I, s:s, s:s, s:i, s:s, s:O, s:o, s:O, s:n}", "seq",
						json_integer_value(json_object_get(run->wait, "seq")), "step",
						str(step, "id"), "type", "wait", "attempt", 1, "state", "succeeded",
						"started_at", json_object_get(run->wait, "since"), "finished_at",
						iso_json(now), "output", out, "error");

			if (row)
				json_array_append_new(run->rows, row);
		}
		set_output(run, str(step, "id"), out);
		json_decref(out);
		goto_step(run, next_of(run, step, "next"));
	}
}

static trig_t *trig_find(eng_runner_t *r, const char *key)
{
	long long now = tn_now_ms();

	for (trig_t **pp = &r->trigs; *pp;) {
		trig_t *t = *pp;

		if (now - t->at_ms > TRIGGER_TTL_MS) {
			*pp = t->next;
			PQclear(t->res);
			free(t);
			continue;
		}
		if (strcmp(t->key, key) == 0)
			return t;
		pp = &t->next;
	}
	return NULL;
}

/* Returns false when the triggers of the event type must be loaded first. */
static bool emit(run_t *run, const json_t *step)
{
	char key[200], eid[37], source[48];
	const char *type = str(step, "event");
	trig_t *t;
	mf_err_t err;
	json_t *data, *runs, *entry, *tenant;

	snprintf(key, sizeof(key), "%s|%s", run->schema, type);
	t = trig_find(run->r, key);
	if (t == NULL) {
		snprintf(run->need_type, sizeof(run->need_type), "%s", type);
		return false;
	}
	data = json_object_get(step, "data") ? render(json_object_get(step, "data"), run->ctx, &err, 0) : json_object();
	if (data == NULL) {
		step_failed_expr(run, step, &err);
		return true;
	}
	tn_uuid_new(eid);
	snprintf(source, sizeof(source), "run:%s", run->id);
	tenant = json_pack("{s:s}", "id", run->tenant_id);
	runs = eng_runs_for_event(t->res, eid, type, data, tenant);
	json_decref(tenant);
	entry = json_pack("{s:{s:s, s:s, s:O, s:s}, s:o}", "event", "id", eid, "type", type, "data", data, "source",
			  source, "runs", runs ? runs : json_array());
	if (entry)
		json_array_append_new(run->emitted, entry);
	{
		json_t *out = json_pack("{s:s}", "event_id", eid);

		add_row(run, step, "succeeded", eng_wall_now(), json_incref(out), NULL);
		set_output(run, str(step, "id"), out);
		json_decref(out);
	}
	json_decref(data);
	goto_step(run, next_of(run, step, "next"));
	return true;
}

/* ---- a tenant's policy and branding (ai and message steps) ---- */

static void facts_free(facts_t *f)
{
	json_decref(f->policy);
	json_decref(f->brand);
	json_decref(f->tenant);
	free(f);
}

static const facts_t *facts_find(eng_runner_t *r, const char *tenant_id)
{
	long long now = tn_now_ms();

	for (facts_t **pp = &r->facts; *pp;) {
		facts_t *f = *pp;

		if (now - f->at_ms > FACTS_TTL_MS) {
			*pp = f->next;
			facts_free(f);
			continue;
		}
		if (strcmp(f->tenant_id, tenant_id) == 0)
			return f;
		pp = &f->next;
	}
	return NULL;
}

/* A scope for message templates and ai prompts: the run context with the
 * tenant's brand and its name, slug and kind (new reference). */
static json_t *facts_scope(const run_t *run, const facts_t *f)
{
	json_t *scope = json_copy(run->ctx);

	if (scope) {
		json_object_set(scope, "brand", f->brand);
		json_object_set(scope, "tenant", f->tenant);
	}
	return scope;
}

/* message: renders a message of the definition (core/render.h) over the
 * run context plus brand; the text is the step's output. */
static void message_step(run_t *run, const json_t *step, const facts_t *f)
{
	const json_t *tpl = json_object_get(json_object_get(run->def, "messages"), str(step, "message"));
	json_t *scope = facts_scope(run, f), *out;
	mf_render_err_t rerr;
	char *text = NULL;

	if (scope == NULL || !json_is_string(tpl) ||
	    mf_render(json_string_value(tpl), json_string_length(tpl), scope, &text, &rerr) < 0) {
		json_decref(scope);
		dead_letter(run, step, err_json("message_failed", tpl ? rerr.err.detail : "the message is not defined"));
		return;
	}
	json_decref(scope);
	out = json_pack("{s:s}", "text", text);
	free(text);
	add_row(run, step, "succeeded", eng_wall_now(), json_incref(out), NULL);
	set_output(run, str(step, "id"), out);
	json_decref(out);
	goto_step(run, next_of(run, step, "next"));
}

/* ---- ai steps (engine/ai.h, docs/ai.md) ---- */

/* Who reviews an ai draft, and for how long: the step's assignee_role and
 * sla, else the first approvals rule of the policy matching the workflow,
 * else the policy's escalation role and default SLA. */
static void ai_reviewer(const run_t *run, const json_t *step, const json_t *approvals, const char **role,
			long long *sla)
{
	const json_t *rule = NULL, *x;
	size_t i;

	json_array_foreach(json_object_get(approvals, "rules"), i, x)
		if (str(x, "workflow") && fnmatch(str(x, "workflow"), run->workflow, 0) == 0) {
			rule = x;
			break;
		}
	*role = str(step, "assignee_role") ? str(step, "assignee_role")
	      : rule && str(rule, "assignee_role") ? str(rule, "assignee_role")
	      : str(approvals, "escalation_role") ? str(approvals, "escalation_role") : "msp_operator";
	*sla = dur_s(json_object_get(step, "sla"),
		     dur_s(rule ? json_object_get(rule, "sla") : NULL, dur_s(json_object_get(approvals, "default_sla"), 172800)));
}

/* The values a step's "redact" expressions name, as scrub strings for
 * cx_redact_json (NULL-terminated; strings borrowed from *keep). */
static const char **redact_values(const run_t *run, const json_t *step, json_t **keep)
{
	const json_t *list = json_object_get(step, "redact"), *x;
	const char **out = calloc(json_array_size(list) + 1, sizeof(*out));
	size_t i, n = 0;

	*keep = json_array();
	if (out == NULL || *keep == NULL)
		return out;
	json_array_foreach(list, i, x) {
		eng_expr_t *e;
		json_t *v = NULL;
		mf_err_t err;

		e = eng_expr_parse(json_string_value(x), strlen(json_string_value(x)), &err);
		if (e && eng_expr_eval(e, run->ctx, &v, &err) == 0 && json_is_string(v)) {
			json_array_append(*keep, v);
			out[n++] = json_string_value(v);
		}
		json_decref(v);
		eng_expr_free(e);
	}
	return out;
}

/* The timeline's record of an ai call: with policy ai.log_prompts, the
 * call summary (credentials, vault secrets and the connector's
 * redact_fields already out) plus the prompt, with the step's redact
 * values scrubbed from both; without, the summary minus the answer. */
static json_t *ai_summary(const run_t *run, const json_t *step, json_t *summary, bool log_prompts)
{
	json_t *out, *keep = NULL;
	const char **values;

	if (summary == NULL)
		return NULL;
	if (!log_prompts) {
		/* the call's result is dropped after this: change it in place */
		if (json_is_object(json_object_get(summary, "response")))
			json_object_set_new(json_object_get(summary, "response"), "body",
					    json_string("[not logged: policy ai.log_prompts is off]"));
		return json_incref(summary);
	}
	out = json_deep_copy(summary);
	if (out && json_is_object(json_object_get(out, "request")) && run->ai_prompt)
		json_object_set_new(json_object_get(out, "request"), "prompt", json_string(run->ai_prompt));
	values = redact_values(run, step, &keep);
	{
		json_t *clean = out ? cx_redact_json(out, NULL, values, 0) : NULL;

		json_decref(out);
		out = clean;
	}
	free(values);
	json_decref(keep);
	return out;
}

/* Prepares the call of an ai step: governance first, then the prompt and
 * the request.  Returns false when the step failed instead. */
static bool ai_prepare(run_t *run, const json_t *step, const facts_t *f)
{
	const json_t *pai = json_object_get(f->policy, "ai");
	const char *refusal = eng_ai_refusal(pai, str(step, "task"));
	json_t *scope, *opts = NULL;
	char *prompt = NULL;
	mf_err_t err;

	if (refusal) {
		dead_letter(run, step, err_json(refusal, strcmp(refusal, "ai_disabled") == 0
					       ? "the tenant's policy does not enable AI steps (ai.enabled)"
					       : "the tenant's policy does not allow this AI task (ai.allowed_tasks)"));
		return false;
	}
	scope = facts_scope(run, f);
	if (scope == NULL || eng_template_render(str(step, "prompt"), scope, false, &prompt, &err) < 0)
		goto expr_failed;
	if (json_object_get(step, "options")) {
		const char *src = str(step, "options");
		eng_expr_t *e = eng_expr_parse(src, strlen(src), &err);

		if (e == NULL || eng_expr_eval(e, scope, &opts, &err) < 0) {
			eng_expr_free(e);
			goto expr_failed;
		}
		eng_expr_free(e);
	}
	json_decref(run->ai_spec);
	run->ai_spec = eng_ai_spec(step, opts, &err);
	json_decref(opts);
	opts = NULL;
	if (run->ai_spec == NULL)
		goto expr_failed;
	free(run->ai_body);
	run->ai_body = eng_ai_request(run->ai_spec, prompt, str(step, "model"),
				      json_integer_value(json_object_get(pai, "max_output_tokens")),
				      run->ai_invalid ? run->ai_complaint : NULL);
	free(run->ai_prompt);
	run->ai_prompt = prompt;
	json_decref(scope);
	if (run->ai_body == NULL) {
		dead_letter(run, step, err_json("out_of_memory", "out of memory building the request"));
		return false;
	}
	return true;
expr_failed:
	free(prompt);
	json_decref(opts);
	json_decref(scope);
	step_failed_expr(run, step, &err);
	return false;
}

/* The step's output: the answer plus how it was decided. */
static json_t *ai_output(const json_t *answer, const char *outcome, const json_t *draft)
{
	json_t *out = json_deep_copy(answer);

	if (out) {
		json_object_set_new(out, "outcome", json_string(outcome));
		if (draft)
			json_object_set(out, "draft", (json_t *)draft);
	}
	return out;
}

/* A valid answer: on with it, or to a human when governance says so. */
static void ai_govern(run_t *run, const json_t *step, const facts_t *f, json_t *answer, json_t *summary,
		      double started)
{
	double conf = json_number_value(json_object_get(answer, "confidence"));
	const char *why = eng_ai_review_reason(json_object_get(f->policy, "ai"), step, conf);
	json_t *row;

	if (why == NULL) {
		json_t *out = ai_output(answer, "auto", NULL);

		row = add_row(run, step, "succeeded", started, json_incref(out), NULL);
		if (row && summary)
			json_object_set(row, "summary", summary);
		set_output(run, str(step, "id"), out);
		json_decref(out);
		audit(run, "ai.auto", json_pack("{s:s, s:s, s:f}", "step", str(step, "id"), "task", str(step, "task"),
						"confidence", conf));
		run->r->n_ai_auto++;
		goto_step(run, next_of(run, step, "next"));
		return;
	}
	{
		const char *role;
		long long sla;
		char id[37], title[200];
		double now = eng_wall_now();
		json_t *review;

		ai_reviewer(run, step, json_object_get(f->policy, "approvals"), &role, &sla);
		tn_uuid_new(id);
		snprintf(title, sizeof(title), "Review the AI %s draft of step %s (%s)", str(step, "task"),
			 str(step, "id"), strcmp(why, "low_confidence") == 0 ? "low confidence" : "review required");
		json_decref(run->task_new);
		run->task_new = json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id, "step", str(step, "id"), "title", title,
					  "assignee_role", role, "due_at", iso_json(now + (double)sla));
		row = add_row(run, step, "waiting", started,
			      json_pack("{s:O, s:s}", "draft", answer, "review", why), NULL);
		if (row && summary)
			json_object_set(row, "summary", summary);
		review = json_pack("{s:O, s:O, s:s}", "spec", run->ai_spec, "draft", answer, "reason", why);
		json_decref(run->wait);
		run->wait = json_pack("{s:s, s:i, s:o}", "task", id, "seq", run->seq, "review", review);
		set_state(run, "waiting");
		run->r->n_ai_review++;
		park(run, true, now + (double)sla);
	}
}

/* The call came back: a failure retries or dead-letters like http; an
 * invalid answer is asked again once, then fails the step. */
static void ai_done(run_t *run, const json_t *step, const facts_t *f)
{
	json_t *res = run->result, *answer = NULL, *summary;
	int status = (int)json_integer_value(json_object_get(res, "status"));
	double started = json_real_value(json_object_get(res, "started"));
	mf_err_t err;

	run->result = NULL;
	summary = ai_summary(run, step, json_object_get(res, "summary"),
			     json_is_true(json_object_get(json_object_get(f->policy, "ai"), "log_prompts")));
	if (str(res, "error") || status < 200 || status >= 300) {
		call_failed(run, step, res, summary, started);
	} else if (run->ai_spec == NULL ||
		   eng_ai_answer(run->ai_spec, json_object_get(json_object_get(res, "response"), "body"), &answer, &err) < 0) {
		json_t *e = json_pack("{s:s, s:s, s:i}", "code", "invalid_output", "detail",
				      run->ai_spec ? err.detail : "the answer came after a restart", "status", status);

		run->r->n_ai_invalid++;
		snprintf(run->ai_complaint, sizeof(run->ai_complaint), "%s", str(e, "detail"));
		if (run->ai_invalid++ == 0) {
			json_t *row = add_row(run, step, "retrying", started, NULL, e);

			if (row && summary)
				json_object_set(row, "summary", summary);
		} else {
			dead_letter(run, step, e);
			if (summary && json_array_size(run->rows))
				json_object_set(json_array_get(run->rows, json_array_size(run->rows) - 1), "summary",
						summary);
		}
	} else {
		ai_govern(run, step, f, answer, summary, started);
		json_decref(answer);
	}
	json_decref(summary);
	json_decref(res);
}

/* A draft under review: wait for the decision (or the SLA), then go on
 * with the accepted or edited answer, or to next_on_reject. */
static void ai_review(run_t *run, const json_t *step)
{
	const json_t *t = run->task, *review = json_object_get(run->wait, "review");
	const json_t *draft = json_object_get(review, "draft");
	const char *tstate = str(t, "state");
	const char *outcome;
	double now = eng_wall_now();
	json_t *out, *row;

	if (t == NULL || (tstate && strcmp(tstate, "open") == 0 && now < parse_time(str(t, "due_at")))) {
		park(run, true, t ? parse_time(str(t, "due_at")) : now + WAIT_POLL_S);
		return;
	}
	if (strcmp(tstate ? tstate : "", "open") == 0) {
		json_decref(run->task_update);
		run->task_update = json_pack("{s:s, s:s}", "id", str(t, "id"), "state", "expired");
		audit(run, "task.expired", json_pack("{s:s}", "task", str(t, "id")));
		tstate = "expired";
	}
	if (strcmp(tstate, "approved") == 0) {
		const json_t *edit = json_object_get(t, "output");
		bool edited = json_is_object(edit);

		outcome = edited ? "edited" : "accepted";
		out = edited ? ai_output(edit, outcome, draft) : ai_output(draft, outcome, NULL);
	} else {
		outcome = strcmp(tstate, "rejected") == 0 ? "rejected" : "expired";
		out = json_pack("{s:s, s:O}", "outcome", outcome, "draft", draft ? draft : json_null());
	}
	json_object_set_new(out, "by", json_incref(json_object_get(t, "decided_by") ? json_object_get(t, "decided_by")
									       : json_null()));
	row = json_pack("{s:I, s:s, s:s, s:i, s:s, s:o, s:o, s:O, s:n}", "seq",
			json_integer_value(json_object_get(run->wait, "seq")), "step", str(step, "id"), "type", "ai",
			"attempt", 1, "state", "succeeded", "started_at",
			json_incref(json_object_get(t, "created_at") ? json_object_get(t, "created_at") : json_null()),
			"finished_at", iso_json(now), "output", out, "error");
	if (row)
		json_array_append_new(run->rows, row);
	audit(run, "ai.reviewed", json_pack("{s:s, s:s, s:s, s:s}", "step", str(step, "id"), "task", str(step, "task"),
					    "outcome", outcome, "review_task", str(t, "id")));
	set_output(run, str(step, "id"), out);
	json_decref(out);
	goto_step(run, next_of(run, step, strcmp(outcome, "accepted") == 0 || strcmp(outcome, "edited") == 0
					  ? "next" : "next_on_reject"));
}

/* Returns true when the step needs its call made. */
static bool ai_step(run_t *run, const json_t *step, const facts_t *f)
{
	if (run->wait) {
		ai_review(run, step);
		return false;
	}
	if (run->result) {
		ai_done(run, step, f);
		/* an invalid first answer is asked again at once */
		return run->ai_invalid == 1 && !run->has_due && strcmp(run->state, "running") == 0 &&
		       strcmp(run->step, str(step, "id")) == 0 && ai_prepare(run, step, f);
	}
	return ai_prepare(run, step, f);
}

/* ---- advancing ---- */

static enum outcome step_once(run_t *run, bool *more)
{
	const json_t *step = cur_step(run);
	const char *type = str(step, "type");
	mf_err_t err;

	*more = false;
	if (step == NULL) {
		if (strcmp(run->state, "succeeded") != 0 && strcmp(run->state, "failed") != 0) {
			json_t *ghost = json_pack("{s:s, s:s}", "id", run->step, "type", "unknown");

			dead_letter(run, ghost, err_json("unknown_step", "the run's step is not in its workflow version"));
			json_decref(ghost);
		}
		park(run, false, 0);
		return O_PARK;
	}
	if (strcmp(run->state, "pending") == 0)
		set_state(run, "running");
	run->r->n_steps++;
	if (strcmp(type, "transform") == 0) {
		json_t *out = outputs(json_object_get(step, "output"), run->ctx, &err);

		if (out == NULL) {
			step_failed_expr(run, step, &err);
			return O_PARK;
		}
		add_row(run, step, "succeeded", eng_wall_now(), json_incref(out), NULL);
		set_output(run, str(step, "id"), out);
		json_decref(out);
		goto_step(run, next_of(run, step, "next"));
	} else if (strcmp(type, "decide") == 0) {
		const json_t *cases = json_object_get(step, "cases");
		size_t i;
		json_t *c;
		int to = -2;

		json_array_foreach(cases, i, c) {
			bool yes;

			if (eval_bool(str(c, "when"), run->ctx, &yes, &err) < 0) {
				step_failed_expr(run, step, &err);
				return O_PARK;
			}
			if (yes) {
				to = next_of(run, c, "next");
				break;
			}
		}
		if (to == -2)
			to = next_of(run, step, "default");
		{
			const json_t *target = to >= 0 ? eng_def_step_at(run->def, (size_t)to) : NULL;
			json_t *out = json_pack("{s:o}", "next", target ? json_string(str(target, "id")) : json_null());

			add_row(run, step, "succeeded", eng_wall_now(), json_incref(out), NULL);
			set_output(run, str(step, "id"), out);
			json_decref(out);
		}
		goto_step(run, to);
	} else if (strcmp(type, "emit") == 0) {
		if (!emit(run, step))
			return O_TRIGGERS;
	} else if (strcmp(type, "http") == 0) {
		if (run->result == NULL)
			return O_CALL;
		http_done(run, step);
		if (run->has_due)
			return O_PARK;
	} else if (strcmp(type, "message") == 0 || strcmp(type, "ai") == 0) {
		const facts_t *f = facts_find(run->r, run->tenant_id);

		if (f == NULL)
			return O_FACTS;
		if (type[0] == 'm')
			message_step(run, step, f);
		else if (ai_step(run, step, f))
			return O_CALL;
		if (strcmp(run->state, "waiting") == 0 || run->has_due)
			return O_PARK;
	} else if (strcmp(type, "approval") == 0) {
		approval(run, step);
		if (strcmp(run->state, "waiting") == 0 || run->has_due)
			return O_PARK;
	} else if (strcmp(type, "wait") == 0) {
		wait_step(run, step);
		if (strcmp(run->state, "waiting") == 0 || run->has_due)
			return O_PARK;
	} else {
		dead_letter(run, step, err_json("unsupported_step", "this step type is not available yet"));
		return O_PARK;
	}
	if (strcmp(run->state, "succeeded") == 0 || strcmp(run->state, "failed") == 0) {
		if (strcmp(run->state, "succeeded") == 0)
			run->r->n_finished++;
		park(run, false, 0);
		return O_PARK;
	}
	*more = true;
	return O_PARK;
}

static void queue_apply(run_t *run, bool keep);
static void start_call(run_t *run);
static void load_triggers(run_t *run);
static void load_facts(run_t *run);

static void advance(run_t *run)
{
	enum outcome o = O_PARK;
	bool more = true;

	if (run->r->closing) {
		run_free(run);
		return;
	}
	run->has_due = false;
	for (int n = 0; more && n < MAX_STEPS_PER_PASS; n++)
		o = step_once(run, &more);
	if (more) {	/* step budget: persist and come back at once */
		park(run, true, eng_wall_now());
		o = O_PARK;
	}
	switch (o) {
	case O_PARK:
		queue_apply(run, false);
		break;
	case O_CALL:
		if (run->dirty)
			queue_apply(run, true);
		else
			start_call(run);
		break;
	case O_TRIGGERS:
		load_triggers(run);
		break;
	case O_FACTS:
		load_facts(run);
		break;
	}
}

/* ---- triggers of emitted events ---- */

static void triggers_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	run_t *run = arg;
	eng_runner_t *r = run->r;

	if (err || r->closing) {
		if (err)
			mf_warn("engine", "cannot read the workflows an event starts", MF_S("error", err->detail));
		run_free(run);
		return;
	}
	{
		trig_t *t = calloc(1, sizeof(*t));

		if (t == NULL) {
			run_free(run);
			return;
		}
		snprintf(t->key, sizeof(t->key), "%s|%s", run->schema, run->need_type);
		t->res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
		t->at_ms = tn_now_ms();
		t->next = r->trigs;
		r->trigs = t;
	}
	run->phase = P_READY;
	advance(run);
}

static void load_triggers(run_t *run)
{
	const char *p[1] = { run->need_type };

	/* the schema is generated (^t_[0-9a-z_]+$), never client input */
	snprintf(run->sql, sizeof(run->sql),
		 "SELECT w.name, v.version, v.definition::text FROM \"%s\".workflows w "
		 "JOIN \"%s\".workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version "
		 "WHERE w.trigger_event = $1 ORDER BY w.name", run->schema, run->schema);
	run->phase = P_TRIGGERS;
	if (mf_pg_query(run->r->w->pg, run->sql, 1, p, triggers_done, run) < 0)
		run_free(run);
}

/* ---- a tenant's facts ---- */

static void facts_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	run_t *run = arg;
	eng_runner_t *r = run->r;
	facts_t *f;

	if (err || r->closing || PQntuples(res) != 1) {
		if (err)
			mf_warn("engine", "cannot read a tenant's policy and branding", MF_S("error", err->detail));
		run_free(run);	/* the lease runs out; whoever claims it next tries again */
		return;
	}
	f = calloc(1, sizeof(*f));
	if (f) {
		int depth = atoi(PQgetvalue(res, 0, 6));	/* ancestors: 0..2 */
		const char *pol[3], *brand[3];

		/* root first: columns 2, 1, 0 (policies) and 5, 4, 3 (branding) */
		for (int i = 0; i <= depth; i++) {
			int col = depth - i;

			pol[i] = PQgetisnull(res, 0, col) ? NULL : PQgetvalue(res, 0, col);
			brand[i] = PQgetisnull(res, 0, col + 3) ? NULL : PQgetvalue(res, 0, col + 3);
		}
		snprintf(f->tenant_id, sizeof(f->tenant_id), "%s", run->tenant_id);
		f->policy = tn_policy_chain(pol, depth + 1);
		f->brand = tn_branding_chain(brand, depth + 1);
		f->tenant = json_pack("{s:s, s:s, s:s, s:s}", "id", run->tenant_id, "name", PQgetvalue(res, 0, 7), "slug",
				      PQgetvalue(res, 0, 8), "kind", PQgetvalue(res, 0, 9));
		f->at_ms = tn_now_ms();
	}
	if (f == NULL || f->policy == NULL || f->brand == NULL || f->tenant == NULL) {
		if (f)
			facts_free(f);
		run_free(run);
		return;
	}
	f->next = r->facts;
	r->facts = f;
	run->phase = P_READY;
	advance(run);
}

static void load_facts(run_t *run)
{
	static const char sql[] =
		"SELECT t.policy::text, p.policy::text, g.policy::text, t.branding::text, p.branding::text, "
		"g.branding::text, (p.id IS NOT NULL)::int + (g.id IS NOT NULL)::int, t.name, t.slug, t.kind "
		"FROM platform.tenants t LEFT JOIN platform.tenants p ON p.id = t.parent_id "
		"LEFT JOIN platform.tenants g ON g.id = p.parent_id WHERE t.id = $1::uuid";
	const char *p[1] = { run->tenant_id };

	run->phase = P_FACTS;
	if (mf_pg_query(run->r->w->pg, sql, 1, p, facts_done, run) < 0)
		run_free(run);
}

/* ---- http calls ---- */

static void call_done(const cx_result_t *res, void *arg)
{
	run_t *run = arg;
	json_t *out, *body = NULL, *headers = json_object();

	run->op = NULL;
	if (run->timeout)
		evtimer_del(run->timeout);
	if (res->res) {
		body = json_loadb(res->res->body, res->res->body_len, JSON_DECODE_ANY, NULL);
		if (body == NULL)
			body = json_stringn_nocheck(res->res->body, res->res->body_len > 65536 ? 65536 : res->res->body_len);
		for (const char *const *h = res->res->headers; h && h[0] && h[1]; h += 2) {
			char name[128];
			size_t i;

			for (i = 0; h[0][i] && i < sizeof(name) - 1; i++)
				name[i] = (char)(h[0][i] >= 'A' && h[0][i] <= 'Z' ? h[0][i] + 32 : h[0][i]);
			name[i] = '\0';
			json_object_set_new(headers, name, json_string(h[1]));
		}
	}
	out = json_pack("{s:i, s:s?, s:s, s:I, s:o, s:{s:i, s:o, s:o}}", "status", res->status, "error", res->error,
			"detail", res->detail, "retry_after_ms", (json_int_t)res->retry_after_ms, "summary",
			res->priv ? cx_result_summary(res) : json_null(), "response", "status", res->status, "headers", headers, "body",
			body ? body : json_null());
	if (out)
		json_object_set_new(out, "started", json_real(eng_wall_now() - res->duration_ms / 1000.0));
	run->result = out;
	run->r->n_calls++;
	run->phase = P_READY;
	advance(run);
}

static void call_timeout(evutil_socket_t fd, short what, void *arg)
{
	run_t *run = arg;
	cx_result_t res = { .error = "timeout", .duration_ms = 0 };

	if (run->op) {
		cx_cancel(run->op);
		run->op = NULL;
	}
	snprintf(res.detail, sizeof(res.detail), "the step's timeout ran out");
	call_done(&res, run);
}

static char *query_string(const json_t *query, const json_t *ctx, mf_err_t *err)
{
	size_t cap = 256, len = 0;
	char *s = malloc(cap);
	const char *k;
	json_t *v;

	if (s == NULL)
		return NULL;
	s[0] = '\0';
	json_object_foreach((json_t *)query, k, v) {
		char *val = NULL;
		char *ek, *ev;

		if (eng_template_render(json_string_value(v), ctx, false, &val, err) < 0) {
			free(s);
			return NULL;
		}
		ek = curl_easy_escape(NULL, k, 0);
		ev = curl_easy_escape(NULL, val, 0);
		free(val);
		if (ek == NULL || ev == NULL) {
			curl_free(ek);
			curl_free(ev);
			free(s);
			return NULL;
		}
		while (len + strlen(ek) + strlen(ev) + 3 >= cap) {
			char *n = realloc(s, cap *= 2);

			if (n == NULL) {
				curl_free(ek);
				curl_free(ev);
				free(s);
				return NULL;
			}
			s = n;
		}
		len += (size_t)sprintf(s + len, "%c%s=%s", len ? '&' : '?', ek, ev);
		curl_free(ek);
		curl_free(ev);
	}
	return s;
}

static void start_call(run_t *run)
{
	const json_t *step = cur_step(run);
	mf_err_t err;
	char *path = NULL, *q = NULL, *full = NULL, *body = NULL, key[120], tp[MF_TRACE_HEADER_SIZE];
	json_t *b = NULL;
	cx_http_header_t hdr[1] = { { "Content-Type", "application/json" } };
	cx_call_opts_t o = { 0 };
	long long timeout;

	if (run->r->w->cx == NULL) {
		mf_err_set(&err, 503, "connectors_unavailable", "this worker cannot make connector calls");
		goto fail;
	}
	if (strcmp(str(step, "type"), "ai") == 0) {
		/* OpenAI's convention: the connector's base URL ends in /v1 */
		path = strdup("/chat/completions");
		body = run->ai_body ? strdup(run->ai_body) : NULL;
		if (path == NULL || body == NULL) {
			mf_err_set(&err, 500, "out_of_memory", "out of memory");
			goto fail;
		}
	} else if (eng_template_render(str(step, "path"), run->ctx, false, &path, &err) < 0)
		goto fail;
	if (body == NULL && json_object_get(step, "query") &&
	    (q = query_string(json_object_get(step, "query"), run->ctx, &err)) == NULL)
		goto fail;
	if (body == NULL && json_object_get(step, "body")) {
		b = render(json_object_get(step, "body"), run->ctx, &err, 0);
		if (b == NULL || (body = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
			goto fail;
	}
	full = malloc(strlen(path) + (q ? strlen(q) : 0) + 1);
	if (full == NULL)
		goto fail;
	strcpy(full, path);
	if (q)
		strcat(full, q);
	snprintf(key, sizeof(key), "%s:%s", run->id, run->step);
	if (run->ai_invalid)	/* a second question, not a repeat of the first */
		snprintf(key, sizeof(key), "%s:%s:%d", run->id, run->step, run->ai_invalid);
	o.tenant_id = run->tenant_id;
	o.schema = run->schema;
	o.connector = str(step, "connector");
	o.method = str(step, "method") ? str(step, "method") : "POST";
	o.path = full;
	o.headers = body ? hdr : NULL;
	o.nheaders = body ? 1 : 0;
	o.body = body;
	o.body_len = body ? strlen(body) : 0;
	o.idempotency_key = key;
	o.max_attempts = 1;	/* the step's retry policy decides */
	/* the call's span is a child of this attempt's step span */
	{
		const json_t *t = run_trace(run);
		mf_trace_t sp;

		if (t) {
			mf_trace_new(&sp);
			memcpy(run->step_span, sp.parent_id, sizeof(run->step_span));
			snprintf(sp.trace_id, sizeof(sp.trace_id), "%s", str(t, "id"));
			sp.flags = MF_TRACE_SAMPLED;
			if (mf_trace_format(&sp, tp, sizeof(tp)) == 0)
				o.traceparent = tp;
		}
	}
	run->phase = P_CALL;
	run->op = cx_call(run->r->w->cx, &o, call_done, run, &err);
	free(path);
	free(q);
	free(full);
	free(body);
	json_decref(b);
	if (run->op == NULL) {
		cx_result_t res = { .error = err.code[0] ? err.code : "call_failed" };

		snprintf(res.detail, sizeof(res.detail), "%s", err.detail);
		call_done(&res, run);
		return;
	}
	timeout = dur_s(json_object_get(step, "timeout"), 0);
	if (timeout > 0 && run->timeout) {
		struct timeval tv = { (time_t)timeout, 0 };

		evtimer_add(run->timeout, &tv);
	}
	return;
fail:
	free(path);
	free(q);
	free(full);
	free(body);
	json_decref(b);
	{
		cx_result_t res = { .error = "bad_request" };

		/* a template that cannot render never will: no retries */
		snprintf(res.detail, sizeof(res.detail), "%s", err.detail);
		call_done(&res, run);
	}
}

/* ---- applying changes ---- */

static json_t *change_json(run_t *run)
{
	json_t *c = json_pack("{s:s, s:s, s:s?, s:i, s:O, s:O, s:s?, s:O, s:O, s:O, s:O, s:b}", "run", run->id,
			      "state", run->state, "step", run->step[0] ? run->step : NULL, "attempt",
			      run->attempt, "ctx", run->ctx, "wait",
			      run->wait ? run->wait : json_null(), "wait_event",
			      run->wait_event[0] ? run->wait_event : NULL, "error", run->error ? run->error : json_null(),
			      "steps", run->rows, "events", run->emitted, "audit", run->audit, "keep", run->keep);

	if (c == NULL)
		return NULL;
	if (run->task_new)
		json_object_set(c, "task", run->task_new);
	if (run->task_update)
		json_object_set(c, "task_update", run->task_update);
	json_object_set_new(c, "due", run->has_due && !run->keep ? iso_json(run->due) : json_null());
	return c;
}

static void clear_changes(run_t *run)
{
	json_array_clear(run->rows);
	json_array_clear(run->audit);
	json_array_clear(run->emitted);
	json_decref(run->task_new);
	json_decref(run->task_update);
	run->task_new = run->task_update = NULL;
	run->dirty = false;
}

static void queue_apply(run_t *run, bool keep)
{
	eng_runner_t *r = run->r;

	run->keep = keep;
	run->phase = P_APPLY;
	run->apply_next = NULL;
	*r->apply_tail = run;
	r->apply_tail = &run->apply_next;
	event_active(r->flush_ev, EV_TIMEOUT, 0);
}

typedef struct apply_batch {
	eng_runner_t *r;
	run_t **runs;
	int n;
} apply_batch_t;

static void apply_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	apply_batch_t *b = arg;
	eng_runner_t *r = b->r;
	const char *done = res && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";

	if (err)
		mf_warn("engine", "cannot write run changes; the runs are picked up again after their lease",
			MF_S("error", err->detail), MF_I("runs", b->n));
	for (int i = 0; i < b->n; i++) {
		run_t *run = b->runs[i];

		if (err || r->closing || strstr(done, run->id) == NULL) {
			if (!err)
				r->n_lost++;
			run_free(run);
			continue;
		}
		r->n_applied++;
		clear_changes(run);
		if (run->keep)
			start_call(run);
		else
			run_free(run);
	}
	free(b->runs);
	free(b);
}

static void flush_tenant(eng_runner_t *r, run_t **runs, int n)
{
	apply_batch_t *b = calloc(1, sizeof(*b));
	json_t *changes = json_array();
	char *text = NULL;
	const char *p[4];

	if (b == NULL || changes == NULL)
		goto fail;
	b->r = r;
	b->runs = runs;
	b->n = n;
	for (int i = 0; i < n; i++) {
		json_t *c = change_json(runs[i]);

		if (c == NULL || json_array_append_new(changes, c) < 0)
			goto fail;
	}
	text = json_dumps(changes, JSON_COMPACT);
	if (text == NULL)
		goto fail;
	p[0] = runs[0]->tenant_id;
	p[1] = runs[0]->schema;
	p[2] = r->owner;
	p[3] = text;
	if (mf_pg_query(r->w->pg, "SELECT platform.eng_apply($1::uuid, $2, $3::uuid, $4::jsonb)::text", 4, p, apply_done,
			b) < 0) {
		b = NULL;	/* freed below with the runs */
		goto fail;
	}
	free(text);
	json_decref(changes);
	return;
fail:
	free(text);
	json_decref(changes);
	for (int i = 0; i < n; i++)
		run_free(runs[i]);
	free(runs);
	free(b);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	eng_runner_t *r = arg;
	run_t *list = r->apply_head;

	r->apply_head = NULL;
	r->apply_tail = &r->apply_head;
	while (list) {
		/* one statement per tenant (and at most APPLY_MAX runs) */
		run_t **batch = calloc(APPLY_MAX, sizeof(*batch));
		run_t *rest = NULL, **rest_tail = &rest;
		int n = 0;
		char tenant[37];

		snprintf(tenant, sizeof(tenant), "%s", list->tenant_id);
		while (list) {
			run_t *run = list;

			list = run->apply_next;
			run->apply_next = NULL;
			if (batch && n < APPLY_MAX && strcmp(run->tenant_id, tenant) == 0) {
				batch[n++] = run;
			} else {
				*rest_tail = run;
				rest_tail = &run->apply_next;
			}
		}
		list = rest;
		if (batch == NULL) {	/* out of memory: drop these runs; their leases bring them back */
			while (list && strcmp(list->tenant_id, tenant) == 0) {
				run_t *x = list;

				list = x->apply_next;
				run_free(x);
			}
			continue;
		}
		flush_tenant(r, batch, n);
	}
}

/* ---- claiming and loading ---- */

static run_t *run_find(eng_runner_t *r, const char *id)
{
	for (run_t *x = r->runs; x; x = x->next)
		if (strcmp(x->id, id) == 0)
			return x;
	return NULL;
}

static void run_free(run_t *run)
{
	eng_runner_t *r;

	if (run == NULL)
		return;
	r = run->r;
	if (run->op)
		cx_cancel(run->op);
	if (run->timeout)
		event_free(run->timeout);
	if (run->prev)
		run->prev->next = run->next;
	else
		r->runs = run->next;
	if (run->next)
		run->next->prev = run->prev;
	r->nruns--;
	r->n_mem = r->nruns;
	json_decref(run->def);
	json_decref(run->ctx);
	json_decref(run->wait);
	json_decref(run->task);
	json_decref(run->events);
	json_decref(run->rows);
	json_decref(run->audit);
	json_decref(run->emitted);
	json_decref(run->task_new);
	json_decref(run->task_update);
	json_decref(run->error);
	json_decref(run->result);
	json_decref(run->ai_spec);
	free(run->ai_body);
	free(run->ai_prompt);
	free(run);
	/* room again: claim if the last claim left work behind */
	if (r->claim_again && !r->closing)
		event_active(r->claim_ev, EV_TIMEOUT, 0);
}

static run_t *run_new(eng_runner_t *r, const char *id, const char *tenant, const char *schema)
{
	run_t *run = calloc(1, sizeof(*run));

	if (run == NULL)
		return NULL;
	run->r = r;
	snprintf(run->id, sizeof(run->id), "%s", id);
	snprintf(run->tenant_id, sizeof(run->tenant_id), "%s", tenant);
	snprintf(run->schema, sizeof(run->schema), "%s", schema);
	run->rows = json_array();
	run->audit = json_array();
	run->emitted = json_array();
	run->timeout = evtimer_new(r->w->base, call_timeout, run);
	run->next = r->runs;
	if (r->runs)
		r->runs->prev = run;
	r->runs = run;
	r->nruns++;
	r->n_mem = r->nruns;
	return run;
}

typedef struct load_batch {
	eng_runner_t *r;
	run_t **runs;
	int n;
} load_batch_t;

static void load_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	load_batch_t *b = arg;

	for (int i = 0; i < b->n; i++) {
		run_t *run = b->runs[i];
		int row = -1;

		if (b->r->closing) {
			run_free(run);
			continue;
		}
		for (int j = 0; !err && j < PQntuples(res); j++)
			if (strcmp(PQgetvalue(res, j, 0), run->id) == 0)
				row = j;
		if (row < 0) {
			/* gone (tenant deleted) or unreadable: let it be */
			if (err == NULL) {
				const char *p[2] = { run->id, b->r->owner };

				if (mf_pg_query(b->r->w->pg, "DELETE FROM platform.run_queue WHERE run_id = $1 AND owner = $2::uuid",
						2, p, NULL, NULL) < 0)
					(void)0;
			}
			run_free(run);
			continue;
		}
		snprintf(run->workflow, sizeof(run->workflow), "%s", PQgetvalue(res, row, 1));
		run->version = atoi(PQgetvalue(res, row, 2));
		snprintf(run->state, sizeof(run->state), "%s", PQgetvalue(res, row, 3));
		snprintf(run->step, sizeof(run->step), "%s", PQgetvalue(res, row, 4));
		run->attempt = atoi(PQgetvalue(res, row, 5));
		run->ctx = json_loads(PQgetvalue(res, row, 6), 0, NULL);
		run->wait = PQgetisnull(res, row, 7) ? NULL : json_loads(PQgetvalue(res, row, 7), 0, NULL);
		run->def = json_loads(PQgetvalue(res, row, 8), 0, NULL);
		run->task = PQgetisnull(res, row, 9) ? NULL : json_loads(PQgetvalue(res, row, 9), 0, NULL);
		run->events = PQgetisnull(res, row, 10) ? json_array() : json_loads(PQgetvalue(res, row, 10), 0, NULL);
		run->seq = atoi(PQgetvalue(res, row, 11));
		if (json_is_string(json_object_get(run->wait, "event")))
			snprintf(run->wait_event, sizeof(run->wait_event), "%s", str(run->wait, "event"));
		if (run->ctx == NULL || run->def == NULL) {
			run_free(run);
			continue;
		}
		if (!json_object_get(run->ctx, "tenant"))
			json_object_set_new(run->ctx, "tenant", json_pack("{s:s}", "id", run->tenant_id));
		if (run_trace(run) == NULL)	/* started without one (portal, emit, older run) */
			json_object_set_new(run->ctx, "trace", eng_trace_json(NULL));
		if (strcmp(run->state, "succeeded") == 0 || strcmp(run->state, "failed") == 0 ||
		    strcmp(run->state, "cancelled") == 0) {
			park(run, false, 0);
			queue_apply(run, false);
			continue;
		}
		run->phase = P_READY;
		advance(run);
	}
	free(b->runs);
	free(b);
}

static void load_group(eng_runner_t *r, run_t **runs, int n)
{
	load_batch_t *b = calloc(1, sizeof(*b));
	size_t cap = (size_t)n * 38 + 3;
	char *ids = malloc(cap);
	const char *p[2];

	if (b == NULL || ids == NULL)
		goto fail;
	b->r = r;
	b->runs = runs;
	b->n = n;
	ids[0] = '{';
	ids[1] = '\0';
	for (int i = 0; i < n; i++) {
		strcat(ids, runs[i]->id);
		strcat(ids, i + 1 < n ? "," : "");
	}
	strcat(ids, "}");
	p[0] = runs[0]->schema;
	p[1] = ids;
	if (mf_pg_query(r->w->pg,
			"SELECT id, workflow, version, state, step, attempt, ctx, wait, definition, task, events, seq "
			"FROM platform.eng_load($1, $2::uuid[])", 2, p, load_done, b) < 0)
		goto fail;
	free(ids);
	return;
fail:
	free(ids);
	free(b);
	for (int i = 0; i < n; i++)
		run_free(runs[i]);
	free(runs);
}

static void claim_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_runner_t *r = arg;
	int n = err ? 0 : PQntuples(res);
	run_t **fresh;
	int nf = 0;

	r->claiming = false;
	if (err || r->closing) {
		if (err == NULL)
			return;
		mf_debug("engine", "claim failed", MF_S("error", err->detail));
		return;
	}
	r->n_claims++;
	r->n_claimed += (unsigned long long)n;
	for (int i = 0; i < n; i++) {
		/* columns 4 and 5: the queue before this claim (see on_claim) */
		if (!PQgetisnull(res, i, 4)) {
			double waited = atof(PQgetvalue(res, i, 4));

			mf_hist_observe(&claim_hist, waited > 0 ? (unsigned long long)(waited * 1e6) : 0);
		}
		if (!PQgetisnull(res, i, 5) && PQgetvalue(res, i, 5)[0] == 't')
			__atomic_fetch_add(&n_lease_expiries, 1, __ATOMIC_RELAXED);
	}
	/* a full batch may have left work behind; a wake-up during the claim
	 * may be for work the claim's snapshot did not see */
	r->claim_again = r->claim_again || n >= r->cfg->engine_batch;
	fresh = n ? calloc((size_t)n, sizeof(*fresh)) : NULL;
	for (int i = 0; i < n; i++) {
		const char *id = PQgetvalue(res, i, 0);

		if (run_find(r, id))	/* our own lease expired and we took it again: still ours */
			continue;
		if (fresh && (fresh[nf] = run_new(r, id, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2))) != NULL)
			nf++;
	}
	/* load per schema */
	for (int i = 0; i < nf; i++) {
		run_t **group;
		int g = 0;

		if (fresh[i] == NULL)
			continue;
		group = calloc((size_t)nf, sizeof(*group));
		if (group == NULL) {
			run_free(fresh[i]);
			fresh[i] = NULL;
			continue;
		}
		for (int j = i; j < nf; j++) {
			if (fresh[j] && strcmp(fresh[j]->schema, fresh[i]->schema) == 0) {
				group[g++] = fresh[j];
				if (j != i)
					fresh[j] = NULL;
			}
		}
		fresh[i] = NULL;
		load_group(r, group, g);
	}
	free(fresh);
	if (r->claim_again && r->nruns + r->cfg->engine_batch <= r->cfg->engine_max_runs)
		event_active(r->claim_ev, EV_TIMEOUT, 0);
}

static void on_claim(evutil_socket_t fd, short what, void *arg)
{
	eng_runner_t *r = arg;
	const char *p[3] = { r->owner, r->lease_ms, r->batch };

	if (r->claiming) {
		r->claim_again = true;
		return;
	}
	if (r->nruns + r->cfg->engine_batch > r->cfg->engine_max_runs) {
		r->claim_again = true;	/* claimed as soon as a run leaves memory */
		return;
	}
	if (!mf_pg_pool_up(r->w->pg))
		return;
	r->claim_again = false;
	r->claiming = true;
	/* The join reads run_queue with the statement's snapshot, taken
	 * before eng_claim (a volatile function) changed the rows: so it sees
	 * each claimed run's due_at and owner as they were.  A run that was
	 * ready since due_at waited until now for a worker; one that had an
	 * owner was taken over after its lease expired.  A row the snapshot
	 * missed (enqueued meanwhile) yields NULLs and is not measured. */
	if (mf_pg_query(r->w->pg,
			"WITH c AS (SELECT * FROM platform.eng_claim($1::uuid, $2::int, $3::int)) "
			"SELECT c.run_id, c.tenant_id, c.schema_name, c.claims, "
			"extract(epoch FROM clock_timestamp() - q.due_at)::float8, q.owner IS NOT NULL "
			"FROM c LEFT JOIN platform.run_queue q ON q.run_id = c.run_id",
			3, p, claim_done, r) < 0)
		r->claiming = false;
}

static void on_notify(void *arg)
{
	eng_runner_t *r = arg;

	event_active(r->claim_ev, EV_TIMEOUT, 0);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	on_claim(fd, what, arg);
}

static void on_renew(evutil_socket_t fd, short what, void *arg)
{
	eng_runner_t *r = arg;
	const char *p[2] = { r->owner, r->lease_ms };

	if (r->nruns > 0 && mf_pg_query(r->w->pg, "SELECT platform.eng_renew($1::uuid, $2::int)", 2, p, NULL, NULL) < 0)
		mf_debug("engine", "lease renewal not sent");
}

static void gauges_arm(eng_runner_t *r, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (!r->closing && event_add(r->gauge_ev, &tv) < 0)
		mf_warn("engine", "cannot schedule the next queue count");
}

/* The next count is scheduled when this one ends, so a slow database
 * never has two of them queued on the pool. */
static void gauges_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_runner_t *r = arg;

	if (err)
		mf_warn("engine", "cannot count the queue and dead letters", MF_S("error", err->detail));
	else if (PQntuples(res) == 1 && PQnfields(res) == G_N)
		for (int i = 0; i < G_N; i++)
			__atomic_store_n(&gauges[i], PQgetisnull(res, 0, i) ? 0 : atoll(PQgetvalue(res, 0, i)),
					 __ATOMIC_RELAXED);
	gauges_arm(r, r->cfg->engine_gauge_ms);
}

/* The queue's depth by state and the dead letters, for /metrics.  The
 * queue is small by design (runs with work or a timer).  Dead letters
 * live in every tenant's schema: query_to_xml runs one count per schema
 * inside the server (schema names quoted by format %I), in one round
 * trip; runs are counted through runs_state_idx, deliveries (no index
 * on state) are read whole, hence a periodic gauge and not a scrape. */
static const char gauges_sql[] =
	"SELECT count(*) FILTER (WHERE owner IS NULL AND due_at <= now()), "
	"count(*) FILTER (WHERE owner IS NULL AND due_at > now()), "
	"count(*) FILTER (WHERE owner IS NOT NULL AND due_at > now()), "
	"count(*) FILTER (WHERE owner IS NOT NULL AND due_at <= now()), "
	"(SELECT coalesce(sum((xpath('/row/n/text()', query_to_xml(format("
	"'SELECT count(*) AS n FROM %I.runs WHERE state = ''failed''', t.schema_name), false, true, '')))[1]::text::bigint), 0) "
	" FROM platform.tenants t WHERE t.schema_name IS NOT NULL AND t.deleted_at IS NULL "
	" AND to_regclass(format('%I.runs', t.schema_name)) IS NOT NULL), "
	"(SELECT coalesce(sum((xpath('/row/n/text()', query_to_xml(format("
	"'SELECT count(*) AS n FROM %I.deliveries WHERE state = ''failed''', t.schema_name), false, true, '')))[1]::text::bigint), 0) "
	" FROM platform.tenants t WHERE t.schema_name IS NOT NULL AND t.deleted_at IS NULL "
	" AND to_regclass(format('%I.deliveries', t.schema_name)) IS NOT NULL) "
	"FROM platform.run_queue";

/* Not a persistent timer: event_active() on one that is pending pushes
 * its next run a whole period further (libevent reschedules relative to
 * the missed deadline), and a start-up count skipped for want of a
 * connection then left the gauges unknown for two periods. */
static void on_gauges(evutil_socket_t fd, short what, void *arg)
{
	eng_runner_t *r = arg;

	if (r->closing)
		return;
	if (!mf_pg_pool_up(r->w->pg)) {
		gauges_arm(r, r->cfg->engine_gauge_ms < GAUGE_RETRY_MS ? r->cfg->engine_gauge_ms : GAUGE_RETRY_MS);
		return;
	}
	if (mf_pg_query(r->w->pg, gauges_sql, 0, NULL, gauges_done, r) < 0) {
		mf_debug("engine", "gauges not sent");
		gauges_arm(r, r->cfg->engine_gauge_ms);
	}
}

int eng_metrics_render(mf_buf_t *out)
{
	static const char *const gnames[G_N] = { "ready", "scheduled", "leased", "expired" };
	int rc = 0;

	rc |= mf_buf_adds(out, "# HELP mspflow_engine_queue_depth Runs in the platform run queue by state (ready: due "
			       "and unclaimed; scheduled: a timer; leased: held by a worker; expired: held past the lease), "
			       "as last counted by this process (every engine_gauge_ms; absent until the first count).\n# TYPE mspflow_engine_queue_depth gauge\n");
	for (int i = 0; i < G_DLQ_RUNS; i++) {
		long long v = __atomic_load_n(&gauges[i], __ATOMIC_RELAXED);

		if (v >= 0)
			rc |= mf_buf_addf(out, "mspflow_engine_queue_depth{state=\"%s\"} %lld\n", gnames[i], v);
	}
	rc |= mf_buf_adds(out, "# HELP mspflow_engine_dead_letters Dead letters over all tenants: runs in state failed and "
			       "outbound webhook deliveries that ran out of attempts (every engine_gauge_ms; absent until the first count).\n"
			       "# TYPE mspflow_engine_dead_letters gauge\n");
	if (__atomic_load_n(&gauges[G_DLQ_RUNS], __ATOMIC_RELAXED) >= 0)
		rc |= mf_buf_addf(out, "mspflow_engine_dead_letters{kind=\"run\"} %lld\n"
				       "mspflow_engine_dead_letters{kind=\"webhook_delivery\"} %lld\n",
				  __atomic_load_n(&gauges[G_DLQ_RUNS], __ATOMIC_RELAXED),
				  __atomic_load_n(&gauges[G_DLQ_DELIVERIES], __ATOMIC_RELAXED));
	rc |= mf_buf_addf(out, "# HELP mspflow_engine_lease_expiries_total Runs claimed after the lease of the worker "
			       "holding them had expired (a worker died or stalled).\n"
			       "# TYPE mspflow_engine_lease_expiries_total counter\nmspflow_engine_lease_expiries_total %llu\n"
			       "# HELP mspflow_engine_runs_started_total Runs that began executing (pending to running).\n"
			       "# TYPE mspflow_engine_runs_started_total counter\nmspflow_engine_runs_started_total %llu\n",
			  __atomic_load_n(&n_lease_expiries, __ATOMIC_RELAXED), __atomic_load_n(&n_started, __ATOMIC_RELAXED));
	rc |= mf_buf_adds(out, "# HELP mspflow_engine_claim_latency_seconds Time from a run becoming due (or its lease "
			       "expiring) to a worker claiming it.\n# TYPE mspflow_engine_claim_latency_seconds histogram\n");
	rc |= mf_hist_render(out, "mspflow_engine_claim_latency_seconds", "", &claim_hist);
	rc |= mf_buf_adds(out, "# HELP mspflow_engine_step_duration_seconds Step attempts by step type, from start to "
			       "outcome (an http step's includes its call).\n"
			       "# TYPE mspflow_engine_step_duration_seconds histogram\n");
	for (size_t k = 0; k < N_STEP_TYPES; k++) {
		char labels[32];

		snprintf(labels, sizeof(labels), "type=\"%s\"", step_types[k]);
		rc |= mf_hist_render(out, "mspflow_engine_step_duration_seconds", labels, &step_hist[k]);
	}
	return rc ? -1 : 0;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	eng_runner_t *r = arg;

	if (mf_pg_pool_up(r->w->pg) && mf_pg_query(r->w->pg, "SELECT platform.eng_sweep()", 0, NULL, NULL, NULL) < 0)
		mf_debug("engine", "sweep not sent");
}

/* ---- life cycle ---- */

eng_runner_t *eng_runner_new(eng_worker_t *ew, mf_err_t *err)
{
	eng_runner_t *r = calloc(1, sizeof(*r));
	const mf_config_t *cfg = ew->e->cfg;
	struct timeval poll = { cfg->engine_poll_ms / 1000, (cfg->engine_poll_ms % 1000) * 1000 };
	struct timeval renew = { cfg->engine_lease_ms / 3000, (cfg->engine_lease_ms / 3 % 1000) * 1000 };
	struct timeval sweep = { SWEEP_MS / 1000, 0 };
	struct timeval now = { 0, 0 };	/* a first count right at start */
	struct event_base *base = ew->w->base;

	if (r == NULL || ew->w->pg == NULL) {
		free(r);
		mf_err_set(err, 500, "internal_error", "the engine needs a database pool");
		return NULL;
	}
	r->ew = ew;
	r->w = ew->w;
	r->cfg = cfg;
	tn_uuid_new(r->owner);
	snprintf(r->lease_ms, sizeof(r->lease_ms), "%d", cfg->engine_lease_ms);
	snprintf(r->batch, sizeof(r->batch), "%d", cfg->engine_batch);
	r->apply_tail = &r->apply_head;
	r->claim_ev = event_new(base, -1, 0, on_claim, r);
	r->flush_ev = event_new(base, -1, 0, on_flush, r);
	r->poll_ev = event_new(base, -1, EV_PERSIST, on_poll, r);
	r->renew_ev = event_new(base, -1, EV_PERSIST, on_renew, r);
	r->sweep_ev = ew->w->index == 0 ? event_new(base, -1, EV_PERSIST, on_sweep, r) : NULL;
	r->gauge_ev = ew->w->index == 0 ? evtimer_new(base, on_gauges, r) : NULL;
	if (r->claim_ev == NULL || r->flush_ev == NULL || r->poll_ev == NULL || r->renew_ev == NULL ||
	    (ew->w->index == 0 && (r->sweep_ev == NULL || r->gauge_ev == NULL)) ||
	    event_add(r->poll_ev, &poll) < 0 || event_add(r->renew_ev, &renew) < 0 ||
	    (r->sweep_ev && event_add(r->sweep_ev, &sweep) < 0) || (r->gauge_ev && event_add(r->gauge_ev, &now) < 0)) {
		eng_runner_free(r);
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	r->listen = eng_listen_new(base, mf_config_direct_url(cfg), ENG_CHANNEL, on_notify, r);
	return r;
}

void eng_runner_close(eng_runner_t *r)
{
	if (r == NULL)
		return;
	r->closing = true;
	r->claim_again = false;
	for (run_t *x = r->runs; x; x = x->next) {
		if (x->op) {
			cx_cancel(x->op);
			x->op = NULL;
		}
		if (x->timeout)
			evtimer_del(x->timeout);
	}
}

void eng_runner_free(eng_runner_t *r)
{
	if (r == NULL)
		return;
	eng_runner_close(r);
	while (r->runs)
		run_free(r->runs);
	eng_listen_free(r->listen);
	while (r->trigs) {
		trig_t *t = r->trigs;

		r->trigs = t->next;
		PQclear(t->res);
		free(t);
	}
	while (r->facts) {
		facts_t *f = r->facts;

		r->facts = f->next;
		facts_free(f);
	}
	if (r->claim_ev)
		event_free(r->claim_ev);
	if (r->flush_ev)
		event_free(r->flush_ev);
	if (r->poll_ev)
		event_free(r->poll_ev);
	if (r->renew_ev)
		event_free(r->renew_ev);
	if (r->sweep_ev)
		event_free(r->sweep_ev);
	if (r->gauge_ev)
		event_free(r->gauge_ev);
	free(r);
}

void eng_runner_stats(const eng_runner_t *r, eng_stats_t *out)
{
	out->claims = r->n_claims;
	out->claimed = r->n_claimed;
	out->applied = r->n_applied;
	out->lost_leases = r->n_lost;
	out->steps = r->n_steps;
	out->runs_finished = r->n_finished;
	out->runs_failed = r->n_failed;
	out->retries = r->n_retries;
	out->calls = r->n_calls;
	out->ai_auto = r->n_ai_auto;
	out->ai_review = r->n_ai_review;
	out->ai_invalid = r->n_ai_invalid;
	out->in_memory = r->n_mem;
}
