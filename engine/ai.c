/*
 * ai.c - the pure half of ai steps (see ai.h, docs/ai.md).
 *
 * Models are asked for JSON and answer with text, so everything they
 * return is treated as untrusted input: parsed, shape-checked against the
 * task, stripped to the members the task defines, and never quoted in an
 * error (the answer may echo the prompt, and the prompt may hold client
 * data).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ai.h"

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static bool text_ok(const json_t *v, size_t min, size_t max)
{
	return json_is_string(v) && json_string_length(v) >= min && json_string_length(v) <= max &&
	       strlen(json_string_value(v)) == json_string_length(v);
}

static bool in_list(const json_t *list, const json_t *v)
{
	size_t i;
	json_t *x;

	json_array_foreach(list, i, x)
		if (json_equal(x, v))
			return true;
	return false;
}

json_t *eng_ai_spec(const json_t *step, const json_t *options, mf_err_t *err)
{
	const char *task = str(step, "task");
	json_t *spec = json_pack("{s:s}", "task", task ? task : "");

	if (spec == NULL)
		goto oom;
	if (task && strcmp(task, "classify") == 0) {
		json_object_set(spec, "labels", json_object_get(step, "labels"));
	} else if (task && strcmp(task, "extract") == 0) {
		json_object_set(spec, "fields", json_object_get(step, "fields"));
	} else if (task && strcmp(task, "recommend") == 0) {
		size_t i;
		json_t *x;

		if (!json_is_array(options) || json_array_size(options) < 1 ||
		    json_array_size(options) > ENG_AI_MAX_OPTIONS) {
			json_decref(spec);
			mf_err_set(err, 400, "invalid_options", "the step's options must be an array of 1 to %d strings",
				   ENG_AI_MAX_OPTIONS);
			return NULL;
		}
		json_array_foreach(options, i, x) {
			bool dup = false;

			for (size_t j = 0; j < i; j++)
				dup = dup || json_equal(x, json_array_get(options, j));
			if (!text_ok(x, 1, 200) || dup) {
				json_decref(spec);
				mf_err_set(err, 400, "invalid_options",
					   "option %zu must be a distinct string of 1 to 200 bytes", i);
				return NULL;
			}
		}
		json_object_set(spec, "options", (json_t *)options);
	}
	return spec;
oom:
	mf_err_set(err, 500, "out_of_memory", "out of memory");
	return NULL;
}

/* The answer shape, as the system message states it. */
static char *shape_text(const json_t *spec)
{
	const char *task = str(spec, "task");
	char *list = NULL, *s = NULL;
	const char *k;
	json_t *v;
	json_t *fields;
	int rc = -1;

	if (strcmp(task, "classify") == 0) {
		list = json_dumps(json_object_get(spec, "labels"), JSON_COMPACT);
		rc = list ? asprintf(&s, "{\"label\": <exactly one of %s>, \"confidence\": <number from 0 to 1>}", list)
			  : -1;
	} else if (strcmp(task, "recommend") == 0) {
		list = json_dumps(json_object_get(spec, "options"), JSON_COMPACT);
		rc = list ? asprintf(&s, "{\"option\": <exactly one of %s>, \"reason\": <one or two sentences>, "
				     "\"confidence\": <number from 0 to 1>}", list)
			  : -1;
	} else if (strcmp(task, "extract") == 0) {
		fields = json_object();
		json_object_foreach(json_object_get(spec, "fields"), k, v) {
			char t[64];

			snprintf(t, sizeof(t), "<%s or null>", json_string_value(v));
			json_object_set_new(fields, k, json_string(t));
		}
		list = json_dumps(fields, JSON_COMPACT);
		json_decref(fields);
		rc = list ? asprintf(&s, "{\"fields\": %s, \"confidence\": <number from 0 to 1>}", list) : -1;
	} else {
		rc = asprintf(&s, "{\"summary\": <the summary>, \"confidence\": <number from 0 to 1>}");
	}
	free(list);
	return rc < 0 ? NULL : s;
}

static const char *task_intro(const char *task)
{
	if (strcmp(task, "classify") == 0)
		return "Classify the user's text into exactly one of the given labels.";
	if (strcmp(task, "extract") == 0)
		return "Extract the named fields from the user's text; use null for a field the text does not give.";
	if (strcmp(task, "recommend") == 0)
		return "Recommend exactly one of the given options for the user's situation and say why.";
	return "Summarise the user's text.";
}

char *eng_ai_request(const json_t *spec, const char *prompt, const char *model, long long max_tokens,
		     const char *complaint)
{
	char *shape = shape_text(spec), *sys = NULL, *out = NULL;
	json_t *msgs, *body;

	if (shape == NULL ||
	    asprintf(&sys, "%s Answer with one JSON object of exactly this shape and nothing else: %s "
		     "confidence is how sure you are, from 0 (a guess) to 1 (certain).",
		     task_intro(str(spec, "task")), shape) < 0) {
		free(shape);
		return NULL;
	}
	free(shape);
	msgs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", sys, "role", "user", "content",
			 prompt);
	free(sys);
	if (msgs && complaint) {
		char *fix = NULL;

		if (asprintf(&fix, "Your previous answer was not valid: %s. Answer again with only the JSON object.",
			     complaint) >= 0)
			json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", fix));
		free(fix);
	}
	body = msgs ? json_pack("{s:o, s:{s:s}, s:i, s:I}", "messages", msgs, "response_format", "type",
				"json_object", "temperature", 0, "max_tokens", (json_int_t)max_tokens)
		    : NULL;
	if (body && model)
		json_object_set_new(body, "model", json_string(model));
	out = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	return out;
}

static int invalid(mf_err_t *err, char *path, const char *p, const char *msg)
{
	if (path)
		snprintf(path, 64, "%s", p);
	return mf_err_set(err, 422, "invalid_output", "%s%s%s", p[0] ? p : "", p[0] ? ": " : "", msg);
}

static bool type_ok(const char *type, const json_t *v)
{
	if (json_is_null(v))
		return true;
	if (strcmp(type, "string") == 0)
		return text_ok(v, 0, ENG_AI_MAX_TEXT);
	if (strcmp(type, "integer") == 0)
		return json_is_integer(v);
	if (strcmp(type, "number") == 0)
		return json_is_number(v);
	if (strcmp(type, "boolean") == 0)
		return json_is_boolean(v);
	return false;
}

int eng_ai_check(const json_t *spec, const json_t *answer, bool human, json_t **out, mf_err_t *err, char *path)
{
	const char *task = str(spec, "task");
	const json_t *conf = json_object_get(answer, "confidence");
	json_t *o;

	*out = NULL;
	if (path)
		path[0] = '\0';
	if (!json_is_object(answer))
		return invalid(err, path, "", "must be a JSON object");
	if (!human && (!json_is_number(conf) || json_number_value(conf) < 0 || json_number_value(conf) > 1))
		return invalid(err, path, "/confidence", "must be a number from 0 to 1");
	o = json_object();
	if (o == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	if (strcmp(task, "classify") == 0) {
		const json_t *l = json_object_get(answer, "label");

		if (!json_is_string(l) || !in_list(json_object_get(spec, "labels"), l))
			goto bad_label;
		json_object_set(o, "label", (json_t *)l);
	} else if (strcmp(task, "recommend") == 0) {
		const json_t *opt = json_object_get(answer, "option"), *why = json_object_get(answer, "reason");

		if (!json_is_string(opt) || !in_list(json_object_get(spec, "options"), opt)) {
			json_decref(o);
			return invalid(err, path, "/option", "must be one of the step's options");
		}
		if (!text_ok(why, 0, ENG_AI_MAX_TEXT)) {
			json_decref(o);
			return invalid(err, path, "/reason", "must be a string of at most 8192 bytes");
		}
		json_object_set(o, "option", (json_t *)opt);
		json_object_set(o, "reason", (json_t *)why);
	} else if (strcmp(task, "extract") == 0) {
		const json_t *got = json_object_get(answer, "fields");
		json_t *fields = json_object();
		const char *k;
		json_t *type;

		if (!json_is_object(got)) {
			json_decref(fields);
			json_decref(o);
			return invalid(err, path, "/fields", "must be an object");
		}
		json_object_foreach(json_object_get(spec, "fields"), k, type) {
			const json_t *v = json_object_get(got, k);
			char p[64];

			if (v == NULL || !type_ok(json_string_value(type), v)) {
				snprintf(p, sizeof(p), "/fields/%s", k);	/* k: a declared name, ^[a-z][a-z0-9_]*$ */
				json_decref(fields);
				json_decref(o);
				return invalid(err, path, p, v == NULL ? "is missing (null when unknown)"
								      : "has the wrong type for the field");
			}
			json_object_set(fields, k, (json_t *)v);
		}
		json_object_set_new(o, "fields", fields);
	} else {
		const json_t *s = json_object_get(answer, "summary");

		if (!text_ok(s, 1, ENG_AI_MAX_TEXT)) {
			json_decref(o);
			return invalid(err, path, "/summary", "must be a string of 1 to 8192 bytes");
		}
		json_object_set(o, "summary", (json_t *)s);
	}
	if (!human)
		json_object_set(o, "confidence", (json_t *)conf);
	*out = o;
	return 0;
bad_label:
	json_decref(o);
	return invalid(err, path, "/label", "must be one of the step's labels");
}

int eng_ai_answer(const json_t *spec, const json_t *response, json_t **out, mf_err_t *err)
{
	const json_t *choice = json_array_get(json_object_get(response, "choices"), 0);
	const char *content = str(json_object_get(choice, "message"), "content");
	size_t len;
	json_t *ans;
	int rc;

	*out = NULL;
	if (content == NULL)
		return mf_err_set(err, 422, "invalid_output", "the response has no choices[0].message.content");
	/* models like to wrap JSON in a ``` fence, with or without a language */
	while (isspace((unsigned char)*content))
		content++;
	len = strlen(content);
	while (len && isspace((unsigned char)content[len - 1]))
		len--;
	if (len >= 6 && strncmp(content, "```", 3) == 0 && strncmp(content + len - 3, "```", 3) == 0) {
		const char *nl = memchr(content, '\n', len - 3);

		if (nl) {
			len -= (size_t)(nl + 1 - content) + 3;
			content = nl + 1;
		}
	}
	ans = json_loadb(content, len, 0, NULL);
	if (ans == NULL)
		return mf_err_set(err, 422, "invalid_output", "the answer is not a JSON object");
	rc = eng_ai_check(spec, ans, false, out, err, NULL);
	json_decref(ans);
	return rc;
}

static bool task_listed(const json_t *tasks, const char *task)
{
	size_t i;
	json_t *x;

	json_array_foreach(tasks, i, x)
		if (json_is_string(x) && strcmp(json_string_value(x), task) == 0)
			return true;
	return false;
}

const char *eng_ai_refusal(const json_t *policy_ai, const char *task)
{
	if (!json_is_true(json_object_get(policy_ai, "enabled")))
		return "ai_disabled";
	if (!task || !task_listed(json_object_get(policy_ai, "allowed_tasks"), task))
		return "ai_task_not_allowed";
	return NULL;
}

const char *eng_ai_review_reason(const json_t *policy_ai, const json_t *step, double confidence)
{
	double min = json_number_value(json_object_get(policy_ai, "min_confidence"));
	const json_t *own = json_object_get(step, "min_confidence");

	/* a missing policy section reads as the safest answer */
	if (!json_is_false(json_object_get(policy_ai, "require_human_approval")))
		return "policy";
	if (json_is_true(json_object_get(step, "require_approval")))
		return "step";
	if (json_is_number(own) && json_number_value(own) > min)
		min = json_number_value(own);
	return confidence < min ? "low_confidence" : NULL;
}
