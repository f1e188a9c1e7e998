/*
 * cx.h - private to connectors/: a connector's definition as the runtime
 * uses it, its validation, the process-wide table of OAuth2 tokens and
 * peer-imposed holds, and the worker's state.
 */
#ifndef CX_CX_H
#define CX_CX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "connectors/connectors.h"
#include "connectors/egress.h"
#include "connectors/vault.h"

struct event;

#define CX_CONN_NAME_MAX 64			/* connector and credential names: 1..63 bytes */
#define CX_MAX_HEADERS 32		/* default headers of a connector */
#define CX_MAX_REDACT 32		/* redact_fields of a connector */

/* What system a connector reaches: a small fixed set, the label of the
 * connector metrics and spans (docs/connectors.md).  "generic" when not said. */
enum { CX_KIND_N = 8, CX_KIND_GENERIC = 7 };
extern const char *const cx_kinds[CX_KIND_N];

/* A connector's definition (conn.c).  Everything is owned by the struct. */
typedef struct cx_conn {
	char name[CX_CONN_NAME_MAX];
	char *base_url;
	char credential[CX_CONN_NAME_MAX];	/* "" = calls go without credentials */
	cx_http_header_t headers[CX_MAX_HEADERS];
	int nheaders;
	int timeout_ms;
	int rl_requests, rl_window_s;	/* 0 = no outbound limit */
	int max_attempts;		/* 1 = never retried here */
	int max_wait_ms;		/* a call's whole budget, waits and retries included */
	char *redact[CX_MAX_REDACT + 1];	/* NULL-terminated */
	int max_response_bytes;
	int follow_redirects;
	int version;
	int kind;			/* index into cx_kinds */
} cx_conn_t;

void cx_conn_free(cx_conn_t *c);
/* Checks a PUT body (borrowed) and fills *c; on failure *errors gets the
 * problem's "errors" array (new reference; every problem with its JSON
 * Pointer, at most 100) and err a 400, or *errors is NULL and err says why
 * (a body that is not an object, out of memory).  egress NULL skips the
 * base URL's egress check (literal addresses, userinfo) but not its
 * http(s) scheme and host; max_response_bytes is the ceiling (and
 * default) of the field. */
int cx_conn_from_json(const json_t *body, const char *name, const cx_egress_t *egress, int max_response_bytes,
		      cx_conn_t *c, mf_err_t *err, json_t **errors) __attribute__((warn_unused_result));
/* From a row of platform.connector_rows (columns in its order). */
int cx_conn_from_row(const PGresult *r, int row, cx_conn_t *c) __attribute__((warn_unused_result));
/* The API representation of a row (new reference). */
json_t *cx_conn_row_json(const PGresult *r, int row);
/* A header name is an RFC 9110 token; a value has no control bytes. */
bool cx_header_name_ok(const char *s);
bool cx_header_value_ok(const char *s);
/* Headers a connector or a caller may not set: the auth header, hop-by-hop
 * and framing headers, and the ones each call carries itself. */
bool cx_header_reserved(const char *name);
/* A call's path: "" or starting with / or ? (so it can never change the
 * host of the base URL), printable ASCII without spaces, # or \, at most
 * 2048 bytes, not starting with //. */
bool cx_call_path_ok(const char *p);
/* The lower-cased host of an absolute URL ("[::1]" for IPv6 literals). */
int cx_url_host(const char *url, char *out, size_t len) __attribute__((warn_unused_result));
/* Is host admitted by a policy's egress.allow_hosts (borrowed array)?  An
 * entry matches itself; "*.example.com" matches names under example.com at
 * any depth, not example.com itself; case does not matter.  An address
 * (IPv4 in any form inet_aton reads, IPv6, a last label of digits) is never
 * admitted, whatever the list holds. */
bool cx_host_allowed(const json_t *hosts, const char *host);

/* ---- util.c: the runtime's pure helpers ---- */

#define CX_RETRY_AFTER_MAX_S (86400LL * 366)	/* longer waits read as this */
/* A Retry-After value (delta-seconds or an HTTP-date, surrounding blanks
 * allowed) as milliseconds from now (unix seconds): 0 for a date already
 * past, -1 when value is NULL or neither form. */
long long cx_retry_after_ms(const char *value, time_t now);
/* base_url + a call's path with one '/' between them (none before a
 * query); a new string (free()), NULL when out of memory. */
char *cx_url_join(const char *base, const char *path);
/* The URL as a call summary shows it (new reference): the values of query
 * fields whose name (as written or decoded) cx_redact_header() hides, or
 * that fields (NULL-terminated, may be NULL) names, are CX_REDACTED. */
json_t *cx_url_redacted(const char *url, const char *const *fields);

/* ---- shared.c: the process-wide table (tokens and holds) ---- */

enum cx_tok_state { CX_TOK_EMPTY = 0, CX_TOK_FETCHING, CX_TOK_READY, CX_TOK_FAILED };

typedef struct cx_shared cx_shared_t;
cx_shared_t *cx_shared_new(size_t max_entries);
void cx_shared_free(cx_shared_t *s);

/* What a caller learns of a token key.  token is a copy in out (wiped by
 * the caller), valid when state is READY. */
typedef struct cx_tok_view {
	enum cx_tok_state state;
	unsigned gen;			/* bumps on every fetch started */
	char detail[160];		/* why the last fetch failed */
} cx_tok_view_t;
/* READY and fresh: copies the token into out (len bytes, NUL-terminated)
 * and returns READY (FAILED, with a detail, if it does not fit).  Otherwise, when nobody is fetching, marks the key
 * FETCHING for the caller (who must call cx_tok_done) and returns EMPTY;
 * when someone is, returns FETCHING (poll again later) or the FAILED
 * outcome of the fetch the caller waited for (gen of the first look). */
enum cx_tok_state cx_tok_get(cx_shared_t *s, const char *key, long long now_ms, char *out, size_t len,
			     cx_tok_view_t *view);
/* The fetcher's outcome: token (NULL on failure, with detail) valid until
 * expires_ms (monotonic).  token and detail both NULL: the fetch was
 * abandoned (call cancelled) and the next caller starts another. */
void cx_tok_done(cx_shared_t *s, const char *key, const char *token, long long expires_ms, const char *detail);
/* Drops the token if it is still `token` (a peer refused it); NULL: nothing. */
void cx_tok_drop(cx_shared_t *s, const char *key, const char *token);

/* The peer asked every caller to wait until until_ms (monotonic). */
void cx_hold_set(cx_shared_t *s, const char *key, long long until_ms);
long long cx_hold_get(cx_shared_t *s, const char *key, long long now_ms);	/* 0 = none */

/* ---- process and worker ---- */

struct cx {
	const mf_config_t *cfg;
	struct cx_vault *vault;
	cx_egress_t *egress;
	cx_shared_t *shared;
};

typedef struct cx_entry cx_entry_t;

struct cx_worker {
	cx_t *cx;
	struct mf_worker *w;
	cx_http_t *http;
	cx_entry_t **slots;		/* cache of connectors: open hash on tenant/name */
	size_t nslots, nentries;
	cx_op_t *ops;			/* calls in flight (cancelled on free) */
	_Atomic unsigned long long n_calls, n_failures, n_retries, n_token_fetches, n_held;
};

/* Forgets this worker's cached copy of a connector (after a change). */
void cx_cache_forget(cx_worker_t *xw, const char *tenant_id, const char *name);
long long cx_now_ms(void);

#endif
