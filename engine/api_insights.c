/*
 * api_insights.c - GET /v1/tenants/{t}/insights?from=&to=&workflow=
 * (CONTRACT 10, docs/insights.md).
 *
 * One statement, platform.insights_tree, answers a partial per schema:
 * the tenant's own and, for an msp, each live client's.  It runs on the
 * request's pinned connection through libpq's async API like every engine
 * route, so a long msp rollup occupies one pool connection, never the
 * event loop.  The merge and the percentiles are insights.c's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/api.h"
#include "engine/insights.h"
#include "gateway/gateway.h"

/* The default window, the longest one (a leap year and a day's slack). */
#define INS_DEFAULT_S (7 * 86400.0)
#define INS_MAX_S (366 * 86400.0)

static const char tree_sql[] =
	"SELECT tenant_id, name, kind, partial FROM platform.insights_tree($1::uuid, to_timestamp($2::float8), "
	"to_timestamp($3::float8), $4, $5::int)";

/* RFC 3339 UTC with milliseconds, as the engine answers timestamps. */
static json_t *time_json(double t)
{
	char buf[64];
	time_t s = (time_t)floor(t);
	int ms = (int)floor((t - floor(t)) * 1000.0);
	struct tm tm;

	if (gmtime_r(&s, &tm) == NULL)
		return json_null();
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	return json_string(buf);
}

/* The merged report of parts with the window's members added (new reference). */
static json_t *report(eng_req_t *r, json_t *const *parts, size_t n)
{
	json_t *o = eng_ins_report(parts, n);

	if (o && (json_object_set_new(o, "from", time_json(strtod(r->text[0], NULL))) < 0 ||
		  json_object_set_new(o, "to", time_json(strtod(r->text[1], NULL))) < 0 ||
		  json_object_set_new(o, "workflow", r->text[2] ? json_string(r->text[2]) : json_null()) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void answer(eng_req_t *r, const PGresult *res)
{
	int n = PQntuples(res);
	json_t **parts = calloc((size_t)n + 1, sizeof(*parts));
	json_t *out = NULL, *clients = NULL;
	bool ok = parts != NULL;

	for (int i = 0; ok && i < n; i++)
		ok = (parts[i] = eng_json_col(res, i, 3)) != NULL && json_is_object(parts[i]);
	/* the tenant's own row first (insights_tree orders it so) */
	if (ok && n > 0 && strcmp(PQgetvalue(res, 0, 0), r->call->tenant_id) == 0)
		ok = (out = report(r, parts, (size_t)n)) != NULL &&
		     json_object_set_new(out, "tenant_id", json_string(r->call->tenant_id)) == 0;
	else if (ok)
		ok = false;
	if (ok && r->call->kind == POL_MSP) {
		ok = (clients = json_array()) != NULL && json_object_set_new(out, "clients", clients) == 0;
		for (int i = 1; ok && i < n; i++) {
			json_t *c = report(r, parts + i, 1);

			if (c == NULL || json_object_set_new(c, "tenant_id", json_string(PQgetvalue(res, i, 0))) < 0 ||
			    json_object_set_new(c, "name", json_string(PQgetvalue(res, i, 1))) < 0) {
				json_decref(c);
				ok = false;
			} else {
				ok = json_array_append_new(clients, c) == 0;	/* steals c either way */
			}
		}
	}
	for (int i = 0; parts && i < n; i++)
		json_decref(parts[i]);
	free(parts);
	if (!ok) {
		json_decref(out);
		out = NULL;
	}
	eng_finish(r, 200, out);
}

static void query(eng_req_t *r, const PGresult *res)
{
	const char *p[5] = { r->call->tenant_id, r->text[0], r->text[1], r->text[2], r->text[3] };

	(void)res;
	eng_q(r, tree_sql, 5, p, answer);
}

/* ?name= as an RFC 3339 time into *t: 1 given, 0 absent, -1 answered 400. */
static int time_param(eng_req_t *r, const char *name, double *t)
{
	char v[64], path[32];
	int rc = eng_query_param(r, name, v, sizeof(v));

	snprintf(path, sizeof(path), "/query/%s", name);
	if (rc == 0)
		return 0;
	if (rc < 0 || eng_ins_parse_time(v, t) < 0) {
		eng_invalid(r, path, "not an RFC 3339 date-time (e.g. 2025-01-31T00:00:00Z)");
		return -1;
	}
	return 1;
}

void eng_get_insights(tn_call_t *call, void *arg)
{
	eng_req_t *r = eng_req_new(call, arg);
	double from = 0, to = 0;
	int hf, ht, rc;
	char wf[128], num[3][40];
	struct timespec now;

	if (r == NULL)
		return;
	if ((hf = time_param(r, "from", &from)) < 0 || (ht = time_param(r, "to", &to)) < 0)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	if (!ht)
		to = hf ? from + INS_DEFAULT_S : (double)now.tv_sec + now.tv_nsec / 1e9;
	if (!hf)
		from = to - INS_DEFAULT_S;
	if (!(to > from)) {
		eng_invalid(r, "/query/to", "must be later than from");
		return;
	}
	if (to - from > INS_MAX_S) {
		eng_invalid(r, "/query/to", "the window is at most 366 days");
		return;
	}
	rc = eng_query_param(r, "workflow", wf, sizeof(wf));
	if (rc < 0 || (rc > 0 && !eng_workflow_name_ok(wf))) {
		eng_invalid(r, "/query/workflow", "not a workflow name");
		return;
	}
	snprintf(num[0], sizeof(num[0]), "%.6f", from);
	snprintf(num[1], sizeof(num[1]), "%.6f", to);
	snprintf(num[2], sizeof(num[2]), "%d", ENG_INS_EXACT);
	if (eng_req_text(r, 0, num[0]) < 0 || eng_req_text(r, 1, num[1]) < 0 ||
	    eng_req_text(r, 2, rc > 0 ? wf : NULL) < 0 || eng_req_text(r, 3, num[2]) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	eng_tx(r, query);
}
