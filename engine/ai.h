/*
 * ai.h - the pure half of ai steps (docs/ai.md): what is asked of an
 * OpenAI-compatible chat completions endpoint, what a valid answer is for
 * each task, and what governance makes of it.  No I/O: the runner sends
 * the request through the step's connector and feeds the answer back; the
 * task decision route checks a reviewer's edited output with the same
 * rules as the model's.
 *
 * A task's "spec" is {"task", "labels" | "fields" | "options"}: the step's
 * own fields, with recommend's options already evaluated to an array of
 * strings.  Answers, per task (every one carries "confidence", a number
 * from 0 to 1, unless it comes from a human):
 *   summarize  {"summary": non-empty string}
 *   classify   {"label": one of labels}
 *   extract    {"fields": {every declared field: its type, or null}}
 *   recommend  {"option": one of options, "reason": string}
 * Members beyond these are dropped.
 */
#ifndef ENG_AI_H
#define ENG_AI_H

#include <stdbool.h>
#include <jansson.h>

#include "core/err.h"

#define ENG_AI_MAX_TEXT 8192		/* summary, reason, an extracted string */
#define ENG_AI_MAX_OPTIONS 50

/* The spec of step (borrowed) with options (borrowed, recommend only: the
 * evaluated "options" expression).  New reference; NULL with err 400
 * invalid_options when options is not an array of 1 to 50 distinct
 * strings of 1 to 200 bytes, or when out of memory (err 500). */
json_t *eng_ai_spec(const json_t *step, const json_t *options, mf_err_t *err);

/* The chat completions request body (malloc'd compact JSON) asking for
 * the spec's answer as one JSON object: a system message stating the
 * task and the exact answer shape, the user's prompt, JSON mode,
 * temperature 0, max_tokens and the step's model (left out when NULL).
 * After an invalid answer, complaint (the validation error) is added as
 * a last message asking for a corrected answer.  NULL when out of
 * memory. */
char *eng_ai_request(const json_t *spec, const char *prompt, const char *model, long long max_tokens,
		     const char *complaint);

/* Checks a model's response body (parsed JSON, borrowed): the first
 * choice's message content, stripped of whitespace and a ``` fence, must
 * be a JSON object that eng_ai_check accepts.  0 with *out = the answer
 * (new reference); -1 with err 422 invalid_output saying why (never
 * quoting the answer). */
int eng_ai_answer(const json_t *spec, const json_t *response, json_t **out, mf_err_t *err)
	__attribute__((warn_unused_result));

/* Checks an answer (borrowed) against spec.  human: a reviewer's edit,
 * which carries no confidence.  0 with *out = a new object with only the
 * task's members; -1 with err (422 invalid_output) and, when path is not
 * NULL, the JSON Pointer (within the answer) of the problem in path[64]. */
int eng_ai_check(const json_t *spec, const json_t *answer, bool human, json_t **out, mf_err_t *err,
		 char *path) __attribute__((warn_unused_result));

/* Governance: does this answer need a human?  policy_ai is the tenant's
 * effective "ai" policy section, step the ai step (both borrowed).
 * Returns NULL (no: the answer flows on) or why: "policy" (the policy
 * requires human approval), "step" (the step does), "low_confidence"
 * (below the higher of the policy's and the step's min_confidence). */
const char *eng_ai_review_reason(const json_t *policy_ai, const json_t *step, double confidence);

/* May this tenant run this step at all?  NULL, or a problem code:
 * "ai_disabled" (policy ai.enabled is false) or "ai_task_not_allowed"
 * (the task is not in ai.allowed_tasks). */
const char *eng_ai_refusal(const json_t *policy_ai, const char *task);

#endif
