/*
 * render.h - a logic-less message renderer: the mustache subset that
 * tenant messages use ({{ brand.display_name }} and friends).  It looks
 * names up in a jansson scope and never evaluates anything: no partials,
 * no lambdas, no set-delimiters, no expressions (engine/expr.h is the
 * expression language; this is deliberately not it).
 *
 * Syntax (docs/branding.md):
 *   {{ name.path }}     the value, HTML-escaped (& < > " ')
 *   {{{ name.path }}}   the value as it is ({{& name }} too)
 *   {{# x }}...{{/ x }} false, null, "", [] and {} skip; an array repeats the
 *                       body with each element as the innermost scope;
 *                       anything else renders it once with x innermost
 *   {{^ x }}...{{/ x }} renders only when {{# x }} would skip
 *   {{! comment }}      nothing
 * A name is "." (the innermost scope) or dot-separated segments of
 * [A-Za-z0-9_-]; the first segment is looked up from the innermost scope
 * outwards, the rest inside what it found (a digit segment indexes an
 * array).  A missing name renders as nothing.  Strings render as they are,
 * null as nothing, other values as their compact JSON text.
 *
 * Bounded: template <= MF_RENDER_MAX_TPL bytes, output <= MF_RENDER_MAX_OUT
 * bytes, section nesting <= MF_RENDER_MAX_DEPTH, at most
 * MF_RENDER_MAX_WORK tag and text expansions in all.
 */
#ifndef MF_RENDER_H
#define MF_RENDER_H

#include <stddef.h>
#include <jansson.h>

#include "core/err.h"

#define MF_RENDER_MAX_TPL (64 * 1024)
#define MF_RENDER_MAX_OUT (256 * 1024)
#define MF_RENDER_MAX_DEPTH 16
#define MF_RENDER_MAX_WORK 200000

typedef struct mf_render_err {
	mf_err_t err;		/* 400 invalid_template (parse) or template_too_large / output_too_large */
	long offset;		/* byte offset in the template of the problem; -1 if none */
} mf_render_err_t;

/* Renders tpl[0..len) (need not be NUL-terminated; a NUL byte is text)
 * over scope (borrowed; any JSON value, usually an object).  On success
 * *out is a malloc'd NUL-terminated string the caller frees and 0 is
 * returned; on failure *out is NULL, err (may be NULL) says why and where,
 * and -1 is returned.  The whole template is parsed before anything is
 * rendered, so a syntax error is reported even in a skipped section. */
int mf_render(const char *tpl, size_t len, const json_t *scope, char **out, mf_render_err_t *err)
	__attribute__((warn_unused_result));

/* Parses only: 0, or -1 with err as mf_render would report it. */
int mf_render_check(const char *tpl, size_t len, mf_render_err_t *err) __attribute__((warn_unused_result));

#endif
