/* test_expr.c - the expression language and {{ }} templates: grammar, every operator over every type
 * pair, short-circuit, missing paths, literals and escapes, overflow, and every bound of engine/expr.h. */
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "engine/expr.h"
#include "t.h"

static const char ctx_text[] =
	"{\"input\": {\"deal\": {\"amount\": 1000, \"name\": \"Acme & <Co>\", \"tags\": [\"a\", \"b\"], \"ratio\": 0.5},"
	" \"n\": null, \"s\": \"h\\u00e9llo \\ud83d\\ude00\", \"big\": 9223372036854775807,"
	" \"small\": -9223372036854775808, \"list\": [1, 2, 3], \"obj\": {\"k\": 1}, \"empty\": \"\","
	" \"zero\": 0, \"nested\": [[1, {\"x\": [true]}]], \"t\": true, \"f\": false, \"ea\": [], \"eo\": {}},"
	" \"data\": {\"x\": 1}, \"steps\": {\"s1\": {\"output\": {\"ok\": true, \"id\": \"r-1\"}}},"
	" \"tenant\": {\"id\": \"t1\"}, \"brand\": {\"name\": \"Blue\"}}";

static json_t *ctx;

/* want: the result as compact JSON, "!P" for invalid_expression, "!E" for expression_failed. */
struct ecase { const char *src, *want; };

static const struct ecase cases[] = {
	/* literals */
	{"1", "1"}, {"0", "0"}, {"1.5", "1.5"}, {"0.25", "0.25"}, {"true", "true"}, {"false", "false"},
	{"null", "null"}, {"'a'", "\"a\""}, {"\"b\"", "\"b\""}, {"''", "\"\""},
	{"9223372036854775807", "9223372036854775807"}, {"9223372036854775808", "!P"},
	{"-9223372036854775807 - 1", "-9223372036854775808"},
	{"1.", "!P"}, {".5", "!P"}, {"1e5", "!P"}, {"0x10", "!P"}, {"1.2.3", "!P"}, {"12abc", "!P"},
	/* escapes */
	{"'a\\'b'", "\"a'b\""}, {"\"a\\\"b\"", "\"a\\\"b\""}, {"'\\\\'", "\"\\\\\""}, {"'\\n\\t'", "\"\\n\\t\""},
	{"'\\u00e9'", "\"\u00e9\""}, {"'\\ud83d\\ude00'", "\"\U0001F600\""}, {"'\\ud83d'", "!P"},
	{"'\\ude00'", "!P"}, {"'\\ud83dx'", "!P"}, {"'\\u0000'", "!P"}, {"'\\u12'", "!P"}, {"'\\x'", "!P"},
	{"'\\/'", "!P"}, {"'abc", "!P"}, {"'\xc3\x28'", "!P"}, {"'\xed\xa0\x80'", "!P"},
	{"'h\u00e9llo'", "\"h\u00e9llo\""},
	/* syntax errors */
	{"", "!P"}, {"   ", "!P"}, {"1 +", "!P"}, {"(1", "!P"}, {"1)", "!P"}, {"a = 1", "!P"}, {"a & b", "!P"},
	{"a | b", "!P"}, {"1 2", "!P"}, {"[1,", "!P"}, {"[1 2]", "!P"}, {"f(1)", "!P"}, {"len()", "!P"},
	{"len(1, 2)", "!P"}, {"now(1)", "!P"}, {"contains('a')", "!P"}, {"in", "!P"}, {"a.", "!P"},
	{"a.1", "!P"}, {"a[1", "!P"}, {"#", "!P"}, {"1 in", "!P"}, {"!", "!P"}, {"len", "null"},
	/* precedence and associativity */
	{"1 + 2 * 3", "7"}, {"(1 + 2) * 3", "9"}, {"10 - 4 - 3", "3"}, {"100 / 10 / 5", "2"},
	{"7 - -2", "9"}, {"-2 * 3", "-6"}, {"2 * 3 % 4", "2"}, {"1 + 2 == 3", "true"},
	{"1 < 2 == true", "true"}, {"true || false && false", "true"}, {"(true || false) && false", "false"},
	{"!true || true", "true"}, {"!(1 == 1)", "false"}, {"!!1", "true"}, {"1 == 1 != false", "true"},
	{"1 + 1 in [2]", "true"}, {"'a' + 'b' + 'c'", "\"abc\""},
	/* arithmetic over types */
	{"1 + 2", "3"}, {"1 + 0.5", "1.5"}, {"0.5 + 0.25", "0.75"}, {"'a' + 'b'", "\"ab\""},
	{"'a' + 1", "!E"}, {"1 + 'a'", "!E"}, {"1 + true", "!E"}, {"null + 1", "!E"}, {"[1] + [2]", "!E"},
	{"input.obj + 1", "!E"}, {"'a' - 'b'", "!E"}, {"'a' * 2", "!E"}, {"true * 2", "!E"},
	{"5 - 7", "-2"}, {"2.5 - 1", "1.5"}, {"6 * 7", "42"}, {"1.5 * 2", "3.0"}, {"7 / 2", "3.5"},
	{"6 / 3", "2"}, {"6.0 / 3", "2.0"}, {"-7 / 2", "-3.5"}, {"7 % 3", "1"}, {"-7 % 3", "-1"},
	{"7.5 % 2", "1.5"}, {"input.deal.amount * 0.5", "500.0"}, {"input.deal.amount / 8", "125"},
	/* division by zero, overflow, no NaN or infinity */
	{"1 / 0", "!E"}, {"1 % 0", "!E"}, {"1.5 / 0", "!E"}, {"1 / 0.0", "!E"}, {"1 % 0.0", "!E"},
	{"input.big + 1", "!E"}, {"input.small - 1", "!E"}, {"input.big * 2", "!E"}, {"-input.small", "!E"},
	{"input.small / -1", "!E"}, {"input.small % -1", "0"}, {"input.big - input.big", "0"},
	{"-input.big", "-9223372036854775807"},
	{"99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0"
	 " * 99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0"
	 " * 99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0"
	 " * 99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0 * 99999999999999999999.0", "!E"},
	/* unary */
	{"-1", "-1"}, {"-1.5", "-1.5"}, {"-'a'", "!E"}, {"-null", "!E"}, {"-true", "!E"}, {"!null", "true"},
	{"!''", "true"}, {"!'x'", "false"}, {"!0", "true"}, {"!0.0", "true"}, {"![]", "true"}, {"![0]", "false"},
	{"!input.eo", "true"}, {"!input.obj", "false"},
	/* equality: deep, 1 == 1.0, different types unequal */
	{"1 == 1.0", "true"}, {"1 == '1'", "false"}, {"null == null", "true"}, {"null == false", "false"},
	{"0 == false", "false"}, {"'a' == 'a'", "true"}, {"'a' != 'b'", "true"}, {"[1, 2] == [1, 2.0]", "true"},
	{"[1, 2] == [2, 1]", "false"}, {"input.list == [1, 2, 3]", "true"}, {"input.obj == input.obj", "true"},
	{"input.obj == input.eo", "false"}, {"input.nested == [[1, input.nested[0][1]]]", "true"},
	{"true == true", "true"}, {"true != false", "true"}, {"input.missing == null", "true"},
	/* ordering: numbers or strings only */
	{"1 < 2", "true"}, {"2 <= 2", "true"}, {"3 > 2.5", "true"}, {"2 >= 3", "false"}, {"'a' < 'b'", "true"},
	{"'b' < 'ab'", "false"}, {"'ab' > 'a'", "true"}, {"'a' <= 'a'", "true"}, {"1 < '2'", "!E"},
	{"null < 1", "!E"}, {"true > false", "!E"}, {"[1] < [2]", "!E"}, {"input.missing >= 0", "!E"},
	{"input.big > input.big - 1", "true"},
	/* && and || give booleans and short-circuit */
	{"1 && 'x'", "true"}, {"0 || ''", "false"}, {"'' || 'x'", "true"}, {"null && (1 / 0)", "false"},
	{"true || (1 / 0)", "true"}, {"false && undefinedfn_is_not_called == 1 / 0", "false"},
	{"true && (1 / 0)", "!E"}, {"false || (1 / 0)", "!E"}, {"input.missing && input.missing.x > 1", "false"},
	/* missing paths and indexes */
	{"input.deal.amount", "1000"}, {"input.nope", "null"}, {"input.nope.deeper.still", "null"},
	{"nosuchroot", "null"}, {"input.deal.amount.x", "null"}, {"input.list[0]", "1"}, {"input.list[2]", "3"},
	{"input.list[3]", "null"}, {"input.list[-1]", "null"}, {"input.list[1.0]", "null"},
	{"input.list['0']", "null"}, {"input['deal']['name']", "\"Acme & <Co>\""}, {"input.obj[0]", "null"},
	{"input.s[0]", "null"}, {"input.nested[0][1].x[0]", "true"}, {"[10, 20][1]", "20"},
	{"steps.s1.output.ok", "true"}, {"data.x + 1", "2"}, {"tenant.id", "\"t1\""}, {"brand.name", "\"Blue\""},
	{"input.deal.in", "null"}, {"input.deal.true", "null"}, {"input.list[input.list[0]]", "2"},
	/* in */
	{"'a' in input.deal.tags", "true"}, {"'c' in input.deal.tags", "false"}, {"2 in input.list", "true"},
	{"2.0 in input.list", "true"}, {"'2' in input.list", "false"}, {"[1] in [[1], 2]", "true"},
	{"'ll' in 'hello'", "true"}, {"'' in 'x'", "true"}, {"'z' in 'hello'", "false"}, {"1 in 'a1'", "!E"},
	{"'k' in input.obj", "true"}, {"'j' in input.obj", "false"}, {"1 in input.obj", "!E"},
	{"1 in 1", "!E"}, {"1 in true", "!E"}, {"1 in input.missing", "false"}, {"'x' in []", "false"},
	/* functions */
	{"len('abc')", "3"}, {"len(input.s)", "7"}, {"len('')", "0"}, {"len(input.list)", "3"},
	{"len(input.obj)", "1"}, {"len(input.missing)", "0"}, {"len(1)", "!E"}, {"len(true)", "!E"},
	{"lower('AbC \u00c9')", "\"abc \u00c9\""}, {"upper('abc \u00e9')", "\"ABC \u00e9\""},
	{"lower(input.missing)", "null"}, {"lower(1)", "!E"}, {"upper([])", "!E"},
	{"contains(input.deal.tags, 'b')", "true"}, {"contains('hello', 'lo')", "true"},
	{"contains(input.obj, 'k')", "true"}, {"contains(1, 1)", "!E"}, {"contains('a', 1)", "!E"},
	{"len(now()) == 20", "true"}, {"upper(lower('MiX'))", "\"MIX\""},
	/* arrays */
	{"[]", "[]"}, {"[1, 'a', null, [true]]", "[1,\"a\",null,[true]]"}, {"len([1, 2, 3])", "3"},
};

static int run(const char *src, const json_t *c, json_t **out, mf_err_t *err)
{
	eng_expr_t *e = eng_expr_parse(src, strlen(src), err);
	int rc;

	*out = NULL;
	if (e == NULL)
		return -2;
	rc = eng_expr_eval(e, c, out, err);
	eng_expr_free(e);
	return rc;
}

static void test_table(void)
{
	char what[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ecase *k = &cases[i];
		mf_err_t err;
		json_t *v;
		int rc = run(k->src, ctx, &v, &err);
		char *got = NULL;

		snprintf(what, sizeof(what), "%s -> %s", k->src, k->want);
		if (rc == -2) {
			T_OK(strcmp(k->want, "!P") == 0 && err.status == 400 &&
			     strcmp(err.code, "invalid_expression") == 0 && strstr(err.detail, "at byte ") != NULL, what);
			if (strcmp(k->want, "!P") != 0)
				printf("#   parse error: %s\n", err.detail);
			continue;
		}
		if (rc != 0) {
			T_OK(strcmp(k->want, "!E") == 0 && err.status == 400 &&
			     strcmp(err.code, "expression_failed") == 0 && v == NULL, what);
			if (strcmp(k->want, "!E") != 0)
				printf("#   eval error: %s\n", err.detail);
			continue;
		}
		got = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		T_STREQ(got, k->want, what);
		free(got);
		json_decref(v);
	}
}

static char *repeat(const char *pre, const char *mid, int n, const char *post)
{
	size_t len = strlen(pre) + strlen(mid) * (size_t)n + strlen(post) + 1;
	char *s = malloc(len);

	strcpy(s, pre);
	for (int i = 0; i < n; i++)
		strcat(s, mid);
	strcat(s, post);
	return s;
}

static mf_err_t perr_last;	/* the error of the last parses() */

static int parses(const char *src)
{
	return eng_expr_check(src, &perr_last) == 0;
}

static void test_bounds(void)
{
	mf_err_t err;
	json_t *v, *big;
	char *s, *t;
	int rc;

	/* parenthesis nesting: 31 pairs inside the top level is the bound */
	s = repeat("", "(", 31, "1"), t = repeat(s, ")", 31, "");
	T_OK(parses(t), "31 nested parentheses parse");
	free(s), free(t);
	s = repeat("", "(", 32, "1"), t = repeat(s, ")", 32, "");
	T_OK(!parses(t), "32 nested parentheses are refused");
	free(s), free(t);
	s = repeat("", "(", 4000, "");
	T_OK(!parses(s), "4000 open parentheses are refused without deep recursion");
	free(s);
	/* unary chains */
	s = repeat("", "-", 31, "1");
	T_OK(parses(s), "31 unary minus parse");
	T_OK(run(s, NULL, &v, &err) == 0 && json_integer_value(v) == -1, "31 unary minus give -1");
	json_decref(v);
	free(s);
	s = repeat("", "!", 32, "1");
	T_OK(!parses(s), "32 unary ! are refused");
	free(s);
	/* tree height: chains of binary operators */
	s = repeat("1", " + 1", 31, "");
	T_OK(run(s, NULL, &v, &err) == 0 && json_integer_value(v) == 32, "a chain of 31 '+' parses and sums");
	json_decref(v);
	free(s);
	s = repeat("1", " + 1", 500, "");
	T_OK(run(s, NULL, &v, &err) == 0 && json_integer_value(v) == 501, "a chain of 500 '+' is one level");
	json_decref(v);
	free(s);
	s = repeat("1", " - 1 + 2", 200, "");
	T_OK(run(s, NULL, &v, &err) == 0 && json_integer_value(v) == 201, "a mixed + - chain folds from the left");
	json_decref(v);
	free(s);
	s = repeat("true", " && true", 300, " && false");
	T_OK(run(s, NULL, &v, &err) == 0 && json_is_false(v), "a long && chain");
	json_decref(v);
	free(s);
	s = repeat("false", " || false", 300, " || 1 || 1 / 0");
	T_OK(run(s, NULL, &v, &err) == 0 && json_is_true(v), "a long || chain stops at the first true");
	json_decref(v);
	free(s);
	s = repeat("input", ".a", 31, "");
	T_OK(parses(s), "31 member accesses parse");
	free(s);
	s = repeat("input", ".a", 32, "");
	T_OK(!parses(s) && strstr(perr_last.detail, "nested too deeply") != NULL, "32 member accesses are refused");
	free(s);
	/* alternating precedence levels nest: 1 * 1 + 1 * 1 ... is two levels, (1 + 1) * ... each paren one */
	s = repeat("1", " * 1 + 1", 150, "");
	T_OK(run(s, NULL, &v, &err) == 0 && json_integer_value(v) == 151, "alternating * and + stay two levels");
	json_decref(v);
	free(s);
	s = repeat("[", "[", 31, ""), t = repeat(s, "]", 32, "");
	T_OK(parses(t), "32 nested array literals parse (the innermost is empty)");
	free(s), free(t);
	s = repeat("[", "[", 32, ""), t = repeat(s, "]", 33, "");
	T_OK(!parses(t), "33 nested array literals are refused");
	free(s), free(t);
	/* source size */
	s = repeat("1", " ", ENG_EXPR_MAX_SRC - 1, "");
	T_OK(parses(s), "a source of exactly the size bound parses");
	free(s);
	s = repeat("1", " ", ENG_EXPR_MAX_SRC, "");
	T_OK(!parses(s) && strstr(perr_last.detail, "longer than") != NULL, "a source over the size bound is refused");
	free(s);
	/* node bound: a flat array of n elements is n + 1 nodes */
	s = repeat("[0", ",0", 510, "]");
	T_OK(parses(s), "511 nodes parse");
	free(s);
	s = repeat("[0", ",0", 511, "]");
	T_OK(eng_expr_check(s, &err) != 0 && strstr(err.detail, "too many nodes") != NULL, "513 nodes are refused");
	free(s);
	/* a string of half the value bound */
	s = malloc(ENG_EXPR_MAX_VALUE / 2 + 2);
	memset(s, 'x', ENG_EXPR_MAX_VALUE / 2);
	s[ENG_EXPR_MAX_VALUE / 2] = '\0';
	json_object_set_new(ctx, "half", json_string(s));
	free(s);
	/* work steps: each 'in' over a 5000-element array compares up to 5000 values */
	big = json_array();
	for (int i = 0; i < 5000; i++)
		json_array_append_new(big, json_integer(i));
	json_object_set_new(ctx, "bigarr", big);
	T_OK(run("4999 in bigarr", ctx, &v, &err) == 0 && json_is_true(v), "one scan of 5000 elements fits");
	json_decref(v);
	rc = run("-1 in bigarr || -2 in bigarr || -3 in bigarr", ctx, &v, &err);
	T_OK(rc == -1 && strstr(err.detail, "steps") != NULL, "three scans exceed the step bound");
	/* a long chain: len() of an array is one step, len() of a string scans it */
	s = repeat("0", " + len(bigarr)", 100, "");
	T_OK(run(s, ctx, &v, &err) == 0 && json_integer_value(v) == 500000, "100 len() over a big array are cheap");
	json_decref(v);
	free(s);
	s = repeat("0", " + len(half)", 100, "");
	rc = run(s, ctx, &v, &err);
	free(s);
	T_OK(rc == -1 && strcmp(err.code, "expression_failed") == 0 && strstr(err.detail, "steps") != NULL,
	     "a chain of 100 len() over a 32 KiB string exceeds the step bound");
	T_OK(run("bigarr == bigarr", ctx, &v, &err) == 0 && json_is_true(v), "deep equality of 5000 elements fits");
	json_decref(v);
	T_OK(run("[bigarr, bigarr, bigarr] == [bigarr, bigarr, bigarr]", ctx, &v, &err) == -1,
	     "deep equality over 15000 elements exceeds the step bound");
	/* value size: doubling a string until it is over the bound */
	T_OK(run("len(half + half)", ctx, &v, &err) == 0 && json_integer_value(v) == ENG_EXPR_MAX_VALUE,
	     "a string of exactly the value bound is built");
	json_decref(v);
	T_OK(run("half + half + 'x'", ctx, &v, &err) == -1 && strstr(err.detail, "longer than") != NULL,
	     "a string over the value bound is refused");
	/* error details never quote context values */
	T_OK(run("tenant.id + 1", ctx, &v, &err) == -1 && strstr(err.detail, "t1") == NULL,
	     "an error names types, not values");
	/* NULL context = empty; NULL expression refused */
	T_OK(run("input.x == null", NULL, &v, &err) == 0 && json_is_true(v), "a NULL context is empty");
	json_decref(v);
	T_OK(eng_expr_eval(NULL, ctx, &v, &err) == -1 && v == NULL, "no expression is an error");
	eng_expr_free(NULL);
	/* an embedded NUL ends nothing: it is an unexpected character */
	T_OK(eng_expr_parse("1\0+1", 4, &err) == NULL && strstr(err.detail, "at byte 1") != NULL,
	     "a NUL byte in the source is refused at its offset");
	T_OK(eng_expr_parse("'a\0b'", 5, &err) == NULL && strstr(err.detail, "at byte 2") != NULL,
	     "a NUL byte in a string literal is refused at its offset");
	/* truthiness */
	T_OK(!eng_expr_truthy(NULL) && !eng_expr_truthy(json_null()) && eng_expr_truthy(json_true()),
	     "truthiness of NULL, null and true");
}

struct tcase { const char *tmpl; bool html; const char *want; };

static const struct tcase tcases[] = {
	{"plain text", false, "plain text"}, {"", false, ""},
	{"Deal {{ input.deal.name }} for {{input.deal.amount}} ({{ input.deal.ratio }})", false,
	 "Deal Acme & <Co> for 1000 (0.5)"},
	{"Deal {{ input.deal.name }}", true, "Deal Acme &amp; &lt;Co&gt;"},
	{"<b>{{ '\"x\\'' }}</b>", true, "<b>&quot;x&#39;</b>"},
	{"{{ input.missing }}|{{ null }}|{{ true }}|{{ 1.5 * 2 }}|{{ 7 / 2 }}", false, "||true|3.0|3.5"},
	{"{{ input.list }} {{ input.obj }}", false, "[1,2,3] {\"k\":1}"},
	{"{{ input.obj }}", true, "{&quot;k&quot;:1}"},
	{"{{1}}{{2}}{{3}}", false, "123"}, {"a { b } c }}", false, "a { b } c }}"},
	{"{{ input.s }}", false, "h\u00e9llo \U0001F600"},
	{"{{ 0.1 + 0.2 }}", false, "0.30000000000000004"},
	{"{{ 0.1 * 3 }}", false, "0.30000000000000004"}, {"{{ 1.1 }}", false, "1.1"},
};

static void test_templates(void)
{
	mf_err_t err;
	char *out;
	json_t *v;
	char what[256];

	for (size_t i = 0; i < sizeof(tcases) / sizeof(tcases[0]); i++) {
		snprintf(what, sizeof(what), "template %s%s", tcases[i].tmpl, tcases[i].html ? " (html)" : "");
		if (eng_template_render(tcases[i].tmpl, ctx, tcases[i].html, &out, &err) != 0) {
			T_OK(0, what);
			printf("#   %s\n", err.detail);
			continue;
		}
		T_STREQ(out, tcases[i].want, what);
		free(out);
		T_OK(eng_template_check(tcases[i].tmpl, &err) == 0, "and it checks");
	}
	T_OK(eng_template_render("a {{ 1 + }} b", ctx, false, &out, &err) == -1 && out == NULL &&
	     strcmp(err.code, "invalid_expression") == 0 && strstr(err.detail, "template at byte 4") != NULL,
	     "a bad expression is refused at its template offset");
	T_OK(eng_template_check("a {{ 1 + }} b", &err) == -1 && strcmp(err.code, "invalid_expression") == 0,
	     "and the check refuses it");
	T_OK(eng_template_check("x {{ input.a", &err) == -1 && strstr(err.detail, "template at byte 2") != NULL,
	     "an unterminated {{ is refused");
	T_OK(eng_template_render("x {{ 1 }} {{ 2", ctx, false, &out, &err) == -1 && out == NULL,
	     "an unterminated {{ after a good one is refused by render");
	T_OK(eng_template_check("{{ }}", &err) == -1, "an empty {{ }} is refused");
	T_OK(eng_template_check("{{ '}}' }}", &err) == -1, "the first }} closes, even inside a string");
	T_OK(eng_template_render("{{ 1 / 0 }}", ctx, false, &out, &err) == -1 &&
	     strcmp(err.code, "expression_failed") == 0, "an evaluation error fails the render");
	T_OK(eng_template_check("no braces", &err) == 0 && eng_template_check(NULL, &err) == 0, "no {{ checks");

	/* a single expression keeps its type */
	T_OK(eng_template_value("{{ input.deal.amount }}", ctx, &v, &err) == 0 && json_is_integer(v) &&
	     json_integer_value(v) == 1000, "a single expression keeps a number");
	json_decref(v);
	T_OK(eng_template_value("  {{ input.list }}\n", ctx, &v, &err) == 0 && json_is_array(v) &&
	     json_array_size(v) == 3, "blanks around a single expression are allowed, an array stays one");
	json_decref(v);
	T_OK(eng_template_value("{{ input.missing }}", ctx, &v, &err) == 0 && json_is_null(v),
	     "a single missing path is null");
	json_decref(v);
	T_OK(eng_template_value("{{ 1 }}{{ 2 }}", ctx, &v, &err) == 0 && json_is_string(v) &&
	     strcmp(json_string_value(v), "12") == 0, "two expressions render to a string");
	json_decref(v);
	T_OK(eng_template_value("n={{ input.deal.amount }}", ctx, &v, &err) == 0 && json_is_string(v) &&
	     strcmp(json_string_value(v), "n=1000") == 0, "text around one expression renders to a string");
	json_decref(v);
	T_OK(eng_template_value("plain", ctx, &v, &err) == 0 && strcmp(json_string_value(v), "plain") == 0,
	     "no expression is the text itself");
	json_decref(v);
	T_OK(eng_template_value("{{ 1 +}}", ctx, &v, &err) == -1 && v == NULL, "a bad single expression fails");
	T_OK(eng_template_value("{{ x", ctx, &v, &err) == -1 && v == NULL, "an unterminated single {{ fails");
	T_OK(eng_template_value("\xc3\x28 {{ 1 }}", ctx, &v, &err) == -1 && v == NULL,
	     "a template that is not UTF-8 does not become a JSON string");
	/* the expressions of a template share one step budget */
	{
		char *tmpl = repeat("", "{{ 4000 in bigarr }}", 2, "");

		T_OK(eng_template_render(tmpl, ctx, false, &out, &err) == 0 && strcmp(out, "truetrue") == 0,
		     "two scans of 4001 elements fit one template's budget");
		free(out);
		free(tmpl);
		tmpl = repeat("", "{{ 4000 in bigarr }}", 3, "");
		T_OK(eng_template_render(tmpl, ctx, false, &out, &err) == -1 && strstr(err.detail, "steps") != NULL,
		     "three exceed it, though each alone would fit");
		free(tmpl);
	}
	/* output bound */
	{
		char *huge = malloc(ENG_TEMPLATE_MAX_OUT / 2 + 1);
		const char *tmpl;

		memset(huge, 'y', ENG_TEMPLATE_MAX_OUT / 2);
		huge[ENG_TEMPLATE_MAX_OUT / 2] = '\0';
		json_object_set_new(ctx, "huge", json_string(huge));
		free(huge);
		tmpl = "{{ huge }}{{ huge }}";
		T_OK(eng_template_render(tmpl, ctx, false, &out, &err) == 0 && strlen(out) == ENG_TEMPLATE_MAX_OUT,
		     "a render of exactly the output bound");
		free(out);
		tmpl = "{{ huge }}{{ huge }}{{ 1 }}";
		T_OK(eng_template_render(tmpl, ctx, false, &out, &err) == -1 && strstr(err.detail, "output longer") != NULL,
		     "a render over the output bound is refused");
	}
}

int main(void)
{
	mf_err_t err;

	ctx = mf_json_parse(ctx_text, strlen(ctx_text), 64, &err);
	if (ctx == NULL) {
		printf("Bail out! context: %s\n", err.detail);
		return 2;
	}
	test_table();
	test_bounds();
	test_templates();
	json_decref(ctx);
	return t_done();
}
