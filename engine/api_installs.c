/*
 * api_installs.c - installing partner templates (CONTRACT 8,
 * docs/templates.md "Installing"):
 *
 *   POST /v1/tenants/{t}/installations {"template": "partner-slug/name", "version", "params"?,
 *                                       "workflow_name"?}          201 an installation
 *   GET  /v1/tenants/{t}/installations                             a page by id
 *   GET  /v1/tenants/{t}/installations/{id}
 *
 * An install is checked in this order, each failure storing nothing: the
 * body's shape (400 validation_failed, every problem), the template
 * version (404 template_not_found, 409 template_yanked), the parameter
 * values against its specs (400, at /params/<name>; defaults filled in),
 * the template's workflow with "params" added as a definition (400), the
 * tenant's connectors (409 connector_missing naming every missing one).
 * Then, in the same transaction: the next version of workflow_name (as
 * PUT /workflows/{name} stores it; none when it equals the latest), the
 * installations row and the audit row template.install.  Installing a
 * later version under the same workflow_name is the upgrade: runs in
 * flight stay pinned to their version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/template.h"
#include "engine/api.h"
#include "engine/definition.h"
#include "tenants/tn.h"

/* r->text: 0 the definition, 1 its trigger event (eng_store_version),
 * 2 the template "slug/name", 3 the template version, 4 the params' JSON,
 * 5 the partner's id.  r->name: the workflow. */

#define INSTALL_JSON \
	"json_build_object('id', i.id, 'template', i.template, 'version', i.version, 'params', i.params, " \
	"'workflow', i.workflow, 'workflow_version', i.workflow_version, 'created_by', i.created_by, " \
	"'created_at', " ENG_TS("i.created_at") ")"

/* $1 partner slug, $2 name, $3 version.  The workflow comes with the
 * template's "messages" (they win over the workflow's own). */
static const char template_sql[] =
	"SELECT t.partner_id::text, t.yanked, coalesce(t.document->'parameters', '{}')::text, "
	"(t.document->'workflow' || CASE WHEN t.document ? 'messages' "
	"THEN jsonb_build_object('messages', t.document->'messages') ELSE '{}' END)::text, coalesce(t.document->'connectors', '[]')::text "
	"FROM platform.templates t JOIN platform.tenants p ON p.id = t.partner_id AND p.deleted_at IS NULL "
	"AND p.kind = 'partner' WHERE p.slug = $1 AND t.name = $2 AND t.version = $3";

/* $1 the connector names the template expects (text[]): those missing. */
static const char missing_sql[] =
	"SELECT coalesce(json_agg(n ORDER BY n), '[]')::text FROM (SELECT DISTINCT n FROM unnest($1::text[]) n) x "
	"WHERE NOT EXISTS (SELECT 1 FROM connectors c WHERE c.name = x.n)";

/* $1 id, $2 template, $3 partner, $4 version, $5 params, $6 workflow, $7 workflow version, $8 actor. */
static const char insert_sql[] =
	"INSERT INTO installations AS i (id, template, partner_id, version, params, workflow, workflow_version, "
	"created_by) VALUES ($1::uuid, $2, $3::uuid, $4, $5::jsonb, $6, $7::int, $8) RETURNING " INSTALL_JSON "::text";

static void fail_errors(eng_req_t *r, const mf_err_t *err, json_t *errors)
{
	eng_fail_ext(r, err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
}

static void inserted(eng_req_t *r, const PGresult *res)
{
	json_t *out = eng_json_col(res, 0, 0);

	if (out == NULL) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	/* the answer leaves out who and when: the row has them */
	json_object_del(out, "created_by");
	r->out = out;
	r->status = 201;
	eng_audit_commit(r, "template.install", r->id,
			 json_pack("{s:s,s:s,s:s,s:i,s:b}", "template", r->text[2], "version", r->text[3], "workflow",
				   r->name, "workflow_version", r->version, "new_version", !r->unchanged));
}

static void version_stored(eng_req_t *r, const PGresult *res)
{
	char v[16];
	const char *p[8] = { r->id, r->text[2], r->text[5], r->text[3], r->text[4], r->name, v, r->call->actor };

	(void)res;
	snprintf(v, sizeof(v), "%d", r->version);
	eng_q(r, insert_sql, 8, p, inserted);
}

static void got_missing(eng_req_t *r, const PGresult *res)
{
	json_t *missing = eng_json_col(res, 0, 0);
	mf_err_t err;

	if (missing == NULL) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (json_array_size(missing) > 0) {
		json_t *errors = json_array(), *n;
		size_t i;

		json_array_foreach(missing, i, n) {
			char msg[160];

			snprintf(msg, sizeof(msg), "the template needs connector %s; create it with PUT "
				 "/v1/tenants/{t}/connectors/%s first", json_string_value(n), json_string_value(n));
			json_array_append_new(errors, json_pack("{s:s,s:s}", "path", "/connectors", "message", msg));
		}
		mf_err_set(&err, 409, "connector_missing", "the template needs %zu connector(s) this tenant does not have; "
			   "the first: %s", json_array_size(missing), json_string_value(json_array_get(missing, 0)));
		eng_fail_ext(r, &err, json_pack("{s:o,s:o}", "connectors", missing, "errors", errors));
		return;
	}
	json_decref(missing);
	eng_store_version(r, version_stored);
}

static void got_template(eng_req_t *r, const PGresult *res)
{
	json_t *specs, *wf, *conns, *params = NULL, *errors = NULL, *names;
	const json_t *c;
	char *lit = NULL;
	size_t i;
	mf_err_t err;

	if (PQntuples(res) != 1) {
		eng_fail_code(r, 404, "template_not_found", "no such template version in the catalog");
		return;
	}
	if (PQgetvalue(res, 0, 1)[0] == 't') {
		eng_fail_code(r, 409, "template_yanked", "this template version is yanked; install another version");
		return;
	}
	if (eng_req_text(r, 5, PQgetvalue(res, 0, 0)) < 0) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	specs = eng_json_col(res, 0, 2);
	wf = eng_json_col(res, 0, 3);
	conns = eng_json_col(res, 0, 4);
	if (cat_params_resolve(specs, json_object_get(r->body, "params"), &params, &errors, &err) < 0) {
		fail_errors(r, &err, errors);
		goto out;
	}
	if (!json_is_object(wf) || json_object_set(wf, "params", params) < 0) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		goto out;
	}
	if (eng_def_validate(wf, &errors, &err) < 0) {
		/* e.g. params over 64 KiB; paths are the workflow definition's */
		fail_errors(r, &err, errors);
		goto out;
	}
	free(r->text[0]);
	free(r->text[4]);
	r->text[0] = json_dumps(wf, JSON_COMPACT);
	r->text[4] = json_dumps(params, JSON_COMPACT);
	names = json_array();
	json_array_foreach(conns, i, c)
		if (json_is_string(json_object_get(c, "name")))
			json_array_append(names, json_object_get(c, "name"));
	lit = names ? tn_pg_array_literal(names) : NULL;
	json_decref(names);
	if (r->text[0] == NULL || r->text[4] == NULL || lit == NULL ||
	    eng_req_text(r, 1, json_string_value(json_object_get(json_object_get(wf, "trigger"), "event"))) < 0) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		goto out;
	}
	{
		const char *p[1] = { lit };

		eng_q(r, missing_sql, 1, p, got_missing);
	}
out:
	free(lit);
	json_decref(specs);
	json_decref(wf);
	json_decref(conns);
	json_decref(params);
}

static void install_begun(eng_req_t *r, const PGresult *res)
{
	char slug[64];
	const char *name = strchr(r->text[2], '/') + 1;
	const char *p[3] = { slug, name, r->text[3] };

	(void)res;
	snprintf(slug, sizeof(slug), "%.*s", (int)(name - 1 - r->text[2]), r->text[2]);
	eng_q(r, template_sql, 3, p, got_template);
}

static void problem(json_t *errors, const char *path, const char *msg)
{
	json_array_append_new(errors, json_pack("{s:s,s:s}", "path", path, "message", msg));
}

/* "slug/name", both cat_name_ok. */
static bool template_ok(const char *s)
{
	const char *slash = s ? strchr(s, '/') : NULL;
	char slug[128];

	if (slash == NULL || (size_t)(slash - s) >= sizeof(slug))
		return false;
	snprintf(slug, sizeof(slug), "%.*s", (int)(slash - s), s);
	return cat_name_ok(slug) && cat_name_ok(slash + 1);
}

void eng_install(tn_call_t *call, void *arg)
{
	static const char *const keys[] = { "template", "version", "params", "workflow_name", NULL };
	eng_req_t *r = eng_req_new(call, arg);
	json_t *errors, *v;
	const char *tpl, *wn;
	cat_semver_t sv;
	mf_err_t err;

	if (r == NULL)
		return;
	if ((r->body = gw_req_json(call->req, &err)) == NULL) {
		gw_respond_problem(call->req, &err);
		return;
	}
	errors = NULL;
	if (!json_is_object(r->body)) {
		eng_invalid(r, "", "must be a JSON object {template, version, params, workflow_name}");
		return;
	}
	if (tn_only_keys(r->body, keys, &err, &errors) < 0) {
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	errors = json_array();
	if (errors == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	tpl = json_string_value(json_object_get(r->body, "template"));
	if (!template_ok(tpl))
		problem(errors, "/template", json_object_get(r->body, "template") ?
			"must be \"partner-slug/name\", each 1 to 63 of a-z, 0-9 and -" : "is required");
	v = json_object_get(r->body, "version");
	if (!json_is_string(v) || !cat_semver_parse(json_string_value(v), &sv))
		problem(errors, "/version", v ? "must be a semantic version (MAJOR.MINOR.PATCH[-PRE])" : "is required");
	v = json_object_get(r->body, "params");
	if (v && !json_is_object(v))
		problem(errors, "/params", "must be an object");
	v = json_object_get(r->body, "workflow_name");
	wn = json_string_value(v);
	if (v && !eng_workflow_name_ok(wn))
		problem(errors, "/workflow_name", "1 to 63 of a-z 0-9 _ . -, starting with a letter or digit");
	if (json_array_size(errors) > 0) {
		mf_err_set(&err, 400, "validation_failed", "the installation has %zu problem(s); the first: %s %s",
			   json_array_size(errors), json_string_value(json_object_get(json_array_get(errors, 0), "path")),
			   json_string_value(json_object_get(json_array_get(errors, 0), "message")));
		gw_respond_problem_ext(call->req, &err, json_pack("{s:o}", "errors", errors));
		return;
	}
	json_decref(errors);
	/* the workflow is named after the template unless told otherwise */
	snprintf(r->name, sizeof(r->name), "%s", wn ? wn : strchr(tpl, '/') + 1);
	if (eng_req_text(r, 2, tpl) < 0 ||
	    eng_req_text(r, 3, json_string_value(json_object_get(r->body, "version"))) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	tn_uuid_new(r->id);
	eng_tx(r, install_begun);
}

/* ---- reads ---- */

static const char list_sql[] =
	"SELECT i.id::text, " INSTALL_JSON "::text FROM installations i "
	"WHERE ($1 = '' OR i.id > $1::uuid) AND ($3 = '' OR i.workflow = $3) ORDER BY i.id LIMIT $2::int";

static const char get_sql[] = "SELECT " INSTALL_JSON "::text FROM installations i WHERE i.id = $1::uuid";

void eng_list_installs(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);
	char cursor[64], wf[80];

	if (r == NULL || !eng_page(r, true, cursor, 1))
		return;
	if (eng_query_param(r, "workflow", wf, sizeof(wf)) < 0 || (wf[0] && !eng_workflow_name_ok(wf))) {
		gw_respond_error(call->req, 400, "validation_failed", "workflow is not a workflow name");
		return;
	}
	if (eng_req_text(r, 0, cursor) < 0 || eng_req_text(r, 2, wf) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	r->sql = list_sql;
	r->nparams = 3;
	eng_read_page(r);
}

void eng_get_install(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);
	const char *id = gw_req_param(call->req, "installation_id");

	if (r == NULL)
		return;
	if (id == NULL || !tn_uuid_ok(id)) {
		gw_respond_error(call->req, 404, "not_found", "no such installation");
		return;
	}
	if (eng_req_text(r, 0, id) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	r->sql = get_sql;
	r->nparams = 1;
	r->missing = "no such installation";
	eng_read_one(r);
}
