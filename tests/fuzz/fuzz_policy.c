/*
 * fuzz_policy.c - policy documents: validation never crashes and answers
 * consistently; for a valid document, the effective policy under a fixed
 * parent validates, respects every cap of docs/policies.md and is a fixed
 * point; and any object, valid or not, merges into a valid document whether
 * it plays the child or the parent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/duration.h"
#include "core/json.h"
#include "policies/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char parent_text[] =
	"{\"rate_limit\": {\"window\": \"PT10S\", \"tenant_requests\": 700, \"client_requests\": 70},"
	" \"engine\": {\"max_concurrent_runs\": 5, \"max_queued_runs\": 50},"
	" \"egress\": {\"allow_hosts\": [\"api.hubspot.com\", \"*.example.com\"], \"allow_private\": false},"
	" \"ai\": {\"enabled\": true, \"require_human_approval\": true, \"min_confidence\": 0.6,"
	" \"allowed_tasks\": [\"classify\", \"extract\"], \"max_output_tokens\": 512},"
	" \"retention\": {\"runs\": \"P20D\", \"events\": \"P5D\", \"audit\": \"P100D\"}}";

static const char child_text[] =
	"{\"rate_limit\": {\"window\": \"PT1H\", \"tenant_requests\": 10000000},"
	" \"egress\": {\"allow_hosts\": [\"*.example.com\", \"a.b.example.com\"], \"allow_private\": true},"
	" \"ai\": {\"enabled\": true, \"require_human_approval\": false, \"min_confidence\": 0},"
	" \"retention\": {\"audit\": \"P3650D\"}}";

static json_t *get(const json_t *doc, const char *section, const char *field)
{
	return json_object_get(json_object_get(doc, section), field);
}

static long long num(const json_t *doc, const char *section, const char *field)
{
	json_t *v = get(doc, section, field);

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_boolean(v))
		return json_is_true(v);
	abort();	/* an effective document is complete and typed */
}

static long long secs(const json_t *doc, const char *section, const char *field)
{
	long long s;

	if (mf_duration_parse(json_string_value(get(doc, section, field)), &s, NULL) != 0)
		abort();
	return s;
}

static int valid(const json_t *doc)
{
	return pol_policy_validate(doc, NULL, NULL) == 0;
}

/* Is host admitted by some entry of list?  Written independently of
 * policy.c: exact match, or "*.B" admitting names (and wildcards) under B. */
static int admitted(const json_t *list, const char *host)
{
	const char *h = strncmp(host, "*.", 2) == 0 ? host + 2 : host;

	for (size_t i = 0; i < json_array_size(list); i++) {
		const char *p = json_string_value(json_array_get(list, i));
		size_t hl = strlen(h), bl;

		if (strcmp(p, host) == 0)
			return 1;
		if (strncmp(p, "*.", 2) != 0)
			continue;
		bl = strlen(p + 2);
		if (hl > bl && h[hl - bl - 1] == '.' && strcmp(h + hl - bl, p + 2) == 0)
			return 1;
	}
	return 0;
}

static int task_in(const json_t *tasks, const char *t)
{
	for (size_t i = 0; i < json_array_size(tasks); i++)
		if (strcmp(json_string_value(json_array_get(tasks, i)), t) == 0)
			return 1;
	return 0;
}

/* Every governed field of child e stays within parent p (both effective). */
static void check_caps(const json_t *p, const json_t *e)
{
	static const char *const lower[][2] = {
		{"engine", "max_concurrent_runs"}, {"engine", "max_queued_runs"},
		{"egress", "allow_private"}, {"ai", "enabled"}, {"ai", "max_output_tokens"},
	};
	static const char *const shorter[] = {"runs", "events", "audit"};
	pol_rate_plan_t rp, rc;
	json_t *hosts = get(e, "egress", "allow_hosts"), *tasks = get(e, "ai", "allowed_tasks");

	pol_policy_rate_plan(p, &rp);
	pol_policy_rate_plan(e, &rc);
	/* rates per second, cross-multiplied to stay in integers */
	if ((long long)rc.tenant_requests * rp.window_s > (long long)rp.tenant_requests * rc.window_s ||
	    (long long)rc.client_requests * rp.window_s > (long long)rp.client_requests * rc.window_s ||
	    rc.client_requests > rc.tenant_requests)
		abort();
	for (size_t i = 0; i < sizeof(lower) / sizeof(lower[0]); i++)
		if (num(e, lower[i][0], lower[i][1]) > num(p, lower[i][0], lower[i][1]))
			abort();
	if (num(e, "ai", "require_human_approval") < num(p, "ai", "require_human_approval") ||
	    json_number_value(get(e, "ai", "min_confidence")) < json_number_value(get(p, "ai", "min_confidence")))
		abort();
	for (size_t i = 0; i < sizeof(shorter) / sizeof(shorter[0]); i++)
		if (secs(e, "retention", shorter[i]) > secs(p, "retention", shorter[i]))
			abort();
	for (size_t i = 0; i < json_array_size(hosts); i++)
		if (!admitted(get(p, "egress", "allow_hosts"), json_string_value(json_array_get(hosts, i))))
			abort();
	for (size_t i = 0; i < json_array_size(tasks); i++)
		if (!task_in(get(p, "ai", "allowed_tasks"), json_string_value(json_array_get(tasks, i))))
			abort();
}

/* An effective document must validate and read back as itself. */
static void check_effective(json_t *e)
{
	json_t *again;

	if (e == NULL || !valid(e))
		abort();
	again = pol_policy_effective(NULL, e);
	if (again == NULL || !json_equal(again, e))
		abort();
	json_decref(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc = mf_json_parse((const char *)data, size, 64, NULL);
	json_t *parent, *child, *peff, *e, *errors = NULL;
	mf_err_t err;
	int rc;

	if (doc == NULL)
		return 0;
	parent = mf_json_parse(parent_text, sizeof(parent_text) - 1, 64, NULL);
	child = mf_json_parse(child_text, sizeof(child_text) - 1, 64, NULL);
	if (parent == NULL || child == NULL)
		abort();

	rc = pol_policy_validate(doc, &errors, &err);
	if (rc != pol_policy_validate(doc, NULL, NULL))
		abort();	/* asking for the list changes nothing */
	if (rc == 0 && errors != NULL)
		abort();
	if (rc != 0) {
		if (err.status != 400 || strcmp(err.code, "validation_failed") != 0 ||
		    json_array_size(errors) < 1 || json_array_size(errors) > POL_POLICY_MAX_ERRORS)
			abort();
		for (size_t i = 0; i < json_array_size(errors); i++) {
			const char *path = json_string_value(json_object_get(json_array_get(errors, i), "path"));
			const char *msg = json_string_value(json_object_get(json_array_get(errors, i), "message"));

			if (path == NULL || (path[0] != '\0' && path[0] != '/') || msg == NULL || msg[0] == '\0')
				abort();
		}
	}
	json_decref(errors);

	peff = pol_policy_effective(NULL, parent);
	check_effective(peff);
	if (rc == 0) {
		e = pol_policy_effective(parent, doc);
		check_effective(e);
		check_caps(peff, e);
		json_decref(e);
	}
	/* valid or not, as the child and as the parent */
	e = pol_policy_effective(parent, doc);
	check_effective(e);
	check_caps(peff, e);
	json_decref(e);
	json_decref(peff);
	peff = pol_policy_effective(NULL, doc);
	check_effective(peff);
	e = pol_policy_effective(doc, child);
	check_effective(e);
	check_caps(peff, e);
	json_decref(e);

	json_decref(peff);
	json_decref(parent);
	json_decref(child);
	json_decref(doc);
	return 0;
}
