/*
 * expr.c - the expression language of engine/expr.h: a lexer, a
 * recursive-descent parser to a compact AST held in one allocation (nodes,
 * then a pool with the decoded string literals and names), an evaluator
 * over jansson values, and the {{ }} templates built on both.
 *
 * Every bound of expr.h is enforced here, so that a hostile definition or
 * context cannot hurt the engine: the parser counts its own recursion and
 * the height of the tree it builds (a run of one level's operators is one
 * wide chain node, see enum kind), the evaluator counts its depth again
 * (defence in depth, the tree's height bounds it already) and charges work
 * steps for nodes, compared elements and scanned string bytes.  Integer
 * arithmetic goes through __builtin_*_overflow; a real result that is not
 * finite is an error, so NaN and infinities never leave this file.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "engine/expr.h"

#define PARSE_CODE "invalid_expression"
#define EVAL_CODE "expression_failed"
#define NUM_TOKEN_MAX 400	/* longest decimal literal (digits and point) */
#define STR_STEP_BYTES 64	/* one work step per this many bytes scanned */
#define CMP_MAX_DEPTH 64	/* deepest context value == and `in` compare */

/* A run of left-associative operators of one level (`a + b - c`,
 * `x && y && z`) is one chain node over its operands, evaluated by a loop:
 * a long chain is wide, not deep, so only real nesting counts against
 * ENG_EXPR_MAX_DEPTH. */
enum kind {
	N_INT, N_REAL, N_STR, N_TRUE, N_FALSE, N_NULL, N_ROOT, N_MEMBER, N_INDEX,
	N_CALL, N_ARRAY, N_NOT, N_NEG, N_AND, N_OR, N_BIN,
};
enum op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD };
enum fn { F_LEN, F_LOWER, F_UPPER, F_CONTAINS, F_NOW };

static const struct { const char *name; int arity; } fns[] = {
	[F_LEN] = {"len", 1}, [F_LOWER] = {"lower", 1}, [F_UPPER] = {"upper", 1},
	[F_CONTAINS] = {"contains", 2}, [F_NOW] = {"now", 0},
};
static const char *const op_names[] = {
	"==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%",
};

struct node {
	uint8_t kind;
	uint8_t op;		/* enum fn for N_CALL */
	uint8_t join;		/* in a chain: the operator joining this operand to the left */
	uint8_t height;		/* of the subtree, at most ENG_EXPR_MAX_DEPTH */
	uint32_t pos;		/* byte offset in the source */
	uint32_t jpos;		/* in a chain: where the joining operator is */
	int32_t a, b;		/* children; lists (call, array, chain): a = first, b = count */
	int32_t next;		/* next element of a list, -1 = none */
	union {
		json_int_t i;
		double d;
		struct { uint32_t off, len; } s;	/* in the pool: literal or name */
	} u;
};

struct eng_expr {
	int32_t root;
	uint32_t nnodes, cap;
	char *pool;
	struct node nodes[];
};

/* ---- lexer ---- */

enum tok_type { T_EOF, T_INT, T_REAL, T_STR, T_IDENT, T_PUNCT };

struct tok {
	enum tok_type type;
	uint32_t pos, len;	/* source span */
	int punct;		/* first char | second char << 8 */
	json_int_t i;
	double d;
	uint32_t soff, slen;	/* T_STR: decoded bytes in the pool */
};

struct parser {
	const char *src;
	size_t len, at;
	struct tok tok;
	eng_expr_t *e;
	size_t pool_used, pool_cap;
	int depth;
	mf_err_t *err;
};

#define P2(a, b) ((a) | ((b) << 8))

static int perr(struct parser *P, size_t pos, const char *what)
{
	return mf_err_set(P->err, 400, PARSE_CODE, "at byte %zu: %s", pos, what);
}

static bool is_ident_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(int c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid:
 * no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	uint32_t cp, min;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static int hex4(const char *s, size_t n, uint32_t *out)
{
	uint32_t v = 0;

	if (n < 4)
		return -1;
	for (int k = 0; k < 4; k++) {
		int c = (unsigned char)s[k], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

static size_t utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decodes a quoted literal into the pool.  The pool was sized so that it
 * cannot overflow: a decoded literal is never longer than its source. */
static int lex_string(struct parser *P, size_t start)
{
	const char *s = P->src;
	char q = s[start], *o = P->e->pool + P->pool_used;
	size_t i = start + 1, olen = 0;

	for (;;) {
		unsigned char c;

		if (i >= P->len)
			return perr(P, start, "unterminated string");
		c = (unsigned char)s[i];
		if (c == (unsigned char)q)
			break;
		if (c == '\0')
			return perr(P, i, "NUL byte in string");
		if (c != '\\') {
			size_t n = utf8_seq((const unsigned char *)s + i, P->len - i);

			if (n == 0)
				return perr(P, i, "invalid UTF-8 in string");
			memcpy(o + olen, s + i, n);
			olen += n;
			i += n;
			continue;
		}
		if (i + 1 >= P->len)
			return perr(P, start, "unterminated string");
		switch (s[i + 1]) {
		case '\\': o[olen++] = '\\'; i += 2; break;
		case '\'': o[olen++] = '\''; i += 2; break;
		case '"': o[olen++] = '"'; i += 2; break;
		case 'n': o[olen++] = '\n'; i += 2; break;
		case 't': o[olen++] = '\t'; i += 2; break;
		case 'u': {
			uint32_t cp, lo;

			if (hex4(s + i + 2, P->len - i - 2, &cp) != 0)
				return perr(P, i, "bad \\u escape");
			i += 6;
			if (cp == 0)
				return perr(P, i - 6, "\\u0000 is not allowed");
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return perr(P, i - 6, "lone low surrogate");
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (i + 1 >= P->len || s[i] != '\\' || s[i + 1] != 'u' ||
				    hex4(s + i + 2, P->len - i - 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
					return perr(P, i - 6, "lone high surrogate");
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			}
			olen += utf8_put(o + olen, cp);
			break;
		}
		default:
			return perr(P, i, "unknown escape");
		}
	}
	o[olen] = '\0';
	P->tok.type = T_STR;
	P->tok.soff = (uint32_t)P->pool_used;
	P->tok.slen = (uint32_t)olen;
	P->pool_used += olen + 1;
	P->tok.len = (uint32_t)(i + 1 - start);
	P->at = i + 1;
	return 0;
}

static int lex_number(struct parser *P, size_t start)
{
	const char *s = P->src;
	size_t i = start;
	bool real = false;
	json_int_t v = 0;
	char buf[NUM_TOKEN_MAX + 1];

	while (i < P->len && s[i] >= '0' && s[i] <= '9') {
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
			real = true;	/* settled below: an integer out of range is refused */
		i++;
	}
	if (i < P->len && s[i] == '.') {
		if (i + 1 >= P->len || s[i + 1] < '0' || s[i + 1] > '9')
			return perr(P, i, "digits must follow a decimal point");
		i++;
		while (i < P->len && s[i] >= '0' && s[i] <= '9')
			i++;
		P->tok.type = T_REAL;
	} else {
		if (real)
			return perr(P, start, "integer out of range");
		P->tok.type = T_INT;
		P->tok.i = v;
	}
	if (i < P->len && (is_ident_char((unsigned char)s[i]) || s[i] == '.'))
		return perr(P, i, "malformed number");
	if (P->tok.type == T_REAL) {
		if (i - start > NUM_TOKEN_MAX)
			return perr(P, start, "number too long");
		memcpy(buf, s + start, i - start);
		buf[i - start] = '\0';
		P->tok.d = strtod(buf, NULL);
		if (!isfinite(P->tok.d))
			return perr(P, start, "number out of range");
	}
	P->tok.len = (uint32_t)(i - start);
	P->at = i;
	return 0;
}

static int lex(struct parser *P)
{
	const char *s = P->src;
	size_t i = P->at;
	int c, c2;

	while (i < P->len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	P->tok.pos = (uint32_t)i;
	if (i >= P->len) {
		P->tok.type = T_EOF;
		P->tok.len = 0;
		P->at = i;
		return 0;
	}
	c = (unsigned char)s[i];
	if (c >= '0' && c <= '9')
		return lex_number(P, i);
	if (c == '"' || c == '\'')
		return lex_string(P, i);
	if (is_ident_start(c)) {
		size_t j = i;

		while (j < P->len && is_ident_char((unsigned char)s[j]))
			j++;
		P->tok.type = T_IDENT;
		P->tok.len = (uint32_t)(j - i);
		P->at = j;
		return 0;
	}
	c2 = i + 1 < P->len ? (unsigned char)s[i + 1] : 0;
	P->tok.type = T_PUNCT;
	switch (c) {
	case '|': case '&':
		if (c2 != c)
			return perr(P, i, "unknown operator");
		P->tok.punct = P2(c, c2);
		break;
	case '=':
		if (c2 != '=')
			return perr(P, i, "unknown operator ('=' where '==' is meant?)");
		P->tok.punct = P2(c, c2);
		break;
	case '!': case '<': case '>':
		P->tok.punct = c2 == '=' ? P2(c, c2) : c;
		break;
	case '+': case '-': case '*': case '/': case '%': case '.': case '[': case ']':
	case '(': case ')': case ',':
		P->tok.punct = c;
		break;
	default:
		return perr(P, i, "unexpected character");
	}
	P->tok.len = P->tok.punct > 0xff ? 2 : 1;
	P->at = i + P->tok.len;
	return 0;
}

/* ---- parser ---- */

static bool tok_is(const struct parser *P, int punct)
{
	return P->tok.type == T_PUNCT && P->tok.punct == punct;
}

static bool tok_word(const struct parser *P, const char *w)
{
	return P->tok.type == T_IDENT && P->tok.len == strlen(w) && memcmp(P->src + P->tok.pos, w, P->tok.len) == 0;
}

static int32_t mk(struct parser *P, int kind, int op, uint32_t pos, int32_t a, int32_t b)
{
	eng_expr_t *e = P->e;
	struct node *n;
	int h = 0;

	if (e->nnodes >= e->cap) {
		perr(P, pos, e->cap >= ENG_EXPR_MAX_NODES ? "too many nodes" : "internal node count");
		return -1;
	}
	n = &e->nodes[e->nnodes];
	memset(n, 0, sizeof(*n));
	n->kind = (uint8_t)kind;
	n->op = (uint8_t)op;
	n->pos = pos;
	n->a = a;
	n->b = b;
	n->next = -1;
	if (kind == N_CALL || kind == N_ARRAY || kind == N_AND || kind == N_OR || kind == N_BIN) {
		for (int32_t k = a; k >= 0; k = e->nodes[k].next)
			h = e->nodes[k].height > h ? e->nodes[k].height : h;
	} else {
		if (a >= 0)
			h = e->nodes[a].height;
		if (b >= 0 && kind != N_MEMBER && e->nodes[b].height > h)
			h = e->nodes[b].height;
	}
	if (h + 1 > ENG_EXPR_MAX_DEPTH) {
		perr(P, pos, "nested too deeply");
		return -1;
	}
	n->height = (uint8_t)(h + 1);
	return (int32_t)e->nnodes++;
}

static int32_t parse_expr(struct parser *P);

/* Comma-separated expressions up to the closing punct; returns the first
 * element (or -1 for none, *failed set on error) and the count. */
static int32_t parse_list(struct parser *P, int close, int32_t *count, bool *failed)
{
	int32_t first = -1, last = -1;

	*count = 0;
	*failed = false;
	if (tok_is(P, close))
		return lex(P) == 0 ? -1 : (*failed = true, -1);
	for (;;) {
		int32_t x = parse_expr(P);

		if (x < 0) {
			*failed = true;
			return -1;
		}
		if (last >= 0)
			P->e->nodes[last].next = x;
		else
			first = x;
		last = x;
		(*count)++;
		if (tok_is(P, ',')) {
			if (lex(P) != 0) {
				*failed = true;
				return -1;
			}
			continue;
		}
		if (!tok_is(P, close)) {
			perr(P, P->tok.pos, close == ')' ? "expected ',' or ')'" : "expected ',' or ']'");
			*failed = true;
			return -1;
		}
		if (lex(P) != 0) {
			*failed = true;
			return -1;
		}
		return first;
	}
}

static int32_t parse_primary(struct parser *P)
{
	struct tok t = P->tok;
	int32_t n, count, first;
	bool failed;

	switch (t.type) {
	case T_INT:
		n = mk(P, N_INT, 0, t.pos, -1, -1);
		if (n >= 0)
			P->e->nodes[n].u.i = t.i;
		return n >= 0 && lex(P) == 0 ? n : -1;
	case T_REAL:
		n = mk(P, N_REAL, 0, t.pos, -1, -1);
		if (n >= 0)
			P->e->nodes[n].u.d = t.d;
		return n >= 0 && lex(P) == 0 ? n : -1;
	case T_STR:
		n = mk(P, N_STR, 0, t.pos, -1, -1);
		if (n >= 0) {
			P->e->nodes[n].u.s.off = t.soff;
			P->e->nodes[n].u.s.len = t.slen;
		}
		return n >= 0 && lex(P) == 0 ? n : -1;
	case T_IDENT:
		if (tok_word(P, "true") || tok_word(P, "false") || tok_word(P, "null")) {
			int k = tok_word(P, "true") ? N_TRUE : tok_word(P, "false") ? N_FALSE : N_NULL;

			n = mk(P, k, 0, t.pos, -1, -1);
			return n >= 0 && lex(P) == 0 ? n : -1;
		}
		if (tok_word(P, "in")) {
			perr(P, t.pos, "unexpected 'in'");
			return -1;
		}
		if (lex(P) != 0)
			return -1;
		if (tok_is(P, '(')) {
			int f = -1;

			for (size_t k = 0; k < sizeof(fns) / sizeof(fns[0]); k++)
				if (strlen(fns[k].name) == t.len && memcmp(P->src + t.pos, fns[k].name, t.len) == 0)
					f = (int)k;
			if (f < 0) {
				perr(P, t.pos, "unknown function");
				return -1;
			}
			if (lex(P) != 0)
				return -1;
			first = parse_list(P, ')', &count, &failed);
			if (failed)
				return -1;
			if (count != fns[f].arity) {
				mf_err_set(P->err, 400, PARSE_CODE, "at byte %u: %s() takes %d argument%s",
					   t.pos, fns[f].name, fns[f].arity, fns[f].arity == 1 ? "" : "s");
				return -1;
			}
			return mk(P, N_CALL, f, t.pos, first, count);
		}
		/* a root of the context: its name goes to the pool */
		n = mk(P, N_ROOT, 0, t.pos, -1, -1);
		if (n < 0)
			return -1;
		memcpy(P->e->pool + P->pool_used, P->src + t.pos, t.len);
		P->e->pool[P->pool_used + t.len] = '\0';
		P->e->nodes[n].u.s.off = (uint32_t)P->pool_used;
		P->e->nodes[n].u.s.len = t.len;
		P->pool_used += t.len + 1;
		return n;
	case T_PUNCT:
		if (t.punct == '(') {
			if (lex(P) != 0 || (n = parse_expr(P)) < 0)
				return -1;
			if (!tok_is(P, ')')) {
				perr(P, P->tok.pos, "expected ')'");
				return -1;
			}
			return lex(P) == 0 ? n : -1;
		}
		if (t.punct == '[') {
			if (lex(P) != 0)
				return -1;
			first = parse_list(P, ']', &count, &failed);
			if (failed)
				return -1;
			return mk(P, N_ARRAY, 0, t.pos, first, count);
		}
		break;
	case T_EOF:
		perr(P, t.pos, "unexpected end of expression");
		return -1;
	}
	perr(P, t.pos, "unexpected token");
	return -1;
}

static int32_t parse_postfix(struct parser *P)
{
	int32_t n = parse_primary(P);

	while (n >= 0) {
		uint32_t pos = P->tok.pos;

		if (tok_is(P, '.')) {
			int32_t m;

			if (lex(P) != 0)
				return -1;
			if (P->tok.type != T_IDENT) {
				perr(P, P->tok.pos, "expected a name after '.'");
				return -1;
			}
			m = mk(P, N_MEMBER, 0, pos, n, -1);
			if (m < 0)
				return -1;
			memcpy(P->e->pool + P->pool_used, P->src + P->tok.pos, P->tok.len);
			P->e->pool[P->pool_used + P->tok.len] = '\0';
			P->e->nodes[m].u.s.off = (uint32_t)P->pool_used;
			P->e->nodes[m].u.s.len = P->tok.len;
			P->pool_used += P->tok.len + 1;
			if (lex(P) != 0)
				return -1;
			n = m;
		} else if (tok_is(P, '[')) {
			int32_t x;

			if (lex(P) != 0 || (x = parse_expr(P)) < 0)
				return -1;
			if (!tok_is(P, ']')) {
				perr(P, P->tok.pos, "expected ']'");
				return -1;
			}
			if (lex(P) != 0)
				return -1;
			n = mk(P, N_INDEX, 0, pos, n, x);
		} else {
			break;
		}
	}
	return n;
}

static int32_t parse_unary(struct parser *P)
{
	if (tok_is(P, '!') || tok_is(P, '-')) {
		uint32_t pos = P->tok.pos;
		int kind = tok_is(P, '!') ? N_NOT : N_NEG;
		int32_t x;

		if (++P->depth > ENG_EXPR_MAX_DEPTH) {
			perr(P, pos, "nested too deeply");
			return -1;
		}
		if (lex(P) != 0 || (x = parse_unary(P)) < 0)
			return -1;
		P->depth--;
		return mk(P, kind, 0, pos, x, -1);
	}
	return parse_postfix(P);
}

/* Binary levels, low to high; each is left-associative. */
#define NLEVELS 6

static int level_op(const struct parser *P, int level)
{
	switch (level) {
	case 0: return tok_is(P, P2('|', '|')) ? 100 : -1;
	case 1: return tok_is(P, P2('&', '&')) ? 101 : -1;
	case 2: return tok_is(P, P2('=', '=')) ? OP_EQ : tok_is(P, P2('!', '=')) ? OP_NE : -1;
	case 3:
		return tok_is(P, '<') ? OP_LT : tok_is(P, P2('<', '=')) ? OP_LE : tok_is(P, '>') ? OP_GT :
		       tok_is(P, P2('>', '=')) ? OP_GE : tok_word(P, "in") ? OP_IN : -1;
	case 4: return tok_is(P, '+') ? OP_ADD : tok_is(P, '-') ? OP_SUB : -1;
	default: return tok_is(P, '*') ? OP_MUL : tok_is(P, '/') ? OP_DIV : tok_is(P, '%') ? OP_MOD : -1;
	}
}

static int32_t parse_bin(struct parser *P, int level)
{
	int32_t first, last, r, count = 1;
	uint32_t pos = 0;
	int op;

	if (level == NLEVELS)
		return parse_unary(P);
	first = last = parse_bin(P, level + 1);
	if (first < 0)
		return -1;
	while ((op = level_op(P, level)) >= 0) {
		uint32_t opos = P->tok.pos;

		if (count == 1)
			pos = opos;
		if (lex(P) != 0 || (r = parse_bin(P, level + 1)) < 0)
			return -1;
		P->e->nodes[r].join = (uint8_t)(op >= 100 ? 0 : op);
		P->e->nodes[r].jpos = opos;
		P->e->nodes[last].next = r;
		last = r;
		count++;
	}
	if (count == 1)
		return first;
	return mk(P, level == 0 ? N_OR : level == 1 ? N_AND : N_BIN, 0, pos, first, count);
}

static int32_t parse_expr(struct parser *P)
{
	int32_t n;

	if (++P->depth > ENG_EXPR_MAX_DEPTH) {
		perr(P, P->tok.pos, "nested too deeply");
		return -1;
	}
	n = parse_bin(P, 0);
	P->depth--;
	return n;
}

eng_expr_t *eng_expr_parse(const char *src, size_t len, mf_err_t *err)
{
	struct parser P;
	size_t cap, pool;
	eng_expr_t *e;

	if (src == NULL)
		len = 0;
	if (len > ENG_EXPR_MAX_SRC) {
		mf_err_set(err, 400, PARSE_CODE, "at byte %d: expression longer than %d bytes",
			   ENG_EXPR_MAX_SRC, ENG_EXPR_MAX_SRC);
		return NULL;
	}
	/* Each node owns at least one token of at least one byte, so len
	 * bounds the node count; decoded literals and names, each with its
	 * NUL, fit in len + cap bytes. */
	cap = len < ENG_EXPR_MAX_NODES ? (len ? len : 1) : ENG_EXPR_MAX_NODES;
	pool = len + cap + 1;
	e = malloc(sizeof(*e) + cap * sizeof(struct node) + pool);
	if (e == NULL) {
		mf_err_set(err, 500, "internal", "out of memory");
		return NULL;
	}
	e->nnodes = 0;
	e->cap = (uint32_t)cap;
	e->pool = (char *)&e->nodes[cap];
	memset(&P, 0, sizeof(P));
	P.src = src;
	P.len = len;
	P.e = e;
	P.pool_cap = pool;
	P.err = err;
	if (lex(&P) != 0)
		goto fail;
	if (P.tok.type == T_EOF) {
		perr(&P, 0, "empty expression");
		goto fail;
	}
	e->root = parse_expr(&P);
	if (e->root < 0)
		goto fail;
	if (P.tok.type != T_EOF) {
		perr(&P, P.tok.pos, "unexpected token after the expression");
		goto fail;
	}
	return e;
fail:
	free(e);
	return NULL;
}

void eng_expr_free(eng_expr_t *e)
{
	free(e);
}

int eng_expr_check(const char *src, mf_err_t *err)
{
	eng_expr_t *e = eng_expr_parse(src, src ? strlen(src) : 0, err);

	if (e == NULL)
		return -1;
	eng_expr_free(e);
	return 0;
}

/* ---- evaluator ---- */

struct ev {
	const eng_expr_t *e;
	const json_t *ctx;
	size_t steps;
	int depth;
	mf_err_t *err;
};

static int efail(struct ev *ev, const struct node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int efail(struct ev *ev, const struct node *n, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return mf_err_set(ev->err, 400, EVAL_CODE, "at byte %u: %s", n ? n->pos : 0, what);
}

static int charge(struct ev *ev, const struct node *n, size_t steps)
{
	if (steps > ENG_EXPR_MAX_STEPS || ev->steps + steps > ENG_EXPR_MAX_STEPS) {
		ev->steps = ENG_EXPR_MAX_STEPS + 1;
		return efail(ev, n, "more than %d steps", ENG_EXPR_MAX_STEPS);
	}
	ev->steps += steps;
	return 0;
}

static int charge_bytes(struct ev *ev, const struct node *n, size_t bytes)
{
	return charge(ev, n, 1 + bytes / STR_STEP_BYTES);
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: case JSON_REAL: return "number";
	case JSON_TRUE: case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

bool eng_expr_truthy(const json_t *v)
{
	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_OBJECT: return json_object_size(v) > 0;
	case JSON_ARRAY: return json_array_size(v) > 0;
	case JSON_STRING: return json_string_length(v) > 0;
	case JSON_INTEGER: return json_integer_value(v) != 0;
	case JSON_REAL: return json_real_value(v) != 0.0;
	case JSON_TRUE: return true;
	default: return false;
	}
}

/* Deep equality with 1 == 1.0: 1 equal, 0 not, -1 error. */
static int veq(struct ev *ev, const struct node *n, const json_t *a, const json_t *b, int depth)
{
	if (charge(ev, n, 1) != 0)
		return -1;
	if (depth > CMP_MAX_DEPTH)
		return efail(ev, n, "values nested too deeply to compare");
	if (json_is_number(a) && json_is_number(b)) {
		if (json_is_integer(a) && json_is_integer(b))
			return json_integer_value(a) == json_integer_value(b);
		return json_number_value(a) == json_number_value(b);
	}
	if (json_typeof(a) != json_typeof(b))
		return 0;
	switch (json_typeof(a)) {
	case JSON_STRING:
		if (charge_bytes(ev, n, json_string_length(a)) != 0)
			return -1;
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return 0;
		for (size_t k = 0; k < json_array_size(a); k++) {
			int r = veq(ev, n, json_array_get(a, k), json_array_get(b, k), depth + 1);

			if (r != 1)
				return r;
		}
		return 1;
	case JSON_OBJECT: {
		const char *key;
		json_t *va, *vb;

		if (json_object_size(a) != json_object_size(b))
			return 0;
		json_object_foreach((json_t *)a, key, va) {
			int r;

			vb = json_object_get(b, key);
			if (vb == NULL)
				return 0;
			r = veq(ev, n, va, vb, depth + 1);
			if (r != 1)
				return r;
		}
		return 1;
	}
	default:
		return 1;	/* true, false, null: same type, same value */
	}
}

/* needle in hay: 1, 0 or -1 (error). */
static int vin(struct ev *ev, const struct node *n, const json_t *needle, const json_t *hay)
{
	if (json_is_array(hay)) {
		for (size_t k = 0; k < json_array_size(hay); k++) {
			int r = veq(ev, n, needle, json_array_get(hay, k), 0);

			if (r != 0)
				return r;
		}
		return 0;
	}
	if (json_is_string(hay)) {
		if (!json_is_string(needle))
			return efail(ev, n, "'in' a string needs a string, not a %s", type_name(needle));
		if (charge_bytes(ev, n, json_string_length(hay)) != 0)
			return -1;
		return memmem(json_string_value(hay), json_string_length(hay),
			      json_string_value(needle), json_string_length(needle)) != NULL;
	}
	if (json_is_object(hay)) {
		if (!json_is_string(needle))
			return efail(ev, n, "'in' an object needs a string key, not a %s", type_name(needle));
		if (strlen(json_string_value(needle)) != json_string_length(needle))
			return 0;	/* keys have no NUL */
		return json_object_get(hay, json_string_value(needle)) != NULL;
	}
	if (json_is_null(hay))
		return 0;	/* a missing collection holds nothing */
	return efail(ev, n, "'in' needs an array, a string or an object, not a %s", type_name(hay));
}

static json_t *real_or_fail(struct ev *ev, const struct node *n, double d)
{
	json_t *v;

	if (!isfinite(d)) {
		efail(ev, n, "'%s' result out of range", op_names[n->op]);
		return NULL;
	}
	v = json_real(d);
	if (v == NULL)
		mf_err_set(ev->err, 500, "internal", "out of memory");
	return v;
}

static json_t *int_or_oom(struct ev *ev, json_int_t i)
{
	json_t *v = json_integer(i);

	if (v == NULL)
		mf_err_set(ev->err, 500, "internal", "out of memory");
	return v;
}

static json_t *arith(struct ev *ev, const struct node *n, const json_t *l, const json_t *r)
{
	if (n->op == OP_ADD && json_is_string(l) && json_is_string(r)) {
		size_t a = json_string_length(l), b = json_string_length(r);
		char *s;
		json_t *v;

		if (a + b > ENG_EXPR_MAX_VALUE) {
			efail(ev, n, "string longer than %d bytes", ENG_EXPR_MAX_VALUE);
			return NULL;
		}
		if (charge_bytes(ev, n, a + b) != 0)
			return NULL;
		s = malloc(a + b + 1);
		if (s == NULL) {
			mf_err_set(ev->err, 500, "internal", "out of memory");
			return NULL;
		}
		memcpy(s, json_string_value(l), a);
		memcpy(s + a, json_string_value(r), b);
		s[a + b] = '\0';
		v = json_stringn_nocheck(s, a + b);	/* valid UTF-8 joined is valid */
		free(s);
		if (v == NULL)
			mf_err_set(ev->err, 500, "internal", "out of memory");
		return v;
	}
	if (!json_is_number(l) || !json_is_number(r)) {
		efail(ev, n, "'%s' needs %s, not %s and %s", op_names[n->op],
		      n->op == OP_ADD ? "two numbers or two strings" : "two numbers", type_name(l), type_name(r));
		return NULL;
	}
	if (json_is_integer(l) && json_is_integer(r)) {
		json_int_t a = json_integer_value(l), b = json_integer_value(r), x;
		bool ovf = false;

		switch (n->op) {
		case OP_ADD: ovf = __builtin_add_overflow(a, b, &x); break;
		case OP_SUB: ovf = __builtin_sub_overflow(a, b, &x); break;
		case OP_MUL: ovf = __builtin_mul_overflow(a, b, &x); break;
		case OP_DIV:
			if (b == 0) {
				efail(ev, n, "division by zero");
				return NULL;
			}
			if (b == -1) {
				ovf = __builtin_sub_overflow((json_int_t)0, a, &x);
				break;
			}
			if (a % b != 0)
				return real_or_fail(ev, n, (double)a / (double)b);
			x = a / b;
			break;
		default:	/* OP_MOD */
			if (b == 0) {
				efail(ev, n, "division by zero");
				return NULL;
			}
			x = b == -1 ? 0 : a % b;	/* INT64_MIN % -1 traps in C */
			break;
		}
		if (ovf) {
			efail(ev, n, "integer overflow in '%s'", op_names[n->op]);
			return NULL;
		}
		return int_or_oom(ev, x);
	}
	{
		double a = json_number_value(l), b = json_number_value(r), x;

		switch (n->op) {
		case OP_ADD: x = a + b; break;
		case OP_SUB: x = a - b; break;
		case OP_MUL: x = a * b; break;
		case OP_DIV:
			if (b == 0.0) {
				efail(ev, n, "division by zero");
				return NULL;
			}
			x = a / b;
			break;
		default:
			if (b == 0.0) {
				efail(ev, n, "division by zero");
				return NULL;
			}
			x = fmod(a, b);
			break;
		}
		return real_or_fail(ev, n, x);
	}
}

/* < <= > >=: 1 true, 0 false, -1 error. */
static int compare(struct ev *ev, const struct node *n, const json_t *l, const json_t *r)
{
	int c;

	if (json_is_number(l) && json_is_number(r)) {
		if (json_is_integer(l) && json_is_integer(r)) {
			json_int_t a = json_integer_value(l), b = json_integer_value(r);

			c = a < b ? -1 : a > b;
		} else {
			double a = json_number_value(l), b = json_number_value(r);

			c = a < b ? -1 : a > b;
		}
	} else if (json_is_string(l) && json_is_string(r)) {
		size_t a = json_string_length(l), b = json_string_length(r);

		if (charge_bytes(ev, n, a < b ? a : b) != 0)
			return -1;
		c = memcmp(json_string_value(l), json_string_value(r), a < b ? a : b);
		if (c == 0)
			c = a < b ? -1 : a > b;
	} else {
		return efail(ev, n, "'%s' compares two numbers or two strings, not %s and %s",
			     op_names[n->op], type_name(l), type_name(r));
	}
	switch (n->op) {
	case OP_LT: return c < 0;
	case OP_LE: return c <= 0;
	case OP_GT: return c > 0;
	default: return c >= 0;
	}
}

static int eval(struct ev *ev, int32_t idx, json_t **out);

static int call(struct ev *ev, const struct node *n, json_t **out)
{
	const struct node *nodes = ev->e->nodes;
	json_t *arg[2] = {NULL, NULL};
	int argc = 0, rc = -1;

	for (int32_t k = n->a; k >= 0 && argc < 2; k = nodes[k].next) {
		if (eval(ev, k, &arg[argc]) != 0)
			goto out;
		argc++;
	}
	switch (n->op) {
	case F_LEN:
		if (json_is_string(arg[0])) {
			const unsigned char *s = (const unsigned char *)json_string_value(arg[0]);
			size_t len = json_string_length(arg[0]);
			json_int_t cps = 0;

			if (charge_bytes(ev, n, len) != 0)
				goto out;
			for (size_t k = 0; k < len; k++)
				cps += (s[k] & 0xc0) != 0x80;
			*out = int_or_oom(ev, cps);
		} else if (json_is_array(arg[0])) {
			*out = int_or_oom(ev, (json_int_t)json_array_size(arg[0]));
		} else if (json_is_object(arg[0])) {
			*out = int_or_oom(ev, (json_int_t)json_object_size(arg[0]));
		} else if (json_is_null(arg[0])) {
			*out = int_or_oom(ev, 0);
		} else {
			efail(ev, n, "len() needs a string, an array or an object, not a %s", type_name(arg[0]));
			goto out;
		}
		rc = *out ? 0 : -1;
		break;
	case F_LOWER:
	case F_UPPER: {
		size_t len;
		char *s;

		if (json_is_null(arg[0])) {
			*out = json_null();
			rc = 0;
			break;
		}
		if (!json_is_string(arg[0])) {
			efail(ev, n, "%s() needs a string, not a %s", fns[n->op].name, type_name(arg[0]));
			goto out;
		}
		len = json_string_length(arg[0]);
		if (len > ENG_EXPR_MAX_VALUE) {
			efail(ev, n, "string longer than %d bytes", ENG_EXPR_MAX_VALUE);
			goto out;
		}
		if (charge_bytes(ev, n, len) != 0)
			goto out;
		s = malloc(len + 1);
		if (s == NULL) {
			mf_err_set(ev->err, 500, "internal", "out of memory");
			goto out;
		}
		memcpy(s, json_string_value(arg[0]), len + 1);
		for (size_t k = 0; k < len; k++) {
			if (n->op == F_LOWER && s[k] >= 'A' && s[k] <= 'Z')
				s[k] = (char)(s[k] - 'A' + 'a');
			else if (n->op == F_UPPER && s[k] >= 'a' && s[k] <= 'z')
				s[k] = (char)(s[k] - 'a' + 'A');
		}
		*out = json_stringn_nocheck(s, len);
		free(s);
		if (*out == NULL) {
			mf_err_set(ev->err, 500, "internal", "out of memory");
			goto out;
		}
		rc = 0;
		break;
	}
	case F_CONTAINS: {
		int r = vin(ev, n, arg[1], arg[0]);

		if (r < 0)
			goto out;
		*out = json_boolean(r);
		rc = 0;
		break;
	}
	default: {	/* F_NOW: the only impure function, the real clock */
		char buf[32];
		struct timespec ts;
		struct tm tm;

		if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL ||
		    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
			efail(ev, n, "now() has no clock");
			goto out;
		}
		*out = json_string(buf);
		if (*out == NULL) {
			mf_err_set(ev->err, 500, "internal", "out of memory");
			goto out;
		}
		rc = 0;
		break;
	}
	}
out:
	json_decref(arg[0]);
	json_decref(arg[1]);
	return rc;
}

static int eval_node(struct ev *ev, const struct node *n, json_t **out)
{
	const struct node *nodes = ev->e->nodes;
	const char *pool = ev->e->pool;
	json_t *l = NULL, *r = NULL, *v;
	int rc = -1, t;

	switch (n->kind) {
	case N_INT:
		return (*out = int_or_oom(ev, n->u.i)) ? 0 : -1;
	case N_REAL:
		return (*out = real_or_fail(ev, n, n->u.d)) ? 0 : -1;
	case N_STR:
		*out = json_stringn_nocheck(pool + n->u.s.off, n->u.s.len);	/* validated by the lexer */
		return *out ? 0 : mf_err_set(ev->err, 500, "internal", "out of memory");
	case N_TRUE:
		*out = json_true();
		return 0;
	case N_FALSE:
		*out = json_false();
		return 0;
	case N_NULL:
		*out = json_null();
		return 0;
	case N_ROOT:
		v = json_is_object(ev->ctx) ? json_object_get(ev->ctx, pool + n->u.s.off) : NULL;
		*out = v ? json_incref(v) : json_null();
		return 0;
	case N_MEMBER:
		if (eval(ev, n->a, &l) != 0)
			return -1;
		v = json_is_object(l) ? json_object_get(l, pool + n->u.s.off) : NULL;
		*out = v ? json_incref(v) : json_null();
		json_decref(l);
		return 0;
	case N_INDEX:
		if (eval(ev, n->a, &l) != 0 || eval(ev, n->b, &r) != 0)
			goto out;
		v = NULL;
		if (json_is_array(l) && json_is_integer(r) && json_integer_value(r) >= 0)
			v = json_array_get(l, (size_t)json_integer_value(r));
		else if (json_is_object(l) && json_is_string(r) &&
			 strlen(json_string_value(r)) == json_string_length(r))
			v = json_object_get(l, json_string_value(r));
		*out = v ? json_incref(v) : json_null();
		rc = 0;
		goto out;
	case N_CALL:
		return call(ev, n, out);
	case N_ARRAY:
		if (n->b > ENG_EXPR_MAX_VALUE)
			return efail(ev, n, "array longer than %d elements", ENG_EXPR_MAX_VALUE);
		l = json_array();
		if (l == NULL)
			return mf_err_set(ev->err, 500, "internal", "out of memory");
		for (int32_t k = n->a; k >= 0; k = nodes[k].next) {
			if (eval(ev, k, &r) != 0)
				goto out;
			if (json_array_append_new(l, r) != 0) {
				r = NULL;
				mf_err_set(ev->err, 500, "internal", "out of memory");
				goto out;
			}
			r = NULL;
		}
		*out = l;
		return 0;
	case N_NOT:
		if (eval(ev, n->a, &l) != 0)
			return -1;
		*out = json_boolean(!eng_expr_truthy(l));
		json_decref(l);
		return 0;
	case N_NEG:
		if (eval(ev, n->a, &l) != 0)
			return -1;
		if (json_is_integer(l)) {
			json_int_t x;

			if (__builtin_sub_overflow((json_int_t)0, json_integer_value(l), &x))
				efail(ev, n, "integer overflow in unary '-'");
			else
				*out = int_or_oom(ev, x), rc = *out ? 0 : -1;
		} else if (json_is_real(l)) {
			*out = json_real(-json_real_value(l));
			rc = *out ? 0 : mf_err_set(ev->err, 500, "internal", "out of memory");
		} else {
			efail(ev, n, "unary '-' needs a number, not a %s", type_name(l));
		}
		goto out;
	case N_AND:
	case N_OR:
		/* operands left to right until one decides; the rest are not evaluated */
		t = n->kind == N_AND;
		for (int32_t k = n->a; k >= 0; k = nodes[k].next) {
			if (eval(ev, k, &l) != 0)
				return -1;
			t = eng_expr_truthy(l);
			json_decref(l);
			l = NULL;
			if ((n->kind == N_AND && !t) || (n->kind == N_OR && t))
				break;
		}
		*out = json_boolean(t);
		return 0;
	default:	/* N_BIN: a chain folded from the left */
		if (eval(ev, n->a, &l) != 0)
			return -1;
		for (int32_t k = nodes[n->a].next; k >= 0; k = nodes[k].next) {
			struct node opn = { .kind = N_BIN, .op = nodes[k].join, .pos = nodes[k].jpos };

			if (eval(ev, k, &r) != 0)
				goto out;
			v = NULL;
			switch (opn.op) {
			case OP_EQ:
			case OP_NE:
				t = veq(ev, &opn, l, r, 0);
				if (t >= 0)
					v = json_boolean(opn.op == OP_EQ ? t : !t);
				break;
			case OP_LT: case OP_LE: case OP_GT: case OP_GE:
				t = compare(ev, &opn, l, r);
				if (t >= 0)
					v = json_boolean(t);
				break;
			case OP_IN:
				t = vin(ev, &opn, l, r);
				if (t >= 0)
					v = json_boolean(t);
				break;
			default:
				v = arith(ev, &opn, l, r);
				break;
			}
			if (v == NULL)
				goto out;
			json_decref(l);
			json_decref(r);
			r = NULL;
			l = v;
		}
		*out = l;
		return 0;
	}
out:
	json_decref(l);
	json_decref(r);
	return rc;
}

static int eval(struct ev *ev, int32_t idx, json_t **out)
{
	const struct node *n = &ev->e->nodes[idx];
	int rc;

	*out = NULL;
	if (charge(ev, n, 1) != 0)
		return -1;
	if (++ev->depth > ENG_EXPR_MAX_DEPTH) {	/* the parser's height bound makes this unreachable */
		ev->depth--;
		return efail(ev, n, "nested too deeply");
	}
	rc = eval_node(ev, n, out);
	ev->depth--;
	if (rc != 0 && *out) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* Evaluates with *steps already spent (a template's expressions share one
 * budget) and adds what this evaluation spent. */
static int eval_budget(const eng_expr_t *e, const json_t *ctx, json_t **out, size_t *steps, mf_err_t *err)
{
	struct ev ev = { .e = e, .ctx = ctx, .steps = *steps, .err = err };
	int rc;

	*out = NULL;
	if (e == NULL)
		return mf_err_set(err, 400, EVAL_CODE, "no expression");
	rc = eval(&ev, e->root, out);
	*steps = ev.steps;
	return rc;
}

int eng_expr_eval(const eng_expr_t *e, const json_t *ctx, json_t **out, mf_err_t *err)
{
	size_t steps = 0;

	return eval_budget(e, ctx, out, &steps, err);
}

/* ---- templates ---- */

/* Finds the next "{{ ... }}" of tmpl from `from`: 1 with [*open, *close)
 * the expression's bytes, 0 when there is none, -1 on "{{" without "}}".
 * The first "}}" closes, so an expression cannot contain "}}" (not even in
 * a string literal). */
static int next_expr(const char *tmpl, size_t from, size_t *open, size_t *close)
{
	const char *a = strstr(tmpl + from, "{{"), *b;

	if (a == NULL)
		return 0;
	b = strstr(a + 2, "}}");
	*open = (size_t)(a - tmpl);
	if (b == NULL)
		return -1;
	*close = (size_t)(b - tmpl);
	return 1;
}

static int tmpl_err(mf_err_t *err, size_t off, const mf_err_t *inner)
{
	char d[sizeof(inner->detail)];

	snprintf(d, sizeof(d), "%s", inner->detail);
	return mf_err_set(err, inner->status, inner->code, "template at byte %zu: %s", off, d);
}

int eng_template_check(const char *tmpl, mf_err_t *err)
{
	size_t at = 0, open, close;
	int r;

	if (tmpl == NULL)
		return 0;
	while ((r = next_expr(tmpl, at, &open, &close)) > 0) {
		mf_err_t e2;
		eng_expr_t *e = eng_expr_parse(tmpl + open + 2, close - open - 2, &e2);

		if (e == NULL)
			return tmpl_err(err, open + 2, &e2);
		eng_expr_free(e);
		at = close + 2;
	}
	if (r < 0)
		return mf_err_set(err, 400, PARSE_CODE, "template at byte %zu: '{{' without '}}'", open);
	return 0;
}

/* Shortest %g that reads back as the same double, with ".0" when it would
 * otherwise look like an integer (as jansson writes reals). */
static void fmt_real(char *buf, size_t len, double d)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (strpbrk(buf, ".e") == NULL && strlen(buf) + 3 <= len)
		strcat(buf, ".0");
}

static int add_escaped(mf_buf_t *b, const char *s, size_t n, bool html)
{
	size_t from = 0;

	if (!html)
		return mf_buf_add(b, s, n);
	for (size_t k = 0; k < n; k++) {
		const char *rep;

		switch (s[k]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: continue;
		}
		if (mf_buf_add(b, s + from, k - from) != 0 || mf_buf_adds(b, rep) != 0)
			return -1;
		from = k + 1;
	}
	return mf_buf_add(b, s + from, n - from);
}

static int add_value(mf_buf_t *b, const json_t *v, bool html)
{
	char num[64];
	char *dump;
	int rc;

	switch (json_typeof(v)) {
	case JSON_NULL:
		return 0;
	case JSON_STRING:
		return add_escaped(b, json_string_value(v), json_string_length(v), html);
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return mf_buf_adds(b, num);
	case JSON_REAL:
		fmt_real(num, sizeof(num), json_real_value(v));
		return mf_buf_adds(b, num);
	case JSON_TRUE:
		return mf_buf_adds(b, "true");
	case JSON_FALSE:
		return mf_buf_adds(b, "false");
	default:
		dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (dump == NULL)
			return -1;
		rc = add_escaped(b, dump, strlen(dump), html);
		free(dump);
		return rc;
	}
}

static int eval_src(const char *src, size_t len, const json_t *ctx, json_t **out, size_t off, size_t *steps,
		    mf_err_t *err)
{
	mf_err_t e2;
	eng_expr_t *e = eng_expr_parse(src, len, &e2);
	int rc;

	if (e == NULL)
		return tmpl_err(err, off, &e2);
	rc = eval_budget(e, ctx, out, steps, &e2);
	eng_expr_free(e);
	if (rc != 0)
		return tmpl_err(err, off, &e2);
	return 0;
}

int eng_template_render(const char *tmpl, const json_t *ctx, bool html_escape, char **out, mf_err_t *err)
{
	mf_buf_t b = MF_BUF_INIT;
	size_t at = 0, open = 0, close, steps = 0;
	int r;

	*out = NULL;
	if (tmpl == NULL)
		tmpl = "";
	/* A template that does not check evaluates nothing, so its error is
	 * always the parse error, whatever its expressions would do. */
	if (eng_template_check(tmpl, err) != 0)
		return -1;
	while ((r = next_expr(tmpl, at, &open, &close)) > 0) {
		json_t *v;

		if (mf_buf_add(&b, tmpl + at, open - at) != 0)
			goto oom;
		if (eval_src(tmpl + open + 2, close - open - 2, ctx, &v, open + 2, &steps, err) != 0) {
			mf_buf_free(&b);
			return -1;
		}
		r = add_value(&b, v, html_escape);
		json_decref(v);
		if (r != 0)
			goto oom;
		if (b.len > ENG_TEMPLATE_MAX_OUT) {
			mf_buf_free(&b);
			return mf_err_set(err, 400, EVAL_CODE, "template at byte %zu: output longer than %d bytes",
					  open, ENG_TEMPLATE_MAX_OUT);
		}
		at = close + 2;
	}
	if (r < 0) {
		mf_buf_free(&b);
		return mf_err_set(err, 400, PARSE_CODE, "template at byte %zu: '{{' without '}}'", open);
	}
	if (mf_buf_adds(&b, tmpl + at) != 0 || (*out = mf_buf_detach(&b, NULL)) == NULL)
		goto oom;
	return 0;
oom:
	mf_buf_free(&b);
	return mf_err_set(err, 500, "internal", "out of memory");
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int eng_template_value(const char *tmpl, const json_t *ctx, json_t **out, mf_err_t *err)
{
	size_t len, s = 0, open, close;
	char *text;

	*out = NULL;
	if (tmpl == NULL)
		tmpl = "";
	len = strlen(tmpl);
	while (s < len && blank(tmpl[s]))
		s++;
	while (len > s && blank(tmpl[len - 1]))
		len--;
	if (len - s >= 4 && next_expr(tmpl, s, &open, &close) > 0 && open == s && close + 2 == len)
	{
		size_t steps = 0;

		return eval_src(tmpl + open + 2, close - open - 2, ctx, out, open + 2, &steps, err);
	}
	if (eng_template_render(tmpl, ctx, false, &text, err) != 0)
		return -1;
	*out = json_string(text);
	free(text);
	if (*out == NULL)
		return mf_err_set(err, 400, EVAL_CODE, "template renders to text that is not valid UTF-8");
	return 0;
}
