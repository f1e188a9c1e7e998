/*
 * fuzz_masterkey.c - the master key list parser: never reads out of
 * bounds, and whatever it accepts is a ring of 1 to 16 distinct keys whose
 * kids are 16 lower-case hex characters and found again by their kid.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/masterkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mf_master_ring_t *r = NULL;
	mf_err_t err;
	int n;

	if (sodium_init() < 0)
		abort();
	if (mf_master_ring_parse((const char *)data, size, &r, &err) < 0) {
		if (r != NULL || (err.status != 400 && err.status != 500))
			abort();
		return 0;
	}
	n = mf_master_ring_count(r);
	if (n < 1 || n > MF_MASTER_MAX_KEYS)
		abort();
	for (int i = 0; i < n; i++) {
		const char *kid = mf_master_ring_kid(r, i);

		if (strlen(kid) != MF_MASTER_KID_HEX || strspn(kid, "0123456789abcdef") != MF_MASTER_KID_HEX ||
		    mf_master_ring_find(r, kid) != i || mf_master_ring_key(r, i) == NULL)
			abort();
	}
	mf_master_ring_unref(r);
	return 0;
}
