/*
 * vault_api.c - the vault's routes (CONTRACT 7), behind the access guard
 * of tenants/ (tn_guard_add, permission POL_CREDENTIALS):
 *
 *   PUT    /v1/tenants/{tenant_id}/credentials/{name}   store a new version
 *   GET    /v1/tenants/{tenant_id}/credentials          list (metadata)
 *   GET    /v1/tenants/{tenant_id}/credentials/{name}   metadata
 *   DELETE /v1/tenants/{tenant_id}/credentials/{name}   204, box deleted
 *   POST   /v1/tenants/{tenant_id}/vault/rotate         new data key version
 *
 * Answers carry metadata only; secret values are read from the request,
 * sealed, and wiped, and never reach a response, a log line or an audit
 * row.  Writes are one transaction each: the tenant's schema comes from
 * the guard and is put on the search_path (set_config, transaction-local)
 * so the SQL text stays constant; reads go through the platform functions
 * vault_meta / vault_secret in one round trip.  Writers share a per-tenant
 * advisory lock that a data-key rotation takes alone, so a rotation sees
 * every box and no box is sealed under a key being retired.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "connectors/vault_int.h"
#include "core/log.h"
#include "core/urlenc.h"
#include "core/worker.h"
#include "tenants/tenants.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define FIELD_MAX 8192		/* one value */

enum step {
	S_LOCKED, S_KEY, S_SEALING_KID, S_KEY_CREATED, S_CURRENT, S_STORED, S_AUDITED,
	S_DELETED,
	S_R_KEYS, S_R_CREDS, S_R_SEALING_KID, S_R_INSERTED, S_R_UPDATED, S_R_PRUNED,
};

enum op { OP_PUT, OP_DELETE, OP_ROTATE };

struct vreq {
	tn_call_t *call;
	cx_vault_t *v;
	cx_vault_worker_t *vw;
	mf_pg_conn_t *conn;
	enum op op;
	enum step step;
	mf_err_t err;
	char name[CX_NAME_MAX + 1];
	char type[32];
	char fields[160];		/* text[] literal of the data's key names */
	unsigned char *plain;		/* sodium_malloc'd secret JSON */
	size_t plain_len;
	unsigned char *dek;		/* sodium_malloc'd, CX_DEK_BYTES */
	int key_version;
	int cred_version;
	bool created;
	json_t *out;
	/* rotation */
	int old_max;
	int reencrypted;
	char *names_lit, *boxes_lit;	/* text[] literals */
	PGresult *keys_res;		/* the tenant's data key rows, kept until the boxes are read */
	PGresult *creds_res;
};

static void vreq_free(void *p)
{
	struct vreq *r = p;

	if (r == NULL)
		return;
	if (r->plain)
		sodium_free(r->plain);
	if (r->dek)
		sodium_free(r->dek);
	json_decref(r->out);
	free(r->names_lit);
	free(r->boxes_lit);
	PQclear(r->keys_res);
	PQclear(r->creds_res);
	free(r);
}

static cx_vault_worker_t *worker_vault(gw_req_t *req)
{
	mf_worker_t *w = gw_req_worker_data(req);

	return w ? w->vault : NULL;
}

/* A new request state, or NULL when answered (503). */
static struct vreq *vreq_new(tn_call_t *call, cx_vault_t *v, enum op op)
{
	struct vreq *r;
	cx_vault_worker_t *vw = worker_vault(call->req);
	mf_master_ring_t *ring = mf_master_get(v->master);
	bool have = mf_master_ring_count(ring) > 0;

	mf_master_ring_unref(ring);
	if (vw == NULL || vw->pg == NULL || !have) {
		gw_respond_error(call->req, 503, "vault_unavailable", "the vault is not configured on this instance");
		return NULL;
	}
	if (call->schema == NULL || call->schema[0] == '\0') {
		gw_respond_error(call->req, 404, "not_found", "this tenant has no vault");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return NULL;
	}
	r->call = call;
	r->v = v;
	r->vw = vw;
	r->op = op;
	call->data = r;
	call->data_free = vreq_free;
	return r;
}

static json_t *meta_json(const PGresult *res, int row)
{
	json_t *fields = json_array();
	const char *f = PQgetvalue(res, row, 3);

	/* field names are [a-z_]: PostgreSQL prints them unquoted, {a,b} */
	if (f[0] == '{') {
		for (const char *p = f + 1; *p && *p != '}';) {
			size_t n = strcspn(p, ",}");

			json_array_append_new(fields, json_stringn(p, n));
			p += n;
			if (*p == ',')
				p++;
		}
	}
	return json_pack("{s:s,s:s,s:i,s:o,s:s,s:s}", "name", PQgetvalue(res, row, 0), "type", PQgetvalue(res, row, 1),
			 "version", atoi(PQgetvalue(res, row, 2)), "fields", fields,
			 "created_at", PQgetvalue(res, row, 4), "updated_at", PQgetvalue(res, row, 5));
}

/* ---- transaction plumbing ---- */

static void advance(const PGresult *res, const mf_err_t *err, void *arg);

static void rolled_back(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct vreq *r = arg;

	gw_respond_problem(r->call->req, &r->err);
}

/* Rolls back (when a transaction is open) and answers e. */
static void fail(struct vreq *r, const mf_err_t *e)
{
	if (e != &r->err)
		r->err = *e;
	/* a tenant deleted while we worked: its schema is gone */
	if (strcmp(r->err.sqlstate, "42P01") == 0 || strcmp(r->err.sqlstate, "3F000") == 0)
		mf_err_set(&r->err, 404, "not_found", "no such tenant");
	if (r->conn) {
		mf_pg_conn_t *c = r->conn;

		r->conn = NULL;
		if (mf_pg_tx_end(c, false, rolled_back, r) == 0)
			return;
	}
	gw_respond_problem(r->call->req, &r->err);
}

static void fail_status(struct vreq *r, int status, const char *code, const char *detail)
{
	mf_err_set(&r->err, status, code, "%s", detail);
	fail(r, &r->err);
}

static void q(struct vreq *r, enum step next, const char *sql, int n, const char *const *p)
{
	r->step = next;
	if (mf_pg_conn_query(r->conn, sql, n, p, advance, r) < 0)
		fail_status(r, 503, "over_capacity", "out of memory; retry");
}

static void begun(mf_pg_conn_t *conn, const mf_err_t *err, void *arg)
{
	struct vreq *r = arg;
	const char *lock = r->op == OP_ROTATE
		? "SELECT pg_advisory_xact_lock(" CX_VAULT_LOCK_CLASS ", hashtext($1)), set_config('search_path', $2, true)"
		: "SELECT pg_advisory_xact_lock_shared(" CX_VAULT_LOCK_CLASS ", hashtext($1)), "
		  "set_config('search_path', $2, true)";
	const char *p[2] = { r->call->tenant_id, r->call->schema };

	if (err) {
		gw_respond_problem(r->call->req, err);
		return;
	}
	r->conn = conn;
	q(r, S_LOCKED, lock, 2, p);
}

static void begin(struct vreq *r)
{
	if (mf_pg_tx_begin(r->vw->pg, begun, r) < 0)
		gw_respond_error(r->call->req, 503, "over_capacity", "out of memory; retry");
}

static void audit(struct vreq *r, const char *action, json_t *detail)
{
	char *d = json_dumps(detail, JSON_COMPACT);
	const char *p[5] = { r->call->tenant_id, r->call->actor, action, r->name, d ? d : "{}" };

	json_decref(detail);
	q(r, S_AUDITED, TN_AUDIT_SQL, 5, p);
	free(d);
}

static void committed(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct vreq *r = arg;
	json_t *out = r->out;

	if (err) {
		gw_respond_problem(r->call->req, err);
		return;
	}
	r->out = NULL;
	switch (r->op) {
	case OP_PUT:
		gw_respond_json(r->call->req, r->created ? 201 : 200, out);
		break;
	case OP_DELETE:
		json_decref(out);
		gw_respond_raw(r->call->req, 204, NULL, "", 0);
		break;
	case OP_ROTATE:
		mf_info("vault", "tenant data key rotated", MF_S("request_id", gw_req_id(r->call->req)),
			MF_S("tenant_id", r->call->tenant_id), MF_I("key_version", r->key_version),
			MF_I("reencrypted", r->reencrypted));
		gw_respond_json(r->call->req, 200, out);
		break;
	}
}

static void commit(struct vreq *r)
{
	mf_pg_conn_t *c = r->conn;

	r->conn = NULL;
	if (mf_pg_tx_end(c, true, committed, r) < 0)
		gw_respond_error(r->call->req, 503, "over_capacity", "out of memory; retry");
}

/* ---- data keys inside a write transaction ---- */

/* The sealing key of the ring for new data keys: the one vault_master
 * names (a rotation in progress), else the first.  -1: this instance does
 * not hold it even after re-reading its key file. */
static int sealing_index(struct vreq *r, const char *kid, mf_master_ring_t **ring)
{
	int i;

	*ring = mf_master_get(r->v->master);
	if (kid == NULL || kid[0] == '\0')
		return 0;
	i = mf_master_ring_find(*ring, kid);
	if (i < 0) {
		mf_master_ring_unref(*ring);
		*ring = mf_master_refresh(r->v->master, kid, true);
		i = mf_master_ring_find(*ring, kid);
	}
	return i;
}

/* A new DEK (into r->dek) wrapped for version; p gets its kid and
 * wrapped text.  Returns 0 or answers and returns -1. */
static int new_dek(struct vreq *r, const char *sealing_kid, int version, char kid[MF_MASTER_KID_HEX + 1],
		   char **wrapped_text)
{
	unsigned char wrapped[CX_WRAPPED_BYTES];
	mf_master_ring_t *ring;
	int i = sealing_index(r, sealing_kid, &ring);

	*wrapped_text = NULL;
	if (i < 0) {
		mf_master_ring_unref(ring);
		mf_error("vault", "new data keys must be wrapped by a master key this instance does not hold",
			 MF_S("sealing_kid", sealing_kid));
		fail_status(r, 503, "vault_unavailable",
			    "this instance does not hold the current master key; retry on an updated instance");
		return -1;
	}
	randombytes_buf(r->dek, CX_DEK_BYTES);
	if (cx_vault_dek_wrap(ring, i, r->call->tenant_id, version, r->dek, wrapped, kid) < 0 ||
	    (*wrapped_text = cx_bytea_encode(wrapped, sizeof(wrapped))) == NULL) {
		mf_master_ring_unref(ring);
		fail_status(r, 500, "internal_error", "cannot create a data key");
		return -1;
	}
	mf_master_ring_unref(ring);
	return 0;
}

/* ---- PUT ---- */

static const char key_sql[] =
	"SELECT version, master_kid, wrapped FROM platform.tenant_keys WHERE tenant_id = $1::uuid "
	"ORDER BY version DESC LIMIT 1";
static const char sealing_kid_sql[] = "SELECT coalesce(sealing_kid, '') FROM platform.vault_master FOR SHARE";
static const char current_sql[] = "SELECT version FROM credentials WHERE name = $1 FOR UPDATE";
static const char store_sql[] =
	"INSERT INTO credentials AS c (name, type, version, key_version, box, fields, created_by, updated_by) "
	"VALUES ($1, $2, $3::int, $4::int, $5::bytea, $6::text[], $7, $7) "
	"ON CONFLICT (name) DO UPDATE SET type = EXCLUDED.type, version = EXCLUDED.version, "
	"key_version = EXCLUDED.key_version, box = EXCLUDED.box, fields = EXCLUDED.fields, "
	"updated_by = EXCLUDED.updated_by, updated_at = now() WHERE c.version < EXCLUDED.version "
	"RETURNING name, type, version, fields, " TS("created_at") ", " TS("updated_at");

static void put_store(struct vreq *r)
{
	unsigned char *box = malloc(r->plain_len + CX_SEAL_OVERHEAD);
	char *text = NULL, v[16], kv[16];

	if (box == NULL || cx_vault_seal(r->dek, r->call->tenant_id, r->name, r->cred_version, r->key_version,
					 r->plain, r->plain_len, box) < 0 ||
	    (text = cx_bytea_encode(box, r->plain_len + CX_SEAL_OVERHEAD)) == NULL) {
		free(box);
		fail_status(r, 503, "over_capacity", "out of memory; retry");
		return;
	}
	free(box);
	/* the plaintext is sealed: nothing of it stays in memory */
	sodium_free(r->plain);
	r->plain = NULL;
	snprintf(v, sizeof(v), "%d", r->cred_version);
	snprintf(kv, sizeof(kv), "%d", r->key_version);
	{
		const char *p[7] = { r->name, r->type, v, kv, text, r->fields, r->call->actor };

		q(r, S_STORED, store_sql, 7, p);
	}
	free(text);
}

static void put_have_key(struct vreq *r, const PGresult *res)
{
	const char *p[1] = { r->name };
	enum cx_dek_why why;

	r->key_version = atoi(PQgetvalue(res, 0, 0));
	why = cx_dek_get(r->vw, r->call->tenant_id, r->key_version, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
			 r->dek);
	if (why != CX_DEK_OK) {
		mf_error("vault", "the tenant's data key does not open", MF_S("tenant_id", r->call->tenant_id),
			 MF_I("key_version", r->key_version), MF_S("reason", cx_dek_why_name(why)));
		fail_status(r, 409, "vault_key_unreadable",
			    "this tenant's data key cannot be opened with the master keys of this instance");
		return;
	}
	q(r, S_CURRENT, current_sql, 1, p);
}

/* ---- DELETE ---- */

static const char delete_sql[] = "DELETE FROM credentials WHERE name = $1 RETURNING version";

/* ---- rotation ---- */

static const char keys_all_sql[] =
	"SELECT version, master_kid, wrapped FROM platform.tenant_keys WHERE tenant_id = $1::uuid ORDER BY version";
/* Every box sealed under the tenant's data keys: credentials, and the
 * signing secrets of inbound hooks and outbound webhooks (sealed as
 * version 1 of "hook:<id>" and "webhook:<name>", engine/hooks_int.h). */
static const char creds_all_sql[] =
	"SELECT name, version, key_version, box FROM credentials "
	"UNION ALL SELECT 'hook:' || id, 1, key_version, box FROM hooks "
	"UNION ALL SELECT 'webhook:' || name, 1, key_version, box FROM webhooks";
static const char reseal_sql[] =
	"WITH u AS (SELECT n, decode(h, 'hex') AS b FROM unnest($2::text[], $3::text[]) AS u(n, h)), "
	"c AS (UPDATE credentials c SET box = u.b, key_version = $1::int FROM u WHERE c.name = u.n RETURNING 1), "
	"hk AS (UPDATE hooks h SET box = u.b, key_version = $1::int FROM u WHERE 'hook:' || h.id = u.n RETURNING 1), "
	"wh AS (UPDATE webhooks w SET box = u.b, key_version = $1::int FROM u WHERE 'webhook:' || w.name = u.n "
	"RETURNING 1) "
	"SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM hk) + (SELECT count(*) FROM wh)";

/* Re-seals every box under the new DEK (r->dek, r->key_version) into the
 * literals for one UPDATE.  Returns 0 or answers and returns -1. */
static int rotate_reseal(struct vreq *r)
{
	const PGresult *keys = r->keys_res, *creds = r->creds_res;
	int n = PQntuples(creds);
	size_t cap_names = 3, cap_boxes = 3;
	char *names, *boxes, *pn, *pb;
	unsigned char old[CX_DEK_BYTES];

	for (int i = 0; i < n; i++) {
		cap_names += strlen(PQgetvalue(creds, i, 0)) + 3;
		cap_boxes += strlen(PQgetvalue(creds, i, 3)) + 3;
	}
	names = malloc(cap_names);
	boxes = malloc(cap_boxes);
	if (names == NULL || boxes == NULL) {
		free(names);
		free(boxes);
		fail_status(r, 503, "over_capacity", "out of memory; retry");
		return -1;
	}
	r->names_lit = names;
	r->boxes_lit = boxes;
	pn = names;
	pb = boxes;
	*pn++ = '{';
	*pb++ = '{';
	for (int i = 0; i < n; i++) {
		const char *name = PQgetvalue(creds, i, 0);
		int version = atoi(PQgetvalue(creds, i, 1)), kv = atoi(PQgetvalue(creds, i, 2));
		const char *kid = "", *wrapped = "";
		unsigned char *box, *plain;
		size_t blen = 0, plen = 0;
		enum cx_dek_why why;

		for (int k = 0; k < PQntuples(keys); k++)
			if (atoi(PQgetvalue(keys, k, 0)) == kv) {
				kid = PQgetvalue(keys, k, 1);
				wrapped = PQgetvalue(keys, k, 2);
			}
		why = cx_dek_get(r->vw, r->call->tenant_id, kv, kid, wrapped, old);
		box = why == CX_DEK_OK ? cx_bytea_decode(PQgetvalue(creds, i, 3), &blen) : NULL;
		plain = box && blen >= CX_SEAL_OVERHEAD ? sodium_malloc(blen) : NULL;
		if (plain == NULL ||
		    cx_vault_unseal(old, r->call->tenant_id, name, version, kv, box, blen, plain, &plen) < 0 ||
		    cx_vault_seal(r->dek, r->call->tenant_id, name, version, r->key_version, plain, plen, box) < 0) {
			sodium_memzero(old, sizeof(old));
			if (plain)
				sodium_free(plain);
			free(box);
			cx_unreadable(&r->err, r->call->tenant_id, name,
				      why != CX_DEK_OK ? cx_dek_why_name(why) : "box_does_not_open");
			fail(r, &r->err);
			return -1;
		}
		sodium_free(plain);
		/* same length: nonce || ciphertext || tag of the same plaintext */
		pn += sprintf(pn, "%s\"%s\"", i ? "," : "", name);
		if (i)
			*pb++ = ',';
		sodium_bin2hex(pb, 2 * blen + 1, box, blen);
		pb += 2 * blen;
		free(box);
	}
	sodium_memzero(old, sizeof(old));
	*pn++ = '}';
	*pn = '\0';
	*pb++ = '}';
	*pb = '\0';
	r->reencrypted = n;
	return 0;
}

/* ---- the step machine ---- */

static void advance(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct vreq *r = arg;

	if (err) {
		fail(r, err);
		return;
	}
	switch (r->step) {
	case S_LOCKED: {
		const char *p[1] = { r->call->tenant_id };

		if (r->op == OP_PUT) {
			q(r, S_KEY, key_sql, 1, p);
		} else if (r->op == OP_DELETE) {
			const char *d[1] = { r->name };

			q(r, S_DELETED, delete_sql, 1, d);
		} else {
			q(r, S_R_KEYS, keys_all_sql, 1, p);
		}
		return;
	}
	case S_KEY:
		if (PQntuples(res) > 0) {
			put_have_key(r, res);
			return;
		}
		/* the tenant's first secret: its first data key */
		q(r, S_SEALING_KID, sealing_kid_sql, 0, NULL);
		return;
	case S_SEALING_KID: {
		char kid[MF_MASTER_KID_HEX + 1], *wrapped;

		r->key_version = 1;
		if (new_dek(r, PQgetvalue(res, 0, 0), 1, kid, &wrapped) < 0)
			return;
		{
			const char *p[3] = { r->call->tenant_id, kid, wrapped };

			q(r, S_KEY_CREATED, "INSERT INTO platform.tenant_keys (tenant_id, version, master_kid, wrapped) "
					    "VALUES ($1::uuid, 1, $2, $3::bytea) ON CONFLICT DO NOTHING RETURNING version",
			  3, p);
		}
		free(wrapped);
		return;
	}
	case S_KEY_CREATED: {
		const char *p[1] = { r->call->tenant_id };

		if (PQntuples(res) == 0) {
			/* a concurrent first write created it: use that one */
			q(r, S_KEY, key_sql, 1, p);
			return;
		}
		cx_dek_put(r->vw, r->call->tenant_id, 1, r->dek);
		{
			const char *c[1] = { r->name };

			q(r, S_CURRENT, current_sql, 1, c);
		}
		return;
	}
	case S_CURRENT:
		r->created = PQntuples(res) == 0;
		r->cred_version = r->created ? 1 : atoi(PQgetvalue(res, 0, 0)) + 1;
		put_store(r);
		return;
	case S_STORED:
		if (PQntuples(res) == 0) {
			fail_status(r, 409, "conflict", "the credential was changed concurrently; retry");
			return;
		}
		r->out = meta_json(res, 0);
		audit(r, "credential.put", json_pack("{s:s,s:s,s:i,s:O}", "name", r->name, "type", r->type,
						     "version", r->cred_version, "fields",
						     json_object_get(r->out, "fields")));
		return;
	case S_DELETED:
		if (PQntuples(res) == 0) {
			fail_status(r, 404, "not_found", "no such credential");
			return;
		}
		audit(r, "credential.delete", json_pack("{s:s,s:i}", "name", r->name, "version",
							 atoi(PQgetvalue(res, 0, 0))));
		return;
	case S_R_KEYS:
		r->keys_res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
		if (r->keys_res == NULL) {
			fail_status(r, 503, "over_capacity", "out of memory; retry");
			return;
		}
		for (int i = 0; i < PQntuples(res); i++)
			if (atoi(PQgetvalue(res, i, 0)) > r->old_max)
				r->old_max = atoi(PQgetvalue(res, i, 0));
		q(r, S_R_CREDS, creds_all_sql, 0, NULL);
		return;
	case S_R_CREDS:
		r->creds_res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
		if (r->creds_res == NULL) {
			fail_status(r, 503, "over_capacity", "out of memory; retry");
			return;
		}
		q(r, S_R_SEALING_KID, sealing_kid_sql, 0, NULL);
		return;
	case S_R_SEALING_KID: {
		char kid[MF_MASTER_KID_HEX + 1], *wrapped, v[16];

		r->key_version = r->old_max + 1;
		if (new_dek(r, PQgetvalue(res, 0, 0), r->key_version, kid, &wrapped) < 0)
			return;
		if (rotate_reseal(r) < 0) {
			free(wrapped);
			return;
		}
		snprintf(v, sizeof(v), "%d", r->key_version);
		{
			const char *p[4] = { r->call->tenant_id, v, kid, wrapped };

			q(r, S_R_INSERTED, "INSERT INTO platform.tenant_keys (tenant_id, version, master_kid, wrapped) "
					   "VALUES ($1::uuid, $2::int, $3, $4::bytea)", 4, p);
		}
		free(wrapped);
		return;
	}
	case S_R_INSERTED: {
		char v[16];
		const char *p[3] = { v, r->names_lit, r->boxes_lit };

		snprintf(v, sizeof(v), "%d", r->key_version);
		q(r, S_R_UPDATED, reseal_sql, 3, p);
		return;
	}
	case S_R_UPDATED: {
		char v[16];
		const char *p[2] = { r->call->tenant_id, v };

		if (atoi(PQgetvalue(res, 0, 0)) != r->reencrypted) {
			fail_status(r, 500, "internal_error", "the re-encrypted secrets changed underneath");
			return;
		}
		snprintf(v, sizeof(v), "%d", r->key_version);
		q(r, S_R_PRUNED, "DELETE FROM platform.tenant_keys WHERE tenant_id = $1::uuid AND version <> $2::int",
		  2, p);
		return;
	}
	case S_R_PRUNED:
		/* this worker's cached old versions go now; others' expire */
		cx_vault_worker_forget(r->vw, r->call->tenant_id);
		cx_dek_put(r->vw, r->call->tenant_id, r->key_version, r->dek);
		r->out = json_pack("{s:i,s:i}", "key_version", r->key_version, "reencrypted", r->reencrypted);
		audit(r, "vault.rotate", json_pack("{s:i,s:i,s:i}", "key_version", r->key_version, "old_key_version",
						   r->old_max, "reencrypted", r->reencrypted));
		return;
	case S_AUDITED:
		commit(r);
		return;
	}
}

/* ---- validation ---- */

static void errors_add(json_t *errors, const char *path, const char *msg)
{
	json_array_append_new(errors, json_pack("{s:s,s:s}", "path", path, "message", msg));
}

/* A printable string value of at most max bytes. */
static bool value_ok(const json_t *v, size_t max, bool allow_empty)
{
	const char *s = json_string_value(v);
	size_t n = s ? json_string_length(v) : 0;

	if (s == NULL || (!allow_empty && n == 0) || n > max || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* RFC 9110 token (a header field name). */
static bool header_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i]))
			return false;
	return true;
}

static bool url_ok(const char *s)
{
	const char *host;
	size_t n = s ? strlen(s) : 0;

	if (n > 2048)
		return false;
	if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else
		return false;
	if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return false;
	return true;
}

struct field_rule {
	const char *name;
	bool required;
	size_t max;
};

struct type_rule {
	const char *type;
	struct field_rule fields[6];
};

static const struct type_rule types[] = {
	{ "bearer", { { "token", true, FIELD_MAX } } },
	{ "basic", { { "password", true, 1024 }, { "username", true, 256 } } },
	{ "api_key_header", { { "header", true, 64 }, { "value", true, FIELD_MAX } } },
	{ "oauth2_client_credentials", { { "audience", false, 1024 }, { "auth_method", false, 8 },
					 { "client_id", true, 1024 },
					 { "client_secret", true, FIELD_MAX }, { "scope", false, 1024 },
					 { "token_url", true, 2048 } } },
};

/* Checks the body; fills r->type, r->fields and r->plain (canonical JSON
 * of data, sorted keys).  Returns 0, or -1 with errors appended. */
static int validate(struct vreq *r, json_t *body, json_t *errors)
{
	json_t *type = json_object_get(body, "type"), *data = json_object_get(body, "data");
	const struct type_rule *tr = NULL;
	const char *k;
	json_t *v;
	char *text;
	char *f = r->fields;

	if (!json_is_object(body)) {
		errors_add(errors, "", "must be a JSON object");
		return -1;
	}
	json_object_foreach(body, k, v) {
		if (strcmp(k, "type") && strcmp(k, "data")) {
			char path[80];

			snprintf(path, sizeof(path), "/%.60s", k);
			errors_add(errors, path, "unknown field");
		}
	}
	for (size_t i = 0; json_is_string(type) && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(json_string_value(type), types[i].type) == 0)
			tr = &types[i];
	if (tr == NULL)
		errors_add(errors, "/type", "must be one of bearer, basic, api_key_header, oauth2_client_credentials");
	if (!json_is_object(data)) {
		errors_add(errors, "/data", "must be an object of string values");
		return -1;
	}
	if (tr == NULL)
		return -1;
	json_object_foreach(data, k, v) {
		const struct field_rule *fr = NULL;
		char path[96];

		for (int i = 0; i < 6 && tr->fields[i].name; i++)
			if (strcmp(k, tr->fields[i].name) == 0)
				fr = &tr->fields[i];
		snprintf(path, sizeof(path), "/data/%.60s", k);
		if (fr == NULL) {
			errors_add(errors, path, "unknown field for this type");
			continue;
		}
		if (!value_ok(v, fr->max, false)) {
			char msg[96];

			snprintf(msg, sizeof(msg), "must be a string of 1 to %zu printable characters", fr->max);
			errors_add(errors, path, msg);
			continue;
		}
		if (strcmp(k, "header") == 0 && !header_name_ok(json_string_value(v)))
			errors_add(errors, path, "must be a header field name (RFC 9110 token)");
		if (strcmp(k, "token_url") == 0 && !url_ok(json_string_value(v)))
			errors_add(errors, path, "must be an http or https URL");
		/* how the client authenticates to the token endpoint (RFC 6749 2.3.1):
		 * HTTP Basic (the default) or the form body */
		if (strcmp(k, "auth_method") == 0 && strcmp(json_string_value(v), "basic") != 0 &&
		    strcmp(json_string_value(v), "body") != 0)
			errors_add(errors, path, "must be \"basic\" or \"body\"");
	}
	for (int i = 0; i < 6 && tr->fields[i].name; i++) {
		if (tr->fields[i].required && json_object_get(data, tr->fields[i].name) == NULL) {
			char path[96];

			snprintf(path, sizeof(path), "/data/%s", tr->fields[i].name);
			errors_add(errors, path, "is required");
		}
	}
	if (json_array_size(errors) > 0)
		return -1;
	snprintf(r->type, sizeof(r->type), "%s", tr->type);
	/* field names in rule order (sorted), from the rules, not the input */
	*f++ = '{';
	for (int i = 0; i < 6 && tr->fields[i].name; i++)
		if (json_object_get(data, tr->fields[i].name))
			f += sprintf(f, "%s%s", f[-1] == '{' ? "" : ",", tr->fields[i].name);
	*f++ = '}';
	*f = '\0';
	text = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL)
		return -2;
	r->plain_len = strlen(text);
	r->plain = sodium_malloc(r->plain_len + 1);
	if (r->plain)
		memcpy(r->plain, text, r->plain_len + 1);
	sodium_memzero(text, r->plain_len);
	free(text);
	return r->plain ? 0 : -2;
}

/* Overwrites the string values of data in place before the body is freed
 * (jansson does not wipe what it frees). */
static void wipe_values(json_t *body)
{
	json_t *data = json_object_get(body, "data"), *v;
	const char *k;

	json_object_foreach(data, k, v) {
		if (json_is_string(v))
			sodium_memzero((char *)json_string_value(v), json_string_length(v));
	}
}

/* ---- handlers ---- */

static bool path_name(struct vreq *r)
{
	const char *name = gw_req_param(r->call->req, "name");

	if (!cx_name_ok(name))
		return false;
	snprintf(r->name, sizeof(r->name), "%s", name);
	return true;
}

static void put_credential(tn_call_t *call, void *arg)
{
	struct vreq *r = vreq_new(call, arg, OP_PUT);
	json_t *body, *errors;
	mf_err_t err;
	int rc;

	if (r == NULL)
		return;
	errors = json_array();
	if (!path_name(r))
		errors_add(errors, "/name", "the path's credential name must match ^[a-z0-9][a-z0-9_.-]{0,62}$");
	body = gw_req_json(call->req, &err);
	if (body == NULL) {
		json_decref(errors);
		gw_respond_problem(call->req, &err);
		return;
	}
	r->dek = sodium_malloc(CX_DEK_BYTES);
	rc = r->dek ? validate(r, body, errors) : -2;
	wipe_values(body);
	json_decref(body);
	if (rc == -2) {
		json_decref(errors);
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (json_array_size(errors) > 0) {
		const char *path = json_string_value(json_object_get(json_array_get(errors, 0), "path"));
		const char *msg = json_string_value(json_object_get(json_array_get(errors, 0), "message"));

		mf_err_set(&err, 400, "validation_failed", "%s: %s", path ? path : "", msg ? msg : "invalid");
		gw_respond_problem_ext(call->req, &err, json_pack("{s:o}", "errors", errors));
		return;
	}
	json_decref(errors);
	begin(r);
}

static void delete_credential(tn_call_t *call, void *arg)
{
	struct vreq *r = vreq_new(call, arg, OP_DELETE);

	if (r == NULL)
		return;
	if (!path_name(r)) {
		gw_respond_error(call->req, 404, "not_found", "no such credential");
		return;
	}
	begin(r);
}

static void rotate_tenant_key(tn_call_t *call, void *arg)
{
	struct vreq *r = vreq_new(call, arg, OP_ROTATE);

	if (r == NULL)
		return;
	r->dek = sodium_malloc(CX_DEK_BYTES);
	if (r->dek == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	snprintf(r->name, sizeof(r->name), "vault");
	begin(r);
}

/* The list's page parameters (tn_req_page); a cursor is a credential name. */
static int page_params(gw_req_t *req, int *limit, char cursor[64], mf_err_t *err)
{
	if (tn_req_page(req, limit, cursor, err) < 0)
		return -1;
	if (cursor[0] && !cx_name_ok(cursor)) {
		cursor[0] = '\0';
		return mf_err_set(err, 400, "validation_failed", "cursor is not one this server issued");
	}
	return 0;
}

/* reads: one round trip through vault_meta */
static const char meta_sql[] =
	"SELECT name, type, version, fields, created_at, updated_at FROM platform.vault_meta($1, $2, $3, $4::int)";

struct read {
	gw_req_t *req;
	int limit;
	bool one;
};

static void read_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_call_t *call = arg;
	struct read *rd = call->data;
	json_t *items;
	int n;

	if (err) {
		if (strcmp(err->sqlstate, "42P01") == 0 || strcmp(err->sqlstate, "3F000") == 0)
			gw_respond_error(call->req, 404, "not_found", "no such tenant");
		else
			gw_respond_problem(call->req, err);
		return;
	}
	n = PQntuples(res);
	if (rd->one) {
		if (n == 0)
			gw_respond_error(call->req, 404, "not_found", "no such credential");
		else
			gw_respond_json(call->req, 200, meta_json(res, 0));
		return;
	}
	items = json_array();
	for (int i = 0; i < n && i < rd->limit; i++)
		json_array_append_new(items, meta_json(res, i));
	gw_respond_json(call->req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor",
		tn_page_cursor(n > rd->limit ? PQgetvalue(res, rd->limit - 1, 0) : NULL)));
}

static void read_meta(tn_call_t *call, cx_vault_t *v, bool one)
{
	cx_vault_worker_t *vw = worker_vault(call->req);
	struct read *rd;
	char cursor[64] = "", lim[16], name[CX_NAME_MAX + 1] = "";
	mf_err_t err;
	int limit = 1;

	if (vw == NULL || vw->pg == NULL) {
		gw_respond_error(call->req, 503, "vault_unavailable", "the vault is not configured on this instance");
		return;
	}
	if (call->schema == NULL || call->schema[0] == '\0') {
		gw_respond_error(call->req, 404, "not_found", one ? "no such credential" : "this tenant has no vault");
		return;
	}
	if (one) {
		const char *n = gw_req_param(call->req, "name");

		if (!cx_name_ok(n)) {
			gw_respond_error(call->req, 404, "not_found", "no such credential");
			return;
		}
		snprintf(name, sizeof(name), "%s", n);
	} else if (page_params(call->req, &limit, cursor, &err) < 0) {
		gw_respond_problem(call->req, &err);
		return;
	}
	rd = calloc(1, sizeof(*rd));
	if (rd == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return;
	}
	rd->limit = limit;
	rd->one = one;
	call->data = rd;
	call->data_free = free;
	snprintf(lim, sizeof(lim), "%d", one ? 1 : limit + 1);
	{
		const char *p[4] = { call->schema, one ? name : NULL, cursor, lim };

		if (mf_pg_query(vw->pg, meta_sql, 4, p, read_done, call) < 0)
			gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
	}
}

static void list_credentials(tn_call_t *call, void *arg)
{
	read_meta(call, arg, false);
}

static void get_credential(tn_call_t *call, void *arg)
{
	read_meta(call, arg, true);
}

int cx_vault_routes(cx_vault_t *v, struct tn *tn, gw_router_t *api)
{
	const unsigned J = GW_ROUTE_JSON_BODY;
	const char *one = "/v1/tenants/{tenant_id}/credentials/{name}";

	if (tn_guard_add(api, tn, "PUT", one, POL_CREDENTIALS, J, put_credential, v) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/credentials", POL_CREDENTIALS, 0, list_credentials,
			 v) < 0 ||
	    tn_guard_add(api, tn, "GET", one, POL_CREDENTIALS, 0, get_credential, v) < 0 ||
	    tn_guard_add(api, tn, "DELETE", one, POL_CREDENTIALS, 0, delete_credential, v) < 0 ||
	    tn_guard_add(api, tn, "POST", "/v1/tenants/{tenant_id}/vault/rotate", POL_CREDENTIALS, 0,
			 rotate_tenant_key, v) < 0)
		return -1;
	return 0;
}
