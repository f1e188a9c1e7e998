/*
 * conn.c - a connector's definition: the PUT body's validation (every
 * problem reported with its JSON Pointer, nothing stored on failure), the
 * row the runtime reads back, and the API's JSON form of it.
 *
 * PUT body (CONTRACT 7):
 *   {"base_url": "https://psa.example/api", "credential": "psa" | null,
 *    "headers": {"Accept": "application/json"}, "timeout_ms": 10000,
 *    "rate_limit": {"requests": 10, "per": "PT1S"} | null,
 *    "retry": {"max_attempts": 3, "max_wait": "PT30S"},
 *    "redact_fields": ["ssn"], "max_response_bytes": 1048576,
 *    "follow_redirects": 0, "kind": "psa"}
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "connectors/cx.h"
#include "core/duration.h"
#include "core/json.h"

const char *const cx_kinds[CX_KIND_N] = { "crm", "psa", "erp", "itsm", "rmm", "llm", "email", "generic" };

#define MAX_BASE_URL 2048
#define MAX_HEADER_VALUE 4096
#define MAX_PROBLEMS 100		/* as policies: enough to fix a body, bounded */

bool cx_header_name_ok(const char *s)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~";
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c && strchr(tchar, c))))
			return false;
	}
	return true;
}

bool cx_header_value_ok(const char *s)
{
	size_t n = strlen(s);

	if (n > MAX_HEADER_VALUE)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

bool cx_header_reserved(const char *name)
{
	static const char *const reserved[] = {
		"authorization", "proxy-authorization", "host", "content-length", "transfer-encoding",
		"connection", "keep-alive", "upgrade", "te", "trailer", "expect", "cookie",
		"idempotency-key", "traceparent", "tracestate",
	};

	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return true;
	return false;
}

void cx_conn_free(cx_conn_t *c)
{
	if (c == NULL)
		return;
	free(c->base_url);
	for (int i = 0; i < c->nheaders; i++) {
		free((char *)c->headers[i].name);
		free((char *)c->headers[i].value);
	}
	for (int i = 0; c->redact[i]; i++)
		free(c->redact[i]);
	memset(c, 0, sizeof(*c));
}

static void problem(json_t *errors, const char *path, const char *msg)
{
	if (json_array_size(errors) < MAX_PROBLEMS)
		json_array_append_new(errors, json_pack("{s:s,s:s}", "path", path, "message", msg));
}

/* Every member of obj that keys does not list is a problem at its own path. */
static int only_keys(const json_t *obj, const char *const *keys, const char *prefix, json_t *errors)
{
	const char *k;
	json_t *v;
	char path[300];
	int rc = 0;

	json_object_foreach((json_t *)obj, k, v) {
		const char *const *a = keys;

		while (*a && strcmp(*a, k) != 0)
			a++;
		if (*a == NULL) {
			mf_json_pointer(path, sizeof(path), prefix, k);
			problem(errors, path, "unknown field");
			rc = -1;
		}
	}
	return rc;
}

static int headers_from_json(const json_t *h, cx_conn_t *c, json_t *errors)
{
	const char *k;
	json_t *v;
	char path[300];

	if (h == NULL || json_is_null(h))
		return 0;
	if (!json_is_object(h)) {
		problem(errors, "/headers", "must be an object of header names to string values");
		return -1;
	}
	if (json_object_size(h) > CX_MAX_HEADERS) {
		problem(errors, "/headers", "at most 32 headers");
		return -1;
	}
	json_object_foreach((json_t *)h, k, v) {
		mf_json_pointer(path, sizeof(path), "/headers", k);
		if (!cx_header_name_ok(k)) {
			/* not at its own path: the pointer would quote the name */
			problem(errors, "/headers", "a header name is not a valid HTTP token");
			return -1;
		}
		for (int i = 0; i < c->nheaders; i++)
			if (strcasecmp(c->headers[i].name, k) == 0) {
				problem(errors, path, "a header of this name is already set (names are case-insensitive)");
				return -1;
			}
		if (cx_header_reserved(k)) {
			problem(errors, path, "this header is set by the platform (credentials, framing, tracing)");
			return -1;
		}
		if (!json_is_string(v) || !cx_header_value_ok(json_string_value(v))) {
			problem(errors, path, "must be a string without control characters, at most 4096 bytes");
			return -1;
		}
		c->headers[c->nheaders].name = strdup(k);
		c->headers[c->nheaders].value = strdup(json_string_value(v));
		c->nheaders++;
		if (!c->headers[c->nheaders - 1].name || !c->headers[c->nheaders - 1].value)
			return -1;
	}
	return 0;
}

static int int_member(const json_t *obj, const char *key, const char *path, long long lo, long long hi,
		      int dflt, int *out, json_t *errors)
{
	json_t *v = json_object_get(obj, key);
	char msg[120];

	*out = dflt;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(msg, sizeof(msg), "must be a whole number from %lld to %lld", lo, hi);
		problem(errors, path, msg);
		return -1;
	}
	*out = (int)json_integer_value(v);
	return 0;
}

static int duration_member(const json_t *obj, const char *key, const char *path, long long lo_s, long long hi_s,
			   int dflt, int *out_s, json_t *errors)
{
	json_t *v = json_object_get(obj, key);
	long long s;
	mf_err_t e;
	char msg[160];

	*out_s = dflt;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || mf_duration_parse(json_string_value(v), &s, &e) < 0 || s < lo_s || s > hi_s) {
		snprintf(msg, sizeof(msg), "must be an ISO 8601 duration from %lld to %lld seconds", lo_s, hi_s);
		problem(errors, path, msg);
		return -1;
	}
	*out_s = (int)s;
	return 0;
}

static int rate_limit_from_json(const json_t *rl, cx_conn_t *c, json_t *errors)
{
	static const char *const keys[] = { "requests", "per", NULL };
	json_t *n;

	if (rl == NULL || json_is_null(rl))
		return 0;
	if (!json_is_object(rl)) {
		problem(errors, "/rate_limit", "must be {\"requests\": N, \"per\": \"PT1S\"} or null");
		return -1;
	}
	if (only_keys(rl, keys, "/rate_limit", errors) < 0)
		return -1;
	/* null is not "the default": a limit of one request a second is no
	 * value to give someone who sent none */
	if ((n = json_object_get(rl, "requests")) == NULL || json_is_null(n)) {
		problem(errors, "/rate_limit/requests", "is required");
		return -1;
	}
	if (int_member(rl, "requests", "/rate_limit/requests", 1, 1000000, 1, &c->rl_requests, errors) < 0 ||
	    duration_member(rl, "per", "/rate_limit/per", 1, 3600, 1, &c->rl_window_s, errors) < 0)
		return -1;
	return 0;
}

static int retry_from_json(const json_t *r, cx_conn_t *c, json_t *errors)
{
	static const char *const keys[] = { "max_attempts", "max_wait", NULL };
	int wait_s;

	c->max_attempts = 3;
	c->max_wait_ms = 60000;
	if (r == NULL || json_is_null(r))
		return 0;
	if (!json_is_object(r)) {
		problem(errors, "/retry", "must be {\"max_attempts\": N, \"max_wait\": \"PT60S\"} or null");
		return -1;
	}
	if (only_keys(r, keys, "/retry", errors) < 0)
		return -1;
	if (int_member(r, "max_attempts", "/retry/max_attempts", 1, 10, 3, &c->max_attempts, errors) < 0 ||
	    duration_member(r, "max_wait", "/retry/max_wait", 1, 600, 60, &wait_s, errors) < 0)
		return -1;
	c->max_wait_ms = wait_s * 1000;
	return 0;
}

static int redact_from_json(const json_t *a, cx_conn_t *c, json_t *errors)
{
	size_t i;
	json_t *v;

	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) > CX_MAX_REDACT) {
		problem(errors, "/redact_fields", "must be an array of at most 32 field names");
		return -1;
	}
	json_array_foreach(a, i, v) {
		const char *s = json_string_value(v);

		if (s == NULL || s[0] == '\0' || strlen(s) > 64) {
			problem(errors, "/redact_fields", "every field name is a string of 1 to 64 bytes");
			return -1;
		}
		if ((c->redact[i] = strdup(s)) == NULL)
			return -1;
	}
	return 0;
}

int cx_conn_from_json(const json_t *body, const char *name, const cx_egress_t *egress, int max_response_bytes,
		      cx_conn_t *c, mf_err_t *err, json_t **errors)
{
	static const char *const keys[] = {
		"base_url", "credential", "headers", "timeout_ms", "rate_limit", "retry", "redact_fields",
		"max_response_bytes", "follow_redirects", "kind", NULL,
	};
	const json_t *kind = json_object_get(body, "kind");
	json_t *errs;
	const char *url = json_string_value(json_object_get(body, "base_url"));
	json_t *cred = json_object_get(body, "credential");
	mf_err_t e;
	char host[256];
	int rc = 0;

	memset(c, 0, sizeof(*c));
	*errors = NULL;
	if (!json_is_object(body))
		return mf_err_set(err, 400, "validation_failed", "the body must be a JSON object");
	if ((errs = json_array()) == NULL)
		return mf_err_set(err, 503, "over_capacity", "out of memory; retry");
	/* every problem is listed, unknown fields with the others */
	if (only_keys(body, keys, "", errs) < 0)
		rc = -1;
	snprintf(c->name, sizeof(c->name), "%s", name);
	if (url == NULL || strlen(url) > MAX_BASE_URL) {
		problem(errs, "/base_url", "required: an http or https URL of at most 2048 bytes");
		rc = -1;
	} else if (egress == NULL && ((strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) ||
				      cx_url_host(url, host, sizeof(host)) < 0)) {
		/* without the guard (a stored row read back) the scheme and the
		 * host are still checked: no definition reaches the runtime
		 * with anything but an http(s) URL with a host */
		problem(errs, "/base_url", "required: an http or https URL of at most 2048 bytes");
		rc = -1;
	} else if (egress && cx_egress_url_check(egress, url, &e) < 0) {
		problem(errs, "/base_url", e.detail);
		rc = -1;
	} else if (strchr(url, '?') || strchr(url, '#')) {
		problem(errs, "/base_url", "no query or fragment: calls add their own path and query");
		rc = -1;
	} else if ((c->base_url = strdup(url)) == NULL) {
		rc = -1;
	}
	if (cred && !json_is_null(cred) && (!json_is_string(cred) || !cx_name_ok(json_string_value(cred)))) {
		problem(errs, "/credential", "must be the name of a credential in this tenant's vault, or null");
		rc = -1;
	} else if (json_is_string(cred)) {
		snprintf(c->credential, sizeof(c->credential), "%s", json_string_value(cred));
	}
	if (headers_from_json(json_object_get(body, "headers"), c, errs) < 0)
		rc = -1;
	if (int_member(body, "timeout_ms", "/timeout_ms", 100, 300000, 10000, &c->timeout_ms, errs) < 0)
		rc = -1;
	if (rate_limit_from_json(json_object_get(body, "rate_limit"), c, errs) < 0)
		rc = -1;
	if (retry_from_json(json_object_get(body, "retry"), c, errs) < 0)
		rc = -1;
	if (redact_from_json(json_object_get(body, "redact_fields"), c, errs) < 0)
		rc = -1;
	if (int_member(body, "max_response_bytes", "/max_response_bytes", 1024, max_response_bytes,
		       max_response_bytes, &c->max_response_bytes, errs) < 0)
		rc = -1;
	if (int_member(body, "follow_redirects", "/follow_redirects", 0, 10, 0, &c->follow_redirects, errs) < 0)
		rc = -1;
	c->kind = CX_KIND_GENERIC;
	if (kind) {
		int k = -1;

		for (int i = 0; json_is_string(kind) && i < CX_KIND_N; i++)
			if (strcmp(json_string_value(kind), cx_kinds[i]) == 0)
				k = i;
		if (k < 0) {
			problem(errs, "/kind", "must be one of crm, psa, erp, itsm, rmm, llm, email, generic");
			rc = -1;
		} else {
			c->kind = k;
		}
	}
	if (rc < 0) {
		cx_conn_free(c);
		if (json_array_size(errs) == 0) {
			json_decref(errs);
			return mf_err_set(err, 503, "over_capacity", "out of memory; retry");
		}
		*errors = errs;
		return mf_err_set(err, 400, "validation_failed", "the connector is not valid");
	}
	json_decref(errs);
	return 0;
}

/* Columns of platform.connector_rows. */
enum { C_NAME, C_URL, C_CRED, C_HEADERS, C_TIMEOUT, C_RL, C_RETRY, C_REDACT, C_MAXRESP, C_REDIR, C_VERSION,
       C_CREATED, C_UPDATED, C_KIND };

static json_t *col_json(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? json_null() : json_loads(PQgetvalue(r, row, col), 0, NULL);
}

json_t *cx_conn_row_json(const PGresult *r, int row)
{
	return json_pack("{s:s,s:s,s:s,s:o,s:o,s:i,s:o,s:o,s:o,s:i,s:i,s:i,s:s,s:s}",
		"name", PQgetvalue(r, row, C_NAME),
		"kind", PQgetvalue(r, row, C_KIND),
		"base_url", PQgetvalue(r, row, C_URL),
		"credential", PQgetisnull(r, row, C_CRED) ? json_null() : json_string(PQgetvalue(r, row, C_CRED)),
		"headers", col_json(r, row, C_HEADERS),
		"timeout_ms", atoi(PQgetvalue(r, row, C_TIMEOUT)),
		"rate_limit", col_json(r, row, C_RL),
		"retry", col_json(r, row, C_RETRY),
		"redact_fields", col_json(r, row, C_REDACT),
		"max_response_bytes", atoi(PQgetvalue(r, row, C_MAXRESP)),
		"follow_redirects", atoi(PQgetvalue(r, row, C_REDIR)),
		"version", atoi(PQgetvalue(r, row, C_VERSION)),
		"created_at", PQgetvalue(r, row, C_CREATED),
		"updated_at", PQgetvalue(r, row, C_UPDATED));
}

int cx_conn_from_row(const PGresult *r, int row, cx_conn_t *c)
{
	json_t *j = cx_conn_row_json(r, row);
	json_t *errors = NULL;
	mf_err_t e;
	int rc;

	if (j == NULL)
		return -1;
	/* the stored form is the validated PUT body plus bookkeeping: read it
	 * back through the same checks, minus the egress check of base_url
	 * (every connection makes it anyway) */
	json_object_del(j, "name");
	json_object_del(j, "version");
	json_object_del(j, "created_at");
	json_object_del(j, "updated_at");
	rc = cx_conn_from_json(j, PQgetvalue(r, row, C_NAME), NULL, atoi(PQgetvalue(r, row, C_MAXRESP)), c, &e,
			       &errors);
	c->version = atoi(PQgetvalue(r, row, C_VERSION));
	json_decref(errors);
	json_decref(j);
	return rc;
}

int cx_url_host(const char *url, char *out, size_t len)
{
	CURLU *u = curl_url();
	char *host = NULL;
	int rc = -1;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && strlen(host) < len) {
		for (size_t i = 0; host[i]; i++)
			out[i] = (char)tolower((unsigned char)host[i]);
		out[strlen(host)] = '\0';
		rc = 0;
	}
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

/* An address rather than a name: an IPv6 literal, anything inet_aton reads
 * as IPv4 ("127.1", "0x7f000001"), or a last label of digits only (the
 * policy rule: such names are refused in allow_hosts). */
static bool host_is_address(const char *host)
{
	struct in_addr a;
	const char *last;
	size_t n = strlen(host);

	if (strchr(host, ':') || host[0] == '[' || inet_aton(host, &a))
		return true;
	while (n && host[n - 1] == '.')
		n--;
	last = host + n;
	while (last > host && last[-1] != '.')
		last--;
	if (last == host + n)
		return false;
	for (const char *p = last; p < host + n; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	return true;
}

bool cx_host_allowed(const json_t *hosts, const char *host)
{
	size_t i, hl = host ? strlen(host) : 0;
	json_t *v;

	/* addresses are never admitted by name, whatever the list holds:
	 * they would bypass what a listed name resolves to */
	if (hl == 0 || host_is_address(host))
		return false;
	json_array_foreach(hosts, i, v) {
		const char *h = json_string_value(v);
		size_t n;

		if (h == NULL)
			continue;
		/* names compare case-insensitively (DNS does) */
		if (strcasecmp(h, host) == 0)
			return true;
		/* "*.example.com" admits any name under example.com, not itself */
		n = strlen(h);
		if (n > 2 && h[0] == '*' && h[1] == '.' && hl > n - 1 && strcasecmp(host + hl - (n - 1), h + 1) == 0)
			return true;
	}
	return false;
}

bool cx_call_path_ok(const char *p)
{
	if (p[0] && p[0] != '/' && p[0] != '?')
		return false;
	if (strlen(p) > 2048 || strncmp(p, "//", 2) == 0)
		return false;
	for (const unsigned char *c = (const unsigned char *)p; *c; c++)
		if (*c <= 0x20 || *c >= 0x7f || *c == '#' || *c == '\\')
			return false;
	return true;
}
