/*
 * fuzz_connector.c - a connector definition's PUT body and the runtime's
 * small parsers.  None may crash or read out of bounds, and:
 *   - cx_conn_from_json (with the egress guard, and without it as for a
 *     stored row): an accepted definition has an http(s) base_url with a
 *     host and no query or fragment, at most 32 headers, none reserved,
 *     none twice, each a token with a clean value, and every number in its
 *     range; a refusal has a non-empty errors array of {path, message}
 *     with JSON Pointer paths, or a detail when there is none;
 *   - an accepted body, stored as the PUT route stores it and read back
 *     with cx_conn_from_row, gives the same definition;
 *   - cx_url_host gives a lower-case host; cx_host_allowed admits a host
 *     only by an entry's exact name or a "*." suffix, never an address;
 *   - cx_retry_after_ms is -1 or within 0..CX_RETRY_AFTER_MAX_S seconds;
 *   - cx_url_redacted stays within its bound; cx_url_join keeps the base.
 *
 * Input: the whole input is the PUT body; as text (up to the first NUL)
 * it is also a URL, a Retry-After value and a call's path, and its lines
 * are an allow_hosts list whose last line is the host asked about.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "connectors/cx.h"
#include "connectors/redact.h"
#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CEILING 1048576

static cx_egress_t *guard;

static void check_errors(int rc, const json_t *errors, const mf_err_t *err)
{
	size_t i;
	json_t *e;

	if (rc == 0) {
		if (errors)
			abort();
		return;
	}
	if (err->status != 400 && err->status != 503)
		abort();
	if (errors == NULL) {
		if (err->detail[0] == '\0')
			abort();
		return;
	}
	if (!json_is_array(errors) || json_array_size(errors) == 0 || json_array_size(errors) > 100)
		abort();
	json_array_foreach(errors, i, e) {
		const char *p = json_string_value(json_object_get(e, "path"));

		if (p == NULL || p[0] != '/' || !json_is_string(json_object_get(e, "message")))
			abort();
		/* RFC 6901: '~' only as "~0" or "~1" */
		for (const char *t = strchr(p, '~'); t; t = strchr(t + 1, '~'))
			if (t[1] != '0' && t[1] != '1')
				abort();
	}
}

static void check_conn(const cx_conn_t *c)
{
	char host[256];
	int n;

	if (strncasecmp(c->base_url, "http://", 7) != 0 && strncasecmp(c->base_url, "https://", 8) != 0)
		abort();
	if (strchr(c->base_url, '?') || strchr(c->base_url, '#') || strlen(c->base_url) > 2048)
		abort();
	if (cx_url_host(c->base_url, host, sizeof(host)) < 0)
		abort();
	if (c->nheaders < 0 || c->nheaders > CX_MAX_HEADERS)
		abort();
	for (int i = 0; i < c->nheaders; i++) {
		if (!cx_header_name_ok(c->headers[i].name) || cx_header_reserved(c->headers[i].name) ||
		    !cx_header_value_ok(c->headers[i].value))
			abort();
		for (int j = 0; j < i; j++)
			if (strcasecmp(c->headers[i].name, c->headers[j].name) == 0)
				abort();
	}
	if (c->credential[0] && !cx_name_ok(c->credential))
		abort();
	if (c->timeout_ms < 100 || c->timeout_ms > 300000)
		abort();
	if (!(c->rl_requests == 0 && c->rl_window_s == 0) &&
	    (c->rl_requests < 1 || c->rl_requests > 1000000 || c->rl_window_s < 1 || c->rl_window_s > 3600))
		abort();
	if (c->max_attempts < 1 || c->max_attempts > 10 || c->max_wait_ms < 1000 || c->max_wait_ms > 600000)
		abort();
	for (n = 0; c->redact[n]; n++)
		if (c->redact[n][0] == '\0' || strlen(c->redact[n]) > 64)
			abort();
	if (n > CX_MAX_REDACT)
		abort();
	if (c->max_response_bytes < 1024 || c->max_response_bytes > CEILING)
		abort();
	if (c->follow_redirects < 0 || c->follow_redirects > 10)
		abort();
}

static bool same(const cx_conn_t *a, const cx_conn_t *b)
{
	int i;

	if (strcmp(a->base_url, b->base_url) != 0 || strcmp(a->credential, b->credential) != 0 ||
	    a->nheaders != b->nheaders || a->timeout_ms != b->timeout_ms || a->rl_requests != b->rl_requests ||
	    a->rl_window_s != b->rl_window_s || a->max_attempts != b->max_attempts ||
	    a->max_wait_ms != b->max_wait_ms || a->max_response_bytes != b->max_response_bytes ||
	    a->follow_redirects != b->follow_redirects || a->kind != b->kind)
		return false;
	/* jsonb may reorder header members: match by name */
	for (i = 0; i < a->nheaders; i++) {
		int j = 0;

		while (j < b->nheaders && strcmp(a->headers[i].name, b->headers[j].name) != 0)
			j++;
		if (j == b->nheaders || strcmp(a->headers[i].value, b->headers[j].value) != 0)
			return false;
	}
	for (i = 0; a->redact[i] && b->redact[i]; i++)
		if (strcmp(a->redact[i], b->redact[i]) != 0)
			return false;
	return a->redact[i] == NULL && b->redact[i] == NULL;
}

static char *dump_or(const json_t *j, const char *dflt)
{
	if (j && !json_is_null(j))
		return json_dumps(j, JSON_COMPACT);
	return dflt ? strdup(dflt) : NULL;
}

/* The row the PUT route stores for body (connectors/api.c), read back. */
static void round_trip(const json_t *body, const cx_conn_t *c)
{
	static const char *const names[14] = {
		"name", "base_url", "credential", "headers", "timeout_ms", "rate_limit", "retry", "redact_fields",
		"max_response_bytes", "follow_redirects", "version", "created_at", "updated_at", "kind",
	};
	PGresAttDesc att[14];
	PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	char num[3][16];
	char *v[14] = { 0 };
	cx_conn_t back;

	if (r == NULL)
		abort();
	snprintf(num[0], sizeof(num[0]), "%d", c->timeout_ms);
	snprintf(num[1], sizeof(num[1]), "%d", c->max_response_bytes);
	snprintf(num[2], sizeof(num[2]), "%d", c->follow_redirects);
	v[0] = strdup("fz");
	v[1] = strdup(c->base_url);
	v[2] = c->credential[0] ? strdup(c->credential) : NULL;
	v[3] = dump_or(json_object_get(body, "headers"), "{}");
	v[4] = strdup(num[0]);
	v[5] = dump_or(json_object_get(body, "rate_limit"), NULL);
	v[6] = dump_or(json_object_get(body, "retry"), "{}");
	v[7] = dump_or(json_object_get(body, "redact_fields"), "[]");
	v[8] = strdup(num[1]);
	v[9] = strdup(num[2]);
	v[10] = strdup("1");
	v[11] = strdup("2024-01-01T00:00:00.000Z");
	v[12] = strdup("2024-01-01T00:00:00.000Z");
	v[13] = strdup(cx_kinds[c->kind]);
	memset(att, 0, sizeof(att));
	for (int i = 0; i < 14; i++) {
		att[i].name = (char *)names[i];
		att[i].typid = 25;
		att[i].typlen = -1;
		att[i].atttypmod = -1;
	}
	if (!PQsetResultAttrs(r, 14, att))
		abort();
	for (int i = 0; i < 14; i++)
		if (!PQsetvalue(r, 0, i, v[i], v[i] ? (int)strlen(v[i]) : -1))
			abort();
	/* a stored definition always reads back, and means the same */
	if (cx_conn_from_row(r, 0, &back) < 0 || !same(c, &back) || back.version != 1)
		abort();
	cx_conn_free(&back);
	for (int i = 0; i < 14; i++)
		free(v[i]);
	PQclear(r);
}

static void definition(const uint8_t *data, size_t size)
{
	mf_err_t err;
	json_t *body = mf_json_parse((const char *)data, size, 64, &err);

	if (body == NULL)
		return;
	for (int pass = 0; pass < 2; pass++) {
		json_t *errors = NULL;
		cx_conn_t c;
		int rc;

		memset(&err, 0, sizeof(err));
		rc = cx_conn_from_json(body, "fz", pass == 0 ? guard : NULL, CEILING, &c, &err, &errors);
		check_errors(rc, errors, &err);
		if (rc == 0) {
			check_conn(&c);
			round_trip(body, &c);
			cx_conn_free(&c);
		}
		json_decref(errors);
	}
	json_decref(body);
}

static bool address_like(const char *h)
{
	const char *last = strrchr(h, '.');

	if (strchr(h, ':') || h[0] == '[')
		return true;
	last = last ? last + 1 : h;
	if (*last == '\0')
		return false;
	for (; *last; last++)
		if (*last < '0' || *last > '9')
			return false;
	return true;
}

static void hosts(char *text)
{
	char host[256];
	json_t *list = json_array();
	char *line, *save = NULL, *last = NULL;
	int n = 0;

	if (cx_url_host(text, host, sizeof(host)) == 0) {
		for (const char *p = host; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				abort();
		if (strlen(host) >= sizeof(host))
			abort();
	}
	/* lines: entries of allow_hosts, the last one the host asked about */
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (last && n++ < 16)
			json_array_append_new(list, json_string(last));
		last = line;
	}
	if (last && cx_host_allowed(list, last)) {
		size_t i, hl = strlen(last);
		json_t *e;
		bool why = false;

		if (address_like(last))
			abort();
		json_array_foreach(list, i, e) {
			const char *h = json_string_value(e);
			size_t el = h ? strlen(h) : 0;

			if (h && (strcasecmp(h, last) == 0 ||
				  (el > 2 && h[0] == '*' && h[1] == '.' && hl > el - 1 &&
				   strcasecmp(last + hl - (el - 1), h + 1) == 0)))
				why = true;
		}
		if (!why)
			abort();
	}
	json_decref(list);
}

static void runtime(const char *text)
{
	static const char *const fields[] = { "ssn", "q", NULL };
	long long ms = cx_retry_after_ms(text, 784111777);
	size_t len = strlen(text), nf = 1;
	char *u;
	json_t *j;

	if (ms < -1 || ms > CX_RETRY_AFTER_MAX_S * 1000)
		abort();
	if (len && strspn(text, "0123456789") == len && ms < 0)
		abort();
	u = cx_url_join("https://psa.example.com/api", text);
	if (u == NULL || strncmp(u, "https://psa.example.com/api", 27) != 0 || strlen(u) > len + 28)
		abort();
	free(u);
	j = cx_url_redacted(text, fields);
	if (j == NULL)
		abort();
	for (const char *p = text; *p; p++)
		nf += *p == '&';
	if (strlen(json_string_value(j)) > len + nf * strlen(CX_REDACTED) && strcmp(json_string_value(j), "[binary]"))
		abort();
	if (strchr(text, '?') == NULL && strcmp(json_string_value(j), text) != 0 &&
	    strcmp(json_string_value(j), "[binary]") != 0)
		abort();
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;
	mf_err_t err;

	if (guard == NULL && (guard = cx_egress_new("", &err)) == NULL)
		abort();
	definition(data, size);
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';		/* an embedded NUL just ends the text early */
	runtime(text);
	hosts(text);			/* last: it cuts text into lines */
	free(text);
	return 0;
}
