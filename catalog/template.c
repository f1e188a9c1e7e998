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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/template.h"
#include "core/canon.h"
#include "core/json.h"
#include "core/render.h"
#include "core/spec.h"
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

static void path_of(char *out, size_t len, const char *prefix, const char *key)
{
	mf_json_pointer(out, len, prefix, key);
}

/* mf_spec_check reports through this. */
static void spec_bad(void *arg, const char *path, const char *msg)
{
	bad(arg, path, msg);
}

static void check_param(vctx_t *v, const char *name, const json_t *spec)
{
	char base[200];

	path_of(base, sizeof(base), "/parameters", name);
	mf_spec_check(base, name, spec, spec_bad, v);
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

int cat_params_resolve(const json_t *specs, const json_t *given, json_t **out, json_t **errors, mf_err_t *err)
{
	return mf_spec_resolve(specs, given, "/params", "parameter", out, errors, err);
}
