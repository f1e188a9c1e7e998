/*
 * demo_peers.c - the demo's CRM, PSA, ERP, RMM and LLM (demo_peers.h).
 *
 * Just enough of each system for the shipped templates to run end to end:
 * every path a template calls answers the fields its `output` expressions
 * read (the JSON files of catalog/templates), with ids counted up per start.  A POST
 * or PATCH must carry a JSON object (400 otherwise), an unknown path is 404
 * with a JSON error, and a repeated Idempotency-Key gets the first answer
 * again, as the engine expects of a well-behaved peer (CONTRACT 6).
 *
 * Everything here runs on the peers' own thread and event base, so none of
 * its state needs a lock; stopping is a write to an eventfd that the loop
 * watches, the cross-thread message STYLE.md prescribes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "cmd/demo_peers.h"

/* a body larger than this is refused by evhttp itself (413) */
#define MAX_BODY (256 * 1024)
/* remembered Idempotency-Keys; past this the memory starts over, which a
 * demo that makes a few dozen calls never reaches */
#define MAX_KEYS 1000
#define MAX_SEGS 8

struct mf_peers {
	pthread_t thread;
	bool started;
	struct event_base *base;
	struct evhttp *http;
	struct event *wake;
	int efd;
	int port;
	unsigned long seq;		/* ids handed out and calls logged */
	json_t *calls;			/* the call log, oldest first */
	json_t *deals;			/* deal id -> fields PATCHed onto it */
	json_t *keys;			/* "METHOD path key" -> {"status", "body"} */
};

/* What a handler answers: status and a new reference (NULL = out of memory). */
typedef struct reply {
	int status;
	json_t *body;
} reply_t;

typedef struct call {
	mf_peers_t *p;
	const char *method;
	char *segs[MAX_SEGS];
	int n;
	json_t *body;			/* borrowed; NULL for a GET */
} call_t;

static reply_t ok(int status, json_t *body)
{
	return (reply_t){ status, body };
}

static reply_t not_found(void)
{
	return ok(404, json_pack("{s:s,s:s}", "error", "not_found", "message", "no such resource on this system"));
}

static json_t *new_id(mf_peers_t *p, const char *prefix)
{
	return json_sprintf("%s-%lu", prefix, 1000 + ++p->seq);
}

/* The body's member k, or null (new reference). */
static json_t *field(const call_t *c, const char *k)
{
	json_t *v = json_object_get(c->body, k);

	return v ? json_incref(v) : json_null();
}

static bool is(const call_t *c, const char *method, int n, const char *s0, const char *s2)
{
	return strcmp(c->method, method) == 0 && c->n == n && strcmp(c->segs[0], s0) == 0 &&
	       (s2 == NULL || (n > 2 && strcmp(c->segs[2], s2) == 0));
}

/* ---- CRM ---- */

static json_t *deal(mf_peers_t *p, const char *id)
{
	json_t *d = json_pack("{s:s,s:s,s:s,s:i,s:s,s:f,s:s,s:{s:s,s:s},s:[{s:s,s:i},{s:s,s:i},{s:s,s:i}]}",
			      "id", id, "name", strcmp(id, "D-1001") == 0 ? "Contoso - Azure migration" : "Demo deal",
			      "company_id", "CO-CONTOSO", "amount", 75000, "currency", "USD", "margin", 0.32,
			      "stage", "closed_won", "owner", "name", "Dana Whitfield", "email",
			      "dana.whitfield@northwind.example", "line_items", "name", "Azure landing zone",
			      "quantity", 1, "name", "Workload migration (per server)", "quantity", 12, "name",
			      "Managed backup seat", "quantity", 40);
	json_t *patch = json_object_get(p->deals, id);

	if (d && patch && json_object_update(d, patch) < 0) {
		json_decref(d);
		return NULL;
	}
	return d;
}

static reply_t crm(const call_t *c)
{
	mf_peers_t *p = c->p;

	if (c->n < 2 || strcmp(c->segs[0], "deals") != 0)
		return not_found();
	if (is(c, "GET", 2, "deals", NULL))
		return ok(200, deal(p, c->segs[1]));
	if (is(c, "PATCH", 2, "deals", NULL)) {
		json_t *patch = json_object_get(p->deals, c->segs[1]);

		if (patch == NULL) {
			patch = json_object();
			if (patch == NULL || json_object_set_new(p->deals, c->segs[1], patch) < 0)
				return ok(503, NULL);
		}
		if (json_object_update(patch, c->body) < 0)
			return ok(503, NULL);
		return ok(200, deal(p, c->segs[1]));
	}
	if (is(c, "POST", 3, "deals", "notes"))
		return ok(201, json_pack("{s:o,s:s,s:o}", "id", new_id(p, "N"), "deal_id", c->segs[1], "text",
					 field(c, "text")));
	return not_found();
}

/* ---- PSA ---- */

static reply_t psa(const call_t *c)
{
	mf_peers_t *p = c->p;

	if (is(c, "POST", 1, "projects", NULL))
		return ok(201, json_pack("{s:o,s:o,s:o,s:s}", "id", new_id(p, "PRJ"), "name", field(c, "name"),
					 "company_id", field(c, "company_id"), "status", "new"));
	if (is(c, "POST", 3, "projects", "notes"))
		return ok(201, json_pack("{s:o,s:s}", "id", new_id(p, "PN"), "project_id", c->segs[1]));
	if (is(c, "POST", 3, "projects", "checklists"))
		return ok(201, json_pack("{s:o,s:s}", "id", new_id(p, "CL"), "project_id", c->segs[1]));
	if (is(c, "POST", 1, "tickets", NULL))
		return ok(201, json_pack("{s:o,s:o,s:o,s:s}", "id", new_id(p, "T"), "type", field(c, "type"),
					 "summary", field(c, "summary"), "status", "new"));
	if (is(c, "PATCH", 2, "tickets", NULL)) {
		json_t *t = json_deep_copy(c->body);

		if (t == NULL || json_object_set_new(t, "id", json_string(c->segs[1])) < 0) {
			json_decref(t);
			return ok(503, NULL);
		}
		return ok(200, t);
	}
	if (is(c, "POST", 1, "companies", NULL))
		return ok(201, json_pack("{s:o,s:o}", "id", new_id(p, "CO"), "name", field(c, "name")));
	if (is(c, "POST", 3, "companies", "contacts"))
		return ok(201, json_pack("{s:o,s:s,s:o}", "id", new_id(p, "CT"), "company_id", c->segs[1], "email",
					 field(c, "email")));
	if (is(c, "POST", 3, "contacts", "emails"))
		return ok(202, json_pack("{s:o,s:s}", "id", new_id(p, "EM"), "status", "queued"));
	if (is(c, "GET", 3, "billing-periods", "timesheets"))
		return ok(200, json_pack("{s:s,s:{s:i,s:i,s:i,s:[]}}", "period_id", c->segs[1], "summary",
					 "missing_entries", 0, "unapproved_entries", 0, "billable_hours", 120,
					 "people_missing"));
	if (is(c, "POST", 3, "billing-periods", "reminders"))
		return ok(201, json_pack("{s:o,s:i}", "id", new_id(p, "RM"), "reminders_sent", 1));
	return not_found();
}

/* ---- ERP and RMM ---- */

static reply_t erp(const call_t *c)
{
	mf_peers_t *p = c->p;

	if (c->n == 2 && strcmp(c->method, "POST") == 0 && strcmp(c->segs[0], "billing") == 0 &&
	    strcmp(c->segs[1], "schedules") == 0)
		return ok(201, json_pack("{s:o,s:o,s:o,s:s}", "id", new_id(p, "BS"), "amount", field(c, "amount"),
					 "installments", field(c, "installments"), "status", "scheduled"));
	if (is(c, "POST", 1, "invoice-packages", NULL)) {
		json_t *h = json_object_get(c->body, "billable_hours");
		double hours = json_is_number(h) ? json_number_value(h) : 0;

		return ok(201, json_pack("{s:o,s:f,s:s}", "id", new_id(p, "INV"), "total", hours * 150.0, "currency",
					 "USD"));
	}
	return not_found();
}

static reply_t rmm(const call_t *c)
{
	mf_peers_t *p = c->p;
	json_t *id, *url;

	if (!is(c, "POST", 1, "sites", NULL))
		return not_found();
	id = new_id(p, "S");
	url = id ? json_sprintf("http://127.0.0.1:%d/rmm/installers/%s.msi", p->port, json_string_value(id)) : NULL;
	return ok(201, json_pack("{s:o,s:o*,s:o}", "id", id, "installer_url", url, "name", field(c, "name")));
}

/* ---- LLM: an OpenAI-style chat completion ---- */

/* The JSON value that follows marker in text (new reference), or NULL. */
static json_t *value_after(const char *text, const char *marker)
{
	const char *at = text ? strstr(text, marker) : NULL;

	return at ? json_loads(at + strlen(marker), JSON_DISABLE_EOF_CHECK, NULL) : NULL;
}

/* The answer engine/ai.c asks for: the task is named by the system
 * message's first sentence and the shape by the JSON it quotes.  A
 * classification says "emergency" when the text sounds like one (and
 * that label exists), else the first label, always confidently. */
static json_t *llm_answer(const char *sys, const char *user)
{
	json_t *list, *a = NULL;

	if (strncmp(sys, "Classify", 8) == 0 && (list = value_after(sys, "<exactly one of ")) != NULL) {
		const char *label = json_string_value(json_array_get(list, 0));
		size_t i;
		json_t *v;

		json_array_foreach(list, i, v)
			if (strcmp(json_string_value(v) ? json_string_value(v) : "", "emergency") == 0 && user &&
			    (strcasestr(user, "outage") || strcasestr(user, "is down") || strcasestr(user, "urgent")))
				label = "emergency";
		a = label ? json_pack("{s:s,s:f}", "label", label, "confidence", 0.93) : NULL;
		json_decref(list);
	} else if (strncmp(sys, "Recommend", 9) == 0 && (list = value_after(sys, "<exactly one of ")) != NULL) {
		a = json_pack("{s:O*,s:s,s:f}", "option", json_array_get(list, 0), "reason",
			      "It fits the situation described best.", "confidence", 0.9);
		json_decref(list);
	} else if (strncmp(sys, "Extract", 7) == 0 && (list = value_after(sys, "{\"fields\": ")) != NULL) {
		json_t *fields = json_object(), *v;
		const char *k;

		json_object_foreach(list, k, v)
			json_object_set_new(fields, k, json_null());
		a = fields ? json_pack("{s:o,s:f}", "fields", fields, "confidence", 0.9) : NULL;
		json_decref(list);
	} else {
		char summary[161];

		snprintf(summary, sizeof(summary), "%s", user && user[0] ? user : "Nothing to summarise.");
		a = json_pack("{s:s,s:f}", "summary", summary, "confidence", 0.9);
	}
	return a;
}

static reply_t llm(const call_t *c)
{
	json_t *msgs = json_object_get(c->body, "messages"), *answer, *model;
	const char *sys, *user;
	char *content;
	int in_tokens, out_tokens;
	reply_t r;

	if (!(c->n == 3 && strcmp(c->method, "POST") == 0 && strcmp(c->segs[0], "v1") == 0 &&
	      strcmp(c->segs[1], "chat") == 0 && strcmp(c->segs[2], "completions") == 0))
		return not_found();
	sys = json_string_value(json_object_get(json_array_get(msgs, 0), "content"));
	user = json_string_value(json_object_get(json_array_get(msgs, 1), "content"));
	if (sys == NULL)
		return ok(400, json_pack("{s:{s:s,s:s}}", "error", "type", "invalid_request_error", "message",
					 "messages must start with a system message"));
	answer = llm_answer(sys, user);
	content = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
	json_decref(answer);
	if (content == NULL)
		return ok(503, NULL);
	model = json_object_get(c->body, "model");
	model = json_is_string(model) ? json_incref(model) : json_string("demo-llm");
	/* a token is about four characters: plausible counts, nothing more */
	in_tokens = (int)((strlen(sys) + (user ? strlen(user) : 0)) / 4);
	out_tokens = (int)(strlen(content) / 4);
	r = ok(200, json_pack("{s:o,s:s,s:I,s:o,s:[{s:i,s:s,s:{s:s,s:s}}],s:{s:i,s:i,s:i}}", "id",
			      new_id(c->p, "chatcmpl"), "object", "chat.completion", "created", (json_int_t)time(NULL),
			      "model", model, "choices", "index", 0, "finish_reason", "stop", "message", "role",
			      "assistant", "content", content, "usage", "prompt_tokens", in_tokens, "completion_tokens",
			      out_tokens, "total_tokens", in_tokens + out_tokens));
	free(content);
	return r;
}

/* ---- the listener ---- */

static const char *method_name(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_DELETE: return "DELETE";
	default: return "OTHER";
	}
}

static void send_json(struct evhttp_request *req, int status, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	if (out == NULL || text == NULL) {
		evhttp_send_error(req, 503, "out of memory");
	} else {
		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
		evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", out);
	}
	free(text);
	if (out)
		evbuffer_free(out);
}

static void log_call(mf_peers_t *p, const char *system, const char *method, const char *path, const char *key,
		     json_t *body, int status)
{
	char at[32];
	time_t now = time(NULL);
	struct tm tm;
	json_t *e;

	gmtime_r(&now, &tm);
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	e = json_pack("{s:s,s:s,s:s,s:s,s:s*,s:O*,s:i}", "at", at, "system", system, "method", method, "path", path,
		      "idempotency_key", key, "body", body, "status", status);
	if (e == NULL || json_array_append_new(p->calls, e) < 0)
		return;
	while (json_array_size(p->calls) > MF_PEERS_MAX_CALLS)
		json_array_remove(p->calls, 0);
}

/* GET /calls[?system=psa]: the log, oldest first. */
static void list_calls(mf_peers_t *p, struct evhttp_request *req, const char *query)
{
	struct evkeyvalq q = { 0 };
	const char *system = NULL;
	json_t *items = json_array(), *e, *out;
	size_t i;

	if (query && evhttp_parse_query_str(query, &q) == 0)
		system = evhttp_find_header(&q, "system");
	json_array_foreach(p->calls, i, e)
		if (items && (system == NULL || strcmp(json_string_value(json_object_get(e, "system")), system) == 0))
			json_array_append(items, e);
	out = items ? json_pack("{s:o}", "items", items) : NULL;
	send_json(req, out ? 200 : 503, out);
	json_decref(out);
	evhttp_clear_headers(&q);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	mf_peers_t *p = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL, *key;
	const char *method = method_name(evhttp_request_get_command(req));
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char buf[512], *save = NULL, *s, memo[640] = "";
	call_t c = { .p = p, .method = method };
	json_t *cached;
	reply_t r;

	if (path == NULL || strlen(path) >= sizeof(buf)) {
		r = not_found();
		send_json(req, 404, r.body);
		json_decref(r.body);
		return;
	}
	if (strcmp(method, "GET") == 0 && strcmp(path, "/calls") == 0) {
		list_calls(p, req, evhttp_uri_get_query(uri));
		return;
	}
	if (len > 0) {
		json_error_t je;

		c.body = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &je);
		if (c.body == NULL) {
			json_t *e = json_pack("{s:s,s:s}", "error", "invalid_json", "message", je.text);

			send_json(req, 400, e);
			json_decref(e);
			return;
		}
	}
	snprintf(buf, sizeof(buf), "%s", path);
	for (s = strtok_r(buf, "/", &save); s && c.n < MAX_SEGS; s = strtok_r(NULL, "/", &save))
		c.segs[c.n++] = s;
	if (c.n < 2 || s != NULL) {
		r = not_found();
		goto answer;
	}
	if ((strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0 || strcmp(method, "PUT") == 0) &&
	    !json_is_object(c.body)) {
		r = ok(400, json_pack("{s:s,s:s}", "error", "invalid_body", "message", "the body must be a JSON object"));
		goto answer;
	}
	key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
	if (key && strcmp(method, "GET") != 0) {
		snprintf(memo, sizeof(memo), "%s %s %.255s", method, path, key);
		cached = json_object_get(p->keys, memo);
		if (cached) {
			r = ok((int)json_integer_value(json_object_get(cached, "status")),
			       json_incref(json_object_get(cached, "body")));
			goto answer;
		}
	}
	{
		/* the system is the first segment; handlers see the rest */
		const char *system = c.segs[0];

		memmove(c.segs, c.segs + 1, (size_t)(c.n - 1) * sizeof(c.segs[0]));
		c.n--;
		if (strcmp(system, "crm") == 0)
			r = crm(&c);
		else if (strcmp(system, "psa") == 0)
			r = psa(&c);
		else if (strcmp(system, "erp") == 0)
			r = erp(&c);
		else if (strcmp(system, "rmm") == 0)
			r = rmm(&c);
		else if (strcmp(system, "llm") == 0)
			r = llm(&c);
		else
			r = not_found();
	}
	if (r.body && memo[0] && r.status < 300) {
		if (json_object_size(p->keys) >= MAX_KEYS)
			json_object_clear(p->keys);
		json_object_set_new(p->keys, memo, json_pack("{s:i,s:O}", "status", r.status, "body", r.body));
	}
answer:
	if (r.body == NULL)
		r.status = 503;
	{
		/* logged under its system, the path as the peer saw it */
		char system[16];

		snprintf(system, sizeof(system), "%.*s", (int)strcspn(path + 1, "/"), path + 1);
		log_call(p, system, method, path, evhttp_find_header(evhttp_request_get_input_headers(req),
								       "Idempotency-Key"), c.body, r.status);
	}
	send_json(req, r.status, r.body);
	json_decref(r.body);
	json_decref(c.body);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	mf_peers_t *p = arg;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	event_base_loopbreak(p->base);
}

static void *run(void *arg)
{
	mf_peers_t *p = arg;

	event_base_dispatch(p->base);
	return NULL;
}

static void peers_free(mf_peers_t *p)
{
	if (p->http)
		evhttp_free(p->http);
	if (p->wake)
		event_free(p->wake);
	if (p->base)
		event_base_free(p->base);
	if (p->efd >= 0)
		close(p->efd);
	json_decref(p->calls);
	json_decref(p->deals);
	json_decref(p->keys);
	free(p);
}

mf_peers_t *mf_peers_start(mf_err_t *err)
{
	mf_peers_t *p = calloc(1, sizeof(*p));
	struct evhttp_bound_socket *bound;
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	if (p == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->calls = json_array();
	p->deals = json_object();
	p->keys = json_object();
	p->base = event_base_new();
	p->http = p->base ? evhttp_new(p->base) : NULL;
	p->wake = p->base && p->efd >= 0 ? event_new(p->base, p->efd, EV_READ | EV_PERSIST, on_wake, p) : NULL;
	if (p->efd < 0 || !p->calls || !p->deals || !p->keys || !p->http || !p->wake || event_add(p->wake, NULL) < 0) {
		mf_err_set(err, 500, "internal_error", "cannot set up the demo peers");
		goto fail;
	}
	evhttp_set_allowed_methods(p->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH |
					    EVHTTP_REQ_DELETE);
	evhttp_set_max_body_size(p->http, MAX_BODY);
	evhttp_set_timeout(p->http, 30);
	evhttp_set_gencb(p->http, on_request, p);
	bound = evhttp_bind_socket_with_handle(p->http, "127.0.0.1", 0);
	if (bound == NULL || getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &sl) < 0) {
		mf_err_set(err, 500, "listen_failed", "the demo peers cannot listen on 127.0.0.1: %s", strerror(errno));
		goto fail;
	}
	p->port = ntohs(sin.sin_port);
	if (pthread_create(&p->thread, NULL, run, p) != 0) {
		mf_err_set(err, 500, "internal_error", "cannot start the demo peers' thread");
		goto fail;
	}
	p->started = true;
	return p;
fail:
	peers_free(p);
	return NULL;
}

int mf_peers_port(const mf_peers_t *p)
{
	return p->port;
}

void mf_peers_stop(mf_peers_t *p)
{
	uint64_t one = 1;

	if (p == NULL)
		return;
	if (p->started) {
		/* the loop breaks on its own thread; if the write failed the
		 * join would hang, so that is the one error worth a fallback */
		if (write(p->efd, &one, sizeof(one)) != sizeof(one))
			event_base_loopbreak(p->base);
		pthread_join(p->thread, NULL);
	}
	peers_free(p);
}
