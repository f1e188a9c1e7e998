/* test_buf.c - mf_buf_t: growth, formatting, JSON string escaping. */
#include <stdlib.h>

#include "core/buf.h"
#include "t.h"

int main(void)
{
	mf_buf_t b = MF_BUF_INIT;
	char *p;
	size_t len;

	T_OK(mf_buf_adds(&b, "abc") == 0 && b.len == 3, "append a string");
	T_STREQ(b.data, "abc", "data is NUL-terminated");
	for (int i = 0; i < 1000; i++)
		if (mf_buf_addc(&b, 'x') < 0)
			break;
	T_OK(b.len == 1003 && b.data[1003] == '\0', "grows past its first allocation");
	mf_buf_reset(&b);
	T_OK(b.len == 0 && b.data[0] == '\0', "reset keeps memory, empties content");
	T_OK(mf_buf_addf(&b, "%d-%s", 42, "z") == 0, "formatted append");
	T_STREQ(b.data, "42-z", "formatted content");
	mf_buf_reset(&b);
	T_OK(mf_buf_add_json_str(&b, "a\"b\\c\n\x01", 7) == 0, "json string");
	T_STREQ(b.data, "\"a\\\"b\\\\c\\n\\u0001\"", "escapes quotes, backslash, newline and controls");
	mf_buf_reset(&b);
	T_OK(mf_buf_add_json_str(&b, "a\0b", 3) == 0, "embedded NUL");
	T_STREQ(b.data, "\"a\\u0000b\"", "NUL is escaped, not truncating");
	p = mf_buf_detach(&b, &len);
	T_OK(p && len == 10 && b.data == NULL && b.len == 0, "detach hands over the data");
	free(p);
	T_OK(mf_buf_reserve(&b, (size_t)-1) < 0 && b.data == NULL, "impossible reservation fails cleanly");
	mf_buf_free(&b);
	mf_buf_free(&b);
	return t_done();
}
