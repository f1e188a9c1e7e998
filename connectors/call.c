/*
 * call.c - the connector runtime: cx_call() and the per-worker cache of
 * connectors with their credentials turned into auth headers.
 *
 * A call moves through stages, each of which may wait on the worker's
 * loop (a timer, the pool, the vault, the limiter, curl) and then resumes
 * at the next:
 *
 *   LOOKUP  the connector and its credential (cache, else one query and
 *           one vault open shared by every call that misses meanwhile)
 *   HOLD    a peer's Retry-After still running for this connector
 *   LIMIT   the connector's cluster-wide outbound rate (gw_rl)
 *   AUTH    OAuth2 only: the shared token, or fetch it (one caller in the
 *           process fetches, the others poll every few milliseconds)
 *   SEND    the request through cx_http (egress guard on every connect)
 *
 * 429 and 503 set the connector's hold from Retry-After (all workers wait
 * it out) and are retried while attempts and the call's budget last; so
 * are failures before the request reached the peer (DNS, connect).  A 401
 * with an OAuth2 token drops the token and retries once with a new one.
 * Timeouts are not retried here: the peer may have acted, and the engine
 * decides (the Idempotency-Key is the same on every attempt).
 *
 * Cached entries live connector_cache_ttl_ms; a change on this worker
 * drops its copy at once, other workers see it when theirs expires.
 * Secret material (auth header values, OAuth2 client secrets and tokens)
 * sits in sodium_malloc'd memory and is wiped when the entry goes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <sodium.h>

#include "connectors/cx.h"
#include "connectors/redact.h"
#include "connectors/vault.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/otlp.h"
#include "core/trace.h"
#include "core/worker.h"
#include "policies/policy.h"
#include "gateway/ratelimit.h"

#define TOKEN_POLL_MS 5
#define TOKEN_MAX 8192
#define SUMMARY_BODY_MAX 4096
#define MAX_HOLD_MS (3600 * 1000LL)

long long cx_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- cache entries ---- */

enum ent_state { ENT_LOADING, ENT_READY, ENT_FAILED };
enum auth_kind { AUTH_NONE, AUTH_HEADER, AUTH_OAUTH };

#define ENT_SECRETS 6

struct cx_entry {
	cx_entry_t *next;		/* hash chain */
	cx_worker_t *xw;		/* NULL once the worker is gone (a load still pending) */
	int refs;			/* the cache's, each call's, a pending load's */
	bool cached;
	char key[40 + CX_CONN_NAME_MAX];	/* tenant_id "/" name */
	char tenant_id[37];
	char schema[64];
	enum ent_state state;
	long long loaded_ms;
	mf_err_t err;			/* FAILED: why */
	cx_conn_t conn;
	enum auth_kind auth;
	char auth_name[80];		/* header of AUTH_HEADER */
	char *auth_value;		/* sodium_malloc'd */
	char *raw_secret;		/* the credential's secret value alone (sodium_malloc'd) */
	/* OAuth2 client credentials (secrets sodium_malloc'd) */
	char *token_url, *client_id, *client_secret, *scope, *audience;
	bool secret_in_body;
	char tok_key[160];		/* tenant/credential/version in the shared table */
	char hold_key[120];		/* tenant/connector in the shared table */
	char rl_key[40];
	/* values a summary must never show, NULL-terminated (point into the above) */
	const char *secrets[ENT_SECRETS + 1];
	/* the tenant's effective egress policy (policies/policy.h) */
	json_t *allow_hosts;
	bool allow_private;
	char base_host[256];		/* credentials go to this host only */
	cx_op_t *waiters;		/* calls waiting for the load */
};

static char *secure_dup(const char *s)
{
	size_t n = strlen(s);
	char *p = sodium_malloc(n + 1);

	if (p)
		memcpy(p, s, n + 1);
	return p;
}

static void secure_free(char **p)
{
	if (*p) {
		sodium_free(*p);	/* wipes */
		*p = NULL;
	}
}

static void ent_unref(cx_entry_t *e)
{
	if (e == NULL || --e->refs > 0)
		return;
	cx_conn_free(&e->conn);
	secure_free(&e->auth_value);
	secure_free(&e->raw_secret);
	secure_free(&e->client_secret);
	free(e->token_url);
	free(e->client_id);
	free(e->scope);
	free(e->audience);
	json_decref(e->allow_hosts);
	free(e);
}

static size_t slot_of(const cx_worker_t *xw, const char *key)
{
	unsigned long long h = 1469598103934665603ull;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h % xw->nslots);
}

static void cache_remove(cx_worker_t *xw, cx_entry_t *e)
{
	cx_entry_t **pp;

	if (!e->cached)
		return;
	for (pp = &xw->slots[slot_of(xw, e->key)]; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			e->cached = false;
			xw->nentries--;
			ent_unref(e);
			return;
		}
}

static cx_entry_t *cache_find(cx_worker_t *xw, const char *key)
{
	for (cx_entry_t *e = xw->slots[slot_of(xw, key)]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

void cx_cache_forget(cx_worker_t *xw, const char *tenant_id, const char *name)
{
	char key[sizeof(((cx_entry_t *)0)->key)];
	cx_entry_t *e;

	snprintf(key, sizeof(key), "%s/%s", tenant_id, name);
	if ((e = cache_find(xw, key)) != NULL && e->state != ENT_LOADING)
		cache_remove(xw, e);
}

/* ---- calls ---- */

enum stage { ST_LOOKUP, ST_HOLD, ST_LIMIT, ST_AUTH, ST_SEND, ST_WAIT };

struct cx_op {
	cx_op_t *prev, *next;		/* xw->ops */
	cx_op_t *wnext;			/* in an entry's waiters */
	cx_worker_t *xw;
	cx_call_cb cb;
	void *arg;
	enum stage stage;
	bool rl_pending;		/* a gw_rl answer is due: the op outlives a cancel until it comes */
	bool cancelled;
	bool fetching;			/* this call fetches the OAuth2 token */
	bool token_retried;
	char tenant_id[37], schema[64], name[CX_CONN_NAME_MAX];
	char *method, *path;
	cx_http_header_t *headers;
	int nheaders;
	char *body;
	size_t body_len;
	char idem[96];
	char traceparent[MF_TRACE_HEADER_SIZE];
	char span_parent[17];		/* the caller's span ("" = none): the call span's parent */
	unsigned long long start_ns;	/* wall clock, for the span */
	cx_entry_t *ent;
	struct event *timer;
	cx_http_call_t *http;
	cx_tok_view_t tok;
	char *token;			/* sodium_malloc'd copy for this attempt */
	int attempts, max_attempts;	/* max_attempts 0: the connector's */
	long long started, deadline;
	long long retry_after_ms;
	char *url;			/* of the current attempt */
	int redirects;
	bool cross_host;		/* redirected to another host: no credentials */
	mf_err_t err;
	const char *error;
	int http_status;
};

static void op_next(cx_op_t *op);
static void token_send(cx_op_t *op);
static void op_finish(cx_op_t *op, const cx_http_response_t *res);

/* Takes the op off its worker's list of calls in flight. */
static void op_unlink(cx_op_t *op)
{
	cx_worker_t *xw = op->xw;

	if (xw == NULL)
		return;
	if (op->prev)
		op->prev->next = op->next;
	else
		xw->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->xw = NULL;
}

static void op_free(cx_op_t *op)
{
	op_unlink(op);
	if (op->timer)
		event_free(op->timer);
	ent_unref(op->ent);
	secure_free(&op->token);
	for (int i = 0; i < op->nheaders; i++) {
		free((char *)op->headers[i].name);
		free((char *)op->headers[i].value);
	}
	free(op->headers);
	free(op->method);
	free(op->path);
	free(op->body);
	free(op->url);
	free(op);
}

/* The limiter still owes this op an answer (gw_rl has no cancel): it
 * leaves the worker's list and waits, inert, for limit_cb to free it. */
static void op_zombie(cx_op_t *op)
{
	op_unlink(op);
	op->cancelled = true;
	evtimer_del(op->timer);
}

static void op_wait(cx_op_t *op, long long ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };

	evtimer_add(op->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	op_next(arg);
}

/* Ends the call with an error (no response). */
static void op_fail(cx_op_t *op, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void op_fail(cx_op_t *op, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mf_err_setv(&op->err, status, code, fmt, ap);
	va_end(ap);
	op->error = op->err.code;
	op->http_status = status;
	op_finish(op, NULL);
}

/* ---- LOOKUP ---- */

static void ent_wake(cx_entry_t *e)
{
	cx_op_t *w = e->waiters;

	e->waiters = NULL;
	while (w) {
		cx_op_t *next = w->wnext;

		w->wnext = NULL;
		op_wait(w, 0);	/* resume from the loop, not from inside this callback */
		w = next;
	}
}

static void ent_failed(cx_entry_t *e, const mf_err_t *err)
{
	e->state = ENT_FAILED;
	e->err = *err;
	if (e->xw)
		cache_remove(e->xw, e);	/* failures are not cached: the next call asks again */
	ent_wake(e);
}

static void ent_ready(cx_entry_t *e)
{
	int n = 0;

	e->state = ENT_READY;
	e->loaded_ms = cx_now_ms();
	if (e->auth_value)
		e->secrets[n++] = e->auth_value;
	if (e->raw_secret)
		e->secrets[n++] = e->raw_secret;
	if (e->client_secret)
		e->secrets[n++] = e->client_secret;
	e->secrets[n] = NULL;
	ent_wake(e);
}

/* Wipes the string values of a parsed secret before jansson frees them. */
static void json_wipe(json_t *j)
{
	const char *k;
	json_t *v;

	json_object_foreach(j, k, v) {
		if (json_is_string(v))
			sodium_memzero((char *)json_string_value(v), json_string_length(v));
	}
	json_decref(j);
}

static const char *sval(json_t *d, const char *k)
{
	const char *s = json_string_value(json_object_get(d, k));

	return s ? s : "";
}

/* Turns the opened credential into what each call sends. */
static int ent_auth(cx_entry_t *e, const cx_secret_t *s, mf_err_t *err)
{
	json_t *d = json_loadb((const char *)s->data, s->len, 0, NULL);
	int rc = 0;

	if (!json_is_object(d)) {
		json_decref(d);
		return mf_err_set(err, 409, "credential_unreadable", "credential %s is not readable", e->conn.credential);
	}
	if (strcmp(s->type, "bearer") == 0) {
		char *v = sodium_malloc(strlen(sval(d, "token")) + 8);

		e->auth = AUTH_HEADER;
		snprintf(e->auth_name, sizeof(e->auth_name), "Authorization");
		if (v)
			sprintf(v, "Bearer %s", sval(d, "token"));
		e->auth_value = v;
		e->raw_secret = secure_dup(sval(d, "token"));
	} else if (strcmp(s->type, "basic") == 0) {
		const char *u = sval(d, "username"), *p = sval(d, "password");
		size_t n = strlen(u) + 1 + strlen(p);
		char *raw = sodium_malloc(n + 1);
		size_t b64 = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
		char *v = sodium_malloc(b64 + 6);

		e->auth = AUTH_HEADER;
		snprintf(e->auth_name, sizeof(e->auth_name), "Authorization");
		if (raw && v) {
			sprintf(raw, "%s:%s", u, p);
			memcpy(v, "Basic ", 6);
			sodium_bin2base64(v + 6, b64, (const unsigned char *)raw, n, sodium_base64_VARIANT_ORIGINAL);
			e->auth_value = v;
			v = NULL;
		}
		e->raw_secret = secure_dup(p);
		if (raw)
			sodium_free(raw);
		if (v)
			sodium_free(v);
	} else if (strcmp(s->type, "api_key_header") == 0) {
		e->auth = AUTH_HEADER;
		snprintf(e->auth_name, sizeof(e->auth_name), "%s", sval(d, "header"));
		e->auth_value = secure_dup(sval(d, "value"));
		e->raw_secret = secure_dup(sval(d, "value"));
	} else if (strcmp(s->type, "oauth2_client_credentials") == 0) {
		e->auth = AUTH_OAUTH;
		e->token_url = strdup(sval(d, "token_url"));
		e->client_id = strdup(sval(d, "client_id"));
		e->client_secret = secure_dup(sval(d, "client_secret"));
		e->scope = json_object_get(d, "scope") ? strdup(sval(d, "scope")) : NULL;
		e->audience = json_object_get(d, "audience") ? strdup(sval(d, "audience")) : NULL;
		e->secret_in_body = strcmp(sval(d, "auth_method"), "body") == 0;
		snprintf(e->tok_key, sizeof(e->tok_key), "t/%s/%s/%d", e->tenant_id, e->conn.credential, s->version);
		if (!e->token_url || !e->client_id || !e->client_secret)
			rc = -1;
	} else {
		rc = mf_err_set(err, 409, "credential_unreadable", "credential %s has a type connectors cannot use",
				e->conn.credential);
	}
	if (rc == 0 && e->auth == AUTH_HEADER && (e->auth_value == NULL || !cx_header_name_ok(e->auth_name)))
		rc = -1;
	if (rc < 0 && err->code[0] == '\0')
		mf_err_set(err, 503, "over_capacity", "out of memory; retry");
	json_wipe(d);
	return rc;
}

static void secret_opened(cx_secret_t *s, const mf_err_t *err, void *arg)
{
	cx_entry_t *e = arg;
	mf_err_t e2;

	mf_err_clear(&e2);
	if (e->xw == NULL) {
		cx_secret_free(s);
	} else if (s == NULL) {
		if (err->status == 404)
			mf_err_set(&e2, 409, "credential_missing", "connector %s names credential %s, which does not exist",
				   e->conn.name, e->conn.credential);
		else
			e2 = *err;
		ent_failed(e, &e2);
	} else {
		int rc = ent_auth(e, s, &e2);

		cx_secret_free(s);
		if (rc < 0)
			ent_failed(e, &e2);
		else
			ent_ready(e);
	}
	ent_unref(e);	/* the load's */
}

static int ent_policy(cx_entry_t *e, const PGresult *r);

static void conn_loaded(const PGresult *res, const mf_err_t *err, void *arg)
{
	cx_entry_t *e = arg;
	mf_err_t e2;

	if (e->xw == NULL) {
		ent_unref(e);
		return;
	}
	if (err) {
		ent_failed(e, err);
	} else if (PQntuples(res) != 1) {
		mf_err_set(&e2, 404, "not_found", "no such connector");
		ent_failed(e, &e2);
	} else if (cx_conn_from_row(res, 0, &e->conn) < 0 || ent_policy(e, res) < 0 ||
		   cx_url_host(e->conn.base_url, e->base_host, sizeof(e->base_host)) < 0) {
		mf_err_set(&e2, 500, "internal", "stored connector unreadable");
		ent_failed(e, &e2);
	} else if (e->conn.credential[0]) {
		if (cx_vault_open(e->xw->w->vault, e->tenant_id, e->schema, e->conn.credential, secret_opened, e) == 0)
			return;	/* the load's reference goes on to secret_opened */
		mf_err_set(&e2, 503, "vault_unavailable", "the vault cannot open credentials now; retry");
		ent_failed(e, &e2);
	} else {
		ent_ready(e);
	}
	ent_unref(e);
}

/* The connector (columns 0-13) and the policy documents of its tenant's
 * chain (14 own, 15 parent, 16 grandparent, 17 depth). */
static const char load_sql[] =
	"SELECT c.*, t.policy::text, p.policy::text, g.policy::text, "
	"(p.id IS NOT NULL)::int + (g.id IS NOT NULL)::int "
	"FROM platform.connector_rows($1, $2, '', 1) c "
	"CROSS JOIN platform.tenants t LEFT JOIN platform.tenants p ON p.id = t.parent_id "
	"LEFT JOIN platform.tenants g ON g.id = p.parent_id WHERE t.id = $3::uuid";

/* The tenant's effective egress policy from the chain in the load's row. */
static int ent_policy(cx_entry_t *e, const PGresult *r)
{
	int depth = atoi(PQgetvalue(r, 0, 17));
	json_t *eff = NULL, *eg;

	/* root first: grandparent (16), parent (15), own (14); each is capped
	 * by the effective policy above it */
	for (int i = 0; i <= depth; i++) {
		int col = i == depth ? 14 : (depth - i == 2 ? 16 : 15);
		json_t *d = PQgetisnull(r, 0, col) ? NULL : json_loads(PQgetvalue(r, 0, col), 0, NULL);
		json_t *next = pol_policy_effective(eff, d);

		json_decref(d);
		json_decref(eff);
		if ((eff = next) == NULL)
			return -1;
	}
	eg = json_object_get(eff, "egress");
	e->allow_hosts = json_incref(json_object_get(eg, "allow_hosts"));
	e->allow_private = json_is_true(json_object_get(eg, "allow_private"));
	json_decref(eff);
	return e->allow_hosts ? 0 : -1;
}

static void stage_lookup(cx_op_t *op)
{
	cx_worker_t *xw = op->xw;
	char key[sizeof(((cx_entry_t *)0)->key)];
	cx_entry_t *e;
	long long now = cx_now_ms();

	if (op->ent) {
		/* woken after a load */
		e = op->ent;
		if (e->state == ENT_FAILED) {
			op_fail(op, e->err.status, e->err.code, "%s", e->err.detail);
			return;
		}
		op->deadline = op->started + e->conn.max_wait_ms;
		op->stage = ST_HOLD;
		op_next(op);
		return;
	}
	snprintf(key, sizeof(key), "%s/%s", op->tenant_id, op->name);
	e = cache_find(xw, key);
	if (e && e->state == ENT_READY && now - e->loaded_ms > xw->w->cfg->connector_cache_ttl_ms)
		cache_remove(xw, e), e = NULL;
	if (e == NULL) {
		const char *p[3] = { op->schema, op->name, op->tenant_id };
		unsigned char h[16];

		if ((e = calloc(1, sizeof(*e))) == NULL) {
			op_fail(op, 503, "over_capacity", "out of memory; retry");
			return;
		}
		e->xw = xw;
		e->refs = 2;	/* the cache's and the load's */
		e->cached = true;
		memcpy(e->key, key, sizeof(key));
		snprintf(e->tenant_id, sizeof(e->tenant_id), "%s", op->tenant_id);
		snprintf(e->schema, sizeof(e->schema), "%s", op->schema);
		snprintf(e->hold_key, sizeof(e->hold_key), "h/%s", key);
		crypto_generichash(h, sizeof(h), (const unsigned char *)key, strlen(key), NULL, 0);
		memcpy(e->rl_key, "o:", 2);
		sodium_bin2hex(e->rl_key + 2, sizeof(e->rl_key) - 2, h, sizeof(h));
		e->state = ENT_LOADING;
		e->next = xw->slots[slot_of(xw, key)];
		xw->slots[slot_of(xw, key)] = e;
		xw->nentries++;
		if (mf_pg_query(xw->w->pg, load_sql, 3, p, conn_loaded, e) < 0) {
			mf_err_t err;

			mf_err_set(&err, 503, "database_unavailable", "the database is not reachable");
			err.retry_after = 1;
			e->refs--;	/* the load never started */
			ent_failed(e, &err);
			op_fail(op, 503, "database_unavailable", "the database is not reachable");
			return;
		}
	}
	e->refs++;
	op->ent = e;
	if (e->state == ENT_LOADING) {
		op->wnext = e->waiters;
		e->waiters = op;
		return;
	}
	stage_lookup(op);
}

/* ---- HOLD and LIMIT ---- */

static void stage_hold(cx_op_t *op)
{
	long long now = cx_now_ms();
	long long until = cx_hold_get(op->xw->cx->shared, op->ent->hold_key, now);

	if (until == 0) {
		op->stage = ST_LIMIT;
		op_next(op);
		return;
	}
	/* stays in HOLD: another call may extend the hold meanwhile */
	op->xw->n_held++;
	if (until > op->deadline) {
		op->retry_after_ms = until - now;
		op_fail(op, 429, "rate_limited", "connector %s: the peer asked to wait longer than this call may",
			op->name);
		return;
	}
	op_wait(op, until - now);
}

static void limit_cb(enum gw_rl_outcome outcome, const gw_rl_result_t *res, void *arg)
{
	cx_op_t *op = arg;

	op->rl_pending = false;
	if (op->cancelled) {
		op_free(op);
		return;
	}
	if (outcome == GW_RL_ADMIT) {
		op->stage = ST_AUTH;
		op_next(op);
		return;
	}
	/* over the connector's rate: wait for the next window (windows are
	 * aligned to the unix epoch) if the budget allows; a little jitter
	 * keeps the waiters from arriving all in the same millisecond */
	struct timespec ts;
	long long win = op->ent->conn.rl_window_s * 1000LL, wait;

	clock_gettime(CLOCK_REALTIME, &ts);
	wait = win - ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) % win + (long long)randombytes_uniform(20);
	if (cx_now_ms() + wait > op->deadline) {
		op->retry_after_ms = wait;
		op_fail(op, 429, "rate_limited", "connector %s is at its outbound rate limit", op->name);
		return;
	}
	op->stage = ST_LIMIT;
	op_wait(op, wait);
}

static void stage_limit(cx_op_t *op)
{
	const cx_conn_t *c = &op->ent->conn;
	gw_rl_result_t res;
	enum gw_rl_outcome o;

	if (c->rl_requests == 0) {
		op->stage = ST_AUTH;
		op_next(op);
		return;
	}
	o = gw_rl_acquire(op->xw->w->rl, op->ent->rl_key, c->rl_requests, c->rl_window_s, &res, limit_cb, op);
	if (o == GW_RL_PENDING) {
		op->rl_pending = true;
		return;
	}
	limit_cb(o, &res, op);
}

/* ---- AUTH (OAuth2 client credentials) ---- */

static char *form_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, (int)strlen(s));
	char *out = e ? secure_dup(e) : NULL;

	if (e) {
		sodium_memzero(e, strlen(e));
		curl_free(e);
	}
	return out;
}

static void token_fetched(const cx_http_response_t *res, void *arg)
{
	cx_op_t *op = arg;
	cx_entry_t *e = op->ent;
	json_t *j = NULL;
	const char *tok = NULL, *type;
	long long expires_in = 300;
	char detail[160];

	op->http = NULL;
	op->fetching = false;
	op->xw->n_token_fetches++;
	if (res->error) {
		snprintf(detail, sizeof(detail), "the token endpoint could not be reached (%s)", res->error);
	} else if (res->status != 200) {
		snprintf(detail, sizeof(detail), "the token endpoint answered %d", res->status);
	} else if ((j = json_loadb(res->body, res->body_len, 0, NULL)) == NULL ||
		   (tok = json_string_value(json_object_get(j, "access_token"))) == NULL || tok[0] == '\0' ||
		   strlen(tok) >= TOKEN_MAX || !cx_header_value_ok(tok)) {
		tok = NULL;
		snprintf(detail, sizeof(detail), "the token endpoint's answer has no usable access_token");
	} else if ((type = json_string_value(json_object_get(j, "token_type"))) != NULL &&
		   strcasecmp(type, "bearer") != 0) {
		tok = NULL;
		snprintf(detail, sizeof(detail), "the token endpoint issued a token of type other than Bearer");
	}
	if (tok) {
		json_t *ei = json_object_get(j, "expires_in");
		long long life, margin;

		if (json_is_integer(ei) && json_integer_value(ei) > 0)
			expires_in = json_integer_value(ei);
		/* renew shortly before expiry: a tenth of the lifetime, at most a minute */
		life = expires_in * 1000;
		margin = life / 10 < 60000 ? life / 10 : 60000;
		cx_tok_done(op->xw->cx->shared, e->tok_key, tok, cx_now_ms() + life - margin, NULL);
		mf_info("connectors", "oauth2 token fetched", MF_S("tenant_id", op->tenant_id),
			MF_S("connector", op->name), MF_I("expires_in", expires_in));
	} else {
		cx_tok_done(op->xw->cx->shared, e->tok_key, NULL, 0, detail);
		mf_warn("connectors", "oauth2 token fetch failed", MF_S("tenant_id", op->tenant_id),
			MF_S("connector", op->name), MF_S("detail", detail));
	}
	if (j) {
		if (tok)
			sodium_memzero((char *)tok, strlen(tok));
		json_decref(j);
	}
	/* this call now reads the token like every other */
	op->tok.state = CX_TOK_FETCHING;
	op_next(op);
}

static void token_fetch(cx_op_t *op)
{
	cx_entry_t *e = op->ent;
	char host[256] = "";

	/* the token endpoint is an outbound host like any other */
	if (cx_url_host(e->token_url, host, sizeof(host)) < 0 || !cx_host_allowed(e->allow_hosts, host)) {
		cx_tok_done(op->xw->cx->shared, e->tok_key, NULL, 0, "the token endpoint's host is not allowed");
		op_fail(op, 422, "egress_refused",
			"connector %s: the token endpoint's host %.200s is not in the tenant's egress.allow_hosts policy",
			op->name, host);
		return;
	}
	token_send(op);
}

static void token_send(cx_op_t *op)
{
	cx_entry_t *e = op->ent;
	char *id = form_escape(e->client_id), *sec = form_escape(e->client_secret);
	char *scope = e->scope ? form_escape(e->scope) : NULL, *aud = e->audience ? form_escape(e->audience) : NULL;
	size_t n = 64 + (id ? strlen(id) : 0) + (sec ? strlen(sec) : 0) + (scope ? strlen(scope) : 0) +
		   (aud ? strlen(aud) : 0);
	char *body = sodium_malloc(n), *basic = NULL, *raw = NULL;
	cx_http_header_t h[3];
	int nh = 0;
	cx_http_request_t req = { 0 };
	mf_err_t err;

	h[nh++] = (cx_http_header_t){ "Content-Type", "application/x-www-form-urlencoded" };
	h[nh++] = (cx_http_header_t){ "Accept", "application/json" };
	if (body && id && sec) {
		int len = snprintf(body, n, "grant_type=client_credentials");

		if (scope)
			len += snprintf(body + len, n - (size_t)len, "&scope=%s", scope);
		if (aud)
			len += snprintf(body + len, n - (size_t)len, "&audience=%s", aud);
		if (e->secret_in_body) {
			len += snprintf(body + len, n - (size_t)len, "&client_id=%s&client_secret=%s", id, sec);
		} else {
			/* RFC 6749 2.3.1: Basic over the form-encoded id and secret */
			size_t rn = strlen(id) + 1 + strlen(sec);
			size_t b64 = sodium_base64_encoded_len(rn, sodium_base64_VARIANT_ORIGINAL);

			raw = sodium_malloc(rn + 1);
			basic = sodium_malloc(b64 + 6);
			if (raw && basic) {
				sprintf(raw, "%s:%s", id, sec);
				memcpy(basic, "Basic ", 6);
				sodium_bin2base64(basic + 6, b64, (const unsigned char *)raw, rn,
						  sodium_base64_VARIANT_ORIGINAL);
				h[nh++] = (cx_http_header_t){ "Authorization", basic };
			}
		}
		req.method = "POST";
		req.url = e->token_url;
		req.headers = h;
		req.nheaders = nh;
		req.body = body;
		req.body_len = (size_t)len;
		req.timeout_ms = e->conn.timeout_ms;
		req.max_response_bytes = 65536;
		req.allow_private = e->allow_private;
	}
	if (req.url && (e->secret_in_body || basic))
		op->http = cx_http_send(op->xw->http, &req, token_fetched, op, &err);
	else
		mf_err_set(&err, 503, "over_capacity", "out of memory; retry");
	if (id)
		sodium_free(id);
	if (sec)
		sodium_free(sec);
	if (scope)
		sodium_free(scope);
	if (aud)
		sodium_free(aud);
	if (body)
		sodium_free(body);
	if (raw)
		sodium_free(raw);
	if (basic)
		sodium_free(basic);
	if (op->http == NULL) {
		cx_tok_done(op->xw->cx->shared, e->tok_key, NULL, 0, err.detail);
		op_fail(op, 502, "oauth_failed", "connector %s: the token request could not be sent: %s", op->name,
			err.detail);
		return;
	}
	op->fetching = true;
}

static void stage_auth(cx_op_t *op)
{
	cx_entry_t *e = op->ent;
	char *tok;

	if (e->auth != AUTH_OAUTH) {
		op->stage = ST_SEND;
		op_next(op);
		return;
	}
	if ((tok = sodium_malloc(TOKEN_MAX)) == NULL) {
		op_fail(op, 503, "over_capacity", "out of memory; retry");
		return;
	}
	switch (cx_tok_get(op->xw->cx->shared, e->tok_key, cx_now_ms(), tok, TOKEN_MAX, &op->tok)) {
	case CX_TOK_READY:
		secure_free(&op->token);
		op->token = tok;
		op->stage = ST_SEND;
		op_next(op);
		return;
	case CX_TOK_FETCHING:
		sodium_free(tok);
		if (cx_now_ms() + TOKEN_POLL_MS > op->deadline) {
			op_fail(op, 504, "oauth_failed", "connector %s: no token arrived within the call's budget",
				op->name);
			return;
		}
		op_wait(op, TOKEN_POLL_MS);
		return;
	case CX_TOK_FAILED:
		sodium_free(tok);
		op_fail(op, 502, "oauth_failed", "connector %s: %s", op->name, op->tok.detail);
		return;
	case CX_TOK_EMPTY:
		sodium_free(tok);
		token_fetch(op);
		return;
	}
}

/* ---- SEND ---- */

static long long retry_after_ms(const cx_http_response_t *res)
{
	return cx_retry_after_ms(cx_http_res_header(res, "Retry-After"), time(NULL));
}

static bool is_redirect(int status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Follows a redirect like a browser would (303, and 301/302 after a
 * POST, turn into a GET without a body), re-checking the new URL with the
 * egress guard and the tenant's host policy in stage_send. */
static void follow(cx_op_t *op, const cx_http_response_t *res)
{
	CURLU *u = curl_url();
	char *next = NULL;
	mf_err_t err;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, op->url, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_URL, cx_http_res_header(res, "Location"), 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &next, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		op_fail(op, 502, "redirect_refused", "connector %s: the peer redirected to an invalid URL", op->name);
		return;
	}
	curl_url_cleanup(u);
	if (cx_egress_url_check(op->xw->cx->egress, next, &err) < 0) {
		curl_free(next);
		op_fail(op, 422, "egress_refused", "connector %s: redirect refused: %s", op->name, err.detail);
		return;
	}
	free(op->url);
	op->url = strdup(next);
	curl_free(next);
	if (op->url == NULL) {
		op_fail(op, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (res->status == 303 || ((res->status == 301 || res->status == 302) && strcmp(op->method, "POST") == 0)) {
		char *get = strdup("GET");

		if (get) {
			free(op->method);
			op->method = get;
		}
		free(op->body);
		op->body = NULL;
		op->body_len = 0;
	}
	op->redirects++;
	op->attempts--;		/* a hop of the same attempt */
	op->stage = ST_SEND;
	op_next(op);
}

static void http_done(const cx_http_response_t *res, void *arg)
{
	cx_op_t *op = arg;
	cx_entry_t *e = op->ent;
	long long now = cx_now_ms();
	bool last = op->attempts >= (op->max_attempts > 0 ? op->max_attempts : e->conn.max_attempts);

	op->http = NULL;
	if (is_redirect(res->status) && op->redirects < e->conn.follow_redirects &&
	    cx_http_res_header(res, "Location")) {
		follow(op, res);
		return;
	}
	if (res->status == 429 || res->status == 503) {
		long long ra = retry_after_ms(res);

		if (ra < 0)
			ra = 1000LL << (op->attempts - 1 < 5 ? op->attempts - 1 : 5);
		if (ra > MAX_HOLD_MS)
			ra = MAX_HOLD_MS;
		op->retry_after_ms = ra;
		cx_hold_set(op->xw->cx->shared, e->hold_key, now + ra);
		if (!last && now + ra <= op->deadline) {
			op->xw->n_retries++;
			op->stage = ST_HOLD;
			op_next(op);
			return;
		}
	} else if (res->status == 401 && e->auth == AUTH_OAUTH && op->token && !op->token_retried) {
		/* the peer no longer takes the token: a new one, once */
		cx_tok_drop(op->xw->cx->shared, e->tok_key, op->token);
		op->token_retried = true;
		op->attempts--;
		op->tok.state = CX_TOK_EMPTY;
		op->stage = ST_AUTH;
		op_next(op);
		return;
	} else if (res->error && (strcmp(res->error, "connect_failed") == 0 || strcmp(res->error, "dns_failed") == 0) &&
		   !last) {
		long long backoff = 200LL << (op->attempts - 1 < 5 ? op->attempts - 1 : 5);

		if (now + backoff <= op->deadline) {
			op->xw->n_retries++;
			op->stage = ST_HOLD;
			op_wait(op, backoff);
			return;
		}
	}
	if (res->error) {
		static const struct { const char *code; int status; } map[] = {
			{ "egress_refused", 422 }, { "scheme_refused", 422 }, { "redirect_refused", 422 },
			{ "bad_url", 422 }, { "timeout", 504 }, { "too_large", 502 },
		};

		op->http_status = 502;
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strcmp(res->error, map[i].code) == 0)
				op->http_status = map[i].status;
		mf_err_set(&op->err, op->http_status, res->error, "connector %s: %s", op->name, res->detail);
		op->error = op->err.code;
	}
	op_finish(op, res);
}

static void stage_send(cx_op_t *op)
{
	cx_entry_t *e = op->ent;
	const cx_conn_t *c = &e->conn;
	cx_http_header_t h[CX_MAX_HEADERS + 40];
	char bearer[TOKEN_MAX + 8];
	cx_http_request_t req = { 0 };
	long long now = cx_now_ms();
	int nh = 0;
	mf_err_t err;

	char host[256];

	if (op->url == NULL && (op->url = cx_url_join(c->base_url, op->path)) == NULL) {
		op_fail(op, 503, "over_capacity", "out of memory; retry");
		return;
	}
	if (op->redirects == 0) {
		/* the path cannot change the host (it starts with / or ?) */
		memcpy(host, e->base_host, sizeof(host));
	} else if (cx_url_host(op->url, host, sizeof(host)) < 0) {
		op_fail(op, 422, "bad_url", "connector %s: the request URL is not valid", op->name);
		return;
	}
	if (!cx_host_allowed(e->allow_hosts, host)) {
		op_fail(op, 422, "egress_refused",
			"connector %s: host %.200s is not in the tenant's egress.allow_hosts policy", op->name, host);
		return;
	}
	op->cross_host = strcmp(host, e->base_host) != 0;
	for (int i = 0; i < c->nheaders; i++)
		h[nh++] = c->headers[i];
	for (int i = 0; i < op->nheaders && nh < CX_MAX_HEADERS + 32; i++)
		h[nh++] = op->headers[i];
	if (op->cross_host) {
		/* never hand a tenant's credentials to a host it did not configure */
	} else if (e->auth == AUTH_HEADER) {
		h[nh++] = (cx_http_header_t){ e->auth_name, e->auth_value };
	} else if (e->auth == AUTH_OAUTH && op->token) {
		snprintf(bearer, sizeof(bearer), "Bearer %s", op->token);
		h[nh++] = (cx_http_header_t){ "Authorization", bearer };
	}
	h[nh++] = (cx_http_header_t){ "Idempotency-Key", op->idem };
	h[nh++] = (cx_http_header_t){ "traceparent", op->traceparent };
	if (op->body_len)
		h[nh++] = (cx_http_header_t){ "Content-Type", "application/json" };
	req.method = op->method;
	req.url = op->url;
	req.headers = h;
	req.nheaders = nh;
	req.body = op->body;
	req.body_len = op->body_len;
	req.timeout_ms = (int)(op->deadline - now < c->timeout_ms ? op->deadline - now : c->timeout_ms);
	if (req.timeout_ms < 1)
		req.timeout_ms = 1;
	req.max_response_bytes = (size_t)c->max_response_bytes;
	req.max_redirects = 0;	/* followed here, through the same checks */
	req.allow_private = e->allow_private;	/* the tenant's effective egress.allow_private */
	op->attempts++;
	op->stage = ST_WAIT;
	op->http = cx_http_send(op->xw->http, &req, http_done, op, &err);
	sodium_memzero(bearer, sizeof(bearer));
	if (op->http == NULL)
		op_fail(op, err.status ? err.status : 502, err.code[0] ? err.code : "unreachable", "connector %s: %s",
			op->name, err.detail);
}

static void op_next(cx_op_t *op)
{
	switch (op->stage) {
	case ST_LOOKUP: stage_lookup(op); break;
	case ST_HOLD: stage_hold(op); break;
	case ST_LIMIT: stage_limit(op); break;
	case ST_AUTH: stage_auth(op); break;
	case ST_SEND: stage_send(op); break;
	case ST_WAIT: break;
	}
}

/* ---- the summary and the end ---- */

static json_t *headers_json(const cx_http_header_t *h, int n, const char *const *fields)
{
	json_t *o = json_object();

	for (int i = 0; i < n; i++)
		json_object_set_new(o, h[i].name,
				    json_string(cx_redact_header(h[i].name, fields) ? "[redacted]" : h[i].value));
	return o;
}

static json_t *body_json(const char *body, size_t len, const char *ctype, const cx_entry_t *e,
			 const char *const *secrets)
{
	const char *const *fields = (const char *const *)e->conn.redact;

	if (len == 0)
		return json_null();
	if (ctype && strstr(ctype, "json")) {
		json_t *j = json_loadb(body, len, 0, NULL);

		if (j) {
			json_t *r = cx_redact_json(j, fields, secrets, 32);
			char *text;

			json_decref(j);
			text = r ? json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
			if (text && strlen(text) <= SUMMARY_BODY_MAX) {
				free(text);
				return r;
			}
			if (text) {
				char *cut = cx_redact_text(text, strlen(text), secrets, SUMMARY_BODY_MAX);
				json_t *s = json_string(cut ? cut : "");

				free(cut);
				free(text);
				json_decref(r);
				return s;
			}
			json_decref(r);
		}
	}
	{
		char *cut = cx_redact_text(body, len, secrets, SUMMARY_BODY_MAX);
		json_t *s = cut ? json_stringn(cut, strlen(cut)) : NULL;

		free(cut);
		/* not UTF-8: say so rather than show bytes */
		return s ? s : json_string("[binary]");
	}
}

static json_t *summary_json(cx_op_t *op, const cx_http_response_t *res)
{
	const cx_entry_t *e = op->ent;
	const char *const *fields = e ? (const char *const *)e->conn.redact : NULL;
	json_t *req = json_pack("{s:s,s:o}", "method", op->method, "url",
				op->url ? cx_url_redacted(op->url, fields) : json_null());
	json_t *s;

	if (e) {
		cx_http_header_t h[CX_MAX_HEADERS + 40];
		int nh = 0;

		for (int i = 0; i < e->conn.nheaders; i++)
			h[nh++] = e->conn.headers[i];
		for (int i = 0; i < op->nheaders && nh < CX_MAX_HEADERS + 32; i++)
			h[nh++] = op->headers[i];
		if (e->auth != AUTH_NONE)
			h[nh++] = (cx_http_header_t){ e->auth == AUTH_OAUTH ? "Authorization" : e->auth_name,
						      "[redacted]" };
		h[nh++] = (cx_http_header_t){ "Idempotency-Key", op->idem };
		h[nh++] = (cx_http_header_t){ "traceparent", op->traceparent };
		json_object_set_new(req, "headers", headers_json(h, nh, fields));
	}
	s = json_pack("{s:o,s:i,s:I}", "request", req, "attempts", op->attempts, "duration_ms",
		      (json_int_t)(cx_now_ms() - op->started));
	if (res && res->status) {
		const char *secrets[ENT_SECRETS + 2];
		json_t *rh = json_object();
		int n = 0;

		for (int i = 0; e->secrets[i]; i++)
			secrets[n++] = e->secrets[i];
		if (op->token)
			secrets[n++] = op->token;
		secrets[n] = NULL;

		for (const char *const *p = res->headers; p && p[0] && p[1]; p += 2)
			if (!json_object_get(rh, p[0]))
				json_object_set_new(rh, p[0], json_string(cx_redact_header(p[0], fields) ? "[redacted]" : p[1]));
		json_object_set_new(s, "response", json_pack("{s:i,s:o,s:o}", "status", res->status, "headers", rh,
							      "body", body_json(res->body, res->body_len,
										cx_http_res_header(res, "Content-Type"), e,
										secrets)));
	}
	if (op->error)
		json_object_set_new(s, "error", json_pack("{s:s,s:s}", "code", op->error, "detail", op->err.detail));
	return s;
}

/* ---- metrics and spans of calls ----
 * By the connector's kind (cx_kinds: crm, psa, ... generic; "unknown" when
 * the connector could not be loaded) and the call's outcome: both small
 * fixed sets, so the series stay few whatever the tenants do.
 * Process-wide relaxed atomics: every worker adds, /metrics reads. */
enum { K_UNKNOWN = CX_KIND_N, K_N };
enum { OC_OK, OC_HTTP_ERROR, OC_TIMEOUT, OC_REFUSED, OC_UNREACHABLE, OC_RATE_LIMITED, OC_ERROR, OC_N };
static const char *const outcome_names[OC_N] = {
	"ok", "http_error", "timeout", "refused", "unreachable", "rate_limited", "error",
};
static unsigned long long call_counts[K_N][OC_N];
static mf_hist_t call_hist[K_N];

static const char *kind_name(int k)
{
	return k < CX_KIND_N ? cx_kinds[k] : "unknown";
}

static int call_kind(const cx_op_t *op)
{
	if (op->ent == NULL || op->ent->state != ENT_READY || op->ent->conn.kind < 0 ||
	    op->ent->conn.kind >= CX_KIND_N)
		return K_UNKNOWN;
	return op->ent->conn.kind;
}

static int call_outcome(const cx_result_t *r)
{
	if (r->error == NULL)
		return r->status >= 400 ? OC_HTTP_ERROR : OC_OK;
	if (strcmp(r->error, "timeout") == 0)
		return OC_TIMEOUT;
	if (strcmp(r->error, "egress_refused") == 0)
		return OC_REFUSED;
	if (strcmp(r->error, "unreachable") == 0)
		return OC_UNREACHABLE;
	if (strcmp(r->error, "rate_limited") == 0)
		return OC_RATE_LIMITED;
	return r->status >= 400 ? OC_HTTP_ERROR : OC_ERROR;
}

static void call_observe(const cx_op_t *op, const cx_result_t *r)
{
	int k = call_kind(op), oc = call_outcome(r);
	mf_trace_t t;
	json_t *a;

	__atomic_fetch_add(&call_counts[k][oc], 1, __ATOMIC_RELAXED);
	mf_hist_observe(&call_hist[k], r->duration_ms > 0 ? (unsigned long long)r->duration_ms * 1000ULL : 0);
	if (!mf_otlp_enabled() || mf_trace_parse(&t, op->traceparent, strlen(op->traceparent), NULL) < 0)
		return;
	/* the span is the one the outgoing traceparent names as parent */
	a = json_array();
	mf_otlp_attr_str(a, "mspflow.connector.kind", kind_name(k));
	mf_otlp_attr_str(a, "mspflow.connector.outcome", outcome_names[oc]);
	mf_otlp_attr_str(a, "http.request.method", op->method);
	if (r->status)
		mf_otlp_attr_int(a, "http.response.status_code", r->status);
	mf_otlp_attr_int(a, "mspflow.connector.attempts", r->attempts);
	mf_otlp_attr_str(a, "mspflow.tenant_id", op->tenant_id);
	mf_otlp_attr_str(a, "error.type", r->error);
	mf_otlp_span(t.trace_id, t.parent_id, op->span_parent, "connector call", MF_SPAN_CLIENT, op->start_ns,
		     mf_otlp_now_ns(), oc != OC_OK, a);
}

int cx_metrics_render(mf_buf_t *out)
{
	int rc = 0;

	rc |= mf_buf_adds(out, "# HELP mspflow_connector_requests_total Connector calls by connector kind (crm, psa, "
			       "erp, itsm, rmm, llm, email, generic; unknown when the connector could not be loaded) and outcome.\n"
			       "# TYPE mspflow_connector_requests_total counter\n");
	for (int k = 0; k < K_N; k++)
		for (int oc = 0; oc < OC_N; oc++)
			rc |= mf_buf_addf(out, "mspflow_connector_requests_total{kind=\"%s\",outcome=\"%s\"} %llu\n",
					  kind_name(k), outcome_names[oc],
					  __atomic_load_n(&call_counts[k][oc], __ATOMIC_RELAXED));
	rc |= mf_buf_adds(out, "# HELP mspflow_connector_request_duration_seconds Whole connector calls (waits and "
			       "retries included), by connector kind.\n"
			       "# TYPE mspflow_connector_request_duration_seconds histogram\n");
	for (int k = 0; k < K_N; k++) {
		char labels[32];

		snprintf(labels, sizeof(labels), "kind=\"%s\"", kind_name(k));
		rc |= mf_hist_render(out, "mspflow_connector_request_duration_seconds", labels, &call_hist[k]);
	}
	return rc ? -1 : 0;
}

static void op_finish(cx_op_t *op, const cx_http_response_t *res)
{
	cx_result_t r = { 0 };

	if (op->fetching) {
		cx_tok_done(op->xw->cx->shared, op->ent->tok_key, NULL, 0, NULL);
		op->fetching = false;
	}
	r.status = res ? res->status : 0;
	r.error = op->error;
	snprintf(r.detail, sizeof(r.detail), "%s", op->error ? op->err.detail : "");
	r.http_status = op->error ? op->http_status : 200;
	r.res = res;
	r.attempts = op->attempts;
	r.retry_after_ms = op->retry_after_ms;
	r.duration_ms = cx_now_ms() - op->started;
	r.priv = op;
	if (op->error)
		op->xw->n_failures++;
	/* one line per outbound call, like the access log (and with it);
	 * failures always */
	if (op->error)
		mf_warn("connectors", "call failed", MF_S("tenant_id", op->tenant_id), MF_S("connector", op->name),
			MF_S("method", op->method), MF_I("status", r.status), MF_S("error", op->error),
			MF_S("detail", op->err.detail), MF_I("attempts", op->attempts),
			MF_I("duration_ms", r.duration_ms));
	else if (op->xw->w->cfg->access_log)
		mf_info("connectors", "call", MF_S("tenant_id", op->tenant_id), MF_S("connector", op->name),
			MF_S("method", op->method), MF_I("status", r.status), MF_I("attempts", op->attempts),
			MF_I("duration_ms", r.duration_ms));
	call_observe(op, &r);
	op->cb(&r, op->arg);
	if (op->rl_pending) {
		/* the limiter still owes an answer (shutdown): keep the op until it comes */
		op_zombie(op);
		return;
	}
	op_free(op);
}

json_t *cx_result_summary(const cx_result_t *r)
{
	return summary_json((cx_op_t *)r->priv, r->res);
}

/* ---- public ---- */

cx_op_t *cx_call(cx_worker_t *xw, const cx_call_opts_t *o, cx_call_cb cb, void *arg, mf_err_t *err)
{
	cx_op_t *op;
	mf_trace_t in, child;

	if (!cx_name_ok(o->connector))
		return mf_err_set(err, 404, "not_found", "no such connector"), NULL;
	if (o->path && !cx_call_path_ok(o->path))
		return mf_err_set(err, 400, "validation_failed",
				  "path must be empty or start with / or ?, printable ASCII without # or spaces"), NULL;
	if (o->nheaders < 0 || o->nheaders > 32)
		return mf_err_set(err, 400, "validation_failed", "at most 32 headers per call"), NULL;
	for (int i = 0; i < o->nheaders; i++)
		if (!cx_header_name_ok(o->headers[i].name) || cx_header_reserved(o->headers[i].name) ||
		    !cx_header_value_ok(o->headers[i].value))
			return mf_err_set(err, 400, "validation_failed",
					  "header %.64s is not allowed on a connector call", o->headers[i].name), NULL;
	if ((op = calloc(1, sizeof(*op))) == NULL)
		return mf_err_set(err, 503, "over_capacity", "out of memory; retry"), NULL;
	op->xw = xw;
	op->cb = cb;
	op->arg = arg;
	snprintf(op->tenant_id, sizeof(op->tenant_id), "%s", o->tenant_id);
	snprintf(op->schema, sizeof(op->schema), "%s", o->schema);
	snprintf(op->name, sizeof(op->name), "%s", o->connector);
	op->method = strdup(o->method ? o->method : "GET");
	op->path = strdup(o->path ? o->path : "");
	op->headers = calloc((size_t)o->nheaders + 1, sizeof(*op->headers));
	op->body = o->body_len ? malloc(o->body_len) : NULL;
	if (!op->method || !op->path || !op->headers || (o->body_len && !op->body) ||
	    (op->timer = evtimer_new(xw->w->base, timer_cb, op)) == NULL) {
		op_free(op);
		return mf_err_set(err, 503, "over_capacity", "out of memory; retry"), NULL;
	}
	for (int i = 0; i < o->nheaders; i++) {
		op->headers[i].name = strdup(o->headers[i].name);
		op->headers[i].value = strdup(o->headers[i].value);
		op->nheaders++;
		if (!op->headers[i].name || !op->headers[i].value) {
			op_free(op);
			return mf_err_set(err, 503, "over_capacity", "out of memory; retry"), NULL;
		}
	}
	if (o->body_len)
		memcpy(op->body, o->body, o->body_len);
	op->body_len = o->body_len;
	if (o->idempotency_key && o->idempotency_key[0]) {
		snprintf(op->idem, sizeof(op->idem), "%s", o->idempotency_key);
	} else {
		/* 128 random bits from the trace module's per-thread generator
		 * (no system call per call) */
		mf_trace_t k;

		mf_trace_new(&k);
		memcpy(op->idem, k.trace_id, sizeof(k.trace_id));
	}
	if (o->traceparent && mf_trace_parse(&in, o->traceparent, strlen(o->traceparent), NULL) == 0) {
		mf_trace_child(&in, &child);
		memcpy(op->span_parent, in.parent_id, sizeof(op->span_parent));
	} else {
		mf_trace_new(&child);
	}
	op->start_ns = mf_otlp_now_ns();
	if (mf_trace_format(&child, op->traceparent, sizeof(op->traceparent)) < 0)
		op->traceparent[0] = '\0';
	op->max_attempts = o->max_attempts;
	op->started = cx_now_ms();
	op->deadline = op->started + 600000;	/* until the connector is known */
	op->stage = ST_LOOKUP;
	op->next = xw->ops;
	if (xw->ops)
		xw->ops->prev = op;
	xw->ops = op;
	xw->n_calls++;
	op_wait(op, 0);
	return op;
}

void cx_cancel(cx_op_t *op)
{
	cx_entry_t *e = op->ent;

	if (op->fetching)
		cx_tok_done(op->xw->cx->shared, e->tok_key, NULL, 0, NULL);
	if (op->http)
		cx_http_cancel(op->http);
	if (e && e->state == ENT_LOADING) {
		for (cx_op_t **pp = &e->waiters; *pp; pp = &(*pp)->wnext)
			if (*pp == op) {
				*pp = op->wnext;
				break;
			}
	}
	if (op->rl_pending) {
		/* the limiter will answer: free it then */
		op_zombie(op);
		return;
	}
	op_free(op);
}

/* ---- the worker ---- */

cx_worker_t *cx_worker_new(cx_t *cx, struct mf_worker *w, mf_err_t *err)
{
	cx_worker_t *xw = calloc(1, sizeof(*xw));
	cx_http_options_t ho = { 0 };

	if (xw == NULL) {
		mf_err_set(err, 500, "internal", "out of memory");
		return NULL;
	}
	xw->cx = cx;
	xw->w = w;
	xw->nslots = 1024;
	xw->slots = calloc(xw->nslots, sizeof(*xw->slots));
	ho.max_connections = w->cfg->connector_max_connections;
	ho.max_host_connections = w->cfg->connector_max_host_connections;
	ho.max_calls = w->cfg->connector_max_calls;
	ho.max_response_bytes = (size_t)w->cfg->connector_max_response_bytes;
	ho.timeout_ms = w->cfg->connector_timeout_ms;
	ho.connect_timeout_ms = w->cfg->connector_connect_timeout_ms;
	ho.egress = cx->egress;
	if (xw->slots == NULL || (xw->http = cx_http_new(w->base, &ho, err)) == NULL) {
		free(xw->slots);
		free(xw);
		return NULL;
	}
	return xw;
}

void cx_worker_free(cx_worker_t *xw)
{
	if (xw == NULL)
		return;
	/* calls in flight end now, answered "shutting_down" */
	while (xw->ops) {
		cx_op_t *op = xw->ops;

		if (op->http) {
			cx_http_cancel(op->http);
			op->http = NULL;
		}
		if (op->ent && op->ent->state == ENT_LOADING) {
			for (cx_op_t **pp = &op->ent->waiters; *pp; pp = &(*pp)->wnext)
				if (*pp == op) {
					*pp = op->wnext;
					break;
				}
		}
		op_fail(op, 503, "shutting_down", "the server is shutting down; retry");
	}
	for (size_t i = 0; i < xw->nslots; i++) {
		while (xw->slots[i]) {
			cx_entry_t *e = xw->slots[i];

			xw->slots[i] = e->next;
			e->cached = false;
			/* a load still pending keeps its own reference and
			 * finds xw gone when it completes */
			e->xw = NULL;
			ent_unref(e);
		}
	}
	cx_http_free(xw->http);
	free(xw->slots);
	free(xw);
}

void cx_worker_stats(const cx_worker_t *xw, cx_stats_t *out)
{
	memset(out, 0, sizeof(*out));
	if (xw == NULL)
		return;
	out->calls = atomic_load_explicit(&xw->n_calls, memory_order_relaxed);
	out->failures = atomic_load_explicit(&xw->n_failures, memory_order_relaxed);
	out->retries = atomic_load_explicit(&xw->n_retries, memory_order_relaxed);
	out->token_fetches = atomic_load_explicit(&xw->n_token_fetches, memory_order_relaxed);
	out->held = atomic_load_explicit(&xw->n_held, memory_order_relaxed);
	cx_http_stats(xw->http, &out->http);
}
