/*
 * policy.c - tenant policy documents (see policy.h and docs/policies.md).
 *
 * One table describes every section and field.  A single reader walks a
 * document against it and both reports problems (with JSON Pointer paths)
 * and stores each valid field into a typed struct pdoc.  Validation is that
 * reader with a problem list; inheritance is the same reader run over
 * defaults, then the parent, then the child, so a field is taken only when it
 * would validate, and the result is serialised from the struct.  Keeping a
 * single reader means validation and merging can never disagree about what
 * a field means.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/duration.h"
#include "policies/policy.h"

enum field_id {
	F_WINDOW, F_TENANT_REQ, F_CLIENT_REQ,
	F_MAX_CONC, F_MAX_QUEUED,
	F_ALLOW_HOSTS, F_ALLOW_PRIVATE,
	F_DEFAULT_SLA, F_ON_TIMEOUT, F_ESC_ROLE, F_RULES,
	F_AI_ENABLED, F_AI_HUMAN, F_AI_MIN_CONF, F_AI_TASKS, F_AI_LOG_PROMPTS, F_AI_MAX_TOKENS,
	F_RET_RUNS, F_RET_EVENTS, F_RET_AUDIT,
	F_COUNT
};

enum kind { K_DURATION, K_INT, K_BOOL, K_HOSTS, K_ON_TIMEOUT, K_ROLE, K_RULES, K_CONFIDENCE, K_TASKS };

struct field {
	const char *name;
	enum field_id id;
	enum kind kind;
	long long lo, hi;	/* seconds, integer range, or the most entries of an array */
};

struct section {
	const char *name;
	const struct field *fields;
	size_t n;
};

#define DAY 86400LL
#define MAX_HOSTS 256
#define MAX_RULES 100
#define ROLE_MAX 63

static const struct field rate_fields[] = {
	{"window", F_WINDOW, K_DURATION, 1, 3600},
	{"tenant_requests", F_TENANT_REQ, K_INT, 1, 10000000},
	{"client_requests", F_CLIENT_REQ, K_INT, 1, 10000000},
};
static const struct field engine_fields[] = {
	{"max_concurrent_runs", F_MAX_CONC, K_INT, 1, 10000},
	{"max_queued_runs", F_MAX_QUEUED, K_INT, 0, 1000000},
};
static const struct field egress_fields[] = {
	{"allow_hosts", F_ALLOW_HOSTS, K_HOSTS, 0, MAX_HOSTS},
	{"allow_private", F_ALLOW_PRIVATE, K_BOOL, 0, 1},
};
static const struct field approvals_fields[] = {
	{"default_sla", F_DEFAULT_SLA, K_DURATION, 60, 365 * DAY},
	{"on_timeout", F_ON_TIMEOUT, K_ON_TIMEOUT, 0, 1},
	{"escalation_role", F_ESC_ROLE, K_ROLE, 0, 0},
	{"rules", F_RULES, K_RULES, 0, MAX_RULES},
};
static const struct field ai_fields[] = {
	{"enabled", F_AI_ENABLED, K_BOOL, 0, 1},
	{"require_human_approval", F_AI_HUMAN, K_BOOL, 0, 1},
	{"min_confidence", F_AI_MIN_CONF, K_CONFIDENCE, 0, 1},
	{"allowed_tasks", F_AI_TASKS, K_TASKS, 0, 4},
	{"log_prompts", F_AI_LOG_PROMPTS, K_BOOL, 0, 1},
	{"max_output_tokens", F_AI_MAX_TOKENS, K_INT, 1, 32768},
};
static const struct field retention_fields[] = {
	{"runs", F_RET_RUNS, K_DURATION, DAY, 3650 * DAY},
	{"events", F_RET_EVENTS, K_DURATION, DAY, 3650 * DAY},
	{"audit", F_RET_AUDIT, K_DURATION, DAY, 3650 * DAY},
};

#define SECTION(name, f) { name, f, sizeof(f) / sizeof(f[0]) }
static const struct section sections[] = {
	SECTION("rate_limit", rate_fields),
	SECTION("engine", engine_fields),
	SECTION("egress", egress_fields),
	SECTION("approvals", approvals_fields),
	SECTION("ai", ai_fields),
	SECTION("retention", retention_fields),
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

static const char *const task_names[] = {"summarize", "classify", "extract", "recommend"};
#define NTASKS 4
#define ALL_TASKS ((1LL << NTASKS) - 1)

static const char *const timeout_names[] = {"escalate", "reject"};

/* ---- the typed document ---- */

/* Scalars (durations in seconds, integers, booleans as 0/1, on_timeout as
 * an index into timeout_names, allowed_tasks as a bitmask over task_names)
 * live in num[]; set[] says which fields the last document read provided. */
struct pdoc {
	bool set[F_COUNT];
	long long num[F_COUNT];
	double min_conf;
	char esc_role[ROLE_MAX + 1];
	json_t *hosts;		/* owned array of strings; NULL = [] */
	json_t *rules;		/* owned array of canonical rule objects; NULL = [] */
};

static void pdoc_defaults(struct pdoc *d)
{
	memset(d, 0, sizeof(*d));
	d->num[F_WINDOW] = 60;
	d->num[F_TENANT_REQ] = 6000;
	d->num[F_CLIENT_REQ] = 1200;
	d->num[F_MAX_CONC] = 20;
	d->num[F_MAX_QUEUED] = 10000;
	d->num[F_ALLOW_PRIVATE] = 0;
	d->num[F_DEFAULT_SLA] = 48 * 3600;
	d->num[F_ON_TIMEOUT] = 0;	/* escalate */
	snprintf(d->esc_role, sizeof(d->esc_role), "msp_operator");
	d->num[F_AI_ENABLED] = 0;
	d->num[F_AI_HUMAN] = 1;
	d->min_conf = 0.8;
	d->num[F_AI_TASKS] = ALL_TASKS;
	d->num[F_AI_LOG_PROMPTS] = 0;
	d->num[F_AI_MAX_TOKENS] = 1024;
	d->num[F_RET_RUNS] = 90 * DAY;
	d->num[F_RET_EVENTS] = 30 * DAY;
	d->num[F_RET_AUDIT] = 365 * DAY;
}

/* A copy sharing the arrays, which are never modified once built: replacing
 * one drops this copy's reference and takes a new one. */
static void pdoc_copy(struct pdoc *dst, const struct pdoc *src)
{
	*dst = *src;
	json_incref(dst->hosts);
	json_incref(dst->rules);
}

static void pdoc_free(struct pdoc *d)
{
	json_decref(d->hosts);
	json_decref(d->rules);
	d->hosts = d->rules = NULL;
}

static void set_array(json_t **slot, json_t *arr /* stolen */)
{
	json_decref(*slot);
	*slot = arr;
}

/* ---- problems and paths ---- */

struct vctx {
	json_t *errors;		/* NULL: problems are only counted */
	size_t count;
	mf_buf_t path;		/* JSON Pointer of the value being read */
	bool oom;
	char first[200];	/* "<safe path>: <message>" of the first problem */
};

static const char *path_str(const struct vctx *c)
{
	return c->path.data ? c->path.data : "";
}

/* Records a problem at path.  safe_len is how much of the path may go into
 * the one-line detail: the path of an unknown key carries client-chosen
 * text, and the detail also ends up in logs, where (as in json.c) nothing
 * the client wrote is repeated.  The errors array, which only goes back to
 * the client, has the full path. */
static void problem_at(struct vctx *c, size_t safe_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void problem_at(struct vctx *c, size_t safe_len, const char *fmt, ...)
{
	char msg[160];
	va_list ap;
	json_t *e;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->count++ == 0) {
		if (safe_len)
			snprintf(c->first, sizeof(c->first), "%.*s: %s",
				 (int)(safe_len > 100 ? 100 : safe_len), path_str(c), msg);
		else
			snprintf(c->first, sizeof(c->first), "the document: %s", msg);
	}
	if (c->errors == NULL || json_array_size(c->errors) >= POL_POLICY_MAX_ERRORS)
		return;
	e = json_pack("{s:s, s:s}", "path", path_str(c), "message", msg);
	if (e == NULL || json_array_append_new(c->errors, e) < 0)
		c->oom = true;
}

#define problem(c, ...) problem_at((c), (c)->path.len, __VA_ARGS__)

/* Appends "/" + key with RFC 6901 escaping; returns the length to pop to. */
static size_t push_key(struct vctx *c, const char *key)
{
	size_t old = c->path.len;
	int rc = mf_buf_addc(&c->path, '/');

	for (const char *k = key; rc == 0 && *k; k++) {
		if (*k == '~')
			rc = mf_buf_adds(&c->path, "~0");
		else if (*k == '/')
			rc = mf_buf_adds(&c->path, "~1");
		else
			rc = mf_buf_addc(&c->path, *k);
	}
	if (rc < 0)
		c->oom = true;
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
}

static void unknown_key(struct vctx *c, const char *key, const char *known)
{
	size_t old = push_key(c, key);

	problem_at(c, old, "unknown field (known: %s)", known);
	pop(c, old);
}

/* A string without embedded NUL, or NULL: jansson strings may hold NUL
 * (though mf_json_parse refuses them) and every check below reads C
 * strings. */
static const char *str_of(const json_t *v)
{
	const char *s = json_string_value(v);

	return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* ---- field checks ---- */

static const char *role_problem(const char *s)
{
	size_t n = strlen(s);

	if (n < 2 || n > ROLE_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
		goto bad;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			goto bad;
	return NULL;
bad:
	return "must be a role name: a lower-case letter, then 1 to 62 of a-z, 0-9 and _";
}

static const char *glob_problem(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 64)
		goto bad;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '*'))
			goto bad;
	return NULL;
bad:
	return "must be a workflow name pattern: 1 to 64 of a-z, 0-9, - and * (any run of characters)";
}

/* An allow-list entry: a lower-case DNS name, optionally "*." + a name of
 * at least two labels.  Anything an HTTP client would read as an address
 * is refused, including the numeric forms inet_aton() takes ("0x7f000001",
 * "127.1"), since a name that resolves without DNS is an IP in disguise. */
static const char *host_problem(const char *s)
{
	const char *h = s, *label;
	bool wild = false;
	size_t labels = 0, n;

	if (*s == '\0')
		return "must not be empty";
	if (strstr(s, "://"))
		return "must be a host name, not a URL";
	if (s[0] == '[' || (strchr(s, ':') && strchr(s, ':') != strrchr(s, ':')))
		return "IP addresses are not allowed; list host names";
	if (strchr(s, ':'))
		return "must not include a port";
	if (strchr(s, '/'))
		return "must not include a path";
	if (s[0] == '*' && s[1] == '.') {
		wild = true;
		h = s + 2;
	}
	if (strchr(h, '*'))
		return "a wildcard is only allowed as a leading \"*.\"";
	for (const char *p = h; *p; p++) {
		if (*p >= 'A' && *p <= 'Z')
			return "must be lower case";
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return "may contain only a-z, 0-9, '-' and '.'";
	}
	n = strlen(h);
	if (n > 253)
		return "must be at most 253 characters (not counting a leading \"*.\")";
	label = h;
	for (const char *p = h;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t len = (size_t)(p - label);

			if (len == 0)
				return "must not have an empty label (a leading, trailing or double dot)";
			if (len > 63)
				return "a label may have at most 63 characters";
			if (label[0] == '-' || p[-1] == '-')
				return "a label must not start or end with '-'";
			labels++;
			if (*p == '\0')
				break;
			label = p + 1;
		}
	}
	/* label is now the last one; no top-level domain is all digits */
	if (strspn(label, "0123456789") == strlen(label)) {
		return "IP addresses are not allowed; list host names";
	} else {
		struct in_addr a;

		if (inet_aton(h, &a))
			return "IP addresses are not allowed; list host names";
	}
	if (wild && labels < 2)
		return "a wildcard must cover a domain of at least two labels (e.g. *.example.com)";
	return NULL;
}

static void fmt_secs(long long secs, char *buf, size_t len)
{
	if (mf_duration_format(secs, buf, len) < 0)
		snprintf(buf, len, "?");
}

static bool read_duration(struct vctx *c, const struct field *f, const json_t *v, long long *out)
{
	char lo[MF_DURATION_BUFSZ], hi[MF_DURATION_BUFSZ];
	const char *s = str_of(v);
	long long secs;
	mf_err_t e;

	fmt_secs(f->lo, lo, sizeof(lo));
	fmt_secs(f->hi, hi, sizeof(hi));
	if (s == NULL) {
		problem(c, "must be an ISO 8601 duration string from %s to %s", lo, hi);
		return false;
	}
	if (mf_duration_parse(s, &secs, &e) < 0) {
		problem(c, "%s", e.detail);
		return false;
	}
	if (secs < f->lo || secs > f->hi) {
		problem(c, "must be from %s to %s", lo, hi);
		return false;
	}
	*out = secs;
	return true;
}

static bool read_int(struct vctx *c, const struct field *f, const json_t *v, long long *out)
{
	long long n;

	if (!json_is_integer(v)) {
		/* 10.0 is refused too: the stored document stays exactly what was
		 * accepted, and a typed client never needs to send it. */
		problem(c, "must be an integer (no decimal point or exponent) from %lld to %lld", f->lo, f->hi);
		return false;
	}
	n = json_integer_value(v);
	if (n < f->lo || n > f->hi) {
		problem(c, "must be from %lld to %lld", f->lo, f->hi);
		return false;
	}
	*out = n;
	return true;
}

/* Allowed tasks as a bitmask; a duplicate is an error at its index. */
static bool read_tasks(struct vctx *c, const json_t *v, long long *out)
{
	long long mask = 0;
	bool ok = true;

	if (!json_is_array(v)) {
		problem(c, "must be an array of task names (summarize, classify, extract, recommend)");
		return false;
	}
	for (size_t i = 0; i < json_array_size(v); i++) {
		const char *s = str_of(json_array_get(v, i));
		size_t old = push_index(c, i);
		int t = -1;

		for (int k = 0; s && k < NTASKS; k++)
			if (strcmp(s, task_names[k]) == 0)
				t = k;
		if (t < 0) {
			problem(c, "must be one of summarize, classify, extract, recommend");
			ok = false;
		} else if (mask & (1LL << t)) {
			problem(c, "duplicates an earlier entry");
			ok = false;
		}
		if (t >= 0)
			mask |= 1LL << t;
		pop(c, old);
	}
	if (ok)
		*out = mask;
	return ok;
}

/* A JSON object used as a hash set keeps duplicate checks linear however
 * long a (refused) array is. */
static bool seen_before(struct vctx *c, json_t *seen, const char *s)
{
	if (json_object_get(seen, s))
		return true;
	if (json_object_set_new(seen, s, json_true()) < 0)
		c->oom = true;
	return false;
}

static json_t *read_hosts(struct vctx *c, const struct field *f, const json_t *v)
{
	json_t *seen, *out;
	bool ok = true;

	if (!json_is_array(v)) {
		problem(c, "must be an array of host names");
		return NULL;
	}
	if (json_array_size(v) > (size_t)f->hi) {
		problem(c, "must have at most %lld entries", f->hi);
		ok = false;
	}
	seen = json_object();
	out = json_array();
	if (seen == NULL || out == NULL)
		c->oom = true;
	for (size_t i = 0; i < json_array_size(v); i++) {
		const char *s = str_of(json_array_get(v, i));
		const char *why = s ? host_problem(s) : "must be a host name string";
		size_t old = push_index(c, i);

		if (why == NULL && seen && seen_before(c, seen, s))
			why = "duplicates an earlier entry";
		if (why) {
			problem(c, "%s", why);
			ok = false;
		} else if (ok && out && json_array_append_new(out, json_string(s)) < 0) {
			c->oom = true;
		}
		pop(c, old);
	}
	json_decref(seen);
	if (!ok || c->oom) {
		json_decref(out);
		return NULL;
	}
	return out;
}

static const char rule_keys[] = "workflow, assignee_role, sla";

/* One rule, canonical: {"workflow", ["assignee_role"], ["sla"]}. */
static json_t *read_rule(struct vctx *c, const json_t *rule, json_t *seen)
{
	static const struct field sla = {"sla", F_COUNT, K_DURATION, 60, 365 * DAY};
	const char *workflow = NULL, *role = NULL, *key;
	long long secs = -1;
	bool ok = true;
	json_t *v, *out;
	size_t old;

	if (!json_is_object(rule)) {
		problem(c, "must be an object with workflow and assignee_role and/or sla");
		return NULL;
	}
	json_object_foreach((json_t *)rule, key, v) {
		const char *why = NULL;

		if (strcmp(key, "workflow") != 0 && strcmp(key, "assignee_role") != 0 && strcmp(key, "sla") != 0) {
			unknown_key(c, key, rule_keys);
			ok = false;
			continue;
		}
		old = push_key(c, key);
		if (strcmp(key, "sla") == 0) {
			ok = read_duration(c, &sla, v, &secs) && ok;
		} else if (strcmp(key, "workflow") == 0) {
			workflow = str_of(v);
			why = workflow ? glob_problem(workflow) : "must be a workflow name pattern string";
			if (why == NULL && seen_before(c, seen, workflow))
				why = "repeats the workflow of an earlier rule, which always matches first";
		} else {
			role = str_of(v);
			why = role ? role_problem(role) : "must be a role name string";
		}
		if (why) {
			problem(c, "%s", why);
			ok = false;
		}
		pop(c, old);
	}
	if (json_object_get(rule, "workflow") == NULL) {
		old = push_key(c, "workflow");
		problem(c, "is required");
		pop(c, old);
		ok = false;
	}
	if (json_object_get(rule, "assignee_role") == NULL && json_object_get(rule, "sla") == NULL) {
		problem(c, "a rule needs assignee_role, sla, or both");
		ok = false;
	}
	if (!ok)
		return NULL;
	out = json_pack("{s:s}", "workflow", workflow);
	if (out && role && json_object_set_new(out, "assignee_role", json_string(role)) < 0)
		c->oom = true;
	if (out && secs >= 0) {
		char buf[MF_DURATION_BUFSZ];

		fmt_secs(secs, buf, sizeof(buf));
		if (json_object_set_new(out, "sla", json_string(buf)) < 0)
			c->oom = true;
	}
	if (out == NULL)
		c->oom = true;
	return out;
}

static json_t *read_rules(struct vctx *c, const struct field *f, const json_t *v)
{
	json_t *seen, *out;
	bool ok = true;

	if (!json_is_array(v)) {
		problem(c, "must be an array of rules");
		return NULL;
	}
	if (json_array_size(v) > (size_t)f->hi) {
		problem(c, "must have at most %lld entries", f->hi);
		ok = false;
	}
	seen = json_object();
	out = json_array();
	if (seen == NULL || out == NULL) {
		c->oom = true;
		json_decref(seen);
		json_decref(out);
		return NULL;
	}
	for (size_t i = 0; i < json_array_size(v); i++) {
		size_t old = push_index(c, i);
		json_t *r = read_rule(c, json_array_get(v, i), seen);

		if (r == NULL)
			ok = false;
		else if (json_array_append_new(out, r) < 0)
			c->oom = true;
		pop(c, old);
	}
	json_decref(seen);
	if (!ok || c->oom) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* Reads one field's value; stores it into d only if it is valid. */
static void read_field(struct vctx *c, const struct field *f, const json_t *v, struct pdoc *d)
{
	long long n = 0;
	bool ok = false;
	const char *s;

	if (json_is_null(v)) {
		problem(c, "must not be null; leave the field out to inherit it");
		return;
	}
	switch (f->kind) {
	case K_DURATION:
		ok = read_duration(c, f, v, &n);
		break;
	case K_INT:
		ok = read_int(c, f, v, &n);
		break;
	case K_BOOL:
		ok = json_is_boolean(v);
		if (!ok)
			problem(c, "must be true or false");
		n = json_is_true(v);
		break;
	case K_ON_TIMEOUT:
		s = str_of(v);
		for (size_t k = 0; s && k < 2; k++)
			if (strcmp(s, timeout_names[k]) == 0)
				ok = true, n = (long long)k;
		if (!ok)
			problem(c, "must be \"escalate\" or \"reject\"");
		break;
	case K_ROLE: {
		const char *why;

		s = str_of(v);
		why = s ? role_problem(s) : "must be a role name string";
		ok = why == NULL;
		if (ok)
			snprintf(d->esc_role, sizeof(d->esc_role), "%s", s);
		else
			problem(c, "%s", why);
		break;
	}
	case K_CONFIDENCE: {
		double x = json_number_value(v);

		/* written so that NaN (never from JSON, but possible from code) fails */
		ok = json_is_number(v) && x >= 0.0 && x <= 1.0;
		if (ok)
			d->min_conf = x;
		else
			problem(c, "must be a number from 0 to 1");
		break;
	}
	case K_TASKS:
		ok = read_tasks(c, v, &n);
		break;
	case K_HOSTS: {
		json_t *a = read_hosts(c, f, v);

		ok = a != NULL;
		if (ok)
			set_array(&d->hosts, a);
		break;
	}
	case K_RULES: {
		json_t *a = read_rules(c, f, v);

		ok = a != NULL;
		if (ok)
			set_array(&d->rules, a);
		break;
	}
	}
	if (ok) {
		d->num[f->id] = n;
		d->set[f->id] = true;
	}
}

static void known_list(char *buf, size_t len, const struct section *sec)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < (sec ? sec->n : NSECTIONS) && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
				 sec ? sec->fields[i].name : sections[i].name);

		if (w < 0)
			break;
		used += (size_t)w;
	}
}

static void read_section(struct vctx *c, const struct section *sec, const json_t *obj, struct pdoc *d)
{
	const char *key;
	json_t *v;
	char known[160];

	if (!json_is_object(obj)) {
		problem(c, "must be an object");
		return;
	}
	known_list(known, sizeof(known), sec);
	json_object_foreach((json_t *)obj, key, v) {
		const struct field *f = NULL;

		for (size_t i = 0; i < sec->n; i++)
			if (strcmp(key, sec->fields[i].name) == 0)
				f = &sec->fields[i];
		if (f == NULL) {
			unknown_key(c, key, known);
		} else {
			size_t old = push_key(c, key);

			read_field(c, f, v, d);
			pop(c, old);
		}
	}
	if (sec->fields == rate_fields && d->set[F_TENANT_REQ] && d->set[F_CLIENT_REQ] &&
	    d->num[F_CLIENT_REQ] > d->num[F_TENANT_REQ]) {
		size_t old = push_key(c, "client_requests");

		problem(c, "must not exceed tenant_requests (one client cannot use more than its whole tenant)");
		pop(c, old);
	}
}

/* Reads doc over d: valid fields replace d's, set[] marks them. */
static void read_doc(struct vctx *c, const json_t *doc, struct pdoc *d)
{
	const char *key;
	json_t *v;
	char known[160];

	memset(d->set, 0, sizeof(d->set));
	if (!json_is_object(doc)) {
		problem(c, "must be a JSON object");
		return;
	}
	known_list(known, sizeof(known), NULL);
	json_object_foreach((json_t *)doc, key, v) {
		const struct section *sec = NULL;

		for (size_t i = 0; i < NSECTIONS; i++)
			if (strcmp(key, sections[i].name) == 0)
				sec = &sections[i];
		if (sec == NULL) {
			unknown_key(c, key, known);
		} else {
			size_t old = push_key(c, key);

			read_section(c, sec, v, d);
			pop(c, old);
		}
	}
}

/* ---- output ---- */

static json_t *pdoc_to_json(const struct pdoc *d)
{
	char dur[5][MF_DURATION_BUFSZ];
	json_t *tasks = json_array(), *empty = json_array(), *out = NULL;

	if (tasks == NULL || empty == NULL)
		goto done;
	for (int k = 0; k < NTASKS; k++)
		if ((d->num[F_AI_TASKS] & (1LL << k)) && json_array_append_new(tasks, json_string(task_names[k])) < 0)
			goto done;
	fmt_secs(d->num[F_WINDOW], dur[0], sizeof(dur[0]));
	fmt_secs(d->num[F_DEFAULT_SLA], dur[1], sizeof(dur[1]));
	fmt_secs(d->num[F_RET_RUNS], dur[2], sizeof(dur[2]));
	fmt_secs(d->num[F_RET_EVENTS], dur[3], sizeof(dur[3]));
	fmt_secs(d->num[F_RET_AUDIT], dur[4], sizeof(dur[4]));
	/* O: the result takes its own references to d's arrays; callers free
	 * their pdocs right after, leaving the result the only holder */
	out = json_pack("{s:{s:s, s:I, s:I}, s:{s:I, s:I}, s:{s:O, s:b},"
			" s:{s:s, s:s, s:s, s:O}, s:{s:b, s:b, s:f, s:O, s:b, s:I}, s:{s:s, s:s, s:s}}",
		"rate_limit",
			"window", dur[0],
			"tenant_requests", (json_int_t)d->num[F_TENANT_REQ],
			"client_requests", (json_int_t)d->num[F_CLIENT_REQ],
		"engine",
			"max_concurrent_runs", (json_int_t)d->num[F_MAX_CONC],
			"max_queued_runs", (json_int_t)d->num[F_MAX_QUEUED],
		"egress",
			"allow_hosts", d->hosts ? d->hosts : empty,
			"allow_private", (int)d->num[F_ALLOW_PRIVATE],
		"approvals",
			"default_sla", dur[1],
			"on_timeout", timeout_names[d->num[F_ON_TIMEOUT] ? 1 : 0],
			"escalation_role", d->esc_role,
			"rules", d->rules ? d->rules : empty,
		"ai",
			"enabled", (int)d->num[F_AI_ENABLED],
			"require_human_approval", (int)d->num[F_AI_HUMAN],
			"min_confidence", d->min_conf,
			"allowed_tasks", tasks,
			"log_prompts", (int)d->num[F_AI_LOG_PROMPTS],
			"max_output_tokens", (json_int_t)d->num[F_AI_MAX_TOKENS],
		"retention",
			"runs", dur[2],
			"events", dur[3],
			"audit", dur[4]);
done:
	json_decref(tasks);
	json_decref(empty);
	return out;
}

/* ---- inheritance ---- */

static long long min_ll(long long a, long long b)
{
	return a < b ? a : b;
}

static void clamp_client(struct pdoc *d)
{
	d->num[F_CLIENT_REQ] = min_ll(d->num[F_CLIENT_REQ], d->num[F_TENANT_REQ]);
}

/* Does allow-list entry p admit every host that entry h admits?  "*.B"
 * admits any name ending in ".B" (at any depth, not B itself), so it covers
 * such a name and any narrower wildcard "*.x.B". */
static bool host_covers(const char *p, const char *h)
{
	size_t hl, bl;
	const char *base;

	if (strcmp(p, h) == 0)
		return true;
	if (strncmp(p, "*.", 2) != 0)
		return false;
	base = p + 2;
	if (strncmp(h, "*.", 2) == 0)
		h += 2;
	hl = strlen(h);
	bl = strlen(base);
	return hl > bl + 1 && h[hl - bl - 1] == '.' && memcmp(h + hl - bl, base, bl) == 0;
}

static bool covered_by(const json_t *list, const char *h)
{
	for (size_t i = 0; i < json_array_size(list); i++)
		if (host_covers(json_string_value(json_array_get(list, i)), h))
			return true;
	return false;
}

/* The hosts both lists admit: the child's entries the parent covers, in the
 * child's order, then the parent's entries a child wildcard covers and no
 * kept entry already admits (a child "*.example.com" under a parent's
 * "api.example.com" keeps "api.example.com").  At most MAX_HOSTS entries,
 * so the result stays a valid list; dropping beyond that only narrows.  A
 * new reference, or NULL when out of memory. */
static json_t *hosts_intersect(const json_t *parent, const json_t *child)
{
	json_t *out = json_array();

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < json_array_size(child); i++) {
		const char *h = json_string_value(json_array_get(child, i));

		if (json_array_size(out) < MAX_HOSTS && covered_by(parent, h) &&
		    json_array_append_new(out, json_string(h)) < 0)
			goto oom;
	}
	for (size_t i = 0; i < json_array_size(parent); i++) {
		const char *h = json_string_value(json_array_get(parent, i));

		if (json_array_size(out) < MAX_HOSTS && covered_by(child, h) && !covered_by(out, h) &&
		    json_array_append_new(out, json_string(h)) < 0)
			goto oom;
	}
	return out;
oom:
	json_decref(out);
	return NULL;
}

/* Caps the child c by its parent's effective values p (see policy.h). */
static int apply_caps(struct pdoc *c, const struct pdoc *p)
{
	long long wp = p->num[F_WINDOW], wc = c->num[F_WINDOW];
	long long tcap = p->num[F_TENANT_REQ], ccap = p->num[F_CLIENT_REQ];
	json_t *hosts;

	if (wc != wp) {
		/* the parent's rate per second over the child's window, rounded
		 * down so the child never exceeds it; products stay below 2^36 */
		long long ts = tcap * wc / wp, cs = ccap * wc / wp;

		if (ts < 1 || cs < 1)
			c->num[F_WINDOW] = wp;	/* too short a window for even one request */
		else
			tcap = ts, ccap = cs;
	}
	c->num[F_TENANT_REQ] = min_ll(c->num[F_TENANT_REQ], tcap);
	c->num[F_CLIENT_REQ] = min_ll(c->num[F_CLIENT_REQ], ccap);

	c->num[F_MAX_CONC] = min_ll(c->num[F_MAX_CONC], p->num[F_MAX_CONC]);
	c->num[F_MAX_QUEUED] = min_ll(c->num[F_MAX_QUEUED], p->num[F_MAX_QUEUED]);

	c->num[F_ALLOW_PRIVATE] = c->num[F_ALLOW_PRIVATE] && p->num[F_ALLOW_PRIVATE];
	hosts = hosts_intersect(p->hosts, c->hosts);
	if (hosts == NULL)
		return -1;
	set_array(&c->hosts, hosts);

	c->num[F_AI_ENABLED] = c->num[F_AI_ENABLED] && p->num[F_AI_ENABLED];
	c->num[F_AI_HUMAN] = c->num[F_AI_HUMAN] || p->num[F_AI_HUMAN];
	if (p->min_conf > c->min_conf)
		c->min_conf = p->min_conf;
	c->num[F_AI_TASKS] &= p->num[F_AI_TASKS];
	c->num[F_AI_MAX_TOKENS] = min_ll(c->num[F_AI_MAX_TOKENS], p->num[F_AI_MAX_TOKENS]);

	c->num[F_RET_RUNS] = min_ll(c->num[F_RET_RUNS], p->num[F_RET_RUNS]);
	c->num[F_RET_EVENTS] = min_ll(c->num[F_RET_EVENTS], p->num[F_RET_EVENTS]);
	c->num[F_RET_AUDIT] = min_ll(c->num[F_RET_AUDIT], p->num[F_RET_AUDIT]);
	return 0;
}

/* Reads doc over d, skipping invalid fields; -1 when out of memory. */
static int overlay(struct pdoc *d, const json_t *doc)
{
	struct vctx c = {0};

	read_doc(&c, doc, d);
	mf_buf_free(&c.path);
	return c.oom ? -1 : 0;
}

json_t *pol_policy_effective(const json_t *parent_doc, const json_t *own_doc)
{
	struct pdoc p, c;
	json_t *out = NULL;

	pdoc_defaults(&p);
	pdoc_defaults(&c);
	if (parent_doc && overlay(&p, parent_doc) < 0)
		goto done;
	clamp_client(&p);
	pdoc_copy(&c, &p);	/* c held no arrays yet */
	if (own_doc && overlay(&c, own_doc) < 0)
		goto done;
	if (parent_doc && apply_caps(&c, &p) < 0)
		goto done;
	clamp_client(&c);
	out = pdoc_to_json(&c);
done:
	pdoc_free(&p);
	pdoc_free(&c);
	return out;
}

json_t *pol_policy_defaults(void)
{
	struct pdoc d;

	pdoc_defaults(&d);
	return pdoc_to_json(&d);
}

void pol_policy_rate_plan(const json_t *effective, pol_rate_plan_t *out)
{
	struct pdoc d;

	pdoc_defaults(&d);
	/* out of memory can only lose arrays, never the rate fields */
	if (effective)
		(void)overlay(&d, effective);
	clamp_client(&d);
	out->window_s = (int)d.num[F_WINDOW];
	out->tenant_requests = (int)d.num[F_TENANT_REQ];
	out->client_requests = (int)d.num[F_CLIENT_REQ];
	pdoc_free(&d);
}

int pol_policy_validate(const json_t *doc, json_t **errors, mf_err_t *err)
{
	struct vctx c = {0};
	struct pdoc d;

	if (errors)
		*errors = NULL;
	c.errors = errors ? json_array() : NULL;
	if (errors && c.errors == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory while validating the policy");
	pdoc_defaults(&d);
	read_doc(&c, doc, &d);
	pdoc_free(&d);
	mf_buf_free(&c.path);
	if (c.oom) {
		json_decref(c.errors);
		return mf_err_set(err, 500, "out_of_memory", "out of memory while validating the policy");
	}
	if (c.count == 0) {
		json_decref(c.errors);
		return 0;
	}
	if (errors)
		*errors = c.errors;
	if (c.count == 1)
		return mf_err_set(err, 400, "validation_failed", "the policy document has 1 problem: %s", c.first);
	return mf_err_set(err, 400, "validation_failed", "the policy document has %zu problems%s; the first: %s",
			  c.count, c.count > POL_POLICY_MAX_ERRORS ? " (the first 100 are listed)" : "", c.first);
}
