/*
 * canon.h - canonical JSON: the one byte sequence of a JSON value that
 * partner template signatures cover (docs/templates.md defines it for
 * people who sign with other tools):
 *
 *   - objects: members sorted by the bytes of their UTF-8 keys, no
 *     insignificant whitespace (",", ":" separators only);
 *   - strings: UTF-8 as is; escaped are only '"' and '\\' (as \" and \\)
 *     and the control characters U+0000..U+001F: \b \f \n \r \t by name,
 *     the others as \u00xx with lower-case hex ('/' and non-ASCII are
 *     never escaped);
 *   - integers in shortest decimal form ("-0" is 0); true, false, null;
 *   - non-integer numbers are refused: no two tools agree on how to print
 *     them.
 */
#ifndef MF_CANON_H
#define MF_CANON_H

#include <stddef.h>
#include <jansson.h>

#include "core/buf.h"

/* Appends the canonical form of v (borrowed) to out.  Returns 0; -1 out
 * of memory; -2 when v holds a non-integer number, with its JSON Pointer
 * (relative to v, "" for v itself) in bad_path (always NUL-terminated when
 * bad_len > 0).  On failure out may hold a partial value. */
int mf_json_canonical(const json_t *v, mf_buf_t *out, char *bad_path, size_t bad_len)
	__attribute__((warn_unused_result));

#endif
