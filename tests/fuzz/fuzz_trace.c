/*
 * fuzz_trace.c - traceparent parsing: never reads outside the input, and
 * whatever it accepts is a valid trace that formats as version 00 and
 * parses back to the same ids, which are the ones at the input's fixed
 * offsets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	mf_trace_t t, u, c;
	char h[MF_TRACE_HEADER_SIZE];
	size_t lead = 0;

	if (mf_trace_parse(&t, s, size, NULL) != 0)
		return 0;
	while (lead < size && (s[lead] == ' ' || s[lead] == '\t'))
		lead++;
	if (!mf_trace_valid(&t) || memcmp(t.trace_id, s + lead + 3, 32) != 0 ||
	    memcmp(t.parent_id, s + lead + 36, 16) != 0)
		abort();
	if (s[lead] == 'f' && s[lead + 1] == 'f')
		abort();	/* version ff is never accepted */
	if (mf_trace_format(&t, h, sizeof(h)) != 0 || strlen(h) != MF_TRACE_HEADER_LEN)
		abort();
	if (mf_trace_parse(&u, h, strlen(h), NULL) != 0 || memcmp(&t, &u, sizeof(t)) != 0)
		abort();
	mf_trace_child(&t, &c);
	if (!mf_trace_valid(&c) || strcmp(c.trace_id, t.trace_id) != 0 || c.flags != t.flags)
		abort();
	return 0;
}
