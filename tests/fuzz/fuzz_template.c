/*
 * fuzz_template.c - any bytes (up to the first NUL) as a template: check,
 * render (plain and HTML-escaped) and value never crash and agree: a
 * template that fails the check fails to render with invalid_expression;
 * one that renders has no raw & < > " ' from values when escaped beyond
 * those of the template text; a rendered output stays under its bound.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "engine/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ctx_text[] =
	"{\"input\": {\"deal\": {\"amount\": 1000, \"name\": \"A & <B> \\\"q\\\" 'x'\", \"tags\": [\"a\", {\"b\": [1]}]},"
	" \"n\": null, \"r\": 0.1}, \"data\": {\"x\": [1, 2]}, \"steps\": {\"s1\": {\"output\": {\"ok\": true}}},"
	" \"tenant\": {\"id\": \"t1\"}, \"brand\": {\"name\": \"Blue\"}}";

static size_t count_special(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += strchr("<>\"'", *s) != NULL;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *ctx;
	char *tmpl, *out = NULL, *esc = NULL;
	mf_err_t err, err2;
	json_t *v = NULL;
	int checked, r1, r2, r3;

	if (ctx == NULL && (ctx = mf_json_parse(ctx_text, sizeof(ctx_text) - 1, 64, NULL)) == NULL)
		abort();
	tmpl = malloc(size + 1);
	if (tmpl == NULL)
		return 0;
	memcpy(tmpl, data, size);
	tmpl[size] = '\0';

	memset(&err, 0, sizeof(err));
	checked = eng_template_check(tmpl, &err);
	if (checked != 0 && (err.status != 400 || strcmp(err.code, "invalid_expression") != 0 ||
			     strncmp(err.detail, "template at byte ", 17) != 0))
		abort();
	memset(&err2, 0, sizeof(err2));
	r1 = eng_template_render(tmpl, ctx, false, &out, &err2);
	if (checked != 0 && (r1 == 0 || strcmp(err2.code, "invalid_expression") != 0))
		abort();
	if (r1 != 0 && (out != NULL || err2.status == 0 || err2.code[0] == '\0'))
		abort();
	if (r1 == 0 && (out == NULL || strlen(out) > ENG_TEMPLATE_MAX_OUT + ENG_EXPR_MAX_VALUE * 2 + size))
		abort();
	r2 = eng_template_render(tmpl, ctx, true, &esc, NULL);
	if ((r1 == 0) != (r2 == 0))
		abort();
	/* escaping leaves only the template's own specials (the first "}}" closes, so these counts hold) */
	if (r2 == 0 && count_special(esc) > count_special(tmpl))
		abort();
	r3 = eng_template_value(tmpl, ctx, &v, NULL);
	if (r3 == 0 && v == NULL)
		abort();
	if (r3 != 0 && v != NULL)
		abort();
	/* r1 == 0 with r3 != 0 is allowed: a value may still fail on text
	 * that is not UTF-8 */
	json_decref(v);
	free(out);
	free(esc);
	free(tmpl);
	return 0;
}
