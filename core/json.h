/*
 * json.h - strict JSON input over jansson.
 *
 * mf_json_parse() is the only way request bodies become json_t: it rejects
 * nesting deeper than max_depth (checked by a scan before jansson recurses),
 * duplicate object keys, invalid UTF-8, "\u0000", and anything but an
 * object or array at the top level.
 */
#ifndef MF_JSON_H
#define MF_JSON_H

#include <stddef.h>
#include <jansson.h>
#include "core/err.h"

#define MF_JSON_MAX_DEPTH_DEFAULT 64

/* Returns a new reference (caller json_decref()s it), or NULL with err set
 * to 400 "invalid_json" / "json_too_deep". */
json_t *mf_json_parse(const char *buf, size_t len, int max_depth, mf_err_t *err);

/* Nesting depth of the JSON text (arrays and objects), ignoring brackets in
 * strings; stops counting and returns limit+1 as soon as limit is exceeded. */
int mf_json_depth(const char *buf, size_t len, int limit);

/* prefix "/" key as a JSON Pointer (RFC 6901: '~' is written "~0" and '/'
 * "~1") into out (always NUL-terminated); the key is cut at 128 bytes so
 * that a pointer to a hostile key stays short. */
void mf_json_pointer(char *out, size_t len, const char *prefix, const char *key);

#endif
