/*
 * http1.c - strict HTTP/1.1 request head parser and chunked decoder (see
 * http1.h).
 *
 * Strict on purpose: a front door that accepts what a proxy in front of it
 * reads differently is how requests get smuggled.  So: bare LF, obs-fold,
 * whitespace before ':', control characters in values, Content-Length
 * with Transfer-Encoding, repeated Content-Length (even equal), any
 * transfer coding but a lone "chunked", and sloppy chunk sizes are all
 * refused rather than guessed at.
 */
#include <string.h>

#include "gateway/http1.h"

static const char tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
	['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
	['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
	['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
	['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
	['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
	['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
	['y'] = 1, ['z'] = 1,
};

static int fail(gw_parse_err_t *e, int status, const char *code, const char *detail)
{
	e->status = status;
	e->code = code;
	e->detail = detail;
	return -1;
}

bool gw_strieq(const char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char a = s[i], b = lit[i];

		if (b == '\0')
			return false;
		if (a >= 'A' && a <= 'Z')
			a = (char)(a + 32);
		if (b >= 'A' && b <= 'Z')
			b = (char)(b + 32);
		if (a != b)
			return false;
	}
	return lit[i] == '\0';
}

/* Does the comma-separated list s contain token tok (case-insensitive)? */
static bool list_has(const char *s, size_t n, const char *tok)
{
	size_t i = 0;

	while (i < n) {
		size_t start, end;

		while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
			i++;
		start = i;
		while (i < n && s[i] != ',')
			i++;
		end = i;
		while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
			end--;
		if (end > start && gw_strieq(s + start, end - start, tok))
			return true;
	}
	return false;
}

static int semantics(gw_head_t *h, gw_parse_err_t *e)
{
	int ncl = 0, nte = 0, nhost = 0;
	bool close = false, keep = false;

	h->content_length = -1;
	h->chunked = h->expect_continue = false;
	for (int i = 0; i < h->nhdrs; i++) {
		const gw_hdr_t *x = &h->hdrs[i];

		if (gw_strieq(x->name, x->name_len, "content-length")) {
			int64_t v = 0;

			if (++ncl > 1)
				return fail(e, 400, "bad_request", "more than one Content-Length header");
			if (x->value_len == 0 || x->value_len > 18)
				return fail(e, 400, "bad_request", "invalid Content-Length");
			for (size_t k = 0; k < x->value_len; k++) {
				if (x->value[k] < '0' || x->value[k] > '9')
					return fail(e, 400, "bad_request", "invalid Content-Length");
				v = v * 10 + (x->value[k] - '0');
			}
			h->content_length = v;
		} else if (gw_strieq(x->name, x->name_len, "transfer-encoding")) {
			if (++nte > 1 || !gw_strieq(x->value, x->value_len, "chunked"))
				return fail(e, 400, "bad_request", "only a single Transfer-Encoding: chunked is supported");
			h->chunked = true;
		} else if (gw_strieq(x->name, x->name_len, "host")) {
			if (++nhost > 1)
				return fail(e, 400, "bad_request", "more than one Host header");
		} else if (gw_strieq(x->name, x->name_len, "connection")) {
			close |= list_has(x->value, x->value_len, "close");
			keep |= list_has(x->value, x->value_len, "keep-alive");
		} else if (gw_strieq(x->name, x->name_len, "expect")) {
			if (!gw_strieq(x->value, x->value_len, "100-continue"))
				return fail(e, 417, "expectation_failed", "only Expect: 100-continue is supported");
			h->expect_continue = true;
		}
	}
	if (ncl && nte)
		return fail(e, 400, "bad_request", "Content-Length and Transfer-Encoding together");
	if (nte && h->minor == 0)
		return fail(e, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
	if (h->minor == 1 && nhost == 0)
		return fail(e, 400, "bad_request", "the Host header is required");
	h->keep_alive = h->minor == 1 ? !close : (keep && !close);
	return 1;
}

int gw_head_parse(const char *buf, size_t len, size_t max_head, gw_head_t *h, gw_parse_err_t *e)
{
	const char *p, *end, *line_end;
	size_t skip = 0, scan = len < max_head ? len : max_head;
	const char *term = NULL;

	/* Tolerate empty lines before a request (RFC 9112 2.2). */
	while (skip + 1 < len && skip < 8 && buf[skip] == '\r' && buf[skip + 1] == '\n')
		skip += 2;
	/* line by line with memchr: every LF must follow a CR, and the first
	 * empty line ends the head.  Heads carry long lines (bearer tokens),
	 * so this jumps rather than testing each byte. */
	for (const char *q = buf + skip, *lim = buf + scan; q < lim;) {
		const char *nl = memchr(q, '\n', (size_t)(lim - q));
		size_t i;

		if (nl == NULL)
			break;
		i = (size_t)(nl - buf);
		if (i == 0 || buf[i - 1] != '\r')
			return fail(e, 400, "bad_request", "bare LF line ending");
		if (i >= skip + 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
			if (i + 1 <= max_head)
				term = nl - 3;
			break;
		}
		q = nl + 1;
	}
	if (term == NULL) {
		if (len >= max_head)
			return fail(e, 431, "header_too_large", "request head exceeds the size limit");
		return 0;
	}
	h->head_len = (size_t)(term - buf) + 4;
	end = term + 2;			/* end of the last header line, CRLF included */

	/* request line */
	p = buf + skip;
	line_end = memchr(p, '\r', (size_t)(end - p));
	h->method = p;
	while (p < line_end && tchar[(unsigned char)*p])
		p++;
	h->method_len = (size_t)(p - h->method);
	if (h->method_len == 0 || h->method_len > 16 || p >= line_end || *p != ' ')
		return fail(e, 400, "bad_request", "malformed request line");
	h->target = ++p;
	while (p < line_end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
		p++;
	h->target_len = (size_t)(p - h->target);
	if (h->target_len == 0 || p >= line_end || *p != ' ')
		return fail(e, 400, "bad_request", "malformed request target");
	if (h->target[0] != '/' &&
	    !(h->target_len == 1 && h->target[0] == '*' && gw_strieq(h->method, h->method_len, "OPTIONS")))
		return fail(e, 400, "bad_request", "only origin-form request targets are accepted");
	p++;
	if (line_end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' ||
	    p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
		return fail(e, 400, "bad_request", "malformed HTTP version");
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return fail(e, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported");
	h->minor = p[7] - '0';

	/* header lines */
	h->nhdrs = 0;
	p = line_end + 2;
	while (p < end) {
		gw_hdr_t *x;
		const char *v, *ve;

		line_end = memchr(p, '\r', (size_t)(end - p));
		if (line_end == NULL || line_end[1] != '\n')
			return fail(e, 400, "bad_request", "bare CR in a header line");
		if (*p == ' ' || *p == '\t')
			return fail(e, 400, "bad_request", "obsolete header line folding");
		if (h->nhdrs == GW_MAX_HEADERS)
			return fail(e, 431, "header_too_large", "too many header fields");
		x = &h->hdrs[h->nhdrs++];
		x->name = p;
		while (p < line_end && tchar[(unsigned char)*p])
			p++;
		x->name_len = (size_t)(p - x->name);
		if (x->name_len == 0 || p >= line_end || *p != ':')
			return fail(e, 400, "bad_request", "malformed header field name");
		v = p + 1;
		while (v < line_end && (*v == ' ' || *v == '\t'))
			v++;
		ve = line_end;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		for (const char *q = v; q < ve; q++) {
			unsigned char c = (unsigned char)*q;

			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return fail(e, 400, "bad_request", "control character in a header value");
		}
		x->value = v;
		x->value_len = (size_t)(ve - v);
		p = line_end + 2;
	}
	return semantics(h, e);
}

enum { C_SIZE, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_TRAILER, C_TRAILER_LF, C_END_LF, C_DONE };

#define CHUNK_LINE_MAX 1024
#define TRAILERS_MAX 32

void gw_chunked_init(gw_chunked_t *c)
{
	memset(c, 0, sizeof(*c));
	c->state = C_SIZE;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int gw_chunked_feed(gw_chunked_t *c, const char *in, size_t len, size_t *used,
		    mf_buf_t *body, size_t max_body, gw_parse_err_t *e)
{
	size_t i = 0;

	while (i < len && c->state != C_DONE) {
		char ch = in[i];

		switch (c->state) {
		case C_SIZE:
			if (++c->line_len > CHUNK_LINE_MAX)
				goto bad;
			if (ch == '\r') {
				if (!c->size_digits)
					goto bad;
				c->state = C_SIZE_LF;
			} else if (c->in_ext) {
				if ((unsigned char)ch < 0x20 && ch != '\t')
					goto bad;
			} else if (ch == ';' && c->size_digits) {
				c->in_ext = true;
			} else {
				int v = hexval(ch);

				if (v < 0 || c->remaining > (UINT64_MAX >> 4))
					goto bad;
				c->remaining = (c->remaining << 4) | (uint64_t)v;
				c->size_digits = true;
				if (c->remaining > max_body || body->len + c->remaining > max_body)
					goto too_large;
			}
			i++;
			break;
		case C_SIZE_LF:
			if (ch != '\n')
				goto bad;
			i++;
			c->line_len = 0;
			c->size_digits = c->in_ext = false;
			c->state = c->remaining ? C_DATA : C_TRAILER;
			break;
		case C_DATA: {
			size_t n = len - i;

			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (mf_buf_add(body, in + i, n) < 0)
				return fail(e, 503, "over_capacity", "out of memory");
			i += n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = C_DATA_CR;
			break;
		}
		case C_DATA_CR:
			if (ch != '\r')
				goto bad;
			i++;
			c->state = C_DATA_LF;
			break;
		case C_DATA_LF:
			if (ch != '\n')
				goto bad;
			i++;
			c->state = C_SIZE;
			break;
		case C_TRAILER:
			if (ch == '\r') {
				c->state = c->line_len ? C_TRAILER_LF : C_END_LF;
			} else {
				if ((unsigned char)ch < 0x20 && ch != '\t')
					goto bad;
				if (c->line_len == 0 && ++c->ntrailers > TRAILERS_MAX)
					goto bad;
				if (++c->line_len > CHUNK_LINE_MAX * 8)
					goto bad;
			}
			i++;
			break;
		case C_TRAILER_LF:
			if (ch != '\n')
				goto bad;
			i++;
			c->line_len = 0;
			c->state = C_TRAILER;
			break;
		case C_END_LF:
			if (ch != '\n')
				goto bad;
			i++;
			c->state = C_DONE;
			break;
		}
	}
	*used = i;
	return c->state == C_DONE ? 1 : 0;
bad:
	*used = i;
	return fail(e, 400, "bad_request", "malformed chunked body");
too_large:
	*used = i;
	return fail(e, 413, "payload_too_large", "request body exceeds the size limit");
}
