/*
 * test_connectors.c - the connector definition (every validation rule both
 * ways, with the JSON Pointer of each problem; defaults; the stored row read
 * back), host rules (cx_url_host, cx_host_allowed, reserved headers), the
 * runtime's pure helpers (Retry-After, URL join, summary URL redaction) and
 * the process-wide table (token single flight, holds), including a
 * multi-threaded single-flight stress.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "connectors/cx.h"
#include "core/json.h"
#include "t.h"

#define CEILING 1048576		/* max_response_bytes ceiling the tests run with */

static cx_egress_t *guard;

static json_t *J(const char *text)
{
	mf_err_t err;
	json_t *j = mf_json_parse(text, strlen(text), 64, &err);

	if (j == NULL) {
		printf("Bail out! test document does not parse: %s\n%.300s\n", err.detail, text);
		exit(2);
	}
	return j;
}

static char *dump(const json_t *j)
{
	static char buf[4][2048];
	static int next;
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	char *out = buf[next++ % 4];

	snprintf(out, sizeof(buf[0]), "%s", s ? s : "(none)");
	free(s);
	return out;
}

static bool has_path(const json_t *errors, const char *path)
{
	size_t i;
	json_t *e;

	json_array_foreach(errors, i, e)
		if (json_is_string(json_object_get(e, "path")) &&
		    strcmp(json_string_value(json_object_get(e, "path")), path) == 0 &&
		    json_is_string(json_object_get(e, "message")))
			return true;
	return false;
}

/* Validates text; on success c holds the definition (the caller frees it). */
static int check(const char *text, const cx_egress_t *g, cx_conn_t *c, json_t **errors, mf_err_t *err)
{
	json_t *body = J(text);
	int rc = cx_conn_from_json(body, "psa", g, CEILING, c, err, errors);

	json_decref(body);
	return rc;
}

static void good_with(const char *text, const cx_egress_t *g)
{
	cx_conn_t c;
	json_t *errors = (json_t *)0x1;
	mf_err_t err;
	char what[400];
	int rc = check(text, g, &c, &errors, &err);

	snprintf(what, sizeof(what), "valid%s: %.300s", g ? "" : " (no guard)", text);
	T_OK(rc == 0 && errors == NULL, what);
	if (rc != 0)
		printf("#   %s: %s\n", err.detail, dump(errors));
	if (rc == 0)
		cx_conn_free(&c);
	else
		json_decref(errors);
}

static void good(const char *text)
{
	good_with(text, guard);
}

/* text is refused with a problem at path (others may be listed too). */
static void bad_with(const char *text, const cx_egress_t *g, const char *path)
{
	cx_conn_t c;
	json_t *errors = NULL;
	mf_err_t err;
	char what[400];
	int rc = check(text, g, &c, &errors, &err);

	snprintf(what, sizeof(what), "invalid at %s%s: %.300s", path, g ? "" : " (no guard)", text);
	T_OK(rc < 0 && err.status == 400 && strcmp(err.code, "validation_failed") == 0 && has_path(errors, path),
	     what);
	if (!(rc < 0 && has_path(errors, path)))
		printf("#   rc %d, errors %s\n", rc, dump(errors));
	/* nothing is kept on failure */
	T_OK(rc == 0 || (c.base_url == NULL && c.nheaders == 0 && c.redact[0] == NULL), "nothing kept on failure");
	if (rc == 0)
		cx_conn_free(&c);
	json_decref(errors);
}

static void bad(const char *text, const char *path)
{
	bad_with(text, guard, path);
}

static char *repeat(char ch, size_t n)
{
	static char buf[4][8192];
	static int next;
	char *out = buf[next++ % 4];

	memset(out, ch, n);
	out[n] = '\0';
	return out;
}

#define U "\"base_url\": \"https://psa.example.com/api\""

static void test_validation(void)
{
	static const char *const valid[] = {
		"{" U "}",
		"{\"base_url\": \"http://api.example.com:8080/v1/\"}",
		"{\"base_url\": \"HTTPS://Psa.Example.com\"}",
		"{" U ", \"credential\": null, \"headers\": null, \"rate_limit\": null, \"retry\": null,"
		" \"redact_fields\": null, \"timeout_ms\": null, \"max_response_bytes\": null, \"follow_redirects\": null}",
		"{" U ", \"credential\": \"psa-prod.v2\"}",
		"{" U ", \"headers\": {}}",
		"{" U ", \"headers\": {\"Accept\": \"application/json\", \"X-Tab\": \"a\\tb\", \"X-Empty\": \"\"}}",
		"{" U ", \"headers\": {\"X~Y!#$%&'*+-.^_`|\": \"token chars\"}}",
		"{" U ", \"headers\": {\"X-Utf8\": \"caf\\u00e9\"}}",
		"{" U ", \"timeout_ms\": 100}",
		"{" U ", \"timeout_ms\": 300000}",
		"{" U ", \"rate_limit\": {\"requests\": 1}}",
		"{" U ", \"rate_limit\": {\"requests\": 1000000, \"per\": \"PT1H\"}}",
		"{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"PT60M\"}}",
		"{" U ", \"rate_limit\": {\"requests\": 5, \"per\": null}}",
		"{" U ", \"retry\": {}}",
		"{" U ", \"retry\": {\"max_attempts\": 1, \"max_wait\": \"PT1S\"}}",
		"{" U ", \"retry\": {\"max_attempts\": 10, \"max_wait\": \"PT10M\"}}",
		"{" U ", \"redact_fields\": []}",
		"{" U ", \"redact_fields\": [\"ssn\", \"dob\"]}",
		"{" U ", \"max_response_bytes\": 1024}",
		"{" U ", \"max_response_bytes\": 1048576}",
		"{" U ", \"follow_redirects\": 0}",
		"{" U ", \"follow_redirects\": 10}",
	};
	static const struct { const char *body, *path; } invalid[] = {
		{ "{}", "/base_url" },
		{ "{\"base_url\": null}", "/base_url" },
		{ "{\"base_url\": 42}", "/base_url" },
		{ "{\"base_url\": \"\"}", "/base_url" },
		{ "{\"base_url\": \"psa.example.com/api\"}", "/base_url" },
		{ "{\"base_url\": \"ftp://psa.example.com/\"}", "/base_url" },
		{ "{\"base_url\": \"file:///etc/passwd\"}", "/base_url" },
		{ "{\"base_url\": \"gopher://localhost:70/\"}", "/base_url" },
		{ "{\"base_url\": \"https:/psa.example.com\"}", "/base_url" },
		{ "{\"base_url\": \"https:///psa.example.com\"}", "/base_url" },
		{ "{\"base_url\": \"http://127.0.0.1/\"}", "/base_url" },
		{ "{\"base_url\": \"http://10.0.0.1/\"}", "/base_url" },
		{ "{\"base_url\": \"http://169.254.169.254/latest\"}", "/base_url" },
		{ "{\"base_url\": \"http://0x7f000001/\"}", "/base_url" },
		{ "{\"base_url\": \"http://2130706433/\"}", "/base_url" },
		{ "{\"base_url\": \"http://[::1]:8080/\"}", "/base_url" },
		{ "{\"base_url\": \"http://[::ffff:10.0.0.1]/\"}", "/base_url" },
		{ "{\"base_url\": \"https://user:pw@psa.example.com/\"}", "/base_url" },
		{ "{\"base_url\": \"https://psa.example.com:0/\"}", "/base_url" },
		{ "{\"base_url\": \"https://psa.example.com/\", \"kind\": \"sap\"}", "/kind" },
		{ "{\"base_url\": \"https://psa.example.com/\", \"kind\": 3}", "/kind" },
		{ "{\"base_url\": \"https://psa.example.com:65536/\"}", "/base_url" },
		{ "{\"base_url\": \"https://psa.example.com/a b\"}", "/base_url" },
		{ "{\"base_url\": \"https://psa.example.com/api?v=2\"}", "/base_url" },
		{ "{\"base_url\": \"https://psa.example.com/api?\"}", "/base_url" },
		{ "{\"base_url\": \"https://psa.example.com/api#top\"}", "/base_url" },
		{ "{" U ", \"credential\": \"Bad Name\"}", "/credential" },
		{ "{" U ", \"credential\": \"\"}", "/credential" },
		{ "{" U ", \"credential\": \"-psa\"}", "/credential" },
		{ "{" U ", \"credential\": 5}", "/credential" },
		{ "{" U ", \"credential\": {}}", "/credential" },
		{ "{" U ", \"headers\": []}", "/headers" },
		{ "{" U ", \"headers\": \"Accept: */*\"}", "/headers" },
		{ "{" U ", \"headers\": {\"Bad Name\": \"x\"}}", "/headers" },
		{ "{" U ", \"headers\": {\"\": \"x\"}}", "/headers" },
		{ "{" U ", \"headers\": {\"X-A:\": \"x\"}}", "/headers" },
		{ "{" U ", \"headers\": {\"X-\\u00e9\": \"x\"}}", "/headers" },
		{ "{" U ", \"headers\": {\"Authorization\": \"Bearer x\"}}", "/headers/Authorization" },
		{ "{" U ", \"headers\": {\"authorization\": \"Bearer x\"}}", "/headers/authorization" },
		{ "{" U ", \"headers\": {\"PROXY-AUTHORIZATION\": \"x\"}}", "/headers/PROXY-AUTHORIZATION" },
		{ "{" U ", \"headers\": {\"Host\": \"evil.example\"}}", "/headers/Host" },
		{ "{" U ", \"headers\": {\"Content-Length\": \"0\"}}", "/headers/Content-Length" },
		{ "{" U ", \"headers\": {\"Transfer-Encoding\": \"chunked\"}}", "/headers/Transfer-Encoding" },
		{ "{" U ", \"headers\": {\"Cookie\": \"a=b\"}}", "/headers/Cookie" },
		{ "{" U ", \"headers\": {\"Idempotency-Key\": \"k\"}}", "/headers/Idempotency-Key" },
		{ "{" U ", \"headers\": {\"traceparent\": \"00-x\"}}", "/headers/traceparent" },
		{ "{" U ", \"headers\": {\"X-A\": \"a\\r\\nX-B: b\"}}", "/headers/X-A" },
		{ "{" U ", \"headers\": {\"X-A\": \"a\\nb\"}}", "/headers/X-A" },
		{ "{" U ", \"headers\": {\"X-A\": \"a\\u0001b\"}}", "/headers/X-A" },
		{ "{" U ", \"headers\": {\"X-A\": \"a\\u007fb\"}}", "/headers/X-A" },
		{ "{" U ", \"headers\": {\"X-A\": 5}}", "/headers/X-A" },
		{ "{" U ", \"headers\": {\"X-A\": null}}", "/headers/X-A" },
		{ "{" U ", \"headers\": {\"X~A\": \"a\\nb\"}}", "/headers/X~0A" },
		{ "{" U ", \"headers\": {\"X-A\": \"1\", \"x-a\": \"2\"}}", "/headers/x-a" },
		{ "{" U ", \"timeout_ms\": 99}", "/timeout_ms" },
		{ "{" U ", \"timeout_ms\": 300001}", "/timeout_ms" },
		{ "{" U ", \"timeout_ms\": -1}", "/timeout_ms" },
		{ "{" U ", \"timeout_ms\": 1000.0}", "/timeout_ms" },
		{ "{" U ", \"timeout_ms\": 1e3}", "/timeout_ms" },
		{ "{" U ", \"timeout_ms\": \"1000\"}", "/timeout_ms" },
		{ "{" U ", \"timeout_ms\": true}", "/timeout_ms" },
		{ "{" U ", \"timeout_ms\": 9223372036854775807}", "/timeout_ms" },
		{ "{" U ", \"rate_limit\": 5}", "/rate_limit" },
		{ "{" U ", \"rate_limit\": []}", "/rate_limit" },
		{ "{" U ", \"rate_limit\": \"10/s\"}", "/rate_limit" },
		{ "{" U ", \"rate_limit\": {}}", "/rate_limit/requests" },
		{ "{" U ", \"rate_limit\": {\"per\": \"PT1S\"}}", "/rate_limit/requests" },
		{ "{" U ", \"rate_limit\": {\"requests\": null}}", "/rate_limit/requests" },
		{ "{" U ", \"rate_limit\": {\"requests\": 0}}", "/rate_limit/requests" },
		{ "{" U ", \"rate_limit\": {\"requests\": 1000001}}", "/rate_limit/requests" },
		{ "{" U ", \"rate_limit\": {\"requests\": 1.5}}", "/rate_limit/requests" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"PT0S\"}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"PT3601S\"}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"P1D\"}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"PT1.5S\"}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"pt1s\"}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"1s\"}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": \"P1M\"}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"per\": 1}}", "/rate_limit/per" },
		{ "{" U ", \"rate_limit\": {\"requests\": 5, \"window\": \"PT1S\"}}", "/rate_limit/window" },
		{ "{" U ", \"retry\": 3}", "/retry" },
		{ "{" U ", \"retry\": []}", "/retry" },
		{ "{" U ", \"retry\": {\"max_attempts\": 0}}", "/retry/max_attempts" },
		{ "{" U ", \"retry\": {\"max_attempts\": 11}}", "/retry/max_attempts" },
		{ "{" U ", \"retry\": {\"max_attempts\": \"3\"}}", "/retry/max_attempts" },
		{ "{" U ", \"retry\": {\"max_wait\": \"PT0S\"}}", "/retry/max_wait" },
		{ "{" U ", \"retry\": {\"max_wait\": \"PT601S\"}}", "/retry/max_wait" },
		{ "{" U ", \"retry\": {\"max_wait\": 30}}", "/retry/max_wait" },
		{ "{" U ", \"retry\": {\"backoff\": \"PT1S\"}}", "/retry/backoff" },
		{ "{" U ", \"redact_fields\": \"ssn\"}", "/redact_fields" },
		{ "{" U ", \"redact_fields\": {}}", "/redact_fields" },
		{ "{" U ", \"redact_fields\": [\"\"]}", "/redact_fields" },
		{ "{" U ", \"redact_fields\": [\"ssn\", 5]}", "/redact_fields" },
		{ "{" U ", \"redact_fields\": [null]}", "/redact_fields" },
		{ "{" U ", \"max_response_bytes\": 1023}", "/max_response_bytes" },
		{ "{" U ", \"max_response_bytes\": 1048577}", "/max_response_bytes" },
		{ "{" U ", \"max_response_bytes\": \"1MB\"}", "/max_response_bytes" },
		{ "{" U ", \"follow_redirects\": -1}", "/follow_redirects" },
		{ "{" U ", \"follow_redirects\": 11}", "/follow_redirects" },
		{ "{" U ", \"follow_redirects\": true}", "/follow_redirects" },
		{ "{" U ", \"bogus\": 1}", "/bogus" },
		{ "{" U ", \"Base_url\": 1}", "/Base_url" },
		{ "{" U ", \"a/b\": 1}", "/a~1b" },
		{ "{" U ", \"~\": 1}", "/~0" },
		{ "{" U ", \"\": 1}", "/" },
	};
	char buf[16384];
	int n;

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		good(valid[i]);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		bad(invalid[i].body, invalid[i].path);

	/* sizes: base_url 2048 bytes, 32 headers, values of 4096 bytes, 32
	 * redact_fields of up to 64 bytes; one more of each is refused */
	snprintf(buf, sizeof(buf), "{\"base_url\": \"https://psa.example.com/%s\"}", repeat('a', 2048 - 24));
	good(buf);
	snprintf(buf, sizeof(buf), "{\"base_url\": \"https://psa.example.com/%s\"}", repeat('a', 2049 - 24));
	bad(buf, "/base_url");
	n = snprintf(buf, sizeof(buf), "{" U ", \"headers\": {");
	for (int i = 0; i < 32; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s\"X-H%d\": \"%d\"", i ? ", " : "", i, i);
	snprintf(buf + n, sizeof(buf) - (size_t)n, "}}");
	good(buf);
	snprintf(buf + n, sizeof(buf) - (size_t)n, ", \"X-H32\": \"32\"}}");
	bad(buf, "/headers");
	snprintf(buf, sizeof(buf), "{" U ", \"headers\": {\"X-A\": \"%s\"}}", repeat('v', 4096));
	good(buf);
	snprintf(buf, sizeof(buf), "{" U ", \"headers\": {\"X-A\": \"%s\"}}", repeat('v', 4097));
	bad(buf, "/headers/X-A");
	snprintf(buf, sizeof(buf), "{" U ", \"headers\": {\"%s\": \"x\"}}", repeat('h', 128));
	good(buf);
	snprintf(buf, sizeof(buf), "{" U ", \"headers\": {\"%s\": \"x\"}}", repeat('h', 129));
	bad(buf, "/headers");
	{
		char path[200];

		snprintf(path, sizeof(path), "/headers/%s", repeat('h', 128));
		snprintf(buf, sizeof(buf), "{" U ", \"headers\": {\"%s\": \"a\\nb\"}}", repeat('h', 128));
		bad(buf, path);
	}
	snprintf(buf, sizeof(buf), "{" U ", \"credential\": \"%s\"}", repeat('c', 63));
	good(buf);
	snprintf(buf, sizeof(buf), "{" U ", \"credential\": \"%s\"}", repeat('c', 64));
	bad(buf, "/credential");
	n = snprintf(buf, sizeof(buf), "{" U ", \"redact_fields\": [\"%s\"", repeat('f', 64));
	for (int i = 1; i < 32; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ", \"f%d\"", i);
	snprintf(buf + n, sizeof(buf) - (size_t)n, "]}");
	good(buf);
	snprintf(buf + n, sizeof(buf) - (size_t)n, ", \"f32\"]}");
	bad(buf, "/redact_fields");
	snprintf(buf, sizeof(buf), "{" U ", \"redact_fields\": [\"%s\"]}", repeat('f', 65));
	bad(buf, "/redact_fields");

	/* every problem of a body is listed, unknown fields included */
	{
		cx_conn_t c;
		json_t *errors = NULL;
		mf_err_t err;
		int rc = check("{\"base_url\": \"ftp://x\", \"timeout_ms\": 1, \"follow_redirects\": 99, \"bogus\": 1,"
			       " \"retry\": {\"max_attempts\": 0}, \"headers\": {\"Host\": \"h\"}}",
			       guard, &c, &errors, &err);

		T_OK(rc < 0 && json_array_size(errors) == 6 && has_path(errors, "/base_url") &&
		     has_path(errors, "/timeout_ms") && has_path(errors, "/follow_redirects") &&
		     has_path(errors, "/bogus") && has_path(errors, "/retry/max_attempts") &&
		     has_path(errors, "/headers/Host"), "every problem of a body is listed with its path");
		json_decref(errors);
	}
	/* a body that is not an object: the detail says so, no errors array */
	{
		static const char *const notobj[] = { "[]", "\"x\"", "1", "null" };

		for (size_t i = 0; i < 4; i++) {
			cx_conn_t c;
			json_t *errors = (json_t *)0x1;
			mf_err_t err;
			json_t *body = json_loads(notobj[i], JSON_DECODE_ANY, NULL);
			int rc = cx_conn_from_json(body, "psa", guard, CEILING, &c, &err, &errors);

			T_OK(rc < 0 && err.status == 400 && errors == NULL && strstr(err.detail, "object"),
			     "a body that is not an object is refused with a detail");
			json_decref(body);
		}
	}
	/* without the guard (a stored row read back): addresses pass, since
	 * the connect-time check judges them, but the scheme still counts */
	good_with("{\"base_url\": \"http://127.0.0.1:8080/\"}", NULL);
	good_with("{\"base_url\": \"http://[::1]/\"}", NULL);
	bad_with("{\"base_url\": \"ftp://psa.example.com/\"}", NULL, "/base_url");
	bad_with("{\"base_url\": \"file:///etc/passwd\"}", NULL, "/base_url");
	bad_with("{\"base_url\": \"\"}", NULL, "/base_url");
	bad_with("{\"base_url\": \"https://\"}", NULL, "/base_url");
	bad_with("{\"base_url\": \"https://psa.example.com/?a=1\"}", NULL, "/base_url");
	/* the ceiling is the caller's */
	{
		cx_conn_t c;
		json_t *errors = NULL, *body = J("{" U ", \"max_response_bytes\": 4096}");
		mf_err_t err;

		T_OK(cx_conn_from_json(body, "psa", guard, 2048, &c, &err, &errors) < 0 &&
		     has_path(errors, "/max_response_bytes"), "max_response_bytes above the caller's ceiling is refused");
		json_decref(errors);
		json_decref(body);
	}
}

static void test_defaults_and_fields(void)
{
	cx_conn_t c;
	json_t *errors = NULL;
	mf_err_t err;
	int rc;

	rc = check("{" U "}", guard, &c, &errors, &err);
	T_OK(rc == 0, "a base_url alone is a connector");
	T_STREQ(c.name, "psa", "the name is kept");
	T_STREQ(c.base_url, "https://psa.example.com/api", "base_url is kept as given");
	T_OK(c.credential[0] == '\0', "no credential by default");
	T_OK(c.nheaders == 0 && c.redact[0] == NULL, "no headers or redact_fields by default");
	T_OK(c.timeout_ms == 10000, "timeout_ms defaults to 10 s");
	T_OK(c.rl_requests == 0 && c.rl_window_s == 0, "no outbound rate limit by default");
	T_OK(c.max_attempts == 3 && c.max_wait_ms == 60000, "retry defaults to 3 attempts within 60 s");
	T_OK(c.max_response_bytes == CEILING, "max_response_bytes defaults to the ceiling");
	T_OK(c.follow_redirects == 0, "redirects are not followed by default");
	cx_conn_free(&c);

	rc = check("{\"base_url\": \"https://psa.example.com/api\", \"credential\": \"psa\","
		   " \"headers\": {\"Accept\": \"application/json\", \"X-App\": \"mspflow\"}, \"timeout_ms\": 2500,"
		   " \"rate_limit\": {\"requests\": 10}, \"retry\": {\"max_wait\": \"PT2M\"},"
		   " \"redact_fields\": [\"ssn\", \"dob\"], \"max_response_bytes\": 65536, \"follow_redirects\": 2}",
		   guard, &c, &errors, &err);
	T_OK(rc == 0, "a full definition validates");
	T_STREQ(c.credential, "psa", "credential kept");
	T_OK(c.nheaders == 2, "two headers kept");
	T_STREQ(c.headers[0].name, "Accept", "header name kept as written");
	T_STREQ(c.headers[0].value, "application/json", "header value kept");
	T_OK(c.timeout_ms == 2500, "timeout_ms kept");
	T_OK(c.rl_requests == 10 && c.rl_window_s == 1, "rate_limit per defaults to one second");
	T_OK(c.max_attempts == 3 && c.max_wait_ms == 120000, "retry max_attempts defaults, max_wait in ms");
	T_OK(c.redact[0] && c.redact[1] && c.redact[2] == NULL && strcmp(c.redact[1], "dob") == 0,
	     "redact_fields kept, NULL-terminated");
	T_OK(c.max_response_bytes == 65536 && c.follow_redirects == 2, "max_response_bytes and follow_redirects kept");
	cx_conn_free(&c);
	cx_conn_free(&c);	/* a freed definition frees again harmlessly */
	cx_conn_free(NULL);
	T_OK(1, "cx_conn_free accepts NULL and a freed definition");
}

/* A row of platform.connector_rows, as the runtime's query returns it. */
static PGresult *row(const char *const v[14])
{
	static const char *const names[14] = {
		"name", "base_url", "credential", "headers", "timeout_ms", "rate_limit", "retry", "redact_fields",
		"max_response_bytes", "follow_redirects", "version", "created_at", "updated_at", "kind",
	};
	PGresAttDesc att[14];
	PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	memset(att, 0, sizeof(att));
	for (int i = 0; i < 14; i++) {
		att[i].name = (char *)names[i];
		att[i].typid = 25;
		att[i].typlen = -1;
		att[i].atttypmod = -1;
	}
	if (r == NULL || !PQsetResultAttrs(r, 14, att)) {
		printf("Bail out! cannot build a PGresult\n");
		exit(2);
	}
	for (int i = 0; i < 14; i++)
		if (!PQsetvalue(r, 0, i, (char *)v[i], v[i] ? (int)strlen(v[i]) : -1)) {
			printf("Bail out! cannot set a PGresult value\n");
			exit(2);
		}
	return r;
}

static void test_row(void)
{
	const char *v[14] = {
		"psa", "https://psa.example.com/api", "psa", "{\"Accept\": \"application/json\"}", "2500",
		"{\"per\": \"PT1M\", \"requests\": 60}", "{}", "[\"ssn\"]", "65536", "3", "7",
		"2024-05-01T10:00:00.000Z", "2024-05-02T10:00:00.000Z", "psa",
	};
	PGresult *r = row(v);
	cx_conn_t c;
	json_t *j;

	T_OK(cx_conn_from_row(r, 0, &c) == 0, "a stored row reads back");
	T_OK(strcmp(c.base_url, v[1]) == 0 && strcmp(c.credential, "psa") == 0 && c.nheaders == 1 &&
	     c.timeout_ms == 2500 && c.rl_requests == 60 && c.rl_window_s == 60 && c.max_attempts == 3 &&
	     strcmp(c.redact[0], "ssn") == 0 && c.max_response_bytes == 65536 && c.follow_redirects == 3 &&
	     c.version == 7 && strcmp(cx_kinds[c.kind], "psa") == 0, "every column of the row lands in the definition");
	cx_conn_free(&c);
	j = cx_conn_row_json(r, 0);
	T_OK(j && json_integer_value(json_object_get(j, "version")) == 7 &&
	     json_is_object(json_object_get(j, "headers")) &&
	     strcmp(json_string_value(json_object_get(j, "updated_at")), v[12]) == 0,
	     "the API form of a row carries the bookkeeping");
	json_decref(j);
	PQclear(r);

	v[2] = NULL;
	v[5] = NULL;
	v[1] = "http://127.0.0.2:8080";
	r = row(v);
	T_OK(cx_conn_from_row(r, 0, &c) == 0 && c.credential[0] == '\0' && c.rl_requests == 0,
	     "NULL credential and rate_limit read back as none; a loopback URL is judged at connect");
	cx_conn_free(&c);
	PQclear(r);

	v[3] = "{not json";
	r = row(v);
	T_OK(cx_conn_from_row(r, 0, &c) < 0, "a row whose JSON does not parse is refused");
	PQclear(r);
	v[3] = "{}";
	v[1] = "gopher://psa.example.com/";
	r = row(v);
	T_OK(cx_conn_from_row(r, 0, &c) < 0, "a row with a non-http base_url is refused");
	PQclear(r);
}

static void test_hosts(void)
{
	static const struct { const char *url, *host; } hosts[] = {
		{ "https://API.Example.COM/x", "api.example.com" },
		{ "https://api.example.com:8443/x?y=1#z", "api.example.com" },
		{ "http://api.example.com:80", "api.example.com" },
		{ "https://user:pw@api.example.com/", "api.example.com" },
		{ "https://evil.example.net@api.example.com/", "api.example.com" },
		{ "https://[::1]:8443/", "[::1]" },
		{ "https://[2001:DB8::1]/", "[2001:db8::1]" },
		{ "http://0x7f000001/", "127.0.0.1" },
		{ "https://a%2eb.example.com/", "a.b.example.com" },
	};
	static const char *const nohost[] = {
		"", "api.example.com/x", "/relative", "https://", "https://evil.com%00.example.com/",
		"https://evil.com%2f.example.com/", "https://a b.example.com/",
	};
	char out[256], small[8];

	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		char what[200];

		snprintf(what, sizeof(what), "cx_url_host(%s)", hosts[i].url);
		memset(out, 0, sizeof(out));
		T_OK(cx_url_host(hosts[i].url, out, sizeof(out)) == 0 && strcmp(out, hosts[i].host) == 0, what);
		if (strcmp(out, hosts[i].host) != 0)
			printf("#   got %s\n", out);
	}
	for (size_t i = 0; i < sizeof(nohost) / sizeof(nohost[0]); i++) {
		char what[200];

		snprintf(what, sizeof(what), "cx_url_host(%s) has no host", nohost[i]);
		T_OK(cx_url_host(nohost[i], out, sizeof(out)) < 0, what);
	}
	T_OK(cx_url_host("https://api.example.com/", small, sizeof(small)) < 0, "a host longer than the buffer fails");
	T_OK(cx_url_host("https://abcdefg/", small, sizeof(small)) == 0 && strcmp(small, "abcdefg") == 0,
	     "a host that just fits is returned");

	json_t *list = J("[\"api.hubspot.com\", \"*.example.com\", \"*.b.c.example.org\", 5, null,"
			 " \"127.0.0.1\", \"*.0.0.1\", \"[::1]\", \"*.\", \"*\"]");
	static const struct { const char *host; bool ok; } allowed[] = {
		{ "api.hubspot.com", true },
		{ "API.HubSpot.com", true },
		{ "x.api.hubspot.com", false },
		{ "hubspot.com", false },
		{ "api.hubspot.com.evil.net", false },
		{ "api.example.com", true },
		{ "a.b.c.example.com", true },
		{ "A.EXAMPLE.COM", true },
		{ "example.com", false },
		{ ".example.com", false },
		{ "badexample.com", false },
		{ "example.com.evil.net", false },
		{ "x.b.c.example.org", true },
		{ "b.c.example.org", false },
		{ "c.example.org", false },
		{ "127.0.0.1", false },
		{ "10.0.0.1", false },
		{ "[::1]", false },
		{ "::1", false },
		{ "1.2.3.4.example.com", true },
		{ "x.example.com.123", false },
		{ "", false },
	};
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		char what[200];

		snprintf(what, sizeof(what), "cx_host_allowed(%s) is %s", allowed[i].host, allowed[i].ok ? "yes" : "no");
		T_OK(cx_host_allowed(list, allowed[i].host) == allowed[i].ok, what);
	}
	json_t *empty = json_array();

	T_OK(!cx_host_allowed(empty, "api.example.com"), "an empty allow_hosts admits nothing");
	T_OK(!cx_host_allowed(NULL, "api.example.com"), "no allow_hosts admits nothing");
	json_decref(empty);
	json_decref(list);
}

static void test_headers(void)
{
	static const char *const reserved[] = {
		"Authorization", "proxy-authorization", "HOST", "Content-Length", "transfer-encoding", "Connection",
		"Keep-Alive", "Upgrade", "TE", "Trailer", "Expect", "Cookie", "Idempotency-Key", "TraceParent",
		"tracestate",
	};
	static const char *const free_names[] = {
		"Accept", "Content-Type", "X-Api-Version", "User-Agent", "Authorization2", "X-Authorization", "Hos",
		"Content-Length-X", "",
	};

	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		char what[120];

		snprintf(what, sizeof(what), "%s is reserved", reserved[i]);
		T_OK(cx_header_reserved(reserved[i]), what);
	}
	for (size_t i = 0; i < sizeof(free_names) / sizeof(free_names[0]); i++) {
		char what[120];

		snprintf(what, sizeof(what), "\"%s\" is not reserved", free_names[i]);
		T_OK(!cx_header_reserved(free_names[i]), what);
	}
	T_OK(cx_header_name_ok("X-A") && cx_header_name_ok("!#$%&'*+-.^_`|~0aZ"), "token characters make a name");
	T_OK(!cx_header_name_ok("") && !cx_header_name_ok(NULL) && !cx_header_name_ok("X A") &&
	     !cx_header_name_ok("X:A") && !cx_header_name_ok("X\"A") && !cx_header_name_ok("X(A)") &&
	     !cx_header_name_ok("X\x80") && !cx_header_name_ok("X\tA"), "separators, blanks and bytes >= 0x80 do not");
	T_OK(cx_header_value_ok("") && cx_header_value_ok("a\tb c") && cx_header_value_ok("caf\xc3\xa9"),
	     "a value may be empty, hold tabs, blanks and UTF-8");
	T_OK(!cx_header_value_ok("a\rb") && !cx_header_value_ok("a\nb") && !cx_header_value_ok("\x7f") &&
	     !cx_header_value_ok("\x01"), "a value has no CR, LF, DEL or other control bytes");
}

static void test_retry_after(void)
{
	const time_t now = 784111777;	/* Sun, 06 Nov 1994 08:49:37 GMT */
	static const struct { const char *v; long long ms; } cases[] = {
		{ "0", 0 },
		{ "5", 5000 },
		{ " 120\t", 120000 },
		{ "007", 7000 },
		{ "Sun, 06 Nov 1994 08:49:47 GMT", 10000 },
		{ "Sunday, 06-Nov-94 08:50:37 GMT", 60000 },
		{ "Sun Nov  6 08:49:57 1994", 20000 },
		{ "Sun, 06 Nov 1994 08:49:37 GMT", 0 },
		{ "Sat, 05 Nov 1994 08:49:37 GMT", 0 },
		{ "99999999999999999999999", CX_RETRY_AFTER_MAX_S * 1000 },
		{ "Fri, 31 Dec 9999 23:59:59 GMT", CX_RETRY_AFTER_MAX_S * 1000 },
		{ "", -1 },
		{ "   ", -1 },
		{ "-5", -1 },
		{ "+5", -1 },
		{ "5s", -1 },
		{ "1.5", -1 },
		{ "5 6", -1 },
		{ "0x10", -1 },
		{ "junk", -1 },
		{ "Sun, 99 Foo 1994", -1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char what[160];
		long long got = cx_retry_after_ms(cases[i].v, now);

		snprintf(what, sizeof(what), "Retry-After \"%s\" is %lld ms", cases[i].v, cases[i].ms);
		T_OK(got == cases[i].ms, what);
		if (got != cases[i].ms)
			printf("#   got %lld\n", got);
	}
	T_OK(cx_retry_after_ms(NULL, now) == -1, "no Retry-After is -1");
}

static void test_join(void)
{
	static const struct { const char *base, *path, *url; } cases[] = {
		{ "https://h/api", "", "https://h/api" },
		{ "https://h/api", "tickets", "https://h/api/tickets" },
		{ "https://h/api", "/tickets", "https://h/api/tickets" },
		{ "https://h/api/", "tickets", "https://h/api/tickets" },
		{ "https://h/api/", "/tickets", "https://h/api/tickets" },
		{ "https://h/api/", "//tickets", "https://h/api//tickets" },
		{ "https://h/api", "?page=2", "https://h/api?page=2" },
		{ "https://h/api/", "?page=2", "https://h/api/?page=2" },
		{ "https://h", "/x?y=1", "https://h/x?y=1" },
		{ "https://h", "@evil.example/x", "https://h/@evil.example/x" },
		{ "", "x", "/x" },
		{ "", "", "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char what[200];
		char *u = cx_url_join(cases[i].base, cases[i].path);

		snprintf(what, sizeof(what), "join(\"%s\", \"%s\") is %s", cases[i].base, cases[i].path, cases[i].url);
		T_STREQ(u, cases[i].url, what);
		free(u);
	}
}

static void test_url_redaction(void)
{
	static const char *const fields[] = { "ssn", NULL };
	static const struct { const char *url, *shown; } cases[] = {
		{ "https://h/x", "https://h/x" },
		{ "https://h/x?page=2&per=50", "https://h/x?page=2&per=50" },
		{ "https://h/x?api_key=s3cr3t&page=2", "https://h/x?api_key=[redacted]&page=2" },
		{ "https://h/x?page=2&access_token=abc", "https://h/x?page=2&access_token=[redacted]" },
		{ "https://h/x?Password=p&ssn=123&q=ok", "https://h/x?Password=[redacted]&ssn=[redacted]&q=ok" },
		{ "https://h/x?%74oken=abc", "https://h/x?%74oken=[redacted]" },
		{ "https://h/x?token", "https://h/x?token" },
		{ "https://h/x?token=", "https://h/x?token=[redacted]" },
		{ "https://h/x?&&token=a&", "https://h/x?&&token=[redacted]&" },
		{ "https://h/x?", "https://h/x?" },
	};
	char url[8192], want[65536];
	int n, m;
	json_t *j;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char what[240];

		j = cx_url_redacted(cases[i].url, fields);
		snprintf(what, sizeof(what), "summary URL of %s", cases[i].url);
		T_STREQ(json_string_value(j), cases[i].shown, what);
		json_decref(j);
	}
	/* "token=" (6 bytes) shows as "token=[redacted]" (16): many empty
	 * values make the summary far longer than twice the URL */
	n = snprintf(url, sizeof(url), "https://h/x?");
	m = snprintf(want, sizeof(want), "https://h/x?");
	for (int i = 0; i < 1000; i++) {
		n += snprintf(url + n, sizeof(url) - (size_t)n, "%st=", i ? "&" : "");
		m += snprintf(want + m, sizeof(want) - (size_t)m, "%st=[redacted]", i ? "&" : "");
	}
	{
		static const char *const t[] = { "t", NULL };

		j = cx_url_redacted(url, t);
		T_STREQ(json_string_value(j), want, "a summary URL may grow past twice the URL's length");
		json_decref(j);
	}
	j = cx_url_redacted("https://h/\xff?token=a", NULL);
	T_STREQ(json_string_value(j), "[binary]", "a URL that is not UTF-8 is shown as [binary]");
	json_decref(j);
}

/* ---- shared.c ---- */

static enum cx_tok_state tget(cx_shared_t *s, const char *key, long long now, char *out, cx_tok_view_t *v)
{
	return cx_tok_get(s, key, now, out, 64, v);
}

static void test_tokens(void)
{
	cx_shared_t *s = cx_shared_new(16);
	cx_tok_view_t a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	char out[64];
	char big[200];

	T_OK(s != NULL, "a table is made");
	/* single flight */
	T_OK(tget(s, "t/cred/1", 1000, out, &a) == CX_TOK_EMPTY && a.gen == 1, "the first caller fetches (gen 1)");
	T_OK(tget(s, "t/cred/1", 1001, out, &b) == CX_TOK_FETCHING && b.gen == 1, "a second caller waits");
	T_OK(tget(s, "t/cred/1", 1002, out, &a) == CX_TOK_FETCHING, "the fetcher looking again waits too");
	T_OK(tget(s, "t/other/1", 1002, out, &c) == CX_TOK_EMPTY, "another key has its own fetch");
	cx_tok_done(s, "t/cred/1", "tok-A", 5000, NULL);
	memset(out, 0, sizeof(out));
	T_OK(tget(s, "t/cred/1", 1003, out, &b) == CX_TOK_READY && strcmp(out, "tok-A") == 0,
	     "after the fetch every caller reads the token");
	memset(&d, 0, sizeof(d));
	T_OK(tget(s, "t/cred/1", 4999, out, &d) == CX_TOK_READY, "the token serves until it expires");
	/* expiry */
	memset(&d, 0, sizeof(d));
	T_OK(tget(s, "t/cred/1", 5000, out, &d) == CX_TOK_EMPTY && d.gen == 2, "at expiry the next caller fetches");
	memset(&a, 0, sizeof(a));
	T_OK(tget(s, "t/cred/1", 5001, out, &a) == CX_TOK_FETCHING && a.gen == 2, "and the others wait for it");
	/* failure reaches the waiters of that fetch only */
	cx_tok_done(s, "t/cred/1", NULL, 0, "the token endpoint answered 500");
	T_OK(tget(s, "t/cred/1", 5002, out, &a) == CX_TOK_FAILED && strcmp(a.detail, "the token endpoint answered 500") == 0,
	     "a waiter of the failed fetch fails with its detail");
	d.state = CX_TOK_FETCHING;	/* the fetcher reads like a waiter after its fetch (call.c) */
	T_OK(tget(s, "t/cred/1", 5003, out, &d) == CX_TOK_FAILED, "so does the fetcher looking again");
	memset(&b, 0, sizeof(b));
	T_OK(tget(s, "t/cred/1", 5004, out, &b) == CX_TOK_EMPTY && b.gen == 3, "a later caller fetches again");
	T_OK(tget(s, "t/cred/1", 5005, out, &a) == CX_TOK_FETCHING && a.gen == 3,
	     "a caller that saw the failure waits on the new fetch");
	/* abandoned */
	cx_tok_done(s, "t/cred/1", NULL, 0, NULL);
	T_OK(tget(s, "t/cred/1", 5006, out, &a) == CX_TOK_EMPTY && a.gen == 4,
	     "after an abandoned fetch a waiter becomes the fetcher");
	/* a waiter of an older generation is not failed by a newer fetch */
	memset(&c, 0, sizeof(c));
	T_OK(tget(s, "t/cred/1", 5007, out, &c) == CX_TOK_FETCHING && c.gen == 4, "waiting on gen 4");
	cx_tok_done(s, "t/cred/1", "tok-B", 9000, NULL);
	memset(&d, 0, sizeof(d));
	T_OK(tget(s, "t/cred/1", 9000, out, &d) == CX_TOK_EMPTY && d.gen == 5, "gen 5 fetches after expiry");
	cx_tok_done(s, "t/cred/1", NULL, 0, "boom");
	T_OK(tget(s, "t/cred/1", 9001, out, &c) == CX_TOK_EMPTY && c.gen == 6,
	     "a waiter of gen 4 is not failed by gen 5: it fetches");
	cx_tok_done(s, "t/cred/1", "tok-C", 20000, NULL);
	/* drop */
	cx_tok_drop(s, "t/cred/1", "tok-X");
	cx_tok_drop(s, "t/cred/1", "tok-");
	cx_tok_drop(s, "t/cred/1", "tok-CC");
	cx_tok_drop(s, "t/cred/1", NULL);
	cx_tok_drop(s, "t/none", "tok-C");
	memset(&d, 0, sizeof(d));
	T_OK(tget(s, "t/cred/1", 9002, out, &d) == CX_TOK_READY && strcmp(out, "tok-C") == 0,
	     "dropping another token (or none) keeps this one");
	cx_tok_drop(s, "t/cred/1", "tok-C");
	memset(&d, 0, sizeof(d));
	T_OK(tget(s, "t/cred/1", 9003, out, &d) == CX_TOK_EMPTY, "dropping the token makes the next caller fetch");
	/* a token the caller has no room for fails that caller alone */
	memset(big, 't', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cx_tok_done(s, "t/cred/1", big, 30000, NULL);
	memset(&d, 0, sizeof(d));
	T_OK(cx_tok_get(s, "t/cred/1", 9004, out, sizeof(out), &d) == CX_TOK_FAILED && d.detail[0],
	     "a token longer than the caller's buffer fails that caller");
	{
		char room[256];

		memset(&d, 0, sizeof(d));
		T_OK(cx_tok_get(s, "t/cred/1", 9005, room, sizeof(room), &d) == CX_TOK_READY && strcmp(room, big) == 0,
		     "and stays for callers with room");
	}
	/* a token too long to keep is a failed fetch */
	{
		char *huge = malloc(9000);

		memset(huge, 'h', 8999);
		huge[8999] = '\0';
		memset(&d, 0, sizeof(d));
		T_OK(tget(s, "t/huge", 1, out, &d) == CX_TOK_EMPTY, "fetching a huge token");
		memset(&a, 0, sizeof(a));
		T_OK(tget(s, "t/huge", 1, out, &a) == CX_TOK_FETCHING, "waiting for it");
		cx_tok_done(s, "t/huge", huge, 100000, NULL);
		T_OK(tget(s, "t/huge", 2, out, &a) == CX_TOK_FAILED && a.detail[0],
		     "a token of 8 KiB or more is not kept: its waiters fail");
		free(huge);
	}
	/* done for a key nobody fetches is ignored */
	cx_tok_done(s, "t/nobody", "tok", 100, NULL);
	T_OK(1, "cx_tok_done for an unknown key does nothing");
	/* a key too long to share: the caller fetches for itself */
	{
		char key[300];

		memset(key, 'k', sizeof(key) - 1);
		key[sizeof(key) - 1] = '\0';
		memset(&d, 0, sizeof(d));
		T_OK(tget(s, key, 1, out, &d) == CX_TOK_EMPTY && d.gen == 0, "a key too long to share: fetch alone");
		memset(&d, 0, sizeof(d));
		T_OK(tget(s, key, 1, out, &d) == CX_TOK_EMPTY && d.gen == 0, "every caller of it fetches");
		cx_tok_done(s, key, "tok", 100, NULL);
	}
	cx_shared_free(s);
	cx_shared_free(NULL);
}

static void test_table_bound(void)
{
	cx_shared_t *s = cx_shared_new(8);
	cx_tok_view_t v;
	char out[64], key[32];

	for (int i = 0; i < 8; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		memset(&v, 0, sizeof(v));
		if (tget(s, key, 1000, out, &v) == CX_TOK_EMPTY)
			cx_tok_done(s, key, "tok", 1500, NULL);
	}
	memset(&v, 0, sizeof(v));
	T_OK(tget(s, "k8", 1000, out, &v) == CX_TOK_EMPTY && v.gen == 0,
	     "a full table of live entries: a new key is fetched without sharing");
	memset(&v, 0, sizeof(v));
	T_OK(tget(s, "k0", 1200, out, &v) == CX_TOK_READY, "the entries already there still serve");
	/* 2 s later the first eight are expired and idle: they are swept */
	memset(&v, 0, sizeof(v));
	T_OK(tget(s, "k8", 3000, out, &v) == CX_TOK_EMPTY && v.gen == 1, "expired entries are swept for a new key");
	cx_tok_done(s, "k8", "tok8", 10000, NULL);
	memset(&v, 0, sizeof(v));
	T_OK(tget(s, "k1", 3000, out, &v) == CX_TOK_EMPTY && v.gen == 1, "a swept key starts over at gen 1");
	cx_tok_done(s, "k1", NULL, 0, NULL);
	memset(&v, 0, sizeof(v));
	T_OK(tget(s, "k8", 3001, out, &v) == CX_TOK_READY && strcmp(out, "tok8") == 0, "live entries are not swept");
	/* many more keys than room, time moving on: no crash, no growth */
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "m%d", i);
		memset(&v, 0, sizeof(v));
		if (tget(s, key, 4000 + i * 10, out, &v) == CX_TOK_EMPTY)
			cx_tok_done(s, key, i % 3 ? "tok" : NULL, 4000 + i * 10 + 5, i % 3 ? NULL : "failed");
		cx_hold_set(s, key, 4000 + i * 10 + 20);
	}
	T_OK(1, "5000 keys through a table of 8: no crash");
	/* entries must be left alone while a fetch is under way, even when
	 * its fetcher finished the lookup with no clock (cx_tok_done) */
	{
		cx_shared_t *t = cx_shared_new(1);
		cx_tok_view_t w = { 0 };

		T_OK(tget(t, "f", 100000, out, &w) == CX_TOK_EMPTY && w.gen == 1, "one key fetching");
		cx_tok_done(t, "f", NULL, 0, "failed");
		memset(&v, 0, sizeof(v));
		/* half a second later: "f" is not a second idle, so it stays */
		T_OK(tget(t, "g", 100500, out, &v) == CX_TOK_EMPTY && v.gen == 0,
		     "a recently failed entry is not swept half a second later");
		memset(&w, 0, sizeof(w));
		w.state = CX_TOK_FETCHING;
		w.gen = 1;
		T_OK(tget(t, "f", 100500, out, &w) == CX_TOK_FAILED, "its waiters still learn of the failure");
		cx_shared_free(t);
	}
	cx_shared_free(s);
}

static void test_holds(void)
{
	cx_shared_t *s = cx_shared_new(0);

	T_OK(cx_hold_get(s, "t/psa", 1000) == 0, "no hold at first");
	cx_hold_set(s, "t/psa", 5000);
	T_OK(cx_hold_get(s, "t/psa", 1000) == 5000, "a hold is seen");
	T_OK(cx_hold_get(s, "t/crm", 1000) == 0, "by its key only");
	cx_hold_set(s, "t/psa", 3000);
	T_OK(cx_hold_get(s, "t/psa", 1000) == 5000, "an earlier hold does not shorten a later one");
	cx_hold_set(s, "t/psa", 8000);
	T_OK(cx_hold_get(s, "t/psa", 1000) == 8000, "the later of two holds wins");
	T_OK(cx_hold_get(s, "t/psa", 7999) == 8000 && cx_hold_get(s, "t/psa", 8000) == 0, "a hold ends at its time");
	cx_shared_free(s);
}

/* ---- single flight under threads ---- */

#define STRESS_THREADS 4
#define STRESS_GETS 10000
#define STRESS_GENS (STRESS_THREADS * STRESS_GETS + 2)

static cx_shared_t *stress_s;
static _Atomic long long stress_clock;
static _Atomic int stress_fetchers[STRESS_GENS];
static _Atomic int stress_bad, stress_ready, stress_failed;

static void *stress_thread(void *arg)
{
	cx_tok_view_t v = { 0 };
	char out[64], want[64];

	(void)arg;
	for (int i = 0; i < STRESS_GETS; i++) {
		long long now = atomic_fetch_add(&stress_clock, 1);
		enum cx_tok_state st = cx_tok_get(stress_s, "t/cred/1", now, out, sizeof(out), &v);

		switch (st) {
		case CX_TOK_EMPTY:
			if (v.gen == 0 || v.gen >= STRESS_GENS) {
				stress_bad++;
				break;
			}
			stress_fetchers[v.gen]++;
			/* a fetch takes a while: the others see it under way */
			nanosleep(&(struct timespec){ .tv_nsec = 20000 }, NULL);
			/* every 7th fetch fails, every 5th is abandoned, the
			 * rest yield a token that lives 40 ticks */
			if (v.gen % 7 == 0) {
				cx_tok_done(stress_s, "t/cred/1", NULL, 0, "failed");
			} else if (v.gen % 5 == 0) {
				cx_tok_done(stress_s, "t/cred/1", NULL, 0, NULL);
			} else {
				snprintf(want, sizeof(want), "tok-%u", v.gen);
				cx_tok_done(stress_s, "t/cred/1", want, now + 40, NULL);
			}
			/* and the call goes on: the waiters look meanwhile */
			nanosleep(&(struct timespec){ .tv_nsec = 50000 }, NULL);
			memset(&v, 0, sizeof(v));
			break;
		case CX_TOK_READY:
			/* a token is one some fetcher stored, whole */
			if (strncmp(out, "tok-", 4) != 0 || atoi(out + 4) <= 0 || atoi(out + 4) % 7 == 0 ||
			    atoi(out + 4) % 5 == 0)
				stress_bad++;
			stress_ready++;
			memset(&v, 0, sizeof(v));
			break;
		case CX_TOK_FAILED:
			if (v.gen % 7 != 0 || strcmp(v.detail, "failed") != 0)
				stress_bad++;
			stress_failed++;
			memset(&v, 0, sizeof(v));
			break;
		case CX_TOK_FETCHING:
			/* poll again a little later with the same view, as
			 * call.c does every few milliseconds */
			nanosleep(&(struct timespec){ .tv_nsec = 10000 }, NULL);
			break;
		}
	}
	return NULL;
}

static void test_stress(void)
{
	pthread_t th[STRESS_THREADS];
	int gens = 0, dup = 0, missing = 0;
	cx_tok_view_t v = { 0 };
	char out[64];

	stress_s = cx_shared_new(64);
	stress_clock = 1;
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_create(&th[i], NULL, stress_thread, NULL);
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_join(th[i], NULL);
	/* the generation after the last one tells how many there were */
	if (cx_tok_get(stress_s, "t/cred/1", stress_clock + 1000, out, sizeof(out), &v) == CX_TOK_EMPTY)
		gens = (int)v.gen - 1;
	else if (v.state == CX_TOK_FETCHING)
		gens = (int)v.gen - 1;	/* cannot happen: every fetcher finished */
	for (int g = 1; g <= gens && g < STRESS_GENS; g++) {
		if (stress_fetchers[g] == 0)
			missing++;
		if (stress_fetchers[g] > 1)
			dup++;
	}
	printf("# %d generations, %d ready reads, %d failed reads\n", gens, (int)stress_ready, (int)stress_failed);
	T_OK(gens > 10 && dup == 0 && missing == 0, "threads: exactly one fetcher per generation");
	T_OK(stress_bad == 0, "threads: every token read is whole, every failure belongs to a failed fetch");
	T_OK(stress_ready > 0 && stress_failed > 0, "threads: both tokens and failures were seen");
	cx_shared_free(stress_s);
}

/* A call's path can never move the request to another host. */
static void test_call_paths(void)
{
	static const char *const ok[] = { "", "/", "/deals/42", "?q=1", "/a?b=c&d=%20e", "/@evil.example/x" };
	static const char *const bad[] = {
		"//evil.example/x", "@evil.example", "evil.example", "/a b", "/a#frag", "/a\\b", "/a\r\nX: y",
		"http://evil.example/", "/\x7f", "/\xc3\xa9",
	};
	char big[2100];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		T_OK(cx_call_path_ok(ok[i]), ok[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		T_OK(!cx_call_path_ok(bad[i]), "a call path that is refused");
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	T_OK(!cx_call_path_ok(big), "a call path over 2048 bytes is refused");
}

int main(void)
{
	mf_err_t err;

	if (sodium_init() < 0) {
		printf("Bail out! sodium_init\n");
		return 2;
	}
	guard = cx_egress_new("", &err);
	if (guard == NULL) {
		printf("Bail out! cx_egress_new: %s\n", err.detail);
		return 2;
	}
	test_validation();
	test_defaults_and_fields();
	test_row();
	test_hosts();
	test_headers();
	test_retry_after();
	test_join();
	test_call_paths();
	test_url_redaction();
	test_tokens();
	test_table_bound();
	test_holds();
	test_stress();
	cx_egress_free(guard);
	return t_done();
}
