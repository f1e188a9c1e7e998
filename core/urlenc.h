/*
 * urlenc.h - application/x-www-form-urlencoded fields, as in query strings
 * and OAuth token request bodies.
 */
#ifndef MF_URLENC_H
#define MF_URLENC_H

#include <stddef.h>

/* Finds the first field called name in s[0..len) ("a=1&b=2"; '&'
 * separated, '+' is a space, %XX escapes) and decodes its value into
 * out (NUL-terminated).  Returns 1 found, 0 absent, -1 when the value is
 * malformed (bad escape, %00) or does not fit in outlen. */
int mf_form_get(const char *s, size_t len, const char *name, char *out, size_t outlen)
	__attribute__((warn_unused_result));

/* Decodes one form-encoded value s[0..n) into out: 0, or -1 as above. */
int mf_form_decode(const char *s, size_t n, char *out, size_t outlen) __attribute__((warn_unused_result));

#endif
