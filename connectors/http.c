/*
 * http.c - curl multi on a worker's libevent loop (see http.h).
 *
 * curl tells us which sockets to watch (socket callback) and when to wake
 * it (timer callback); libevent tells curl what happened through
 * curl_multi_socket_action, after which finished transfers are collected
 * and their callbacks run.  No user callback ever runs inside a curl
 * callback, so a callback may start or cancel calls freely.
 *
 * Each call also has its own deadline event.  curl's CURLOPT_TIMEOUT_MS
 * only starts counting once a transfer leaves the pending queue (a
 * transfer waiting for a free connection slot has no connection and is not
 * timed out by curl), so the call's deadline, ours, is what bounds a call
 * end to end.  The same event delivers failures decided before curl ran
 * (a refused URL), which keeps "the callback never runs inside
 * cx_http_send" true on every path.
 *
 * A call reaches curl from the loop, not from cx_http_send: on_start adds
 * the calls of one pass of the loop together and runs them at once, so
 * their requests leave in one burst (see start_head in struct cx_http).
 *
 * Egress: CURLOPT_OPENSOCKETFUNCTION sees the resolved address of every
 * connection curl opens (first connect, happy-eyeballs fallbacks, the
 * target of a followed redirect) and refuses it before socket(2).  The
 * refusal is recorded on the call, because curl only reports a generic
 * "could not connect".  Connections are pooled per host, but the
 * permission is per call (allow_private): CURLOPT_PREREQFUNCTION, which
 * curl calls before every request on a new, reused or multiplexed
 * connection, checks the connection's address again for the call about to
 * use it, so a call without allow_private cannot ride a connection to a
 * private address that one with it opened.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "connectors/http.h"
#include "core/buf.h"
#include "core/log.h"

#define MAX_HEADER_BYTES (64 * 1024)	/* response head; curl's own cap is 100 KiB */
#define MAX_REQ_HEADERS 64

#ifndef MSPFLOW_VERSION
#define MSPFLOW_VERSION "dev"
#endif

struct cx_sock {
	struct event ev;
	cx_http_t *h;
	struct cx_sock *prev, *next;
};

struct cx_http_call {
	cx_http_t *h;
	CURL *easy;			/* NULL for a call that failed before curl */
	struct curl_slist *hdrs;
	cx_http_cb cb;
	void *arg;
	struct event timer;		/* deadline, or delivery of an early failure */
	mf_buf_t body;
	mf_buf_t rhdr;			/* "name\0value\0..." of the latest response head */
	size_t limit;
	int timeout_ms;
	bool in_multi, too_large, in_cb;
	bool starting;			/* on the pool's start queue, not yet in the multi */
	bool allow_private;		/* the request's: judged on every connection it uses */
	const char *early_error;	/* decided before curl ran */
	char early_detail[256];
	const char *refused_why;	/* set by opensocket or prereq when the guard said no */
	char refused_ip[46];
	char errbuf[CURL_ERROR_SIZE];
	long long t0_us;
	struct cx_http_call *prev, *next;
	struct cx_http_call *start_next;	/* start queue */
};

#define IDLE_EASY 64

struct cx_http {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	/* Calls accepted but not yet handed to curl, oldest first.
	 * curl_multi_socket_action on any socket also runs every transfer
	 * whose timer is due, and a newly added handle is due at once: adding
	 * it from cx_http_send (typically from a completion callback, inside
	 * the loop's pass over ready sockets) sent each new request between
	 * the reads of the next responses, one at a time, and the server
	 * went back to sleep and was woken for nearly each one.  on_start
	 * adds them after the ready sockets of the pass and sends them in one
	 * burst.  It is activated for the current pass; a call started from
	 * on_start itself (its transfer finished at once) waits for the next
	 * pass, so a fast server cannot keep the loop from polling. */
	struct cx_http_call *start_head, *start_tail;
	struct event *start_ev;
	bool in_start;			/* on_start is running */
	cx_http_options_t opt;		/* ca_file points at ca_file_copy */
	char *ca_file_copy;
	struct cx_http_call *calls;	/* running, queued and early-failed */
	struct cx_sock *socks;
	cx_http_stats_t st;
	/* idle easy handles, reset, for the next calls: creating one costs a
	 * few KiB of zeroed state each time (measured: +16% calls/s at 64
	 * concurrent calls) */
	CURL *idle[IDLE_EASY];
	int nidle;
};

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int cx_http_global_init(mf_err_t *err)
{
	const curl_version_info_data *v;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return mf_err_set(err, 500, "curl_unsuitable", "curl_global_init failed");
	v = curl_version_info(CURLVERSION_NOW);
	if (!(v->features & CURL_VERSION_ASYNCHDNS))
		return mf_err_set(err, 500, "curl_unsuitable",
				  "libcurl %s resolves names synchronously; it would block the event loops", v->version);
	return 0;
}

/* --- curl <-> libevent ------------------------------------------------ */

static void finish(struct cx_http_call *call, CURLcode rc);

static void collect_done(cx_http_t *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		struct cx_http_call *call = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		if (call)
			finish(call, msg->data.result);
	}
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct cx_sock *cs = arg;
	cx_http_t *h = cs->h;
	int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;

	/* cs may be freed inside socket_action (CURL_POLL_REMOVE): h was read first. */
	curl_multi_socket_action(h->multi, fd, flags, &running);
	collect_done(h);
}

static void on_multi_timer(evutil_socket_t fd, short what, void *arg)
{
	cx_http_t *h = arg;
	int running;

	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_done(h);
}

/* Hands the calls accepted since the last pass to curl (see start_head)
 * and runs them at once, together, rather than through the 0 ms timer
 * curl asks for on each add (one more pass of the loop). */
static void on_start(evutil_socket_t fd, short what, void *arg)
{
	cx_http_t *h = arg;
	struct cx_http_call *call;
	int running;

	if (h->start_head == NULL)
		return;
	h->in_start = true;
	while ((call = h->start_head) != NULL) {
		h->start_head = call->start_next;
		if (h->start_head == NULL)
			h->start_tail = NULL;
		call->start_next = NULL;
		call->starting = false;
		if (curl_multi_add_handle(h->multi, call->easy) != CURLM_OK) {
			/* only out of memory: fails like a transfer would */
			finish(call, CURLE_OUT_OF_MEMORY);
			continue;
		}
		call->in_multi = true;
	}
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_done(h);
	h->in_start = false;
}

static void sock_unlink_free(cx_http_t *h, struct cx_sock *cs)
{
	event_del(&cs->ev);
	if (cs->prev)
		cs->prev->next = cs->next;
	else
		h->socks = cs->next;
	if (cs->next)
		cs->next->prev = cs->prev;
	free(cs);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	cx_http_t *h = userp;
	struct cx_sock *cs = socketp;
	short events;

	if (what == CURL_POLL_REMOVE) {
		if (cs)
			sock_unlink_free(h, cs);
		return 0;
	}
	if (cs == NULL) {
		cs = calloc(1, sizeof(*cs));
		if (cs == NULL)
			return -1;
		cs->h = h;
		cs->next = h->socks;
		if (h->socks)
			h->socks->prev = cs;
		h->socks = cs;
		curl_multi_assign(h->multi, s, cs);
	} else {
		event_del(&cs->ev);
	}
	events = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	event_assign(&cs->ev, h->base, s, events, on_socket_event, cs);
	return event_add(&cs->ev, NULL) == 0 ? 0 : -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	cx_http_t *h = userp;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	if (timeout_ms < 0)
		return event_del(h->timer) == 0 ? 0 : -1;
	return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

/* --- per-transfer callbacks -------------------------------------------- */

static curl_socket_t opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct cx_http_call *call = clientp;
	const char *why = "family";
	curl_socket_t fd;

	if (purpose != CURLSOCKTYPE_IPCXN ||
	    !cx_egress_addr_ok_ex(call->h->opt.egress, &a->addr, a->addrlen, call->allow_private, &why)) {
		call->refused_why = why;
		call->refused_ip[0] = '\0';
		if (a->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&a->addr)->sin_addr,
				  call->refused_ip, sizeof(call->refused_ip));
		else if (a->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a->addr)->sin6_addr,
				  call->refused_ip, sizeof(call->refused_ip));
		return CURL_SOCKET_BAD;
	}
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	if (fd != CURL_SOCKET_BAD)
		call->h->st.connections_opened++;
	return fd;
}

/* Before each request, on whatever connection curl picked for it: a
 * connection opened for another call was judged with that call's
 * allow_private, not this one's.  An address that does not parse is
 * refused ("family"). */
static int prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	struct cx_http_call *call = clientp;
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl = 0;
	const char *why = "family";

	memset(&ss, 0, sizeof(ss));
	if (primary_ip && inet_pton(AF_INET, primary_ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sl = sizeof(*sin);
	} else if (primary_ip && inet_pton(AF_INET6, primary_ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sl = sizeof(*sin6);
	}
	if (sl && cx_egress_addr_ok_ex(call->h->opt.egress, (struct sockaddr *)&ss, sl, call->allow_private, &why))
		return CURL_PREREQFUNC_OK;
	call->refused_why = why;
	snprintf(call->refused_ip, sizeof(call->refused_ip), "%s", primary_ip ? primary_ip : "");
	return CURL_PREREQFUNC_ABORT;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
	struct cx_http_call *call = ud;
	size_t n = size * nmemb;

	if (call->body.len + n > call->limit) {
		call->too_large = true;
		return 0;		/* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (mf_buf_add(&call->body, p, n) < 0)
		return 0;
	return n;
}

static size_t header_cb(char *p, size_t size, size_t nitems, void *ud)
{
	struct cx_http_call *call = ud;
	size_t n = size * nitems, nl, vl;
	const char *colon, *v, *end = p + n;

	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* A new head (after 1xx or a followed redirect): only the final
		 * response's headers and body are kept. */
		mf_buf_reset(&call->rhdr);
		mf_buf_reset(&call->body);
		return n;
	}
	if (call->rhdr.len + n > MAX_HEADER_BYTES) {
		call->too_large = true;
		return 0;
	}
	colon = memchr(p, ':', n);
	if (colon == NULL)
		return n;		/* the blank line ending the head */
	nl = (size_t)(colon - p);
	while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
		nl--;
	v = colon + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	vl = (size_t)(end - v);
	while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	if (nl == 0 || memchr(p, '\0', n))
		return n;
	if (mf_buf_add(&call->rhdr, p, nl) < 0 || mf_buf_addc(&call->rhdr, '\0') < 0 ||
	    mf_buf_add(&call->rhdr, v, vl) < 0 || mf_buf_addc(&call->rhdr, '\0') < 0)
		return 0;
	return n;
}

/* --- completion ----------------------------------------------------- */

static void call_unlink(struct cx_http_call *call)
{
	cx_http_t *h = call->h;

	if (call->prev)
		call->prev->next = call->next;
	else
		h->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	if (call->starting) {
		/* cancelled or timed out before on_start ran: rare, and the
		 * queue holds one loop pass worth of calls */
		struct cx_http_call **pp = &h->start_head, *last = NULL;

		while (*pp != call) {
			last = *pp;
			pp = &(*pp)->start_next;
		}
		*pp = call->start_next;
		if (h->start_tail == call)
			h->start_tail = last;
		call->starting = false;
	}
	h->st.active--;
}

/* Frees the call; its easy handle is reset and kept for a later call (up
 * to IDLE_EASY), and the connection it used stays in the multi's pool. */
static void call_release(struct cx_http_call *call)
{
	cx_http_t *h = call->h;

	event_del(&call->timer);
	if (call->easy) {
		if (call->in_multi)
			curl_multi_remove_handle(h->multi, call->easy);
		if (h->nidle < IDLE_EASY) {
			curl_easy_reset(call->easy);	/* every option back to its default */
			h->idle[h->nidle++] = call->easy;
		} else {
			curl_easy_cleanup(call->easy);
		}
	}
	curl_slist_free_all(call->hdrs);
	mf_buf_free(&call->body);
	mf_buf_free(&call->rhdr);
	free(call);
}

static bool is_tls_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS: case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ENGINE_SETFAILED: case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_SHUTDOWN_FAILED: case CURLE_USE_SSL_FAILED: case CURLE_SSL_CLIENTCERT:
		return true;
	default:
		return false;
	}
}

/* Maps curl's result to the fixed error code and a tenant-safe detail.
 * Details use curl_easy_strerror (fixed text), except for TLS where the
 * error buffer says which check failed (it names the host, never the
 * path, query or a header). */
static const char *classify(struct cx_http_call *call, CURLcode rc, long redirects, char *detail, size_t dlen)
{
	if (call->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(detail, dlen, "the response is larger than the %zu bytes allowed", call->limit);
		return "too_large";
	}
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(detail, dlen, "no complete response within %d ms", call->timeout_ms);
		return "timeout";
	}
	if (call->refused_why && rc != CURLE_OK) {
		snprintf(detail, dlen, "connection to %s refused by the egress policy (%s)%s",
			 call->refused_ip[0] ? call->refused_ip : "the address", call->refused_why,
			 redirects > 0 ? " after a redirect" : "");
		return "egress_refused";
	}
	switch (rc) {
	case CURLE_OK:
		detail[0] = '\0';
		return NULL;
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(detail, dlen, "the host name could not be resolved");
		return "dns_failed";
	case CURLE_COULDNT_CONNECT:
		snprintf(detail, dlen, "could not connect to the server");
		return "connect_failed";
	case CURLE_UNSUPPORTED_PROTOCOL:
		if (redirects > 0) {
			snprintf(detail, dlen, "a redirect to a scheme other than http or https was refused");
			return "redirect_refused";
		}
		snprintf(detail, dlen, "only http and https are allowed");
		return "scheme_refused";
	case CURLE_TOO_MANY_REDIRECTS:
		snprintf(detail, dlen, "more redirects than the %ld allowed", redirects);
		return "redirect_refused";
	default:
		break;
	}
	if (is_tls_error(rc)) {
		snprintf(detail, dlen, "TLS failed: %.200s", call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
		return "tls_failed";
	}
	snprintf(detail, dlen, "transfer failed: %s", curl_easy_strerror(rc));
	return "transport";
}

static void finish(struct cx_http_call *call, CURLcode rc)
{
	cx_http_t *h = call->h;
	cx_http_response_t res;
	static const char *const no_headers[] = { NULL };
	const char **hv = NULL;
	long status = 0, version = 0, redirects = 0;
	char *ip = NULL;
	size_t npairs = 0;

	memset(&res, 0, sizeof(res));
	if (call->in_multi) {
		curl_multi_remove_handle(h->multi, call->easy);
		call->in_multi = false;
	}
	event_del(&call->timer);
	if (call->early_error) {
		res.error = call->early_error;
		snprintf(res.detail, sizeof(res.detail), "%s", call->early_detail);
	} else {
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(call->easy, CURLINFO_HTTP_VERSION, &version);
		curl_easy_getinfo(call->easy, CURLINFO_REDIRECT_COUNT, &redirects);
		if (curl_easy_getinfo(call->easy, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip)
			snprintf(res.primary_ip, sizeof(res.primary_ip), "%s", ip);
		if (!res.primary_ip[0] && call->refused_why)
			snprintf(res.primary_ip, sizeof(res.primary_ip), "%s", call->refused_ip);
		res.error = classify(call, rc, redirects, res.detail, sizeof(res.detail));
	}
	res.status = (int)status;
	res.http_version = version == CURL_HTTP_VERSION_2_0 ? 20 : version == CURL_HTTP_VERSION_1_1 ? 11 :
			   version == CURL_HTTP_VERSION_1_0 ? 10 : 0;
	res.redirects = (int)redirects;
	res.total_us = now_us() - call->t0_us;
	if (res.error)
		mf_buf_reset(&call->body);	/* a partial body is not a response */
	res.body = call->body.data ? call->body.data : "";
	res.body_len = call->body.len;
	for (size_t i = 0; i < call->rhdr.len; i++)
		npairs += call->rhdr.data[i] == '\0';
	npairs /= 2;
	if (npairs && (hv = malloc((2 * npairs + 1) * sizeof(*hv))) != NULL) {
		const char *p = call->rhdr.data;

		for (size_t i = 0; i < 2 * npairs; i++) {
			hv[i] = p;
			p += strlen(p) + 1;
		}
		hv[2 * npairs] = NULL;
	}
	res.headers = hv ? (const char *const *)hv : no_headers;

	call_unlink(call);
	if (res.error) {
		h->st.failures++;
		if (strcmp(res.error, "egress_refused") == 0)
			h->st.egress_refused++;
	}
	call->in_cb = true;
	call->cb(&res, call->arg);
	free(hv);
	call_release(call);
}

static void on_call_timer(evutil_socket_t fd, short what, void *arg)
{
	finish(arg, CURLE_OPERATION_TIMEDOUT);
}

const char *cx_http_res_header(const cx_http_response_t *res, const char *name)
{
	for (const char *const *p = res->headers; p && p[0]; p += 2)
		if (strcasecmp(p[0], name) == 0)
			return p[1];
	return NULL;
}

/* --- pool ------------------------------------------------------------ */

cx_http_t *cx_http_new(struct event_base *base, const cx_http_options_t *opt, mf_err_t *err)
{
	cx_http_t *h = calloc(1, sizeof(*h));
	cx_http_options_t o = opt ? *opt : (cx_http_options_t){ 0 };

	if (h == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	if (o.max_connections <= 0)
		o.max_connections = 64;
	if (o.max_host_connections <= 0)
		o.max_host_connections = 8;
	if (o.max_calls <= 0)
		o.max_calls = 4096;
	if (o.max_response_bytes == 0)
		o.max_response_bytes = 1024 * 1024;
	if (o.timeout_ms <= 0)
		o.timeout_ms = 30000;
	if (o.connect_timeout_ms <= 0)
		o.connect_timeout_ms = 5000;
	h->base = base;
	h->multi = curl_multi_init();
	h->timer = evtimer_new(base, on_multi_timer, h);
	h->start_ev = evtimer_new(base, on_start, h);
	if (o.ca_file && (h->ca_file_copy = strdup(o.ca_file)) == NULL)
		goto oom;
	o.ca_file = h->ca_file_copy;
	h->opt = o;
	if (h->multi == NULL || h->timer == NULL || h->start_ev == NULL)
		goto oom;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)o.max_connections);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o.max_host_connections);
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)o.max_connections);
	return h;
oom:
	mf_err_set(err, 500, "out_of_memory", "out of memory");
	cx_http_free(h);
	return NULL;
}

void cx_http_free(cx_http_t *h)
{
	if (h == NULL)
		return;
	while (h->calls) {
		struct cx_http_call *call = h->calls;

		call_unlink(call);
		call_release(call);
	}
	while (h->nidle > 0)
		curl_easy_cleanup(h->idle[--h->nidle]);
	if (h->multi)
		curl_multi_cleanup(h->multi);	/* closes pooled connections (socket callback REMOVE) */
	while (h->socks)
		sock_unlink_free(h, h->socks);
	if (h->timer)
		event_free(h->timer);
	if (h->start_ev)
		event_free(h->start_ev);
	free(h->ca_file_copy);
	free(h);
}

void cx_http_stats(const cx_http_t *h, cx_http_stats_t *out)
{
	*out = h->st;
}

void cx_http_cancel(cx_http_call_t *call)
{
	if (call == NULL || call->in_cb)
		return;
	call_unlink(call);
	call_release(call);
}

/* --- starting a call ------------------------------------------------- */

static bool token_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (n >= max || (unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
		    strchr("()<>@,;:\\\"/[]?={}", *s))
			return false;
	return n > 0;
}

/* Headers curl must own: framing and hop-by-hop.  Letting a caller set
 * them would let a connector desynchronise the connection it shares. */
static bool header_reserved(const char *name)
{
	static const char *const names[] = {
		"host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
		"keep-alive", "expect", "proxy-connection", "trailer",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i]) == 0)
			return true;
	return false;
}

/* The body, if any, goes through CURLOPT_COPYPOSTFIELDS: with a body, or
 * for the methods that always carry one (an empty one then). */
static bool sends_body(const cx_http_request_t *req, const char *method)
{
	return strcmp(method, "HEAD") != 0 &&
	       (req->body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
		strcmp(method, "PATCH") == 0);
}

static int build_headers(struct cx_http_call *call, const cx_http_request_t *req, bool body, mf_err_t *err)
{
	bool has_ct = false;
	mf_buf_t line = MF_BUF_INIT;
	struct curl_slist *l;

	if (req->nheaders < 0 || req->nheaders > MAX_REQ_HEADERS || (req->nheaders && !req->headers))
		return mf_err_set(err, 400, "invalid_request", "at most %d request headers", MAX_REQ_HEADERS);
	for (int i = 0; i < req->nheaders; i++) {
		const char *n = req->headers[i].name, *v = req->headers[i].value;

		if (n == NULL || v == NULL || !token_ok(n, 256))
			goto bad;
		if (strlen(v) > 8192 || strpbrk(v, "\r\n"))
			goto bad;
		if (header_reserved(n)) {
			mf_buf_free(&line);
			return mf_err_set(err, 400, "invalid_request", "request header %.64s is set by the transport", n);
		}
		has_ct |= strcasecmp(n, "content-type") == 0;
		mf_buf_reset(&line);
		/* "Name;" is curl's way to send an empty value ("Name:" removes it). */
		if (mf_buf_addf(&line, v[0] ? "%s: %s" : "%s;", n, v) < 0)
			goto oom;
		if ((l = curl_slist_append(call->hdrs, line.data)) == NULL)
			goto oom;
		call->hdrs = l;
		continue;
bad:
		mf_buf_free(&line);
		return mf_err_set(err, 400, "invalid_request", "request header %d has an invalid name or value", i);
	}
	mf_buf_free(&line);
	/* No 100-continue round trip; no form content type the caller did not
	 * ask for.  curl adds neither without a body, and every header in the
	 * list is compared with each one curl would add, per request. */
	if (!body)
		return 0;
	if ((l = curl_slist_append(call->hdrs, "Expect:")) == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	call->hdrs = l;
	if (!has_ct) {
		if ((l = curl_slist_append(call->hdrs, "Content-Type:")) == NULL)
			return mf_err_set(err, 500, "out_of_memory", "out of memory");
		call->hdrs = l;
	}
	return 0;
oom:
	mf_buf_free(&line);
	return mf_err_set(err, 500, "out_of_memory", "out of memory");
}

static int setup_easy(cx_http_t *h, struct cx_http_call *call, const cx_http_request_t *req, const char *method)
{
	CURL *e = call->easy;
	CURLcode rc = CURLE_OK;

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_PRIVATE, call);
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, req->max_redirects > 0 ? 1L : 0L);
	SET(CURLOPT_MAXREDIRS, (long)req->max_redirects);
	SET(CURLOPT_PROXY, "");			/* never a proxy from the environment */
	SET(CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)call->timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)h->opt.connect_timeout_ms);
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	SET(CURLOPT_PIPEWAIT, 1L);			/* prefer multiplexing on a connection being set up */
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (h->opt.ca_file)
		SET(CURLOPT_CAINFO, h->opt.ca_file);
	SET(CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	SET(CURLOPT_OPENSOCKETDATA, call);
	SET(CURLOPT_PREREQFUNCTION, prereq_cb);
	SET(CURLOPT_PREREQDATA, call);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, call);
	SET(CURLOPT_HEADERFUNCTION, header_cb);
	SET(CURLOPT_HEADERDATA, call);
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)call->limit);	/* refuses a large Content-Length early */
	SET(CURLOPT_ERRORBUFFER, call->errbuf);
	SET(CURLOPT_HTTPHEADER, call->hdrs);
	SET(CURLOPT_USERAGENT, "mspflow/" MSPFLOW_VERSION);
#if LIBCURL_VERSION_NUM >= 0x075700
	/* Removing a handle still resolving must not join curl's resolver
	 * thread (that would block the loop): let it finish on its own. */
	SET(CURLOPT_QUICK_EXIT, 1L);
#endif
	if (strcmp(method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (req->body_len > 0 || strcmp(method, "GET") != 0) {
		if (sends_body(req, method)) {
			SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
			SET(CURLOPT_COPYPOSTFIELDS, req->body_len ? (const char *)req->body : "");
		}
		if (strcmp(method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, method);
	} else {
		SET(CURLOPT_HTTPGET, 1L);
	}
#undef SET
	return rc == CURLE_OK ? 0 : -1;
}

cx_http_call_t *cx_http_send(cx_http_t *h, const cx_http_request_t *req, cx_http_cb cb, void *arg, mf_err_t *err)
{
	struct cx_http_call *call;
	const char *method = req->method ? req->method : req->body_len ? "POST" : "GET";
	struct timeval tv = { 0, 0 };
	static const struct timeval zero = { 0, 0 };
	mf_err_t uerr;
	int urc;

	if (cb == NULL || req->url == NULL || req->timeout_ms < 0 || req->max_redirects < 0 ||
	    (req->body_len && req->body == NULL)) {
		mf_err_set(err, 400, "invalid_request", "incomplete request");
		return NULL;
	}
	if (!token_ok(method, 16)) {
		mf_err_set(err, 400, "invalid_request", "invalid method");
		return NULL;
	}
	if (h->st.active >= h->opt.max_calls) {
		mf_err_set(err, 503, "busy", "too many outbound calls in progress (%d)", h->opt.max_calls);
		return NULL;
	}
	call = calloc(1, sizeof(*call));
	if (call == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	call->h = h;
	call->cb = cb;
	call->arg = arg;
	call->t0_us = now_us();
	call->limit = req->max_response_bytes ? req->max_response_bytes : h->opt.max_response_bytes;
	call->timeout_ms = req->timeout_ms ? req->timeout_ms : h->opt.timeout_ms;
	call->allow_private = req->allow_private;
	evtimer_assign(&call->timer, h->base, on_call_timer, call);
	if (build_headers(call, req, sends_body(req, method), err) < 0) {
		call_release(call);
		return NULL;
	}

	urc = cx_egress_url_check_ex(h->opt.egress, req->url, req->allow_private, &uerr);
	if (urc < 0) {
		/* Delivered from the loop like any other outcome. */
		call->early_error = urc == CX_EGRESS_ESCHEME ? "scheme_refused" :
				    urc == CX_EGRESS_EREFUSED ? "egress_refused" : "bad_url";
		snprintf(call->early_detail, sizeof(call->early_detail), "%s", uerr.detail);
	} else {
		call->easy = h->nidle > 0 ? h->idle[--h->nidle] : curl_easy_init();
		if (call->easy == NULL) {
			mf_err_set(err, 500, "out_of_memory", "out of memory");
			call_release(call);
			return NULL;
		}
		if (setup_easy(h, call, req, method) < 0) {
			mf_err_set(err, 500, "internal_error", "could not configure the transfer");
			call_release(call);
			return NULL;
		}
		tv.tv_sec = call->timeout_ms / 1000;
		tv.tv_usec = (call->timeout_ms % 1000) * 1000;
	}
	/* The loop's cached time can be a whole callback old; the deadline
	 * counts from now. */
	event_base_update_cache_time(h->base);
	if (evtimer_add(&call->timer, &tv) < 0) {
		mf_err_set(err, 500, "internal_error", "could not arm the call's deadline");
		call_release(call);
		return NULL;
	}
	if (call->easy) {
		/* Added to the multi by on_start, from the loop; so no callback
		 * of ours runs inside this function either. */
		call->starting = true;
		if (h->start_tail)
			h->start_tail->start_next = call;
		else
			h->start_head = call;
		h->start_tail = call;
		if (!h->in_start)
			event_active(h->start_ev, EV_TIMEOUT, 1);	/* after the ready sockets */
		else if (!evtimer_pending(h->start_ev, NULL))
			evtimer_add(h->start_ev, &zero);	/* next pass, after polling */
	}
	call->next = h->calls;
	if (h->calls)
		h->calls->prev = call;
	h->calls = call;
	h->st.active++;
	h->st.calls++;
	return call;
}
