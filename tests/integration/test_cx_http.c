/*
 * test_cx_http.c - outbound HTTP (connectors/http.h) against real libcurl
 * and real sockets: mock servers (libevent evhttp on their own thread)
 * listen on 127.0.0.2 (allow-listed) and 127.0.0.1 (not allow-listed: only
 * calls with allow_private may reach it), and the client pool runs on this
 * thread's event loop exactly as it does in a worker.  HTTP/2 is proved
 * against nghttpd (Debian nghttp2-server) over TLS on 127.0.0.1, and a
 * Python server covers HTTP/1.1 over TLS.
 *
 * Linux answers on all of 127/8, so no interface setup is needed.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "connectors/http.h"
#include "../unit/t.h"

/* --- mock servers ------------------------------------------------------ */

struct mock {
	struct event_base *base;
	struct evhttp *allowed, *other;	/* 127.0.0.2 and 127.0.0.1 */
	int port_allowed, port_other;
	atomic_int hits_other;		/* requests that reached 127.0.0.1 */
	atomic_int slow_pending;
	pthread_t thread;
};

static struct mock M;

static const char *query_get(struct evhttp_request *req, const char *key, char *out, size_t n)
{
	struct evkeyvalq q;
	const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), *v;

	out[0] = '\0';
	if (qs == NULL || evhttp_parse_query_str(qs, &q) < 0)
		return out;
	v = evhttp_find_header(&q, key);
	if (v)
		snprintf(out, n, "%s", v);
	evhttp_clear_headers(&q);
	return out;
}

static void slow_reply(evutil_socket_t fd, short what, void *arg)
{
	struct evhttp_request *req = arg;
	struct evbuffer *b = evbuffer_new();

	evbuffer_add_printf(b, "late");
	evhttp_send_reply(req, 200, "OK", b);	/* frees req, also when the client left */
	evbuffer_free(b);
	atomic_fetch_sub(&M.slow_pending, 1);
}

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_HEAD: return "HEAD";
	default: return "OTHER";
	}
}

static void mock_handle(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();
	char v[512];

	if (arg == (void *)&M.other)
		atomic_fetch_add(&M.hits_other, 1);
	evhttp_add_header(out, "X-Served-By", "mock");
	if (path == NULL)
		path = "/";
	if (strcmp(path, "/echo") == 0) {
		struct evbuffer *body = evhttp_request_get_input_buffer(req);
		const char *xt = evhttp_find_header(in, "X-Test"), *ct = evhttp_find_header(in, "Content-Type");
		const char *ua = evhttp_find_header(in, "User-Agent");

		evbuffer_add_printf(b, "%s\n%s\n%s\n%s\n", method_name(evhttp_request_get_command(req)),
				    xt ? xt : "-", ct ? ct : "-", ua ? ua : "-");
		evbuffer_add_buffer(b, body);
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strcmp(path, "/slow") == 0) {
		struct timeval tv = { 0, 0 };
		int ms = atoi(query_get(req, "ms", v, sizeof(v)));

		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		atomic_fetch_add(&M.slow_pending, 1);
		event_base_once(M.base, -1, EV_TIMEOUT, slow_reply, req, &tv);
	} else if (strcmp(path, "/big") == 0) {
		long n = atol(query_get(req, "n", v, sizeof(v)));
		char *p = malloc((size_t)n + 1);

		memset(p, 'x', (size_t)n);
		evbuffer_add(b, p, (size_t)n);
		free(p);
		evhttp_send_reply(req, 200, "OK", b);	/* with Content-Length */
	} else if (strcmp(path, "/chunked") == 0) {
		long n = atol(query_get(req, "n", v, sizeof(v)));
		char chunk[16384];

		memset(chunk, 'y', sizeof(chunk));
		evhttp_send_reply_start(req, 200, "OK");	/* no length: chunked */
		for (long sent = 0; sent < n; sent += (long)sizeof(chunk)) {
			evbuffer_add(b, chunk, sizeof(chunk));
			evhttp_send_reply_chunk(req, b);
		}
		evhttp_send_reply_end(req);
	} else if (strcmp(path, "/loop") == 0) {
		evhttp_add_header(out, "Location", "/loop");
		evhttp_send_reply(req, 302, "Found", b);
	} else if (strcmp(path, "/redirect") == 0) {
		evhttp_add_header(out, "Location", query_get(req, "to", v, sizeof(v)));
		evhttp_send_reply(req, 302, "Found", b);
	} else {
		evbuffer_add_printf(b, "ok");
		evhttp_send_reply(req, 200, "OK", b);
	}
	evbuffer_free(b);
}

static void *mock_main(void *arg)
{
	event_base_loop(M.base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static int bound_port(struct evhttp_bound_socket *s)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	if (s == NULL || getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sin, &sl) < 0)
		return -1;
	return ntohs(sin.sin_port);
}

static int mock_start(void)
{
	M.base = event_base_new();
	M.allowed = evhttp_new(M.base);
	M.other = evhttp_new(M.base);
	evhttp_set_gencb(M.allowed, mock_handle, &M.allowed);
	evhttp_set_gencb(M.other, mock_handle, &M.other);
	evhttp_set_allowed_methods(M.allowed, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
				   EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
	M.port_allowed = bound_port(evhttp_bind_socket_with_handle(M.allowed, "127.0.0.2", 0));
	M.port_other = bound_port(evhttp_bind_socket_with_handle(M.other, "127.0.0.1", 0));
	if (M.port_allowed <= 0 || M.port_other <= 0)
		return -1;
	return pthread_create(&M.thread, NULL, mock_main, NULL) == 0 ? 0 : -1;
}

static void mock_stop(void)
{
	for (int i = 0; i < 500 && atomic_load(&M.slow_pending) > 0; i++)
		usleep(10000);
	event_base_loopexit(M.base, NULL);
	pthread_join(M.thread, NULL);
	evhttp_free(M.allowed);
	evhttp_free(M.other);
	event_base_free(M.base);
}

/* --- client side ------------------------------------------------------- */

static struct event_base *base;
static int pending;
static bool in_send;		/* a callback seen while this is set broke the contract */
static int cb_inside_send;

struct result {
	bool done;
	int status, http_version, redirects;
	char error[32], detail[256], ip[46], served_by[16], location[256];
	char *body;
	size_t body_len;
	long long total_us;
};

static void on_done(const cx_http_response_t *res, void *arg)
{
	struct result *r = arg;
	const char *h;

	if (in_send)
		cb_inside_send++;
	r->done = true;
	r->status = res->status;
	r->http_version = res->http_version;
	r->redirects = res->redirects;
	r->total_us = res->total_us;
	snprintf(r->error, sizeof(r->error), "%s", res->error ? res->error : "");
	snprintf(r->detail, sizeof(r->detail), "%s", res->detail);
	snprintf(r->ip, sizeof(r->ip), "%s", res->primary_ip);
	snprintf(r->served_by, sizeof(r->served_by), "%s", (h = cx_http_res_header(res, "x-served-BY")) ? h : "");
	snprintf(r->location, sizeof(r->location), "%s", (h = cx_http_res_header(res, "Location")) ? h : "");
	r->body = malloc(res->body_len + 1);
	memcpy(r->body, res->body, res->body_len + 1);
	r->body_len = res->body_len;
	pending--;
}

static void result_free(struct result *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static void on_give_up(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until no call is pending or ms pass. */
static bool run_until_done(int ms)
{
	bool late = false;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *ev = evtimer_new(base, on_give_up, &late);

	evtimer_add(ev, &tv);
	while (pending > 0 && !late)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(ev);
	return pending == 0;
}

static void run_for(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static cx_http_call_t *send_req(cx_http_t *h, const cx_http_request_t *req, struct result *r)
{
	mf_err_t err = { 0 };
	cx_http_call_t *c;

	memset(r, 0, sizeof(*r));
	in_send = true;
	c = cx_http_send(h, req, on_done, r, &err);
	in_send = false;
	if (c)
		pending++;
	else
		printf("# send failed: %d %s %s\n", err.status, err.code, err.detail);
	return c;
}

static bool fetch(cx_http_t *h, const cx_http_request_t *req, struct result *r)
{
	return send_req(h, req, r) != NULL && run_until_done(10000) && r->done;
}

static char *url(char *buf, size_t n, const char *host, int port, const char *path)
{
	snprintf(buf, n, "http://%s:%d%s", host, port, path);
	return buf;
}

static void test_get_post(cx_http_t *h)
{
	char u[256], want[8192];
	cx_http_header_t hdrs[] = { { "X-Test", "abc 123" }, { "Content-Type", "application/json" } };
	unsigned char body[3000];
	struct result r;
	cx_http_request_t req = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/echo"),
				  .headers = hdrs, .nheaders = 1 };
	size_t wl;

	T_OK(fetch(h, &req, &r), "GET completes");
	T_OK(r.status == 200 && r.error[0] == '\0', "GET 200");
	T_STREQ(r.body, "GET\nabc 123\n-\nmspflow/" MSPFLOW_VERSION "\n", "GET: method and header arrive, no form content type");
	T_STREQ(r.served_by, "mock", "response header lookup is case-insensitive");
	T_OK(r.http_version == 11, "plain http is HTTP/1.1");
	T_STREQ(r.ip, "127.0.0.2", "primary_ip is the connected address");
	T_OK(r.total_us > 0, "total_us measured");
	result_free(&r);

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (unsigned char)(i * 7);	/* includes NUL bytes */
	req.method = "POST";
	req.nheaders = 2;
	req.body = body;
	req.body_len = sizeof(body);
	T_OK(fetch(h, &req, &r) && r.status == 200, "POST 200");
	wl = (size_t)snprintf(want, sizeof(want), "POST\nabc 123\napplication/json\nmspflow/%s\n", MSPFLOW_VERSION);
	memcpy(want + wl, body, sizeof(body));
	T_OK(r.body_len == wl + sizeof(body) && memcmp(r.body, want, r.body_len) == 0,
	     "POST: 3000 binary body bytes and headers arrive intact");
	result_free(&r);

	req.method = "PUT";
	T_OK(fetch(h, &req, &r) && r.status == 200 && strncmp(r.body, "PUT\n", 4) == 0, "PUT with a body");
	result_free(&r);
	req.method = "DELETE";
	req.body = NULL;
	req.body_len = 0;
	T_OK(fetch(h, &req, &r) && r.status == 200 && strncmp(r.body, "DELETE\n", 7) == 0, "DELETE without a body");
	result_free(&r);
	req.method = "HEAD";
	T_OK(fetch(h, &req, &r) && r.status == 200 && r.body_len == 0, "HEAD: status, no body");
	result_free(&r);

	/* Malformed requests are refused by cx_http_send itself. */
	{
		cx_http_header_t evil[] = { { "X-A", "x\r\nX-Injected: 1" } }, host[] = { { "Host", "x" } },
				 badname[] = { { "X A", "x" } };
		cx_http_request_t bad = { .url = u, .headers = evil, .nheaders = 1 };
		mf_err_t err;

		T_OK(cx_http_send(h, &bad, on_done, &r, &err) == NULL && err.status == 400,
		     "CR/LF in a header value refused (400)");
		bad.headers = host;
		T_OK(cx_http_send(h, &bad, on_done, &r, &err) == NULL && err.status == 400, "Host header refused");
		bad.headers = badname;
		T_OK(cx_http_send(h, &bad, on_done, &r, &err) == NULL && err.status == 400, "bad header name refused");
		bad.nheaders = 0;
		bad.method = "GE T";
		T_OK(cx_http_send(h, &bad, on_done, &r, &err) == NULL && err.status == 400, "bad method refused");
	}
}

static void test_concurrency(cx_http_t *h)
{
	enum { N = 200 };
	static struct result r[N];
	char u[256];
	cx_http_request_t req = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/small") };
	cx_http_stats_t before, after;
	int ok = 0, sent = 0;
	struct timespec t0, t1;

	cx_http_stats(h, &before);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++)
		sent += send_req(h, &req, &r[i]) != NULL;
	T_OK(sent == N, "200 calls accepted");
	T_OK(run_until_done(20000), "200 concurrent calls complete");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int i = 0; i < N; i++) {
		ok += r[i].status == 200 && strcmp(r[i].body ? r[i].body : "", "ok") == 0;
		result_free(&r[i]);
	}
	cx_http_stats(h, &after);
	T_OK(ok == N, "all 200 answered 200 ok");
	printf("# 200 concurrent calls: %llu new connections, %.1f ms\n",
	       after.connections_opened - before.connections_opened,
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	T_OK(after.connections_opened - before.connections_opened <= 8,
	     "connections reused: at most max_host_connections (8) opened for 200 calls");
	T_OK(after.active == 0, "no call left active");
	T_OK(cb_inside_send == 0, "no callback ran inside cx_http_send");
}

static int ticks;
static void on_tick(evutil_socket_t fd, short what, void *arg) { ticks++; }

static void test_timeout(cx_http_t *h)
{
	char u[256];
	cx_http_request_t req = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/slow?ms=2000"),
				  .timeout_ms = 300 };
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval ten = { 0, 10000 };
	struct result r;

	event_add(tick, &ten);
	ticks = 0;
	T_OK(fetch(h, &req, &r), "slow call completes");
	event_free(tick);
	T_STREQ(r.error, "timeout", "slow server: timeout");
	T_OK(r.status == 0 && r.total_us >= 290000 && r.total_us < 1500000, "after about 300 ms");
	printf("# timeout after %lld us; %d ticks of a 10 ms timer meanwhile\n", r.total_us, ticks);
	T_OK(ticks >= 15, "the loop kept running during the call (10 ms timer fired)");
	result_free(&r);
}

static void test_too_large(cx_http_t *h)
{
	char u[256];
	cx_http_request_t req = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/big?n=2000000"),
				  .max_response_bytes = 100000 };
	struct result r;

	T_OK(fetch(h, &req, &r), "big call completes");
	T_STREQ(r.error, "too_large", "Content-Length over the limit: too_large");
	T_OK(r.body_len == 0 && r.total_us < 2000000, "no partial body handed over");
	result_free(&r);

	req.url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/chunked?n=4000000");
	T_OK(fetch(h, &req, &r), "chunked call completes");
	T_STREQ(r.error, "too_large", "chunked body over the limit: too_large");
	result_free(&r);

	req.url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/big?n=100000");
	T_OK(fetch(h, &req, &r) && r.status == 200 && r.body_len == 100000 && r.error[0] == '\0',
	     "a body of exactly the limit passes");
	result_free(&r);
	req.url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/chunked?n=50000");
	T_OK(fetch(h, &req, &r) && r.status == 200 && r.body_len == 65536, "a chunked body under the limit passes");
	result_free(&r);
}

struct egress_case { const char *url; int redirects; const char *error; const char *needle; };

static void test_egress(cx_http_t *h)
{
	char u[24][512];
	int pa = M.port_allowed, po = M.port_other;
	struct egress_case cases[24];
	int n = 0;
	cx_http_stats_t before, after;
	struct result r;

#define CASE(fmt, port, red, e, needle) do { \
		snprintf(u[n], sizeof(u[n]), fmt, port); \
		cases[n] = (struct egress_case){ u[n], red, e, needle }; \
		n++; \
	} while (0)
	CASE("http://127.0.0.1:%d/", po, 0, "egress_refused", "loopback");
	CASE("http://10.0.0.1/%.0d", 0, 0, "egress_refused", "private");
	CASE("http://169.254.169.254/latest/meta-data%.0d", 0, 0, "egress_refused", "metadata");
	CASE("http://[::1]:%d/", po, 0, "egress_refused", "loopback");
	CASE("http://0x7f000001:%d/", po, 0, "egress_refused", "loopback");
	CASE("http://2130706433:%d/", po, 0, "egress_refused", "loopback");
	CASE("http://0177.0.0.1:%d/", po, 0, "egress_refused", "loopback");
	CASE("http://127.1:%d/", po, 0, "egress_refused", "loopback");
	CASE("http://[::ffff:127.0.0.1]:%d/", po, 0, "egress_refused", "loopback");
	CASE("file:///etc/passwd%.0d", 0, 0, "scheme_refused", "\"file\"");
	CASE("gopher://127.0.0.2:%d/", pa, 0, "scheme_refused", "\"gopher\"");
	CASE("dict://127.0.0.2:%d/", pa, 0, "scheme_refused", "\"dict\"");
	CASE("http://user:secret@127.0.0.2:%d/", pa, 0, "egress_refused", "credentials");
	CASE("http://localhost:%d/echo", po, 0, "egress_refused", "loopback");
	{
		char to[128];

		snprintf(to, sizeof(to), "http://127.0.0.1:%d/echo", po);
		snprintf(u[n], sizeof(u[n]), "http://127.0.0.2:%d/redirect?to=%s", pa, to);
		cases[n] = (struct egress_case){ u[n], 3, "egress_refused", "after a redirect" };
		n++;
		snprintf(u[n], sizeof(u[n]), "http://127.0.0.2:%d/redirect?to=http://localhost:%d/echo", pa, po);
		cases[n] = (struct egress_case){ u[n], 3, "egress_refused", "loopback" };
		n++;
		snprintf(u[n], sizeof(u[n]), "http://127.0.0.2:%d/redirect?to=gopher://127.0.0.2:%d/", pa, pa);
		cases[n] = (struct egress_case){ u[n], 3, "redirect_refused", "scheme" };
		n++;
		snprintf(u[n], sizeof(u[n]), "http://127.0.0.2:%d/loop", pa);
		cases[n] = (struct egress_case){ u[n], 3, "redirect_refused", "3" };
		n++;
	}
	CASE("https://127.0.0.2:%d/", pa, 0, "tls_failed", "TLS");
	CASE("http://no-such-host.invalid:%d/", pa, 0, "dns_failed", "resolved");
	CASE("http://exa mple.com:%d/", pa, 0, "bad_url", "space");
#undef CASE

	cx_http_stats(h, &before);
	for (int i = 0; i < n; i++) {
		cx_http_request_t req = { .url = cases[i].url, .max_redirects = cases[i].redirects,
					  .timeout_ms = 5000 };
		char what[600];

		T_OK(fetch(h, &req, &r), "refused call completes through its callback");
		snprintf(what, sizeof(what), "%s -> %s (%s)", cases[i].url, cases[i].error, r.detail);
		T_OK(strcmp(r.error, cases[i].error) == 0 && strstr(r.detail, cases[i].needle) != NULL, what);
		if (strcmp(r.error, cases[i].error) != 0 || !strstr(r.detail, cases[i].needle))
			printf("#   got %s: %s (status %d)\n", r.error, r.detail, r.status);
		T_OK(strstr(r.detail, "secret") == NULL && strstr(r.detail, "meta-data") == NULL &&
		     strstr(r.detail, "?to=") == NULL, "detail shows no query, path or userinfo");
		result_free(&r);
	}
	cx_http_stats(h, &after);
	printf("# egress_refused counted: %llu\n", after.egress_refused - before.egress_refused);
	T_OK(after.egress_refused - before.egress_refused == 13, "every egress refusal counted (13 cases)");
	T_OK(atomic_load(&M.hits_other) == 0, "no request ever reached 127.0.0.1");

	{
		char to[128];
		cx_http_request_t req = { .url = u[0] };

		snprintf(to, sizeof(to), "http://127.0.0.2:%d/echo", pa);
		snprintf(u[0], sizeof(u[0]), "http://127.0.0.2:%d/redirect?to=%s", pa, to);
		T_OK(fetch(h, &req, &r) && r.status == 302 && strcmp(r.location, to) == 0 && r.redirects == 0,
		     "max_redirects 0: the 302 is the response, Location readable");
		result_free(&r);
		req.max_redirects = 3;
		T_OK(fetch(h, &req, &r) && r.status == 200 && r.redirects == 1 && strncmp(r.body, "GET\n", 4) == 0,
		     "an allowed redirect is followed");
		result_free(&r);
	}
}

static int chained;

static void on_chain(const cx_http_response_t *res, void *arg)
{
	cx_http_t *h = arg;
	static char u[256];
	cx_http_request_t req = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/small") };
	static struct result r2;
	mf_err_t err;

	pending--;
	cx_http_cancel(NULL);
	if (++chained < 3) {
		if (cx_http_send(h, &req, on_chain, h, &err))
			pending++;
	}
	(void)r2;
}

static void test_cancel(cx_http_t *h)
{
	char u[256];
	cx_http_request_t slow = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/slow?ms=600") };
	cx_http_request_t file = { .url = "file:///etc/passwd" };
	struct result r1, r2, r3;
	cx_http_call_t *c1, *c2, *c3;
	cx_http_stats_t st;
	mf_err_t err;

	c1 = send_req(h, &slow, &r1);
	c2 = send_req(h, &slow, &r2);
	c3 = send_req(h, &file, &r3);
	cx_http_cancel(c2);	/* before the loop ever ran */
	cx_http_cancel(c3);	/* an early failure not yet delivered */
	pending -= 2;
	run_for(100);
	cx_http_cancel(c1);	/* mid-transfer */
	pending--;
	run_for(800);
	T_OK(!r1.done && !r2.done && !r3.done, "cancelled calls never call back");
	cx_http_stats(h, &st);
	T_OK(st.active == 0, "cancelled calls are not active");

	/* A callback may start the next call. */
	chained = 0;
	{
		cx_http_request_t req = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/small") };

		if (cx_http_send(h, &req, on_chain, h, &err))
			pending++;
		T_OK(run_until_done(5000) && chained == 3, "calls started from inside a callback run");
	}
}

static void test_free_in_flight(void)
{
	char u[256];
	cx_http_request_t slow = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/slow?ms=900") };
	cx_http_request_t file = { .url = "file:///etc/passwd" };
	cx_egress_t *g = cx_egress_new("127.0.0.2/32", NULL);
	cx_http_options_t o = { .egress = g, .max_host_connections = 4 };
	cx_http_t *h = cx_http_new(base, &o, NULL);
	static struct result r[12];
	int done = 0;

	for (int i = 0; i < 10; i++)
		(void)send_req(h, &slow, &r[i]);
	run_for(100);
	(void)send_req(h, &file, &r[10]);	/* its failure not yet delivered */
	cx_http_free(h);
	pending = 0;
	run_for(200);
	for (int i = 0; i < 11; i++)
		done += r[i].done;
	T_OK(done == 0, "freeing the pool with 11 calls in flight: no callback, no crash (ASan: no leak)");
	cx_egress_free(g);
}

static void test_busy(void)
{
	char u[256];
	cx_http_request_t slow = { .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/slow?ms=200") };
	cx_egress_t *g = cx_egress_new("127.0.0.2/32", NULL);
	cx_http_options_t o = { .egress = g, .max_calls = 2 };
	cx_http_t *h = cx_http_new(base, &o, NULL);
	struct result r[3];
	mf_err_t err;

	(void)send_req(h, &slow, &r[0]);
	(void)send_req(h, &slow, &r[1]);
	T_OK(cx_http_send(h, &slow, on_done, &r[2], &err) == NULL && err.status == 503 &&
	     strcmp(err.code, "busy") == 0, "beyond max_calls: 503 busy at once");
	T_OK(run_until_done(5000) && r[0].status == 200 && r[1].status == 200, "the two admitted calls finish");
	result_free(&r[0]);
	result_free(&r[1]);
	cx_http_free(h);
	cx_egress_free(g);
}

/* Sequential small calls, each started from the previous one's callback
 * on one keep-alive connection: the per-call cost of the transport, with a
 * fresh curl handle per call.  Printed, not asserted. */
static int seq_left;
static cx_http_request_t seq_req;

static void on_seq(const cx_http_response_t *res, void *arg)
{
	mf_err_t err;

	if (--seq_left > 0 && cx_http_send(arg, &seq_req, on_seq, arg, &err) != NULL)
		return;
	pending--;
}

static double measure(int n)
{
	char u[256];
	cx_egress_t *g = cx_egress_new("127.0.0.2/32", NULL);
	cx_http_options_t o = { .egress = g };
	cx_http_t *h = cx_http_new(base, &o, NULL);
	struct timespec t0, t1;
	mf_err_t err;

	seq_req = (cx_http_request_t){ .url = url(u, sizeof(u), "127.0.0.2", M.port_allowed, "/small") };
	seq_left = n;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (cx_http_send(h, &seq_req, on_seq, h, &err))
		pending++;
	run_until_done(60000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cx_http_free(h);
	cx_egress_free(g);
	return ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / n;
}

/* TLS: a throwaway CA-less self-signed certificate for 127.0.0.2, a
 * Python TLS server using it, and the pool trusting it only through
 * ca_file.  Proves verification is on (refused without the file) and that
 * ca_file works.  Skipped when openssl or python3 cannot be run. */
static const char tls_server_py[] =
	"import ssl,sys,http.server\n"
	"class H(http.server.BaseHTTPRequestHandler):\n"
	"    protocol_version='HTTP/1.1'\n"
	"    def do_GET(self):\n"
	"        b=b'tls ok'\n"
	"        self.send_response(200); self.send_header('Content-Length',str(len(b))); self.end_headers()\n"
	"        self.wfile.write(b)\n"
	"    def log_message(self,*a): pass\n"
	"c=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1],sys.argv[2])\n"
	"class S(http.server.ThreadingHTTPServer):\n"
	"    def get_request(self):\n"
	"        k,a=self.socket.accept()\n"
	"        return c.wrap_socket(k,server_side=True,do_handshake_on_connect=False),a\n"
	"    def handle_error(self,*a): pass\n"
	"s=S(('127.0.0.2',0),H)\n"
	"sys.stdout.write('%d\\n' % s.server_address[1]); sys.stdout.flush()\n"
	"s.serve_forever()\n";

static void test_tls(const cx_egress_t *g)
{
	char dir[] = "/tmp/cx_http_tls.XXXXXX", cmd[1024], cert[256], key[256], u[256], line[32] = "";
	int fds[2], port = 0;
	pid_t pid;
	struct result r;

	if (mkdtemp(dir) == NULL)
		return;
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-subj /CN=127.0.0.2 -addext subjectAltName=IP:127.0.0.2 -days 1 -keyout %s -out %s "
		 ">/dev/null 2>&1", key, cert);
	if (system(cmd) != 0 || pipe(fds) < 0) {
		printf("# skipped TLS: openssl could not make a certificate\n");
		goto out;
	}
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execlp("python3", "python3", "-c", tls_server_py, cert, key, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	{
		/* until the newline: an unbuffered python (PYTHONUNBUFFERED, as
		 * the test runner sets) may write the digits and the newline
		 * separately, and closing the pipe between the two would kill
		 * the server with EPIPE */
		size_t got = 0;
		ssize_t n;

		while (got < sizeof(line) - 1 && (n = read(fds[0], line + got, sizeof(line) - 1 - got)) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			got += (size_t)n;
			if (memchr(line, '\n', got))
				break;
		}
		line[got] = '\0';
		port = atoi(line);
	}
	close(fds[0]);
	if (port <= 0) {
		printf("# skipped TLS: the python3 TLS server did not start\n");
		goto reap;
	}
	snprintf(u, sizeof(u), "https://127.0.0.2:%d/", port);
	{
		cx_http_request_t req = { .url = u };
		cx_http_options_t o = { .egress = g };
		cx_http_t *h = cx_http_new(base, &o, NULL);

		T_OK(fetch(h, &req, &r), "TLS call without the CA completes");
		T_STREQ(r.error, "tls_failed", "an untrusted certificate is refused (verification is on)");
		printf("#   detail: %s\n", r.detail);
		result_free(&r);
		cx_http_free(h);
		o.ca_file = cert;
		h = cx_http_new(base, &o, NULL);
		T_OK(fetch(h, &req, &r) && r.status == 200 && strcmp(r.body, "tls ok") == 0 && r.http_version == 11,
		     "with ca_file the same server is trusted (HTTP/1.1 over TLS)");
		result_free(&r);
		cx_http_free(h);
	}
reap:
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
out:
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

/* --- allow_private ------------------------------------------------------ */

/* A pool whose operator allow-list is empty: 127.0.0.1 is reachable only
 * by calls with allow_private, metadata never, and the permission belongs
 * to the call, not to the pooled connection. */
static void test_allow_private(void)
{
	cx_egress_t *g = cx_egress_new("", NULL);
	cx_http_options_t o = { .egress = g };
	cx_http_t *h = cx_http_new(base, &o, NULL);
	char u[256], red[512], lh[256];
	int po = M.port_other, hits0 = atomic_load(&M.hits_other);
	cx_http_request_t req = { .url = url(u, sizeof(u), "127.0.0.1", po, "/echo"), .timeout_ms = 5000 };
	static const char *const meta[] = {
		"http://169.254.169.254/latest/meta-data", "http://[::ffff:169.254.169.254]/latest/meta-data",
		"http://[fd00:ec2::254]/latest/meta-data", "http://169.254.170.2/v2/credentials",
		"http://100.100.100.200/latest/meta-data",
	};
	cx_http_stats_t before, after;
	struct result r;

	T_OK(fetch(h, &req, &r) && strcmp(r.error, "egress_refused") == 0 && strstr(r.detail, "loopback"),
	     "empty allow-list: 127.0.0.1 refused (loopback) without allow_private");
	result_free(&r);
	T_OK(atomic_load(&M.hits_other) == hits0, "  and the server saw nothing");
	req.allow_private = true;
	T_OK(fetch(h, &req, &r) && r.status == 200 && r.error[0] == '\0' && strncmp(r.body, "GET\n", 4) == 0 &&
	     strcmp(r.ip, "127.0.0.1") == 0, "the same call with allow_private succeeds (200 from 127.0.0.1)");
	result_free(&r);
	T_OK(atomic_load(&M.hits_other) == hits0 + 1, "  and reached the server once");

	for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
		char what[300];

		req.url = meta[i];
		T_OK(fetch(h, &req, &r), "metadata call completes");
		snprintf(what, sizeof(what), "allow_private: %s still refused (%s)", meta[i], r.detail);
		T_OK(strcmp(r.error, "egress_refused") == 0 && strstr(r.detail, "metadata") &&
		     !strstr(r.detail, "meta-data"), what);
		result_free(&r);
	}
	/* At connect time too: a redirect from an allowed private peer to a
	 * metadata address is refused before socket(2). */
	snprintf(red, sizeof(red), "http://127.0.0.1:%d/redirect?to=http://169.254.169.254/latest/meta-data", po);
	req.url = red;
	req.max_redirects = 3;
	T_OK(fetch(h, &req, &r) && strcmp(r.error, "egress_refused") == 0 && strstr(r.detail, "metadata") &&
	     strstr(r.detail, "after a redirect"), "allow_private: a redirect to 169.254.169.254 refused at connect");
	printf("#   detail: %s\n", r.detail);
	result_free(&r);
	req.max_redirects = 0;

	/* A pooled connection to loopback, opened by a call with allow_private,
	 * is not lent to a call without it: the name is the same, so curl
	 * would reuse the connection, and the per-request check refuses it. */
	req.url = url(lh, sizeof(lh), "localhost", po, "/echo");
	T_OK(fetch(h, &req, &r) && r.status == 200, "allow_private: http://localhost (loopback) reached");
	result_free(&r);
	hits0 = atomic_load(&M.hits_other);
	cx_http_stats(h, &before);
	req.allow_private = false;
	T_OK(fetch(h, &req, &r) && strcmp(r.error, "egress_refused") == 0 && strstr(r.detail, "loopback"),
	     "right after it, the same URL without allow_private is refused on the pooled connection");
	printf("#   detail: %s\n", r.detail);
	result_free(&r);
	cx_http_stats(h, &after);
	T_OK(atomic_load(&M.hits_other) == hits0, "  the server saw no request from it");
	T_OK(after.connections_opened == before.connections_opened, "  and no new connection was opened for it");
	req.allow_private = true;
	T_OK(fetch(h, &req, &r) && r.status == 200, "a later call with allow_private still gets through");
	result_free(&r);
	T_OK(atomic_load(&M.hits_other) == hits0 + 1, "  (one more request seen)");
	cx_http_free(h);
	cx_egress_free(g);
}

/* --- HTTP/2 ------------------------------------------------------------- */

/* name in PATH, or in the sbin folders a non-root PATH often lacks
 * (Debian installs nghttpd in /usr/sbin). */
static bool find_program(const char *name, char *out, size_t n)
{
	const char *path = getenv("PATH");
	char dirs[4096], *save = NULL;

	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/usr/local/sbin:/sbin", path ? path : "/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, n, "%s/%s", d, name);
		if (d[0] == '/' && access(out, X_OK) == 0)
			return true;
	}
	return false;
}

/* The IPv4 TCP port pid listens on, from /proc (nghttpd binds the port 0
 * it is given but does not print the port it got); 0 if none yet. */
static int listen_port(pid_t pid)
{
	char dir[64], fp[320], link[64], line[512];
	unsigned long inodes[64];
	int n = 0, port = 0;
	struct dirent *de;
	DIR *d;
	FILE *f;

	/* Not before exec: until then the child holds this process's sockets. */
	snprintf(dir, sizeof(dir), "/proc/%d/comm", (int)pid);
	if ((f = fopen(dir, "r")) == NULL)
		return 0;
	if (fgets(line, sizeof(line), f) == NULL || strncmp(line, "nghttpd", 7) != 0) {
		fclose(f);
		return 0;
	}
	fclose(f);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if ((d = opendir(dir)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < 64) {
		ssize_t l;

		snprintf(fp, sizeof(fp), "%s/%s", dir, de->d_name);
		if ((l = readlink(fp, link, sizeof(link) - 1)) <= 0)
			continue;
		link[l] = '\0';
		if (sscanf(link, "socket:[%lu]", &inodes[n]) == 1)
			n++;
	}
	closedir(d);
	if ((f = fopen("/proc/net/tcp", "r")) == NULL)
		return 0;
	while (port == 0 && fgets(line, sizeof(line), f)) {
		unsigned int lport, st;
		unsigned long ino;

		/* sl: local:port remote:port st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &lport, &st, &ino) != 3 ||
		    st != 0x0A)		/* LISTEN */
			continue;
		for (int i = 0; i < n; i++)
			if (inodes[i] == ino)
				port = (int)lport;
	}
	fclose(f);
	return port;
}

static int count_ok(struct result *r, int from, int to, int step, int version)
{
	int ok = 0;

	for (int i = from; i < to; i += step)
		ok += r[i].status == 200 && r[i].error[0] == '\0' && r[i].http_version == version &&
		      strcmp(r[i].body ? r[i].body : "", "h2 ok\n") == 0;
	return ok;
}

/* nghttpd (HTTP/2 only, ALPN h2) on 127.0.0.1 with a throwaway
 * self-signed certificate for 127.0.0.1 and localhost, trusted through
 * ca_file: the negotiated version, multiplexing (many calls, one
 * connection), bodies both ways, HTTP/1.1 kept for a plain http:// peer,
 * and the per-call egress check on streams of one shared connection.
 * Skipped only when nghttpd is not installed. */
static void test_http2(void)
{
	enum { N = 50, MIX = 20 };
	static struct result rs[N];
	char dir[] = "/tmp/cx_http_h2.XXXXXX", nghttpd[512], cmd[1024], cert[256], key[256], file[256];
	char u[256], plain[256], lh[256];
	unsigned char body[3000];
	cx_egress_t *g = NULL, *none = NULL;
	cx_http_t *h = NULL;
	cx_http_stats_t st;
	int port = 0, sent, ok, refused;
	pid_t pid = -1;
	struct result r;
	FILE *f;

	if (!find_program("nghttpd", nghttpd, sizeof(nghttpd))) {
		printf("# skipped HTTP/2: nghttpd not found (Debian package nghttp2-server; infra/deps installs it)\n");
		return;
	}
	if (mkdtemp(dir) == NULL) {
		T_OK(false, "HTTP/2: a scratch directory");
		return;
	}
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(file, sizeof(file), "%s/hello.txt", dir);
	snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -days 1 -keyout %s -out %s "
		 ">/dev/null 2>&1", key, cert);
	T_OK(system(cmd) == 0 && (f = fopen(file, "w")) != NULL, "HTTP/2: certificate and document made");
	if (f) {
		fputs("h2 ok\n", f);
		fclose(f);
	}
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		close_range(3, ~0U, 0);		/* the mock servers' listeners are not nghttpd's */
		execl(nghttpd, "nghttpd", "-a", "127.0.0.1", "-d", dir, "--echo-upload", "0", key, cert, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && pid > 0 && port == 0; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			pid = -1;
			break;
		}
		if ((port = listen_port(pid)) == 0)
			usleep(10000);
	}
	T_OK(port > 0, "HTTP/2: nghttpd listening on 127.0.0.1");
	if (port <= 0)
		goto out;
	printf("# nghttpd on 127.0.0.1:%d\n", port);

	g = cx_egress_new("127.0.0.1/32, 127.0.0.2/32", NULL);
	{
		cx_http_options_t o = { .egress = g, .ca_file = cert };

		h = cx_http_new(base, &o, NULL);
	}
	snprintf(u, sizeof(u), "https://127.0.0.1:%d/hello.txt", port);
	{
		cx_http_request_t req = { .url = u, .timeout_ms = 5000 };

		T_OK(fetch(h, &req, &r) && r.status == 200 && strcmp(r.body, "h2 ok\n") == 0,
		     "HTTP/2: GET over TLS with ca_file: 200 and the file");
		T_OK(r.http_version == 20, "HTTP/2: http_version is 20 (negotiated by ALPN)");
		if (r.http_version != 20 || r.status != 200)
			printf("#   got version %d status %d error %s: %s\n", r.http_version, r.status, r.error, r.detail);
		result_free(&r);

		for (size_t i = 0; i < sizeof(body); i++)
			body[i] = (unsigned char)(i * 13);	/* includes NUL bytes */
		req.method = "POST";
		req.body = body;
		req.body_len = sizeof(body);
		T_OK(fetch(h, &req, &r) && r.status == 200 && r.http_version == 20 && r.body_len == sizeof(body) &&
		     memcmp(r.body, body, sizeof(body)) == 0, "HTTP/2: POST, 3000 binary bytes echoed back intact");
		result_free(&r);

		req.method = NULL;
		req.body = NULL;
		req.body_len = 0;
		req.url = url(plain, sizeof(plain), "127.0.0.2", M.port_allowed, "/echo");
		T_OK(fetch(h, &req, &r) && r.status == 200 && r.http_version == 11,
		     "HTTP/2 pool: a plain http:// peer stays HTTP/1.1 (no h2c)");
		result_free(&r);
	}
	cx_http_free(h);

	/* Multiplexing, on a fresh pool so every connection is counted. */
	{
		cx_http_options_t o = { .egress = g, .ca_file = cert };
		cx_http_request_t req = { .url = u, .timeout_ms = 10000 };
		struct timespec t0, t1;

		h = cx_http_new(base, &o, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		sent = 0;
		for (int i = 0; i < N; i++)
			sent += send_req(h, &req, &rs[i]) != NULL;
		T_OK(sent == N && run_until_done(20000), "HTTP/2: 50 concurrent calls complete");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ok = count_ok(rs, 0, N, 1, 20);
		cx_http_stats(h, &st);
		printf("# HTTP/2: %d concurrent calls, %d answered over h2, %llu connection(s), %.1f ms\n", N, ok,
		       st.connections_opened,
		       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
		T_OK(ok == N, "HTTP/2: all 50 answered 200 over HTTP/2");
		T_OK(st.connections_opened >= 1 && st.connections_opened <= 2,
		     "HTTP/2: multiplexed: at most 2 connections for 50 concurrent calls");
		for (int i = 0; i < N; i++)
			result_free(&rs[i]);
		cx_http_free(h);
	}

	/* Streams of one connection, each judged for its own call: with an
	 * empty allow-list, calls with allow_private share a connection to
	 * localhost (loopback) and calls without it are refused on it. */
	none = cx_egress_new("", NULL);
	{
		cx_http_options_t o = { .egress = none, .ca_file = cert };
		cx_http_request_t req = { .url = url(lh, sizeof(lh), "localhost", port, "/hello.txt"),
					  .timeout_ms = 10000, .allow_private = true };

		snprintf(lh, sizeof(lh), "https://localhost:%d/hello.txt", port);
		h = cx_http_new(base, &o, NULL);
		T_OK(fetch(h, &req, &r) && r.status == 200 && r.http_version == 20,
		     "HTTP/2 + allow_private: https://localhost reached over h2 with an empty allow-list");
		result_free(&r);
		for (int i = 0; i < MIX; i++) {
			req.allow_private = i % 2 == 0;
			(void)send_req(h, &req, &rs[i]);
		}
		T_OK(run_until_done(20000), "HTTP/2: 20 mixed concurrent calls complete");
		ok = count_ok(rs, 0, MIX, 2, 20);
		refused = 0;
		for (int i = 1; i < MIX; i += 2)
			refused += strcmp(rs[i].error, "egress_refused") == 0 && strstr(rs[i].detail, "loopback") != NULL;
		cx_http_stats(h, &st);
		printf("# HTTP/2 mixed: %d/10 with allow_private answered, %d/10 without refused, %llu connection(s)\n",
		       ok, refused, st.connections_opened);
		T_OK(ok == MIX / 2, "HTTP/2: the 10 calls with allow_private answered over h2");
		T_OK(refused == MIX / 2, "HTTP/2: the 10 calls without it refused on the shared connection (loopback)");
		for (int i = 0; i < MIX; i++)
			result_free(&rs[i]);
		cx_http_free(h);
	}
out:
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	cx_egress_free(g);
	cx_egress_free(none);
	unlink(file);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

int main(void)
{
	mf_err_t err;
	cx_egress_t *g;
	cx_http_t *h;
	cx_http_options_t o = { .max_connections = 16, .max_host_connections = 8 };

	if (evthread_use_pthreads() < 0 || cx_http_global_init(&err) < 0 || mock_start() < 0) {
		printf("Bail out! setup failed\n");
		return 1;
	}
	unsetenv("http_proxy");
	setenv("http_proxy", "http://127.0.0.2:1", 1);	/* must be ignored */
	base = event_base_new();
	g = cx_egress_new("127.0.0.2/32", &err);
	o.egress = g;
	h = cx_http_new(base, &o, &err);
	T_OK(h != NULL, "pool created");

	test_get_post(h);
	test_concurrency(h);
	test_timeout(h);
	test_too_large(h);
	test_egress(h);
	test_cancel(h);
	test_free_in_flight();
	test_busy();
	test_tls(g);
	test_allow_private();
	test_http2();
	{
		double us = measure(2000);

		printf("# 2000 sequential calls on one keep-alive connection: %.1f us/call\n", us);
	}
	{
		cx_http_stats_t st;

		cx_http_stats(h, &st);
		printf("# stats: calls %llu failures %llu egress_refused %llu connections %llu\n",
		       st.calls, st.failures, st.egress_refused, st.connections_opened);
		T_OK(st.calls == 239 && st.failures == 24 && st.egress_refused == 13 && st.active == 0,
		     "stats count calls, failures and refusals");
	}
	cx_http_free(h);
	cx_egress_free(g);
	event_base_free(base);
	mock_stop();
	curl_global_cleanup();
	return t_done();
}
