/*
 * render.c - the logic-less renderer of render.h.
 *
 * Two passes: parse() turns the whole template into a flat token array,
 * checking every tag and pairing every section with its close (so errors
 * carry exact byte offsets and a broken template never half-renders), then
 * emit() walks the tokens over a stack of scopes.  Recursion only follows
 * section nesting, which parse() caps at MF_RENDER_MAX_DEPTH; loops over
 * arrays are paid for by the work counter and the output cap.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/render.h"

#define NAME_MAX_LEN 255

enum tok_kind { TK_TEXT, TK_VAR, TK_RAW, TK_SECTION, TK_INVERTED, TK_CLOSE };

typedef struct tok {
	enum tok_kind kind;
	size_t off;		/* the tag's (or text's) first byte */
	size_t start, len;	/* text, or the trimmed name */
	size_t end;		/* sections: index of the matching close */
} tok_t;

typedef struct parse {
	const char *tpl;
	size_t len;
	tok_t *toks;
	size_t n, cap;
} parse_t;

typedef struct emit {
	const char *tpl;
	const tok_t *toks;
	const json_t *stack[MF_RENDER_MAX_DEPTH + 2];
	int depth;
	long work;
	mf_buf_t out;
	bool escape;		/* for dump_cb */
	size_t tag_off;		/* for dump_cb's errors */
	mf_render_err_t *err;
} emit_t;

static int fail(mf_render_err_t *err, int status, const char *code, long off, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int fail(mf_render_err_t *err, int status, const char *code, long off, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err->offset = off;
	if (off >= 0)
		mf_err_set(&err->err, status, code, "template at byte %ld: %s", off, msg);
	else
		mf_err_set(&err->err, status, code, "%s", msg);
	return -1;
}

static int oom(mf_render_err_t *err)
{
	return fail(err, 503, "over_capacity", -1, "out of memory");
}

static const char *find2(const char *s, size_t from, size_t len, const char *pat, size_t plen)
{
	const void *p = from <= len ? memmem(s + from, len - from, pat, plen) : NULL;

	return p;
}

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* "." or seg(.seg)*: no empty segment, no leading or trailing dot. */
static bool name_ok(const char *s, size_t n)
{
	bool seg_empty = true;

	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	if (n == 1 && s[0] == '.')
		return true;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (seg_empty)
				return false;
			seg_empty = true;
		} else if (is_name_char(s[i])) {
			seg_empty = false;
		} else {
			return false;
		}
	}
	return !seg_empty;
}

static int push(parse_t *p, enum tok_kind k, size_t off, size_t start, size_t len, mf_render_err_t *err)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 32;
		tok_t *t = realloc(p->toks, cap * sizeof(*t));

		if (t == NULL)
			return oom(err);
		p->toks = t;
		p->cap = cap;
	}
	p->toks[p->n++] = (tok_t){ k, off, start, len, 0 };
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int parse(parse_t *p, mf_render_err_t *err)
{
	const char *s = p->tpl;
	size_t len = p->len, pos = 0;
	size_t open[MF_RENDER_MAX_DEPTH];
	int depth = 0;

	if (len > MF_RENDER_MAX_TPL)
		return fail(err, 400, "template_too_large", -1, "a template is at most %d bytes", MF_RENDER_MAX_TPL);
	while (pos < len) {
		const char *o = find2(s, pos, len, "{{", 2), *c;
		size_t at, cstart, cend, close_len = 2;
		enum tok_kind k = TK_VAR;

		if (o == NULL) {
			if (push(p, TK_TEXT, pos, pos, len - pos, err) < 0)
				return -1;
			break;
		}
		at = (size_t)(o - s);
		if (at > pos && push(p, TK_TEXT, pos, pos, at - pos, err) < 0)
			return -1;
		cstart = at + 2;
		if (cstart < len) {
			switch (s[cstart]) {
			case '{': k = TK_RAW; close_len = 3; cstart++; break;
			case '&': k = TK_RAW; cstart++; break;
			case '#': k = TK_SECTION; cstart++; break;
			case '^': k = TK_INVERTED; cstart++; break;
			case '/': k = TK_CLOSE; cstart++; break;
			case '!': k = TK_TEXT; cstart++; break;	/* a comment: no token */
			default: break;
			}
		}
		c = find2(s, cstart, len, close_len == 3 ? "}}}" : "}}", close_len);
		if (c == NULL)
			return fail(err, 400, "invalid_template", (long)at, "unclosed tag: no \"%s\" after it",
				    close_len == 3 ? "}}}" : "}}");
		cend = (size_t)(c - s);
		pos = cend + close_len;
		if (k == TK_TEXT)
			continue;
		while (cstart < cend && is_space(s[cstart]))
			cstart++;
		while (cend > cstart && is_space(s[cend - 1]))
			cend--;
		if (!name_ok(s + cstart, cend - cstart))
			return fail(err, 400, "invalid_template", (long)cstart,
				    "bad name: a name is \".\" or dot-separated [A-Za-z0-9_-] segments (at most %d bytes)",
				    NAME_MAX_LEN);
		if (k == TK_CLOSE) {
			tok_t *sec;

			if (depth == 0)
				return fail(err, 400, "invalid_template", (long)at, "{{/%.*s}} closes no open section",
					    (int)(cend - cstart < 60 ? cend - cstart : 60), s + cstart);
			sec = &p->toks[open[depth - 1]];
			if (sec->len != cend - cstart || memcmp(s + sec->start, s + cstart, sec->len) != 0) {
				char what[140];

				snprintf(what, sizeof(what), "{{/%.*s}} does not close {{%c%.*s}}", (int)(cend - cstart < 60 ? cend - cstart : 60),
					 s + cstart, sec->kind == TK_SECTION ? '#' : '^', (int)(sec->len < 60 ? sec->len : 60),
					 s + sec->start);
				return fail(err, 400, "invalid_template", (long)at, "%s opened at byte %ld", what, (long)sec->off);
			}
			sec->end = p->n;
			depth--;
		} else if (k == TK_SECTION || k == TK_INVERTED) {
			if (depth == MF_RENDER_MAX_DEPTH)
				return fail(err, 400, "invalid_template", (long)at, "sections nest at most %d deep",
					    MF_RENDER_MAX_DEPTH);
			open[depth++] = p->n;
		}
		if (push(p, k, at, cstart, cend - cstart, err) < 0)
			return -1;
	}
	if (depth > 0) {
		const tok_t *sec = &p->toks[open[depth - 1]];
		char what[80];

		snprintf(what, sizeof(what), "%c%.*s", sec->kind == TK_SECTION ? '#' : '^', (int)(sec->len < 60 ? sec->len : 60),
			 s + sec->start);
		return fail(err, 400, "invalid_template", (long)sec->off, "unclosed section {{%s}}", what);
	}
	return 0;
}

int mf_render_check(const char *tpl, size_t len, mf_render_err_t *err)
{
	parse_t p = { tpl, len, NULL, 0, 0 };
	int r;

	if (err) {
		mf_err_clear(&err->err);
		err->offset = -1;
	}
	r = parse(&p, err);
	free(p.toks);
	return r;
}

/* ---- rendering ---- */

static const json_t *child(const json_t *v, const char *seg, size_t n)
{
	char key[NAME_MAX_LEN + 1];

	memcpy(key, seg, n);
	key[n] = '\0';
	if (json_is_object(v))
		return json_object_get(v, key);
	if (json_is_array(v) && n > 0 && n <= 9) {
		size_t idx = 0;

		for (size_t i = 0; i < n; i++) {
			if (seg[i] < '0' || seg[i] > '9')
				return NULL;
			idx = idx * 10 + (size_t)(seg[i] - '0');
		}
		return json_array_get(v, idx);
	}
	return NULL;
}

static const json_t *lookup(const emit_t *e, const tok_t *t)
{
	const char *s = e->tpl + t->start, *dot;
	size_t n = t->len, seg;
	const json_t *v = NULL;

	if (n == 1 && s[0] == '.')
		return e->stack[e->depth - 1];
	dot = memchr(s, '.', n);
	seg = dot ? (size_t)(dot - s) : n;
	for (int i = e->depth - 1; i >= 0 && v == NULL; i--)
		v = child(e->stack[i], s, seg);
	while (v != NULL && seg < n) {
		s += seg + 1;
		n -= seg + 1;
		dot = memchr(s, '.', n);
		seg = dot ? (size_t)(dot - s) : n;
		v = child(v, s, seg);
	}
	return v;
}

static bool falsy(const json_t *v)
{
	return v == NULL || json_is_null(v) || json_is_false(v) || (json_is_string(v) && json_string_length(v) == 0) ||
	       (json_is_array(v) && json_array_size(v) == 0) || (json_is_object(v) && json_object_size(v) == 0);
}

static int too_big(emit_t *e, size_t off)
{
	return fail(e->err, 400, "output_too_large", (long)off, "the output would exceed %d bytes", MF_RENDER_MAX_OUT);
}

static int put(emit_t *e, const char *s, size_t n, bool escape, size_t off)
{
	size_t from = 0;

	if (!escape) {
		if (e->out.len + n > MF_RENDER_MAX_OUT)
			return too_big(e, off);
		return mf_buf_add(&e->out, s, n) < 0 ? oom(e->err) : 0;
	}
	for (size_t i = 0; i <= n; i++) {
		const char *rep = NULL;

		if (i < n) {
			switch (s[i]) {
			case '&': rep = "&amp;"; break;
			case '<': rep = "&lt;"; break;
			case '>': rep = "&gt;"; break;
			case '"': rep = "&quot;"; break;
			case '\'': rep = "&#39;"; break;
			default: continue;
			}
		}
		if (put(e, s + from, i - from, false, off) < 0 || (rep && put(e, rep, strlen(rep), false, off) < 0))
			return -1;
		from = i + 1;
	}
	return 0;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
	emit_t *e = data;

	return put(e, buf, size, e->escape, e->tag_off);
}

static int put_value(emit_t *e, const json_t *v, bool escape, size_t off)
{
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_string(v))
		return put(e, json_string_value(v), json_string_length(v), escape, off);
	e->escape = escape;
	e->tag_off = off;
	if (json_dump_callback(v, dump_cb, e, JSON_ENCODE_ANY | JSON_COMPACT) < 0) {
		if (e->err && e->err->err.status == 0)
			return oom(e->err);
		return -1;
	}
	return 0;
}

static int emit(emit_t *e, size_t i, size_t end)
{
	while (i < end) {
		const tok_t *t = &e->toks[i];
		const json_t *v;

		if (++e->work > MF_RENDER_MAX_WORK)
			return fail(e->err, 400, "output_too_large", (long)t->off,
				    "the template expands to more than %d tags", MF_RENDER_MAX_WORK);
		switch (t->kind) {
		case TK_TEXT:
			if (put(e, e->tpl + t->start, t->len, false, t->off) < 0)
				return -1;
			break;
		case TK_VAR:
		case TK_RAW:
			if (put_value(e, lookup(e, t), t->kind == TK_VAR, t->off) < 0)
				return -1;
			break;
		case TK_SECTION:
			v = lookup(e, t);
			if (!falsy(v)) {
				size_t n = json_is_array(v) ? json_array_size(v) : 1;

				for (size_t k = 0; k < n; k++) {
					int r;

					e->stack[e->depth++] = json_is_array(v) ? json_array_get(v, k) : v;
					r = emit(e, i + 1, t->end);
					e->depth--;
					if (r < 0)
						return -1;
				}
			}
			i = t->end;
			break;
		case TK_INVERTED:
			if (falsy(lookup(e, t)) && emit(e, i + 1, t->end) < 0)
				return -1;
			i = t->end;
			break;
		case TK_CLOSE:
			break;
		}
		i++;
	}
	return 0;
}

int mf_render(const char *tpl, size_t len, const json_t *scope, char **out, mf_render_err_t *err)
{
	parse_t p = { tpl, len, NULL, 0, 0 };
	emit_t e;
	int r;

	*out = NULL;
	if (err) {
		mf_err_clear(&err->err);
		err->offset = -1;
	}
	if (parse(&p, err) < 0) {
		free(p.toks);
		return -1;
	}
	memset(&e, 0, sizeof(e));
	e.tpl = tpl;
	e.toks = p.toks;
	e.err = err;
	e.stack[0] = scope;
	e.depth = 1;
	r = emit(&e, 0, p.n);
	if (r == 0 && mf_buf_add(&e.out, "", 0) < 0)
		r = oom(err);
	free(p.toks);
	if (r < 0) {
		mf_buf_free(&e.out);
		return -1;
	}
	if (e.out.data == NULL) {
		*out = strdup("");
		if (*out == NULL)
			return oom(err);
		return 0;
	}
	*out = mf_buf_detach(&e.out, NULL);
	return 0;
}
