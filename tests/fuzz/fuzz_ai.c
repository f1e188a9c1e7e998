/*
 * fuzz_ai.c - any bytes as a model's answer (engine/ai.h): as the
 * message content of a chat completions response for each task, and as
 * the whole response body.  Never crashes; an accepted answer has exactly
 * the task's members, with a label / option from the spec's list and a
 * confidence from 0 to 1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const steps[] = {
	"{\"task\": \"classify\", \"labels\": [\"standard\", \"normal\", \"emergency\"]}",
	"{\"task\": \"extract\", \"fields\": {\"due\": \"string\", \"hours\": \"number\", \"n\": \"integer\", \"b\": \"boolean\"}}",
	"{\"task\": \"recommend\"}",
	"{\"task\": \"summarize\"}",
};

static void check(const json_t *spec, const json_t *out)
{
	const char *task = json_string_value(json_object_get(spec, "task"));
	double c = json_number_value(json_object_get(out, "confidence"));
	size_t want = strcmp(task, "recommend") == 0 ? 3 : 2;

	if (!json_is_number(json_object_get(out, "confidence")) || c < 0 || c > 1 || json_object_size(out) != want)
		abort();
	if (strcmp(task, "classify") == 0 && !json_is_string(json_object_get(out, "label")))
		abort();
	if (strcmp(task, "extract") == 0 && json_object_size(json_object_get(out, "fields")) != 4)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *specs[4];
	char *text = malloc(size + 1);
	json_t *out, *resp;
	mf_err_t err;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (specs[0] == NULL) {
		json_t *opts = json_pack("[s, s]", "basic", "pro");

		for (int i = 0; i < 4; i++) {
			json_t *step = json_loads(steps[i], 0, NULL);

			specs[i] = eng_ai_spec(step, opts, &err);
			json_decref(step);
			if (specs[i] == NULL)
				abort();
		}
		json_decref(opts);
	}
	/* as the content (jansson refuses invalid UTF-8 and NUL: then the
	 * response cannot carry it either) */
	resp = json_pack("{s:[{s:{s:s}}]}", "choices", "message", "content", text);
	for (int i = 0; resp && i < 4; i++)
		if (eng_ai_answer(specs[i], resp, &out, &err) == 0) {
			check(specs[i], out);
			json_decref(out);
		} else if (out != NULL || err.status != 422) {
			abort();
		}
	json_decref(resp);
	/* as the whole response */
	resp = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (resp) {
		if (eng_ai_answer(specs[0], resp, &out, &err) == 0) {
			check(specs[0], out);
			json_decref(out);
		}
		json_decref(resp);
	}
	free(text);
	return 0;
}
