/* test_policy.c - policy documents: every constraint, error paths, inheritance and caps, rate plans. */
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "policies/policy.h"
#include "t.h"

/* Everything the tests create is released at the end, so ASan's leak check
 * covers the library and not the test's bookkeeping. */
static json_t *garbage[4096];
static size_t ngarbage;

static json_t *keep(json_t *j)
{
	if (j && ngarbage < sizeof(garbage) / sizeof(garbage[0]))
		garbage[ngarbage++] = j;
	return j;
}

static json_t *J(const char *text)
{
	mf_err_t err;
	json_t *j;

	if (text == NULL)
		return NULL;
	j = mf_json_parse(text, strlen(text), 64, &err);
	if (j == NULL) {
		printf("Bail out! test document does not parse: %s\n%s\n", err.detail, text);
		exit(2);
	}
	return keep(j);
}

static char *dump(const json_t *j)
{
	static char buf[8][4096];
	static int next;
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	char *out = buf[next++ % 8];

	snprintf(out, sizeof(buf[0]), "%s", s ? s : "(missing)");
	free(s);
	return out;
}

/* A tiny JSON Pointer lookup (no escapes needed by these tests). */
static json_t *at(json_t *doc, const char *ptr)
{
	char seg[128];

	while (doc && *ptr == '/') {
		size_t n = strcspn(ptr + 1, "/");

		snprintf(seg, sizeof(seg), "%.*s", (int)n, ptr + 1);
		doc = json_is_array(doc) ? json_array_get(doc, strtoul(seg, NULL, 10)) : json_object_get(doc, seg);
		ptr += n + 1;
	}
	return doc;
}

static long long I(json_t *doc, const char *ptr)
{
	json_t *v = at(doc, ptr);

	return json_is_integer(v) ? json_integer_value(v) : -999;
}

static const char *S(json_t *doc, const char *ptr)
{
	json_t *v = at(doc, ptr);

	return json_is_string(v) ? json_string_value(v) : "(not a string)";
}

static int B(json_t *doc, const char *ptr)
{
	json_t *v = at(doc, ptr);

	return json_is_boolean(v) ? json_is_true(v) : -1;
}

static int validates(const json_t *doc)
{
	json_t *errors = NULL;
	mf_err_t err;
	int rc = pol_policy_validate(doc, &errors, &err);

	if (rc != 0)
		printf("#   problems: %s\n", dump(errors));
	json_decref(errors);
	return rc == 0;
}

static void good(const char *text)
{
	char what[320];

	snprintf(what, sizeof(what), "valid: %.280s", text);
	T_OK(validates(J(text)), what);
}

/* text has exactly one problem, at path, whose message contains msg. */
static void bad(const char *text, const char *path, const char *msg)
{
	json_t *errors = (json_t *)0x1, *e;
	mf_err_t err;
	int rc = pol_policy_validate(J(text), &errors, &err);
	char what[400];

	snprintf(what, sizeof(what), "invalid at %s (%s): %.200s", path, msg, text);
	e = json_array_get(errors, 0);
	T_OK(rc == -1 && err.status == 400 && strcmp(err.code, "validation_failed") == 0 &&
	     json_array_size(errors) == 1 && strcmp(S(e, "/path"), path) == 0 &&
	     strstr(S(e, "/message"), msg) != NULL, what);
	if (!(json_array_size(errors) == 1 && strcmp(S(e, "/path"), path) == 0 && strstr(S(e, "/message"), msg)))
		printf("#   rc %d, errors %s\n", rc, dump(errors));
	json_decref(rc == 0 ? NULL : errors);
}

/* The effective document, which must itself validate and be complete. */
static json_t *eff(const char *parent, const char *own)
{
	json_t *e = keep(pol_policy_effective(J(parent), J(own)));

	T_OK(e && validates(e), "the effective document validates");
	return e;
}

static char *repeat(char c, size_t n)
{
	static char buf[4][1024];
	static int next;
	char *out = buf[next++ % 4];

	memset(out, c, n);
	out[n] = '\0';
	return out;
}

static void test_rate_limit(void)
{
	good("{}");
	good("{\"rate_limit\": {}}");
	good("{\"rate_limit\": {\"window\": \"PT1S\"}}");
	good("{\"rate_limit\": {\"window\": \"PT1H\"}}");
	good("{\"rate_limit\": {\"window\": \"PT60M\"}}");
	bad("{\"rate_limit\": {\"window\": \"PT0S\"}}", "/rate_limit/window", "from PT1S to PT1H");
	bad("{\"rate_limit\": {\"window\": \"PT1H1S\"}}", "/rate_limit/window", "from PT1S to PT1H");
	bad("{\"rate_limit\": {\"window\": \"P1D\"}}", "/rate_limit/window", "from PT1S to PT1H");
	bad("{\"rate_limit\": {\"window\": \"P1M\"}}", "/rate_limit/window", "months have no fixed length");
	bad("{\"rate_limit\": {\"window\": \"PT1.5S\"}}", "/rate_limit/window", "fractions");
	bad("{\"rate_limit\": {\"window\": 60}}", "/rate_limit/window", "duration string");
	bad("{\"rate_limit\": {\"window\": null}}", "/rate_limit/window", "must not be null");

	good("{\"rate_limit\": {\"tenant_requests\": 1}}");
	good("{\"rate_limit\": {\"tenant_requests\": 10000000, \"client_requests\": 10000000}}");
	bad("{\"rate_limit\": {\"tenant_requests\": 0}}", "/rate_limit/tenant_requests", "from 1 to 10000000");
	bad("{\"rate_limit\": {\"tenant_requests\": 10000001}}", "/rate_limit/tenant_requests", "from 1 to 10000000");
	bad("{\"rate_limit\": {\"tenant_requests\": -5}}", "/rate_limit/tenant_requests", "from 1 to 10000000");
	bad("{\"rate_limit\": {\"tenant_requests\": 1.5}}", "/rate_limit/tenant_requests", "must be an integer");
	bad("{\"rate_limit\": {\"tenant_requests\": 10.0}}", "/rate_limit/tenant_requests", "no decimal point");
	bad("{\"rate_limit\": {\"tenant_requests\": 1e3}}", "/rate_limit/tenant_requests", "must be an integer");
	bad("{\"rate_limit\": {\"tenant_requests\": \"10\"}}", "/rate_limit/tenant_requests", "must be an integer");
	bad("{\"rate_limit\": {\"tenant_requests\": true}}", "/rate_limit/tenant_requests", "must be an integer");
	good("{\"rate_limit\": {\"client_requests\": 1}}");
	bad("{\"rate_limit\": {\"client_requests\": 0}}", "/rate_limit/client_requests", "from 1 to 10000000");
	bad("{\"rate_limit\": {\"client_requests\": 10000001}}", "/rate_limit/client_requests", "from 1 to 10000000");
	good("{\"rate_limit\": {\"tenant_requests\": 500, \"client_requests\": 500}}");
	bad("{\"rate_limit\": {\"tenant_requests\": 500, \"client_requests\": 501}}",
	    "/rate_limit/client_requests", "must not exceed tenant_requests");
	bad("{\"rate_limit\": {\"client_requests\": 501, \"tenant_requests\": 500}}",
	    "/rate_limit/client_requests", "must not exceed tenant_requests");
	/* only checked within one document: the effective policy clamps the rest */
	good("{\"rate_limit\": {\"client_requests\": 9000}}");
}

static void test_engine(void)
{
	good("{\"engine\": {\"max_concurrent_runs\": 1, \"max_queued_runs\": 0}}");
	good("{\"engine\": {\"max_concurrent_runs\": 10000, \"max_queued_runs\": 1000000}}");
	bad("{\"engine\": {\"max_concurrent_runs\": 0}}", "/engine/max_concurrent_runs", "from 1 to 10000");
	bad("{\"engine\": {\"max_concurrent_runs\": 10001}}", "/engine/max_concurrent_runs", "from 1 to 10000");
	bad("{\"engine\": {\"max_concurrent_runs\": \"20\"}}", "/engine/max_concurrent_runs", "integer");
	bad("{\"engine\": {\"max_queued_runs\": -1}}", "/engine/max_queued_runs", "from 0 to 1000000");
	bad("{\"engine\": {\"max_queued_runs\": 1000001}}", "/engine/max_queued_runs", "from 0 to 1000000");
	bad("{\"engine\": {\"max_queued_runs\": 2.0}}", "/engine/max_queued_runs", "integer");
}

static void test_egress(void)
{
	char text[2048], many[8192];
	size_t n;

	good("{\"egress\": {\"allow_hosts\": [], \"allow_private\": true}}");
	good("{\"egress\": {\"allow_hosts\": [\"api.hubspot.com\", \"*.example.com\", \"localhost\","
	     " \"a-b.c0.example\", \"xn--bcher-kva.example\", \"0x7f.example.com\"]}}");
	bad("{\"egress\": {\"allow_private\": \"false\"}}", "/egress/allow_private", "true or false");
	bad("{\"egress\": {\"allow_private\": 0}}", "/egress/allow_private", "true or false");
	bad("{\"egress\": {\"allow_hosts\": \"api.hubspot.com\"}}", "/egress/allow_hosts", "array of host names");

	static const char *const hosts[][2] = {
		{"API.hubspot.com", "lower case"},
		{"1.2.3.4", "IP addresses"},
		{"10.0.0.1", "IP addresses"},
		{"0x7f000001", "IP addresses"},
		{"2130706433", "IP addresses"},
		{"127.1", "IP addresses"},
		{"example.123", "IP addresses"},
		{"::1", "IP addresses"},
		{"[::1]", "IP addresses"},
		{"fe80::1", "IP addresses"},
		{"example.com:443", "port"},
		{"https://example.com", "not a URL"},
		{"example.com/path", "path"},
		{"-a.example.com", "start or end with '-'"},
		{"a-.example.com", "start or end with '-'"},
		{"a..example.com", "empty label"},
		{".example.com", "empty label"},
		{"example.com.", "empty label"},
		{"", "must not be empty"},
		{"*", "leading \"*.\""},
		{"*example.com", "leading \"*.\""},
		{"a.*.example.com", "leading \"*.\""},
		{"*.*.example.com", "leading \"*.\""},
		{"*.com", "at least two labels"},
		{"exa_mple.com", "only a-z"},
		{"user@example.com", "only a-z"},
		{"ex ample.com", "only a-z"},
	};
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		snprintf(text, sizeof(text), "{\"egress\": {\"allow_hosts\": [\"ok.example.com\", \"%s\"]}}",
			 hosts[i][0]);
		bad(text, "/egress/allow_hosts/1", hosts[i][1]);
	}
	bad("{\"egress\": {\"allow_hosts\": [\"a.example.com\", 7]}}", "/egress/allow_hosts/1", "host name string");
	bad("{\"egress\": {\"allow_hosts\": [\"a.example.com\", \"b.example.com\", \"a.example.com\"]}}",
	    "/egress/allow_hosts/2", "duplicates an earlier entry");

	/* label and name lengths at and past their limits */
	snprintf(text, sizeof(text), "{\"egress\": {\"allow_hosts\": [\"%s.example.com\"]}}", repeat('a', 63));
	good(text);
	snprintf(text, sizeof(text), "{\"egress\": {\"allow_hosts\": [\"%s.example.com\"]}}", repeat('a', 64));
	bad(text, "/egress/allow_hosts/0", "at most 63 characters");
	{
		/* 63+1+63+1+63+1+61 = 253 */
		char name[300];

		snprintf(name, sizeof(name), "%s.%s.%s.%s", repeat('a', 63), repeat('b', 63), repeat('c', 63),
			 repeat('d', 61));
		snprintf(text, sizeof(text), "{\"egress\": {\"allow_hosts\": [\"%s\", \"*.%s\"]}}", name, name);
		good(text);
		snprintf(name, sizeof(name), "%s.%s.%s.%s", repeat('a', 63), repeat('b', 63), repeat('c', 63),
			 repeat('d', 62));
		snprintf(text, sizeof(text), "{\"egress\": {\"allow_hosts\": [\"%s\"]}}", name);
		bad(text, "/egress/allow_hosts/0", "at most 253 characters");
	}

	/* 256 entries pass, 257 fail at the array itself */
	for (int total = 256; total <= 257; total++) {
		n = (size_t)snprintf(many, sizeof(many), "{\"egress\": {\"allow_hosts\": [");
		for (int i = 0; i < total; i++)
			n += (size_t)snprintf(many + n, sizeof(many) - n, "%s\"h%d.example.com\"", i ? "," : "", i);
		snprintf(many + n, sizeof(many) - n, "]}}");
		if (total == 256)
			good(many);
		else
			bad(many, "/egress/allow_hosts", "at most 256 entries");
	}
}

static void test_approvals(void)
{
	char text[2048];
	size_t n;

	good("{\"approvals\": {\"default_sla\": \"PT1M\", \"on_timeout\": \"reject\", \"escalation_role\": \"ab\"}}");
	good("{\"approvals\": {\"default_sla\": \"P365D\", \"on_timeout\": \"escalate\"}}");
	good("{\"approvals\": {\"default_sla\": \"P52W\"}}");
	bad("{\"approvals\": {\"default_sla\": \"PT59S\"}}", "/approvals/default_sla", "from PT1M to P365D");
	bad("{\"approvals\": {\"default_sla\": \"P366D\"}}", "/approvals/default_sla", "from PT1M to P365D");
	bad("{\"approvals\": {\"default_sla\": \"P1Y\"}}", "/approvals/default_sla", "years");
	bad("{\"approvals\": {\"on_timeout\": \"ignore\"}}", "/approvals/on_timeout", "\"escalate\" or \"reject\"");
	bad("{\"approvals\": {\"on_timeout\": \"ESCALATE\"}}", "/approvals/on_timeout", "\"escalate\" or \"reject\"");
	bad("{\"approvals\": {\"on_timeout\": 1}}", "/approvals/on_timeout", "\"escalate\" or \"reject\"");

	snprintf(text, sizeof(text), "{\"approvals\": {\"escalation_role\": \"m%s\"}}", repeat('x', 62));
	good(text);
	snprintf(text, sizeof(text), "{\"approvals\": {\"escalation_role\": \"m%s\"}}", repeat('x', 63));
	bad(text, "/approvals/escalation_role", "role name");
	good("{\"approvals\": {\"escalation_role\": \"finance_approver2\"}}");
	bad("{\"approvals\": {\"escalation_role\": \"a\"}}", "/approvals/escalation_role", "role name");
	bad("{\"approvals\": {\"escalation_role\": \"Msp_operator\"}}", "/approvals/escalation_role", "role name");
	bad("{\"approvals\": {\"escalation_role\": \"1ops\"}}", "/approvals/escalation_role", "role name");
	bad("{\"approvals\": {\"escalation_role\": \"_ops\"}}", "/approvals/escalation_role", "role name");
	bad("{\"approvals\": {\"escalation_role\": \"msp-operator\"}}", "/approvals/escalation_role", "role name");
	bad("{\"approvals\": {\"escalation_role\": [\"ops\"]}}", "/approvals/escalation_role", "role name");

	good("{\"approvals\": {\"rules\": []}}");
	good("{\"approvals\": {\"rules\": [{\"workflow\": \"billing-*\", \"assignee_role\": \"finance_approver\","
	     " \"sla\": \"PT24H\"}, {\"workflow\": \"*\", \"sla\": \"PT1M\"}, {\"workflow\": \"x\", \"assignee_role\": \"ops\"}]}}");
	bad("{\"approvals\": {\"rules\": {}}}", "/approvals/rules", "array of rules");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a\", \"sla\": \"PT30S\"}]}}", "/approvals/rules/0/sla",
	    "from PT1M to P365D");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a\", \"sla\": \"P366D\"}]}}", "/approvals/rules/0/sla",
	    "from PT1M to P365D");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a\", \"sla\": \"PT1H\"}, {\"workflow\": \"Billing\", \"sla\": \"PT1H\"}]}}",
	    "/approvals/rules/1/workflow", "workflow name pattern");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"\", \"sla\": \"PT1H\"}]}}", "/approvals/rules/0/workflow",
	    "workflow name pattern");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"bill_ing\", \"sla\": \"PT1H\"}]}}",
	    "/approvals/rules/0/workflow", "workflow name pattern");
	snprintf(text, sizeof(text), "{\"approvals\": {\"rules\": [{\"workflow\": \"%s\", \"sla\": \"PT1H\"}]}}",
		 repeat('w', 64));
	good(text);
	snprintf(text, sizeof(text), "{\"approvals\": {\"rules\": [{\"workflow\": \"%s\", \"sla\": \"PT1H\"}]}}",
		 repeat('w', 65));
	bad(text, "/approvals/rules/0/workflow", "workflow name pattern");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a\", \"assignee_role\": \"A\"}]}}",
	    "/approvals/rules/0/assignee_role", "role name");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a\", \"sla\": \"PT1H\", \"bogus\": 1}]}}",
	    "/approvals/rules/0/bogus", "unknown field");
	bad("{\"approvals\": {\"rules\": [{\"sla\": \"PT1H\"}]}}", "/approvals/rules/0/workflow", "is required");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a\"}]}}", "/approvals/rules/0", "assignee_role, sla, or both");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a\", \"sla\": \"PT1H\"}, \"b\"]}}", "/approvals/rules/1",
	    "must be an object");
	bad("{\"approvals\": {\"rules\": [{\"workflow\": \"a-*\", \"sla\": \"PT1H\"}, {\"workflow\": \"a-*\", \"sla\": \"PT2H\"}]}}",
	    "/approvals/rules/1/workflow", "earlier rule");

	for (int total = 100; total <= 101; total++) {
		char many[8192];

		n = (size_t)snprintf(many, sizeof(many), "{\"approvals\": {\"rules\": [");
		for (int i = 0; i < total; i++)
			n += (size_t)snprintf(many + n, sizeof(many) - n, "%s{\"workflow\": \"w%d\", \"sla\": \"PT1H\"}",
					      i ? "," : "", i);
		snprintf(many + n, sizeof(many) - n, "]}}");
		if (total == 100)
			good(many);
		else
			bad(many, "/approvals/rules", "at most 100 entries");
	}
}

static void test_ai(void)
{
	good("{\"ai\": {\"enabled\": true, \"require_human_approval\": false, \"min_confidence\": 0,"
	     " \"allowed_tasks\": [], \"log_prompts\": true, \"max_output_tokens\": 1}}");
	good("{\"ai\": {\"min_confidence\": 1, \"allowed_tasks\": [\"recommend\", \"summarize\", \"classify\", \"extract\"],"
	     " \"max_output_tokens\": 32768}}");
	good("{\"ai\": {\"min_confidence\": 0.5}}");
	good("{\"ai\": {\"min_confidence\": 1.0}}");
	bad("{\"ai\": {\"enabled\": \"yes\"}}", "/ai/enabled", "true or false");
	bad("{\"ai\": {\"require_human_approval\": 1}}", "/ai/require_human_approval", "true or false");
	bad("{\"ai\": {\"log_prompts\": null}}", "/ai/log_prompts", "must not be null");
	bad("{\"ai\": {\"min_confidence\": -0.1}}", "/ai/min_confidence", "from 0 to 1");
	bad("{\"ai\": {\"min_confidence\": 1.01}}", "/ai/min_confidence", "from 0 to 1");
	bad("{\"ai\": {\"min_confidence\": \"0.8\"}}", "/ai/min_confidence", "from 0 to 1");
	bad("{\"ai\": {\"allowed_tasks\": \"summarize\"}}", "/ai/allowed_tasks", "array of task names");
	bad("{\"ai\": {\"allowed_tasks\": [\"translate\"]}}", "/ai/allowed_tasks/0", "must be one of");
	bad("{\"ai\": {\"allowed_tasks\": [\"summarize\", \"Summarize\"]}}", "/ai/allowed_tasks/1", "must be one of");
	bad("{\"ai\": {\"allowed_tasks\": [\"summarize\", \"classify\", \"summarize\"]}}", "/ai/allowed_tasks/2",
	    "duplicates an earlier entry");
	bad("{\"ai\": {\"max_output_tokens\": 0}}", "/ai/max_output_tokens", "from 1 to 32768");
	bad("{\"ai\": {\"max_output_tokens\": 32769}}", "/ai/max_output_tokens", "from 1 to 32768");
	bad("{\"ai\": {\"max_output_tokens\": 1024.0}}", "/ai/max_output_tokens", "integer");
}

static void test_retention(void)
{
	good("{\"retention\": {\"runs\": \"P1D\", \"events\": \"P3650D\", \"audit\": \"PT24H\"}}");
	bad("{\"retention\": {\"runs\": \"PT23H\"}}", "/retention/runs", "from P1D to P3650D");
	bad("{\"retention\": {\"events\": \"P3651D\"}}", "/retention/events", "10 years");
	bad("{\"retention\": {\"audit\": \"P0D\"}}", "/retention/audit", "from P1D to P3650D");
	bad("{\"retention\": {\"audit\": 365}}", "/retention/audit", "duration string");
}

static void test_structure(void)
{
	json_t *errors = NULL, *doc;
	mf_err_t err;
	char many[4096];
	size_t n;

	bad("{\"ai\": {\"bogus\": 1}}", "/ai/bogus", "unknown field");
	bad("{\"bogus\": {}}", "/bogus", "unknown field");
	bad("{\"a/b\": 1}", "/a~1b", "unknown field");
	bad("{\"ai\": {\"x~y/z\": 1}}", "/ai/x~0y~1z", "unknown field");
	bad("{\"\": 1}", "/", "unknown field");
	bad("{\"ai\": []}", "/ai", "must be an object");
	bad("{\"egress\": null}", "/egress", "must be an object");
	bad("[]", "", "must be a JSON object");
	bad("{\"ai\": {\"bogus\": 1}}", "/ai/bogus", "known: enabled, require_human_approval");

	T_OK(pol_policy_validate(NULL, &errors, &err) == -1 && json_array_size(errors) == 1,
	     "a NULL document is one problem");
	json_decref(errors);
	T_OK(pol_policy_validate(J("{\"ai\": 1}"), NULL, &err) == -1 && err.status == 400,
	     "errors may be NULL");
	T_OK(pol_policy_validate(J("{}"), NULL, NULL) == 0, "err may be NULL too");
	errors = (json_t *)0x1;
	T_OK(pol_policy_validate(J("{}"), &errors, &err) == 0 && errors == NULL, "success leaves *errors NULL");

	/* every problem at once, in document order */
	doc = J("{\"rate_limit\": {\"window\": \"PT2H\", \"tenant_requests\": 0},"
		" \"egress\": {\"allow_hosts\": [\"ok.example.com\", \"x.example.com\", \"1.2.3.4\"]},"
		" \"approvals\": {\"rules\": [{\"workflow\": \"a\", \"sla\": \"PT1S\"}]},"
		" \"ai\": {\"bogus\": true, \"enabled\": 3}, \"zzz\": 1}");
	T_OK(pol_policy_validate(doc, &errors, &err) == -1, "a document with many problems fails");
	T_STREQ(dump(errors),
		"[{\"path\":\"/rate_limit/window\",\"message\":\"must be from PT1S to PT1H\"},"
		"{\"path\":\"/rate_limit/tenant_requests\",\"message\":\"must be from 1 to 10000000\"},"
		"{\"path\":\"/egress/allow_hosts/2\",\"message\":\"IP addresses are not allowed; list host names\"},"
		"{\"path\":\"/approvals/rules/0/sla\",\"message\":\"must be from PT1M to P365D\"},"
		"{\"path\":\"/ai/bogus\",\"message\":\"unknown field (known: enabled, require_human_approval,"
		" min_confidence, allowed_tasks, log_prompts, max_output_tokens)\"},"
		"{\"path\":\"/ai/enabled\",\"message\":\"must be true or false\"},"
		"{\"path\":\"/zzz\",\"message\":\"unknown field (known: rate_limit, engine, egress, approvals, ai,"
		" retention)\"}]",
		"all seven problems are listed with exact paths, in document order");
	T_STREQ(err.detail, "the policy document has 7 problems; the first: /rate_limit/window: must be from PT1S to PT1H",
		"the detail summarises on one line");
	json_decref(errors);

	/* the detail never quotes what the client wrote */
	T_OK(pol_policy_validate(J("{\"ai\": {\"sk_live_SECRET\": 1}}"), NULL, &err) == -1 &&
	     strstr(err.detail, "SECRET") == NULL && strstr(err.detail, "/ai") != NULL,
	     "an unknown key's name stays out of the detail");
	T_OK(pol_policy_validate(J("{\"sk_live_SECRET\": 1}"), NULL, &err) == -1 &&
	     strstr(err.detail, "SECRET") == NULL && strstr(err.detail, "the document") != NULL,
	     "...also at the top level");

	/* the list is bounded, the count is not */
	n = (size_t)snprintf(many, sizeof(many), "{");
	for (int i = 0; i < 150; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "%s\"k%d\": 1", i ? "," : "", i);
	snprintf(many + n, sizeof(many) - n, "}");
	T_OK(pol_policy_validate(J(many), &errors, &err) == -1 && json_array_size(errors) == POL_POLICY_MAX_ERRORS,
	     "at most 100 problems are listed");
	T_OK(strstr(err.detail, "150 problems (the first 100 are listed)") != NULL, "the detail has the full count");
	json_decref(errors);

	/* the example document of docs/policies.md */
	good("{\"rate_limit\": {\"window\": \"PT1M\", \"tenant_requests\": 6000, \"client_requests\": 1200},"
	     " \"engine\": {\"max_concurrent_runs\": 20, \"max_queued_runs\": 10000},"
	     " \"egress\": {\"allow_hosts\": [\"api.hubspot.com\", \"*.example.com\"], \"allow_private\": false},"
	     " \"approvals\": {\"default_sla\": \"PT48H\", \"on_timeout\": \"escalate\", \"escalation_role\": \"msp_operator\","
	     " \"rules\": [{\"workflow\": \"billing-*\", \"assignee_role\": \"finance_approver\", \"sla\": \"PT24H\"}]},"
	     " \"ai\": {\"enabled\": false, \"require_human_approval\": true, \"min_confidence\": 0.8,"
	     " \"allowed_tasks\": [\"summarize\", \"classify\", \"extract\", \"recommend\"], \"log_prompts\": false,"
	     " \"max_output_tokens\": 1024},"
	     " \"retention\": {\"runs\": \"P90D\", \"events\": \"P30D\", \"audit\": \"P365D\"}}");
}

static void test_defaults(void)
{
	json_t *d = keep(pol_policy_defaults());

	T_OK(d && validates(d), "the defaults are a valid document");
	T_STREQ(dump(d),
		"{\"rate_limit\":{\"window\":\"PT1M\",\"tenant_requests\":6000,\"client_requests\":1200},"
		"\"engine\":{\"max_concurrent_runs\":20,\"max_queued_runs\":10000},"
		"\"egress\":{\"allow_hosts\":[],\"allow_private\":false},"
		"\"approvals\":{\"default_sla\":\"P2D\",\"on_timeout\":\"escalate\",\"escalation_role\":\"msp_operator\",\"rules\":[]},"
		"\"ai\":{\"enabled\":false,\"require_human_approval\":true,\"min_confidence\":0.80000000000000004,"
		"\"allowed_tasks\":[\"summarize\",\"classify\",\"extract\",\"recommend\"],\"log_prompts\":false,"
		"\"max_output_tokens\":1024},"
		"\"retention\":{\"runs\":\"P90D\",\"events\":\"P30D\",\"audit\":\"P365D\"}}",
		"the defaults, every field present");
	T_OK(json_equal(d, eff(NULL, NULL)), "no documents at all: the defaults");
	T_OK(json_equal(d, eff(NULL, "{}")) && json_equal(d, eff("{}", "{}")), "empty documents: the defaults");
}

static void test_inheritance(void)
{
	json_t *e;
	const char *msp = "{\"rate_limit\": {\"window\": \"PT1M\", \"tenant_requests\": 1000, \"client_requests\": 100},"
		" \"engine\": {\"max_concurrent_runs\": 10, \"max_queued_runs\": 500},"
		" \"egress\": {\"allow_hosts\": [\"api.hubspot.com\", \"*.example.com\"], \"allow_private\": false},"
		" \"approvals\": {\"default_sla\": \"PT24H\", \"rules\": [{\"workflow\": \"a\", \"sla\": \"PT1H\"},"
		" {\"workflow\": \"b\", \"sla\": \"PT2H\"}]},"
		" \"ai\": {\"enabled\": true, \"require_human_approval\": false, \"min_confidence\": 0.7,"
		" \"allowed_tasks\": [\"summarize\", \"classify\"], \"log_prompts\": true, \"max_output_tokens\": 2048},"
		" \"retention\": {\"runs\": \"P60D\", \"events\": \"P10D\", \"audit\": \"P400D\"}}";

	/* no parent: the own document over the defaults, nothing capped */
	e = eff(NULL, "{\"rate_limit\": {\"tenant_requests\": 9000000, \"client_requests\": 9000000},"
		" \"egress\": {\"allow_hosts\": [\"x.example.com\"], \"allow_private\": true},"
		" \"ai\": {\"enabled\": true}, \"retention\": {\"audit\": \"P3650D\"}}");
	T_OK(I(e, "/rate_limit/tenant_requests") == 9000000 && I(e, "/rate_limit/client_requests") == 9000000,
	     "no parent: requests above the defaults stand");
	T_OK(B(e, "/egress/allow_private") == 1 && B(e, "/ai/enabled") == 1, "no parent: grants stand");
	T_STREQ(dump(at(e, "/egress/allow_hosts")), "[\"x.example.com\"]", "no parent: the own allow list");
	T_STREQ(S(e, "/retention/audit"), "P3650D", "no parent: retention may exceed the default");

	/* a parent and no own document: the parent's values */
	e = eff(msp, NULL);
	T_OK(I(e, "/rate_limit/tenant_requests") == 1000 && I(e, "/engine/max_queued_runs") == 500,
	     "a silent child inherits the parent's numbers");
	T_STREQ(S(e, "/approvals/default_sla"), "P1D", "...its durations, canonical");
	T_STREQ(dump(at(e, "/approvals/rules")),
		"[{\"workflow\":\"a\",\"sla\":\"PT1H\"},{\"workflow\":\"b\",\"sla\":\"PT2H\"}]", "...its arrays");
	T_STREQ(dump(at(e, "/egress/allow_hosts")), "[\"api.hubspot.com\",\"*.example.com\"]", "...its allow list");
	T_OK(json_equal(e, eff(msp, "{}")), "an empty own document is the same as none");
	T_OK(json_equal(e, eff(NULL, msp)), "a parent with no own document is the parent's own effective policy");

	/* plain fields: the child wins, in both directions; arrays replace */
	e = eff(msp, "{\"approvals\": {\"default_sla\": \"P30D\", \"on_timeout\": \"reject\","
		" \"escalation_role\": \"client_admin\", \"rules\": [{\"workflow\": \"c\", \"assignee_role\": \"ops\"}]},"
		" \"ai\": {\"log_prompts\": false}}");
	T_STREQ(S(e, "/approvals/default_sla"), "P30D", "the child's longer default_sla stands (not governed)");
	T_STREQ(S(e, "/approvals/on_timeout"), "reject", "on_timeout: the child's");
	T_STREQ(S(e, "/approvals/escalation_role"), "client_admin", "escalation_role: the child's");
	T_STREQ(dump(at(e, "/approvals/rules")), "[{\"workflow\":\"c\",\"assignee_role\":\"ops\"}]",
		"rules: the child's array replaces the parent's");
	T_OK(B(e, "/ai/log_prompts") == 0, "log_prompts: the child's");
	e = eff(msp, "{\"approvals\": {\"rules\": []}}");
	T_STREQ(dump(at(e, "/approvals/rules")), "[]", "an empty array replaces too");

	/* governed numbers: min(parent, child) */
	e = eff(msp, "{\"rate_limit\": {\"tenant_requests\": 5000, \"client_requests\": 2000},"
		" \"engine\": {\"max_concurrent_runs\": 50, \"max_queued_runs\": 100000},"
		" \"ai\": {\"max_output_tokens\": 4096}}");
	T_OK(I(e, "/rate_limit/tenant_requests") == 1000, "tenant_requests capped by the parent");
	T_OK(I(e, "/rate_limit/client_requests") == 100, "client_requests capped by the parent");
	T_OK(I(e, "/engine/max_concurrent_runs") == 10, "max_concurrent_runs capped");
	T_OK(I(e, "/engine/max_queued_runs") == 500, "max_queued_runs capped");
	T_OK(I(e, "/ai/max_output_tokens") == 2048, "max_output_tokens capped");
	e = eff(msp, "{\"rate_limit\": {\"tenant_requests\": 500, \"client_requests\": 50},"
		" \"engine\": {\"max_concurrent_runs\": 2, \"max_queued_runs\": 0}, \"ai\": {\"max_output_tokens\": 16}}");
	T_OK(I(e, "/rate_limit/tenant_requests") == 500 && I(e, "/rate_limit/client_requests") == 50,
	     "a child may ask for fewer requests");
	T_OK(I(e, "/engine/max_concurrent_runs") == 2 && I(e, "/engine/max_queued_runs") == 0 &&
	     I(e, "/ai/max_output_tokens") == 16, "...and lower limits");

	/* a different window: the parent's rate per second times the child's window */
	e = eff(msp, "{\"rate_limit\": {\"window\": \"PT1S\", \"tenant_requests\": 1000, \"client_requests\": 10}}");
	T_OK(I(e, "/rate_limit/tenant_requests") == 16, "1000/min over a 1 s window: at most 16 (rounded down)");
	T_OK(I(e, "/rate_limit/client_requests") == 1, "100/min over 1 s: 1");
	T_STREQ(S(e, "/rate_limit/window"), "PT1S", "the child's window stands");
	e = eff(msp, "{\"rate_limit\": {\"window\": \"PT1H\", \"tenant_requests\": 10000000}}");
	T_OK(I(e, "/rate_limit/tenant_requests") == 60000, "1000/min over an hour: 60000");
	T_OK(I(e, "/rate_limit/client_requests") == 100, "an inherited client_requests stays below the cap (6000)");
	e = eff(msp, "{\"rate_limit\": {\"window\": \"PT30S\"}}");
	T_OK(I(e, "/rate_limit/tenant_requests") == 500 && I(e, "/rate_limit/client_requests") == 50,
	     "a shorter window alone scales the inherited numbers down");
	e = eff("{\"rate_limit\": {\"window\": \"PT1H\", \"tenant_requests\": 1000, \"client_requests\": 10}}",
		"{\"rate_limit\": {\"window\": \"PT1S\", \"tenant_requests\": 5}}");
	T_STREQ(S(e, "/rate_limit/window"), "PT1H", "a window too short for one request at the parent's rate: the parent's");
	T_OK(I(e, "/rate_limit/tenant_requests") == 5 && I(e, "/rate_limit/client_requests") == 5,
	     "...with the child's numbers capped (and client <= tenant)");
	e = eff(NULL, "{\"rate_limit\": {\"tenant_requests\": 100}}");
	T_OK(I(e, "/rate_limit/client_requests") == 100, "an inherited client_requests is lowered to tenant_requests");
	e = eff(NULL, "{\"rate_limit\": {\"client_requests\": 9000}}");
	T_OK(I(e, "/rate_limit/client_requests") == 6000, "...also when only client_requests is set");

	/* egress */
	e = eff(msp, "{\"egress\": {\"allow_private\": true}}");
	T_OK(B(e, "/egress/allow_private") == 0, "allow_private: not if the parent forbids it");
	e = eff("{\"egress\": {\"allow_private\": true}}", "{\"egress\": {\"allow_private\": true}}");
	T_OK(B(e, "/egress/allow_private") == 1, "allow_private: yes if both allow it");
	e = eff("{\"egress\": {\"allow_private\": true}}", "{\"egress\": {\"allow_private\": false}}");
	T_OK(B(e, "/egress/allow_private") == 0, "allow_private: a child may refuse it");
	e = eff(msp, "{\"egress\": {\"allow_hosts\": [\"evil.com\", \"api.hubspot.com\", \"a.example.com\","
		" \"*.b.example.com\", \"example.com\", \"xexample.com\", \"badexample.com\", \"*.example.com\", \"hubspot.com\"]}}");
	T_STREQ(dump(at(e, "/egress/allow_hosts")),
		"[\"api.hubspot.com\",\"a.example.com\",\"*.b.example.com\",\"*.example.com\"]",
		"allow_hosts: the child's entries the parent covers (exactly or by a *. suffix)");
	e = eff("{\"egress\": {\"allow_hosts\": [\"api.hubspot.com\", \"a.example.com\", \"z.other.com\"]}}",
		"{\"egress\": {\"allow_hosts\": [\"*.hubspot.com\", \"*.example.com\"]}}");
	T_STREQ(dump(at(e, "/egress/allow_hosts")), "[\"api.hubspot.com\",\"a.example.com\"]",
		"allow_hosts: a child wildcard keeps the parent's hosts under it");
	e = eff("{\"egress\": {\"allow_hosts\": []}}", "{\"egress\": {\"allow_hosts\": [\"api.hubspot.com\"]}}");
	T_STREQ(dump(at(e, "/egress/allow_hosts")), "[]", "allow_hosts: a parent allowing nothing allows the child nothing");
	e = eff("{\"engine\": {}}", "{\"egress\": {\"allow_hosts\": [\"api.hubspot.com\"]}}");
	T_STREQ(dump(at(e, "/egress/allow_hosts")), "[]", "...and a parent document without a list allows nothing");
	e = eff(msp, "{\"egress\": {\"allow_hosts\": []}}");
	T_STREQ(dump(at(e, "/egress/allow_hosts")), "[]", "a child may give up egress");

	/* ai */
	e = eff("{\"ai\": {\"enabled\": false}}", "{\"ai\": {\"enabled\": true}}");
	T_OK(B(e, "/ai/enabled") == 0, "ai.enabled: not if the parent disables it");
	e = eff(msp, "{\"ai\": {\"enabled\": true}}");
	T_OK(B(e, "/ai/enabled") == 1, "ai.enabled: yes if both enable it");
	e = eff(msp, "{\"ai\": {\"enabled\": false}}");
	T_OK(B(e, "/ai/enabled") == 0, "ai.enabled: a child may disable it");
	e = eff("{\"ai\": {\"require_human_approval\": true}}", "{\"ai\": {\"require_human_approval\": false}}");
	T_OK(B(e, "/ai/require_human_approval") == 1, "require_human_approval: the parent's requirement holds");
	e = eff(msp, "{\"ai\": {\"require_human_approval\": false}}");
	T_OK(B(e, "/ai/require_human_approval") == 0, "require_human_approval: off only if both have it off");
	e = eff(msp, "{\"ai\": {\"require_human_approval\": true}}");
	T_OK(B(e, "/ai/require_human_approval") == 1, "require_human_approval: a child may require it");
	e = eff(msp, "{\"ai\": {\"min_confidence\": 0.5}}");
	T_OK(json_real_value(at(e, "/ai/min_confidence")) == 0.7, "min_confidence: max(parent, child) keeps the parent's");
	e = eff(msp, "{\"ai\": {\"min_confidence\": 0.95}}");
	T_OK(json_real_value(at(e, "/ai/min_confidence")) == 0.95, "min_confidence: a stricter child's");
	e = eff(msp, "{\"ai\": {\"allowed_tasks\": [\"extract\", \"classify\"]}}");
	T_STREQ(dump(at(e, "/ai/allowed_tasks")), "[\"classify\"]", "allowed_tasks: the intersection");
	e = eff(msp, "{\"ai\": {\"allowed_tasks\": []}}");
	T_STREQ(dump(at(e, "/ai/allowed_tasks")), "[]", "allowed_tasks: a child may allow none");

	/* retention: shorten, never lengthen */
	e = eff(msp, "{\"retention\": {\"runs\": \"P7D\", \"events\": \"P365D\", \"audit\": \"P3650D\"}}");
	T_STREQ(S(e, "/retention/runs"), "P7D", "retention: a child may shorten");
	T_STREQ(S(e, "/retention/events"), "P10D", "retention: not lengthen");
	T_STREQ(S(e, "/retention/audit"), "P400D", "retention: the parent's longer-than-default value caps");

	/* invalid fields are skipped, whoever wrote them */
	e = eff(msp, "{\"engine\": {\"max_concurrent_runs\": \"lots\", \"max_queued_runs\": 7}, \"bogus\": 1,"
		" \"rate_limit\": {\"window\": \"P1D\"}, \"egress\": {\"allow_hosts\": [\"api.hubspot.com\", \"1.2.3.4\"]}}");
	T_OK(I(e, "/engine/max_concurrent_runs") == 10 && I(e, "/engine/max_queued_runs") == 7,
	     "an invalid field keeps the inherited value; valid neighbours apply");
	T_STREQ(S(e, "/rate_limit/window"), "PT1M", "an out-of-range window is skipped");
	T_STREQ(dump(at(e, "/egress/allow_hosts")), "[\"api.hubspot.com\",\"*.example.com\"]",
		"an allow list with one bad entry is skipped whole");
	e = eff("[1, 2]", "[]");
	T_OK(json_equal(e, keep(pol_policy_defaults())), "documents that are not objects change nothing");

	/* effective documents are fixed points and chain */
	{
		const char *child = "{\"rate_limit\": {\"window\": \"PT10S\"}, \"ai\": {\"enabled\": true},"
			" \"egress\": {\"allow_hosts\": [\"*.example.com\"]}}";
		json_t *m = eff(msp, NULL);
		char *mtext = json_dumps(m, JSON_COMPACT);

		T_OK(json_equal(eff(NULL, mtext), m), "an effective document read back is itself");
		T_OK(json_equal(eff(mtext, mtext), m), "...and capped by itself, unchanged");
		e = keep(pol_policy_effective(m, J(child)));
		T_OK(e && json_equal(e, eff(msp, child)), "an effective parent caps exactly as its document does");
		free(mtext);
	}
}

static void test_rate_plan(void)
{
	pol_rate_plan_t rp;

	memset(&rp, 0xff, sizeof(rp));
	pol_policy_rate_plan(NULL, &rp);
	T_OK(rp.window_s == 60 && rp.tenant_requests == 6000 && rp.client_requests == 1200, "rate plan of NULL: the defaults");
	pol_policy_rate_plan(eff("{\"rate_limit\": {\"tenant_requests\": 1000, \"client_requests\": 100}}",
				 "{\"rate_limit\": {\"window\": \"PT1H\", \"tenant_requests\": 50000}}"), &rp);
	T_OK(rp.window_s == 3600 && rp.tenant_requests == 50000 && rp.client_requests == 100,
	     "rate plan of an effective document");
	pol_policy_rate_plan(eff(NULL, "{\"rate_limit\": {\"window\": \"PT10S\", \"tenant_requests\": 10000000}}"), &rp);
	T_OK(rp.window_s == 10 && rp.tenant_requests == 10000000 && rp.client_requests == 1200, "rate plan at the top of the range");
	pol_policy_rate_plan(J("{\"rate_limit\": {\"window\": \"PT5S\", \"tenant_requests\": 10, \"client_requests\": 3}}"),
			     &rp);
	T_OK(rp.window_s == 5 && rp.tenant_requests == 10 && rp.client_requests == 3, "rate plan of a partial document");
	pol_policy_rate_plan(J("{\"rate_limit\": {\"window\": \"P1D\", \"tenant_requests\": 10, \"client_requests\": 30}}"),
			     &rp);
	T_OK(rp.window_s == 60 && rp.tenant_requests == 10 && rp.client_requests == 10,
	     "rate plan: an invalid window reads as the default, client <= tenant");
}

int main(void)
{
	test_rate_limit();
	test_engine();
	test_egress();
	test_approvals();
	test_ai();
	test_retention();
	test_structure();
	test_defaults();
	test_inheritance();
	test_rate_plan();
	while (ngarbage)
		json_decref(garbage[--ngarbage]);
	return t_done();
}
