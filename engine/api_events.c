/*
 * api_events.c - POST /v1/tenants/{t}/events {"type", "data"} (CONTRACT 6):
 * 202 {"event_id", "run_ids"} with a run of every workflow whose trigger
 * matches, all in one transaction (platform.eng_event).
 *
 * Idempotency-Key (1 to 255 printable ASCII characters): the first event
 * stored under a key is the answer to every later request with that key
 * and the same body (the BLAKE2b-256 of the raw body is stored with it);
 * another body under a used key is 422 idempotency_key_reused.  Requests
 * racing with one key meet at the events table's unique index: one
 * inserts, the others wait for it and then read its outcome.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/api.h"
#include "engine/definition.h"
#include "tenants/tn.h"

#define KEY_MAX 255

static const char event_sql[] =
	"SELECT platform.eng_event($1::uuid, $2, $3, $4::jsonb, $5::jsonb)::text";

/* text[0] type, [1] request hash (hex), [2] idempotency key or NULL,
 * [3] the event and [4] its runs, as platform.eng_event takes them. */

static void accepted(eng_req_t *r, const PGresult *res)
{
	json_t *a = eng_json_col(res, 0, 0);
	bool replay = json_is_true(json_object_get(a, "replay"));
	const char *hash = json_string_value(json_object_get(a, "request_hash"));
	/* decided before a (and the hash it holds) goes */
	bool same = hash && strcmp(hash, r->text[1]) == 0;
	json_t *out;

	if (a == NULL) {
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	out = json_pack("{s:O,s:O}", "event_id", json_object_get(a, "event_id"), "run_ids",
			json_object_get(a, "run_ids"));
	json_decref(a);
	if (!replay) {
		r->status = 202;
		r->out = out;
		if (r->evented)
			r->evented(r, NULL);
		else
			eng_commit(r);
		return;
	}
	/* nothing was written: answer the first outcome, or refuse the key */
	if (!same) {
		json_decref(out);
		eng_fail_code(r, 422, "idempotency_key_reused",
			      "this Idempotency-Key was used with another request body");
		return;
	}
	if (r->evented) {
		r->replay = true;
		r->out = out;
		r->evented(r, NULL);
		return;
	}
	eng_finish(r, 202, out);
}

/* text[3] the event, [4] the runs it starts (JSON) */
static void insert_event(eng_req_t *r, const PGresult *res)
{
	const char *p[5] = { r->call->tenant_id, r->call->schema, r->call->actor, r->text[3], r->text[4] };

	(void)res;
	eng_q(r, event_sql, 5, p, accepted);
}

static void matched(eng_req_t *r, const PGresult *res)
{
	json_t *data = json_object_get(r->body, "data"), *tenant, *runs, *event;
	char *runs_text = NULL, *event_text = NULL, source[96];
	int nruns;

	snprintf(source, sizeof(source), "api:%s", r->call->actor);
	tenant = json_pack("{s:s}", "id", r->call->tenant_id);
	runs = tenant ? eng_runs_for_event(res, r->id, r->text[0], data, tenant) : NULL;
	/* the runs continue the request's trace (docs/telemetry.md) */
	if (runs)
		eng_runs_set_trace(runs, gw_req_trace(r->call->req));
	event = json_pack("{s:s,s:s,s:O,s:s,s:s*,s:s}", "id", r->id, "type", r->text[0], "data", data, "source",
			  source, "idempotency_key", r->text[2], "request_hash", r->text[1]);
	if (runs && event) {
		runs_text = json_dumps(runs, JSON_COMPACT);
		event_text = json_dumps(event, JSON_COMPACT);
	}
	nruns = runs ? (int)json_array_size(runs) : 0;
	json_decref(tenant);
	json_decref(runs);
	json_decref(event);
	if (runs_text == NULL || event_text == NULL) {
		free(runs_text);
		free(event_text);
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	/* kept for the statement after the admission */
	if (eng_req_text(r, 3, event_text) < 0 || eng_req_text(r, 4, runs_text) < 0) {
		free(runs_text);
		free(event_text);
		eng_fail_code(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	free(runs_text);
	free(event_text);
	eng_admit(r, nruns, r->text[2], insert_event);
}

static void event_begun(eng_req_t *r, const PGresult *res)
{
	const char *p[1] = { r->text[0] };

	(void)res;
	eng_q(r, eng_triggers_sql, 1, p, matched);
}

void eng_event_post(eng_req_t *r, eng_step_fn evented)
{
	r->evented = evented;
	event_begun(r, NULL);
}

void eng_event_post_matched(eng_req_t *r, const PGresult *triggers, eng_step_fn evented)
{
	r->evented = evented;
	matched(r, triggers);
}

bool eng_idempotency_key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n < 1 || n > KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (k[i] < 0x20 || k[i] > 0x7e)
			return false;
	return true;
}

void eng_post_event(tn_call_t *call, void *arg)
{
	static const char *const keys[] = { "type", "data", NULL };
	eng_req_t *r = eng_req_new(call, arg);
	const char *key = gw_req_header(call->req, "Idempotency-Key"), *type;
	unsigned char h[crypto_generichash_BYTES];
	char hex[2 * crypto_generichash_BYTES + 1];
	json_t *data;
	const void *raw;
	size_t len = 0;

	if (r == NULL)
		return;
	if (key && !eng_idempotency_key_ok(key)) {
		eng_invalid(r, "/headers/Idempotency-Key", "must be 1 to 255 printable ASCII characters");
		return;
	}
	if (!eng_req_body(r, keys))
		return;
	type = json_string_value(json_object_get(r->body, "type"));
	if (!eng_def_event_ok(type)) {
		eng_invalid(r, "/type", "must be an event name: two or more dot-separated parts of a lower-case "
				       "letter then a-z, 0-9 and _, at most 128 characters");
		return;
	}
	data = json_object_get(r->body, "data");
	if (data == NULL) {
		if (json_object_set_new(r->body, "data", json_object()) < 0) {
			gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
			return;
		}
	} else if (!json_is_object(data)) {
		eng_invalid(r, "/data", "must be an object");
		return;
	} else if (json_dumpb(data, NULL, 0, JSON_COMPACT) > ENG_API_MAX_DATA) {
		eng_too_large(r, "data");
		return;
	}
	/* the body exactly as sent: a replay is the same bytes */
	raw = gw_req_body(call->req, &len);
	crypto_generichash(h, sizeof(h), raw, len, NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	tn_uuid_new(r->id);
	if (eng_req_text(r, 0, type) < 0 || eng_req_text(r, 1, hex) < 0 || eng_req_text(r, 2, key) < 0) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	eng_tx(r, event_begun);
}
