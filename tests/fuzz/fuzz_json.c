/*
 * fuzz_json.c - strict JSON input: mf_json_parse must never crash, and what
 * it accepts must round-trip through jansson's encoder.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mf_err_t err;
	json_t *j = mf_json_parse((const char *)data, size, 64, &err);

	if (j) {
		char *s = json_dumps(j, JSON_COMPACT);

		if (s == NULL)
			abort();	/* an accepted document must serialise */
		free(s);
		json_decref(j);
	}
	return 0;
}
