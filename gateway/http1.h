/*
 * http1.h - strict HTTP/1.1 request parsing, with no I/O: the request head
 * from a contiguous buffer, and an incremental chunked-body decoder.  Kept
 * apart from the connection code so unit tests and the fuzzer drive it
 * directly.
 */
#ifndef GW_HTTP1_H
#define GW_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define GW_MAX_HEADERS 100

typedef struct gw_hdr {
	const char *name, *value;
	size_t name_len, value_len;
} gw_hdr_t;

typedef struct gw_head {
	const char *method, *target;
	size_t method_len, target_len;
	int minor;			/* HTTP/1.<minor>, 0 or 1 */
	int nhdrs;
	gw_hdr_t hdrs[GW_MAX_HEADERS];
	size_t head_len;		/* bytes of the head, final CRLFCRLF included */
	int64_t content_length;		/* -1 when absent */
	bool chunked, keep_alive, expect_continue;
} gw_head_t;

/* Error detail of a failed parse: the HTTP status to answer and a problem
 * code / text (constant strings). */
typedef struct gw_parse_err {
	int status;
	const char *code, *detail;
} gw_parse_err_t;

/*
 * Parses the head at the start of buf.  Returns 1 when a whole head was
 * parsed (pointers in h point into buf), 0 when more bytes are needed
 * (and fewer than max_head bytes are present), -1 on error (e filled:
 * 400 malformed or smuggling shape, 431 head over max_head, 505 version).
 */
int gw_head_parse(const char *buf, size_t len, size_t max_head, gw_head_t *h, gw_parse_err_t *e);

/* Chunked transfer decoding, fed as bytes arrive. */
typedef struct gw_chunked {
	int state;
	uint64_t remaining;		/* bytes left in the current chunk */
	size_t line_len;		/* bytes of the current size/trailer line */
	int ntrailers;
	bool size_digits, in_ext;
} gw_chunked_t;

void gw_chunked_init(gw_chunked_t *c);
/* Decodes from in[0..len), appending data to body.  *used = bytes taken.
 * Returns 1 when the body (and trailers) ended, 0 when more input is
 * needed, -1 on error (e: 400 malformed, 413 body over max_body). */
int gw_chunked_feed(gw_chunked_t *c, const char *in, size_t len, size_t *used,
		    mf_buf_t *body, size_t max_body, gw_parse_err_t *e);

/* Case-insensitive comparison of a counted string with a C string. */
bool gw_strieq(const char *s, size_t n, const char *lit);

#endif
