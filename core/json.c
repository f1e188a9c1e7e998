/*
 * json.c - strict JSON input (see json.h).
 *
 * jansson already rejects invalid UTF-8, "\u0000" (unless JSON_ALLOW_NUL)
 * and, with JSON_REJECT_DUPLICATES, repeated keys; what it lacks is a depth
 * limit below its compile-time 2048, so the depth is checked by a linear
 * scan first, before any recursion happens.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"

int mf_json_depth(const char *buf, size_t len, int limit)
{
	int depth = 0, max = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (in_str) {
			if (c == '\\')
				i++;	/* skip the escaped character */
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			break;
		case '[':
		case '{':
			if (++depth > max) {
				max = depth;
				if (max > limit)
					return limit + 1;
			}
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		}
	}
	return max;
}

json_t *mf_json_parse(const char *buf, size_t len, int max_depth, mf_err_t *err)
{
	json_error_t jerr;
	json_t *j;
	char *near;

	if (len == 0) {
		mf_err_set(err, 400, "invalid_json", "request body is empty; a JSON object is required");
		return NULL;
	}
	if (max_depth <= 0)
		max_depth = MF_JSON_MAX_DEPTH_DEFAULT;
	if (mf_json_depth(buf, len, max_depth) > max_depth) {
		mf_err_set(err, 400, "json_too_deep", "JSON nesting exceeds the limit of %d", max_depth);
		return NULL;
	}
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		/* jansson quotes the offending input after " near "; the detail
		 * goes back to clients and into logs, so keep only the reason. */
		near = strstr(jerr.text, " near ");
		if (near)
			*near = '\0';
		mf_err_set(err, 400, "invalid_json", "invalid JSON at line %d, column %d: %s",
			   jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	return j;
}

void mf_json_pointer(char *out, size_t len, const char *prefix, const char *key)
{
	int w = snprintf(out, len, "%s/", prefix);
	size_t o = w < 0 ? 0 : (size_t)w < len ? (size_t)w : len - 1;

	for (size_t i = 0; key[i] && i < 128 && o + 3 < len; i++) {
		if (key[i] == '~' || key[i] == '/') {
			out[o++] = '~';
			out[o++] = key[i] == '~' ? '0' : '1';
		} else {
			out[o++] = key[i];
		}
	}
	out[o] = '\0';
}
