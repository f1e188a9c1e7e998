/*
 * fuzz_definition.c - workflow definitions: validation never crashes,
 * answers the same with or without the error list, lists 1 to 100 problems
 * each with a message and a JSON Pointer that leads to a value of the input
 * (unless a key was too long to be quoted in full); and the graph reads stay
 * within the steps on any input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "engine/definition.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Follows an RFC 6901 pointer; *cut is set when a segment reached the
 * 128-byte limit of mf_json_pointer (escapes counted as one byte). */
static const json_t *follow(const json_t *doc, const char *p, int *cut)
{
	char seg[512];

	*cut = 0;
	while (doc && *p == '/') {
		size_t o = 0, raw = 0;

		p++;
		while (*p && *p != '/' && o + 1 < sizeof(seg)) {
			if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
				seg[o++] = p[1] == '0' ? '~' : '/';
				p += 2;
			} else {
				seg[o++] = *p++;
			}
			raw++;
		}
		seg[o] = '\0';
		if (raw >= 128)
			*cut = 1;
		if (json_is_array(doc)) {
			char *end;
			unsigned long i = strtoul(seg, &end, 10);

			doc = *end == '\0' && o > 0 ? json_array_get(doc, i) : NULL;
		} else {
			doc = json_object_get(doc, seg);
		}
	}
	return doc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc = mf_json_parse((const char *)data, size, 64, NULL), *errors = NULL;
	mf_err_t err;
	int rc, start, succ[ENG_DEF_MAX_SUCC];
	size_t n;

	if (doc == NULL)
		return 0;
	rc = eng_def_validate(doc, &errors, &err);
	if (rc != eng_def_validate(doc, NULL, NULL))
		abort();
	if (rc == 0 && errors != NULL)
		abort();
	if (rc != 0) {
		if (err.status != 400 || strcmp(err.code, "validation_failed") != 0 ||
		    json_array_size(errors) < 1 || json_array_size(errors) > ENG_DEF_MAX_ERRORS)
			abort();
		for (size_t i = 0; i < json_array_size(errors); i++) {
			json_t *e = json_array_get(errors, i);
			const char *path = json_string_value(json_object_get(e, "path"));
			const char *msg = json_string_value(json_object_get(e, "message"));
			int cut;

			if (path == NULL || (path[0] != '\0' && path[0] != '/') || msg == NULL || msg[0] == '\0')
				abort();
			if (follow(doc, path, &cut) == NULL && !cut)
				abort();
		}
	}
	json_decref(errors);

	n = eng_def_step_count(doc);
	start = eng_def_start(doc);
	if (start < -1 || (start >= 0 && (size_t)start >= n))
		abort();
	if (rc == 0 && (start < 0 || n < 1 || n > ENG_DEF_MAX_STEPS))
		abort();
	for (size_t i = 0; i < n && i < 2 * ENG_DEF_MAX_STEPS; i++) {
		size_t m = eng_def_successors(doc, i, succ, ENG_DEF_MAX_SUCC);

		if (m > ENG_DEF_MAX_SUCC)
			abort();
		for (size_t k = 0; k < m; k++)
			if (succ[k] != ENG_DEF_END && (succ[k] < 0 || (size_t)succ[k] >= n))
				abort();
	}
	json_decref(doc);
	return 0;
}
