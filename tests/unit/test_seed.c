/*
 * test_seed.c - the templates shipped with mspflow (catalog/templates/,
 * compiled in): each one validates as it will be published, holds
 * integers only, and is consistent with itself - every connector a step
 * calls is declared and every declared one is called, every message is
 * rendered by a message step, every params.<name> it reads is a parameter,
 * brand and the tenant's name appear only where the engine provides them.
 * And a broken template directory is refused with each file's problems.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "t.h"

static const char *const shipped[] = {
	"billing-readiness", "change-request-routing", "client-onboarding", "opportunity-to-project",
};

/* Every params.<name> read anywhere under v (strings: expressions,
 * templates and messages alike) is a parameter of specs. */
static bool params_declared(const json_t *v, const json_t *specs, char *bad, size_t len)
{
	static regex_t re;
	static bool compiled;
	const char *k;
	json_t *m;
	size_t i;

	if (!compiled) {
		if (regcomp(&re, "params\\.([a-z_][a-z0-9_]*)", REG_EXTENDED) != 0)
			return false;
		compiled = true;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		regmatch_t mt[2];

		while (regexec(&re, s, 2, mt, 0) == 0) {
			char name[80];

			snprintf(name, sizeof(name), "%.*s", (int)(mt[1].rm_eo - mt[1].rm_so), s + mt[1].rm_so);
			if (!json_object_get(specs, name)) {
				snprintf(bad, len, "%s", name);
				return false;
			}
			s += mt[0].rm_eo;
		}
		return true;
	}
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, m)
			if (!params_declared(m, specs, bad, len))
				return false;
	}
	if (json_is_array(v))
		json_array_foreach(v, i, m)
			if (!params_declared(m, specs, bad, len))
				return false;
	return true;
}

/* brand.* and tenant.name / slug / kind are in the scope of message steps
 * and ai prompts only (docs/workflows.md); anywhere else they render as
 * nothing.  True when no string under v reads them. */
static bool no_brand(const json_t *v)
{
	static regex_t re;
	static bool compiled;
	const char *k;
	json_t *m;
	size_t i;

	if (!compiled) {
		if (regcomp(&re, "(^|[^a-z_.])(brand\\.|tenant\\.(name|slug|kind))", REG_EXTENDED | REG_NOSUB) != 0)
			return false;
		compiled = true;
	}
	if (json_is_string(v))
		return regexec(&re, json_string_value(v), 0, NULL, 0) != 0;
	if (json_is_object(v))
		json_object_foreach((json_t *)v, k, m)
			if (!no_brand(m))
				return false;
	if (json_is_array(v))
		json_array_foreach(v, i, m)
			if (!no_brand(m))
				return false;
	return true;
}

static bool has_connector(const json_t *list, const char *name)
{
	size_t i;
	json_t *c;

	json_array_foreach(list, i, c)
		if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
			return true;
	return false;
}

static void test_shipped(void)
{
	cat_seed_t *s = NULL;
	json_t *problems = NULL;
	mf_err_t err = { 0 };
	int rc = cat_seed_load(NULL, &s, &problems, &err);

	if (rc != 0) {
		size_t i;
		json_t *e;

		json_array_foreach(problems, i, e)
			printf("# %s: %s: %s\n", json_string_value(json_object_get(e, "file")),
			       json_string_value(json_object_get(e, "path")), json_string_value(json_object_get(e, "message")));
		printf("# %s\n", err.detail);
	}
	T_OK(rc == 0, "every shipped template validates as published (placeholder key and signature, integers only)");
	T_OK(cat_seed_count(s) == sizeof(shipped) / sizeof(shipped[0]), "four templates are shipped");
	for (size_t i = 0; i < cat_seed_count(s); i++) {
		const json_t *doc = cat_seed_doc(s, i), *wf = json_object_get(doc, "workflow");
		const json_t *conns = json_object_get(doc, "connectors"), *msgs = json_object_get(doc, "messages");
		const json_t *specs = json_object_get(doc, "parameters"), *step;
		const char *name = json_string_value(json_object_get(doc, "name")), *k;
		char what[200], bad[80] = "", path[200];
		bool calls = true, used = true, rendered = true, exist = true, scoped = true;
		size_t j, n;
		json_t *c, *m;

		snprintf(path, sizeof(path), "catalog/templates/%s.json", shipped[i]);
		snprintf(what, sizeof(what), "%s: named after its file, version 1.1.0", shipped[i]);
		T_OK(name && strcmp(name, shipped[i]) == 0 && strcmp(cat_seed_path(s, i), path) == 0 &&
		     strcmp(json_string_value(json_object_get(doc, "version")), "1.1.0") == 0, what);
		snprintf(what, sizeof(what), "%s: a description, tags, parameters, connectors and messages", shipped[i]);
		T_OK(json_string_length(json_object_get(doc, "description")) > 100 &&
		     json_array_size(json_object_get(doc, "tags")) > 0 && json_object_size(specs) > 0 &&
		     json_array_size(conns) > 0 && json_object_size(msgs) > 0, what);
		json_array_foreach(json_object_get(wf, "steps"), j, step) {
			const char *t = json_string_value(json_object_get(step, "type"));
			const char *cn = json_string_value(json_object_get(step, "connector"));
			const char *mn = json_string_value(json_object_get(step, "message"));

			if (cn && !has_connector(conns, cn))
				calls = false;
			if (t && strcmp(t, "message") == 0 && !json_object_get(msgs, mn))
				exist = false;
			json_object_foreach((json_t *)step, k, m)
				if (!(t && strcmp(t, "ai") == 0 && strcmp(k, "prompt") == 0) && !no_brand(m))
					scoped = false;
		}
		json_array_foreach(conns, n, c) {
			bool any = false;

			json_array_foreach(json_object_get(wf, "steps"), j, step)
				any = any || json_equal(json_object_get(step, "connector"), json_object_get(c, "name"));
			used = used && any;
		}
		json_object_foreach((json_t *)msgs, k, m) {
			bool any = false;

			json_array_foreach(json_object_get(wf, "steps"), j, step)
				any = any || (json_is_string(json_object_get(step, "message")) &&
					      strcmp(json_string_value(json_object_get(step, "message")), k) == 0);
			rendered = rendered && any;
		}
		snprintf(what, sizeof(what), "%s: every connector a step calls is declared, and every declared one is called",
			 shipped[i]);
		T_OK(calls && used, what);
		snprintf(what, sizeof(what), "%s: message steps name its messages, and each message is rendered", shipped[i]);
		T_OK(exist && rendered, what);
		snprintf(what, sizeof(what), "%s: brand and the tenant's name only in messages and ai prompts", shipped[i]);
		T_OK(scoped && no_brand(json_object_get(wf, "trigger")), what);
		snprintf(what, sizeof(what), "%s: every params.<name> it reads is a parameter", shipped[i]);
		T_OK(params_declared(doc, specs, bad, sizeof(bad)), what);
		if (bad[0])
			printf("#   params.%s is not declared\n", bad);
	}
	{
		bool ai = false;

		for (size_t i = 0; i < cat_seed_count(s); i++) {
			size_t j;
			json_t *step;

			json_array_foreach(json_object_get(json_object_get(cat_seed_doc(s, i), "workflow"), "steps"), j, step)
				ai = ai || (strcmp(json_string_value(json_object_get(step, "type")), "ai") == 0 &&
					    json_array_size(json_object_get(step, "labels")) == 3);
		}
		T_OK(ai, "change-request-routing classifies with an ai step over three labels");
	}
	cat_seed_free(s);
	json_decref(problems);
}

static char *write_file(const char *dir, const char *name, const char *text)
{
	char *p = NULL;
	FILE *f;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return p;
}

static void test_broken_dir(void)
{
	char dir[] = "/tmp/mspflow-test-seed-XXXXXX";
	cat_seed_t *s = NULL;
	json_t *problems = NULL, *e;
	mf_err_t err = { 0 };
	char *files[4] = { NULL };
	const char *good = cat_seed_templates.items[0].text;
	size_t i;
	bool named = true;
	int rc;

	if (mkdtemp(dir) == NULL) {
		T_OK(false, "a scratch directory");
		return;
	}
	files[0] = write_file(dir, "a-good.json", good);
	rc = cat_seed_load(dir, &s, &problems, &err);
	T_OK(rc == 0 && cat_seed_count(s) == 1, "a directory of one good template loads");
	cat_seed_free(s);
	s = NULL;
	/* a step naming no step, a float, a signature, and a second copy of the good one */
	files[1] = write_file(dir, "b-broken.json", "{\"name\": \"b\", \"version\": \"1.0.0\", \"workflow\": {\"trigger\": "
			      "{\"event\": \"a.b\"}, \"steps\": [{\"id\": \"x\", \"type\": \"emit\", \"event\": \"a.c\", "
			      "\"next\": \"nowhere\"}]}}");
	files[2] = write_file(dir, "c-float.json", "{\"name\": \"c\", \"version\": \"1.0.0\", \"parameters\": {\"r\": "
			      "{\"type\": \"number\"}}, \"tags\": [\"x\"], \"description\": \"1.5 is fine in text\", "
			      "\"workflow\": {\"trigger\": {\"event\": \"a.b\", \"when\": \"data.x > 0.5\"}, \"steps\": "
			      "[{\"id\": \"x\", \"type\": \"emit\", \"event\": \"a.c\", \"data\": {\"r\": 0.5}}]}}");
	files[3] = write_file(dir, "d-copy.json", good);
	rc = cat_seed_load(dir, &s, &problems, &err);
	T_OK(rc == -1 && s == NULL, "a broken directory is refused as a whole");
	json_array_foreach(problems, i, e) {
		const char *f = json_string_value(json_object_get(e, "file")), *p = json_string_value(json_object_get(e, "path"));

		named = named && f && strncmp(f, dir, strlen(dir)) == 0 && p;
	}
	T_OK(named, "each problem names its file");
	{
		char want[4][300];
		bool found[4] = { false };

		snprintf(want[0], sizeof(want[0]), "%s/b-broken.json /workflow/steps/0/next", dir);
		snprintf(want[1], sizeof(want[1]), "%s/c-float.json /workflow/steps/0/data/r", dir);
		snprintf(want[2], sizeof(want[2]), "%s/d-copy.json /version", dir);
		json_array_foreach(problems, i, e) {
			char got[400];

			snprintf(got, sizeof(got), "%s %s", json_string_value(json_object_get(e, "file")),
				 json_string_value(json_object_get(e, "path")));
			for (int w = 0; w < 3; w++)
				found[w] = found[w] || strcmp(got, want[w]) == 0;
		}
		T_OK(found[0], "a reference to no step is reported at its path");
		T_OK(found[1], "a non-integer number is reported at its path");
		T_OK(found[2], "a second file with the same name and version is reported");
		T_OK(strstr(err.detail, "b-broken.json") != NULL, "the detail names the first broken file");
	}
	json_decref(problems);
	problems = NULL;
	unlink(files[1]);
	unlink(files[2]);
	unlink(files[3]);
	free(files[1]);
	free(files[3]);
	files[1] = write_file(dir, "b-signed.json", "{\"name\": \"b\", \"version\": \"1.0.0\", \"key_id\": \"k\", "
			      "\"signature\": \"s\", \"workflow\": {}}");
	rc = cat_seed_load(dir, &s, &problems, &err);
	T_OK(rc == -1 && json_array_size(problems) == 1 &&
	     strcmp(json_string_value(json_object_get(json_array_get(problems, 0), "path")), "/key_id") == 0,
	     "a file that carries its own key_id and signature is refused");
	json_decref(problems);
	unlink(files[1]);
	unlink(files[0]);
	free(files[0]);
	free(files[1]);
	free(files[2]);
	rc = cat_seed_load(dir, &s, &problems, &err);
	T_OK(rc == -2 && strcmp(err.code, "no_templates") == 0, "an empty directory is an error, not an empty seed");
	T_OK(cat_seed_load("/nonexistent/mspflow", &s, &problems, &err) == -2 && strcmp(err.code, "io_error") == 0,
	     "a missing directory is an error");
	rmdir(dir);
}

int main(void)
{
	test_shipped();
	test_broken_dir();
	return t_done();
}
