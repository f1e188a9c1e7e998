/*
 * outbox.c - outbound webhooks (CONTRACT 6): a tenant's subscriptions,
 * their delivery log, and the worker that delivers.
 *
 *   PUT    /v1/tenants/{tenant_id}/webhooks/{name}             {url, events}; 201 with the secret on
 *                                                              creation, 200 (no secret) on a change
 *   GET    /v1/tenants/{tenant_id}/webhooks[/{name}]           never a secret
 *   DELETE /v1/tenants/{tenant_id}/webhooks/{name}             204; its deliveries go with it
 *   GET    /v1/tenants/{tenant_id}/webhooks/{name}/deliveries  the delivery log, newest first
 *
 * The outbox itself is in the database: every accepted event (API, hooks,
 * emit steps: all through platform.eng_event) fires a trigger that writes
 * one delivery per matching subscription and a platform.delivery_queue row
 * in the event's own transaction (tenant/0005_webhooks.sql), so no accepted
 * event misses its deliveries.  Each engine worker thread runs one
 * eng_outbox_t: woken by NOTIFY mspflow_webhooks and a poll timer, it
 * claims due deliveries (FOR UPDATE SKIP LOCKED, under a lease), loads each
 * with its subscription and event, opens the signing secret, POSTs the
 * signed body with cx_http (the connectors' curl-multi client, on this
 * loop, behind the egress guard and the tenant's egress policy) and records
 * the attempt while it still holds the lease.  2xx: delivered; otherwise a
 * retry after eng_webhook_backoff_ms until webhook_max_attempts, then
 * failed.  A worker that dies mid-delivery loses only its lease: the
 * delivery is due again and is sent again with the same webhook-id (the
 * delivery id), so receivers deduplicate on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

/* connectors/cx.h is the connectors' private header: the worker's egress
 * guard (shared, immutable) and the URL and Retry-After helpers connector
 * calls use, so a webhook is held to exactly the same rules. */
#include "connectors/cx.h"
#include "core/log.h"
#include "core/worker.h"
#include "engine/definition.h"
#include "engine/hooks_int.h"
#include "policies/policy.h"
#include "tenants/tn.h"

#define URL_MAX 2048
#define RESPONSE_MAX (64 * 1024)	/* a receiver's answer is not kept: read this much at most */
#define ERROR_MAX 200

/* ---- the delivery schedule (pure) ---- */

long long eng_webhook_backoff_ms(int attempt, long long base_ms, long long retry_after_ms, uint32_t rnd)
{
	long long wait = base_ms < 1 ? 1 : base_ms;

	if (wait > ENG_WEBHOOK_BACKOFF_MAX_MS)
		wait = ENG_WEBHOOK_BACKOFF_MAX_MS;
	for (int i = 1; i < attempt && wait < ENG_WEBHOOK_BACKOFF_MAX_MS; i++)
		wait *= 2;
	if (wait > ENG_WEBHOOK_BACKOFF_MAX_MS)
		wait = ENG_WEBHOOK_BACKOFF_MAX_MS;
	/* up to 20% more, so receivers that failed together are not retried together */
	wait += (long long)((double)(wait / 5) * ((double)rnd / (double)UINT32_MAX));
	if (wait > ENG_WEBHOOK_BACKOFF_MAX_MS)
		wait = ENG_WEBHOOK_BACKOFF_MAX_MS;
	if (retry_after_ms >= 0) {
		long long ra = retry_after_ms > ENG_WEBHOOK_RETRY_AFTER_MAX_MS ? ENG_WEBHOOK_RETRY_AFTER_MAX_MS
									   : retry_after_ms;

		if (ra > wait)
			wait = ra;
	}
	return wait;
}

long long eng_webhook_retry_after_ms(const char *value, time_t now)
{
	return cx_retry_after_ms(value, now);
}

/* ---- validation of a subscription ---- */

/* An events entry: an event type, "*", or "<prefix>.*" where <prefix> is
 * one or more parts of an event type ("crm.*", "crm.deal.*"). */
static bool pattern_ok(const char *s)
{
	size_t n = strlen(s);
	char probe[ENG_EVENT_MAX + 8];

	if (strcmp(s, "*") == 0)
		return true;
	if (n > 2 && n <= ENG_EVENT_MAX && s[n - 1] == '*' && s[n - 2] == '.') {
		/* the prefix is valid when an event under it would be */
		snprintf(probe, sizeof(probe), "%.*s.x", (int)(n - 2), s);
		return strlen(probe) <= ENG_EVENT_MAX && eng_def_event_ok(probe);
	}
	return eng_def_event_ok(s);
}

static void err_add(json_t *errors, const char *path, const char *msg)
{
	json_array_append_new(errors, json_pack("{s:s,s:s}", "path", path, "message", msg));
}

/* Checks {url, events}; the problems go to errors (path + message). */
static void check_body(const json_t *body, const cx_egress_t *egress, json_t *errors)
{
	const json_t *url = json_object_get(body, "url"), *events = json_object_get(body, "events"), *v;
	size_t i;

	if (!json_is_string(url) || json_string_length(url) == 0) {
		err_add(errors, "/url", "required: an http or https URL");
	} else if (json_string_length(url) > URL_MAX) {
		err_add(errors, "/url", "at most 2048 characters");
	} else {
		mf_err_t e;

		if (cx_egress_url_check(egress, json_string_value(url), &e) < 0)
			err_add(errors, "/url", e.detail);
	}
	if (!json_is_array(events) || json_array_size(events) == 0) {
		err_add(errors, "/events", "required: a non-empty array of event types or patterns");
		return;
	}
	if (json_array_size(events) > ENG_WEBHOOK_EVENTS_MAX) {
		err_add(errors, "/events", "at most 64 entries");
		return;
	}
	json_array_foreach(events, i, v) {
		char path[32];

		snprintf(path, sizeof(path), "/events/%zu", i);
		if (!json_is_string(v) || !pattern_ok(json_string_value(v))) {
			err_add(errors, path, "must be an event type (\"crm.deal.won\"), a prefix pattern (\"crm.*\") or \"*\"");
			continue;
		}
		for (size_t j = 0; j < i; j++)
			if (json_equal(v, json_array_get(events, j))) {
				err_add(errors, path, "listed twice");
				break;
			}
	}
}

/* ---- the routes ---- */

typedef struct wreq {
	eng_wtx_t tx;			/* first: callbacks get the state as arg */
	char name[CX_NAME_MAX + 1];
	char secret[CX_WEBHOOK_SECRET_SIZE];	/* only while a subscription is being created */
	char *url;
	char *events;				/* text[] literal */
	json_t *out;				/* the answer, once stored */
	int status;				/* 201 created, 200 changed */
	int limit;
	char cursor[64];
} wreq_t;

static void wreq_free(void *p)
{
	wreq_t *r = p;

	free(r->url);
	free(r->events);
	json_decref(r->out);
	sodium_memzero(r->secret, sizeof(r->secret));
	free(r);
}

static wreq_t *wreq_new(tn_call_t *call)
{
	wreq_t *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return NULL;
	}
	r->tx.call = call;
	r->tx.req = call->req;
	call->data = r;
	call->data_free = wreq_free;
	return r;
}

/* The columns of a subscription as webhook_rows returns them. */
#define ROW_COLS \
	"name, url, array_to_json(events)::text, version, " \
	"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), " \
	"to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static json_t *row_json(const PGresult *res, int i)
{
	return json_pack("{s:s,s:s,s:o,s:i,s:s,s:s}", "name", PQgetvalue(res, i, 0), "url", PQgetvalue(res, i, 1),
			 "events", json_loads(PQgetvalue(res, i, 2), 0, NULL), "version",
			 atoi(PQgetvalue(res, i, 3)), "created_at", PQgetvalue(res, i, 4), "updated_at",
			 PQgetvalue(res, i, 5));
}

static bool name_param(tn_call_t *call, wreq_t *r)
{
	const char *name = gw_req_param(call->req, "name");

	if (name == NULL || !cx_name_ok(name)) {
		gw_respond_error(call->req, 404, "not_found", "no such webhook");
		return false;
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	return true;
}

/* -- PUT -- */

static void put_committed(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	mf_info("engine", r->status == 201 ? "webhook created" : "webhook changed", MF_S("request_id", gw_req_id(r->tx.req)),
		MF_S("tenant_id", r->tx.call->tenant_id), MF_S("webhook", r->name));
	if (r->status == 201 && json_object_set_new(r->out, "secret", json_string(r->secret)) < 0) {
		gw_respond_error(r->tx.req, 500, "internal_error", "out of memory");
		return;
	}
	sodium_memzero(r->secret, sizeof(r->secret));
	gw_respond_json(r->tx.req, r->status, json_incref(r->out));
}

static void put_audited(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	mf_pg_conn_t *c = r->tx.conn;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	r->tx.conn = NULL;
	if (mf_pg_tx_end(c, true, put_committed, r) < 0)
		gw_respond_error(r->tx.req, 503, "over_capacity", "out of memory; retry");
}

static void audit(wreq_t *r, const char *action, json_t *detail, mf_pg_cb cb)
{
	char *d = json_dumps(detail, JSON_COMPACT);
	char target[80];
	const char *p[5] = { r->tx.call->tenant_id, r->tx.call->actor, action, target, d ? d : "{}" };

	snprintf(target, sizeof(target), "webhook:%s", r->name);
	json_decref(detail);
	eng_wtx_q(&r->tx, TN_AUDIT_SQL, 5, p, cb);
	free(d);
}

static void put_stored(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	char host[256] = "";

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	if (PQntuples(res) != 1) {
		eng_wtx_fail_status(&r->tx, 409, "conflict", "the webhook was changed concurrently; retry");
		return;
	}
	r->out = row_json(res, 0);
	if (r->out == NULL) {
		eng_wtx_fail_status(&r->tx, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (cx_url_host(r->url, host, sizeof(host)) < 0)
		host[0] = '\0';
	audit(r, r->status == 201 ? "webhook.create" : "webhook.update",
	      json_pack("{s:s,s:O,s:i}", "host", host, "events", json_object_get(r->out, "events"), "version",
			(int)json_integer_value(json_object_get(r->out, "version"))),
	      put_audited);
}

static void put_sealed(const char *box, int kv, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	char v[16];
	const char *p[6] = { r->name, r->url, r->events, v, box, r->tx.call->actor };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	snprintf(v, sizeof(v), "%d", kv);
	eng_wtx_q(&r->tx, "INSERT INTO webhooks (name, url, events, key_version, box, created_by) "
	     "VALUES ($1, $2, $3::text[], $4::int, $5::bytea, $6) RETURNING " ROW_COLS, 6, p, put_stored);
}

static void put_looked(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	mf_worker_t *w = gw_req_worker_data(r->tx.req);
	char name[80];

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	if (PQntuples(res) == 1) {
		const char *p[3] = { r->name, r->url, r->events };

		/* a change keeps the secret: receivers keep verifying */
		r->status = 200;
		eng_wtx_q(&r->tx, "UPDATE webhooks SET url = $2, events = $3::text[], version = version + 1, updated_at = now() "
		     "WHERE name = $1 RETURNING " ROW_COLS, 3, p, put_stored);
		return;
	}
	r->status = 201;
	if (cx_webhook_secret_new(r->secret, sizeof(r->secret)) < 0) {
		eng_wtx_fail_status(&r->tx, 500, "internal_error", "cannot create a secret");
		return;
	}
	snprintf(name, sizeof(name), "webhook:%s", r->name);
	if (eng_secret_seal(r->tx.conn, w->vault, r->tx.call->tenant_id, name, r->secret, put_sealed, r) < 0)
		eng_wtx_fail_status(&r->tx, 503, "vault_unavailable", "the vault cannot seal secrets now; retry");
}

static void put_path_set(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	const char *p[1] = { r->name };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	eng_wtx_q(&r->tx, "SELECT version FROM webhooks WHERE name = $1 FOR UPDATE", 1, p, put_looked);
}

static void put_webhook(tn_call_t *call, void *arg)
{
	static const char *const keys[] = { "url", "events", NULL };
	wreq_t *r = wreq_new(call);
	mf_worker_t *w = gw_req_worker_data(call->req);
	json_t *body, *errors = NULL;
	mf_err_t err;

	if (r == NULL || !name_param(call, r))
		return;
	if ((body = gw_req_json(call->req, &err)) == NULL) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (!json_is_object(body)) {
		json_decref(body);
		gw_respond_error(call->req, 400, "validation_failed", "the body must be a JSON object");
		return;
	}
	if (tn_only_keys(body, keys, &err, &errors) < 0) {
		json_decref(body);
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	errors = json_array();
	if (errors == NULL) {
		json_decref(body);
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	check_body(body, w && w->cx ? w->cx->cx->egress : NULL, errors);
	if (json_array_size(errors) > 0) {
		json_decref(body);
		mf_err_set(&err, 400, "validation_failed", "%s", json_string_value(json_object_get(json_array_get(errors, 0), "message")));
		gw_respond_problem_ext(call->req, &err, json_pack("{s:o}", "errors", errors));
		return;
	}
	json_decref(errors);
	r->url = strdup(json_string_value(json_object_get(body, "url")));
	r->events = tn_pg_array_literal(json_object_get(body, "events"));
	json_decref(body);
	if (r->url == NULL || r->events == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	eng_wtx_begin(&r->tx, put_path_set);
}

/* -- GET one, GET the list -- */

static void got_one(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	if (PQntuples(res) != 1) {
		gw_respond_error(r->tx.req, 404, "not_found", "no such webhook");
		return;
	}
	gw_respond_json(r->tx.req, 200, row_json(res, 0));
}

static void get_webhook(tn_call_t *call, void *arg)
{
	wreq_t *r = wreq_new(call);
	mf_worker_t *w = gw_req_worker_data(call->req);
	const char *p[2];

	if (r == NULL || !name_param(call, r))
		return;
	p[0] = call->schema;
	p[1] = r->name;
	if (mf_pg_query(w->pg, "SELECT * FROM platform.webhook_rows($1, $2, NULL, 1)", 2, p, got_one, r) < 0)
		gw_respond_error(call->req, 503, "database_unavailable", "the database is not reachable");
}

static void got_list(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	json_t *items;
	int n;

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	n = PQntuples(res);
	items = json_array();
	for (int i = 0; i < n && i < r->limit; i++)
		json_array_append_new(items, row_json(res, i));
	gw_respond_json(r->tx.req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor",
		tn_page_cursor(n > r->limit ? PQgetvalue(res, r->limit - 1, 0) : NULL)));
}

static void list_webhooks(tn_call_t *call, void *arg)
{
	wreq_t *r = wreq_new(call);
	mf_worker_t *w = gw_req_worker_data(call->req);
	char lim[16];
	const char *p[3];
	mf_err_t err;

	if (r == NULL)
		return;
	if (tn_req_page(call->req, &r->limit, r->cursor, &err) < 0) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (r->cursor[0] && !cx_name_ok(r->cursor)) {
		gw_respond_error(call->req, 400, "validation_failed", "cursor is not one this server issued");
		return;
	}
	snprintf(lim, sizeof(lim), "%d", r->limit + 1);
	p[0] = call->schema;
	p[1] = r->cursor;
	p[2] = lim;
	if (mf_pg_query(w->pg, "SELECT * FROM platform.webhook_rows($1, NULL, $2, $3::int)", 3, p, got_list, r) < 0)
		gw_respond_error(call->req, 503, "database_unavailable", "the database is not reachable");
}

/* -- DELETE -- */

static void del_committed(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	mf_info("engine", "webhook deleted", MF_S("request_id", gw_req_id(r->tx.req)),
		MF_S("tenant_id", r->tx.call->tenant_id), MF_S("webhook", r->name));
	gw_respond_raw(r->tx.req, 204, NULL, "", 0);
}

static void del_audited(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	mf_pg_conn_t *c = r->tx.conn;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	r->tx.conn = NULL;
	if (mf_pg_tx_end(c, true, del_committed, r) < 0)
		gw_respond_error(r->tx.req, 503, "over_capacity", "out of memory; retry");
}

static void del_deleted(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	if (PQntuples(res) == 0) {
		eng_wtx_fail_status(&r->tx, 404, "not_found", "no such webhook");
		return;
	}
	audit(r, "webhook.delete", json_pack("{s:i}", "version", atoi(PQgetvalue(res, 0, 0))), del_audited);
}

static void del_dequeued(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	const char *p[1] = { r->name };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	/* its deliveries and their attempts go by cascade */
	eng_wtx_q(&r->tx, "DELETE FROM webhooks WHERE name = $1 RETURNING version", 1, p, del_deleted);
}

static void del_path_set(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	const char *p[1] = { r->name };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	/* pending deliveries leave the queue in the same transaction; one a
	 * worker holds right now fails to record (its row is gone) */
	eng_wtx_q(&r->tx, "DELETE FROM platform.delivery_queue q USING deliveries d "
	     "WHERE d.webhook = $1 AND d.state = 'pending' AND q.delivery_id = d.id", 1, p, del_dequeued);
}

static void delete_webhook(tn_call_t *call, void *arg)
{
	wreq_t *r = wreq_new(call);

	if (r == NULL || !name_param(call, r))
		return;
	eng_wtx_begin(&r->tx, del_path_set);
}

/* -- GET deliveries -- */

static void got_deliveries(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	json_t *items;
	int n;

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	n = PQntuples(res);
	items = json_array();
	/* page_key, id, event_id, event_type, state, attempts, last_status,
	 * last_error, next_attempt, created_at, updated_at, attempts_log */
	for (int i = 0; i < n && i < r->limit; i++) {
		json_t *log = json_loads(PQgetvalue(res, i, 11), 0, NULL);

		json_array_append_new(items, json_pack(
			"{s:s,s:s,s:s,s:s,s:i,s:o,s:o,s:o,s:s,s:s,s:o}", "id", PQgetvalue(res, i, 1), "event_id",
			PQgetvalue(res, i, 2), "event_type", PQgetvalue(res, i, 3), "state", PQgetvalue(res, i, 4),
			"attempts", atoi(PQgetvalue(res, i, 5)), "last_status",
			PQgetisnull(res, i, 6) ? json_null() : json_integer(atoi(PQgetvalue(res, i, 6))), "last_error",
			PQgetisnull(res, i, 7) ? json_null() : json_string(PQgetvalue(res, i, 7)), "next_attempt_at",
			PQgetisnull(res, i, 8) ? json_null() : json_string(PQgetvalue(res, i, 8)), "created_at",
			PQgetvalue(res, i, 9), "updated_at", PQgetvalue(res, i, 10), "history",
			log ? log : json_array()));
	}
	gw_respond_json(r->tx.req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor",
		tn_page_cursor(n > r->limit ? PQgetvalue(res, r->limit - 1, 0) : NULL)));
}

static void deliveries_found(const PGresult *res, const mf_err_t *err, void *arg)
{
	wreq_t *r = arg;
	mf_worker_t *w = gw_req_worker_data(r->tx.req);
	char lim[16];
	const char *p[4] = { r->tx.call->schema, r->name, r->cursor, lim };

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	if (PQntuples(res) != 1) {
		gw_respond_error(r->tx.req, 404, "not_found", "no such webhook");
		return;
	}
	snprintf(lim, sizeof(lim), "%d", r->limit + 1);
	if (mf_pg_query(w->pg, "SELECT * FROM platform.delivery_rows($1, $2, $3, $4::int)", 4, p, got_deliveries, r) < 0)
		gw_respond_error(r->tx.req, 503, "database_unavailable", "the database is not reachable");
}

/* A page key of delivery_rows: "<decimal micros>:<uuid>". */
static bool page_key_ok(const char *s)
{
	const char *colon = strchr(s, ':');
	size_t digits = colon ? (size_t)(colon - s) : 0;

	if (digits == 0 || digits > 19 || !tn_uuid_ok(colon + 1))
		return false;
	for (size_t i = 0; i < digits; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static void list_deliveries(tn_call_t *call, void *arg)
{
	wreq_t *r = wreq_new(call);
	mf_worker_t *w = gw_req_worker_data(call->req);
	const char *p[2];
	mf_err_t err;

	if (r == NULL || !name_param(call, r))
		return;
	if (tn_req_page(call->req, &r->limit, r->cursor, &err) < 0) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (r->cursor[0] && !page_key_ok(r->cursor)) {
		gw_respond_error(call->req, 400, "validation_failed", "cursor is not one this server issued");
		return;
	}
	p[0] = call->schema;
	p[1] = r->name;
	if (mf_pg_query(w->pg, "SELECT name FROM platform.webhook_rows($1, $2, NULL, 1)", 2, p, deliveries_found, r) < 0)
		gw_respond_error(call->req, 503, "database_unavailable", "the database is not reachable");
}

int eng_webhook_routes(eng_t *e, struct tn *tn, gw_router_t *api)
{
	if (tn_guard_add(api, tn, "PUT", "/v1/tenants/{tenant_id}/webhooks/{name}", POL_WORKFLOWS, GW_ROUTE_JSON_BODY,
			 put_webhook, e) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/webhooks", POL_WORKFLOWS, 0, list_webhooks, e) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/webhooks/{name}", POL_WORKFLOWS, 0, get_webhook,
			 e) < 0 ||
	    tn_guard_add(api, tn, "DELETE", "/v1/tenants/{tenant_id}/webhooks/{name}", POL_WORKFLOWS, 0,
			 delete_webhook, e) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/webhooks/{name}/deliveries", POL_WORKFLOWS, 0,
			 list_deliveries, e) < 0)
		return -1;
	return 0;
}

/* ---- the delivery worker ---- */

enum dl_phase { D_LOAD, D_SEND, D_RECORD };

typedef struct dl dl_t;

struct dl {
	dl_t *next, *prev;
	eng_outbox_t *o;
	enum dl_phase phase;
	char id[37];
	char tenant[37];
	char schema[64];
	char webhook[CX_NAME_MAX + 1];
	char host[256];
	int attempt;			/* the number of this attempt */
	double started;			/* wall clock, unix seconds */
	cx_http_call_t *call;
};

struct eng_outbox {
	eng_worker_t *ew;
	mf_worker_t *w;
	const mf_config_t *cfg;
	char owner[37];
	char lease_ms[16];
	cx_http_t *http;		/* NULL: this worker cannot deliver (no vault or connectors) */
	struct event *claim_ev, *poll_ev;
	eng_listen_t *listen;
	dl_t *dls;
	int n;				/* deliveries in memory */
	unsigned long long n_delivered, n_retrying, n_failed;
	bool claiming, claim_again;
	bool closing;			/* shutting down: callbacks only free */
};

static void dl_free(dl_t *d)
{
	eng_outbox_t *o = d->o;

	if (d->call)
		cx_http_cancel(d->call);
	if (d->prev)
		d->prev->next = d->next;
	else
		o->dls = d->next;
	if (d->next)
		d->next->prev = d->prev;
	o->n--;
	free(d);
	/* room again: claim if the last claim left work behind */
	if (o->claim_again && !o->closing)
		event_active(o->claim_ev, EV_TIMEOUT, 0);
}

static dl_t *dl_new(eng_outbox_t *o, const char *id, const char *tenant, const char *schema)
{
	dl_t *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->o = o;
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->tenant, sizeof(d->tenant), "%s", tenant);
	snprintf(d->schema, sizeof(d->schema), "%s", schema);
	d->next = o->dls;
	if (o->dls)
		o->dls->prev = d;
	o->dls = d;
	o->n++;
	return d;
}

static void recorded(const PGresult *res, const mf_err_t *err, void *arg)
{
	dl_t *d = arg;

	if (err && !d->o->closing)
		mf_warn("engine", "a webhook attempt could not be recorded; it will be made again",
			MF_S("tenant_id", d->tenant), MF_S("delivery_id", d->id), MF_S("error", err->detail));
	else if (res && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		mf_info("engine", "a webhook attempt was not recorded: the delivery's lease had passed",
			MF_S("tenant_id", d->tenant), MF_S("delivery_id", d->id));
	dl_free(d);
}

/* Records the attempt's outcome: status (0 = no response), error (NULL
 * or a short text safe to show the tenant), the receiver's Retry-After
 * (-1 = none). */
static void record(dl_t *d, int status, const char *error, long long retry_after_ms)
{
	eng_outbox_t *o = d->o;
	bool delivered = status >= 200 && status < 300 && error == NULL;
	bool last = d->attempt >= o->cfg->webhook_max_attempts;
	long long next = 0;
	char attempt[16], st[16], dur[24], started[64], next_ms[24];
	const char *state = delivered ? "delivered" : last ? "failed" : "pending";
	double elapsed = eng_wall_now() - d->started;
	const char *p[10] = { d->schema, d->id, o->owner, attempt, status ? st : NULL, error, dur, started, state,
			      next_ms };

	if (!delivered && !last)
		next = eng_webhook_backoff_ms(d->attempt, o->cfg->webhook_retry_base_ms, retry_after_ms,
					      randombytes_random());
	snprintf(attempt, sizeof(attempt), "%d", d->attempt);
	snprintf(st, sizeof(st), "%d", status);
	snprintf(dur, sizeof(dur), "%d", elapsed < 0 ? 0 : (int)(elapsed * 1000.0));
	eng_iso_time(d->started, started);
	snprintf(next_ms, sizeof(next_ms), "%lld", next);
	if (delivered)
		o->n_delivered++;
	else if (last)
		o->n_failed++;
	else
		o->n_retrying++;
	if (delivered)
		mf_info("engine", "webhook delivered", MF_S("tenant_id", d->tenant), MF_S("webhook", d->webhook),
			MF_S("delivery_id", d->id), MF_I("attempt", d->attempt), MF_I("status", status));
	else
		mf_info("engine", last ? "webhook delivery failed for good" : "webhook delivery failed; retrying",
			MF_S("tenant_id", d->tenant), MF_S("webhook", d->webhook), MF_S("delivery_id", d->id),
			MF_S("host", d->host), MF_I("attempt", d->attempt), MF_I("status", status),
			MF_S("error", error ? error : ""), MF_I("retry_in_ms", next));
	d->phase = D_RECORD;
	if (mf_pg_query(o->w->pg,
			"SELECT platform.webhook_done($1, $2::uuid, $3::uuid, $4::int, $5::int, $6, $7::int, "
			"$8::timestamptz, $9, $10::int)", 10, p, recorded, d) < 0)
		dl_free(d);
}

static void sent(const cx_http_response_t *res, void *arg)
{
	dl_t *d = arg;
	char error[ERROR_MAX + 64];
	const char *e = NULL;
	long long ra = -1;

	d->call = NULL;
	if (d->o->closing) {
		dl_free(d);
		return;
	}
	if (res->error && !(res->status >= 200 && res->status < 300 && strcmp(res->error, "too_large") == 0)) {
		/* the answer arrived whole or not at all, except a 2xx whose body
		 * we do not read to its end: that is a delivery */
		snprintf(error, sizeof(error), "%s: %.*s", res->error, ERROR_MAX, res->detail);
		e = error;
	} else if (res->status < 200 || res->status >= 300) {
		snprintf(error, sizeof(error), "the receiver answered %d", res->status);
		e = error;
		ra = eng_webhook_retry_after_ms(cx_http_res_header(res, "Retry-After"), time(NULL));
	}
	record(d, res->status, e, ra);
}

/* The tenant's effective egress policy from the chain in the row
 * (own 12, parent 13, grandparent 14, depth 15): allow_hosts (new
 * reference) and allow_private. */
static json_t *egress_policy(const PGresult *res, bool *allow_private)
{
	int depth = atoi(PQgetvalue(res, 0, 15));
	json_t *eff = NULL, *hosts;

	for (int i = 0; i <= depth; i++) {
		int col = i == depth ? 12 : (depth - i == 2 ? 14 : 13);
		json_t *doc = PQgetisnull(res, 0, col) ? NULL : json_loads(PQgetvalue(res, 0, col), 0, NULL);
		json_t *next = pol_policy_effective(eff, doc);

		json_decref(doc);
		json_decref(eff);
		if ((eff = next) == NULL)
			return NULL;
	}
	hosts = json_incref(json_object_get(json_object_get(eff, "egress"), "allow_hosts"));
	*allow_private = json_is_true(json_object_get(json_object_get(eff, "egress"), "allow_private"));
	json_decref(eff);
	return hosts;
}

/* The body the receiver gets (malloc'd JSON text), NULL when out of memory. */
static char *payload(const dl_t *d, const PGresult *res)
{
	json_t *data = json_loads(PQgetvalue(res, 0, 10), JSON_DECODE_ANY, NULL);
	json_t *body = json_pack("{s:s,s:s,s:o,s:s,s:s}", "id", PQgetvalue(res, 0, 8), "type", PQgetvalue(res, 0, 9),
				 "data", data ? data : json_null(), "tenant_id", d->tenant, "occurred_at",
				 PQgetvalue(res, 0, 11));
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	json_decref(body);
	return text;
}

static void dropped(const PGresult *res, const mf_err_t *err, void *arg)
{
	dl_free(arg);
}

/* webhook_load columns: webhook 0, url 1, key_version 2, box 3, master_kid
 * 4, wrapped 5, attempts 6, state 7, event_id 8, event_type 9, data 10,
 * event_at 11, pol_own 12, pol_parent 13, pol_grand 14, depth 15. */
static void loaded(const PGresult *res, const mf_err_t *err, void *arg)
{
	dl_t *d = arg;
	eng_outbox_t *o = d->o;
	char secret[CX_WEBHOOK_SECRET_SIZE], name[80], sig[CX_WEBHOOK_SIG_SIZE], ts[24], ua[64];
	const char *url;
	json_t *hosts;
	bool allow_private = false;
	char *body;
	mf_err_t e;
	long long now = (long long)time(NULL);

	if (o->closing || err) {
		if (err && !o->closing)
			mf_debug("engine", "cannot load a webhook delivery", MF_S("delivery_id", d->id),
				 MF_S("error", err->detail));
		dl_free(d);	/* its lease expires and it is claimed again */
		return;
	}
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 7), "pending") != 0) {
		/* its subscription or event is gone, or it is done already */
		const char *p[2] = { d->id, o->owner };

		if (mf_pg_query(o->w->pg, "SELECT platform.webhook_drop($1::uuid, $2::uuid)", 2, p, dropped, d) < 0)
			dl_free(d);
		return;
	}
	snprintf(d->webhook, sizeof(d->webhook), "%s", PQgetvalue(res, 0, 0));
	d->attempt = atoi(PQgetvalue(res, 0, 6)) + 1;
	d->started = eng_wall_now();
	url = PQgetvalue(res, 0, 1);
	if (cx_url_host(url, d->host, sizeof(d->host)) < 0) {
		record(d, 0, "bad_url: the webhook's URL is not valid", -1);
		return;
	}
	hosts = egress_policy(res, &allow_private);
	if (hosts == NULL || !cx_host_allowed(hosts, d->host)) {
		char msg[ERROR_MAX + 128];

		json_decref(hosts);
		snprintf(msg, sizeof(msg), "egress_refused: host %.180s is not in the tenant's egress.allow_hosts policy",
			 d->host);
		record(d, 0, msg, -1);
		return;
	}
	json_decref(hosts);
	snprintf(name, sizeof(name), "webhook:%s", d->webhook);
	if (eng_secret_open(o->w->vault, d->tenant, name, atoi(PQgetvalue(res, 0, 2)), PQgetvalue(res, 0, 4),
			    PQgetvalue(res, 0, 5), PQgetvalue(res, 0, 3), secret, &e) < 0) {
		record(d, 0, "secret_unreadable: the webhook's signing secret cannot be opened", -1);
		return;
	}
	body = payload(d, res);
	if (body == NULL || cx_webhook_sign(secret, d->id, now, body, strlen(body), sig, sizeof(sig), &e) < 0) {
		sodium_memzero(secret, sizeof(secret));
		free(body);
		dl_free(d);	/* out of memory: the lease expires, it is tried again */
		return;
	}
	sodium_memzero(secret, sizeof(secret));
	snprintf(ts, sizeof(ts), "%lld", now);
	snprintf(ua, sizeof(ua), "mspflow-webhooks/%s", MSPFLOW_VERSION);
	{
		cx_http_header_t h[] = {
			{ "Content-Type", "application/json" }, { "User-Agent", ua }, { "webhook-id", d->id },
			{ "webhook-timestamp", ts }, { "webhook-signature", sig },
		};
		cx_http_request_t req = {
			.method = "POST", .url = url, .headers = h, .nheaders = (int)(sizeof(h) / sizeof(h[0])),
			.body = body, .body_len = strlen(body), .timeout_ms = ENG_WEBHOOK_TIMEOUT_MS,
			.max_response_bytes = RESPONSE_MAX, .max_redirects = 0, .allow_private = allow_private,
		};

		d->phase = D_SEND;
		d->call = cx_http_send(o->http, &req, sent, d, &e);
	}
	free(body);
	if (d->call == NULL) {
		char msg[ERROR_MAX + 64];

		snprintf(msg, sizeof(msg), "%s: %.*s", e.code[0] ? e.code : "transport", ERROR_MAX, e.detail);
		record(d, 0, msg, -1);
	}
}

static void load(dl_t *d)
{
	const char *p[3] = { d->tenant, d->schema, d->id };

	d->phase = D_LOAD;
	if (mf_pg_query(d->o->w->pg, "SELECT * FROM platform.webhook_load($1::uuid, $2, $3::uuid)", 3, p, loaded, d) < 0)
		dl_free(d);
}

static bool held(const eng_outbox_t *o, const char *id)
{
	for (const dl_t *d = o->dls; d; d = d->next)
		if (strcmp(d->id, id) == 0)
			return true;
	return false;
}

static void claimed(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_outbox_t *o = arg;
	int n = err ? 0 : PQntuples(res);

	o->claiming = false;
	if (o->closing)
		return;
	if (err) {
		mf_debug("engine", "webhook claim failed", MF_S("error", err->detail));
		return;
	}
	o->claim_again = n >= ENG_WEBHOOK_BATCH;
	for (int i = 0; i < n; i++) {
		dl_t *d;

		/* our own lease expired and we took it again: still in hand */
		if (held(o, PQgetvalue(res, i, 0)))
			continue;
		d = dl_new(o, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
		if (d)
			load(d);
	}
	if (o->claim_again && o->n + ENG_WEBHOOK_BATCH <= ENG_WEBHOOK_INFLIGHT)
		event_active(o->claim_ev, EV_TIMEOUT, 0);
}

static void on_claim(evutil_socket_t fd, short what, void *arg)
{
	eng_outbox_t *o = arg;
	char batch[16];
	const char *p[3] = { o->owner, o->lease_ms, batch };
	int room = ENG_WEBHOOK_INFLIGHT - o->n;

	if (o->closing || o->http == NULL)
		return;
	if (o->claiming) {
		o->claim_again = true;
		return;
	}
	if (room <= 0 || !mf_pg_pool_up(o->w->pg))
		return;
	snprintf(batch, sizeof(batch), "%d", room < ENG_WEBHOOK_BATCH ? room : ENG_WEBHOOK_BATCH);
	o->claiming = true;
	if (mf_pg_query(o->w->pg, "SELECT delivery_id, tenant_id, schema_name FROM platform.webhook_claim($1::uuid, $2::int, $3::int)",
			3, p, claimed, o) < 0)
		o->claiming = false;
}

static void on_notify(void *arg)
{
	eng_outbox_t *o = arg;

	if (!o->closing)
		event_active(o->claim_ev, EV_TIMEOUT, 0);
}

eng_outbox_t *eng_outbox_new(eng_worker_t *ew, mf_err_t *err)
{
	eng_outbox_t *o = calloc(1, sizeof(*o));
	const mf_config_t *cfg = ew->e->cfg;
	struct timeval poll = { cfg->engine_poll_ms / 1000, (cfg->engine_poll_ms % 1000) * 1000 };
	struct event_base *base = ew->w->base;

	if (o == NULL || ew->w->pg == NULL) {
		free(o);
		mf_err_set(err, 500, "internal_error", "the outbox needs a database pool");
		return NULL;
	}
	o->ew = ew;
	o->w = ew->w;
	o->cfg = cfg;
	tn_uuid_new(o->owner);
	snprintf(o->lease_ms, sizeof(o->lease_ms), "%lld", (long long)ENG_WEBHOOK_LEASE_MS);
	o->claim_ev = event_new(base, -1, 0, on_claim, o);
	o->poll_ev = event_new(base, -1, EV_PERSIST, on_claim, o);
	if (o->claim_ev == NULL || o->poll_ev == NULL || event_add(o->poll_ev, &poll) < 0) {
		eng_outbox_free(o);
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	if (ew->w->cx && ew->w->vault) {
		/* its own pool: webhook receivers never take connections from
		 * connector calls, and its limits are the webhooks' own */
		cx_http_options_t ho = {
			.max_connections = cfg->connector_max_connections,
			.max_host_connections = cfg->connector_max_host_connections,
			.max_calls = ENG_WEBHOOK_INFLIGHT,
			.max_response_bytes = RESPONSE_MAX,
			.timeout_ms = ENG_WEBHOOK_TIMEOUT_MS,
			.connect_timeout_ms = cfg->connector_connect_timeout_ms,
			.egress = ew->w->cx->cx->egress,
		};

		o->http = cx_http_new(base, &ho, err);
		if (o->http == NULL) {
			eng_outbox_free(o);
			return NULL;
		}
	} else {
		/* deliveries wait for a worker that can make them */
		mf_warn("engine", "this worker cannot deliver webhooks (no vault or connector state)",
			MF_I("worker", ew->w->index));
	}
	o->listen = eng_listen_new(base, mf_config_direct_url(cfg), "mspflow_webhooks", on_notify, o);
	return o;
}

void eng_outbox_close(eng_outbox_t *o)
{
	if (o == NULL)
		return;
	o->closing = true;
	o->claim_again = false;
	/* deliveries on the wire are abandoned: their leases expire and they
	 * are sent again, with the same webhook-id */
	for (dl_t *d = o->dls, *next; d; d = next) {
		next = d->next;
		if (d->phase == D_SEND)
			dl_free(d);
	}
}

void eng_outbox_free(eng_outbox_t *o)
{
	if (o == NULL)
		return;
	eng_outbox_close(o);
	/* the pool is gone: no callback of ours is pending any more */
	while (o->dls)
		dl_free(o->dls);
	eng_listen_free(o->listen);
	cx_http_free(o->http);
	if (o->claim_ev)
		event_free(o->claim_ev);
	if (o->poll_ev)
		event_free(o->poll_ev);
	free(o);
}

void eng_outbox_stats(const eng_outbox_t *o, eng_stats_t *out)
{
	out->wh_delivered += o->n_delivered;
	out->wh_retrying += o->n_retrying;
	out->wh_failed += o->n_failed;
	out->wh_in_flight += o->n;
}
