/*
 * template.h - private to catalog/: the shape of a template document, its
 * version numbers, and what its signature covers.  Pure functions, no I/O,
 * so the rules are unit-tested without a server.
 */
#ifndef CAT_TEMPLATE_H
#define CAT_TEMPLATE_H

#include <stdbool.h>
#include <jansson.h>

#include "core/buf.h"
#include "core/err.h"

#define CAT_MAX_ERRORS 50

/* MAJOR.MINOR.PATCH[-PRERELEASE] (semver 2.0.0, no build metadata): each
 * number without leading zeros and below 2^53, the pre-release
 * dot-separated identifiers of [0-9A-Za-z-], numeric ones without leading
 * zeros; at most 64 bytes in all. */
typedef struct cat_semver {
	long long major, minor, patch;
	const char *pre;	/* points into the parsed text; "" for a release */
} cat_semver_t;
bool cat_semver_parse(const char *s, cat_semver_t *out);

/* ^[a-z0-9][a-z0-9-]{0,62}$ */
bool cat_name_ok(const char *s);

/* Checks a publish body (borrowed): every problem as {path, message} into
 * *errors (a new array, at most CAT_MAX_ERRORS; NULL when valid).
 * Returns 0 valid, -1 invalid (err = 400 validation_failed), -2 out of
 * memory (err = 500). */
int cat_template_validate(const json_t *body, json_t **errors, mf_err_t *err) __attribute__((warn_unused_result));

/* The bytes a signature covers: the canonical JSON (core/canon.h) of body
 * without its "signature" member, appended to out.  Returns 0; -1 out of
 * memory; -2 a non-integer number, with err = 400 non_integer_number and
 * *errors naming its path. */
int cat_signed_bytes(const json_t *body, mf_buf_t *out, json_t **errors, mf_err_t *err)
	__attribute__((warn_unused_result));

/* Install (engine/api_installs.c): the values given for a template's
 * parameters (given: an object or NULL) against its "parameters" specs
 * (borrowed).  Every problem, at /params/<name>: not a parameter of the
 * template, the wrong type, not in enum, below minimum / above maximum, a
 * string not matching pattern (POSIX ERE, inputs up to 1024 bytes), a
 * required one missing.  Returns 0 with *out = a new object of every given
 * value plus the defaults of the others; -1 invalid (err = 400
 * validation_failed, *errors = a new array of {path, message}); -2 out of
 * memory. */
int cat_params_resolve(const json_t *specs, const json_t *given, json_t **out, json_t **errors, mf_err_t *err)
	__attribute__((warn_unused_result));

#endif
