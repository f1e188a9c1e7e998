/* test_json.c - strict JSON input: limits, duplicates, UTF-8, NUL. */
#include "core/json.h"
#include "t.h"

static json_t *parse(const char *s, mf_err_t *err)
{
	return mf_json_parse(s, strlen(s), 64, err);
}

static char *nest(int depth)
{
	static char buf[512];
	int n = 0;

	for (int i = 0; i < depth; i++)
		buf[n++] = '[';
	for (int i = 0; i < depth; i++)
		buf[n++] = ']';
	buf[n] = '\0';
	return buf;
}

int main(void)
{
	mf_err_t err;
	json_t *j;

	j = parse("{\"a\":[1,2,{\"b\":\"c\"}]}", &err);
	T_OK(j && json_is_object(j), "a valid object parses");
	json_decref(j);

	j = parse("{\"url\": \"ok\", \"url\": \"http://169.254.169.254\"}", &err);
	T_OK(j == NULL && err.status == 400, "duplicate keys are rejected");
	T_STREQ(err.code, "invalid_json", "duplicate keys: code");
	T_OK(strstr(err.detail, "169.254") == NULL, "the detail does not echo the input");

	j = parse("{\"a\":\"\\u0000\"}", &err);
	T_OK(j == NULL && err.status == 400, "\\u0000 is rejected");
	j = parse("{\"a\":\"\xc3\x28\"}", &err);
	T_OK(j == NULL && err.status == 400, "invalid UTF-8 is rejected");
	j = parse("{\"a\":\"\xed\xa0\x80\"}", &err);
	T_OK(j == NULL, "an encoded surrogate is rejected");
	j = parse("{\"a\":\"\\ud800\"}", &err);
	T_OK(j == NULL, "a lone surrogate escape is rejected");
	j = parse("\"just a string\"", &err);
	T_OK(j == NULL, "a bare string at the top level is rejected");
	j = parse("{\"a\":1} trailing", &err);
	T_OK(j == NULL, "trailing garbage is rejected");
	j = mf_json_parse("", 0, 64, &err);
	T_OK(j == NULL && err.status == 400, "an empty body is rejected");

	j = parse(nest(64), &err);
	T_OK(j != NULL, "depth 64 is accepted");
	json_decref(j);
	j = parse(nest(65), &err);
	T_OK(j == NULL && err.status == 400, "depth 65 is rejected");
	T_STREQ(err.code, "json_too_deep", "depth: code");
	T_OK(mf_json_depth("[\"[[[[\"]", 8, 10) == 1, "brackets inside strings do not count");
	T_OK(mf_json_depth("[\"\\\"[[[\"]", 9, 10) == 1, "escaped quotes do not end the string");
	T_OK(mf_json_depth("[[[[[[", 6, 3) == 4, "the scan stops at limit + 1");
	return t_done();
}
