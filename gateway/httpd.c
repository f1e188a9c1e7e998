/*
 * httpd.c - connections and requests: the per-connection state machine
 * (head, body, handling, closing), keep-alive and pipelining, timeouts,
 * responses, problem+json, request ids and the access log.
 *
 * Everything here runs on the worker thread that owns the connection.
 * A connection is freed only from a libevent callback (its timer, its
 * write-drained callback, or its error/EOF callback), never in the middle
 * of processing input, so code that processes input never sees its
 * connection vanish.  A request outlives its connection when the client
 * leaves while a handler still holds it (see gateway.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/json.h"
#include "core/log.h"
#include "core/otlp.h"
#include "core/trace.h"
#include "gateway/httpd.h"

enum { S_HEAD, S_BODY, S_HANDLING, S_CLOSING };
/* trace: none received (start one when asked), the caller's context
 * parsed (derive our span when asked), or this request's own span */
enum { TR_NONE, TR_RECEIVED, TR_OWN };
enum { T_NONE, T_IDLE, T_HEADER, T_BODY, T_CLOSE };

typedef struct gw_conn {
	gw_worker_t *w;
	struct bufferevent *bev;
	struct event *timer;
	gw_req_t *req;			/* request being read or handled */
	gw_chunked_t chunked;
	int state, tmode, nreq;
	bool admin;
	bool in_input;			/* process_input() is on the stack */
	char remote[48];
	TAILQ_ENTRY(gw_conn) link;
} gw_conn_t;

struct gw_req {
	gw_conn_t *conn;		/* NULL once the client has gone */
	gw_worker_t *w;
	const gw_route_t *route;
	bool admin, keep_alive, head_only, expect;
	int64_t content_length;
	bool chunked;
	const char *method, *path, *query;
	int nhdrs;
	gw_hdr_t *hdrs;
	gw_match_t match;
	mf_buf_t body;
	mf_buf_t resh;			/* extra response header lines */
	struct timespec t0;
	size_t bytes_in;
	char id[129];
	char tenant[64];
	/* The request's trace context, resolved lazily (see req_trace()) so a
	 * request nobody asks about costs no random bytes. */
	mf_trace_t trace;
	unsigned char trace_state;	/* TR_* */
	char caller_span[17];		/* the caller's span (TR_RECEIVED), else "" */
	char remote[48];		/* peer address, kept after the client goes */
	void *data;			/* gw_req_set_data */
	void (*data_free)(void *);
	char *scratch;
	TAILQ_ENTRY(gw_req) link;	/* in the worker's list of live requests */
	/* followed by: hdrs array, head copy, scratch */
};

static const char *reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default:  return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

/* ---- timers and teardown ---- */

static void req_free(gw_req_t *r);

static void conn_free(gw_conn_t *c)
{
	gw_worker_t *w = c->w;

	if (c->req) {
		if (c->state == S_HANDLING)
			c->req->conn = NULL;	/* the handler still owns it */
		else
			req_free(c->req);
	}
	event_free(c->timer);
	bufferevent_free(c->bev);
	TAILQ_REMOVE(&w->conns, c, link);
	w->nconns--;
	atomic_fetch_sub(&w->srv->nconns, 1);
	free(c);
	if (w->draining && w->nconns == 0)
		event_base_loopexit(w->base, NULL);
}

static void timer_set(gw_conn_t *c, int mode, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	c->tmode = mode;
	if (mode == T_NONE)
		event_del(c->timer);
	else
		event_add(c->timer, &tv);
}

static void respond_problem_conn(gw_conn_t *c, int status, const char *code, const char *detail);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	gw_conn_t *c = arg;

	switch (c->tmode) {
	case T_HEADER:
	case T_BODY:
		respond_problem_conn(c, 408, "request_timeout",
				     c->tmode == T_HEADER ? "the request head was not received in time"
							  : "the request body was not received in time");
		break;
	default:
		conn_free(c);
	}
}

/* Lingering close: half-close our side once the response is out, then read
 * and discard what the client still sends for a moment before closing.
 * Closing with unread input would make the kernel send a reset, which can
 * destroy the response (e.g. a 413) before the client reads it. */
static void conn_linger(gw_conn_t *c)
{
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	timer_set(c, T_CLOSE, 2000);
}

/* Close once what is queued has been written. */
static void conn_close_soon(gw_conn_t *c)
{
	c->state = S_CLOSING;
	bufferevent_enable(c->bev, EV_READ);
	evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_linger(c);
	else
		timer_set(c, T_CLOSE, c->w->srv->cfg->write_timeout_ms);
}

/* ---- requests ---- */

static void req_id_generate(gw_worker_t *w, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (int half = 0; half < 2; half++) {
		/* xorshift64*: per worker, seeded from getrandom() */
		uint64_t x = w->rng;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		w->rng = x;
		x *= 0x2545F4914F6CDD1DULL;
		for (int i = 0; i < 16; i++)
			out[half * 16 + i] = hex[(x >> (i * 4)) & 15];
	}
	out[32] = '\0';
}

static bool req_id_sane(const char *s, size_t n)
{
	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == ':' || ch == '-'))
			return false;
	}
	return true;
}

/* Takes the caller's traceparent if there is exactly one and it is valid;
 * otherwise the request starts a trace of its own when one is needed.  Two
 * traceparent fields are ambiguous, and the spec's test suite expects a new
 * trace then, as for an invalid one. */
static void req_trace_receive(gw_req_t *r)
{
	const gw_hdr_t *found = NULL;

	r->trace_state = TR_NONE;
	r->caller_span[0] = '\0';
	for (int i = 0; i < r->nhdrs; i++) {
		if (!gw_strieq(r->hdrs[i].name, r->hdrs[i].name_len, "traceparent"))
			continue;
		if (found)
			return;
		found = &r->hdrs[i];
	}
	if (found && mf_trace_parse(&r->trace, found->value, found->value_len, NULL) == 0) {
		r->trace_state = TR_RECEIVED;
		memcpy(r->caller_span, r->trace.parent_id, sizeof(r->caller_span));
	}
}

static const mf_trace_t *req_trace(gw_req_t *r)
{
	if (r->trace_state == TR_RECEIVED)
		mf_trace_child(&r->trace, &r->trace);
	else if (r->trace_state == TR_NONE)
		mf_trace_new(&r->trace);
	r->trace_state = TR_OWN;
	return &r->trace;
}

/* Builds the request from a parsed head: one allocation holding the struct,
 * the header array, a copy of the head and scratch for decoded params. */
static gw_req_t *req_new(gw_conn_t *c, const gw_head_t *h, const char *head)
{
	size_t hsz = (size_t)h->nhdrs * sizeof(gw_hdr_t);
	gw_req_t *r = malloc(sizeof(*r) + hsz + h->head_len + 1 + h->target_len + GW_MAX_PARAMS + 2);
	char *copy, *t, *q;

	if (r == NULL)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->conn = c;
	r->w = c->w;
	r->admin = c->admin;
	memcpy(r->remote, c->remote, sizeof(r->remote));
	r->hdrs = (gw_hdr_t *)(r + 1);
	copy = (char *)r->hdrs + hsz;
	memcpy(copy, head, h->head_len);
	copy[h->head_len] = '\0';
	r->scratch = copy + h->head_len + 1;
	r->nhdrs = h->nhdrs;
	for (int i = 0; i < h->nhdrs; i++) {
		r->hdrs[i] = h->hdrs[i];
		r->hdrs[i].name = copy + (h->hdrs[i].name - head);
		r->hdrs[i].value = copy + (h->hdrs[i].value - head);
		/* NUL-terminate values in place: the CR after each is spare */
		((char *)r->hdrs[i].value)[r->hdrs[i].value_len] = '\0';
	}
	((char *)copy)[(h->method - head) + h->method_len] = '\0';
	r->method = copy + (h->method - head);
	t = copy + (h->target - head);
	t[h->target_len] = '\0';
	q = strchr(t, '?');
	if (q) {
		*q = '\0';
		r->query = q + 1;
	}
	r->path = t;
	TAILQ_INSERT_TAIL(&c->w->reqs, r, link);
	r->keep_alive = h->keep_alive;
	r->head_only = strcmp(r->method, "HEAD") == 0;
	r->content_length = h->content_length;
	r->chunked = h->chunked;
	r->expect = h->expect_continue;
	r->bytes_in = h->head_len;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	{
		const char *id = gw_req_header(r, "x-request-id");

		if (id && req_id_sane(id, strlen(id)))
			memcpy(r->id, id, strlen(id) + 1);
		else
			req_id_generate(c->w, r->id);
	}
	req_trace_receive(r);
	return r;
}

static void req_free(gw_req_t *r)
{
	if (r->data_free)
		r->data_free(r->data);
	TAILQ_REMOVE(&r->w->reqs, r, link);
	mf_buf_free(&r->body);
	mf_buf_free(&r->resh);
	free(r);
}

const char *gw_req_method(const gw_req_t *r) { return r->method; }
const char *gw_req_path(const gw_req_t *r) { return r->path; }
const char *gw_req_query(const gw_req_t *r) { return r->query; }
const char *gw_req_route(const gw_req_t *r) { return r->route ? r->route->pattern : NULL; }
const char *gw_req_id(const gw_req_t *r) { return r->id; }
/* The request is not const to its owner: only the lazy resolution writes,
 * on the request's own thread, so the cast cannot race. */
const mf_trace_t *gw_req_trace(const gw_req_t *r) { return req_trace((gw_req_t *)r); }
bool gw_req_aborted(const gw_req_t *r) { return r->conn == NULL; }
void *gw_req_worker_data(const gw_req_t *r) { return r->w->data; }
struct event_base *gw_req_base(const gw_req_t *r) { return r->w->base; }
gw_server_t *gw_req_server(const gw_req_t *r) { return r->w->srv; }
const char *gw_req_peer(const gw_req_t *r) { return r->remote; }
void *gw_req_data(const gw_req_t *r) { return r->data; }

void gw_req_set_data(gw_req_t *r, void *data, void (*data_free)(void *))
{
	if (r->data_free)
		r->data_free(r->data);
	r->data = data;
	r->data_free = data_free;
}

const char *gw_req_param(const gw_req_t *r, const char *name)
{
	for (int i = 0; i < r->match.nparams; i++)
		if (strcmp(r->match.pname[i], name) == 0)
			return r->match.pvalue[i];
	return NULL;
}

const char *gw_req_header(const gw_req_t *r, const char *name)
{
	for (int i = 0; i < r->nhdrs; i++)
		if (gw_strieq(r->hdrs[i].name, r->hdrs[i].name_len, name))
			return r->hdrs[i].value;
	return NULL;
}

const void *gw_req_body(const gw_req_t *r, size_t *len)
{
	*len = r->body.len;
	return r->body.data ? r->body.data : "";
}

json_t *gw_req_json(gw_req_t *r, mf_err_t *err)
{
	if (r->body.len == 0) {
		mf_err_set(err, 400, "body_required", "a JSON request body is required");
		return NULL;
	}
	return mf_json_parse(r->body.data, r->body.len, r->w->srv->cfg->max_json_depth, err);
}

void gw_req_set_tenant(gw_req_t *r, const char *tenant_id)
{
	size_t n = tenant_id ? strnlen(tenant_id, sizeof(r->tenant) - 1) : 0;

	memcpy(r->tenant, tenant_id ? tenant_id : "", n);
	r->tenant[n] = '\0';
}

void gw_res_header(gw_req_t *r, const char *name, const char *value)
{
	/* refuse header injection outright: no CR/LF in either part */
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return;
	/* no printf: this runs several times per request on hot routes */
	if (mf_buf_adds(&r->resh, name) < 0 || mf_buf_add(&r->resh, ": ", 2) < 0 || mf_buf_adds(&r->resh, value) < 0 ||
	    mf_buf_add(&r->resh, "\r\n", 2) < 0)
		mf_warn("gateway", "out of memory adding a response header", MF_S("request_id", r->id));
}

/* ---- responses ---- */

static void date_refresh(gw_worker_t *w)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now == w->date_sec)
		return;
	w->date_sec = now;
	gmtime_r(&now, &tm);
	strftime(w->date, sizeof(w->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

static void access_log(gw_req_t *r, int status, size_t bytes_out, uint64_t us)
{
	gw_worker_t *w = r->w;
	mf_buf_t *b = &w->log;
	char ts[40];
	struct timespec now;
	struct tm tm;
	int rc = 0;
	size_t mark = b->len;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	rc |= mf_buf_addf(b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"info\",\"module\":\"access\",\"msg\":\"request\","
			  "\"request_id\":", ts, now.tv_nsec / 1000000);
	rc |= mf_buf_add_json_str(b, r->id, strlen(r->id));
	/* the caller's trace id needs no span of ours; only a request that came
	 * without one draws random bytes here */
	rc |= mf_buf_adds(b, ",\"trace_id\":\"");
	rc |= mf_buf_add(b, r->trace_state == TR_NONE ? req_trace(r)->trace_id : r->trace.trace_id, 32);
	rc |= mf_buf_adds(b, "\",\"tenant_id\":");
	rc |= r->tenant[0] ? mf_buf_add_json_str(b, r->tenant, strlen(r->tenant)) : mf_buf_adds(b, "null");
	rc |= mf_buf_adds(b, ",\"method\":");
	rc |= mf_buf_add_json_str(b, r->method ? r->method : "-", strlen(r->method ? r->method : "-"));
	rc |= mf_buf_adds(b, ",\"route\":");
	rc |= r->route ? mf_buf_add_json_str(b, r->route->pattern, strlen(r->route->pattern))
		       : mf_buf_adds(b, "null");
	/* the path only, never the query string: it may carry secrets */
	rc |= mf_buf_adds(b, ",\"path\":");
	rc |= mf_buf_add_json_str(b, r->path ? r->path : "-", strlen(r->path ? r->path : "-"));
	rc |= mf_buf_addf(b, ",\"status\":%d,\"duration_ms\":%.3f,\"bytes_in\":%zu,\"bytes_out\":%zu,"
			  "\"listener\":\"%s\",\"remote\":\"%s\"}\n",
			  status, (double)us / 1000.0, r->bytes_in, bytes_out, r->admin ? "admin" : "api",
			  r->conn ? r->conn->remote : "-");
	if (rc) {
		b->len = mark;		/* drop the partial line */
		return;
	}
	if (b->len >= 32 * 1024)
		gw_worker_flush_log(w);
}

void gw_worker_flush_log(gw_worker_t *w)
{
	if (w->log.len) {
		mf_log_write_line(w->log.data, w->log.len);
		mf_buf_reset(&w->log);
	}
}

static void process_input(gw_conn_t *c);

/* The request's server span (core/otlp.h), API listener only: scrapes
 * and probes on the admin listener would drown the traces. */
static void request_span(gw_req_t *r, int status, uint64_t us)
{
	const mf_trace_t *t = req_trace(r);
	unsigned long long end = mf_otlp_now_ns();
	json_t *a = json_array();
	char name[160];

	snprintf(name, sizeof(name), "%s %s", r->method ? r->method : "-", r->route ? r->route->pattern : "unmatched");
	mf_otlp_attr_str(a, "http.request.method", r->method);
	mf_otlp_attr_str(a, "http.route", r->route ? r->route->pattern : NULL);
	mf_otlp_attr_int(a, "http.response.status_code", status);
	mf_otlp_attr_str(a, "mspflow.request_id", r->id);
	mf_otlp_attr_str(a, "mspflow.tenant_id", r->tenant[0] ? r->tenant : NULL);
	mf_otlp_span(t->trace_id, t->parent_id, r->caller_span, name, MF_SPAN_SERVER, end - us * 1000ULL, end,
		     status >= 500, a);
}

static void respond(gw_req_t *r, int status, const char *ctype, const void *body, size_t len)
{
	gw_conn_t *c = r->conn;
	gw_worker_t *w = r->w;
	struct timespec now;
	uint64_t us;
	char head[512], clen[48];
	int n;

	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (uint64_t)(now.tv_sec - r->t0.tv_sec) * 1000000u + (uint64_t)((now.tv_nsec - r->t0.tv_nsec) / 1000);
	gw_metrics_record(w, r->admin, r->route ? r->route->id : -1, status, us);
	if (!r->admin && mf_otlp_enabled())
		request_span(r, status, us);
	if (w->srv->cfg->access_log)
		access_log(r, status, len, us);
	if (c == NULL) {		/* client gone: nothing to send */
		req_free(r);
		return;
	}
	if (w->draining || (w->srv->cfg->max_requests_per_conn &&
			    c->nreq + 1 >= w->srv->cfg->max_requests_per_conn))
		r->keep_alive = false;
	date_refresh(w);
	/* a 304 has no content, and its Content-Length would have to be the
	 * 200's (RFC 9110 8.6): none at all is simpler and what caches expect;
	 * a 204 must not carry one (RFC 9110 8.6) */
	clen[0] = '\0';
	if (status == 304 || status == 204)
		len = 0;
	else
		snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", len);
	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%sX-Request-Id: %s\r\n%s%s%s%s%s",
		     status, reason(status), w->date, r->id, clen,
		     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
		     r->keep_alive ? "" : "Connection: close\r\n");
	{
		struct evbuffer *out = bufferevent_get_output(c->bev);

		evbuffer_add(out, head, (size_t)n);
		if (r->resh.len)
			evbuffer_add(out, r->resh.data, r->resh.len);
		evbuffer_add(out, "\r\n", 2);
		if (!r->head_only && len)
			evbuffer_add(out, body, len);
	}
	c->nreq++;
	c->req = NULL;
	if (!r->keep_alive) {
		req_free(r);
		conn_close_soon(c);
		return;
	}
	req_free(r);
	c->state = S_HEAD;
	timer_set(c, T_IDLE, w->srv->cfg->idle_timeout_ms);
	process_input(c);
}

void gw_respond_raw(gw_req_t *r, int status, const char *ctype, const void *body, size_t len)
{
	respond(r, status, ctype, body, len);
}

void gw_respond_json(gw_req_t *r, int status, json_t *body)
{
	char *s = NULL;

	if (body) {
		s = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		if (s == NULL) {
			gw_respond_error(r, 500, "internal_error", "the response could not be encoded");
			return;
		}
	}
	respond(r, status, s ? "application/json" : NULL, s ? s : "", s ? strlen(s) : 0);
	free(s);
}

void gw_respond_problem(gw_req_t *r, const mf_err_t *err)
{
	gw_respond_problem_ext(r, err, NULL);
}

void gw_respond_problem_ext(gw_req_t *r, const mf_err_t *err, json_t *ext)
{
	int status = err && err->status >= 400 && err->status <= 599 ? err->status : 500;
	const char *code = err && err->code[0] ? err->code : "internal_error";
	const char *detail = err ? err->detail : "";
	mf_buf_t b = MF_BUF_INIT;
	int rc = 0;

	if (status == 500) {
		/* never internals in a 500: the detail went to the log instead */
		if (err && err->detail[0])
			mf_error("gateway", "internal error", MF_S("request_id", r->id), MF_S("code", code),
				 MF_S("detail", err->detail));
		code = "internal_error";
		detail = "an internal error occurred; quote the request id when reporting it";
	}
	if (err && err->retry_after > 0) {
		char v[16];

		snprintf(v, sizeof(v), "%d", err->retry_after);
		gw_res_header(r, "Retry-After", v);
	}
	if (status == 408 || status == 413 || status == 431 || (status == 400 && r->route == NULL))
		r->keep_alive = false;
	rc |= mf_buf_addf(&b, "{\"type\":\"/problems/%s\",\"title\":\"%s\",\"status\":%d,"
			  "\"detail\":", code, reason(status), status);
	rc |= mf_buf_add_json_str(&b, detail, strlen(detail));
	rc |= mf_buf_adds(&b, ",\"code\":");
	rc |= mf_buf_add_json_str(&b, code, strlen(code));
	rc |= mf_buf_adds(&b, ",\"request_id\":");
	rc |= mf_buf_add_json_str(&b, r->id, strlen(r->id));
	if (ext && status != 500) {
		const char *k;
		json_t *v;

		json_object_foreach(ext, k, v) {
			char *enc;

			if (!strcmp(k, "type") || !strcmp(k, "title") || !strcmp(k, "status") ||
			    !strcmp(k, "detail") || !strcmp(k, "code") || !strcmp(k, "request_id"))
				continue;
			enc = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			rc |= mf_buf_addc(&b, ',');
			rc |= mf_buf_add_json_str(&b, k, strlen(k));
			rc |= mf_buf_addc(&b, ':');
			rc |= enc ? mf_buf_adds(&b, enc) : -1;
			free(enc);
		}
	}
	json_decref(ext);
	rc |= mf_buf_addc(&b, '}');
	if (rc) {
		static const char oom[] = "{\"type\":\"about:blank\",\"status\":503,\"code\":\"over_capacity\"}";

		respond(r, 503, "application/problem+json", oom, sizeof(oom) - 1);
	} else {
		respond(r, status, "application/problem+json", b.data, b.len);
	}
	mf_buf_free(&b);
}

void gw_respond_error(gw_req_t *r, int status, const char *code, const char *fmt, ...)
{
	mf_err_t err;
	va_list ap;

	va_start(ap, fmt);
	mf_err_setv(&err, status, code, fmt, ap);
	va_end(ap);
	gw_respond_problem(r, &err);
}

/* A protocol-level error with no usable request: answer on a bare request
 * record and close the connection afterwards. */
static void respond_problem_conn(gw_conn_t *c, int status, const char *code, const char *detail)
{
	gw_req_t *r = c->req;

	if (r == NULL) {
		r = calloc(1, sizeof(*r));
		if (r == NULL) {
			conn_close_soon(c);
			return;
		}
		r->conn = c;
		r->w = c->w;
		r->admin = c->admin;
		TAILQ_INSERT_TAIL(&c->w->reqs, r, link);
		clock_gettime(CLOCK_MONOTONIC, &r->t0);
		req_id_generate(c->w, r->id);
		c->req = r;
	}
	if (status == 400 || status == 431 || status == 505 || status == 417)
		atomic_fetch_add(&c->w->srv->parse_errors, 1);
	r->keep_alive = false;
	r->head_only = false;
	c->state = S_HANDLING;
	timer_set(c, T_NONE, 0);
	bufferevent_disable(c->bev, EV_READ);
	gw_respond_error(r, status, code, "%s", detail);
}

/* ---- input ---- */

static bool is_json_type(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return false;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return gw_strieq(ct, n, "application/json");
}

/* Before the router's own refusal of r: the hooks of its path's prefix. */
static void refusal_hooks(const gw_router_t *rt, gw_req_t *r)
{
	for (int i = 0; i < rt->nhooks; i++)
		if (strncmp(r->path, rt->hooks[i].prefix, strlen(rt->hooks[i].prefix)) == 0)
			rt->hooks[i].fn(r);
}

static void dispatch(gw_conn_t *c)
{
	gw_req_t *r = c->req;
	const gw_router_t *rt = c->admin ? c->w->srv->opt.admin : c->w->srv->opt.api;

	c->state = S_HANDLING;
	timer_set(c, T_NONE, 0);
	gw_router_match(rt, r->method, r->path, strlen(r->path), r->scratch, &r->match);
	if (r->match.status != 0)
		refusal_hooks(rt, r);
	if (r->match.status == 404) {
		gw_respond_error(r, 404, "not_found", "no such resource");
		return;
	}
	if (r->match.status == 405) {
		gw_res_header(r, "Allow", r->match.allow);
		gw_respond_error(r, 405, "method_not_allowed", "%s is not allowed here; allowed: %s",
				 r->method, r->match.allow);
		return;
	}
	if (r->match.status != 0) {
		gw_respond_error(r, 400, "invalid_path", "the path has an invalid percent-encoding");
		return;
	}
	r->route = r->match.route;
	if ((r->route->flags & GW_ROUTE_JSON_BODY) && r->body.len > 0 &&
	    !is_json_type(gw_req_header(r, "content-type"))) {
		refusal_hooks(rt, r);
		gw_respond_error(r, 415, "unsupported_media_type", "request bodies must be application/json");
		return;
	}
	r->route->fn(r, r->route->arg);
}

static void process_input_loop(gw_conn_t *c);

/* Synchronous handlers answer from inside the loop below; the loop then
 * goes on with the next pipelined request itself instead of recursing. */
static void process_input(gw_conn_t *c)
{
	if (c->in_input)
		return;
	c->in_input = true;
	process_input_loop(c);
	c->in_input = false;
}

static void process_input_loop(gw_conn_t *c)
{
	const mf_config_t *cfg = c->w->srv->cfg;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	for (;;) {
		size_t avail = evbuffer_get_length(in);

		if (c->state == S_HEAD) {
			gw_head_t h;
			gw_parse_err_t e;
			size_t max = (size_t)cfg->max_header_bytes, take = avail < max ? avail : max;
			const char *p;
			int rc;

			if (avail == 0)
				return;
			if (c->tmode == T_IDLE)
				timer_set(c, T_HEADER, cfg->header_timeout_ms);
			p = (const char *)evbuffer_pullup(in, (ev_ssize_t)take);
			rc = gw_head_parse(p, take, max, &h, &e);
			if (rc == 0)
				return;
			if (rc < 0) {
				respond_problem_conn(c, e.status, e.code, e.detail);
				return;
			}
			c->req = req_new(c, &h, p);
			if (c->req == NULL) {
				respond_problem_conn(c, 503, "over_capacity", "out of memory");
				return;
			}
			evbuffer_drain(in, h.head_len);
			if (h.content_length > (int64_t)cfg->max_body_bytes) {
				respond_problem_conn(c, 413, "payload_too_large", "request body exceeds the size limit");
				return;
			}
			if (h.content_length > 0 || h.chunked) {
				if (h.expect_continue && evbuffer_get_length(in) == 0)
					bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
				gw_chunked_init(&c->chunked);
				if (h.content_length > 0 &&
				    mf_buf_reserve(&c->req->body, (size_t)h.content_length) < 0) {
					respond_problem_conn(c, 503, "over_capacity", "out of memory");
					return;
				}
				c->state = S_BODY;
				timer_set(c, T_BODY, cfg->body_timeout_ms);
				continue;
			}
			dispatch(c);
			if (c->state != S_HEAD)
				return;	/* handler answers later, or closing */
		} else if (c->state == S_BODY) {
			gw_req_t *r = c->req;

			if (!r->chunked) {
				size_t need = (size_t)r->content_length - r->body.len;
				size_t n = avail < need ? avail : need;

				if (n) {
					evbuffer_remove(in, r->body.data + r->body.len, n);
					r->body.len += n;
					r->body.data[r->body.len] = '\0';
					r->bytes_in += n;
				}
				if (r->body.len < (size_t)r->content_length)
					return;
			} else {
				gw_parse_err_t e;
				size_t used = 0;
				int rc;

				if (avail == 0)
					return;
				rc = gw_chunked_feed(&c->chunked, (const char *)evbuffer_pullup(in, -1), avail,
						     &used, &r->body, (size_t)cfg->max_body_bytes, &e);
				evbuffer_drain(in, used);
				r->bytes_in += used;
				if (rc < 0) {
					respond_problem_conn(c, e.status, e.code, e.detail);
					return;
				}
				if (rc == 0)
					return;
			}
			dispatch(c);
			if (c->state != S_HEAD)
				return;
		} else {
			if (c->state == S_CLOSING)	/* lingering: discard */
				evbuffer_drain(in, avail);
			return;		/* handling: input waits */
		}
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	process_input(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	gw_conn_t *c = arg;

	if (c->state == S_CLOSING && c->tmode == T_CLOSE &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_linger(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	/* EOF, error, or write timeout: the connection is over */
	conn_free(arg);
}

void gw_conn_accept(gw_worker_t *w, int fd, const struct sockaddr *sa, bool admin)
{
	const mf_config_t *cfg = w->srv->cfg;
	gw_conn_t *c;
	int one = 1;

	bool over = atomic_fetch_add(&w->srv->nconns, 1) >= cfg->max_connections;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto fail;
	c->w = w;
	c->admin = admin;
	c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(w->base, on_timer, c);
	if (c->bev == NULL || c->timer == NULL) {
		if (c->bev)
			bufferevent_free(c->bev);
		else
			close(fd);
		event_free(c->timer);
		free(c);
		atomic_fetch_sub(&w->srv->nconns, 1);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->remote, sizeof(c->remote));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->remote, sizeof(c->remote));
	TAILQ_INSERT_TAIL(&w->conns, c, link);
	w->nconns++;
	{
		struct timeval wt = { cfg->write_timeout_ms / 1000, (cfg->write_timeout_ms % 1000) * 1000 };

		bufferevent_set_timeouts(c->bev, NULL, &wt);
	}
	/* backpressure: stop reading while this much input waits unparsed */
	bufferevent_setwatermark(c->bev, EV_READ, 0,
				 (size_t)cfg->max_header_bytes + (size_t)cfg->max_body_bytes + 65536);
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = S_HEAD;
	timer_set(c, T_IDLE, cfg->header_timeout_ms);
	if (over) {
		/* counted while it lingers, so a flood cannot exceed the cap */
		static const char body[] =
			"{\"type\":\"/problems/over_capacity\",\"title\":\"Service Unavailable\","
			"\"status\":503,\"detail\":\"too many open connections\",\"code\":\"over_capacity\"}";

		atomic_fetch_add(&w->srv->rejected, 1);
		evbuffer_add_printf(bufferevent_get_output(c->bev),
				    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
				    "Retry-After: 1\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
				    sizeof(body) - 1, body);
		conn_close_soon(c);
	}
	return;
fail:
	close(fd);
	atomic_fetch_sub(&w->srv->nconns, 1);
}

void gw_worker_drain(gw_worker_t *w)
{
	gw_conn_t *c, *next;

	for (c = TAILQ_FIRST(&w->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		/* idle between requests: close now; others finish their request */
		if (c->state == S_HEAD && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
			conn_free(c);
	}
}

void gw_worker_close_all(gw_worker_t *w)
{
	while (!TAILQ_EMPTY(&w->conns))
		conn_free(TAILQ_FIRST(&w->conns));
}

void gw_worker_free_requests(gw_worker_t *w)
{
	while (!TAILQ_EMPTY(&w->reqs)) {
		gw_req_t *r = TAILQ_FIRST(&w->reqs);

		mf_warn("gateway", "request abandoned at shutdown", MF_S("request_id", r->id));
		if (r->conn)
			r->conn->req = NULL;
		req_free(r);
	}
}
