/*
 * spec.h - value specs: the shape of a template parameter (docs/templates.md)
 * and of a portal request form's field (docs/portal.md).  A spec is a JSON
 * object {type, required?, enum?, default?, minimum?, maximum?, pattern?,
 * title?, description?}; type is one of string, integer, number, boolean,
 * array, object.
 *
 * Pure: no I/O.  Problems are reported at JSON Pointers; messages never
 * quote the input.
 */
#ifndef MF_SPEC_H
#define MF_SPEC_H

#include <stdbool.h>
#include <jansson.h>

#include "core/err.h"

/* At most this many problems are collected by mf_spec_resolve. */
#define MF_SPEC_MAX_ERRORS 50
/* A pattern-checked string is matched only up to this size: regexec's cost
 * grows with the input. */
#define MF_SPEC_PATTERN_MAX_INPUT 1024

/* Called once per problem: path is a JSON Pointer, msg a fixed text. */
typedef void mf_spec_bad_fn(void *arg, const char *path, const char *msg);

/* A spec's name: 1 to 63 of a-z, 0-9 and _, starting with a letter or _. */
bool mf_spec_name_ok(const char *s);

/* Checks the spec named name at path base: the name, the members and their
 * types, bounds that fit the type, a pattern that compiles (POSIX ERE), an
 * enum and a default within the spec, no default on a required one. */
void mf_spec_check(const char *base, const char *name, const json_t *spec, mf_spec_bad_fn *bad, void *arg);

/* The values given (an object or NULL) against specs (an object of specs,
 * borrowed).  Every problem at <prefix>/<name>: not one of specs (the
 * message names noun: "parameter", "field"), the wrong type, not in enum,
 * out of minimum..maximum, not matching pattern, a required one missing.
 * Returns 0 with *out = a new object of every given value plus the
 * defaults of the others; -1 invalid (err = 400 validation_failed whose
 * detail counts the problems, *errors = a new array of {path, message});
 * -2 out of memory (err = 500). */
int mf_spec_resolve(const json_t *specs, const json_t *given, const char *prefix, const char *noun, json_t **out,
		    json_t **errors, mf_err_t *err) __attribute__((warn_unused_result));

#endif
