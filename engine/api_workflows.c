/*
 * api_workflows.c - workflow definitions and starting runs (CONTRACT 6):
 *
 *   PUT  /v1/tenants/{t}/workflows/{name}                 201 a new version, 200 unchanged
 *   GET  /v1/tenants/{t}/workflows[/{name}]                a page by name / the latest version
 *   GET  /v1/tenants/{t}/workflows/{name}/versions/{v}
 *   POST /v1/tenants/{t}/workflows/{name}/runs {"input"}   202 a pending run of the latest version
 *
 * Versions are immutable: a PUT adds one (audited workflow.version_created)
 * unless the definition equals the latest one (jsonb equality), which is
 * answered as it stands.  The workflow's row is locked first, so
 * concurrent PUTs number their versions one after the other.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/api.h"
#include "engine/definition.h"

/* One version as the routes answer it (w: workflows, v: workflow_versions). */
#define VERSION_JSON \
	"json_build_object('name', v.workflow, 'version', v.version, " \
	"'trigger_event', v.definition #>> '{trigger,event}', 'definition', v.definition, " \
	"'created_at', " ENG_TS("v.created_at") ")"

/* ---- PUT /workflows/{name} ---- */

/* $1 name, $2 trigger event, $3 actor.  Creates the row (latest_version 0)
 * or locks the existing one; answers its latest version. */
static const char lock_sql[] =
	"INSERT INTO workflows AS w (name, latest_version, trigger_event, created_by) VALUES ($1, 0, $2, $3) "
	"ON CONFLICT (name) DO UPDATE SET latest_version = w.latest_version RETURNING w.latest_version";

/* $1 name, $2 definition: the latest version if it is this definition. */
static const char same_sql[] =
	"SELECT " VERSION_JSON "::text FROM workflows w "
	"JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version "
	"WHERE w.name = $1 AND v.definition = $2::jsonb";

/* $1 name, $2 version, $3 definition, $4 actor, $5 trigger event. */
static const char insert_sql[] =
	"WITH v AS (INSERT INTO workflow_versions (workflow, version, definition, created_by) "
	"  VALUES ($1, $2::int, $3::jsonb, $4) RETURNING *), "
	"u AS (UPDATE workflows SET latest_version = $2::int, trigger_event = $5, updated_at = now() WHERE name = $1) "
	"SELECT " VERSION_JSON "::text FROM v";

static void store_audited(eng_req_t *r, const PGresult *res)
{
	(void)res;
	r->stored(r, NULL);
}

static void version_added(eng_req_t *r, const PGresult *res)
{
	char target[80];

	snprintf(target, sizeof(target), "workflow:%s", r->name);
	if (r->stored) {
		/* eng_store_version: audit without committing, then the caller's step */
		json_t *d = json_pack("{s:s,s:i}", "name", r->name, "version", r->version);
		char *dt = d ? json_dumps(d, JSON_COMPACT) : NULL;
		const char *p[5] = { r->call->tenant_id, r->call->actor, "workflow.version_created", target, dt };

		json_decref(d);
		if (dt == NULL) {
			eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
			return;
		}
		eng_q(r, TN_AUDIT_SQL, 5, p, store_audited);
		free(dt);
		return;
	}
	r->out = eng_json_col(res, 0, 0);
	eng_audit_commit(r, "workflow.version_created", target,
			 json_pack("{s:s,s:i}", "name", r->name, "version", r->version));
}

static void add_version(eng_req_t *r)
{
	char v[16];
	const char *p[5] = { r->name, v, r->text[0], r->call->actor, r->text[1] };

	snprintf(v, sizeof(v), "%d", r->version);
	eng_q(r, insert_sql, 5, p, version_added);
}

static void compared(eng_req_t *r, const PGresult *res)
{
	if (PQntuples(res) == 1) {
		/* the same definition again: nothing new */
		if (r->stored) {
			r->version--;
			r->unchanged = true;
			r->stored(r, NULL);
			return;
		}
		eng_finish(r, 200, eng_json_col(res, 0, 0));
		return;
	}
	add_version(r);
}

static void locked(eng_req_t *r, const PGresult *res)
{
	int latest = atoi(PQgetvalue(res, 0, 0));
	const char *p[2] = { r->name, r->text[0] };

	r->version = latest + 1;
	/* a new version is a new resource; an unchanged PUT answers 200 */
	r->status = 201;
	if (latest == 0)
		add_version(r);
	else
		eng_q(r, same_sql, 2, p, compared);
}

static void put_begun(eng_req_t *r, const PGresult *res)
{
	const char *p[3] = { r->name, r->text[1], r->call->actor };

	(void)res;
	eng_q(r, lock_sql, 3, p, locked);
}

void eng_store_version(eng_req_t *r, eng_step_fn done)
{
	r->stored = done;
	put_begun(r, NULL);
}

void eng_put_workflow(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);
	const char *name = gw_req_param(call->req, "name");
	json_t *errors = NULL;
	char *def;
	mf_err_t err;

	if (r == NULL)
		return;
	if (!eng_workflow_name_ok(name)) {
		eng_invalid(r, "/name", "1 to 63 of a-z 0-9 _ . -, starting with a letter or digit");
		return;
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	if ((r->body = gw_req_json(call->req, &err)) == NULL) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (eng_def_validate(r->body, &errors, &err) < 0) {
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	def = json_dumps(r->body, JSON_COMPACT);
	if (def == NULL || eng_req_text(r, 1, json_string_value(json_object_get(json_object_get(r->body, "trigger"),
										 "event"))) < 0) {
		free(def);
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	r->text[0] = def;
	eng_tx(r, put_begun);
}

/* ---- reads ---- */

static const char list_sql[] =
	"SELECT w.name, json_build_object('name', w.name, 'version', w.latest_version, "
	"'trigger_event', w.trigger_event, 'created_at', " ENG_TS("w.created_at") ", "
	"'updated_at', " ENG_TS("w.updated_at") ")::text "
	"FROM workflows w WHERE w.name > $1 ORDER BY w.name LIMIT $2::int";

static const char get_sql[] =
	"SELECT (" VERSION_JSON "::jsonb || jsonb_build_object('versions', "
	"(SELECT count(*) FROM workflow_versions c WHERE c.workflow = w.name)))::text "
	"FROM workflows w JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version "
	"WHERE w.name = $1";

static const char version_sql[] =
	"SELECT " VERSION_JSON "::text FROM workflow_versions v WHERE v.workflow = $1 AND v.version = $2::int";

void eng_list_workflows(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);
	char cursor[64];

	if (r == NULL || !eng_page(r, false, cursor, 1))
		return;
	if (eng_req_text(r, 0, cursor) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	r->sql = list_sql;
	r->nparams = 2;
	eng_read_page(r);
}

void eng_get_workflow(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);
	const char *name = gw_req_param(call->req, "name");

	if (r == NULL)
		return;
	if (!eng_workflow_name_ok(name)) {
		gw_respond_error(call->req, 404, "not_found", "no such workflow");
		return;
	}
	if (eng_req_text(r, 0, name) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	r->sql = get_sql;
	r->nparams = 1;
	r->missing = "no such workflow";
	eng_read_one(r);
}

/* A version number in a path: 1 .. 2^31-1 in plain decimal, else 0. */
static int version_of(const char *s)
{
	long v = 0;

	if (s == NULL || *s == '\0' || *s == '0' || strlen(s) > 10)
		return 0;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return 0;
		v = v * 10 + (*c - '0');
	}
	return v <= 0x7fffffffL ? (int)v : 0;
}

void eng_get_workflow_version(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);
	const char *name = gw_req_param(call->req, "name");
	int v = version_of(gw_req_param(call->req, "version"));
	char num[16];

	if (r == NULL)
		return;
	if (!eng_workflow_name_ok(name) || v == 0) {
		gw_respond_error(call->req, 404, "not_found", "no such workflow version");
		return;
	}
	snprintf(num, sizeof(num), "%d", v);
	if (eng_req_text(r, 0, name) < 0 || eng_req_text(r, 1, num) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	r->sql = version_sql;
	r->nparams = 2;
	r->missing = "no such workflow version";
	eng_read_one(r);
}

/* ---- POST /workflows/{name}/runs ---- */

/* The latest version, locked against a concurrent PUT changing which one
 * that is while the run is created. */
static const char latest_sql[] =
	"SELECT v.version, v.definition::text FROM workflows w "
	"JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version "
	"WHERE w.name = $1 FOR SHARE OF w";

static const char start_sql[] = "SELECT platform.eng_start($1::uuid, $2, $3, $4::jsonb)";

static const char run_sql[] = "SELECT " ENG_RUN_JSON "::text FROM runs r WHERE r.id = $1::uuid";

static void run_read(eng_req_t *r, const PGresult *res)
{
	char loc[160];

	r->out = eng_json_col(res, 0, 0);
	snprintf(loc, sizeof(loc), "/v1/tenants/%s/runs/%s", r->call->tenant_id, r->id);
	gw_res_header(r->call->req, "Location", loc);
	/* accepted: the run is queued, a worker takes it from here */
	r->status = 202;
	eng_commit(r);
}

static void started(eng_req_t *r, const PGresult *res)
{
	const char *p[1] = { r->id };

	(void)res;
	eng_q(r, run_sql, 1, p, run_read);
}

static void got_latest(eng_req_t *r, const PGresult *res)
{
	json_t *def, *entry, *runs;
	char *text;

	if (PQntuples(res) != 1) {
		eng_fail_code(r, 404, "not_found", "no such workflow");
		return;
	}
	r->version = atoi(PQgetvalue(res, 0, 0));
	def = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
	entry = def ? eng_run_entry(r->name, r->version, def, json_object_get(r->body, "input"), NULL, NULL,
				    NULL) : NULL;
	json_decref(def);
	if (entry)
		snprintf(r->id, sizeof(r->id), "%s", json_string_value(json_object_get(entry, "id")));
	runs = entry ? json_pack("[o]", entry) : NULL;	/* steals entry, even when it fails */
	if (runs)
		eng_runs_set_trace(runs, gw_req_trace(r->call->req));
	text = runs ? json_dumps(runs, JSON_COMPACT) : NULL;
	json_decref(runs);
	if (text == NULL) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	{
		const char *p[4] = { r->call->tenant_id, r->call->schema, r->call->actor, text };

		eng_q(r, start_sql, 4, p, started);
	}
	free(text);
}

static void run_admitted(eng_req_t *r, const PGresult *res)
{
	const char *p[1] = { r->name };

	(void)res;
	eng_q(r, latest_sql, 1, p, got_latest);
}

static void run_begun(eng_req_t *r, const PGresult *res)
{
	(void)res;
	eng_admit(r, 1, NULL, run_admitted);
}

void eng_start_run(tn_call_t *call, void *arg)
{
	static const char *const keys[] = { "input", NULL };
	eng_req_t *r = eng_req_new(call, arg);
	const char *name = gw_req_param(call->req, "name");
	json_t *errors = NULL, *input;
	size_t len = 0;
	mf_err_t err;

	if (r == NULL)
		return;
	if (!eng_workflow_name_ok(name)) {
		gw_respond_error(call->req, 404, "not_found", "no such workflow");
		return;
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	(void)gw_req_body(call->req, &len);
	r->body = len ? gw_req_json(call->req, &err) : json_object();
	if (r->body == NULL) {
		if (len == 0)
			mf_err_set(&err, 503, "over_capacity", "out of memory; retry");
		gw_respond_problem(call->req, &err);
		return;
	}
	if (tn_only_keys(r->body, keys, &err, &errors) < 0) {
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	input = json_object_get(r->body, "input");
	if (input && !json_is_object(input)) {
		eng_invalid(r, "/input", "must be an object");
		return;
	}
	if (input && json_dumpb(input, NULL, 0, JSON_COMPACT) > ENG_API_MAX_DATA) {
		eng_too_large(r, "input");
		return;
	}
	eng_tx(r, run_begun);
}
