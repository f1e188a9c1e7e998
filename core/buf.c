/*
 * buf.c - growable buffer (see buf.h for the invariants).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

int mf_buf_reserve(mf_buf_t *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (extra > SIZE_MAX - b->len - 1)
		return -1;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int mf_buf_add(mf_buf_t *b, const void *p, size_t n)
{
	if (mf_buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int mf_buf_adds(mf_buf_t *b, const char *s)
{
	return mf_buf_add(b, s, strlen(s));
}

int mf_buf_addc(mf_buf_t *b, char c)
{
	return mf_buf_add(b, &c, 1);
}

int mf_buf_addf(mf_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || mf_buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int mf_buf_add_json_str(mf_buf_t *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start_len = b->len;

	if (mf_buf_reserve(b, n + 2) < 0 || mf_buf_addc(b, '"') < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t elen = 0;

		switch (c) {
		case '"':  esc[0] = '\\'; esc[1] = '"'; elen = 2; break;
		case '\\': esc[0] = '\\'; esc[1] = '\\'; elen = 2; break;
		case '\n': esc[0] = '\\'; esc[1] = 'n'; elen = 2; break;
		case '\r': esc[0] = '\\'; esc[1] = 'r'; elen = 2; break;
		case '\t': esc[0] = '\\'; esc[1] = 't'; elen = 2; break;
		default:
			if (c < 0x20 || c == 0x7f) {
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				elen = 6;
			}
		}
		if ((elen ? mf_buf_add(b, esc, elen) : mf_buf_addc(b, (char)c)) < 0)
			goto oom;
	}
	if (mf_buf_addc(b, '"') < 0)
		goto oom;
	return 0;
oom:
	b->len = start_len;
	if (b->data)
		b->data[b->len] = '\0';
	return -1;
}

void mf_buf_reset(mf_buf_t *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void mf_buf_free(mf_buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *mf_buf_detach(mf_buf_t *b, size_t *len)
{
	char *p = b->data;

	if (p == NULL)
		p = strdup("");
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}
