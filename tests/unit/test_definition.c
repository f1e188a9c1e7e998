/* test_definition.c - workflow definitions: a full valid workflow, one broken rule at a time with its
 * exact path, several problems at once in document order, the error cap, the graph reads. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "engine/definition.h"
#include "engine/engine.h"
#include "t.h"

/* Documents are written with ' for " (no test needs a quote inside a string). */
static json_t *J(const char *text)
{
	char buf[16384];
	mf_err_t err;
	json_t *j;
	size_t n = strlen(text);

	if (n >= sizeof(buf)) {
		printf("Bail out! test document too long\n");
		exit(2);
	}
	for (size_t i = 0; i <= n; i++)
		buf[i] = text[i] == '\'' ? '"' : text[i];
	j = mf_json_parse(buf, n, 64, &err);
	if (j == NULL) {
		printf("Bail out! test document does not parse: %s\n%s\n", err.detail, buf);
		exit(2);
	}
	return j;
}

static char *dump(const json_t *j)
{
	static char buf[4][8192];
	static int next;
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	char *out = buf[next++ % 4];

	snprintf(out, sizeof(buf[0]), "%s", s ? s : "(none)");
	free(s);
	return out;
}

static const char *path_of(const json_t *errors, size_t i)
{
	return json_string_value(json_object_get(json_array_get(errors, i), "path"));
}

/* The opportunity-to-project workflow of docs/workflows.md. */
static const char full[] =
	"{'trigger': {'event': 'crm.deal.closed_won', 'when': 'data.deal.amount > 0'},"
	" 'steps': ["
	"  {'id': 'check_margin', 'type': 'decide',"
	"   'cases': [{'when': 'data.deal.margin < 0.2', 'next': 'finance_approval'}],"
	"   'default': 'create_project'},"
	"  {'id': 'finance_approval', 'type': 'approval', 'assignee_role': 'finance_approver',"
	"   'sla': 'PT48H', 'on_timeout': 'escalate', 'escalate_to': 'msp_operator',"
	"   'title': 'Low margin on {{ data.deal.name }}: approve the project?',"
	"   'next': 'create_project', 'next_on_reject': 'notify_rejected'},"
	"  {'id': 'create_project', 'type': 'http', 'connector': 'psa', 'method': 'POST', 'path': '/projects',"
	"   'body': {'name': '{{ data.deal.name }}', 'company_id': '{{ data.deal.company_id }}',"
	"            'budget': '{{ data.deal.amount }}', 'tags': ['onboarding', '{{ tenant.id }}'], 'billable': true},"
	"   'output': {'project_id': 'response.body.id'},"
	"   'retry': {'max_attempts': 5, 'backoff': 'PT10S', 'max_backoff': 'PT5M'}, 'timeout': 'PT30S'},"
	"  {'id': 'billing_schedule', 'type': 'http', 'connector': 'erp', 'method': 'POST',"
	"   'path': '/v2/billing/schedules', 'query': {'project': '{{ steps.create_project.output.project_id }}'},"
	"   'body': {'customer': '{{ data.deal.company_id }}', 'amount': '{{ data.deal.amount }}',"
	"            'installments': 3, 'first_invoice': '{{ now() }}'},"
	"   'retry': {'max_attempts': 8, 'backoff': 'PT30S', 'max_backoff': 'PT1H'}},"
	"  {'id': 'notify', 'type': 'emit', 'event': 'project.created',"
	"   'data': {'project_id': '{{ steps.create_project.output.project_id }}', 'deal': '{{ data.deal.id }}'},"
	"   'next': null},"
	"  {'id': 'notify_rejected', 'type': 'emit', 'event': 'deal.project_rejected',"
	"   'data': {'deal': '{{ data.deal.id }}'}}"
	" ]}";

static int validates(const char *text)
{
	json_t *doc = J(text), *errors = NULL;
	mf_err_t err;
	int rc = eng_def_validate(doc, &errors, &err);

	if (rc != 0)
		printf("#   %s\n#   problems: %s\n", err.detail, dump(errors));
	json_decref(errors);
	json_decref(doc);
	return rc == 0;
}

/* text fails with exactly the listed paths (NULL-terminated), in order. */
static void bad(const char *what, const char *text, ...)
{
	json_t *doc = J(text), *errors = NULL;
	mf_err_t err;
	int rc = eng_def_validate(doc, &errors, &err);
	size_t n = 0;
	bool same = rc == -1 && err.status == 400 && strcmp(err.code, "validation_failed") == 0;
	const char *p;
	va_list ap;

	va_start(ap, text);
	while ((p = va_arg(ap, const char *)) != NULL) {
		const char *got = path_of(errors, n++);

		if (got == NULL || strcmp(got, p) != 0)
			same = false;
	}
	va_end(ap);
	if (json_array_size(errors) != n)
		same = false;
	T_OK(same, what);
	if (!same)
		printf("#   rc %d, errors %s\n", rc, dump(errors));
	json_decref(errors);
	json_decref(doc);
}

/* A one-step workflow around step (a JSON object text). */
static const char *one(const char *step)
{
	static char buf[8][4096];
	static int next;
	char *out = buf[next++ % 8];

	snprintf(out, sizeof(buf[0]), "{'trigger': {'event': 'a.b'}, 'steps': [%s]}", step);
	return out;
}

static void test_valid(void)
{
	T_OK(validates(full), "the opportunity-to-project workflow validates");
	T_OK(validates(one("{'id': 'x', 'type': 'wait', 'duration': 'P2D'}")), "a wait for a duration");
	T_OK(validates(one("{'id': 'x', 'type': 'wait', 'event': 'psa.ticket.closed', 'match': 'data.id == 1',"
			   " 'timeout': 'P7D'}")), "a wait for an event with match and timeout");
	T_OK(validates(one("{'id': 'x', 'type': 'transform', 'output': {'total': 'input.a + input.b'}}")),
	     "a transform");
	T_OK(validates(one("{'id': 'x', 'type': 'ai', 'connector': 'openai', 'task': 'summarize',"
			   " 'prompt': 'Summarise {{ data.ticket.body }}', 'min_confidence': 0.7,"
			   " 'require_approval': true, 'assignee_role': 'service_desk'}")), "an ai step");
	T_OK(validates(one("{'id': 'x', 'type': 'approval', 'assignee_role': 'ops', 'sla': 'PT1M',"
			   " 'on_timeout': 'reject', 'title': 'ok?'}")), "an approval rejecting on timeout, no escalate_to");
	T_OK(validates("{'trigger': {'event': 'a.b'}, 'start': 'b', 'steps': ["
		       "{'id': 'a', 'type': 'wait', 'event': 'x.y', 'next': 'c'},"
		       "{'id': 'b', 'type': 'transform', 'output': {'n': '1'}},"
		       "{'id': 'c', 'type': 'decide', 'cases': [{'when': 'true', 'next': 'a'}], 'default': null}]}"),
	     "start names a later step; a loop through a wait step is allowed");
	T_OK(validates("{'trigger': {'event': 'a.b'}, 'steps': ["
		       "{'id': 'ask', 'type': 'approval', 'assignee_role': 'ops', 'sla': 'P1D', 'on_timeout': 'reject',"
		       " 'title': 't', 'next_on_reject': 'fix'},"
		       "{'id': 'fix', 'type': 'transform', 'output': {'n': '1'}, 'next': 'ask'}]}"),
	     "a loop through an approval step is allowed");
}

static void test_shape(void)
{
	bad("not an object: one problem at the root", "[]", "", NULL);
	bad("trigger and steps missing: two problems at the root", "{}", "", "", NULL);
	bad("unknown top-level field", "{'trigger': {'event': 'a.b'}, 'name': 'x',"
	    " 'steps': [{'id': 'x', 'type': 'wait', 'duration': 'PT1S'}]}", "/name", NULL);
	bad("input_schema is not part of the format", "{'trigger': {'event': 'a.b'}, 'input_schema': {},"
	    " 'steps': [{'id': 'x', 'type': 'wait', 'duration': 'PT1S'}]}", "/input_schema", NULL);
	bad("trigger event is not a dotted name", "{'trigger': {'event': 'Deal Closed'},"
	    " 'steps': [{'id': 'x', 'type': 'wait', 'duration': 'PT1S'}]}", "/trigger/event", NULL);
	bad("trigger without event, with an unknown field", "{'trigger': {'on': 'a.b'},"
	    " 'steps': [{'id': 'x', 'type': 'wait', 'duration': 'PT1S'}]}", "/trigger", "/trigger/on", NULL);
	bad("no steps", "{'trigger': {'event': 'a.b'}, 'steps': []}", "/steps", NULL);
	bad("step id breaks the pattern", one("{'id': 'Create-Project', 'type': 'wait', 'duration': 'PT1S'}"),
	    "/steps/0/id", NULL);
	bad("step without id and type", one("{'next': null}"), "/steps/0", "/steps/0", NULL);
	bad("unknown step type", one("{'id': 'x', 'type': 'sleep', 'seconds': 3}"), "/steps/0/type", NULL);
	bad("unknown field of a step type", one("{'id': 'x', 'type': 'http', 'connector': 'psa', 'method': 'GET',"
	    " 'path': '/a', 'verb': 'GET'}"), "/steps/0/verb", NULL);
	bad("http missing its required fields, each at the step", one("{'id': 'x', 'type': 'http'}"),
	    "/steps/0", "/steps/0", "/steps/0", NULL);
	bad("http method and path", one("{'id': 'x', 'type': 'http', 'connector': 'PSA!', 'method': 'get',"
	    " 'path': 'projects'}"), "/steps/0/connector", "/steps/0/method", "/steps/0/path", NULL);
	bad("decide takes no next", one("{'id': 'x', 'type': 'decide', 'cases': [{'when': 'true', 'next': null}],"
	    " 'default': null, 'next': null}"), "/steps/0/next", NULL);
	bad("decide case without next and with an unknown field",
	    one("{'id': 'x', 'type': 'decide', 'cases': [{'when': 'true', 'goto': 'x'}], 'default': null}"),
	    "/steps/0/cases/0", "/steps/0/cases/0/goto", NULL);
	bad("approval: escalate needs escalate_to", one("{'id': 'x', 'type': 'approval', 'assignee_role': 'ops',"
	    " 'sla': 'P1D', 'on_timeout': 'escalate', 'title': 't'}"), "/steps/0", NULL);
	bad("approval: escalate_to only with escalate", one("{'id': 'x', 'type': 'approval', 'assignee_role': 'ops',"
	    " 'sla': 'P1D', 'on_timeout': 'reject', 'escalate_to': 'boss', 'title': 't'}"),
	    "/steps/0/escalate_to", NULL);
	bad("approval: bad role, sla out of range, bad on_timeout",
	    one("{'id': 'x', 'type': 'approval', 'assignee_role': 'Ops', 'sla': 'P400D', 'on_timeout': 'ignore',"
		" 'title': 't'}"), "/steps/0/assignee_role", "/steps/0/sla", "/steps/0/on_timeout", NULL);
	bad("wait with both event and duration", one("{'id': 'x', 'type': 'wait', 'event': 'a.b', 'duration': 'PT1M'}"),
	    "/steps/0", NULL);
	bad("wait with neither event nor duration", one("{'id': 'x', 'type': 'wait'}"), "/steps/0", NULL);
	bad("wait: match only with event", one("{'id': 'x', 'type': 'wait', 'duration': 'PT1M', 'match': 'true'}"),
	    "/steps/0/match", NULL);
	bad("emit needs a dotted event name", one("{'id': 'x', 'type': 'emit', 'event': 'done'}"),
	    "/steps/0/event", NULL);
	bad("transform output names and emptiness", one("{'id': 'x', 'type': 'transform', 'output': {'Total': '1'}}"),
	    "/steps/0/output/Total", NULL);
	bad("transform output must not be empty", one("{'id': 'x', 'type': 'transform', 'output': {}}"),
	    "/steps/0/output", NULL);
	bad("ai: task, confidence, approval flag", one("{'id': 'x', 'type': 'ai', 'connector': 'llm', 'task': 'write',"
	    " 'prompt': 'p', 'min_confidence': 1.5, 'require_approval': 'yes'}"),
	    "/steps/0/task", "/steps/0/min_confidence", "/steps/0/require_approval", NULL);
}

static void test_durations(void)
{
	bad("retry backoff is not a duration", one("{'id': 'x', 'type': 'wait', 'duration': 'PT1S',"
	    " 'retry': {'max_attempts': 3, 'backoff': '10s', 'max_backoff': 'PT1M'}}"), "/steps/0/retry/backoff", NULL);
	bad("retry max_backoff shorter than backoff", one("{'id': 'x', 'type': 'wait', 'duration': 'PT1S',"
	    " 'retry': {'max_attempts': 3, 'backoff': 'PT1M', 'max_backoff': 'PT30S'}}"),
	    "/steps/0/retry/max_backoff", NULL);
	bad("max_backoff shorter than backoff, written first", one("{'id': 'x', 'type': 'wait', 'duration': 'PT1S',"
	    " 'retry': {'max_backoff': 'PT30S', 'max_attempts': 3, 'backoff': 'PT1M'}}"),
	    "/steps/0/retry/max_backoff", NULL);
	bad("retry attempts out of range, missing field, unknown field", one("{'id': 'x', 'type': 'wait',"
	    " 'duration': 'PT1S', 'retry': {'max_attempts': 21, 'backoff': 'PT1S', 'jitter': true}}"),
	    "/steps/0/retry", "/steps/0/retry/max_attempts", "/steps/0/retry/jitter", NULL);
	bad("timeout in months is refused", one("{'id': 'x', 'type': 'wait', 'duration': 'PT1S', 'timeout': 'P1M'}"),
	    "/steps/0/timeout", NULL);
	bad("wait duration over a year", one("{'id': 'x', 'type': 'wait', 'duration': 'P366D'}"),
	    "/steps/0/duration", NULL);
}

static void test_expressions(void)
{
	bad("trigger when does not parse", "{'trigger': {'event': 'a.b', 'when': 'data.x >'},"
	    " 'steps': [{'id': 'x', 'type': 'wait', 'duration': 'PT1S'}]}", "/trigger/when", NULL);
	bad("an expression must be a string", "{'trigger': {'event': 'a.b', 'when': true},"
	    " 'steps': [{'id': 'x', 'type': 'wait', 'duration': 'PT1S'}]}", "/trigger/when", NULL);
	bad("decide case when does not parse", one("{'id': 'x', 'type': 'decide',"
	    " 'cases': [{'when': 'true', 'next': null}, {'when': '(a', 'next': null}], 'default': null}"),
	    "/steps/0/cases/1/when", NULL);
	bad("output expression does not parse", one("{'id': 'x', 'type': 'http', 'connector': 'psa', 'method': 'GET',"
	    " 'path': '/a', 'output': {'id': 'response.body.'}}"), "/steps/0/output/id", NULL);
	bad("templates: title, path, query", one("{'id': 'x', 'type': 'http', 'connector': 'psa', 'method': 'GET',"
	    " 'path': '/a/{{ data.id', 'query': {'q': '{{ 1 + }}'}}"), "/steps/0/path", "/steps/0/query/q", NULL);
	bad("templates deep in body, keys escaped", one("{'id': 'x', 'type': 'http', 'connector': 'psa', 'method': 'POST',"
	    " 'path': '/a', 'body': {'items': [{'name': 'ok'}, {'name': '{{ oops'}], 'a/b~c': '{{ }}', 'n': 1}}"),
	    "/steps/0/body/items/1/name", "/steps/0/body/a~1b~0c", NULL);
	bad("templates in emit data", one("{'id': 'x', 'type': 'emit', 'event': 'a.b', 'data': ['{{ x', {'k': '{{'}]}"),
	    "/steps/0/data/0", "/steps/0/data/1/k", NULL);
	bad("ai prompt template", one("{'id': 'x', 'type': 'ai', 'connector': 'llm', 'task': 'classify',"
	    " 'labels': ['a', 'b'], 'prompt': 'Classify {{ data.text'}"), "/steps/0/prompt", NULL);
	bad("approval title template", one("{'id': 'x', 'type': 'approval', 'assignee_role': 'ops', 'sla': 'P1D',"
	    " 'on_timeout': 'reject', 'title': '{{ }}'}"), "/steps/0/title", NULL);
	bad("wait match expression", one("{'id': 'x', 'type': 'wait', 'event': 'a.b', 'match': '== 1'}"),
	    "/steps/0/match", NULL);
}

static void test_graph(void)
{
	bad("duplicate ids: the later one", "{'trigger': {'event': 'a.b'}, 'steps': ["
	    "{'id': 'a', 'type': 'wait', 'duration': 'PT1S'}, {'id': 'a', 'type': 'wait', 'duration': 'PT1S'}]}",
	    "/steps/1/id", NULL);
	bad("dangling next, case next, default, next_on_reject, start",
	    "{'trigger': {'event': 'a.b'}, 'start': 'nowhere', 'steps': ["
	    "{'id': 'a', 'type': 'decide', 'cases': [{'when': 'true', 'next': 'b1'}], 'default': 'b2'},"
	    "{'id': 'b', 'type': 'approval', 'assignee_role': 'ops', 'sla': 'P1D', 'on_timeout': 'reject',"
	    " 'title': 't', 'next_on_reject': 'b3', 'next': 'b4'}]}",
	    "/start", "/steps/0/cases/0/next", "/steps/0/default", "/steps/1/next_on_reject", "/steps/1/next", NULL);
	bad("start must be an id, not null", "{'trigger': {'event': 'a.b'}, 'start': null,"
	    " 'steps': [{'id': 'a', 'type': 'wait', 'duration': 'PT1S'}]}", "/start", NULL);
	bad("a step after an end is unreachable", "{'trigger': {'event': 'a.b'}, 'steps': ["
	    "{'id': 'a', 'type': 'wait', 'duration': 'PT1S', 'next': null},"
	    "{'id': 'b', 'type': 'wait', 'duration': 'PT1S'}, {'id': 'c', 'type': 'wait', 'duration': 'PT1S'}]}",
	    "/steps/1", "/steps/2", NULL);
	bad("steps before a later start are unreachable", "{'trigger': {'event': 'a.b'}, 'start': 'b', 'steps': ["
	    "{'id': 'a', 'type': 'wait', 'duration': 'PT1S'}, {'id': 'b', 'type': 'wait', 'duration': 'PT1S'}]}",
	    "/steps/0", NULL);
	bad("a loop of decide and transform, at the step that closes it", "{'trigger': {'event': 'a.b'}, 'steps': ["
	    "{'id': 'a', 'type': 'decide', 'cases': [{'when': 'true', 'next': 'b'}], 'default': null},"
	    "{'id': 'b', 'type': 'transform', 'output': {'n': '1'}, 'next': 'a'}]}", "/steps/1", NULL);
	bad("a step that names itself", one("{'id': 'x', 'type': 'emit', 'event': 'a.b', 'next': 'x'}"),
	    "/steps/0", NULL);
	bad("two separate loops, each reported once", "{'trigger': {'event': 'a.b'}, 'steps': ["
	    "{'id': 'a', 'type': 'decide', 'cases': [{'when': 'true', 'next': 'b'}], 'default': 'c'},"
	    "{'id': 'b', 'type': 'transform', 'output': {'n': '1'}, 'next': 'a'},"
	    "{'id': 'c', 'type': 'http', 'connector': 'p', 'method': 'GET', 'path': '/', 'next': 'd'},"
	    "{'id': 'd', 'type': 'decide', 'cases': [{'when': 'true', 'next': 'c'}], 'default': null}]}",
	    "/steps/1", "/steps/3", NULL);
}

static void test_many(void)
{
	char big[16384];
	size_t o = 0;
	json_t *doc, *errors = NULL;
	mf_err_t err;
	int rc;

	bad("several problems, all listed in document order",
	    "{'trigger': {'event': 'X', 'when': '1 +'}, 'steps': ["
	    "{'id': 'a', 'type': 'http', 'connector': 'psa', 'method': 'GET', 'path': '/x', 'next': 'zz'},"
	    "{'id': 'a', 'type': 'emit', 'event': 'a.b', 'colour': 'red'},"
	    "{'id': 'c', 'type': 'wait', 'duration': 'forever'}], 'extra': 1}",
	    "/trigger/event", "/trigger/when", "/steps/0/next", "/steps/1", "/steps/1/id", "/steps/1/colour",
	    "/steps/2", "/steps/2/duration", "/extra", NULL);

	/* 150 unknown fields: 100 listed, the count exact */
	o += (size_t)snprintf(big + o, sizeof(big) - o, "{'trigger': {'event': 'a.b'}, 'steps': "
			      "[{'id': 'x', 'type': 'wait', 'duration': 'PT1S'}]");
	for (int i = 0; i < 150; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, ", 'secret_%d': 1", i);
	snprintf(big + o, sizeof(big) - o, "}");
	doc = J(big);
	rc = eng_def_validate(doc, &errors, &err);
	T_OK(rc == -1 && json_array_size(errors) == ENG_DEF_MAX_ERRORS, "at most 100 problems are listed");
	T_OK(strstr(err.detail, "150 problems") != NULL, "the detail counts every problem");
	T_OK(strstr(err.detail, "secret_") == NULL, "the detail does not repeat a key the client chose");
	T_STREQ(path_of(errors, 0), "/secret_0", "the first listed problem is the first in the document");
	json_decref(errors);
	json_decref(doc);

	/* messages never quote input values */
	doc = J("{'trigger': {'event': 'QQQ', 'when': 'QQQ +'}, 'steps': [{'id': 'QQQ', 'type': 'QQQ'},"
		"{'id': 'b', 'type': 'http', 'connector': 'QQQ!', 'method': 'QQQ', 'path': 'QQQ', 'body': '{{ QQQ'}]}");
	rc = eng_def_validate(doc, &errors, &err);
	{
		char *all = json_dumps(errors, JSON_COMPACT);
		const char *m;
		bool quoted = false;

		for (size_t i = 0; i < json_array_size(errors); i++)
			if ((m = json_string_value(json_object_get(json_array_get(errors, i), "message"))) && strstr(m, "QQQ"))
				quoted = true;
		T_OK(rc == -1 && json_array_size(errors) >= 7 && !quoted && strstr(err.detail, "QQQ") == NULL,
		     "no message and not the detail quote an input value");
		if (quoted)
			printf("#   %s\n", all);
		free(all);
	}
	json_decref(errors);
	json_decref(doc);

	T_OK(eng_def_validate(NULL, NULL, &err) == -1 && err.status == 400, "NULL is one invalid document");

	doc = J(one("{'id': 'x', 'type': 'sleep'}"));
	T_OK(eng_def_validate(doc, NULL, &err) == -1, "without an error list the answer is the same");
	T_STREQ(err.detail, "the workflow definition has 1 problem: /steps/0/type: must be one of http, approval, "
		"decide, wait, emit, transform, ai, message", "the detail: the count, the path and the message");
	json_decref(doc);
	doc = J(one("{'id': 'x', 'type': 'emit', 'event': 'a.b', 'data': {'customer_name': '{{'}}"));
	T_OK(eng_def_validate(doc, NULL, &err) == -1 && strstr(err.detail, "/steps/0/data: invalid template") &&
	     !strstr(err.detail, "customer_name"), "the detail's path stops before a key the client chose");
	json_decref(doc);
}

static void test_reads(void)
{
	json_t *doc = J(full);
	int succ[ENG_DEF_MAX_SUCC];
	size_t n;

	T_OK(eng_def_step_count(doc) == 6, "six steps");
	T_OK(eng_def_start(doc) == 0, "the start defaults to the first step");
	T_OK(eng_def_step_index(doc, "create_project") == 2 && eng_def_step_index(doc, "nope") == -1,
	     "steps are found by id");
	n = eng_def_successors(doc, 0, succ, ENG_DEF_MAX_SUCC);
	T_OK(n == 2 && succ[0] == 1 && succ[1] == 2, "decide: its cases, then default");
	n = eng_def_successors(doc, 1, succ, ENG_DEF_MAX_SUCC);
	T_OK(n == 2 && succ[0] == 2 && succ[1] == 5, "approval: next, then next_on_reject");
	n = eng_def_successors(doc, 2, succ, ENG_DEF_MAX_SUCC);
	T_OK(n == 1 && succ[0] == 3, "no next: the following step");
	n = eng_def_successors(doc, 4, succ, ENG_DEF_MAX_SUCC);
	T_OK(n == 1 && succ[0] == ENG_DEF_END, "next null: the end");
	n = eng_def_successors(doc, 5, succ, ENG_DEF_MAX_SUCC);
	T_OK(n == 1 && succ[0] == ENG_DEF_END, "the last step without next: the end");
	T_OK(eng_def_successors(doc, 0, succ, 1) == 1 && eng_def_successors(doc, 99, succ, 4) == 0,
	     "max is respected; no step, no successors");
	json_decref(doc);
}

/* "params": any object up to ENG_DEF_MAX_PARAMS; eng_run_entry puts it into the run's context. */
static void test_params(void)
{
	json_t *def, *entry, *big;
	char *text;

	T_OK(validates("{'trigger': {'event': 'a.b', 'when': 'data.amount > params.threshold'}, 'params':"
		       " {'threshold': 10, 'url': 'https://x.example', 'nested': {'a': [1, 2]}}, 'steps': ["
		       "{'id': 'x', 'type': 'transform', 'output': {'t': 'params.threshold'}}]}"),
	     "params: an object, read by expressions");
	T_OK(validates("{'trigger': {'event': 'a.b'}, 'params': {}, 'steps': ["
		       "{'id': 'x', 'type': 'transform', 'output': {'t': '1'}}]}"), "params: an empty object");
	bad("params not an object", "{'trigger': {'event': 'a.b'}, 'params': [1], 'steps': ["
	    "{'id': 'x', 'type': 'transform', 'output': {'t': '1'}}]}", "/params", NULL);
	bad("params a string", "{'trigger': {'event': 'a.b'}, 'params': 'x', 'steps': ["
	    "{'id': 'x', 'type': 'transform', 'output': {'t': '1'}}]}", "/params", NULL);
	def = J("{'trigger': {'event': 'a.b'}, 'params': {}, 'steps': ["
		"{'id': 'x', 'type': 'transform', 'output': {'t': '1'}}]}");
	big = json_object_get(def, "params");
	text = calloc(1, ENG_DEF_MAX_PARAMS + 1);
	memset(text, 'a', ENG_DEF_MAX_PARAMS);
	json_object_set_new(big, "s", json_string(text));
	{
		json_t *errors = NULL;
		mf_err_t err;

		T_OK(eng_def_validate(def, &errors, &err) == -1 && json_array_size(errors) == 1 &&
		     strcmp(path_of(errors, 0), "/params") == 0, "params over 64 KiB: one problem at /params");
		json_decref(errors);
		json_object_set_new(big, "s", json_string("small"));
		T_OK(eng_def_validate(def, &errors, &err) == 0, "params under 64 KiB validates");
	}
	free(text);
	entry = eng_run_entry("w", 3, def, NULL, "e1", "a.b", NULL);
	T_STREQ(dump(json_object_get(json_object_get(entry, "ctx"), "params")), "{\"s\":\"small\"}",
		"eng_run_entry: the run context holds the definition's params");
	T_OK(json_object_get(entry, "version") && json_integer_value(json_object_get(entry, "version")) == 3,
	     "eng_run_entry: the version");
	json_decref(entry);
	json_object_del(def, "params");
	entry = eng_run_entry("w", 1, def, NULL, NULL, NULL, NULL);
	T_STREQ(dump(json_object_get(json_object_get(entry, "ctx"), "params")), "{}",
		"eng_run_entry: no params in the definition, {} in the context");
	json_decref(entry);
	json_decref(def);
}

static void test_ai_and_messages(void)
{
	T_OK(validates(one("{'id': 'x', 'type': 'ai', 'connector': 'llm', 'task': 'classify', 'prompt': 'p',"
			   " 'labels': ['standard', 'normal', 'emergency'], 'model': 'm', 'sla': 'PT4H',"
			   " 'next_on_reject': null, 'redact': ['data.contact.email']}")), "classify with labels, model, sla, redact");
	bad("redact: expressions", one("{'id': 'x', 'type': 'ai', 'connector': 'llm', 'task': 'summarize', 'prompt': 'p',"
	    " 'redact': ['data.a', '1 +']}"), "/steps/0/redact/1", NULL);
	T_OK(validates(one("{'id': 'x', 'type': 'ai', 'connector': 'llm', 'task': 'extract', 'prompt': 'p',"
			   " 'fields': {'due': 'string', 'hours': 'number', 'seats': 'integer', 'urgent': 'boolean'}}")),
	     "extract with typed fields");
	T_OK(validates(one("{'id': 'x', 'type': 'ai', 'connector': 'llm', 'task': 'recommend', 'prompt': 'p',"
			   " 'options': 'data.plans'}")), "recommend with an options expression");
	bad("each task's own field is required", "{'trigger': {'event': 'a.b'}, 'steps': ["
	    "{'id': 'a', 'type': 'ai', 'connector': 'llm', 'task': 'classify', 'prompt': 'p'},"
	    "{'id': 'b', 'type': 'ai', 'connector': 'llm', 'task': 'extract', 'prompt': 'p'},"
	    "{'id': 'c', 'type': 'ai', 'connector': 'llm', 'task': 'recommend', 'prompt': 'p'}]}",
	    "/steps/0", "/steps/1", "/steps/2", NULL);
	bad("task fields only with their task, and well formed", "{'trigger': {'event': 'a.b'}, 'steps': ["
	    "{'id': 'a', 'type': 'ai', 'connector': 'llm', 'task': 'summarize', 'prompt': 'p', 'labels': ['x', 'y']},"
	    "{'id': 'b', 'type': 'ai', 'connector': 'llm', 'task': 'classify', 'prompt': 'p', 'labels': ['x', 'x', 7]},"
	    "{'id': 'c', 'type': 'ai', 'connector': 'llm', 'task': 'extract', 'prompt': 'p',"
	    " 'fields': {'Due': 'string', 'n': 'float'}},"
	    "{'id': 'd', 'type': 'ai', 'connector': 'llm', 'task': 'recommend', 'prompt': 'p', 'options': '1 +'}]}",
	    "/steps/0/labels", "/steps/1/labels/1", "/steps/1/labels/2", "/steps/2/fields/Due", "/steps/2/fields/n",
	    "/steps/3/options", NULL);
	bad("a single label", one("{'id': 'x', 'type': 'ai', 'connector': 'llm', 'task': 'classify', 'prompt': 'p',"
	    " 'labels': ['only']}"), "/steps/0/labels", NULL);
	{
		json_t *def = J("{'trigger': {'event': 'a.b'}, 'steps': [{'id': 'x', 'type': 'ai', 'connector': 'llm',"
				" 'task': 'summarize', 'prompt': 'p', 'next': 'y', 'next_on_reject': 'z'},"
				"{'id': 'y', 'type': 'transform', 'output': {'n': '1'}, 'next': null},"
				"{'id': 'z', 'type': 'transform', 'output': {'n': '2'}}]}");
		int succ[ENG_DEF_MAX_SUCC];

		T_OK(eng_def_successors(def, 0, succ, ENG_DEF_MAX_SUCC) == 2 && succ[0] == 1 && succ[1] == 2,
		     "an ai step goes to next, or to next_on_reject when a reviewer rejects");
		json_decref(def);
	}

	T_OK(validates("{'trigger': {'event': 'a.b'}, 'messages': {'welcome': 'Hi from {{ brand.display_name }}"
		       "{{# brand.support_email }} ({{ brand.support_email }}){{/ brand.support_email }}',"
		       " 'kickoff.done': 'ok'}, 'steps': [{'id': 'm', 'type': 'message', 'message': 'welcome'}]}"),
	     "messages and a message step");
	bad("a message step names a message", "{'trigger': {'event': 'a.b'}, 'messages': {'a': 'x'}, 'steps': ["
	    "{'id': 'm', 'type': 'message', 'message': 'b'}, {'id': 'n', 'type': 'message'}]}",
	    "/steps/0/message", "/steps/1", NULL);
	bad("message names and templates", "{'trigger': {'event': 'a.b'}, 'messages': {'Bad': 'x', 'ok': '{{# a }}',"
	    " 'n': 5}, 'steps': [{'id': 'x', 'type': 'transform', 'output': {'t': '1'}}]}",
	    "/messages/Bad", "/messages/ok", "/messages/n", NULL);
	T_OK(eng_def_message_name_ok("kickoff.email_v2") && !eng_def_message_name_ok(".x") &&
	     !eng_def_message_name_ok("") && !eng_def_message_name_ok("A"), "message names");
}

static void test_forms_and_milestones(void)
{
	json_t *def, *specs;

	T_OK(validates("{'trigger': {'event': 'portal.request.change'}, 'request': {'title': 'Change', 'description': 'd',"
		       " 'fields': [{'name': 'summary', 'type': 'string', 'required': true, 'title': 'Summary'},"
		       " {'name': 'cost', 'type': 'integer', 'minimum': 0, 'default': 0}]},"
		       " 'steps': [{'id': 'a', 'type': 'transform', 'milestone': 'Logged', 'output': {'x': '1'}}]}"),
	     "a request form and a milestone");
	bad("form fields: names, duplicates, reserved names, specs",
	    "{'trigger': {'event': 'portal.request.x'}, 'request': {'fields': [{'name': 'Bad', 'type': 'string'},"
	    " {'name': 'a', 'type': 'string'}, {'name': 'a', 'type': 'string'}, {'name': 'requester', 'type': 'string'},"
	    " {'type': 'string'}, {'name': 'b', 'type': 'integer', 'pattern': 'x', 'colour': 1}, 7], 'extra': 1},"
	    " 'steps': [{'id': 'a', 'type': 'transform', 'output': {'x': '1'}}]}",
	    "/request", "/request/fields/0/name", "/request/fields/2/name", "/request/fields/3/name", "/request/fields/4",
	    "/request/fields/5/colour", "/request/fields/5/pattern", "/request/fields/6", "/request/extra", NULL);
	bad("a form needs a portal trigger; a milestone is a short title",
	    "{'trigger': {'event': 'crm.deal.won'}, 'request': {'title': 'x', 'fields': []},"
	    " 'steps': [{'id': 'a', 'type': 'transform', 'milestone': '', 'output': {'x': '1'}}]}",
	    "/request", "/steps/0/milestone", NULL);

	/* a type's form: the union of its workflows' fields, the first name wins */
	specs = json_object();
	def = J("{'request': {'fields': [{'name': 'a', 'type': 'string'}, {'name': 'b', 'type': 'integer'}]}}");
	T_OK(eng_def_form_specs(specs, def) == 0, "first form");
	json_decref(def);
	def = J("{'request': {'fields': [{'name': 'b', 'type': 'string'}, {'name': 'c', 'type': 'boolean'}]}}");
	T_OK(eng_def_form_specs(specs, def) == 0 && json_object_size(specs) == 3 &&
	     strcmp(json_string_value(json_object_get(json_object_get(specs, "b"), "type")), "integer") == 0 &&
	     !json_object_get(json_object_get(specs, "a"), "name"),
	     "the union of two forms, each spec without its name");
	json_decref(def);
	json_decref(specs);
}

int main(void)
{
	test_valid();
	test_shape();
	test_durations();
	test_expressions();
	test_graph();
	test_many();
	test_reads();
	test_params();
	test_ai_and_messages();
	test_forms_and_milestones();
	return t_done();
}
