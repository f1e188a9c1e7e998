/*
 * definition.c - workflow definitions (see definition.h, docs/workflows.md).
 *
 * Validation is one walk over the document in its own key order, so the
 * problems come out in document order.  The graph facts that belong to a
 * step (not reachable, closes a loop) are computed first from the
 * successor lists that eng_def_successors gives the engine, and reported
 * when the walk reaches that step: the validator and the engine can never
 * disagree about where a step goes.  Paths are built as in policies/policy.c:
 * one growing JSON Pointer, segments escaped with mf_json_pointer.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "connectors/vault.h"
#include "core/buf.h"
#include "core/duration.h"
#include "core/json.h"
#include "core/render.h"
#include "core/spec.h"
#include "engine/definition.h"
#include "engine/expr.h"
#include "policies/authz.h"

#define DAY 86400LL
#define MAX_MAP 50		/* members of query / output objects */
#define MAX_DATA_DEPTH 32	/* nesting walked in body / data */
#define ID_MAX 63
#define EVENT_MAX 128

enum step_type { T_HTTP, T_APPROVAL, T_DECIDE, T_WAIT, T_EMIT, T_TRANSFORM, T_AI, T_MESSAGE, T_COUNT };

static const char *const type_names[T_COUNT] = {
	"http", "approval", "decide", "wait", "emit", "transform", "ai", "message",
};

/* Fields each type takes besides id, type, retry, timeout (and next, which
 * every type but decide takes). */
static const char *const type_known[T_COUNT] = {
	"id, type, next, retry, timeout, milestone, connector, method, path, query, body, output",
	"id, type, next, retry, timeout, milestone, assignee_role, sla, on_timeout, escalate_to, title, next_on_reject",
	"id, type, retry, timeout, milestone, cases, default",
	"id, type, next, retry, timeout, milestone, event, match, duration",
	"id, type, next, retry, timeout, milestone, event, data",
	"id, type, next, retry, timeout, milestone, output",
	"id, type, next, retry, timeout, milestone, connector, task, prompt, labels, fields, options, model, min_confidence, "
	"require_approval, assignee_role, sla, next_on_reject, redact",
	"id, type, next, retry, timeout, milestone, message",
};

static const char *const type_required[T_COUNT][4] = {
	{"connector", "method", "path"},
	{"assignee_role", "sla", "on_timeout", "title"},
	{"cases", "default"},
	{NULL},
	{"event"},
	{"output"},
	{"connector", "task", "prompt"},
	{"message"},
};

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
static const char *const ai_tasks[] = {"summarize", "classify", "extract", "recommend"};
/* the task-specific field of each ai task (summarize has none) */
static const char *const ai_task_field[] = {NULL, "labels", "fields", "options"};
static const char *const ai_field_types[] = {"string", "number", "integer", "boolean"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- problems and paths ---- */

struct vctx {
	const json_t *def;
	json_t *errors;		/* NULL: problems are only counted */
	size_t count;
	mf_buf_t path;		/* JSON Pointer of the value being read */
	size_t safe;		/* path length before the first client-chosen key, SIZE_MAX: none */
	bool oom;
	char first[200];	/* "<safe path>: <message>" of the first problem */
	bool unreachable[ENG_DEF_MAX_STEPS];
	bool closes_loop[ENG_DEF_MAX_STEPS];
};

static const char *path_str(const struct vctx *c)
{
	return c->path.data ? c->path.data : "";
}

/* The errors array (which goes back to the client only) has the full path;
 * the one-line detail, which also reaches logs, stops before the first key
 * the client chose, so nothing the client wrote is repeated there. */
static void problem(struct vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct vctx *c, const char *fmt, ...)
{
	size_t safe = c->safe < c->path.len ? c->safe : c->path.len;
	char msg[160];
	va_list ap;
	json_t *e;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->count++ == 0) {
		if (safe)
			snprintf(c->first, sizeof(c->first), "%.*s: %s", (int)(safe > 100 ? 100 : safe),
				 path_str(c), msg);
		else
			snprintf(c->first, sizeof(c->first), "the definition: %s", msg);
	}
	if (c->errors == NULL || json_array_size(c->errors) >= ENG_DEF_MAX_ERRORS)
		return;
	e = json_pack("{s:s, s:s}", "path", path_str(c), "message", msg);
	if (e == NULL || json_array_append_new(c->errors, e) < 0)
		c->oom = true;
}

/* Appends "/" + key (RFC 6901 escaped); user marks a key the client chose.
 * Returns the length to pop back to. */
static size_t push_key(struct vctx *c, const char *key, bool user)
{
	char seg[2 * 128 + 4];
	size_t old = c->path.len;

	mf_json_pointer(seg, sizeof(seg), "", key);
	if (mf_buf_adds(&c->path, seg) < 0)
		c->oom = true;
	if (user && c->safe == SIZE_MAX)
		c->safe = old;
	return old;
}

static size_t push_index(struct vctx *c, size_t i)
{
	size_t old = c->path.len;

	if (mf_buf_addf(&c->path, "/%zu", i) < 0)
		c->oom = true;
	return old;
}

static void pop(struct vctx *c, size_t old)
{
	if (c->path.data && old <= c->path.len) {
		c->path.len = old;
		c->path.data[old] = '\0';
	}
	if (c->safe != SIZE_MAX && old <= c->safe)
		c->safe = SIZE_MAX;
}

static void unknown_field(struct vctx *c, const char *key, const char *known)
{
	size_t old = push_key(c, key, true);

	problem(c, "unknown field (known: %s)", known);
	pop(c, old);
}

/* A string without embedded NUL, or NULL. */
static const char *str_of(const json_t *v)
{
	const char *s = json_string_value(v);

	return s && strlen(s) == json_string_length(v) ? s : NULL;
}

static int index_of(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

/* ---- names ---- */

/* ^[a-z][a-z0-9_]{0,62}$: step ids and output names. */
static bool ident_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > ID_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* Dotted lower-case: two or more segments of ^[a-z][a-z0-9_]*$, at most
 * EVENT_MAX bytes ("crm.deal.closed_won"). */
static bool event_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0, dots = 0;
	bool seg_start = true;

	if (n < 3 || n > EVENT_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (seg_start) {
			if (!(ch >= 'a' && ch <= 'z'))
				return false;
			seg_start = false;
		} else if (ch == '.') {
			dots++;
			seg_start = true;
		} else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
			return false;
		}
	}
	return dots >= 1 && !seg_start;
}

bool eng_def_event_ok(const char *s)
{
	return event_ok(s);
}

/* ---- value checks (each at the current path) ---- */

static void check_ident(struct vctx *c, const json_t *v, const char *what)
{
	if (!ident_ok(str_of(v)))
		problem(c, "must be %s: a lower-case letter, then up to 62 of a-z, 0-9 and _", what);
}

static void check_event(struct vctx *c, const json_t *v)
{
	if (!event_ok(str_of(v)))
		problem(c, "must be an event name: two or more dot-separated parts of a lower-case letter "
			   "then a-z, 0-9 and _, at most %d characters", EVENT_MAX);
}

static void check_role(struct vctx *c, const json_t *v)
{
	const char *s = str_of(v);

	if (s == NULL || !pol_role_name_ok(s))
		problem(c, "must be a role name: a lower-case letter, then 1 to 62 of a-z, 0-9 and _");
}

static void check_connector(struct vctx *c, const json_t *v)
{
	const char *s = str_of(v);

	if (s == NULL || !cx_name_ok(s))
		problem(c, "must be a connector name: 1 to 63 of a-z 0-9 _ . -, starting with a letter or digit");
}

static void check_bool(struct vctx *c, const json_t *v)
{
	if (!json_is_boolean(v))
		problem(c, "must be true or false");
}

static void check_expr(struct vctx *c, const json_t *v)
{
	const char *s = str_of(v);
	mf_err_t e;

	if (s == NULL) {
		problem(c, "must be an expression (a string)");
		return;
	}
	if (eng_expr_check(s, &e) < 0) {
		if (e.status >= 500)
			c->oom = true;	/* the only failure that is not the input's */
		else
			problem(c, "invalid expression: %s", e.detail);
	}
}

static void check_template(struct vctx *c, const json_t *v)
{
	const char *s = str_of(v);
	mf_err_t e;

	if (s == NULL) {
		problem(c, "must be a string (a template)");
		return;
	}
	if (eng_template_check(s, &e) < 0) {
		if (e.status >= 500)
			c->oom = true;
		else
			problem(c, "invalid template: %s", e.detail);
	}
}

/* Any JSON value: every string in it, at any depth, is a template. */
static void check_data(struct vctx *c, const json_t *v, int depth)
{
	const char *key;
	json_t *m;
	size_t i, old;

	if (depth > MAX_DATA_DEPTH) {
		problem(c, "nests deeper than %d levels", MAX_DATA_DEPTH);
		return;
	}
	if (json_is_string(v)) {
		check_template(c, v);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, m) {
			old = push_index(c, i);
			check_data(c, m, depth + 1);
			pop(c, old);
		}
	} else if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, m) {
			old = push_key(c, key, true);
			check_data(c, m, depth + 1);
			pop(c, old);
		}
	}
}

/* An ISO 8601 duration from lo to hi seconds; returns it, or -1. */
static long long check_duration(struct vctx *c, const json_t *v, long long lo, long long hi)
{
	char los[MF_DURATION_BUFSZ], his[MF_DURATION_BUFSZ];
	const char *s = str_of(v);
	long long secs;
	mf_err_t e;

	if (mf_duration_format(lo, los, sizeof(los)) < 0)
		snprintf(los, sizeof(los), "?");
	if (mf_duration_format(hi, his, sizeof(his)) < 0)
		snprintf(his, sizeof(his), "?");
	if (s == NULL) {
		problem(c, "must be an ISO 8601 duration string from %s to %s", los, his);
		return -1;
	}
	if (mf_duration_parse(s, &secs, &e) < 0) {
		problem(c, "%s", e.detail);
		return -1;
	}
	if (secs < lo || secs > hi) {
		problem(c, "must be from %s to %s", los, his);
		return -1;
	}
	return secs;
}

/* A reference to a step: its id, or (allow_null) null for "end the run". */
static void check_ref(struct vctx *c, const json_t *v, bool allow_null)
{
	const char *s = str_of(v);

	if (json_is_null(v) && allow_null)
		return;
	if (s == NULL || !ident_ok(s))
		problem(c, allow_null ? "must be a step id or null (end the run)" : "must be a step id");
	else if (eng_def_step_index(c->def, s) < 0)
		problem(c, "names no step of this workflow");
}

/* An object of name -> expression (output) or name -> template (query). */
static void check_map(struct vctx *c, const json_t *v, bool expressions)
{
	const char *key;
	json_t *m;

	if (!json_is_object(v) || json_object_size(v) > MAX_MAP || (expressions && json_object_size(v) == 0)) {
		problem(c, "must be an object of %d to %d names, each mapped to %s", expressions ? 1 : 0, MAX_MAP,
			expressions ? "an expression" : "a template");
		return;
	}
	json_object_foreach((json_t *)v, key, m) {
		size_t old = push_key(c, key, true);

		if (expressions && !ident_ok(key))
			problem(c, "the name must be a lower-case letter, then up to 62 of a-z, 0-9 and _");
		else if (!expressions && key[0] == '\0')
			problem(c, "the name must not be empty");
		if (expressions)
			check_expr(c, m);
		else
			check_template(c, m);
		pop(c, old);
	}
}

static void check_enum(struct vctx *c, const json_t *v, const char *const *names, size_t n, const char *list)
{
	if (index_of(str_of(v), names, n) < 0)
		problem(c, "must be one of %s", list);
}

static void check_retry(struct vctx *c, const json_t *v)
{
	static const char *const required[] = {"max_attempts", "backoff", "max_backoff"};
	const char *bs = str_of(json_object_get(v, "backoff")), *key;
	long long backoff = -1;
	json_t *m;

	if (!json_is_object(v)) {
		problem(c, "must be an object {max_attempts, backoff, max_backoff}");
		return;
	}
	/* read ahead, so that the order of the two keys cannot change the verdict */
	if (bs == NULL || mf_duration_parse(bs, &backoff, NULL) < 0 || backoff < 1 || backoff > DAY)
		backoff = -1;
	for (size_t i = 0; i < NELEM(required); i++)
		if (!json_object_get(v, required[i]))
			problem(c, "missing required field \"%s\"", required[i]);
	json_object_foreach((json_t *)v, key, m) {
		size_t old = push_key(c, key, false);

		if (strcmp(key, "max_attempts") == 0) {
			if (!json_is_integer(m) || json_integer_value(m) < 1 || json_integer_value(m) > 20)
				problem(c, "must be an integer from 1 to 20");
		} else if (strcmp(key, "backoff") == 0) {
			(void)check_duration(c, m, 1, DAY);
		} else if (strcmp(key, "max_backoff") == 0) {
			long long max_backoff = check_duration(c, m, 1, DAY);

			if (max_backoff >= 0 && backoff >= 0 && max_backoff < backoff)
				problem(c, "must not be shorter than backoff");
		} else {
			pop(c, old);
			unknown_field(c, key, "max_attempts, backoff, max_backoff");
			continue;
		}
		pop(c, old);
	}
}

static void check_cases(struct vctx *c, const json_t *v)
{
	json_t *cs;
	size_t i;

	if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > ENG_DEF_MAX_CASES) {
		problem(c, "must be an array of 1 to %d cases {when, next}", ENG_DEF_MAX_CASES);
		return;
	}
	json_array_foreach(v, i, cs) {
		size_t old = push_index(c, i);
		const char *key;
		json_t *m;

		if (!json_is_object(cs)) {
			problem(c, "must be an object {when, next}");
			pop(c, old);
			continue;
		}
		if (!json_object_get(cs, "when"))
			problem(c, "missing required field \"when\"");
		if (!json_object_get(cs, "next"))
			problem(c, "missing required field \"next\"");
		json_object_foreach(cs, key, m) {
			size_t o2 = push_key(c, key, false);

			if (strcmp(key, "when") == 0) {
				check_expr(c, m);
			} else if (strcmp(key, "next") == 0) {
				check_ref(c, m, true);
			} else {
				pop(c, o2);
				unknown_field(c, key, "when, next");
				continue;
			}
			pop(c, o2);
		}
		pop(c, old);
	}
}

/* An ai step's labels (classify), fields (extract) or options (recommend):
 * each only with its task. */
static void check_ai_task_field(struct vctx *c, const json_t *step, const char *key, const json_t *v)
{
	int task = index_of(str_of(json_object_get(step, "task")), ai_tasks, NELEM(ai_tasks));
	const char *k;
	json_t *m;
	size_t i;

	if (task < 0 || ai_task_field[task] == NULL || strcmp(ai_task_field[task], key) != 0) {
		problem(c, "only allowed when task is %s",
			strcmp(key, "labels") == 0 ? "classify" : strcmp(key, "fields") == 0 ? "extract" : "recommend");
		return;
	}
	if (strcmp(key, "options") == 0) {
		check_expr(c, v);	/* evaluated over the run context: an array */
		return;
	}
	if (strcmp(key, "labels") == 0) {
		if (!json_is_array(v) || json_array_size(v) < 2 || json_array_size(v) > MAX_MAP) {
			problem(c, "must be an array of 2 to %d labels", MAX_MAP);
			return;
		}
		json_array_foreach(v, i, m) {
			size_t old = push_index(c, i);

			if (!json_is_string(m) || json_string_length(m) < 1 || json_string_length(m) > 64 ||
			    strlen(json_string_value(m)) != json_string_length(m))
				problem(c, "must be a label of 1 to 64 bytes");
			else
				for (size_t j = 0; j < i; j++)
					if (json_equal(m, json_array_get(v, j))) {
						problem(c, "duplicates an earlier label");
						break;
					}
			pop(c, old);
		}
		return;
	}
	if (!json_is_object(v) || json_object_size(v) < 1 || json_object_size(v) > MAX_MAP) {
		problem(c, "must be an object of 1 to %d field names -> string, number, integer or boolean", MAX_MAP);
		return;
	}
	json_object_foreach((json_t *)v, k, m) {
		size_t old = push_key(c, k, true);

		if (!ident_ok(k))
			problem(c, "a field name is a lower-case letter, then up to 62 of a-z, 0-9 and _");
		else if (index_of(str_of(m), ai_field_types, NELEM(ai_field_types)) < 0)
			problem(c, "must be one of string, number, integer, boolean");
		pop(c, old);
	}
}

/* A field of type t other than the common ones; false if t has no such field. */
static bool check_type_field(struct vctx *c, enum step_type t, const json_t *step, const char *key,
			     const json_t *v)
{
	switch (t) {
	case T_HTTP:
		if (strcmp(key, "connector") == 0) {
			check_connector(c, v);
		} else if (strcmp(key, "method") == 0) {
			check_enum(c, v, methods, NELEM(methods), "GET, POST, PUT, PATCH, DELETE");
		} else if (strcmp(key, "path") == 0) {
			if (str_of(v) && str_of(v)[0] != '/')
				problem(c, "must start with /");
			else
				check_template(c, v);
		} else if (strcmp(key, "query") == 0) {
			check_map(c, v, false);
		} else if (strcmp(key, "body") == 0) {
			check_data(c, v, 0);
		} else if (strcmp(key, "output") == 0) {
			check_map(c, v, true);
		} else {
			return false;
		}
		return true;
	case T_APPROVAL:
		if (strcmp(key, "assignee_role") == 0) {
			check_role(c, v);
		} else if (strcmp(key, "sla") == 0) {
			(void)check_duration(c, v, 1, 365 * DAY);
		} else if (strcmp(key, "on_timeout") == 0) {
			static const char *const ot[] = {"escalate", "reject"};

			check_enum(c, v, ot, NELEM(ot), "escalate, reject");
		} else if (strcmp(key, "escalate_to") == 0) {
			const char *ot = str_of(json_object_get(step, "on_timeout"));

			if (ot && strcmp(ot, "reject") == 0)
				problem(c, "only allowed when on_timeout is escalate");
			else
				check_role(c, v);
		} else if (strcmp(key, "title") == 0) {
			check_template(c, v);
		} else if (strcmp(key, "next_on_reject") == 0) {
			check_ref(c, v, true);
		} else {
			return false;
		}
		return true;
	case T_DECIDE:
		if (strcmp(key, "cases") == 0)
			check_cases(c, v);
		else if (strcmp(key, "default") == 0)
			check_ref(c, v, true);
		else
			return false;
		return true;
	case T_WAIT:
		if (strcmp(key, "event") == 0) {
			check_event(c, v);
		} else if (strcmp(key, "match") == 0) {
			if (!json_object_get(step, "event"))
				problem(c, "only allowed when waiting for an event");
			else
				check_expr(c, v);
		} else if (strcmp(key, "duration") == 0) {
			(void)check_duration(c, v, 1, 365 * DAY);
		} else {
			return false;
		}
		return true;
	case T_EMIT:
		if (strcmp(key, "event") == 0)
			check_event(c, v);
		else if (strcmp(key, "data") == 0)
			check_data(c, v, 0);
		else
			return false;
		return true;
	case T_TRANSFORM:
		if (strcmp(key, "output") != 0)
			return false;
		check_map(c, v, true);
		return true;
	case T_AI:
		if (strcmp(key, "connector") == 0) {
			check_connector(c, v);
		} else if (strcmp(key, "task") == 0) {
			check_enum(c, v, ai_tasks, NELEM(ai_tasks), "summarize, classify, extract, recommend");
		} else if (strcmp(key, "prompt") == 0) {
			check_template(c, v);
		} else if (strcmp(key, "min_confidence") == 0) {
			if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
				problem(c, "must be a number from 0 to 1");
		} else if (strcmp(key, "require_approval") == 0) {
			check_bool(c, v);
		} else if (strcmp(key, "assignee_role") == 0) {
			check_role(c, v);
		} else if (strcmp(key, "sla") == 0) {
			(void)check_duration(c, v, 1, 365 * DAY);
		} else if (strcmp(key, "next_on_reject") == 0) {
			check_ref(c, v, true);
		} else if (strcmp(key, "model") == 0) {
			if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 128)
				problem(c, "must be a model name of 1 to 128 bytes");
		} else if (strcmp(key, "labels") == 0 || strcmp(key, "fields") == 0 || strcmp(key, "options") == 0) {
			check_ai_task_field(c, step, key, v);
		} else if (strcmp(key, "redact") == 0) {
			json_t *e;
			size_t i;

			if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > 20) {
				problem(c, "must be an array of 1 to 20 expressions");
				return true;
			}
			json_array_foreach(v, i, e) {
				size_t old = push_index(c, i);

				check_expr(c, e);
				pop(c, old);
			}
		} else {
			return false;
		}
		return true;
	case T_MESSAGE:
		if (strcmp(key, "message") != 0)
			return false;
		if (!json_is_string(v) || !json_object_get(json_object_get(c->def, "messages"), json_string_value(v)))
			problem(c, "must name a message of the workflow's \"messages\"");
		return true;
	case T_COUNT:
		break;
	}
	return false;
}

static void check_step(struct vctx *c, const json_t *step, size_t i)
{
	size_t old = push_index(c, i);
	const json_t *tv = json_object_get(step, "type");
	int t = index_of(str_of(tv), type_names, T_COUNT);
	const char *key, *id;
	json_t *v;

	if (!json_is_object(step)) {
		problem(c, "must be an object {id, type, ...}");
		pop(c, old);
		return;
	}
	if (!json_object_get(step, "id"))
		problem(c, "missing required field \"id\"");
	if (!tv)
		problem(c, "missing required field \"type\"");
	for (size_t k = 0; t >= 0 && k < 4 && type_required[t][k]; k++)
		if (!json_object_get(step, type_required[t][k]))
			problem(c, "missing required field \"%s\"", type_required[t][k]);
	if (t == T_APPROVAL && !json_object_get(step, "escalate_to") && str_of(json_object_get(step, "on_timeout")) &&
	    strcmp(str_of(json_object_get(step, "on_timeout")), "escalate") == 0)
		problem(c, "missing field \"escalate_to\", required when on_timeout is escalate");
	if (t == T_WAIT && !json_object_get(step, "event") == !json_object_get(step, "duration"))
		problem(c, "must have exactly one of \"event\" and \"duration\"");
	if (t == T_AI) {
		int task = index_of(str_of(json_object_get(step, "task")), ai_tasks, NELEM(ai_tasks));

		if (task > 0 && !json_object_get(step, ai_task_field[task]))
			problem(c, "missing field \"%s\", required when task is %s", ai_task_field[task], ai_tasks[task]);
	}
	if (i < ENG_DEF_MAX_STEPS && c->unreachable[i])
		problem(c, "is not reachable from the start step");
	if (i < ENG_DEF_MAX_STEPS && c->closes_loop[i])
		problem(c, "closes a loop with no wait or approval step on it");

	json_object_foreach((json_t *)step, key, v) {
		size_t o2 = push_key(c, key, false);

		if (strcmp(key, "id") == 0) {
			check_ident(c, v, "a step id");
			id = str_of(v);
			if (ident_ok(id) && eng_def_step_index(c->def, id) != (int)i)
				problem(c, "duplicates the id of an earlier step");
		} else if (strcmp(key, "type") == 0) {
			if (t < 0)
				problem(c, "must be one of http, approval, decide, wait, emit, transform, ai, message");
		} else if (strcmp(key, "next") == 0 && t != T_DECIDE) {
			check_ref(c, v, true);
		} else if (strcmp(key, "retry") == 0) {
			check_retry(c, v);
		} else if (strcmp(key, "timeout") == 0) {
			(void)check_duration(c, v, 1, 365 * DAY);
		} else if (strcmp(key, "milestone") == 0) {
			if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > ENG_DEF_MAX_TITLE)
				problem(c, "must be a string of 1 to %d bytes (the client sees it)", ENG_DEF_MAX_TITLE);
		} else if (t < 0) {
			/* no type to judge the other fields against */
		} else if (!check_type_field(c, (enum step_type)t, step, key, v)) {
			pop(c, o2);
			unknown_field(c, key, type_known[t]);
			continue;
		}
		pop(c, o2);
	}
	pop(c, old);
}

static void check_trigger(struct vctx *c, const json_t *v)
{
	const char *key;
	json_t *m;

	if (!json_is_object(v)) {
		problem(c, "must be an object {event, when}");
		return;
	}
	if (!json_object_get(v, "event"))
		problem(c, "missing required field \"event\"");
	json_object_foreach((json_t *)v, key, m) {
		size_t old = push_key(c, key, false);

		if (strcmp(key, "event") == 0) {
			check_event(c, m);
		} else if (strcmp(key, "when") == 0) {
			check_expr(c, m);
		} else {
			pop(c, old);
			unknown_field(c, key, "event, when");
			continue;
		}
		pop(c, old);
	}
}

/* ---- the step graph ---- */

static bool is_barrier(const json_t *step)
{
	const char *t = str_of(json_object_get(step, "type"));

	return t && (strcmp(t, "wait") == 0 || strcmp(t, "approval") == 0);
}

enum { WHITE, GREY, BLACK };

/* Depth-first search over the steps that are not wait or approval; an edge
 * back to a step still on the stack closes a loop.  Depth <= 100. */
static void dfs(struct vctx *c, size_t u, unsigned char *color)
{
	int succ[ENG_DEF_MAX_SUCC];
	size_t n = eng_def_successors(c->def, u, succ, ENG_DEF_MAX_SUCC);

	color[u] = GREY;
	for (size_t k = 0; k < n; k++) {
		int v = succ[k];

		if (v < 0 || is_barrier(eng_def_step_at(c->def, (size_t)v)))
			continue;
		if (color[v] == GREY)
			c->closes_loop[u] = true;
		else if (color[v] == WHITE)
			dfs(c, (size_t)v, color);
	}
	color[u] = BLACK;
}

static void analyse_graph(struct vctx *c)
{
	size_t n = eng_def_step_count(c->def), head = 0, tail = 0;
	unsigned char color[ENG_DEF_MAX_STEPS] = {0};
	bool seen[ENG_DEF_MAX_STEPS] = {0};
	size_t queue[ENG_DEF_MAX_STEPS];
	int start = eng_def_start(c->def);

	if (n < 1 || n > ENG_DEF_MAX_STEPS)
		return;
	if (start >= 0) {
		seen[start] = true;
		queue[tail++] = (size_t)start;
		while (head < tail) {
			int succ[ENG_DEF_MAX_SUCC];
			size_t m = eng_def_successors(c->def, queue[head++], succ, ENG_DEF_MAX_SUCC);

			for (size_t k = 0; k < m; k++)
				if (succ[k] >= 0 && !seen[succ[k]]) {
					seen[succ[k]] = true;
					queue[tail++] = (size_t)succ[k];
				}
		}
		for (size_t i = 0; i < n; i++)
			c->unreachable[i] = !seen[i];
	}
	for (size_t i = 0; i < n; i++)
		if (color[i] == WHITE && !is_barrier(eng_def_step_at(c->def, i)))
			dfs(c, i, color);
}

/* "messages": name -> message template (core/render.h), rendered by
 * message steps. */
static void check_messages(struct vctx *c, const json_t *v)
{
	const char *k;
	json_t *m;

	if (!json_is_object(v) || json_object_size(v) > ENG_DEF_MAX_MESSAGES) {
		problem(c, "must be an object of at most %d message templates", ENG_DEF_MAX_MESSAGES);
		return;
	}
	json_object_foreach((json_t *)v, k, m) {
		size_t old = push_key(c, k, true);
		mf_render_err_t e;

		if (!eng_def_message_name_ok(k))
			problem(c, "a message name is 1 to 64 of a-z, 0-9, _, . and -, starting with a letter, digit or _");
		else if (!json_is_string(m) || json_string_length(m) > ENG_DEF_MAX_MESSAGE)
			problem(c, "must be a string of at most %d bytes", ENG_DEF_MAX_MESSAGE);
		else if (mf_render_check(json_string_value(m), json_string_length(m), &e) < 0)
			problem(c, "invalid message template at byte %ld: %s", e.offset, e.err.detail);
		pop(c, old);
	}
}

/* mf_spec_check's problems, at their path under the current one. */
static void spec_bad(void *arg, const char *path, const char *msg)
{
	struct vctx *c = arg;
	size_t old = c->path.len;

	if (mf_buf_adds(&c->path, path) < 0)
		c->oom = true;
	problem(c, "%s", msg);
	pop(c, old);
}

/* "request.fields": the form's fields in the order shown, each a value
 * spec (core/spec.h) with its "name". */
static void check_fields(struct vctx *c, const json_t *v)
{
	size_t i;
	json_t *f;

	if (!json_is_array(v) || json_array_size(v) > ENG_DEF_MAX_FIELDS) {
		problem(c, "must be an array of at most %d field specs", ENG_DEF_MAX_FIELDS);
		return;
	}
	json_array_foreach(v, i, f) {
		size_t old = push_index(c, i);
		const char *name = str_of(json_object_get(f, "name"));
		json_t *spec;

		if (!json_is_object(f)) {
			problem(c, "must be a field spec {name, type, ...}");
		} else if (name == NULL) {
			problem(c, "missing required field \"name\"");
		} else if (!mf_spec_name_ok(name)) {
			size_t o2 = push_key(c, "name", false);

			problem(c, "a field name is 1 to 63 of a-z, 0-9 and _, not starting with a digit");
			pop(c, o2);
		} else if (strcmp(name, "id") == 0 || strcmp(name, "type") == 0 || strcmp(name, "requester") == 0) {
			size_t o2 = push_key(c, "name", false);

			problem(c, "names a member the portal sets (id, type, requester)");
			pop(c, o2);
		} else if (eng_def_field_index(v, name) != i) {
			size_t o2 = push_key(c, "name", false);

			problem(c, "duplicates the name of an earlier field");
			pop(c, o2);
		} else if ((spec = json_copy(f)) == NULL || json_object_del(spec, "name") < 0) {
			json_decref(spec);
			c->oom = true;
		} else {
			mf_spec_check("", name, spec, spec_bad, c);
			json_decref(spec);
		}
		pop(c, old);
	}
}

size_t eng_def_field_index(const json_t *fields, const char *name)
{
	size_t i;
	json_t *f;

	json_array_foreach(fields, i, f)
		if (name && str_of(json_object_get(f, "name")) && strcmp(str_of(json_object_get(f, "name")), name) == 0)
			return i;
	return SIZE_MAX;
}

int eng_def_form_specs(json_t *specs, const json_t *def)
{
	const json_t *fields = json_object_get(json_object_get(def, "request"), "fields");
	size_t i;
	json_t *f;

	json_array_foreach(fields, i, f) {
		const char *name = str_of(json_object_get(f, "name"));
		json_t *spec;

		if (name == NULL || json_object_get(specs, name))
			continue;
		spec = json_copy(f);
		if (spec == NULL || json_object_del(spec, "name") < 0 || json_object_set_new(specs, name, spec) < 0)
			return -1;
	}
	return 0;
}

/* "request": the portal request form of a workflow triggered by
 * portal.request.<type> (docs/portal.md): {title, description?, fields}. */
static void check_request(struct vctx *c, const json_t *v)
{
	const char *ev = str_of(json_object_get(json_object_get(c->def, "trigger"), "event"));
	const char *key;
	json_t *m;

	if (!json_is_object(v)) {
		problem(c, "must be an object {title, description, fields}");
		return;
	}
	if (ev && strncmp(ev, "portal.request.", 15) != 0)
		problem(c, "a request form needs a trigger on portal.request.<type>");
	if (!json_object_get(v, "title"))
		problem(c, "missing required field \"title\"");
	json_object_foreach((json_t *)v, key, m) {
		size_t old = push_key(c, key, false);

		if (strcmp(key, "title") == 0) {
			if (!json_is_string(m) || json_string_length(m) < 1 || json_string_length(m) > ENG_DEF_MAX_TITLE)
				problem(c, "must be a string of 1 to %d bytes", ENG_DEF_MAX_TITLE);
		} else if (strcmp(key, "description") == 0) {
			if (!json_is_string(m) || json_string_length(m) > 1000)
				problem(c, "must be a string of at most 1000 bytes");
		} else if (strcmp(key, "fields") == 0) {
			check_fields(c, m);
		} else {
			pop(c, old);
			unknown_field(c, key, "title, description, fields");
			continue;
		}
		pop(c, old);
	}
}

bool eng_def_message_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > 64 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' ||
		      s[i] == '-'))
			return false;
	return true;
}

static void check_def(struct vctx *c, const json_t *def)
{
	const char *key;
	json_t *v;
	size_t i;

	if (!json_is_object(def)) {
		problem(c, "must be a JSON object {trigger, steps, start, params, messages, request}");
		return;
	}
	if (!json_object_get(def, "trigger"))
		problem(c, "missing required field \"trigger\"");
	if (!json_object_get(def, "steps"))
		problem(c, "missing required field \"steps\"");
	analyse_graph(c);
	json_object_foreach((json_t *)def, key, v) {
		size_t old = push_key(c, key, false);

		if (strcmp(key, "trigger") == 0) {
			check_trigger(c, v);
		} else if (strcmp(key, "steps") == 0) {
			json_t *step;

			if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > ENG_DEF_MAX_STEPS)
				problem(c, "must be an array of 1 to %d steps", ENG_DEF_MAX_STEPS);
			json_array_foreach(v, i, step)
				check_step(c, step, i);
		} else if (strcmp(key, "start") == 0) {
			check_ref(c, v, false);
		} else if (strcmp(key, "params") == 0) {
			if (!json_is_object(v))
				problem(c, "must be a JSON object");
			else if (json_dumpb(v, NULL, 0, JSON_COMPACT) > ENG_DEF_MAX_PARAMS)
				problem(c, "is larger than %d bytes as JSON", ENG_DEF_MAX_PARAMS);
		} else if (strcmp(key, "messages") == 0) {
			check_messages(c, v);
		} else if (strcmp(key, "request") == 0) {
			check_request(c, v);
		} else {
			pop(c, old);
			unknown_field(c, key, "trigger, steps, start, params, messages, request");
			continue;
		}
		pop(c, old);
	}
}

int eng_def_validate(const json_t *def, json_t **errors, mf_err_t *err)
{
	struct vctx c = {.def = def, .safe = SIZE_MAX};

	if (errors)
		*errors = NULL;
	c.errors = errors ? json_array() : NULL;
	if (errors && c.errors == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory while validating the workflow");
	if (mf_buf_adds(&c.path, "") < 0)
		c.oom = true;
	check_def(&c, def);
	mf_buf_free(&c.path);
	if (c.oom) {
		json_decref(c.errors);
		return mf_err_set(err, 500, "out_of_memory", "out of memory while validating the workflow");
	}
	if (c.count == 0) {
		json_decref(c.errors);
		return 0;
	}
	if (errors)
		*errors = c.errors;
	if (c.count == 1)
		return mf_err_set(err, 400, "validation_failed", "the workflow definition has 1 problem: %s", c.first);
	return mf_err_set(err, 400, "validation_failed", "the workflow definition has %zu problems%s; the first: %s",
			  c.count, c.count > ENG_DEF_MAX_ERRORS ? " (the first 100 are listed)" : "", c.first);
}

/* ---- reads ---- */

size_t eng_def_step_count(const json_t *def)
{
	return json_array_size(json_object_get(def, "steps"));
}

const json_t *eng_def_step_at(const json_t *def, size_t i)
{
	return json_array_get(json_object_get(def, "steps"), i);
}

int eng_def_step_index(const json_t *def, const char *id)
{
	const json_t *steps = json_object_get(def, "steps");
	size_t n = json_array_size(steps);

	if (id == NULL || n > INT32_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *s = str_of(json_object_get(json_array_get(steps, i), "id"));

		if (s && strcmp(s, id) == 0)
			return (int)i;
	}
	return -1;
}

int eng_def_start(const json_t *def)
{
	const json_t *start = json_object_get(def, "start");

	if (start)
		return eng_def_step_index(def, str_of(start));
	return eng_def_step_count(def) > 0 ? 0 : -1;
}

/* Appends the target of a reference (null: end; unknown: nothing). */
static void add_ref(const json_t *def, const json_t *ref, int *out, size_t max, size_t *n)
{
	int to;

	if (*n >= max)
		return;
	if (json_is_null(ref)) {
		out[(*n)++] = ENG_DEF_END;
	} else if ((to = eng_def_step_index(def, str_of(ref))) >= 0) {
		out[(*n)++] = to;
	}
}

size_t eng_def_successors(const json_t *def, size_t i, int *out, size_t max)
{
	const json_t *step = eng_def_step_at(def, i), *next, *cs;
	const char *type = str_of(json_object_get(step, "type"));
	size_t n = 0, k;

	if (!json_is_object(step))
		return 0;
	if (type && strcmp(type, "decide") == 0) {
		json_array_foreach(json_object_get(step, "cases"), k, cs)
			if (json_is_object(cs))
				add_ref(def, json_object_get(cs, "next"), out, max, &n);
		add_ref(def, json_object_get(step, "default"), out, max, &n);
		return n;
	}
	next = json_object_get(step, "next");
	if (next == NULL) {
		if (n < max)
			out[n++] = i + 1 < eng_def_step_count(def) ? (int)(i + 1) : ENG_DEF_END;
	} else {
		add_ref(def, next, out, max, &n);
	}
	if (type && (strcmp(type, "approval") == 0 || strcmp(type, "ai") == 0)) {
		next = json_object_get(step, "next_on_reject");
		if (next == NULL) {
			if (n < max)
				out[n++] = ENG_DEF_END;
		} else {
			add_ref(def, next, out, max, &n);
		}
	}
	return n;
}
