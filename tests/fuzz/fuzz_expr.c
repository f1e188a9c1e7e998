/*
 * fuzz_expr.c - any bytes as an expression: parsing never crashes and
 * either succeeds or fails with 400 invalid_expression and a byte offset;
 * a parsed expression evaluates over a fixed context with nested objects
 * and arrays to a value (never NaN or an infinity, no string or array over
 * the value bound) or to 400 expression_failed; evaluating twice gives the
 * same answer (nothing here is impure except now(), which the check skips).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "engine/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ctx_text[] =
	"{\"input\": {\"deal\": {\"amount\": 1000, \"name\": \"Acme\", \"tags\": [\"a\", \"b\", {\"c\": [1, 2.5]}],"
	" \"ratio\": 0.5}, \"big\": 9223372036854775807, \"small\": -9223372036854775808, \"s\": \"h\\u00e9llo\","
	" \"list\": [1, 2, 3, [4, [5, [6]]]], \"n\": null, \"t\": true, \"long\": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},"
	" \"data\": {\"x\": 1, \"y\": [\"p\", \"q\"]}, \"steps\": {\"s1\": {\"output\": {\"ok\": true, \"n\": -1.25}}},"
	" \"tenant\": {\"id\": \"t1\"}, \"brand\": {\"name\": \"Blue\"}}";

static void check_value(const json_t *v, int depth)
{
	if (v == NULL || depth > 80)
		abort();
	if (json_is_real(v) && !isfinite(json_real_value(v)))
		abort();
	if (json_is_string(v) && json_string_length(v) > ENG_EXPR_MAX_VALUE)
		abort();	/* the context's strings are short: anything longer was built */
	if (json_is_array(v) && json_array_size(v) > ENG_EXPR_MAX_NODES)
		abort();
	if (json_is_array(v))
		for (size_t i = 0; i < json_array_size(v); i++)
			check_value(json_array_get(v, i), depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_t *ctx;
	mf_err_t err;
	eng_expr_t *e;
	json_t *v = NULL, *v2 = NULL;
	int rc, rc2;

	if (ctx == NULL && (ctx = mf_json_parse(ctx_text, sizeof(ctx_text) - 1, 64, NULL)) == NULL)
		abort();
	memset(&err, 0, sizeof(err));
	e = eng_expr_parse((const char *)data, size, &err);
	if (e == NULL) {
		if (err.status != 400 || strcmp(err.code, "invalid_expression") != 0 ||
		    strncmp(err.detail, "at byte ", 8) != 0)
			abort();
		return 0;
	}
	if (size > ENG_EXPR_MAX_SRC)
		abort();
	rc = eng_expr_eval(e, ctx, &v, &err);
	if (rc == 0)
		check_value(v, 0);
	else if (rc != -1 || v != NULL || err.status != 400 || strcmp(err.code, "expression_failed") != 0 ||
		 strncmp(err.detail, "at byte ", 8) != 0)
		abort();
	if (memmem(data, size, "now", 3) == NULL) {
		rc2 = eng_expr_eval(e, ctx, &v2, NULL);
		if (rc2 != rc || (rc == 0 && !json_equal(v, v2)))
			abort();
		json_decref(v2);
	}
	/* truthiness is total */
	if (rc == 0)
		(void)eng_expr_truthy(v);
	json_decref(v);
	/* the empty context too */
	if (eng_expr_eval(e, NULL, &v, NULL) == 0)
		json_decref(v);
	eng_expr_free(e);
	return 0;
}
