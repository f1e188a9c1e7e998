/*
 * otlp.c - see otlp.h.  One exporter per worker thread: a JSON array of
 * finished spans, a flush timer, and a private curl multi handle whose
 * sockets and timeout are libevent events on the worker's loop (the same
 * scheme as connectors/http.c, reduced to one transfer at a time).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/otlp.h"

/* A POST may take this long before its batch is dropped. */
#define POST_TIMEOUT_MS 5000L

struct sock {
	struct sock *next;
	struct mf_otlp *o;
	curl_socket_t fd;
	struct event *ev;
};

struct mf_otlp {
	struct event_base *base;
	const mf_config_t *cfg;
	char *url;			/* <endpoint>/v1/traces */
	json_t *queue;			/* spans waiting */
	int max_queue;
	struct event *flush_ev;		/* every otlp_flush_ms */
	struct event *kick_ev;		/* a flush now (many spans waiting) */
	struct event *curl_timer;
	CURLM *multi;
	CURL *easy;			/* the POST in flight, or NULL */
	struct curl_slist *headers;
	char *body;			/* its body */
	int in_flight;			/* its spans */
	struct sock *socks;
};

/* Process-wide counters (relaxed atomics; any thread). */
static unsigned long long n_exported, n_dropped_full, n_dropped_failed, n_posts;
static _Thread_local mf_otlp_t *tl_exporter;

#define ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

unsigned long long mf_otlp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

void mf_otlp_thread_set(mf_otlp_t *o) { tl_exporter = o; }
bool mf_otlp_enabled(void) { return tl_exporter != NULL; }

void mf_otlp_attr_str(json_t *attrs, const char *key, const char *value)
{
	if (attrs && value)
		json_array_append_new(attrs, json_pack("{s:s, s:{s:s}}", "key", key, "value", "stringValue", value));
}

void mf_otlp_attr_int(json_t *attrs, const char *key, long long value)
{
	char v[24];

	/* OTLP JSON carries 64-bit integers as strings */
	snprintf(v, sizeof(v), "%lld", value);
	if (attrs)
		json_array_append_new(attrs, json_pack("{s:s, s:{s:s}}", "key", key, "value", "intValue", v));
}

static void schedule_flush(mf_otlp_t *o);

void mf_otlp_span(const char *trace_id, const char *span_id, const char *parent_id, const char *name,
		  enum mf_span_kind kind, unsigned long long start_ns, unsigned long long end_ns, bool error,
		  json_t *attrs)
{
	mf_otlp_t *o = tl_exporter;
	char s[24], e[24];
	json_t *span;

	if (o == NULL) {
		json_decref(attrs);
		return;
	}
	if ((int)json_array_size(o->queue) >= o->max_queue) {
		ADD(&n_dropped_full, 1);
		json_decref(attrs);
		return;
	}
	if (end_ns < start_ns)
		end_ns = start_ns;
	snprintf(s, sizeof(s), "%llu", start_ns);
	snprintf(e, sizeof(e), "%llu", end_ns);
	span = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:{s:i}}", "traceId", trace_id, "spanId", span_id,
			 "parentSpanId", parent_id ? parent_id : "", "name", name, "kind", (int)kind,
			 "startTimeUnixNano", s, "endTimeUnixNano", e, "attributes", attrs ? attrs : json_array(),
			 "status", "code", error ? 2 : 1);
	if (span == NULL || json_array_append_new(o->queue, span) < 0) {
		ADD(&n_dropped_full, 1);
		return;
	}
	if ((int)json_array_size(o->queue) >= o->max_queue / 4)
		schedule_flush(o);
}

/* ---- curl <-> libevent ---- */

static void post_done(mf_otlp_t *o, CURLcode rc)
{
	long status = 0;

	curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc == CURLE_OK && status >= 200 && status < 300) {
		ADD(&n_exported, (unsigned long long)o->in_flight);
	} else {
		ADD(&n_dropped_failed, (unsigned long long)o->in_flight);
		mf_debug("otlp", "span export failed", MF_I("status", status),
			 MF_S("error", rc == CURLE_OK ? "status" : curl_easy_strerror(rc)), MF_I("spans", o->in_flight));
	}
	curl_multi_remove_handle(o->multi, o->easy);
	curl_easy_cleanup(o->easy);
	o->easy = NULL;
	free(o->body);
	o->body = NULL;
	o->in_flight = 0;
	/* what queued meanwhile goes at the next tick (or sooner when it is many) */
	if ((int)json_array_size(o->queue) >= o->max_queue / 4)
		schedule_flush(o);
}

static void collect(mf_otlp_t *o)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(o->multi, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == o->easy)
			post_done(o, msg->data.result);
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
	mf_otlp_t *o = arg;
	int running;

	curl_multi_socket_action(o->multi, fd,
				 ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0),
				 &running);
	collect(o);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
	mf_otlp_t *o = arg;
	int running;

	curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect(o);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	mf_otlp_t *o = userp;
	struct sock *cs = socketp, **pp;
	short events;

	if (what == CURL_POLL_REMOVE) {
		for (pp = &o->socks; *pp; pp = &(*pp)->next) {
			if (*pp == cs) {
				*pp = cs->next;
				break;
			}
		}
		if (cs) {
			event_free(cs->ev);
			free(cs);
		}
		return 0;
	}
	if (cs == NULL) {
		cs = calloc(1, sizeof(*cs));
		if (cs == NULL)
			return -1;
		cs->o = o;
		cs->fd = s;
		cs->next = o->socks;
		o->socks = cs;
		curl_multi_assign(o->multi, s, cs);
	} else if (cs->ev) {
		event_free(cs->ev);
		cs->ev = NULL;
	}
	events = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	cs->ev = event_new(o->base, s, events, on_sock, o);
	return cs->ev && event_add(cs->ev, NULL) == 0 ? 0 : -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	mf_otlp_t *o = userp;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	if (timeout_ms < 0)
		return event_del(o->curl_timer) == 0 ? 0 : -1;
	return evtimer_add(o->curl_timer, &tv) == 0 ? 0 : -1;
}

/* ---- flushing ---- */

/* Through an event of its own: event_active() on the pending periodic
 * timer would move its next tick a whole period past the missed deadline,
 * so a burst could hold back the spans that trickle in after it. */
static void schedule_flush(mf_otlp_t *o)
{
	if (o->easy == NULL)
		event_active(o->kick_ev, EV_TIMEOUT, 0);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	mf_otlp_t *o = arg;
	size_t n = json_array_size(o->queue);
	json_t *doc, *spans;
	int running;

	if (o->easy || n == 0)
		return;		/* one POST at a time; the queue bounds what waits */
	spans = o->queue;
	o->queue = json_array();
	if (o->queue == NULL) {
		o->queue = spans;
		return;
	}
	doc = json_pack("{s:[{s:{s:[{s:s, s:{s:s}}]}, s:[{s:{s:s}, s:o}]}]}", "resourceSpans", "resource",
			"attributes", "key", "service.name", "value", "stringValue", o->cfg->otlp_service_name,
			"scopeSpans", "scope", "name", "mspflow", "spans", spans);
	o->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	o->easy = o->body ? curl_easy_init() : NULL;
	if (o->easy == NULL) {
		ADD(&n_dropped_failed, (unsigned long long)n);
		free(o->body);
		o->body = NULL;
		return;
	}
	o->in_flight = (int)n;
	curl_easy_setopt(o->easy, CURLOPT_URL, o->url);
	curl_easy_setopt(o->easy, CURLOPT_HTTPHEADER, o->headers);
	curl_easy_setopt(o->easy, CURLOPT_POSTFIELDS, o->body);
	curl_easy_setopt(o->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(o->body));
	curl_easy_setopt(o->easy, CURLOPT_TIMEOUT_MS, POST_TIMEOUT_MS);
	curl_easy_setopt(o->easy, CURLOPT_CONNECTTIMEOUT_MS, POST_TIMEOUT_MS);
	curl_easy_setopt(o->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(o->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	if (curl_multi_add_handle(o->multi, o->easy) != CURLM_OK) {
		curl_easy_cleanup(o->easy);
		o->easy = NULL;
		free(o->body);
		o->body = NULL;
		o->in_flight = 0;
		ADD(&n_dropped_failed, (unsigned long long)n);
		return;
	}
	ADD(&n_posts, 1);
	curl_multi_socket_action(o->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect(o);
}

/* ---- life cycle ---- */

mf_otlp_t *mf_otlp_new(struct event_base *base, const mf_config_t *cfg)
{
	mf_otlp_t *o;
	size_t n = strlen(cfg->otlp_endpoint);
	struct timeval tv = { cfg->otlp_flush_ms / 1000, (cfg->otlp_flush_ms % 1000) * 1000 };

	if (n == 0)
		return NULL;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		goto oom;
	o->base = base;
	o->cfg = cfg;
	o->max_queue = cfg->otlp_max_queue;
	while (n > 0 && cfg->otlp_endpoint[n - 1] == '/')
		n--;
	o->url = malloc(n + sizeof("/v1/traces"));
	if (o->url == NULL)
		goto oom;
	memcpy(o->url, cfg->otlp_endpoint, n);
	memcpy(o->url + n, "/v1/traces", sizeof("/v1/traces"));
	o->queue = json_array();
	o->flush_ev = event_new(base, -1, EV_PERSIST, on_flush, o);
	o->kick_ev = event_new(base, -1, 0, on_flush, o);
	o->curl_timer = evtimer_new(base, on_curl_timer, o);
	o->multi = curl_multi_init();
	o->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (o->queue == NULL || o->flush_ev == NULL || o->kick_ev == NULL || o->curl_timer == NULL || o->multi == NULL ||
	    o->headers == NULL || event_add(o->flush_ev, &tv) < 0)
		goto oom;
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(o->multi, CURLMOPT_SOCKETDATA, o);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(o->multi, CURLMOPT_TIMERDATA, o);
	return o;
oom:
	mf_error("otlp", "cannot create the span exporter; no spans are recorded on this worker");
	mf_otlp_free(o);
	return NULL;
}

void mf_otlp_free(mf_otlp_t *o)
{
	if (o == NULL)
		return;
	if (tl_exporter == o)
		tl_exporter = NULL;
	if (o->easy) {
		ADD(&n_dropped_failed, (unsigned long long)o->in_flight);
		curl_multi_remove_handle(o->multi, o->easy);
		curl_easy_cleanup(o->easy);
	}
	ADD(&n_dropped_failed, (unsigned long long)json_array_size(o->queue));
	if (o->multi)
		curl_multi_cleanup(o->multi);	/* CURL_POLL_REMOVE frees the sockets */
	while (o->socks) {
		struct sock *s = o->socks;

		o->socks = s->next;
		if (s->ev)
			event_free(s->ev);
		free(s);
	}
	if (o->flush_ev)
		event_free(o->flush_ev);
	if (o->kick_ev)
		event_free(o->kick_ev);
	if (o->curl_timer)
		event_free(o->curl_timer);
	curl_slist_free_all(o->headers);
	json_decref(o->queue);
	free(o->body);
	free(o->url);
	free(o);
}

int mf_otlp_metrics(mf_buf_t *out)
{
	return mf_buf_addf(out,
		"# HELP mspflow_otlp_spans_total Spans by fate: exported (the collector took them), dropped "
		"because the queue was full, or dropped with a batch the collector refused or did not take in time.\n"
		"# TYPE mspflow_otlp_spans_total counter\n"
		"mspflow_otlp_spans_total{result=\"exported\"} %llu\n"
		"mspflow_otlp_spans_total{result=\"dropped_queue_full\"} %llu\n"
		"mspflow_otlp_spans_total{result=\"dropped_export_failed\"} %llu\n"
		"# HELP mspflow_otlp_exports_total POSTs sent to the OTLP collector.\n"
		"# TYPE mspflow_otlp_exports_total counter\nmspflow_otlp_exports_total %llu\n",
		LOAD(&n_exported), LOAD(&n_dropped_full), LOAD(&n_dropped_failed), LOAD(&n_posts));
}
