/*
 * fuzz_duration.c - ISO 8601 durations: parsing never crashes, an accepted
 * value is within 0..10 years, its canonical form parses back to the same
 * seconds and is a fixed point; and any value in range formats to something
 * that parses back (the input bytes also serve as a number).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(long long x)
{
	char buf[MF_DURATION_BUFSZ], again[MF_DURATION_BUFSZ];
	long long back = -1;

	if (mf_duration_format(x, buf, sizeof(buf)) != 0)
		abort();	/* every in-range value has a canonical form */
	if (mf_duration_parse(buf, &back, NULL) != 0 || back != x)
		abort();	/* ...which parses back to the same seconds */
	if (mf_duration_format(back, again, sizeof(again)) != 0 || strcmp(buf, again) != 0)
		abort();	/* ...and is its own canonical form */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[128];
	long long secs = -1;
	mf_err_t err;
	uint64_t n = 0;

	/* durations are short; a longer input is still a (refused) string */
	if (size >= sizeof(s))
		size = sizeof(s) - 1;
	memcpy(s, data, size);
	s[size] = '\0';
	if (mf_duration_parse(s, &secs, &err) == 0) {
		if (secs < 0 || secs > MF_DURATION_MAX_SECONDS)
			abort();
		round_trip(secs);
	} else if (err.status != 400 || strcmp(err.code, "invalid_duration") != 0 ||
		   memchr(err.detail, '\0', sizeof(err.detail)) == NULL) {
		abort();	/* a refusal always says why */
	}
	for (size_t i = 0; i < size && i < 8; i++)
		n = n << 8 | data[i];
	round_trip((long long)(n % (uint64_t)(MF_DURATION_MAX_SECONDS + 1)));
	return 0;
}
