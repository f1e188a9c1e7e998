/*
 * test_canon.c - canonical JSON (core/canon.c) against fixed vectors; the
 * same vectors are checked against the Python reference in
 * tests/integration/it_templates.py, so both produce the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "core/canon.h"
#include "core/json.h"
#include "t.h"

static const struct { const char *in, *out; } vectors[] = {
	{ "{}", "{}" },
	{ "[]", "[]" },
	{ "{ \"b\" : 1, \"a\" : [ true, false, null ] }", "{\"a\":[true,false,null],\"b\":1}" },
	{ "{\"z\":{\"y\":1,\"x\":2},\"A\":0}", "{\"A\":0,\"z\":{\"x\":2,\"y\":1}}" },
	/* UTF-8 byte order: "é" (c3 a9) after "z", "\u20ac" (e2 82 ac) after it, an astral one last */
	{ "{\"\\u20ac\":3,\"\xc3\xa9\":2,\"z\":1,\"\\ud83d\\ude00\":4}",
	  "{\"z\":1,\"\xc3\xa9\":2,\"\xe2\x82\xac\":3,\"\xf0\x9f\x98\x80\":4}" },
	{ "[\"a/b\", \"\\u00e9\", \"\\u007f\"]", "[\"a/b\",\"\xc3\xa9\",\"\x7f\"]" },
	{ "[\"q\\\"b\\\\s\\n\\r\\t\\b\\f\\u0001\\u001f\\u001F\"]",
	  "[\"q\\\"b\\\\s\\n\\r\\t\\b\\f\\u0001\\u001f\\u001f\"]" },
	{ "[0, -0, 12, -9223372036854775808, 9223372036854775807]",
	  "[0,0,12,-9223372036854775808,9223372036854775807]" },
	{ "{\"msg\":\"{{ params.name }} <b>\\u2028</b>\"}", "{\"msg\":\"{{ params.name }} <b>\xe2\x80\xa8</b>\"}" },
};

static char *canon_of(const char *in, int *rc, char *bad, size_t bad_len)
{
	mf_err_t err;
	json_t *v = mf_json_parse(in, strlen(in), 64, &err);
	mf_buf_t b = MF_BUF_INIT;

	if (v == NULL) {
		*rc = -9;
		return NULL;
	}
	*rc = mf_json_canonical(v, &b, bad, bad_len);
	json_decref(v);
	if (*rc < 0) {
		mf_buf_free(&b);
		return NULL;
	}
	return mf_buf_detach(&b, NULL);
}

int main(void)
{
	char bad[256];
	int rc;

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char *got = canon_of(vectors[i].in, &rc, bad, sizeof(bad));

		T_STREQ(got, vectors[i].out, vectors[i].in);
		free(got);
	}
	T_OK(canon_of("[1.5]", &rc, bad, sizeof(bad)) == NULL && rc == -2 && strcmp(bad, "/0") == 0,
	     "a real is refused with its pointer");
	T_OK(canon_of("{\"a\":{\"b/c\":[1,2,1e3]}}", &rc, bad, sizeof(bad)) == NULL && rc == -2 &&
	     strcmp(bad, "/a/b~1c/2") == 0, "an exponent is a real too, the pointer escapes '/'");
	T_OK(canon_of("{\"a\":1,\"b\":2.0}", &rc, bad, sizeof(bad)) == NULL && rc == -2 && strcmp(bad, "/b") == 0,
	     "2.0 is not an integer");
	T_OK(canon_of("[1.0]", &rc, NULL, 0) == NULL && rc == -2, "no path buffer is fine");
	{
		char *got = canon_of("{\"b\":[1,{\"d\":1,\"c\":2}],\"a\":\"x\"}", &rc, bad, sizeof(bad));

		T_OK(got && bad[0] == '\0', "the path is empty after success");
		free(got);
	}
	return t_done();
}
