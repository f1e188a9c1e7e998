/*
 * test_urlenc.c - form / query field decoding.
 */
#include "core/urlenc.h"
#include "t.h"

static int get(const char *s, const char *name, char *out, size_t n)
{
	return mf_form_get(s, strlen(s), name, out, n);
}

int main(void)
{
	char v[16];

	T_OK(get("a=1&b=2", "b", v, sizeof(v)) == 1 && strcmp(v, "2") == 0, "second field");
	T_OK(get("ab=1&a=2", "a", v, sizeof(v)) == 1 && strcmp(v, "2") == 0, "a prefix is not a match");
	T_OK(get("a=x%2By+z", "a", v, sizeof(v)) == 1 && strcmp(v, "x+y z") == 0, "escapes and plus");
	T_OK(get("a=1&a=2", "a", v, sizeof(v)) == 1 && strcmp(v, "1") == 0, "the first of two wins");
	T_OK(get("a=", "a", v, sizeof(v)) == 1 && v[0] == '\0', "empty value");
	T_OK(get("b=1", "a", v, sizeof(v)) == 0, "absent");
	T_OK(get("a", "a", v, sizeof(v)) == 0, "a name without '=' is not a field");
	T_OK(get("a=%", "a", v, sizeof(v)) == -1 && get("a=%4", "a", v, sizeof(v)) == -1, "truncated escape");
	T_OK(get("a=%zz", "a", v, sizeof(v)) == -1, "bad hex");
	T_OK(get("a=%00", "a", v, sizeof(v)) == -1, "no NUL");
	T_OK(get("a=0123456789abcdef", "a", v, sizeof(v)) == -1, "too long for the buffer");
	T_OK(get("a=0123456789abcde", "a", v, sizeof(v)) == 1, "exactly fits");
	T_OK(mf_form_get(NULL, 0, "a", v, sizeof(v)) == 0, "no query at all");
	return t_done();
}
