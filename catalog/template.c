/*
 * template.c - a template document's shape (see template.h and
 * docs/templates.md).  Everything a partner can get wrong is reported at
 * once, each problem with its JSON Pointer; messages never quote input.
 *
 * What is checked at publish: the fields and their limits, the parameter
 * specs, the workflow as a definition (engine/definition.h: its {{ }}
 * strings parse; `params.*` is just another root there, so placeholders
 * pass), and the message templates' {{ }} syntax.  What only an install
 * can check: that the parameter values fit the specs and that the
 * rendered workflow still validates with them.
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/template.h"
#include "core/canon.h"
#include "core/json.h"
#include "core/render.h"
#include "engine/definition.h"
#include "engine/expr.h"

typedef struct vctx {
	json_t *errors;
	bool oom;
} vctx_t;

static void bad(vctx_t *v, const char *path, const char *msg)
{
	if (v->errors == NULL || json_array_size(v->errors) >= CAT_MAX_ERRORS)
		return;
	if (json_array_append_new(v->errors, json_pack("{s:s,s:s}", "path", path, "message", msg)) < 0)
		v->oom = true;
}

static bool num_ok(const char **p, long long *out)
{
	const char *s = *p;
	long long n = 0;

	if (!isdigit((unsigned char)*s) || (s[0] == '0' && isdigit((unsigned char)s[1])))
		return false;
	while (isdigit((unsigned char)*s)) {
		n = n * 10 + (*s++ - '0');
		if (n >= (1LL << 53))
			return false;
	}
	*out = n;
	*p = s;
	return true;
}

bool cat_semver_parse(const char *s, cat_semver_t *out)
{
	const char *p = s;

	if (strlen(s) > 64 || !num_ok(&p, &out->major) || *p++ != '.' || !num_ok(&p, &out->minor) || *p++ != '.' ||
	    !num_ok(&p, &out->patch))
		return false;
	if (*p == '\0') {
		out->pre = p;
		return true;
	}
	if (*p++ != '-')
		return false;
	out->pre = p;
	/* identifiers: non-empty, [0-9A-Za-z-], numeric ones without leading zeros */
	for (;;) {
		const char *id = p;
		bool digits = true;

		while (isalnum((unsigned char)*p) || *p == '-') {
			if (!isdigit((unsigned char)*p))
				digits = false;
			p++;
		}
		if (p == id || (digits && p - id > 1 && id[0] == '0'))
			return false;
		if (*p == '\0')
			return true;
		if (*p++ != '.')
			return false;
	}
}

static bool charset_ok(const char *s, size_t min, size_t max, const char *first, const char *rest)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr(i == 0 ? first : rest, s[i]) || s[i] == '\0')
			return false;
	return true;
}

#define LOWER_DIGITS "abcdefghijklmnopqrstuvwxyz0123456789"

bool cat_name_ok(const char *s)
{
	return charset_ok(s, 1, 63, LOWER_DIGITS, LOWER_DIGITS "-");
}

static bool param_name_ok(const char *s)
{
	return charset_ok(s, 1, 63, "abcdefghijklmnopqrstuvwxyz_", LOWER_DIGITS "_");
}

static const char *const param_types[] = { "string", "integer", "number", "boolean", "array", "object", NULL };

static bool fits_type(const char *type, const json_t *x)
{
	if (strcmp(type, "string") == 0)
		return json_is_string(x);
	if (strcmp(type, "integer") == 0)
		return json_is_integer(x);
	if (strcmp(type, "number") == 0)
		return json_is_number(x);
	if (strcmp(type, "boolean") == 0)
		return json_is_boolean(x);
	if (strcmp(type, "array") == 0)
		return json_is_array(x);
	return json_is_object(x);
}

static void path_of(char *out, size_t len, const char *prefix, const char *key)
{
	mf_json_pointer(out, len, prefix, key);
}

/* A value (default or enum member) against the spec's type and bounds. */
static void check_value(vctx_t *v, const char *path, const char *type, const json_t *x, const json_t *min,
			const json_t *max, const regex_t *re)
{
	if (!fits_type(type, x)) {
		bad(v, path, "does not have the parameter's type");
		return;
	}
	if (json_is_integer(x) && ((json_is_integer(min) && json_integer_value(x) < json_integer_value(min)) ||
				   (json_is_integer(max) && json_integer_value(x) > json_integer_value(max))))
		bad(v, path, "is outside minimum..maximum");
	if (re && json_is_string(x) && regexec(re, json_string_value(x), 0, NULL, 0) != 0)
		bad(v, path, "does not match the pattern");
}

static void check_param(vctx_t *v, const char *name, const json_t *spec)
{
	static const char *const keys[] = { "type", "required", "enum", "default", "minimum", "maximum",
					    "pattern", "description", NULL };
	char base[200], p[300];
	const char *k, *type = NULL;
	json_t *m, *en, *min, *max, *pat;
	regex_t re;
	bool have_re = false;

	path_of(base, sizeof(base), "/parameters", name);
	if (!param_name_ok(name)) {
		bad(v, base, "a parameter name is 1 to 63 of a-z, 0-9 and _, not starting with a digit");
		return;
	}
	if (!json_is_object(spec)) {
		bad(v, base, "must be an object");
		return;
	}
	json_object_foreach((json_t *)spec, k, m) {
		size_t i;

		for (i = 0; keys[i] && strcmp(keys[i], k) != 0; i++)
			;
		if (keys[i] == NULL) {
			path_of(p, sizeof(p), base, k);
			bad(v, p, "is not a parameter spec member (type, required, enum, default, minimum, maximum, "
				  "pattern, description)");
		}
	}
	m = json_object_get(spec, "type");
	snprintf(p, sizeof(p), "%s/type", base);
	if (m == NULL)
		bad(v, p, "is required");
	else {
		for (size_t i = 0; param_types[i]; i++)
			if (json_is_string(m) && strcmp(json_string_value(m), param_types[i]) == 0)
				type = param_types[i];
		if (type == NULL)
			bad(v, p, "must be one of string, integer, number, boolean, array, object");
	}
	m = json_object_get(spec, "required");
	if (m && !json_is_boolean(m)) {
		snprintf(p, sizeof(p), "%s/required", base);
		bad(v, p, "must be a boolean");
	}
	m = json_object_get(spec, "description");
	if (m && (!json_is_string(m) || json_string_length(m) > 500)) {
		snprintf(p, sizeof(p), "%s/description", base);
		bad(v, p, "must be a string of at most 500 bytes");
	}
	min = json_object_get(spec, "minimum");
	max = json_object_get(spec, "maximum");
	for (int i = 0; i < 2; i++) {
		json_t *b = i ? max : min;

		if (b == NULL)
			continue;
		snprintf(p, sizeof(p), "%s/%s", base, i ? "maximum" : "minimum");
		if (type && strcmp(type, "integer") != 0 && strcmp(type, "number") != 0)
			bad(v, p, "applies to integer and number parameters only");
		else if (!json_is_integer(b))
			bad(v, p, "must be an integer");
	}
	if (json_is_integer(min) && json_is_integer(max) && json_integer_value(min) > json_integer_value(max)) {
		snprintf(p, sizeof(p), "%s/minimum", base);
		bad(v, p, "is greater than maximum");
	}
	pat = json_object_get(spec, "pattern");
	if (pat) {
		snprintf(p, sizeof(p), "%s/pattern", base);
		if (type && strcmp(type, "string") != 0)
			bad(v, p, "applies to string parameters only");
		else if (!json_is_string(pat) || json_string_length(pat) == 0 || json_string_length(pat) > 256)
			bad(v, p, "must be a string of 1 to 256 bytes");
		else if (regcomp(&re, json_string_value(pat), REG_EXTENDED | REG_NOSUB) != 0)
			bad(v, p, "is not a POSIX extended regular expression");
		else
			have_re = true;
	}
	en = json_object_get(spec, "enum");
	if (en) {
		snprintf(p, sizeof(p), "%s/enum", base);
		if (!json_is_array(en) || json_array_size(en) == 0 || json_array_size(en) > 100)
			bad(v, p, "must be an array of 1 to 100 values");
		else if (type) {
			for (size_t i = 0; i < json_array_size(en); i++) {
				snprintf(p, sizeof(p), "%s/enum/%zu", base, i);
				check_value(v, p, type, json_array_get(en, i), min, max, have_re ? &re : NULL);
			}
		}
	}
	m = json_object_get(spec, "default");
	if (m && type) {
		bool in = true;

		snprintf(p, sizeof(p), "%s/default", base);
		check_value(v, p, type, m, min, max, have_re ? &re : NULL);
		if (json_is_array(en)) {
			in = false;
			for (size_t i = 0; i < json_array_size(en); i++)
				in = in || json_equal(m, json_array_get(en, i));
		}
		if (!in)
			bad(v, p, "is not one of enum");
		if (json_is_true(json_object_get(spec, "required")))
			bad(v, p, "a required parameter has no default");
	}
	if (have_re)
		regfree(&re);
}

static void check_strings(vctx_t *v, const json_t *body)
{
	const json_t *m;

	m = json_object_get(body, "name");
	if (!json_is_string(m) || !cat_name_ok(json_string_value(m)))
		bad(v, "/name", m ? "must match ^[a-z0-9][a-z0-9-]{0,62}$" : "is required");
	m = json_object_get(body, "version");
	{
		cat_semver_t sv;

		if (!json_is_string(m) || !cat_semver_parse(json_string_value(m), &sv))
			bad(v, "/version", m ? "must be MAJOR.MINOR.PATCH with an optional -PRERELEASE (semver 2.0.0, "
					       "no build metadata, at most 64 bytes)" : "is required");
	}
	m = json_object_get(body, "description");
	if (m && (!json_is_string(m) || json_string_length(m) > 2000))
		bad(v, "/description", "must be a string of at most 2000 bytes");
	m = json_object_get(body, "key_id");
	if (!json_is_string(m))
		bad(v, "/key_id", m ? "must be the id of one of the partner's signing keys" : "is required");
	m = json_object_get(body, "signature");
	if (!json_is_string(m))
		bad(v, "/signature", m ? "must be a base64 Ed25519 signature" : "is required");
	m = json_object_get(body, "tags");
	if (m) {
		if (!json_is_array(m) || json_array_size(m) > 10)
			bad(v, "/tags", "must be an array of at most 10 tags");
		else
			for (size_t i = 0; i < json_array_size(m); i++) {
				const json_t *t = json_array_get(m, i);
				char p[32];

				snprintf(p, sizeof(p), "/tags/%zu", i);
				if (!json_is_string(t) || !charset_ok(json_string_value(t), 1, 32, LOWER_DIGITS,
								      LOWER_DIGITS "-"))
					bad(v, p, "a tag is 1 to 32 of a-z, 0-9 and -, not starting with -");
			}
	}
}

static void check_messages(vctx_t *v, const json_t *msgs)
{
	const char *k;
	json_t *m;
	char p[200];

	if (!json_is_object(msgs)) {
		bad(v, "/messages", "must be an object of message templates");
		return;
	}
	if (json_object_size(msgs) > 100)
		bad(v, "/messages", "at most 100 messages");
	json_object_foreach((json_t *)msgs, k, m) {
		mf_render_err_t e;

		path_of(p, sizeof(p), "/messages", k);
		if (!charset_ok(k, 1, 64, LOWER_DIGITS "_", LOWER_DIGITS "_.-"))
			bad(v, p, "a message name is 1 to 64 of a-z, 0-9, _, . and -");
		else if (!json_is_string(m) || json_string_length(m) > 8192)
			bad(v, p, "must be a string of at most 8192 bytes");
		else if (mf_render_check(json_string_value(m), json_string_length(m), &e) < 0)
			bad(v, p, "is not a valid message template (docs/branding.md)");
	}
}

static void check_connectors(vctx_t *v, const json_t *cs)
{
	static const char *const keys[] = { "name", "kind", NULL };

	if (!json_is_array(cs) || json_array_size(cs) > 20) {
		bad(v, "/connectors", "must be an array of at most 20 {name, kind}");
		return;
	}
	for (size_t i = 0; i < json_array_size(cs); i++) {
		const json_t *c = json_array_get(cs, i);
		char p[64];
		const char *k;
		json_t *m;

		snprintf(p, sizeof(p), "/connectors/%zu", i);
		if (!json_is_object(c)) {
			bad(v, p, "must be an object {name, kind}");
			continue;
		}
		json_object_foreach((json_t *)c, k, m) {
			size_t j;

			for (j = 0; keys[j] && strcmp(keys[j], k) != 0; j++)
				;
			if (keys[j] == NULL) {
				char q[200];

				path_of(q, sizeof(q), p, k);
				bad(v, q, "is not a member of a connector (name, kind)");
			}
		}
		for (size_t j = 0; keys[j]; j++) {
			const json_t *s = json_object_get(c, keys[j]);
			char q[80];

			snprintf(q, sizeof(q), "%s/%s", p, keys[j]);
			if (!json_is_string(s) || !charset_ok(json_string_value(s), 1, 63, LOWER_DIGITS,
							      LOWER_DIGITS "-_"))
				bad(v, q, "must be 1 to 63 of a-z, 0-9, - and _");
		}
	}
}

int cat_template_validate(const json_t *body, json_t **errors, mf_err_t *err)
{
	static const char *const keys[] = { "name", "version", "description", "tags", "parameters", "workflow",
					    "messages", "connectors", "key_id", "signature", NULL };
	vctx_t v = { json_array(), false };
	const char *k;
	json_t *m;

	*errors = NULL;
	if (v.errors == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory"), -2;
	json_object_foreach((json_t *)body, k, m) {
		size_t i;
		char p[200];

		for (i = 0; keys[i] && strcmp(keys[i], k) != 0; i++)
			;
		if (keys[i] == NULL) {
			path_of(p, sizeof(p), "", k);
			bad(&v, p, "is not a member of a template");
		}
	}
	check_strings(&v, body);
	m = json_object_get(body, "parameters");
	if (m && !json_is_object(m))
		bad(&v, "/parameters", "must be an object of parameter specs");
	else if (m) {
		if (json_object_size(m) > 50)
			bad(&v, "/parameters", "at most 50 parameters");
		json_t *spec;

		json_object_foreach(m, k, spec)
			check_param(&v, k, spec);
	}
	if ((m = json_object_get(body, "messages")))
		check_messages(&v, m);
	if ((m = json_object_get(body, "connectors")))
		check_connectors(&v, m);
	m = json_object_get(body, "workflow");
	if (!json_is_object(m))
		bad(&v, "/workflow", m ? "must be a workflow definition (an object)" : "is required");
	else {
		json_t *werr = NULL, *wf, *msgs = json_object_get(body, "messages");
		mf_err_t e;
		int rc;

		/* An install gives the workflow the template's "messages" (they
		 * replace its own: engine/api_installs.c), so its message steps
		 * are checked against those; problems of the messages themselves
		 * were reported at /messages above, not again here. */
		wf = json_is_object(msgs) ? json_copy(m) : json_incref(m);
		if (wf == NULL || (json_is_object(msgs) && json_object_set(wf, "messages", msgs) < 0))
			v.oom = true;
		rc = wf ? eng_def_validate(wf, &werr, &e) : 0;
		json_decref(wf);
		if (rc < 0 && werr == NULL)
			v.oom = true;
		for (size_t i = 0; werr && i < json_array_size(werr); i++) {
			json_t *it = json_array_get(werr, i);
			const char *ip = json_string_value(json_object_get(it, "path"));
			char p[512];

			if (json_is_object(msgs) && ip && strncmp(ip, "/messages", 9) == 0 && (ip[9] == '\0' || ip[9] == '/'))
				continue;
			snprintf(p, sizeof(p), "/workflow%s", ip ? ip : "");
			bad(&v, p, json_string_value(json_object_get(it, "message")) ?
				   json_string_value(json_object_get(it, "message")) : "is not valid");
		}
		json_decref(werr);
	}
	if (v.oom) {
		json_decref(v.errors);
		return mf_err_set(err, 500, "out_of_memory", "out of memory"), -2;
	}
	if (json_array_size(v.errors) == 0) {
		json_decref(v.errors);
		return 0;
	}
	mf_err_set(err, 400, "validation_failed", "the template is not valid (%zu problems)", json_array_size(v.errors));
	*errors = v.errors;
	return -1;
}

int cat_signed_bytes(const json_t *body, mf_buf_t *out, json_t **errors, mf_err_t *err)
{
	json_t *doc = json_copy((json_t *)body);	/* shallow: members are shared, not changed */
	char path[512];
	int rc;

	*errors = NULL;
	if (doc == NULL)
		return -1;
	json_object_del(doc, "signature");
	rc = mf_json_canonical(doc, out, path, sizeof(path));
	json_decref(doc);
	if (rc == -2) {
		mf_err_set(err, 400, "non_integer_number",
			   "a signed template may hold integers only (%s is not one): canonical JSON has no "
			   "agreed form for other numbers", path[0] ? path : "/");
		*errors = json_pack("[{s:s,s:s}]", "path", path, "message",
				    "is a non-integer number; signed templates hold integers only");
	}
	return rc;
}

/* ---- install: parameter values against the specs ---- */

/* A value of a pattern-checked parameter is matched only up to this size:
 * regexec's cost grows with the input. */
#define CAT_PATTERN_MAX_INPUT 1024

static bool below(const json_t *x, const json_t *b)
{
	return json_is_number(b) && json_number_value(x) < json_number_value(b) &&
	       !(json_is_integer(x) && json_integer_value(x) >= json_integer_value(b));
}

static bool above(const json_t *x, const json_t *b)
{
	return json_is_number(b) && json_number_value(x) > json_number_value(b) &&
	       !(json_is_integer(x) && json_integer_value(x) <= json_integer_value(b));
}

static void check_given(vctx_t *v, const char *path, const json_t *spec, const json_t *x)
{
	const char *type = json_string_value(json_object_get(spec, "type"));
	const json_t *en = json_object_get(spec, "enum"), *pat = json_object_get(spec, "pattern");

	if (type == NULL || !fits_type(type, x)) {
		char msg[64];

		snprintf(msg, sizeof(msg), "must be of type %s", type ? type : "?");
		bad(v, path, msg);
		return;
	}
	if (json_is_array(en)) {
		bool in = false;

		for (size_t i = 0; i < json_array_size(en); i++)
			in = in || json_equal((json_t *)x, json_array_get(en, i));
		if (!in)
			bad(v, path, "is not one of the parameter's enum values");
	}
	if (json_is_number(x) && below(x, json_object_get(spec, "minimum")))
		bad(v, path, "is below the parameter's minimum");
	if (json_is_number(x) && above(x, json_object_get(spec, "maximum")))
		bad(v, path, "is above the parameter's maximum");
	if (json_is_string(pat) && json_is_string(x)) {
		regex_t re;

		if (json_string_length(x) > CAT_PATTERN_MAX_INPUT || strlen(json_string_value(x)) != json_string_length(x))
			bad(v, path, "is too long (or holds NUL) to match the parameter's pattern");
		else if (regcomp(&re, json_string_value(pat), REG_EXTENDED | REG_NOSUB) != 0)
			bad(v, path, "the parameter's pattern does not compile");
		else {
			if (regexec(&re, json_string_value(x), 0, NULL, 0) != 0)
				bad(v, path, "does not match the parameter's pattern");
			regfree(&re);
		}
	}
}

int cat_params_resolve(const json_t *specs, const json_t *given, json_t **out, json_t **errors, mf_err_t *err)
{
	vctx_t v = { .errors = json_array() };
	json_t *res = json_object(), *x;
	const char *k;
	char p[200];

	*out = NULL;
	*errors = NULL;
	if (v.errors == NULL || res == NULL)
		goto oom;
	if (given && !json_is_object(given))
		bad(&v, "/params", "must be an object");
	else if (given) {
		json_object_foreach((json_t *)given, k, x) {
			const json_t *spec = json_is_object(specs) ? json_object_get(specs, k) : NULL;

			mf_json_pointer(p, sizeof(p), "/params", k);
			if (!json_is_object(spec))
				bad(&v, p, "is not a parameter of this template");
			else
				check_given(&v, p, spec, x);
		}
	}
	if (json_is_object(specs) && (given == NULL || json_is_object(given))) {
		json_object_foreach((json_t *)specs, k, x) {
			const json_t *have = json_is_object(given) ? json_object_get(given, k) : NULL;
			const json_t *def = json_object_get(x, "default");

			mf_json_pointer(p, sizeof(p), "/params", k);
			if (have) {
				if (json_object_set_new(res, k, json_deep_copy(have)) < 0)
					v.oom = true;
			} else if (def) {
				if (json_object_set_new(res, k, json_deep_copy(def)) < 0)
					v.oom = true;
			} else if (json_is_true(json_object_get(x, "required")))
				bad(&v, p, "is required");
		}
	}
	if (v.oom)
		goto oom;
	if (json_array_size(v.errors) > 0) {
		json_decref(res);
		*errors = v.errors;
		if (json_array_size(v.errors) == 1)
			return mf_err_set(err, 400, "validation_failed", "the parameters have 1 problem: %s %s",
					  json_string_value(json_object_get(json_array_get(v.errors, 0), "path")),
					  json_string_value(json_object_get(json_array_get(v.errors, 0), "message")));
		return mf_err_set(err, 400, "validation_failed", "the parameters have %zu problems; the first: %s %s",
				  json_array_size(v.errors),
				  json_string_value(json_object_get(json_array_get(v.errors, 0), "path")),
				  json_string_value(json_object_get(json_array_get(v.errors, 0), "message")));
	}
	json_decref(v.errors);
	*out = res;
	return 0;
oom:
	json_decref(v.errors);
	json_decref(res);
	mf_err_set(err, 500, "out_of_memory", "out of memory while checking the parameters");
	return -2;
}
