/*
 * fuzz_urlenc.c - form/query field decoding: never reads or writes out of
 * bounds, and a decoded value is NUL-free, fits, and re-encodes to a field
 * that decodes to the same value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/urlenc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "grant_type", "client_id", "limit", "cursor", "a" };
	char out[64], again[64], enc[3 * 64 + 8];

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		int rc = mf_form_get((const char *)data, size, names[k], out, sizeof(out));
		size_t n, e = 0;

		if (rc != 1)
			continue;
		n = strlen(out);
		if (n >= sizeof(out))
			abort();
		e = (size_t)sprintf(enc, "%s=", names[k]);
		for (size_t i = 0; i < n; i++)
			e += (size_t)sprintf(enc + e, "%%%02X", (unsigned char)out[i]);
		if (mf_form_get(enc, e, names[k], again, sizeof(again)) != 1 || strcmp(out, again) != 0)
			abort();
	}
	return 0;
}
