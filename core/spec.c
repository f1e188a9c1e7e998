/*
 * spec.c - value specs (spec.h): checking a spec, and checking given
 * values against specs.  Used for a template's parameters (catalog/) and a
 * workflow's portal request form (engine/).
 */
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/spec.h"

static const char *const types[] = { "string", "integer", "number", "boolean", "array", "object", NULL };

bool mf_spec_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

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

struct rep {
	mf_spec_bad_fn *bad;
	void *arg;
};

/* A value of the spec itself (default or enum member) against its type and bounds. */
static void check_value(struct rep *r, const char *path, const char *type, const json_t *x, const json_t *min,
			const json_t *max, const regex_t *re)
{
	if (!fits_type(type, x)) {
		r->bad(r->arg, path, "does not have the spec's type");
		return;
	}
	if (json_is_integer(x) && ((json_is_integer(min) && json_integer_value(x) < json_integer_value(min)) ||
				   (json_is_integer(max) && json_integer_value(x) > json_integer_value(max))))
		r->bad(r->arg, path, "is outside minimum..maximum");
	if (re && json_is_string(x) && regexec(re, json_string_value(x), 0, NULL, 0) != 0)
		r->bad(r->arg, path, "does not match the pattern");
}

static void text_member(struct rep *r, const char *base, const json_t *spec, const char *key, size_t max)
{
	const json_t *m = json_object_get(spec, key);
	char p[300], msg[64];

	if (m && (!json_is_string(m) || json_string_length(m) > max)) {
		snprintf(p, sizeof(p), "%s/%s", base, key);
		snprintf(msg, sizeof(msg), "must be a string of at most %zu bytes", max);
		r->bad(r->arg, p, msg);
	}
}

void mf_spec_check(const char *base, const char *name, const json_t *spec, mf_spec_bad_fn *bad, void *arg)
{
	static const char *const keys[] = { "type", "required", "enum", "default", "minimum", "maximum",
					    "pattern", "title", "description", NULL };
	struct rep r = { bad, arg };
	char p[300];
	const char *k, *type = NULL;
	json_t *m, *en, *min, *max, *pat;
	regex_t re;
	bool have_re = false;

	if (!mf_spec_name_ok(name)) {
		bad(arg, base, "a name is 1 to 63 of a-z, 0-9 and _, not starting with a digit");
		return;
	}
	if (!json_is_object(spec)) {
		bad(arg, base, "must be an object");
		return;
	}
	json_object_foreach((json_t *)spec, k, m) {
		size_t i;

		for (i = 0; keys[i] && strcmp(keys[i], k) != 0; i++)
			;
		if (keys[i] == NULL) {
			mf_json_pointer(p, sizeof(p), base, k);
			bad(arg, p, "is not a spec member (type, required, enum, default, minimum, maximum, "
				    "pattern, title, description)");
		}
	}
	m = json_object_get(spec, "type");
	snprintf(p, sizeof(p), "%s/type", base);
	if (m == NULL)
		bad(arg, p, "is required");
	else {
		for (size_t i = 0; types[i]; i++)
			if (json_is_string(m) && strcmp(json_string_value(m), types[i]) == 0)
				type = types[i];
		if (type == NULL)
			bad(arg, p, "must be one of string, integer, number, boolean, array, object");
	}
	m = json_object_get(spec, "required");
	if (m && !json_is_boolean(m)) {
		snprintf(p, sizeof(p), "%s/required", base);
		bad(arg, p, "must be a boolean");
	}
	text_member(&r, base, spec, "title", 120);
	text_member(&r, base, spec, "description", 500);
	min = json_object_get(spec, "minimum");
	max = json_object_get(spec, "maximum");
	for (int i = 0; i < 2; i++) {
		json_t *b = i ? max : min;

		if (b == NULL)
			continue;
		snprintf(p, sizeof(p), "%s/%s", base, i ? "maximum" : "minimum");
		if (type && strcmp(type, "integer") != 0 && strcmp(type, "number") != 0)
			bad(arg, p, "applies to integer and number values only");
		else if (!json_is_integer(b))
			bad(arg, p, "must be an integer");
	}
	if (json_is_integer(min) && json_is_integer(max) && json_integer_value(min) > json_integer_value(max)) {
		snprintf(p, sizeof(p), "%s/minimum", base);
		bad(arg, p, "is greater than maximum");
	}
	pat = json_object_get(spec, "pattern");
	if (pat) {
		snprintf(p, sizeof(p), "%s/pattern", base);
		if (type && strcmp(type, "string") != 0)
			bad(arg, p, "applies to string values only");
		else if (!json_is_string(pat) || json_string_length(pat) == 0 || json_string_length(pat) > 256)
			bad(arg, p, "must be a string of 1 to 256 bytes");
		else if (regcomp(&re, json_string_value(pat), REG_EXTENDED | REG_NOSUB) != 0)
			bad(arg, p, "is not a POSIX extended regular expression");
		else
			have_re = true;
	}
	en = json_object_get(spec, "enum");
	if (en) {
		snprintf(p, sizeof(p), "%s/enum", base);
		if (!json_is_array(en) || json_array_size(en) == 0 || json_array_size(en) > 100)
			bad(arg, p, "must be an array of 1 to 100 values");
		else if (type) {
			for (size_t i = 0; i < json_array_size(en); i++) {
				snprintf(p, sizeof(p), "%s/enum/%zu", base, i);
				check_value(&r, p, type, json_array_get(en, i), min, max, have_re ? &re : NULL);
			}
		}
	}
	m = json_object_get(spec, "default");
	if (m && type) {
		bool in = true;

		snprintf(p, sizeof(p), "%s/default", base);
		check_value(&r, p, type, m, min, max, have_re ? &re : NULL);
		if (json_is_array(en)) {
			in = false;
			for (size_t i = 0; i < json_array_size(en); i++)
				in = in || json_equal(m, json_array_get(en, i));
		}
		if (!in)
			bad(arg, p, "is not one of enum");
		if (json_is_true(json_object_get(spec, "required")))
			bad(arg, p, "a required value has no default");
	}
	if (have_re)
		regfree(&re);
}

/* ---- given values against the specs ---- */

struct collect {
	json_t *errors;
	bool oom;
};

static void collect(void *arg, const char *path, const char *msg)
{
	struct collect *c = arg;

	if (json_array_size(c->errors) >= MF_SPEC_MAX_ERRORS)
		return;
	if (json_array_append_new(c->errors, json_pack("{s:s,s:s}", "path", path, "message", msg)) < 0)
		c->oom = true;
}

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

static void check_given(struct collect *c, const char *path, const json_t *spec, const json_t *x)
{
	const char *type = json_string_value(json_object_get(spec, "type"));
	const json_t *en = json_object_get(spec, "enum"), *pat = json_object_get(spec, "pattern");

	if (type == NULL || !fits_type(type, x)) {
		char msg[64];

		snprintf(msg, sizeof(msg), "must be of type %s", type ? type : "?");
		collect(c, path, msg);
		return;
	}
	if (json_is_array(en)) {
		bool in = false;

		for (size_t i = 0; i < json_array_size(en); i++)
			in = in || json_equal((json_t *)x, json_array_get(en, i));
		if (!in)
			collect(c, path, "is not one of the allowed values (enum)");
	}
	if (json_is_number(x) && below(x, json_object_get(spec, "minimum")))
		collect(c, path, "is below the minimum");
	if (json_is_number(x) && above(x, json_object_get(spec, "maximum")))
		collect(c, path, "is above the maximum");
	if (json_is_string(pat) && json_is_string(x)) {
		regex_t re;

		if (json_string_length(x) > MF_SPEC_PATTERN_MAX_INPUT ||
		    strlen(json_string_value(x)) != json_string_length(x))
			collect(c, path, "is too long (or holds NUL) to match the pattern");
		else if (regcomp(&re, json_string_value(pat), REG_EXTENDED | REG_NOSUB) != 0)
			collect(c, path, "the spec's pattern does not compile");
		else {
			if (regexec(&re, json_string_value(x), 0, NULL, 0) != 0)
				collect(c, path, "does not match the pattern");
			regfree(&re);
		}
	}
}

int mf_spec_resolve(const json_t *specs, const json_t *given, const char *prefix, const char *noun, json_t **out,
		    json_t **errors, mf_err_t *err)
{
	struct collect c = { .errors = json_array() };
	json_t *res = json_object(), *x;
	const char *k;
	char p[200], msg[64];
	size_t n;

	*out = NULL;
	*errors = NULL;
	if (c.errors == NULL || res == NULL)
		goto oom;
	snprintf(msg, sizeof(msg), "is not a known %s", noun);
	if (given && !json_is_object(given))
		collect(&c, prefix, "must be an object");
	else if (given) {
		json_object_foreach((json_t *)given, k, x) {
			const json_t *spec = json_is_object(specs) ? json_object_get(specs, k) : NULL;

			mf_json_pointer(p, sizeof(p), prefix, k);
			if (!json_is_object(spec))
				collect(&c, p, msg);
			else
				check_given(&c, p, spec, x);
		}
	}
	if (json_is_object(specs) && (given == NULL || json_is_object(given))) {
		json_object_foreach((json_t *)specs, k, x) {
			const json_t *have = json_is_object(given) ? json_object_get(given, k) : NULL;
			const json_t *def = json_object_get(x, "default");

			mf_json_pointer(p, sizeof(p), prefix, k);
			if (have) {
				if (json_object_set_new(res, k, json_deep_copy(have)) < 0)
					c.oom = true;
			} else if (def) {
				if (json_object_set_new(res, k, json_deep_copy(def)) < 0)
					c.oom = true;
			} else if (json_is_true(json_object_get(x, "required")))
				collect(&c, p, "is required");
		}
	}
	if (c.oom)
		goto oom;
	n = json_array_size(c.errors);
	if (n > 0) {
		const json_t *first = json_array_get(c.errors, 0);

		json_decref(res);
		*errors = c.errors;
		return mf_err_set(err, 400, "validation_failed", "%zu %s problem%s; the first: %s %s", n, noun,
				  n == 1 ? "" : "s", json_string_value(json_object_get(first, "path")),
				  json_string_value(json_object_get(first, "message")));
	}
	json_decref(c.errors);
	*out = res;
	return 0;
oom:
	json_decref(c.errors);
	json_decref(res);
	mf_err_set(err, 500, "out_of_memory", "out of memory while checking the values");
	return -2;
}
