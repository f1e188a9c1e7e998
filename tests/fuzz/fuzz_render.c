/*
 * fuzz_render.c - any bytes as a logic-less template (core/render.h):
 * rendering never crashes, agrees with mf_render_check, reports a parse
 * error with an offset inside the template, and an output stays within
 * MF_RENDER_MAX_OUT; values reach the output escaped (no raw < from the
 * scope unless the template asked for {{{ }}} or {{& }}).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char scope_text[] =
	"{\"brand\": {\"display_name\": \"<b>&'\\\"\", \"domains\": [\"a.example\", \"b.example\"]},"
	" \"tenant\": {\"id\": \"t1\", \"name\": \"<x>\"}, \"items\": [{\"name\": \"<i>\"}, {\"name\": 2}, [1, [2]]],"
	" \"yes\": true, \"no\": false, \"nil\": null, \"ten\": [0,1,2,3,4,5,6,7,8,9]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *scope;
	mf_render_err_t err, err2;
	char *out = NULL;
	int r, c;

	if (scope == NULL && (scope = json_loads(scope_text, 0, NULL)) == NULL)
		abort();
	r = mf_render((const char *)data, size, scope, &out, &err);
	c = mf_render_check((const char *)data, size, &err2);
	if (r == 0) {
		if (out == NULL || c != 0 || strlen(out) > MF_RENDER_MAX_OUT)
			abort();
		/* the template has no < and no raw tag: neither may the output */
		if (memchr(data, '<', size) == NULL && memmem(data, size, "{{{", 3) == NULL &&
		    memmem(data, size, "{{&", 3) == NULL && strchr(out, '<') != NULL)
			abort();
		free(out);
		return 0;
	}
	if (out != NULL || err.err.status != 400 || err.err.code[0] == '\0')
		abort();
	if (strcmp(err.err.code, "invalid_template") == 0) {
		if (c == 0 || err.offset < 0 || (size_t)err.offset >= size || err2.offset != err.offset)
			abort();
	} else if (strcmp(err.err.code, "template_too_large") == 0) {
		if (size <= MF_RENDER_MAX_TPL)
			abort();
	} else if (strcmp(err.err.code, "output_too_large") != 0 || c != 0) {
		abort();
	}
	return 0;
}
