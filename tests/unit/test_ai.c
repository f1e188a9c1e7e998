/*
 * test_ai.c - ai steps without a model: the request asked of the endpoint,
 * answers checked per task, and governance.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/ai.h"
#include "t.h"

static json_t *J(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);

	if (j == NULL)
		printf("# bad test JSON: %s\n", text);
	return j;
}

/* A chat completions response whose first choice says content. */
static json_t *reply(const char *content)
{
	return json_pack("{s:[{s:{s:s, s:s}}]}", "choices", "message", "role", "assistant", "content", content);
}

static int answer_rc(const json_t *spec, const char *content, json_t **out, mf_err_t *err)
{
	json_t *r = reply(content);
	int rc = eng_ai_answer(spec, r, out, err);

	json_decref(r);
	return rc;
}

static void test_request(void)
{
	json_t *step = J("{\"task\": \"classify\", \"labels\": [\"standard\", \"emergency\"]}");
	json_t *spec = eng_ai_spec(step, NULL, NULL), *body;
	char *text = eng_ai_request(spec, "Reboot the core switch now", "local-model", 256, NULL);

	body = text ? J(text) : NULL;
	T_OK(body != NULL, "the request is JSON");
	T_STREQ(json_string_value(json_object_get(body, "model")), "local-model", "the step's model");
	T_OK(json_integer_value(json_object_get(body, "max_tokens")) == 256, "max_tokens from the policy");
	T_STREQ(json_string_value(json_object_get(json_object_get(body, "response_format"), "type")), "json_object",
		"JSON mode is asked for");
	T_OK(json_array_size(json_object_get(body, "messages")) == 2, "a system and a user message");
	T_OK(strstr(json_string_value(json_object_get(json_array_get(json_object_get(body, "messages"), 0), "content")),
		    "[\"standard\",\"emergency\"]") != NULL, "the system message lists the labels");
	T_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(body, "messages"), 1), "content")),
		"Reboot the core switch now", "the user message is the prompt");
	json_decref(body);
	free(text);

	text = eng_ai_request(spec, "p", NULL, 16, "/label: must be one of the step's labels");
	body = text ? J(text) : NULL;
	T_OK(body && !json_object_get(body, "model"), "no model: none is sent");
	T_OK(json_array_size(json_object_get(body, "messages")) == 3 &&
	     strstr(json_string_value(json_object_get(json_array_get(json_object_get(body, "messages"), 2), "content")),
		    "not valid: /label") != NULL, "a retry says what was wrong");
	json_decref(body);
	free(text);
	json_decref(spec);
	json_decref(step);
}

static void test_classify(void)
{
	json_t *step = J("{\"task\": \"classify\", \"labels\": [\"standard\", \"normal\", \"emergency\"]}");
	json_t *spec = eng_ai_spec(step, NULL, NULL), *out = NULL;
	mf_err_t err;

	T_OK(answer_rc(spec, "{\"label\": \"normal\", \"confidence\": 0.93, \"why\": \"x\"}", &out, &err) == 0 &&
	     json_object_size(out) == 2 && strcmp(json_string_value(json_object_get(out, "label")), "normal") == 0,
	     "a valid answer, extra members dropped");
	json_decref(out);
	T_OK(answer_rc(spec, "  ```json\n{\"label\": \"standard\", \"confidence\": 1}\n```  ", &out, &err) == 0,
	     "an answer in a ``` fence");
	json_decref(out);
	T_OK(answer_rc(spec, "{\"label\": \"urgent\", \"confidence\": 0.9}", &out, &err) == -1 && out == NULL &&
	     err.status == 422 && strcmp(err.code, "invalid_output") == 0 && strstr(err.detail, "/label") &&
	     !strstr(err.detail, "urgent"), "a label not in the list; the error does not quote the answer");
	T_OK(answer_rc(spec, "{\"label\": \"normal\", \"confidence\": 1.5}", &out, &err) == -1 &&
	     strstr(err.detail, "/confidence"), "confidence above 1");
	T_OK(answer_rc(spec, "{\"label\": \"normal\"}", &out, &err) == -1, "no confidence");
	T_OK(answer_rc(spec, "Sure! The label is normal.", &out, &err) == -1 && strstr(err.detail, "not a JSON"),
	     "prose is not an answer");
	{
		json_t *r = J("{\"choices\": []}");

		T_OK(eng_ai_answer(spec, r, &out, &err) == -1 && strstr(err.detail, "choices[0]"), "no choices");
		json_decref(r);
	}
	{
		json_t *edit = J("{\"label\": \"emergency\"}");
		char path[64];

		T_OK(eng_ai_check(spec, edit, true, &out, &err, path) == 0 && !json_object_get(out, "confidence"),
		     "a reviewer's edit needs no confidence");
		json_decref(out);
		json_decref(edit);
		edit = J("{\"label\": \"meh\"}");
		T_OK(eng_ai_check(spec, edit, true, &out, &err, path) == -1 && strcmp(path, "/label") == 0,
		     "a reviewer's edit is checked like the model's answer, with the path");
		json_decref(edit);
	}
	json_decref(spec);
	json_decref(step);
}

static void test_other_tasks(void)
{
	json_t *step = J("{\"task\": \"extract\", \"fields\": {\"due\": \"string\", \"hours\": \"number\","
			 " \"seats\": \"integer\", \"urgent\": \"boolean\"}}");
	json_t *spec = eng_ai_spec(step, NULL, NULL), *out = NULL, *opts;
	mf_err_t err;

	T_OK(answer_rc(spec, "{\"fields\": {\"due\": \"2026-12-01\", \"hours\": 7.5, \"seats\": 12, \"urgent\": null},"
			     " \"confidence\": 0.7}", &out, &err) == 0 &&
	     json_object_size(json_object_get(out, "fields")) == 4, "extract: typed fields, null allowed");
	json_decref(out);
	T_OK(answer_rc(spec, "{\"fields\": {\"due\": \"x\", \"hours\": 1, \"seats\": 1.5, \"urgent\": true},"
			     " \"confidence\": 0.7}", &out, &err) == -1 && strstr(err.detail, "/fields/seats"),
	     "extract: an integer field with a fraction");
	T_OK(answer_rc(spec, "{\"fields\": {\"due\": \"x\"}, \"confidence\": 0.7}", &out, &err) == -1 &&
	     strstr(err.detail, "is missing"), "extract: a missing field");
	json_decref(spec);
	json_decref(step);

	step = J("{\"task\": \"recommend\", \"options\": \"data.plans\"}");
	opts = J("[\"basic\", \"pro\"]");
	spec = eng_ai_spec(step, opts, &err);
	T_OK(spec != NULL, "recommend: options from the run context");
	T_OK(answer_rc(spec, "{\"option\": \"pro\", \"reason\": \"20 seats\", \"confidence\": 0.8}", &out, &err) == 0,
	     "recommend: a listed option");
	json_decref(out);
	T_OK(answer_rc(spec, "{\"option\": \"enterprise\", \"reason\": \"r\", \"confidence\": 0.8}", &out, &err) == -1,
	     "recommend: an option not offered");
	json_decref(spec);
	json_decref(opts);
	opts = J("[\"a\", \"a\"]");
	T_OK(eng_ai_spec(step, opts, &err) == NULL && strcmp(err.code, "invalid_options") == 0,
	     "recommend: duplicate options are refused");
	json_decref(opts);
	T_OK(eng_ai_spec(step, NULL, &err) == NULL, "recommend: options that are not an array");
	json_decref(step);

	step = J("{\"task\": \"summarize\"}");
	spec = eng_ai_spec(step, NULL, NULL);
	T_OK(answer_rc(spec, "{\"summary\": \"Two laptops for new hires.\", \"confidence\": 0.95}", &out, &err) == 0,
	     "summarize");
	json_decref(out);
	T_OK(answer_rc(spec, "{\"summary\": \"\", \"confidence\": 0.95}", &out, &err) == -1, "an empty summary");
	json_decref(spec);
	json_decref(step);
}

static void test_governance(void)
{
	json_t *pol = J("{\"enabled\": true, \"require_human_approval\": false, \"min_confidence\": 0.8,"
			" \"allowed_tasks\": [\"classify\", \"summarize\"]}");
	json_t *step = J("{\"task\": \"classify\"}"), *strict = J("{\"task\": \"classify\", \"min_confidence\": 0.95}");
	json_t *always = J("{\"task\": \"classify\", \"require_approval\": true}");
	json_t *off = J("{\"enabled\": false, \"allowed_tasks\": [\"classify\"]}");
	json_t *human = J("{\"enabled\": true, \"require_human_approval\": true, \"min_confidence\": 0,"
			  " \"allowed_tasks\": [\"classify\"]}");

	T_OK(eng_ai_refusal(pol, "classify") == NULL, "enabled and allowed");
	T_STREQ(eng_ai_refusal(pol, "extract"), "ai_task_not_allowed", "a task the policy does not list");
	T_STREQ(eng_ai_refusal(off, "classify"), "ai_disabled", "ai disabled");
	T_OK(eng_ai_review_reason(pol, step, 0.9) == NULL, "confident enough: flows on");
	T_STREQ(eng_ai_review_reason(pol, step, 0.5), "low_confidence", "below the policy's threshold");
	T_STREQ(eng_ai_review_reason(pol, strict, 0.9), "low_confidence", "the step can only raise the threshold");
	T_OK(eng_ai_review_reason(pol, strict, 0.96) == NULL, "above the step's higher threshold");
	T_STREQ(eng_ai_review_reason(pol, always, 1.0), "step", "the step requires a human");
	T_STREQ(eng_ai_review_reason(human, step, 1.0), "policy", "the policy requires a human");
	T_STREQ(eng_ai_review_reason(NULL, step, 1.0), "policy", "no policy section: a human decides");
	json_decref(pol);
	json_decref(step);
	json_decref(strict);
	json_decref(always);
	json_decref(off);
	json_decref(human);
}

int main(void)
{
	test_request();
	test_classify();
	test_other_tasks();
	test_governance();
	return t_done();
}
