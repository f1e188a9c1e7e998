/*
 * api_portal.c - the engine's side of the client portal (docs/portal.md):
 * what a client's own users may see of the work done for them.  The
 * portal module (portal-api/) resolves the portal, checks that the token
 * belongs to it, and calls these with a guarded call on the client tenant.
 *
 *   submit         POST /portal/v1/requests {"type", "fields"}: the event
 *                  portal.request.<type> with {"request": fields + id,
 *                  type, requester} (what the shipped templates read), its
 *                  runs, and the portal_requests row, in one transaction
 *   list / get     the client's requests (a client_admin sees all of them,
 *                  anyone else their own), each with a state derived from
 *                  its runs and tasks
 *   tasks, decide  tasks assigned to a role the caller holds; the decision
 *                  is POST /tasks/{id}/decision's (eng_decide)
 *   status         counts, the open requests and the approvals' SLA state
 *
 * Nothing here answers a run's context, step outputs, connector summaries,
 * errors or workflow names: every shape is built by the SQL below from an
 * explicit list of columns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/spec.h"
#include "engine/api.h"
#include "engine/definition.h"
#include "gateway/jwt.h"
#include "tenants/tn.h"

#define NIL_UUID "'00000000-0000-0000-0000-000000000000'"
#define TYPE_MAX 63

/* A request's state, from its runs and their tasks (q: portal_requests). */
#define REQ_STATE \
	"CASE WHEN cardinality(q.run_ids) = 0 THEN 'received' " \
	"WHEN EXISTS (SELECT 1 FROM runs r WHERE r.id = ANY (q.run_ids) AND r.state = 'failed') THEN 'needs_attention' " \
	"WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = ANY (q.run_ids) AND t.state = 'open') " \
	"  THEN 'awaiting_approval' " \
	"WHEN EXISTS (SELECT 1 FROM runs r WHERE r.id = ANY (q.run_ids) AND r.state IN ('pending', 'running', 'waiting')) " \
	"  THEN 'in_progress' " \
	"WHEN EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = ANY (q.run_ids) AND t.state = 'rejected') THEN 'rejected' " \
	"WHEN NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = ANY (q.run_ids) AND r.state <> 'cancelled') THEN 'cancelled' " \
	"ELSE 'completed' END"

/* A run's milestones (runs r), in the order of its definition's steps:
 * reached once the step succeeded, skipped when the run ended without it. */
#define RUN_MILESTONES \
	"SELECT s.value->>'milestone' AS title, s.ord, r.id AS run_id, r.created_at AS run_created, " \
	"  r.state AS run_state, (SELECT min(x.finished_at) FROM run_steps x WHERE x.run_id = r.id " \
	"    AND x.step = s.value->>'id' AND x.state = 'succeeded') AS reached_at " \
	"FROM runs r JOIN workflow_versions v ON v.workflow = r.workflow AND v.version = r.version, " \
	"  jsonb_array_elements(v.definition->'steps') WITH ORDINALITY s(value, ord) " \
	"WHERE s.value ? 'milestone' AND r.id = ANY (q.run_ids)"

#define MILESTONE_STATE \
	"CASE WHEN m.reached_at IS NOT NULL THEN 'reached' " \
	"WHEN m.run_state IN ('succeeded', 'failed', 'cancelled') THEN 'skipped' ELSE 'pending' END"

/* A request as the portal shows it; its approvals only where the caller
 * holds the role ($1, a text[]): an msp's internal approvals stay out. */
#define REQ_JSON \
	"json_build_object('id', q.id, 'type', q.type, 'fields', q.fields, 'state', " REQ_STATE ", " \
	"'created_at', " ENG_TS("q.created_at") ", " \
	"'approvals', coalesce((SELECT json_agg(json_build_object('id', t.id, 'title', t.title, 'state', t.state, " \
	"  'due_at', " ENG_TS("t.due_at") ", 'decided_at', " ENG_TS("t.decided_at") ") ORDER BY t.created_at, t.id) " \
	"  FROM tasks t WHERE t.run_id = ANY (q.run_ids) AND t.assignee_role = ANY ($1::text[])), '[]'), " \
	"'milestones', coalesce((SELECT json_agg(json_build_object('title', m.title, 'state', " MILESTONE_STATE ", " \
	"  'reached_at', " ENG_TS("m.reached_at") ") ORDER BY m.run_created, m.run_id, m.ord) " \
	"  FROM (" RUN_MILESTONES ") m), '[]'))"

/* A task as the portal shows it (t: tasks). */
#define TASK_JSON \
	"json_build_object('id', t.id, 'title', t.title, 'state', t.state, 'due_at', " ENG_TS("t.due_at") ", " \
	"'overdue', (t.state = 'open' AND t.due_at < now()), 'decided_at', " ENG_TS("t.decided_at") ", " \
	"'created_at', " ENG_TS("t.created_at") ", " \
	"'request_id', (SELECT q.id FROM portal_requests q WHERE t.run_id = ANY (q.run_ids) LIMIT 1))"

/* $1 roles, $2 requester or NULL (all), $3 cursor, $4 limit */
static const char list_sql[] =
	"SELECT q.id::text, " REQ_JSON "::text FROM portal_requests q "
	"WHERE ($2::text IS NULL OR q.requester = $2) AND q.id > coalesce($3::uuid, " NIL_UUID ") "
	"ORDER BY q.id LIMIT $4::int";

/* $1 roles, $2 requester or NULL, $3 id */
static const char get_sql[] =
	"SELECT " REQ_JSON "::text FROM portal_requests q WHERE q.id = $3::uuid AND ($2::text IS NULL OR q.requester = $2)";

/* $1 roles, $2 state or NULL, $3 cursor, $4 limit */
static const char tasks_sql[] =
	"SELECT t.id::text, " TASK_JSON "::text FROM tasks t "
	"WHERE t.assignee_role = ANY ($1::text[]) AND ($2::text IS NULL OR t.state = $2) "
	"AND t.id > coalesce($3::uuid, " NIL_UUID ") ORDER BY t.id LIMIT $4::int";

/* $1 roles, $2 requester or NULL */
static const char status_sql[] =
	"WITH q AS (SELECT q.*, " REQ_STATE " AS state FROM portal_requests q "
	"  WHERE ($2::text IS NULL OR q.requester = $2)), "
	"a AS (SELECT count(*) FILTER (WHERE t.state = 'open') AS open, "
	"  count(*) FILTER (WHERE t.state = 'open' AND t.due_at < now()) AS overdue, "
	"  count(*) FILTER (WHERE t.state = 'open' AND t.due_at >= now() AND t.due_at < now() + interval '24 hours') AS soon "
	"  FROM tasks t WHERE t.assignee_role = ANY ($1::text[])) "
	"SELECT json_build_object("
	"'requests', (SELECT json_build_object("
	"  'open', count(*) FILTER (WHERE state IN ('received', 'in_progress', 'awaiting_approval', 'needs_attention')), "
	"  'completed', count(*) FILTER (WHERE state = 'completed'), "
	"  'rejected', count(*) FILTER (WHERE state = 'rejected'), "
	"  'cancelled', count(*) FILTER (WHERE state = 'cancelled')) FROM q), "
	"'open_requests', coalesce((SELECT json_agg(j ORDER BY c, i) FROM (SELECT " REQ_JSON " AS j, q.created_at AS c, "
	"  q.id AS i FROM q WHERE q.state IN ('received', 'in_progress', 'awaiting_approval', 'needs_attention') "
	"  ORDER BY q.created_at, q.id LIMIT 50) o), '[]'), "
	"'approvals', (SELECT json_build_object('open', open, 'overdue', overdue, 'due_within_24h', soon) FROM a), "
	"'sla', (SELECT CASE WHEN overdue > 0 THEN 'breached' WHEN soon > 0 THEN 'at_risk' ELSE 'on_track' END FROM a), "
	"'recent_milestones', coalesce((SELECT json_agg(json_build_object('title', m.title, 'reached_at', "
	"  " ENG_TS("m.reached_at") ", 'request_id', m.request_id, 'request_type', m.request_type) "
	"  ORDER BY m.reached_at DESC, m.request_id, m.ord) "
	"  FROM (SELECT m.*, q.id AS request_id, q.type AS request_type FROM q, LATERAL (" RUN_MILESTONES ") m "
	"    WHERE m.reached_at IS NOT NULL ORDER BY m.reached_at DESC LIMIT 10) m), '[]')"
	")::text";

static const char requester_sql[] =
	"SELECT coalesce(name, ''), email FROM platform.users "
	"WHERE id::text = $1 AND tenant_id = $2::uuid AND deleted_at IS NULL";

static const char insert_sql[] =
	"INSERT INTO portal_requests (id, type, fields, requester, event_id, run_ids) "
	"VALUES ($1::uuid, $2, $3::jsonb, $4, $5::uuid, ARRAY(SELECT json_array_elements_text($6::json)::uuid))";

static void oom(eng_req_t *r)
{
	gw_respond_error(r->call->req, 503, "over_capacity", "out of memory; retry");
}

/* The caller's roles as a text[] literal into r->text[0]. */
static bool roles_text(eng_req_t *r)
{
	const gw_claims_t *c = r->call->claims;
	json_t *a = json_array();
	char *lit;

	for (int i = 0; a && c && i < c->nroles; i++)
		json_array_append_new(a, json_string(c->roles[i]));
	lit = a ? tn_pg_array_literal(a) : NULL;
	json_decref(a);
	if (lit == NULL) {
		oom(r);
		return false;
	}
	free(r->text[0]);
	r->text[0] = lit;
	return true;
}

/* A client_admin sees every request of the client; anyone else their own:
 * r->text[1] the requester to filter on, or NULL. */
static bool requester_filter(eng_req_t *r)
{
	if (tn_call_has_role(r->call, "client_admin"))
		return true;
	if (eng_req_text(r, 1, r->call->claims->sub) < 0) {
		oom(r);
		return false;
	}
	return true;
}

static eng_req_t *portal_req(tn_call_t *call, eng_t *e)
{
	eng_req_t *r = eng_req_new(call, e);

	if (r)
		r->portal = true;
	return r;
}

/* ---- reads ---- */

void eng_portal_list_requests(tn_call_t *call, eng_t *e)
{
	eng_req_t *r = portal_req(call, e);
	char cursor[64];

	if (r == NULL || !roles_text(r) || !requester_filter(r) || !eng_page(r, true, cursor, 3))
		return;
	if (eng_req_text(r, 2, cursor[0] ? cursor : NULL) < 0) {
		oom(r);
		return;
	}
	r->sql = list_sql;
	r->nparams = 4;
	eng_read_page(r);
}

void eng_portal_get_request(tn_call_t *call, eng_t *e)
{
	eng_req_t *r = portal_req(call, e);
	const char *id = gw_req_param(call->req, "request_id");

	if (r == NULL)
		return;
	if (!tn_uuid_ok(id)) {
		gw_respond_error(call->req, 404, "not_found", "no such request");
		return;
	}
	if (!roles_text(r) || !requester_filter(r))
		return;
	if (eng_req_text(r, 2, id) < 0) {
		oom(r);
		return;
	}
	r->sql = get_sql;
	r->nparams = 3;
	r->missing = "no such request";
	eng_read_one(r);
}

void eng_portal_list_tasks(tn_call_t *call, eng_t *e)
{
	static const char *const states[] = { "open", "approved", "rejected", "expired", "cancelled", NULL };
	eng_req_t *r = portal_req(call, e);
	char cursor[64], v[32];
	int rc;
	bool known = false;

	if (r == NULL || !roles_text(r) || !eng_page(r, true, cursor, 3))
		return;
	rc = eng_query_param(r, "state", v, sizeof(v));
	for (int i = 0; rc > 0 && states[i]; i++)
		known |= strcmp(v, states[i]) == 0;
	if (rc < 0 || (rc > 0 && !known)) {
		eng_invalid(r, "/query/state", "not a known state");
		return;
	}
	if ((rc > 0 && eng_req_text(r, 1, v) < 0) || eng_req_text(r, 2, cursor[0] ? cursor : NULL) < 0) {
		oom(r);
		return;
	}
	r->sql = tasks_sql;
	r->nparams = 4;
	eng_read_page(r);
}

void eng_portal_decide(tn_call_t *call, eng_t *e)
{
	eng_req_t *r = portal_req(call, e);

	if (r)
		eng_decide(r);
}

void eng_portal_status(tn_call_t *call, eng_t *e)
{
	eng_req_t *r = portal_req(call, e);

	if (r == NULL || !roles_text(r) || !requester_filter(r))
		return;
	r->sql = status_sql;
	r->nparams = 2;
	r->missing = "no status";
	eng_read_one(r);
}

/* ---- request types ----
 * Each type some workflow takes (its trigger portal.request.<type>), with
 * the form: the union of its workflows' "request" fields, in order, the
 * first workflow with a form giving the title and description. */

static const char types_sql[] =
	"SELECT substr(w.trigger_event, 16), (v.definition->'request')::text FROM workflows w "
	"JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version "
	"WHERE w.trigger_event LIKE 'portal.request.%' ORDER BY 1, w.name";

static int add_form(json_t *item, const json_t *form)
{
	json_t *fields = json_object_get(item, "fields"), *f;
	size_t i;

	if (form == NULL)
		return 0;
	/* the first form gives the title and the description */
	if (!json_object_get(item, "description")) {
		const char *d = json_string_value(json_object_get(form, "description"));

		if (json_object_set(item, "title", json_object_get(form, "title")) < 0 ||
		    json_object_set_new(item, "description", json_string(d ? d : "")) < 0)
			return -1;
	}
	json_array_foreach(json_object_get(form, "fields"), i, f)
		if (eng_def_field_index(fields, json_string_value(json_object_get(f, "name"))) == SIZE_MAX &&
		    json_array_append(fields, f) < 0)
			return -1;
	return 0;
}

static void types_read(eng_req_t *r, const PGresult *res)
{
	json_t *items = json_array(), *item = NULL;
	bool ok = items != NULL;

	for (int i = 0; ok && i < PQntuples(res); i++) {
		const char *type = PQgetvalue(res, i, 0);
		json_t *form = PQgetisnull(res, i, 1) ? NULL : eng_json_col(res, i, 1);

		if (item == NULL || strcmp(json_string_value(json_object_get(item, "type")), type) != 0) {
			item = json_pack("{s:s,s:s,s:[]}", "type", type, "title", type, "fields");
			ok = item && json_array_append_new(items, item) == 0;
		}
		ok = ok && add_form(item, form) == 0;
		json_decref(form);
	}
	/* a type no form describes: an empty description all the same */
	for (size_t i = 0; ok && i < json_array_size(items); i++) {
		item = json_array_get(items, i);
		if (!json_object_get(item, "description"))
			ok = json_object_set_new(item, "description", json_string("")) == 0;
	}
	if (!ok) {
		json_decref(items);
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	eng_finish(r, 200, json_pack("{s:o}", "items", items));
}

static void types_begun(eng_req_t *r, const PGresult *res)
{
	(void)res;
	eng_q(r, types_sql, 0, NULL, types_read);
}

void eng_portal_request_types(tn_call_t *call, eng_t *e)
{
	eng_req_t *r = portal_req(call, e);

	if (r)
		eng_tx(r, types_begun);
}

/* ---- submit ----
 * text[0] event type, [1] request hash, [2] the event's Idempotency-Key
 * ("portal:<subject>:<key>") or NULL, [3] and [4] the event chain's,
 * [5] the request id; r->name the request type; r->body {"type",
 * "fields"} and then also {"data"} for the event. */

/* $1 roles, $2 the event */
static const char by_event_sql[] =
	"SELECT " REQ_JSON "::text FROM portal_requests q WHERE q.event_id = $2::uuid";

static void submit_read(eng_req_t *r, const PGresult *res)
{
	char target[48];
	json_t *runs = json_object_get(r->out, "run_ids");
	size_t n = json_array_size(runs);

	if (PQntuples(res) != 1) {
		eng_fail_code(r, 500, "internal_error", "the stored request could not be read back");
		return;
	}
	json_decref(r->out);
	r->out = eng_json_col(res, 0, 0);
	if (r->replay) {
		/* the request the key made first; nothing was written now */
		json_t *out = r->out;

		r->out = NULL;
		eng_finish(r, 200, out);
		return;
	}
	r->status = 201;
	snprintf(target, sizeof(target), "request:%s", r->text[5]);
	eng_audit_commit(r, "portal.request", target, json_pack("{s:s,s:I}", "type", r->name, "runs", (json_int_t)n));
}

static void submit_inserted(eng_req_t *r, const PGresult *res)
{
	const char *p[3] = { r->text[0], NULL, r->text[5] };

	(void)res;
	/* $1 of REQ_JSON is the caller's roles: text[0] is free again */
	if (!roles_text(r))
		return;
	p[0] = r->text[0];
	eng_q(r, get_sql, 3, p, submit_read);
}

static void submitted(eng_req_t *r, const PGresult *res)
{
	char *fields, *runs;
	const char *event_id = json_string_value(json_object_get(r->out, "event_id"));
	const char *p[6] = { r->text[5], r->name, NULL, r->call->claims->sub, event_id, NULL };

	(void)res;
	if (r->replay) {
		const char *q[2] = { NULL, event_id };

		if (!roles_text(r))
			return;
		q[0] = r->text[0];
		eng_q(r, by_event_sql, 2, q, submit_read);
		return;
	}
	fields = json_dumps(json_object_get(r->body, "fields"), JSON_COMPACT);
	runs = json_dumps(json_object_get(r->out, "run_ids"), JSON_COMPACT);
	if (fields == NULL || runs == NULL || event_id == NULL) {
		free(fields);
		free(runs);
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	p[2] = fields;
	p[5] = runs;
	eng_q(r, insert_sql, 6, p, submit_inserted);
	free(fields);
	free(runs);
}

/* The fields against the type's form (the union of its workflows' forms);
 * a type no workflow gives a form takes any fields. */
static bool fields_fit(eng_req_t *r, const PGresult *res)
{
	json_t *specs = json_object(), *resolved = NULL, *errors = NULL;
	mf_err_t err = { 0 };
	int rc = 0;

	for (int i = 0; specs && rc == 0 && i < PQntuples(res); i++) {
		json_t *def = eng_json_col(res, i, 2);

		rc = def ? eng_def_form_specs(specs, def) : -1;
		json_decref(def);
	}
	if (specs == NULL || rc < 0) {
		json_decref(specs);
		oom(r);
		return false;
	}
	if (json_object_size(specs) == 0) {
		json_decref(specs);
		return true;
	}
	rc = mf_spec_resolve(specs, json_object_get(r->body, "fields"), "/fields", "field", &resolved, &errors, &err);
	json_decref(specs);
	if (rc < 0) {
		eng_fail_ext(r, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return false;
	}
	if (json_object_set_new(r->body, "fields", resolved) < 0) {
		oom(r);
		return false;
	}
	return true;
}

/* res: the workflows the type starts.  The event's data.request is the
 * fields (with the form's defaults) plus id, type and the requester (in
 * r->out since got_requester); the same rows then start the runs. */
static void submit_checked(eng_req_t *r, const PGresult *res)
{
	json_t *req, *requester = r->out;

	r->out = NULL;
	if (PQntuples(res) == 0) {
		json_decref(requester);
		eng_fail_code(r, 422, "unknown_request_type", "this portal takes no requests of this type");
		return;
	}
	if (!fields_fit(r, res)) {
		json_decref(requester);
		return;
	}
	req = json_deep_copy(json_object_get(r->body, "fields"));
	/* requester first: set_new takes it even when it fails */
	if (req == NULL || requester == NULL || json_object_set_new(req, "requester", requester) < 0 ||
	    json_object_set_new(req, "id", json_string(r->text[5])) < 0 ||
	    json_object_set_new(req, "type", json_string(r->name)) < 0) {
		if (req == NULL)
			json_decref(requester);
		json_decref(req);
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	/* "o" takes req, and set_new the object, even when they fail */
	if (json_object_set_new(r->body, "data", json_pack("{s:o}", "request", req)) < 0) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	eng_event_post_matched(r, res, submitted);
}

static void got_requester(eng_req_t *r, const PGresult *res)
{
	const char *p[1] = { r->text[0] };

	r->out = json_pack("{s:s}", "id", r->call->claims->sub);
	if (r->out && PQntuples(res) == 1) {
		json_object_set_new(r->out, "name", json_string(PQgetvalue(res, 0, 0)));
		json_object_set_new(r->out, "email", json_string(PQgetvalue(res, 0, 1)));
	}
	eng_q(r, eng_triggers_sql, 1, p, submit_checked);
}

static void submit_begun(eng_req_t *r, const PGresult *res)
{
	const char *p[2] = { r->call->claims->sub, r->call->tenant_id };

	(void)res;
	eng_q(r, requester_sql, 2, p, got_requester);
}

static bool type_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > TYPE_MAX || s[0] < 'a' || s[0] > 'z')
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* text[1]: the request hash, over the body as sent (sorted, compact), so a
 * repeated Idempotency-Key is the same request only with the same body;
 * text[2]: the key, scoped to the caller. */
static bool idempotency(eng_req_t *r)
{
	const char *key = gw_req_header(r->call->req, "Idempotency-Key");
	unsigned char h[crypto_generichash_BYTES];
	char hex[2 * crypto_generichash_BYTES + 1], *text, *scoped = NULL;

	if (key && !eng_idempotency_key_ok(key)) {
		eng_invalid(r, "/headers/Idempotency-Key", "must be 1 to 255 printable ASCII characters");
		return false;
	}
	text = json_dumps(r->body, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL || (key && asprintf(&scoped, "portal:%s:%s", r->call->claims->sub, key) < 0)) {
		free(text);
		oom(r);
		return false;
	}
	crypto_generichash(h, sizeof(h), (const unsigned char *)text, strlen(text), NULL, 0);
	free(text);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	if (eng_req_text(r, 1, hex) < 0 || eng_req_text(r, 2, scoped) < 0) {
		free(scoped);
		oom(r);
		return false;
	}
	free(scoped);
	return true;
}

void eng_portal_submit(tn_call_t *call, eng_t *e)
{
	static const char *const keys[] = { "type", "fields", NULL };
	static const char *const reserved[] = { "id", "type", "requester", NULL };
	eng_req_t *r = portal_req(call, e);
	json_t *fields;
	const char *type;
	char event[96], rid[37];

	if (r == NULL)
		return;
	if (!eng_req_body(r, keys))
		return;
	type = json_string_value(json_object_get(r->body, "type"));
	if (!type_ok(type)) {
		eng_invalid(r, "/type", "must be a request type: a lower-case letter then a-z, 0-9 and _, at most 63");
		return;
	}
	fields = json_object_get(r->body, "fields");
	if (fields == NULL) {
		if (json_object_set_new(r->body, "fields", json_object()) < 0) {
			oom(r);
			return;
		}
	} else if (!json_is_object(fields)) {
		eng_invalid(r, "/fields", "must be an object");
		return;
	} else if (json_dumpb(fields, NULL, 0, JSON_COMPACT) > ENG_API_MAX_DATA) {
		eng_too_large(r, "fields");
		return;
	}
	for (int i = 0; fields && reserved[i]; i++)
		if (json_object_get(fields, reserved[i])) {
			char path[32];

			snprintf(path, sizeof(path), "/fields/%s", reserved[i]);
			eng_invalid(r, path, "is set by the portal");
			return;
		}
	if (!idempotency(r))
		return;
	snprintf(event, sizeof(event), "portal.request.%s", type);
	snprintf(r->name, sizeof(r->name), "%s", type);
	tn_uuid_new(r->id);		/* the event's */
	tn_uuid_new(rid);
	if (eng_req_text(r, 0, event) < 0 || eng_req_text(r, 5, rid) < 0) {
		oom(r);
		return;
	}
	if (!eng_def_event_ok(event)) {
		eng_invalid(r, "/type", "makes an event name that is too long");
		return;
	}
	eng_tx(r, submit_begun);
}
