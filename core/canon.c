/*
 * canon.c - canonical JSON (see canon.h).  Written out by hand rather than
 * through json_dumps(JSON_COMPACT | JSON_SORT_KEYS): that is close, but
 * it writes \u escapes in upper-case hex, and the definition must not hang
 * on a library's choices that could change between versions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/canon.h"
#include "core/json.h"

static int add_str(mf_buf_t *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;

	if (mf_buf_addc(b, '"') < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7] = "\\u00";
		const char *e = NULL;
		size_t el = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		if (mf_buf_add(b, s + run, i - run) < 0)
			return -1;
		run = i + 1;
		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		default:
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			e = esc;
			el = 6;
		}
		if (mf_buf_add(b, e, el) < 0)
			return -1;
	}
	if (mf_buf_add(b, s + run, n - run) < 0 || mf_buf_addc(b, '"') < 0)
		return -1;
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	/* strcmp compares as unsigned char: UTF-8 byte order */
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int canon(const json_t *v, mf_buf_t *b, char *path, size_t bad_len)
{
	size_t n, at = bad_len ? strlen(path) : 0;
	int rc = 0;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char **keys;
		const char *k;
		json_t *m;
		size_t i = 0;

		n = json_object_size(v);
		keys = malloc((n ? n : 1) * sizeof(*keys));
		if (keys == NULL)
			return -1;
		json_object_foreach((json_t *)v, k, m)
			keys[i++] = k;
		qsort(keys, n, sizeof(*keys), key_cmp);
		rc = mf_buf_addc(b, '{');
		for (i = 0; i < n && rc == 0; i++) {
			if ((i && mf_buf_addc(b, ',') < 0) || add_str(b, keys[i], strlen(keys[i])) < 0 ||
			    mf_buf_addc(b, ':') < 0) {
				rc = -1;
				break;
			}
			if (bad_len)
				mf_json_pointer(path + at, bad_len - at, "", keys[i]);
			rc = canon(json_object_get(v, keys[i]), b, path, bad_len);
			if (rc == 0 && bad_len)
				path[at] = '\0';
		}
		free(keys);
		if (rc == 0 && mf_buf_addc(b, '}') < 0)
			rc = -1;
		return rc;
	}
	case JSON_ARRAY:
		n = json_array_size(v);
		if (mf_buf_addc(b, '[') < 0)
			return -1;
		for (size_t i = 0; i < n; i++) {
			if (i && mf_buf_addc(b, ',') < 0)
				return -1;
			if (bad_len > at)
				snprintf(path + at, bad_len - at, "/%zu", i);
			rc = canon(json_array_get(v, i), b, path, bad_len);
			if (rc < 0)
				return rc;
			if (bad_len)
				path[at] = '\0';
		}
		return mf_buf_addc(b, ']');
	case JSON_STRING:
		return add_str(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return mf_buf_addf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	case JSON_TRUE:
		return mf_buf_adds(b, "true");
	case JSON_FALSE:
		return mf_buf_adds(b, "false");
	case JSON_NULL:
		return mf_buf_adds(b, "null");
	case JSON_REAL:
	default:
		return -2;
	}
}

int mf_json_canonical(const json_t *v, mf_buf_t *out, char *bad_path, size_t bad_len)
{
	if (bad_len)
		bad_path[0] = '\0';
	return canon(v, out, bad_path, bad_len);
}
