/*
 * fuzz_http1.c - the request head parser and the chunked decoder: never
 * crash, never read outside the input, and keep their own invariants.
 */
#include <stdint.h>
#include <stdlib.h>

#include "gateway/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gw_head_t h;
	gw_parse_err_t e;
	int rc = gw_head_parse((const char *)data, size, 4096, &h, &e);

	if (rc == 1) {
		gw_chunked_t c;
		mf_buf_t body = MF_BUF_INIT;
		size_t used = 0, off = h.head_len;

		if (h.head_len > size || h.target_len == 0 || h.method_len == 0)
			abort();
		/* feed the rest as a chunked body, in two pieces */
		gw_chunked_init(&c);
		for (int piece = 0; piece < 2 && off < size; piece++) {
			size_t n = piece == 0 ? (size - off) / 2 : size - off;

			rc = gw_chunked_feed(&c, (const char *)data + off, n, &used, &body, 1024, &e);
			if (used > n || body.len > 1024)
				abort();
			off += used;
			if (rc != 0)
				break;
		}
		mf_buf_free(&body);
	} else if (rc < 0 && e.status != 400 && e.status != 431 && e.status != 505 && e.status != 417) {
		abort();
	}
	return 0;
}
