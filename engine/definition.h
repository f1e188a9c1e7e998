/*
 * definition.h - workflow definitions: the format (docs/workflows.md) and
 * its validator, plus the few reads the engine needs to walk a definition.
 *
 * Pure: no I/O, no clock, no database.  A definition is a JSON object
 * {"trigger", "steps", "start"?, "params"?, "messages"?, "request"?}; every
 * step has an "id", a "type" (http, approval, decide, wait, emit,
 * transform, ai, message), the fields of its type and an optional
 * "milestone" (a title the client portal shows once the step succeeded).
 * Validation checks the shape of every field, expressions and templates
 * (engine/expr.h) at their exact JSON Pointer, and the step graph: unique
 * ids, no dangling references, every step reachable from the start, and
 * no loop that could spin without a wait or approval step on it.
 */
#ifndef ENG_DEFINITION_H
#define ENG_DEFINITION_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "core/err.h"

#define ENG_DEF_MAX_STEPS 100
#define ENG_DEF_MAX_CASES 50
/* "params": any JSON object of at most this many bytes (compact JSON). */
#define ENG_DEF_MAX_PARAMS (64 * 1024)
/* "messages": at most this many, each at most this many bytes. */
#define ENG_DEF_MAX_MESSAGES 100
#define ENG_DEF_MAX_MESSAGE 8192
/* A step's "milestone" and a request form's "title": at most this many bytes. */
#define ENG_DEF_MAX_TITLE 120
/* "request.fields": at most this many field specs (core/spec.h). */
#define ENG_DEF_MAX_FIELDS 50
/* At most this many problems are listed (the count in the detail is exact). */
#define ENG_DEF_MAX_ERRORS 100
/* eng_def_successors never writes more than this many entries. */
#define ENG_DEF_MAX_SUCC (ENG_DEF_MAX_CASES + 1)
/* A successor that ends the run. */
#define ENG_DEF_END (-1)

/* Validates def (borrowed; NULL or a non-object is one problem at "").
 * Returns 0 (and *errors = NULL), or -1 with err = 400 "validation_failed"
 * whose detail is one line (the problem count and the first message), and
 * *errors = a new JSON array of {"path", "message"} in document order (at
 * most ENG_DEF_MAX_ERRORS): path is a JSON Pointer (RFC 6901), messages
 * never quote input values.  errors may be NULL.  Out of memory: -1 with
 * err = 500 "out_of_memory" and *errors = NULL. */
int eng_def_validate(const json_t *def, json_t **errors, mf_err_t *err)
	__attribute__((warn_unused_result));

/* A message name: 1 to 64 of a-z 0-9 _ . -, not starting with . or -. */
bool eng_def_message_name_ok(const char *s);

/* An event name: two or more dot-separated parts, each a lower-case
 * letter then a-z, 0-9 and _, at most 128 characters in all. */
bool eng_def_event_ok(const char *s);

/* The index of the field named name in a "request.fields" array, or
 * SIZE_MAX. */
size_t eng_def_field_index(const json_t *fields, const char *name);
/* Adds def's request form fields to specs (an object: name -> value spec
 * without "name"), each name the first time it is seen, so a type's form
 * is the union of its workflows' forms.  0, or -1 out of memory. */
int eng_def_form_specs(json_t *specs, const json_t *def) __attribute__((warn_unused_result));

/* The reads below take a definition (borrowed) and are meant for validated
 * ones; on any other JSON they stay safe and answer "nothing". */

/* Number of steps (0 if "steps" is not an array). */
size_t eng_def_step_count(const json_t *def);
/* Step i (borrowed from def), or NULL. */
const json_t *eng_def_step_at(const json_t *def, size_t i);
/* The index of the first step with this id, or -1. */
int eng_def_step_index(const json_t *def, const char *id);
/* The index of the start step ("start", else the first step), or -1. */
int eng_def_start(const json_t *def);
/* Where step i can go next, in document order: indexes of steps, or
 * ENG_DEF_END; references that name no step are left out.  A step without
 * "next" goes to the following step of the array (the last one ends);
 * "next": null ends.  approval adds next_on_reject (absent: end); decide
 * lists its cases' next then default; ai adds next_on_reject like approval.  Writes at most max entries to out
 * and returns how many it wrote. */
size_t eng_def_successors(const json_t *def, size_t i, int *out, size_t max);

#endif
