/*
 * gateway.h - the HTTP front of mspflow: a multi-threaded HTTP/1.1 server on
 * libevent (one event_base per worker thread, SO_REUSEPORT listeners), a
 * router with path parameters, and the request/response API handlers use.
 *
 * Threading: a request and everything hanging off it belong to the worker
 * thread that accepted its connection; handlers run on that thread and must
 * never block it.  The router is built before gw_server_run() and is
 * read-only afterwards, so workers share it without locks.
 *
 * Request lifetime: every request gets exactly one response call
 * (gw_respond_*).  If the client goes away before that, the request stays
 * valid (gw_req_aborted() turns true) until the handler responds; the
 * response is then discarded.  So an async handler can always touch its
 * request in its callback, and must always answer in the end.
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "core/config.h"
#include "core/err.h"
#include "core/trace.h"

struct event_base;
typedef struct gw_req gw_req_t;
typedef struct gw_router gw_router_t;
typedef struct gw_server gw_server_t;

typedef void (*gw_handler_fn)(gw_req_t *req, void *arg);

/* ---- router ---- */

enum gw_route_flags {
	GW_ROUTE_JSON_BODY = 1 << 0,	/* body, if any, must be application/json (else 415) */
};

gw_router_t *gw_router_new(void);
void gw_router_free(gw_router_t *r);
/*
 * pattern: literal segments and "{name}" parameters, e.g.
 * "/v1/tenants/{id}/clients".  method: "GET", "POST", ... ; a GET route
 * answers HEAD too.  The pattern is the route's label in logs and metrics.
 * Returns -1 for a malformed pattern (not starting with '/', empty inner
 * segment, more than 16 segments) or out of memory.
 */
int gw_router_add(gw_router_t *r, const char *method, const char *pattern,
		  gw_handler_fn fn, void *arg, unsigned flags)
	__attribute__((warn_unused_result));

/* Before the router's own refusals of a path starting with prefix (404 no
 * route, 405, 400 bad escape, 415), fn(req) may set headers, as a module
 * answering that prefix does on its own answers (the client portal's
 * security headers).  At most 4 per router; -1 when full or prefix is
 * longer than 31 bytes. */
int gw_router_on_refusal(gw_router_t *r, const char *prefix, void (*fn)(gw_req_t *req))
	__attribute__((warn_unused_result));

/* ---- request ---- */

const char *gw_req_method(const gw_req_t *req);
const char *gw_req_path(const gw_req_t *req);		/* raw path, no query */
const char *gw_req_query(const gw_req_t *req);		/* raw query without '?', or NULL */
const char *gw_req_route(const gw_req_t *req);		/* matched pattern, or NULL */
/* Percent-decoded path parameter, NULL if the route has no such name. */
const char *gw_req_param(const gw_req_t *req, const char *name);
/* First header with that name (case-insensitive), NULL if absent. */
const char *gw_req_header(const gw_req_t *req, const char *name);
const char *gw_req_id(const gw_req_t *req);
/*
 * The request's W3C trace context: the caller's trace when it sent exactly
 * one valid traceparent, else a trace started here.  parent_id is this
 * request's own span id (new, random), so an outgoing call formats a child
 * of it (mf_trace_child) as its traceparent.  Never NULL; valid as long as
 * the request.  The access log records trace_id.  Responses do not carry
 * it: X-Request-Id already ties a response to its log lines.
 */
const mf_trace_t *gw_req_trace(const gw_req_t *req);
const void *gw_req_body(const gw_req_t *req, size_t *len);	/* never NULL; "" when empty */
/* Parses the body with the server's JSON limits.  Returns a new reference,
 * or NULL with err filled (400 invalid_json / json_too_deep / body_required). */
json_t *gw_req_json(gw_req_t *req, mf_err_t *err);
bool gw_req_aborted(const gw_req_t *req);
/* The per-worker data returned by gw_options_t.worker_init. */
void *gw_req_worker_data(const gw_req_t *req);
struct event_base *gw_req_base(const gw_req_t *req);
gw_server_t *gw_req_server(const gw_req_t *req);
/* The client's IP address as text ("" for a unix socket); stays valid
 * after the client has gone. */
const char *gw_req_peer(const gw_req_t *req);
/* One handler-owned pointer per request, freed with data_free (may be NULL)
 * when the request is freed, i.e. after its response; setting it again frees
 * the previous one. */
void gw_req_set_data(gw_req_t *req, void *data, void (*data_free)(void *));
void *gw_req_data(const gw_req_t *req);
/* Recorded in the access log line. */
void gw_req_set_tenant(gw_req_t *req, const char *tenant_id);

/* ---- response: exactly one gw_respond_* per request ---- */

/* Adds a response header (copied).  Call before gw_respond_*. */
void gw_res_header(gw_req_t *req, const char *name, const char *value);
/* body: a reference stolen by the call (may be NULL for no body). */
void gw_respond_json(gw_req_t *req, int status, json_t *body);
void gw_respond_raw(gw_req_t *req, int status, const char *content_type,
		    const void *body, size_t len);
/* RFC 9457 problem+json from err (status 0 is answered as 500).  Adds
 * Retry-After when err->retry_after > 0.  A 500 carries no internals. */
void gw_respond_problem(gw_req_t *req, const mf_err_t *err);
/* The same with extension members (e.g. "errors" of a validation problem,
 * "error" of an OAuth failure) taken from ext, a JSON object whose
 * reference is stolen (may be NULL); the standard members cannot be
 * overridden and a 500 carries none. */
void gw_respond_problem_ext(gw_req_t *req, const mf_err_t *err, json_t *ext);
/* Shorthand: fills an mf_err_t and answers it. */
void gw_respond_error(gw_req_t *req, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- server ---- */

typedef struct gw_options {
	const mf_config_t *cfg;		/* borrowed; must outlive the server */
	gw_router_t *api;		/* borrowed; served on cfg->listen */
	gw_router_t *admin;		/* borrowed; served on cfg->admin_listen (may be NULL) */
	/* Called on each worker thread before it serves; the result is what
	 * gw_req_worker_data() returns.  NULL fn = no per-worker data. */
	void *(*worker_init)(int index, struct event_base *base, void *arg);
	void (*worker_fini)(void *data);
	/* Called on the thread of gw_server_run() once every listener is
	 * bound and the workers serve (e.g. to publish the actual port). */
	void (*on_serving)(gw_server_t *srv, void *arg);
	void *arg;
} gw_options_t;

gw_server_t *gw_server_new(const gw_options_t *opt, mf_err_t *err);
/* Binds (port 0 = any; see gw_server_port), logs a "listening" line per
 * listener with its actual address, starts the workers and blocks until
 * SIGINT/SIGTERM or gw_server_stop(); then stops accepting, lets in-flight
 * requests finish within shutdown_grace_ms, closes idle connections and
 * returns 0. */
int gw_server_run(gw_server_t *s, mf_err_t *err) __attribute__((warn_unused_result));
/* Thread-safe and async-signal-safe: begins the graceful shutdown. */
void gw_server_stop(gw_server_t *s);
int gw_server_port(const gw_server_t *s, bool admin);
void gw_server_free(gw_server_t *s);

/* Prometheus text of the gateway's metrics, appended to out (jansson-free). */
struct mf_buf;
int gw_server_metrics(gw_server_t *s, struct mf_buf *out) __attribute__((warn_unused_result));

#endif
