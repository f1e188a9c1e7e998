/*
 * start.c - which runs an event starts, and the entries eng_start /
 * eng_event (platform/0006_engine.sql) insert for them.  Pure: the caller
 * runs eng_triggers_sql in its own transaction and passes the rows here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/otlp.h"
#include "engine/definition.h"
#include "engine/engine.h"
#include "engine/expr.h"
#include "tenants/tn.h"

const char eng_triggers_sql[] =
	"SELECT w.name, v.version, v.definition::text FROM workflows w "
	"JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version "
	"WHERE w.trigger_event = $1 ORDER BY w.name";

/* A copy of the definition's params (an installed template's,
 * docs/workflows.md), or a new {} (new reference; NULL when out of memory). */
static json_t *params_of(const json_t *def)
{
	const json_t *p = json_object_get(def, "params");

	return json_is_object(p) ? json_deep_copy(p) : json_object();
}

json_t *eng_run_entry(const char *name, int version, const json_t *def, const json_t *input,
		      const char *event_id, const char *type, const json_t *data)
{
	int start = eng_def_start(def);
	const json_t *step = start >= 0 ? eng_def_step_at(def, (size_t)start) : NULL;
	const char *step_id = json_string_value(json_object_get(step, "id"));
	char id[37];
	json_t *ctx, *entry;

	if (step_id == NULL)
		return NULL;
	tn_uuid_new(id);
	/* "o" steals: a borrowed input gets its own reference, a new {} none more */
	ctx = json_pack("{s:o, s:O, s:{}}", "input", input ? json_incref((json_t *)input) : json_object(), "data",
			data ? data : json_null(), "steps");
	if (ctx && event_id && json_object_set_new(ctx, "event", json_pack("{s:s, s:s}", "id", event_id,
									   "type", type ? type : "")) < 0) {
		json_decref(ctx);
		return NULL;
	}
	if (ctx == NULL)
		return NULL;
	if (json_object_set_new(ctx, "params", params_of(def)) < 0) {
		json_decref(ctx);
		return NULL;
	}
	entry = json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", id, "workflow", name, "version", version,
			  "step", step_id, "ctx", ctx);
	if (entry && event_id && json_object_set_new(entry, "event_id", json_string(event_id)) < 0) {
		json_decref(entry);
		return NULL;
	}
	return entry;
}

json_t *eng_runs_for_event(const PGresult *triggers, const char *event_id, const char *type,
			   const json_t *data, const json_t *tenant)
{
	json_t *runs = json_array(), *scope = json_pack("{s:O, s:o}", "data", data ? data : json_null(), "tenant",
							 tenant ? json_incref((json_t *)tenant) : json_object());

	if (runs == NULL || scope == NULL)
		goto oom;
	for (int i = 0; triggers && i < PQntuples(triggers); i++) {
		json_t *def = json_loads(PQgetvalue(triggers, i, 2), 0, NULL);
		const char *when = json_string_value(json_object_get(json_object_get(def, "trigger"), "when"));
		bool go = true;

		if (def == NULL)
			continue;
		if (json_object_set_new(scope, "params", params_of(def)) < 0) {
			json_decref(def);
			goto oom;
		}
		if (when) {
			mf_err_t err;
			eng_expr_t *e = eng_expr_parse(when, strlen(when), &err);
			json_t *v = NULL;

			go = e && eng_expr_eval(e, scope, &v, &err) == 0 && eng_expr_truthy(v);
			json_decref(v);
			eng_expr_free(e);
		}
		if (go) {
			json_t *entry = eng_run_entry(PQgetvalue(triggers, i, 0), atoi(PQgetvalue(triggers, i, 1)), def,
						      NULL, event_id, type, data);

			if (entry == NULL || json_array_append_new(runs, entry) < 0) {
				json_decref(def);
				goto oom;
			}
		}
		json_decref(def);
	}
	json_decref(scope);
	return runs;
oom:
	json_decref(runs);
	json_decref(scope);
	return NULL;
}

json_t *eng_trace_json(const mf_trace_t *parent)
{
	mf_trace_t t;
	char start[24];

	if (parent && mf_trace_valid(parent))
		mf_trace_child(parent, &t);
	else
		mf_trace_new(&t);
	snprintf(start, sizeof(start), "%llu", mf_otlp_now_ns());
	return json_pack("{s:s, s:s, s:s, s:s}", "id", t.trace_id, "span", t.parent_id, "parent",
			 parent && mf_trace_valid(parent) ? parent->parent_id : "", "start", start);
}

void eng_runs_set_trace(json_t *runs, const mf_trace_t *parent)
{
	size_t i;
	json_t *entry;

	json_array_foreach(runs, i, entry) {
		json_t *ctx = json_object_get(entry, "ctx");

		if (json_is_object(ctx))
			json_object_set_new(ctx, "trace", eng_trace_json(parent));
	}
}
