/* test_http1.c - the strict request parser and the chunked decoder. */
#include <stdlib.h>

#include "gateway/http1.h"
#include "t.h"

static int parse(const char *s, gw_head_t *h, gw_parse_err_t *e)
{
	return gw_head_parse(s, strlen(s), 8192, h, e);
}

static int status_of(const char *s)
{
	gw_head_t h;
	gw_parse_err_t e;
	int rc = parse(s, &h, &e);

	return rc < 0 ? e.status : rc == 0 ? 0 : 200;
}

static int chunked(const char *in, size_t len, mf_buf_t *body, size_t max, size_t *used)
{
	gw_chunked_t c;
	gw_parse_err_t e;
	int rc;

	gw_chunked_init(&c);
	mf_buf_reset(body);
	rc = gw_chunked_feed(&c, in, len, used, body, max, &e);
	return rc < 0 ? -e.status : rc;
}

int main(void)
{
	gw_head_t h;
	gw_parse_err_t e;
	mf_buf_t body = MF_BUF_INIT;
	size_t used;
	const char *two = "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Long:   spaced value  \r\n\r\n"
			  "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";

	T_OK(parse(two, &h, &e) == 1, "a valid head parses");
	T_OK(h.method_len == 3 && !memcmp(h.method, "GET", 3), "method");
	T_OK(h.target_len == 6 && !memcmp(h.target, "/a?x=1", 6), "target with query");
	T_OK(h.minor == 1 && h.keep_alive && h.content_length == -1 && !h.chunked, "HTTP/1.1 defaults");
	T_OK(h.nhdrs == 2 && h.hdrs[1].value_len == 12 && !memcmp(h.hdrs[1].value, "spaced value", 12),
	     "header values are trimmed");
	T_OK(parse(two + h.head_len, &h, &e) == 1 && h.target[1] == 'b', "pipelined: the next head follows");

	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\n") == 0, "incomplete head asks for more");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n") == 200, "content-length");
	T_OK(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", &h, &e) == 1 && h.chunked,
	     "chunked, case-insensitive");
	T_OK(parse("GET / HTTP/1.0\r\n\r\n", &h, &e) == 1 && !h.keep_alive, "HTTP/1.0 closes by default");
	T_OK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h, &e) == 1 && h.keep_alive,
	     "HTTP/1.0 keep-alive on request");
	T_OK(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n", &h, &e) == 1 && !h.keep_alive,
	     "Connection: close in a list");
	T_OK(parse("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", &h, &e) == 1, "a leading empty line is tolerated");
	T_OK(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &h, &e) == 1, "asterisk-form for OPTIONS");
	T_OK(parse("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", &h, &e) == 1 &&
	     h.expect_continue, "Expect: 100-continue");

	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n") == 400, "CL + TE");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == 400, "two CLs");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n") == 400, "equal CLs");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n") == 400, "CL list");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n") == 400, "negative CL");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999999999999999\r\n\r\n") == 400, "CL overflow");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n") == 400, "other codings");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n") == 400,
	     "two TE headers");
	T_OK(status_of("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == 400, "TE in HTTP/1.0");
	T_OK(status_of("GET / HTTP/1.1\r\nHost : h\r\n\r\n") == 400, "space before colon");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n") == 400, "obs-fold");
	T_OK(status_of("GET / HTTP/1.1\nHost: h\n\n") == 400, "bare LF");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n") == 400, "bare CR in a value");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01" "b\r\n\r\n") == 400, "control byte in a value");
	T_OK(status_of("GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n") == 400, "absolute-form");
	T_OK(status_of("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n") == 400, "space in target");
	T_OK(status_of("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n") == 400, "raw non-ASCII in target");
	T_OK(status_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == 505, "HTTP/2.0 is 505");
	T_OK(status_of("GET / HTTP/1.1x\r\nHost: h\r\n\r\n") == 400, "malformed version");
	T_OK(status_of("GET / HTTP/1.1\r\n\r\n") == 400, "HTTP/1.1 needs Host");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400, "two Host headers");
	T_OK(status_of("GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n") == 417, "unknown expectation");
	T_OK(status_of("G@T / HTTP/1.1\r\nHost: h\r\n\r\n") == 400, "method must be a token");
	{
		char big[9000];

		memset(big, 'a', sizeof(big));
		memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
		T_OK(gw_head_parse(big, sizeof(big), 8192, &h, &e) < 0 && e.status == 431, "head over the limit is 431");
	}

	T_OK(chunked("4\r\nWiki\r\n5;ext=v\r\npedia\r\n0\r\n\r\n", 30, &body, 100, &used) == 1, "chunked body decodes");
	T_STREQ(body.data, "Wikipedia", "chunked content");
	T_OK(used == 30, "the whole body is consumed");
	T_OK(chunked("4\r\nWiki\r\n0\r\nX-T: 1\r\n\r\nNEXT", 26, &body, 100, &used) == 1 && used == 22,
	     "trailers skipped, the next request left untouched");
	T_OK(chunked("4\r\nWi", 5, &body, 100, &used) == 0 && used == 5, "partial input asks for more");
	T_OK(chunked("zz\r\n", 4, &body, 100, &used) == -400, "non-hex size");
	T_OK(chunked("-1\r\n", 4, &body, 100, &used) == -400, "signed size");
	T_OK(chunked("0x4\r\n", 5, &body, 100, &used) == -400, "0x prefix");
	T_OK(chunked("4 \r\n", 4, &body, 100, &used) == -400, "space after size");
	T_OK(chunked("\r\n", 2, &body, 100, &used) == -400, "empty size");
	T_OK(chunked("ffffffffffffffffff\r\n", 20, &body, SIZE_MAX, &used) == -400, "size overflow");
	T_OK(chunked("4\r\nWikiXX", 9, &body, 100, &used) == -400, "CRLF after data is required");
	T_OK(chunked("65\r\n", 4, &body, 100, &used) == -413, "a chunk over the limit is 413 before its data");
	T_OK(chunked("40\r\n" "0123456789012345678901234567890123456789012345678901234567890123" "\r\n40\r\n", 74,
		     &body, 100, &used) == -413, "the sum over the limit is 413");
	mf_buf_free(&body);
	return t_done();
}
