/*
 * expr.h - the engine's small, safe expression language and the {{ }}
 * interpolation of workflow strings (CONTRACT 6).
 *
 * Expressions decide (`trigger.when`, `decide`, `wait` for an event) and
 * interpolate (`{{ input.deal.amount * 0.1 }}` inside a step's strings)
 * over a run context: a JSON object whose members are the roots `input`,
 * `data` (the trigger event's data), `steps` (`steps.<id>.output`),
 * `tenant` and `brand`.
 *
 * Grammar (precedence low to high):
 *   expr    := or
 *   or      := and ( "||" and )*
 *   and     := eq ( "&&" eq )*
 *   eq      := rel ( ("==" | "!=") rel )*
 *   rel     := add ( ("<" | "<=" | ">" | ">=" | "in") add )*
 *   add     := mul ( ("+" | "-") mul )*
 *   mul     := unary ( ("*" | "/" | "%") unary )*
 *   unary   := ("!" | "-") unary | postfix
 *   postfix := primary ( "." ident | "[" expr "]" )*
 *   primary := number | string | "true" | "false" | "null" | ident
 *            | ident "(" [ expr ("," expr)* ] ")" | "(" expr ")" | "[" [expr ("," expr)*] "]"
 * Strings are '...' or "..." with \\ \' \" \n \t \uXXXX escapes; numbers
 * are decimal integers or decimals (no exponent, no hex).  A bare ident is
 * a root of the context; a keyword may follow "." (`a.in`).  \u escapes
 * take surrogate pairs; a lone surrogate and \u0000 are refused, and a
 * string literal must be valid UTF-8.  Functions (arity checked when
 * parsing): len(x) (code points of a string, size of an array or object,
 * 0 for null), lower(s), upper(s) (ASCII letters only; other bytes, UTF-8
 * included, unchanged; null gives null), contains(haystack, needle) (the
 * same as `needle in haystack`), now() (RFC 3339 UTC string, seconds; the
 * real clock, the only impure function).
 *
 * Semantics: values are JSON.  A missing member or index is null, never an
 * error, so conditions can test absence.  Truthiness: null, false, 0, "",
 * [] and {} are false.  && and || short-circuit and give booleans.  ==/!=
 * compare JSON values deeply (1 == 1.0; different types are unequal).
 * < <= > >= compare two numbers or two strings (bytewise), anything else is
 * an error.  + adds numbers or concatenates two strings; - * / % numbers
 * only (integer arithmetic stays integer and fails on overflow; / of two
 * integers that do not divide is a real; division by zero fails).  `a in
 * b`: b an array (a equal to an element), a string (substring) or an
 * object (a is a key); null (a missing collection) holds nothing.  An
 * index is an integer into an array (negative or past the end: null) or a
 * string key into an object; any other indexing is null.  Integer % keeps
 * the dividend's sign (C); a real % is fmod.  No operation yields NaN or
 * an infinity: that is an error.
 *
 * Bounds, so that no input can hurt the engine: source at most
 * ENG_EXPR_MAX_SRC bytes, nesting at most ENG_EXPR_MAX_DEPTH (parentheses,
 * brackets, calls, unary operators, `.`/`[]` after one another and
 * operators of different precedence each count a level; `a + b + c ...`
 * is one level however long), at most
 * ENG_EXPR_MAX_NODES nodes; an evaluation performs at most
 * ENG_EXPR_MAX_STEPS operations (one per node, one per element compared,
 * one per 64 string bytes scanned) and builds no string or array larger
 * than ENG_EXPR_MAX_VALUE bytes / elements; the expressions of one template
 * share one budget of ENG_EXPR_MAX_STEPS, and a rendered template is at
 * most ENG_TEMPLATE_MAX_OUT bytes.  Errors are mf_err_t 400 with code
 * "invalid_expression" (parse) or "expression_failed" (evaluation) and a
 * detail naming the position or operation, never quoting context values
 * (running out of memory is 500 "internal").
 */
#ifndef ENG_EXPR_H
#define ENG_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "core/err.h"

#define ENG_EXPR_MAX_SRC 4096
#define ENG_EXPR_MAX_DEPTH 32
#define ENG_EXPR_MAX_NODES 512
#define ENG_EXPR_MAX_STEPS 10000
#define ENG_EXPR_MAX_VALUE 65536
#define ENG_TEMPLATE_MAX_OUT (1024 * 1024)

typedef struct eng_expr eng_expr_t;

/* Compiles src[0..len).  Returns a new expression (free with
 * eng_expr_free), or NULL with err (400 invalid_expression, detail with the
 * byte offset). */
eng_expr_t *eng_expr_parse(const char *src, size_t len, mf_err_t *err);
void eng_expr_free(eng_expr_t *e);	/* accepts NULL */
/* Evaluates e over ctx (borrowed; may be NULL = empty).  *out is a new
 * reference.  Returns 0, or -1 with err (400 expression_failed). */
int eng_expr_eval(const eng_expr_t *e, const json_t *ctx, json_t **out, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Truthiness of a value, as && || ! see it. */
bool eng_expr_truthy(const json_t *v);
/* Parse check only (definition validation): 0 or -1 with err. */
int eng_expr_check(const char *src, mf_err_t *err) __attribute__((warn_unused_result));

/* ---- {{ }} interpolation ---- */

/* Checks every {{ expr }} of a template string: 0 or -1 with err (the
 * detail names the byte offset in the template).  Text outside {{ }} is
 * copied as is; "{{" with no "}}" is an error; there is no escape for a
 * literal "{{", and the first "}}" closes an expression (so none can
 * contain "}}", even in a string literal). */
int eng_template_check(const char *tmpl, mf_err_t *err) __attribute__((warn_unused_result));
/* Renders tmpl over ctx into *out (malloc'd, NUL-terminated; NULL on
 * error; a template that fails eng_template_check evaluates nothing and
 * fails with its parse error): strings as
 * they are, numbers/booleans as JSON text, null as "", arrays and objects
 * as compact JSON; html_escape escapes & < > " ' in every interpolated
 * value (not in the template's own text).  Returns 0, or -1 with err. */
int eng_template_render(const char *tmpl, const json_t *ctx, bool html_escape, char **out, mf_err_t *err)
	__attribute__((warn_unused_result));
/* A template that is exactly one "{{ expr }}" (blanks around allowed)
 * renders to the expression's JSON value itself (a new reference), so
 * `"amount": "{{ input.amount }}"` stays a number; any other template
 * renders to a JSON string.  Returns 0 or -1 with err. */
int eng_template_value(const char *tmpl, const json_t *ctx, json_t **out, mf_err_t *err)
	__attribute__((warn_unused_result));

#endif
