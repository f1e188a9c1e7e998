/*
 * policy.h - tenant policy documents: validation, inheritance, typed reads.
 *
 * A tenant's policy is a JSON object with the sections rate_limit, engine,
 * egress, approvals, ai and retention (docs/policies.md lists every field,
 * its range and its default).  Every section and field is optional; unknown
 * keys, wrong JSON types and out-of-range values are errors.  Integer fields
 * take JSON integers only: 10.0 and 1e3 are refused like "10" and true, so a
 * stored document reads back exactly as it was accepted.
 *
 * Inheritance: defaults <- parent document <- own document, field by field
 * (arrays replace).  When there is a parent, its effective values also cap
 * what the child may grant itself (see pol_policy_effective).  An effective
 * document is complete (every field present) and is itself a valid policy
 * document, so it can be passed as parent_doc to chain deeper hierarchies.
 */
#ifndef POL_POLICY_H
#define POL_POLICY_H

#include <jansson.h>
#include "core/err.h"

/* At most this many problems are listed in the errors array (the count in
 * the detail is exact): bounds the size of an error response. */
#define POL_POLICY_MAX_ERRORS 100

/* Validates doc (borrowed; NULL is reported as "must be a JSON object").
 * Returns 0 (and *errors = NULL), or -1 with err = 400 "validation_failed"
 * whose detail is a one-line summary (the problem count and the first
 * message), and *errors = a new JSON array of {"path", "message"} objects,
 * one per problem in document order: path is a JSON Pointer (RFC 6901, "~0"
 * and "~1" escaping, array indexes as segments, "" for the document itself).
 * Messages never quote the input, so both are safe to return to clients.
 * errors may be NULL.  Out of memory: -1 with err = 500 "out_of_memory" and
 * *errors = NULL. */
int pol_policy_validate(const json_t *doc, json_t **errors, mf_err_t *err)
	__attribute__((warn_unused_result));

/* The built-in platform defaults: a new reference to a complete document
 * (every field present), or NULL when out of memory. */
json_t *pol_policy_defaults(void) __attribute__((warn_unused_result));

/* The effective policy of a tenant: a new reference (NULL when out of
 * memory) computed as defaults <- parent_doc <- own_doc; both borrowed, both
 * may be NULL.  Sections merge field by field, arrays replace, durations come
 * out in canonical form.  Fields that would fail validation are skipped (the
 * inherited value stays), so even an unvalidated document yields a valid
 * result; callers should still validate documents when they are stored.
 *
 * With a parent_doc, the parent's effective values P (defaults <- parent_doc)
 * cap the child:
 *   rate_limit   tenant_requests, client_requests <= P's, scaled by
 *                child window / P window when the child's window differs
 *                (the parent's rate per second times the child's window,
 *                rounded down); if that rounds to 0 the child gets P's window
 *   engine       max_concurrent_runs, max_queued_runs: min(P, child)
 *   egress       allow_private only if P allows it; allow_hosts is the
 *                intersection of the two lists (an entry survives if the
 *                other list has it or a "*." entry covering it)
 *   ai           enabled only if P enables it; require_human_approval if P
 *                requires it; min_confidence max(P, child); allowed_tasks
 *                intersection; max_output_tokens min(P, child)
 *   retention    runs, events, audit: min(P, child)
 * approvals and ai.log_prompts are not governed: the child's own values win.
 * In every effective document client_requests <= tenant_requests (an
 * inherited client_requests is lowered to a smaller tenant_requests). */
json_t *pol_policy_effective(const json_t *parent_doc, const json_t *own_doc)
	__attribute__((warn_unused_result));

typedef struct pol_rate_plan {
	int window_s;		/* length of the rate window in seconds */
	int tenant_requests;	/* requests per window for the whole tenant */
	int client_requests;	/* requests per window for one API client of the tenant */
} pol_rate_plan_t;

/* Reads the rate limits of an effective document (borrowed; NULL or a
 * missing or invalid field reads as the default). */
void pol_policy_rate_plan(const json_t *effective, pol_rate_plan_t *out);

#endif
