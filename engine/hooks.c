/*
 * hooks.c - inbound webhooks (CONTRACT 6) and the sealing of webhook
 * secrets shared with outbox.c:
 *
 *   POST   /v1/tenants/{tenant_id}/hooks        201 {id, url, secret, event_type}; the secret only here
 *   GET    /v1/tenants/{tenant_id}/hooks        the tenant's hooks (never a secret)
 *   DELETE /v1/tenants/{tenant_id}/hooks/{id}   204
 *   POST   /hooks/{id}                          no token: Standard Webhooks signature instead
 *
 * The management routes are behind the access guard (permission
 * workflows: a hook decides which events start runs, an operator's job
 * like writing definitions).
 * POST /hooks/{id} is refused as cheaply as possible: an id that is not a
 * UUID is a 404 without a query, an unknown one (or one of a suspended or
 * deleted tenant) a 404 after one indexed lookup and before any
 * cryptography.  Then the secret is opened with the tenant's data key,
 * the signature checked on the raw body (5 minutes tolerance), the body
 * parsed as the event's data, the runs it starts matched (start.c) and
 * everything stored by platform.eng_event in one transaction.  The
 * event's idempotency key "hook:<id>:<webhook-id>" makes a redelivered
 * message answer the first event (200) without a second one, atomically.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "connectors/vault_int.h"
#include "core/log.h"
#include "core/worker.h"
#include "engine/definition.h"
#include "engine/hooks_int.h"
#include "tenants/tn.h"

/* ---- secrets ---- */

enum seal_step { SL_LOCKED, SL_KEY, SL_SEALING_KID, SL_KEY_CREATED };

struct eng_seal {
	mf_pg_conn_t *conn;
	cx_vault_worker_t *vw;
	char tenant[37];
	char name[96];
	char secret[CX_WEBHOOK_SECRET_SIZE];
	unsigned char dek[CX_DEK_BYTES];
	enum seal_step step;
	eng_seal_cb cb;
	void *arg;
};

static void seal_end(eng_seal_t *s, const char *box, int kv, const mf_err_t *err)
{
	eng_seal_cb cb = s->cb;
	void *arg = s->arg;

	sodium_memzero(s, sizeof(*s));
	free(s);
	cb(box, kv, err, arg);
}

static void seal_fail(eng_seal_t *s, int status, const char *code, const char *detail)
{
	mf_err_t e;

	mf_err_set(&e, status, code, "%s", detail);
	seal_end(s, NULL, 0, &e);
}

static void seal_advance(const PGresult *res, const mf_err_t *err, void *arg);

static void seal_q(eng_seal_t *s, enum seal_step next, const char *sql, int n, const char *const *p)
{
	s->step = next;
	if (mf_pg_conn_query(s->conn, sql, n, p, seal_advance, s) < 0)
		seal_fail(s, 503, "over_capacity", "out of memory; retry");
}

static const char seal_key_sql[] =
	"SELECT version, master_kid, wrapped FROM platform.tenant_keys WHERE tenant_id = $1::uuid "
	"ORDER BY version DESC LIMIT 1";

static void seal_with(eng_seal_t *s, int kv)
{
	size_t len = strlen(s->secret);
	unsigned char box[CX_WEBHOOK_SECRET_SIZE + CX_SEAL_OVERHEAD];
	char *text;

	if (cx_vault_seal(s->dek, s->tenant, s->name, 1, kv, (const unsigned char *)s->secret, len, box) < 0 ||
	    (text = cx_bytea_encode(box, len + CX_SEAL_OVERHEAD)) == NULL) {
		seal_fail(s, 503, "over_capacity", "out of memory; retry");
		return;
	}
	seal_end(s, text, kv, NULL);
	free(text);
}

static void seal_advance(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_seal_t *s = arg;

	if (err) {
		seal_end(s, NULL, 0, err);
		return;
	}
	switch (s->step) {
	case SL_LOCKED:
	case SL_KEY_CREATED: {
		const char *p[1] = { s->tenant };

		if (s->step == SL_KEY_CREATED && PQntuples(res) == 1) {
			cx_dek_put(s->vw, s->tenant, 1, s->dek);
			seal_with(s, 1);
			return;
		}
		/* first look, or a concurrent first secret created the key */
		seal_q(s, SL_KEY, seal_key_sql, 1, p);
		return;
	}
	case SL_KEY: {
		enum cx_dek_why why;
		int kv;

		if (PQntuples(res) == 0) {
			seal_q(s, SL_SEALING_KID, "SELECT coalesce(sealing_kid, '') FROM platform.vault_master FOR SHARE",
			       0, NULL);
			return;
		}
		kv = atoi(PQgetvalue(res, 0, 0));
		why = cx_dek_get(s->vw, s->tenant, kv, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), s->dek);
		if (why != CX_DEK_OK) {
			mf_error("engine", "the tenant's data key does not open", MF_S("tenant_id", s->tenant),
				 MF_I("key_version", kv), MF_S("reason", cx_dek_why_name(why)));
			seal_fail(s, 409, "vault_key_unreadable",
				  "this tenant's data key cannot be opened with the master keys of this instance");
			return;
		}
		seal_with(s, kv);
		return;
	}
	case SL_SEALING_KID: {
		const char *kid = PQgetvalue(res, 0, 0);
		mf_master_ring_t *ring = mf_master_get(s->vw->v->master);
		unsigned char wrapped[CX_WRAPPED_BYTES];
		char outkid[MF_MASTER_KID_HEX + 1], *wtext = NULL;
		int i = 0;

		/* the data key is wrapped by the key vault_master names (a
		 * master rotation in progress), else the ring's first */
		if (kid[0]) {
			i = mf_master_ring_find(ring, kid);
			if (i < 0) {
				mf_master_ring_unref(ring);
				ring = mf_master_refresh(s->vw->v->master, kid, true);
				i = mf_master_ring_find(ring, kid);
			}
		}
		if (i < 0) {
			mf_master_ring_unref(ring);
			seal_fail(s, 503, "vault_unavailable",
				  "this instance does not hold the current master key; retry on an updated instance");
			return;
		}
		randombytes_buf(s->dek, CX_DEK_BYTES);
		if (cx_vault_dek_wrap(ring, i, s->tenant, 1, s->dek, wrapped, outkid) < 0 ||
		    (wtext = cx_bytea_encode(wrapped, sizeof(wrapped))) == NULL) {
			mf_master_ring_unref(ring);
			seal_fail(s, 500, "internal_error", "cannot create a data key");
			return;
		}
		mf_master_ring_unref(ring);
		{
			const char *p[3] = { s->tenant, outkid, wtext };

			seal_q(s, SL_KEY_CREATED,
			       "INSERT INTO platform.tenant_keys (tenant_id, version, master_kid, wrapped) "
			       "VALUES ($1::uuid, 1, $2, $3::bytea) ON CONFLICT DO NOTHING RETURNING version", 3, p);
		}
		free(wtext);
		return;
	}
	}
}

int eng_secret_seal(mf_pg_conn_t *conn, cx_vault_worker_t *vw, const char *tenant_id, const char *name,
		    const char *secret, eng_seal_cb cb, void *arg)
{
	eng_seal_t *s;
	const char *p[1] = { tenant_id };

	if (vw == NULL || strlen(secret) >= CX_WEBHOOK_SECRET_SIZE || strlen(name) >= sizeof(s->name))
		return -1;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -1;
	s->conn = conn;
	s->vw = vw;
	s->cb = cb;
	s->arg = arg;
	snprintf(s->tenant, sizeof(s->tenant), "%s", tenant_id);
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->secret, sizeof(s->secret), "%s", secret);
	s->step = SL_LOCKED;
	/* shared: writers of one tenant go together, a data-key rotation
	 * (connectors/vault_api.c) waits for them */
	if (mf_pg_conn_query(conn, "SELECT pg_advisory_xact_lock_shared(" CX_VAULT_LOCK_CLASS ", hashtext($1))", 1, p,
			     seal_advance, s) < 0) {
		sodium_memzero(s, sizeof(*s));
		free(s);
		return -1;
	}
	return 0;
}

int eng_secret_open(cx_vault_worker_t *vw, const char *tenant_id, const char *name, int key_version,
		    const char *kid, const char *wrapped, const char *box_text, char out[CX_WEBHOOK_SECRET_SIZE],
		    mf_err_t *err)
{
	unsigned char dek[CX_DEK_BYTES], *box = NULL;
	size_t blen = 0, plen = 0;
	enum cx_dek_why why = vw ? cx_dek_get(vw, tenant_id, key_version, kid, wrapped, dek) : CX_DEK_MISSING;
	int rc = -1;

	out[0] = '\0';
	if (why == CX_DEK_OK && (box = cx_bytea_decode(box_text, &blen)) != NULL && blen >= CX_SEAL_OVERHEAD &&
	    blen - CX_SEAL_OVERHEAD < CX_WEBHOOK_SECRET_SIZE &&
	    cx_vault_unseal(dek, tenant_id, name, 1, key_version, box, blen, (unsigned char *)out, &plen) == 0) {
		out[plen] = '\0';
		rc = 0;
	}
	sodium_memzero(dek, sizeof(dek));
	free(box);
	if (rc < 0) {
		mf_error("engine", "a webhook secret does not open", MF_S("tenant_id", tenant_id), MF_S("name", name),
			 MF_S("reason", why != CX_DEK_OK ? cx_dek_why_name(why) : "box_does_not_open"));
		mf_err_set(err, 409, "secret_unreadable", "the webhook's secret cannot be opened");
	}
	return rc;
}

/* ---- the management routes ---- */

typedef struct hreq {
	eng_wtx_t tx;			/* first: callbacks get the state as arg */
	char id[37];
	char event_type[ENG_EVENT_MAX + 1];
	char secret[CX_WEBHOOK_SECRET_SIZE];
	int limit;
	/* inbound */
	char tenant[37];
	char schema[64];
	char idem[CX_WEBHOOK_ID_MAX + 48];
	char event_id[37];
	json_t *data;
} hreq_t;

static void hreq_free(void *p)
{
	hreq_t *r = p;

	json_decref(r->data);
	sodium_memzero(r->secret, sizeof(r->secret));
	free(r);
}

static hreq_t *hreq_new(tn_call_t *call)
{
	hreq_t *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return NULL;
	}
	r->tx.call = call;
	r->tx.req = call->req;
	call->data = r;
	call->data_free = hreq_free;
	return r;
}

static void rolled_back(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_wtx_t *t = arg;

	gw_respond_problem(t->req, &t->err);
}

void eng_wtx_fail(eng_wtx_t *t, const mf_err_t *e)
{
	if (e != &t->err)
		t->err = *e;
	/* a tenant deleted while we worked: its schema is gone */
	if (strcmp(t->err.sqlstate, "42P01") == 0 || strcmp(t->err.sqlstate, "3F000") == 0)
		mf_err_set(&t->err, 404, "not_found", "no such tenant");
	if (t->conn) {
		mf_pg_conn_t *c = t->conn;

		t->conn = NULL;
		if (mf_pg_tx_end(c, false, rolled_back, t) == 0)
			return;
	}
	gw_respond_problem(t->req, &t->err);
}

void eng_wtx_fail_status(eng_wtx_t *t, int status, const char *code, const char *detail)
{
	mf_err_t e;

	mf_err_set(&e, status, code, "%s", detail);
	eng_wtx_fail(t, &e);
}

void eng_wtx_q(eng_wtx_t *t, const char *sql, int n, const char *const *p, mf_pg_cb cb)
{
	if (mf_pg_conn_query(t->conn, sql, n, p, cb, t) < 0)
		eng_wtx_fail_status(t, 503, "over_capacity", "out of memory; retry");
}

static mf_worker_t *worker_of(gw_req_t *req)
{
	return gw_req_worker_data(req);
}

static void begun(mf_pg_conn_t *conn, const mf_err_t *err, void *arg)
{
	eng_wtx_t *t = arg;
	const char *p[1] = { t->call->schema };

	if (conn == NULL) {
		gw_respond_problem(t->req, err);
		return;
	}
	t->conn = conn;
	eng_wtx_q(t, ENG_SEARCH_PATH_SQL, 1, p, t->next);
}

void eng_wtx_begin(eng_wtx_t *t, mf_pg_cb next)
{
	mf_worker_t *w = worker_of(t->req);

	t->next = next;
	if (w == NULL || w->pg == NULL || mf_pg_tx_begin(w->pg, begun, t) < 0)
		gw_respond_error(t->req, 503, "database_unavailable", "the database is not reachable");
}

static void committed_created(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	char url[64];

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	mf_info("engine", "inbound hook created", MF_S("request_id", gw_req_id(r->tx.req)),
		MF_S("tenant_id", r->tx.call->tenant_id), MF_S("hook_id", r->id), MF_S("event_type", r->event_type));
	snprintf(url, sizeof(url), "/hooks/%s", r->id);
	gw_respond_json(r->tx.req, 201, json_pack("{s:s,s:s,s:s,s:s}", "id", r->id, "url", url, "secret", r->secret,
					       "event_type", r->event_type));
	sodium_memzero(r->secret, sizeof(r->secret));
}

static void committed_deleted(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;

	if (err) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	mf_info("engine", "inbound hook deleted", MF_S("request_id", gw_req_id(r->tx.req)),
		MF_S("tenant_id", r->tx.call->tenant_id), MF_S("hook_id", r->id));
	gw_respond_raw(r->tx.req, 204, NULL, "", 0);
}

static void audited(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	mf_pg_conn_t *c = r->tx.conn;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	r->tx.conn = NULL;
	if (mf_pg_tx_end(c, true, r->secret[0] ? committed_created : committed_deleted, r) < 0)
		gw_respond_error(r->tx.req, 503, "over_capacity", "out of memory; retry");
}

static void audit(hreq_t *r, const char *action, json_t *detail)
{
	char *d = json_dumps(detail, JSON_COMPACT);
	char target[48];
	const char *p[5] = { r->tx.call->tenant_id, r->tx.call->actor, action, target, d ? d : "{}" };

	snprintf(target, sizeof(target), "hook:%s", r->id);
	json_decref(detail);
	eng_wtx_q(&r->tx, TN_AUDIT_SQL, 5, p, audited);
	free(d);
}

static void hook_registered(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	audit(r, "hook.create", json_pack("{s:s}", "event_type", r->event_type));
}

static void hook_stored(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	const char *p[3] = { r->id, r->tx.call->tenant_id, r->tx.call->schema };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	eng_wtx_q(&r->tx, "INSERT INTO platform.hooks (id, tenant_id, schema_name) VALUES ($1::uuid, $2::uuid, $3)", 3, p,
	  hook_registered);
}

static void hook_sealed(const char *box, int kv, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	char v[16];
	const char *p[5] = { r->id, r->event_type, v, box, r->tx.call->actor };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	snprintf(v, sizeof(v), "%d", kv);
	eng_wtx_q(&r->tx, "INSERT INTO hooks (id, event_type, key_version, box, created_by) VALUES ($1::uuid, $2, $3::int, $4::bytea, $5)",
	  5, p, hook_stored);
}

static void create_path_set(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	mf_worker_t *w = worker_of(r->tx.req);
	char name[48];

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	snprintf(name, sizeof(name), "hook:%s", r->id);
	if (eng_secret_seal(r->tx.conn, w->vault, r->tx.call->tenant_id, name, r->secret, hook_sealed, r) < 0)
		eng_wtx_fail_status(&r->tx, 503, "vault_unavailable", "the vault cannot seal secrets now; retry");
}

static void create_hook(tn_call_t *call, void *arg)
{
	static const char *const keys[] = { "event_type", NULL };
	hreq_t *r = hreq_new(call);
	json_t *body, *errors = NULL;
	const char *type;
	mf_err_t err;

	if (r == NULL)
		return;
	if ((body = gw_req_json(call->req, &err)) == NULL) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (tn_only_keys(body, keys, &err, &errors) < 0) {
		json_decref(body);
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	type = json_string_value(json_object_get(body, "event_type"));
	if (!eng_def_event_ok(type)) {
		json_decref(body);
		mf_err_set(&err, 400, "validation_failed", "event_type is not a valid event name");
		gw_respond_problem_ext(call->req, &err, json_pack("{s:[{s:s,s:s}]}", "errors", "path", "/event_type",
			"message", "must be an event name: two or more dot-separated parts of a lower-case letter "
				   "then a-z, 0-9 and _, at most 128 characters"));
		return;
	}
	snprintf(r->event_type, sizeof(r->event_type), "%s", type);
	json_decref(body);
	tn_uuid_new(r->id);
	if (cx_webhook_secret_new(r->secret, sizeof(r->secret)) < 0) {
		gw_respond_error(call->req, 500, "internal_error", "cannot create a secret");
		return;
	}
	eng_wtx_begin(&r->tx, create_path_set);
}

static void hook_unregistered(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	audit(r, "hook.delete", json_object());
}

static void hook_deleted(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	const char *p[2] = { r->id, r->tx.call->tenant_id };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	if (PQntuples(res) == 0) {
		eng_wtx_fail_status(&r->tx, 404, "not_found", "no such hook");
		return;
	}
	eng_wtx_q(&r->tx, "DELETE FROM platform.hooks WHERE id = $1::uuid AND tenant_id = $2::uuid", 2, p, hook_unregistered);
}

static void delete_path_set(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	const char *p[1] = { r->id };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	eng_wtx_q(&r->tx, "DELETE FROM hooks WHERE id = $1::uuid RETURNING id", 1, p, hook_deleted);
}

static void delete_hook(tn_call_t *call, void *arg)
{
	hreq_t *r = hreq_new(call);
	const char *id = gw_req_param(call->req, "id");

	if (r == NULL)
		return;
	if (id == NULL || !tn_uuid_ok(id)) {
		gw_respond_error(call->req, 404, "not_found", "no such hook");
		return;
	}
	snprintf(r->id, sizeof(r->id), "%s", id);
	eng_wtx_begin(&r->tx, delete_path_set);
}

static void got_hooks(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	json_t *items;
	int n;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	n = PQntuples(res);
	items = json_array();
	for (int i = 0; i < n && i < r->limit; i++) {
		char url[64];

		snprintf(url, sizeof(url), "/hooks/%s", PQgetvalue(res, i, 0));
		json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", PQgetvalue(res, i, 0), "url", url,
						       "event_type", PQgetvalue(res, i, 1), "created_by",
						       PQgetvalue(res, i, 2), "created_at", PQgetvalue(res, i, 3)));
	}
	gw_respond_json(r->tx.req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor",
		tn_page_cursor(n > r->limit ? PQgetvalue(res, r->limit - 1, 0) : NULL)));
}

static void list_hooks(tn_call_t *call, void *arg)
{
	hreq_t *r = hreq_new(call);
	mf_worker_t *w = worker_of(call->req);
	char cursor[64], lim[16];
	const char *p[3];
	mf_err_t err;

	if (r == NULL)
		return;
	if (tn_req_page(call->req, &r->limit, cursor, &err) < 0) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (cursor[0] && !tn_uuid_ok(cursor)) {
		gw_respond_error(call->req, 400, "validation_failed", "cursor is not one this server issued");
		return;
	}
	snprintf(lim, sizeof(lim), "%d", r->limit + 1);
	p[0] = call->schema;
	p[1] = cursor;
	p[2] = lim;
	if (mf_pg_query(w->pg, "SELECT * FROM platform.hook_rows($1, $2, $3::int)", 3, p, got_hooks, r) < 0)
		gw_respond_error(call->req, 503, "database_unavailable", "the database is not reachable");
}

/* ---- POST /hooks/{id}: no token ---- */

static void in_committed(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	json_t *out = r->data;

	r->data = NULL;
	if (err) {
		json_decref(out);
		gw_respond_problem(r->tx.req, err);
		return;
	}
	{
		bool replay = json_is_true(json_object_get(out, "replay"));

		mf_info("engine", replay ? "inbound hook message repeated" : "inbound hook event accepted",
			MF_S("request_id", gw_req_id(r->tx.req)), MF_S("tenant_id", r->tenant), MF_S("hook_id", r->id),
			MF_S("event_id", json_string_value(json_object_get(out, "event_id"))));
		gw_respond_json(r->tx.req, replay ? 200 : 202,
				json_pack("{s:O,s:O}", "event_id", json_object_get(out, "event_id"), "run_ids",
					  json_object_get(out, "run_ids")));
		json_decref(out);
	}
}

static void in_evented(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	mf_pg_conn_t *c = r->tx.conn;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	json_decref(r->data);
	r->data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	if (r->data == NULL) {
		eng_wtx_fail_status(&r->tx, 500, "internal_error", "unreadable event outcome");
		return;
	}
	r->tx.conn = NULL;
	if (mf_pg_tx_end(c, true, in_committed, r) < 0)
		gw_respond_error(r->tx.req, 503, "over_capacity", "out of memory; retry");
}

static void in_triggers(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	json_t *tenant, *runs, *ev;
	char source[48], *evs = NULL, *runss = NULL;

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	tenant = json_pack("{s:s}", "id", r->tenant);
	runs = eng_runs_for_event(res, r->event_id, r->event_type, r->data, tenant);
	json_decref(tenant);
	snprintf(source, sizeof(source), "hook:%s", r->id);
	ev = json_pack("{s:s,s:s,s:O,s:s,s:s}", "id", r->event_id, "type", r->event_type, "data", r->data, "source",
		       source, "idempotency_key", r->idem);
	if (runs && ev) {
		evs = json_dumps(ev, JSON_COMPACT);
		runss = json_dumps(runs, JSON_COMPACT);
	}
	json_decref(ev);
	json_decref(runs);
	if (evs == NULL || runss == NULL) {
		free(evs);
		free(runss);
		eng_wtx_fail_status(&r->tx, 503, "over_capacity", "out of memory; retry");
		return;
	}
	{
		const char *p[5] = { r->tenant, r->schema, source, evs, runss };

		eng_wtx_q(&r->tx, "SELECT platform.eng_event($1::uuid, $2, $3, $4::jsonb, $5::jsonb)::text", 5, p, in_evented);
	}
	free(evs);
	free(runss);
}

static void in_path_set(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	const char *p[1] = { r->event_type };

	if (err) {
		eng_wtx_fail(&r->tx, err);
		return;
	}
	eng_wtx_q(&r->tx, eng_triggers_sql, 1, p, in_triggers);
}

static void in_begun(mf_pg_conn_t *conn, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	const char *p[1] = { r->schema };

	if (conn == NULL) {
		gw_respond_problem(r->tx.req, err);
		return;
	}
	r->tx.conn = conn;
	eng_wtx_q(&r->tx, ENG_SEARCH_PATH_SQL, 1, p, in_path_set);
}

static void in_found(const PGresult *res, const mf_err_t *err, void *arg)
{
	hreq_t *r = arg;
	gw_req_t *req = r->tx.req;
	mf_worker_t *w = worker_of(req);
	const void *body;
	size_t len;
	char name[48];
	mf_err_t e;
	int rc;

	if (err) {
		gw_respond_problem(req, err);
		return;
	}
	if (PQntuples(res) != 1) {
		gw_respond_error(req, 404, "not_found", "no such hook");
		return;
	}
	snprintf(r->tenant, sizeof(r->tenant), "%s", PQgetvalue(res, 0, 0));
	snprintf(r->schema, sizeof(r->schema), "%s", PQgetvalue(res, 0, 1));
	snprintf(r->event_type, sizeof(r->event_type), "%s", PQgetvalue(res, 0, 2));
	gw_req_set_tenant(req, r->tenant);
	snprintf(name, sizeof(name), "hook:%s", r->id);
	if (eng_secret_open(w->vault, r->tenant, name, atoi(PQgetvalue(res, 0, 3)), PQgetvalue(res, 0, 5),
			    PQgetvalue(res, 0, 6), PQgetvalue(res, 0, 4), r->secret, &e) < 0) {
		gw_respond_problem(req, &e);
		return;
	}
	body = gw_req_body(req, &len);
	rc = cx_webhook_verify(r->secret, gw_req_header(req, "webhook-id"), gw_req_header(req, "webhook-timestamp"),
			       gw_req_header(req, "webhook-signature"), body, len, (long long)time(NULL),
			       CX_WEBHOOK_TOLERANCE_DEFAULT, &e);
	sodium_memzero(r->secret, sizeof(r->secret));
	if (rc < 0) {
		if (e.status == 400) {
			/* a message without its headers is unauthenticated, not malformed */
			mf_err_set(&e, 401, "bad_signature",
				   "webhook-id, webhook-timestamp and webhook-signature are required");
		}
		if (e.status == 401)
			gw_res_header(req, "WWW-Authenticate", "Standard-Webhooks");
		mf_info("engine", "inbound hook message refused", MF_S("request_id", gw_req_id(req)),
			MF_S("tenant_id", r->tenant), MF_S("hook_id", r->id), MF_S("code", e.code));
		gw_respond_problem(req, &e);
		return;
	}
	if ((r->data = gw_req_json(req, &e)) == NULL) {
		gw_respond_problem(req, &e);
		return;
	}
	snprintf(r->idem, sizeof(r->idem), "hook:%s:%s", r->id, gw_req_header(req, "webhook-id"));
	tn_uuid_new(r->event_id);
	if (w->pg == NULL || mf_pg_tx_begin(w->pg, in_begun, r) < 0)
		gw_respond_error(req, 503, "database_unavailable", "the database is not reachable");
}

static void receive_hook(gw_req_t *req, void *arg)
{
	const char *id = gw_req_param(req, "id");
	mf_worker_t *w = worker_of(req);
	hreq_t *r;
	const char *p[1];
	size_t len;

	/* nothing to look up for an id that cannot exist */
	if (id == NULL || !tn_uuid_ok(id)) {
		gw_respond_error(req, 404, "not_found", "no such hook");
		return;
	}
	if (w == NULL || w->pg == NULL || w->vault == NULL) {
		gw_respond_error(req, 503, "not_ready", "hooks are not available on this server");
		return;
	}
	/* tighter than max_body_bytes: an event's data is kept and loaded
	 * into every run it starts */
	if ((void)gw_req_body(req, &len), len > ENG_HOOK_BODY_MAX) {
		gw_respond_error(req, 413, "payload_too_large", "a hook message may be at most 256 KiB");
		return;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		gw_respond_error(req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	r->tx.req = req;
	snprintf(r->id, sizeof(r->id), "%s", id);
	gw_req_set_data(req, r, hreq_free);
	p[0] = r->id;
	if (mf_pg_query(w->pg, "SELECT * FROM platform.hook_lookup($1::uuid)", 1, p, in_found, r) < 0)
		gw_respond_error(req, 503, "database_unavailable", "the database is not reachable");
}

int eng_hooks_routes(eng_t *e, struct tn *tn, gw_router_t *api)
{
	if (tn_guard_add(api, tn, "POST", "/v1/tenants/{tenant_id}/hooks", POL_WORKFLOWS, GW_ROUTE_JSON_BODY,
			 create_hook, e) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/hooks", POL_WORKFLOWS, 0, list_hooks, e) < 0 ||
	    tn_guard_add(api, tn, "DELETE", "/v1/tenants/{tenant_id}/hooks/{id}", POL_WORKFLOWS, 0, delete_hook,
			 e) < 0 ||
	    gw_router_add(api, "POST", "/hooks/{id}", receive_hook, e, 0) < 0)
		return -1;
	return eng_webhook_routes(e, tn, api);
}
