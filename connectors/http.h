/*
 * http.h - outbound HTTP for connectors: libcurl's multi interface driven
 * by a worker's libevent loop.
 *
 * One cx_http_t per worker thread, bound to that worker's event_base and
 * used only from that thread.  Nothing here blocks the loop: name
 * resolution runs in curl's resolver threads, connects and TLS are
 * non-blocking, and every outcome arrives through a callback run from the
 * loop.  Each connection is checked by the egress guard (egress.h) on the
 * address actually connected, after resolution, so a name that resolves
 * to a refused address fails with "egress_refused" and there is no window
 * between check and connect (DNS rebinding).  The permission can differ per
 * call (allow_private), so a call handed a pooled connection checks that
 * connection's address again before its request is sent: a call never
 * rides a connection it could not have opened itself.
 *
 * Connections are kept per host in the pool's connection cache and reused
 * by later calls; HTTP/2 is used over TLS when the server offers it, with
 * many calls multiplexed on one connection.  At most max_connections are
 * open (max_host_connections per host); calls beyond that wait in curl's
 * pending queue, and their deadline (timeout_ms) runs while they wait.
 * Calls beyond max_calls (running plus queued) are refused at once.
 *
 * TLS peer and host verification are always on.  Proxies from the
 * environment, .netrc and cookies are never used; responses are not
 * decompressed (no Accept-Encoding is sent), so the size limit counts the
 * bytes received.  Header values and bodies are never logged.
 */
#ifndef CX_HTTP_H
#define CX_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "connectors/egress.h"
#include "core/err.h"

struct event_base;

/* curl_global_init, once per process, before any thread starts; main()
 * calls it.  Fails (500 "curl_unsuitable") when the libcurl found at run
 * time cannot resolve names without blocking (no AsynchDNS). */
int cx_http_global_init(mf_err_t *err) __attribute__((warn_unused_result));

typedef struct cx_http_options {
	int max_connections;		/* open connections, all hosts; 0 = 64 */
	int max_host_connections;	/* open connections to one host:port; 0 = 8 */
	int max_calls;			/* running + queued calls; 0 = 4096; more fail with 503 "busy" */
	size_t max_response_bytes;	/* default per call; 0 = 1 MiB */
	int timeout_ms;			/* default whole-call deadline; 0 = 30000 */
	int connect_timeout_ms;		/* per connection attempt; 0 = 5000 */
	const char *ca_file;		/* PEM bundle replacing the system CAs; NULL = system (copied) */
	const cx_egress_t *egress;	/* borrowed, must outlive the pool; NULL = refuse by the rules only */
} cx_http_options_t;

typedef struct cx_http cx_http_t;

/* A new pool on base (borrowed; must outlive the pool).  opt is copied.
 * Returns NULL with err set (500) on failure. */
cx_http_t *cx_http_new(struct event_base *base, const cx_http_options_t *opt, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Cancels pending calls without callbacks, closes every connection and
 * frees the pool.  Accepts NULL.  Never call it from inside a callback. */
void cx_http_free(cx_http_t *h);

typedef struct cx_http_header {
	const char *name;
	const char *value;
} cx_http_header_t;

typedef struct cx_http_request {
	const char *method;		/* "GET", "POST", ...; NULL = GET (or POST when there is a body) */
	const char *url;		/* absolute http:// or https:// URL */
	const cx_http_header_t *headers;
	int nheaders;
	const void *body;
	size_t body_len;
	int timeout_ms;			/* whole call, queueing included; 0 = the pool's default */
	size_t max_response_bytes;	/* body bytes; 0 = the pool's default */
	int max_redirects;		/* 0 = a 3xx is returned as the response */
	bool allow_private;		/* the tenant's egress.allow_private: this call may reach
					 * loopback, private, link-local, CGNAT and ULA addresses
					 * (never metadata, multicast, reserved...); see
					 * cx_egress_addr_ok_ex */
} cx_http_request_t;			/* cx_http_send copies everything it needs */

typedef struct cx_http_response {
	int status;			/* HTTP status of the final response head; 0 when none arrived
					 * (a call can fail after its head, e.g. "too_large") */
	const char *error;		/* NULL, or a fixed code: "timeout", "too_large", "egress_refused",
					 * "connect_failed", "dns_failed", "tls_failed", "scheme_refused",
					 * "redirect_refused", "bad_url", "transport" */
	char detail[256];		/* safe to show a tenant: never the URL's query or userinfo,
					 * never a header value or body */
	const char *body;		/* NUL-terminated (not counted in body_len); never NULL */
	size_t body_len;
	int http_version;		/* 10, 11 or 20; 0 without a response */
	int redirects;			/* redirects followed */
	long long total_us;		/* from cx_http_send to the callback */
	char primary_ip[46];		/* address of the last connection used, "" if none */
	const char *const *headers;	/* name, value, name, value, ..., NULL: the final response's */
} cx_http_response_t;			/* borrowed: valid only during the callback */

/* The first header called name (case-insensitive) of the final response,
 * or NULL.  The returned string is borrowed like res. */
const char *cx_http_res_header(const cx_http_response_t *res, const char *name);

typedef void (*cx_http_cb)(const cx_http_response_t *res, void *arg);
typedef struct cx_http_call cx_http_call_t;

/*
 * Starts a call.  cb is always called exactly once, later, from the loop
 * (never from inside cx_http_send), unless the call is cancelled or the
 * pool freed first.  Refusals concerning the destination (scheme, literal
 * address, bad URL) arrive through cb like any other failure.  Returns a
 * handle valid until cb returns or cx_http_cancel, or NULL with err set
 * when the request itself is malformed (400 "invalid_request": bad method,
 * a header name or value with CR/LF/NUL...), the pool is full (503 "busy")
 * or memory ran out (500).
 */
cx_http_call_t *cx_http_send(cx_http_t *h, const cx_http_request_t *req, cx_http_cb cb, void *arg,
			     mf_err_t *err) __attribute__((warn_unused_result));

/* Stops a call; its callback will not run.  Accepts NULL.  A no-op when
 * called from the call's own callback. */
void cx_http_cancel(cx_http_call_t *call);

typedef struct cx_http_stats {
	unsigned long long calls;		/* accepted by cx_http_send */
	unsigned long long failures;		/* completed with an error */
	unsigned long long egress_refused;	/* of which refused by the egress guard */
	unsigned long long connections_opened;	/* sockets opened (connection attempts) */
	int active;				/* running + queued now */
} cx_http_stats_t;

void cx_http_stats(const cx_http_t *h, cx_http_stats_t *out);

#endif
