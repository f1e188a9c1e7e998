/*
 * fuzz_redact.c - redaction of fuzzed text and JSON with fuzzed secrets.
 * Input: byte 0 picks max_out and max_depth; then up to 4 secret lines,
 * an empty line, and the body (without an empty line: the first line is
 * the one secret).  Property: no secret of 4 bytes or more survives in the
 * text copy or in any string or key of the JSON copy (markers count as
 * separators: a secret may not straddle one either), the text copy stays
 * within max_out, and a member named "password" or "custom_field" always
 * reads "[redacted]".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXSEC 4

/* Copy of s[0..n) with every marker replaced by a NUL byte, which no
 * secret (a C string) can contain. */
static char *unmark(const char *s, size_t n, size_t *outn)
{
	static const char *const marks[] = { CX_REDACT_TRUNCATED, CX_REDACTED, CX_REDACT_TOO_DEEP };
	char *c = malloc(n + 1);
	size_t k = 0;

	if (c == NULL)
		abort();
	for (size_t i = 0; i < n;) {
		size_t m = 0;

		for (int j = 0; j < 3 && !m; j++)
			if (n - i >= strlen(marks[j]) && memcmp(s + i, marks[j], strlen(marks[j])) == 0)
				m = strlen(marks[j]);
		if (m) {
			c[k++] = '\0';
			i += m;
		} else {
			c[k++] = s[i++];
		}
	}
	*outn = k;
	return c;
}

static void check_clean(const char *s, size_t n, char *const *secrets, int nsec)
{
	size_t un;
	char *u = unmark(s, n, &un);

	for (int i = 0; i < nsec; i++)
		if (strlen(secrets[i]) >= CX_REDACT_SECRET_MIN && memmem(u, un, secrets[i], strlen(secrets[i])))
			abort();
	free(u);
}

static void walk(const json_t *j, char *const *secrets, int nsec)
{
	const char *key;
	json_t *v;
	size_t i;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		json_object_foreach((json_t *)j, key, v) {
			check_clean(key, strlen(key), secrets, nsec);
			if ((!strcmp(key, "password") || !strcmp(key, "custom_field")) &&
			    (!json_is_string(v) || strcmp(json_string_value(v), CX_REDACTED)))
				abort();
			walk(v, secrets, nsec);
		}
		break;
	case JSON_ARRAY:
		json_array_foreach(j, i, v)
			walk(v, secrets, nsec);
		break;
	case JSON_STRING:
		check_clean(json_string_value(j), json_string_length(j), secrets, nsec);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fields[] = { "Custom-Field", NULL };
	char *secrets[MAXSEC + 1] = { NULL };
	const char *body, *p, *end = (const char *)data + size;
	size_t blen, max_out;
	int nsec = 0, depth;
	char *text;
	json_t *j;

	if (size < 1)
		return 0;
	max_out = 16 + (size_t)data[0] * 2;
	depth = 1 + data[0] % 8;
	p = (const char *)data + 1;
	/* secrets up to an empty line */
	{
		const char *blank = memmem(p, (size_t)(end - p), "\n\n", 2);
		const char *stop = blank ? blank : memchr(p, '\n', (size_t)(end - p));

		if (stop == NULL)
			stop = end;
		while (p < stop && nsec < MAXSEC) {
			const char *nl = memchr(p, '\n', (size_t)(stop - p));
			const char *e = nl ? nl : stop;

			secrets[nsec] = strndup(p, (size_t)(e - p));	/* cut at a NUL too */
			if (secrets[nsec] == NULL)
				abort();
			nsec++;
			p = nl ? nl + 1 : stop;
		}
		body = stop < end ? stop + (blank ? 2 : 1) : end;
		if (body > end)
			body = end;
	}
	blen = (size_t)(end - body);

	text = cx_redact_text(body, blen, (const char *const *)secrets, max_out);
	if (text == NULL)
		abort();
	if (strlen(text) > (max_out < CX_REDACT_TEXT_MIN ? CX_REDACT_TEXT_MIN : max_out))
		abort();
	check_clean(text, strlen(text), secrets, nsec);
	free(text);

	j = json_loadb(body, blen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (j) {
		json_t *r = cx_redact_json(j, fields, (const char *const *)secrets, depth);

		if (r == NULL)
			abort();
		walk(r, secrets, nsec);
		json_decref(r);
		json_decref(j);
	}
	for (int i = 0; i < nsec; i++)
		free(secrets[i]);
	return 0;
}
