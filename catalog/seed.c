/*
 * seed.c - the templates shipped with mspflow (catalog/templates/), put in
 * the catalog by `mspflow seed-catalog` and by `mspflow dev` at start.
 *
 * They are data, published like any partner's: under the demo partner
 * "demo-partner", signed over their canonical JSON with an Ed25519 key, by
 * the same SQL and audit rows as the publish route (publish.h).  The key
 * pair is made here for the run that needs it; its public half is
 * registered as POST .../signing-keys would, its private half signs the
 * versions not yet published and is wiped before the transaction ends, so
 * nothing can sign as the demo partner afterwards.  Loading checks every
 * file before anything connects, so a broken file publishes nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "catalog/catalog.h"
#include "catalog/publish.h"
#include "catalog/template.h"
#include "core/json.h"
#include "core/log.h"
#include "core/pg.h"
#include "tenants/tn.h"

#define SEED_ACTOR "seed-catalog"
/* a template file larger than this is refused (the publish route's body
 * limit is smaller still) */
#define SEED_MAX_FILE (4 * 1024 * 1024)
/* pg_advisory_xact_lock key: concurrent seeds (two `mspflow dev`, an
 * operator's seed-catalog) take turns instead of racing for the partner */
#define SEED_LOCK_KEY "7277392851290301"

struct cat_seed {
	size_t n;
	struct seed_item {
		char *path;
		json_t *doc;
	} *items;
};

void cat_seed_free(cat_seed_t *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->items[i].path);
		json_decref(s->items[i].doc);
	}
	free(s->items);
	free(s);
}

size_t cat_seed_count(const cat_seed_t *s)
{
	return s ? s->n : 0;
}

const json_t *cat_seed_doc(const cat_seed_t *s, size_t i)
{
	return i < s->n ? s->items[i].doc : NULL;
}

const char *cat_seed_path(const cat_seed_t *s, size_t i)
{
	return i < s->n ? s->items[i].path : NULL;
}

/* ---- loading and checking ---- */

static int problem(json_t *problems, const char *file, const char *path, const char *msg)
{
	return json_array_append_new(problems, json_pack("{s:s,s:s,s:s}", "file", file, "path", path, "message", msg));
}

/* Every problem of one document into problems; 0, or -1 out of memory. */
static int check_doc(const char *file, const json_t *doc, json_t *problems)
{
	static const char zero_sig[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
	json_t *d, *errors = NULL, *e;
	mf_buf_t b = MF_BUF_INIT;
	mf_err_t err;
	size_t i;
	int rc;

	if (!json_is_object(doc))
		return problem(problems, file, "", "a template is a JSON object");
	if (json_object_get(doc, "key_id") || json_object_get(doc, "signature"))
		return problem(problems, file, json_object_get(doc, "key_id") ? "/key_id" : "/signature",
			       "leave key_id and signature out: the seed signs the templates it publishes");
	/* checked as it will be published, with a stand-in key and signature */
	d = json_copy((json_t *)doc);
	if (d == NULL || json_object_set_new(d, "key_id", json_string("00000000-0000-0000-0000-000000000000")) < 0 ||
	    json_object_set_new(d, "signature", json_string(zero_sig)) < 0) {
		json_decref(d);
		return -1;
	}
	rc = cat_template_validate(d, &errors, &err);
	if (rc == 0)
		rc = cat_signed_bytes(d, &b, &errors, &err);
	mf_buf_free(&b);
	json_decref(d);
	if (rc < 0 && errors == NULL)
		return -1;
	json_array_foreach(errors, i, e)
		if (problem(problems, file, json_string_value(json_object_get(e, "path")),
			    json_string_value(json_object_get(e, "message"))) < 0) {
			json_decref(errors);
			return -1;
		}
	json_decref(errors);
	return 0;
}

static int add_item(cat_seed_t *s, const char *path, const char *text, size_t len, json_t *problems)
{
	struct seed_item *it;
	mf_err_t err;
	json_t *doc;

	doc = mf_json_parse(text, len, MF_JSON_MAX_DEPTH_DEFAULT, &err);
	if (doc == NULL)
		return problem(problems, path, "", err.detail);
	it = realloc(s->items, (s->n + 1) * sizeof(*it));
	if (it == NULL) {
		json_decref(doc);
		return -1;
	}
	s->items = it;
	it = &s->items[s->n];
	it->path = strdup(path);
	it->doc = doc;
	if (it->path == NULL) {
		json_decref(doc);
		return -1;
	}
	s->n++;
	return check_doc(path, doc, problems);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads path whole; NULL with err when it cannot. */
static char *slurp(const char *path, size_t *len, mf_err_t *err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0;

	if (f == NULL) {
		mf_err_set(err, 500, "io_error", "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(SEED_MAX_FILE + 1);
	if (buf)
		n = fread(buf, 1, SEED_MAX_FILE + 1, f);
	if (buf == NULL || ferror(f) || n > SEED_MAX_FILE) {
		mf_err_set(err, 500, "io_error", "cannot read %s: %s", path,
			   buf == NULL ? "out of memory" : n > SEED_MAX_FILE ? "larger than 4 MiB" : strerror(errno));
		free(buf);
		buf = NULL;
	} else {
		buf[n] = '\0';
		*len = n;
	}
	fclose(f);
	return buf;
}

static int load_dir(const char *dir, cat_seed_t *s, json_t *problems, mf_err_t *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	if (d == NULL)
		return mf_err_set(err, 500, "io_error", "cannot open %s: %s", dir, strerror(errno)), -2;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		char **more;

		if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
			continue;
		more = realloc(names, (n + 1) * sizeof(*names));
		if (more == NULL || (more[n] = strdup(de->d_name)) == NULL) {
			names = more ? more : names;
			rc = -2;
			break;
		}
		names = more;
		n++;
	}
	closedir(d);
	if (rc < 0)
		mf_err_set(err, 500, "out_of_memory", "out of memory");
	if (n > 1)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n && rc == 0; i++) {
		char *path = NULL, *text;
		size_t len = 0;

		if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
			rc = (mf_err_set(err, 500, "out_of_memory", "out of memory"), -2);
			break;
		}
		text = slurp(path, &len, err);
		if (text == NULL)
			rc = -2;
		else if (add_item(s, path, text, len, problems) < 0)
			rc = (mf_err_set(err, 500, "out_of_memory", "out of memory"), -2);
		free(text);
		free(path);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc == 0 && n == 0)
		rc = (mf_err_set(err, 400, "no_templates", "%s holds no *.json template", dir), -2);
	return rc;
}

/* Two files with one name and version: the second would never publish. */
static int check_duplicates(const cat_seed_t *s, json_t *problems)
{
	for (size_t i = 0; i < s->n; i++)
		for (size_t j = 0; j < i; j++) {
			const json_t *a = s->items[i].doc, *b = s->items[j].doc;

			if (json_is_object(a) && json_is_object(b) &&
			    json_equal(json_object_get(a, "name"), json_object_get(b, "name")) &&
			    json_equal(json_object_get(a, "version"), json_object_get(b, "version")) &&
			    problem(problems, s->items[i].path, "/version",
				    "another file has the same name and version") < 0)
				return -1;
		}
	return 0;
}

int cat_seed_load(const char *dir, cat_seed_t **out, json_t **problems, mf_err_t *err)
{
	cat_seed_t *s = calloc(1, sizeof(*s));
	json_t *p = json_array();
	int rc = 0;

	*out = NULL;
	*problems = NULL;
	if (s == NULL || p == NULL) {
		rc = (mf_err_set(err, 500, "out_of_memory", "out of memory"), -2);
		goto fail;
	}
	if (dir)
		rc = load_dir(dir, s, p, err);
	else
		for (int i = 0; i < cat_seed_templates.count && rc == 0; i++) {
			const cat_seed_file_t *f = &cat_seed_templates.items[i];

			if (add_item(s, f->path, f->text, strlen(f->text), p) < 0)
				rc = (mf_err_set(err, 500, "out_of_memory", "out of memory"), -2);
		}
	if (rc == 0 && check_duplicates(s, p) < 0)
		rc = (mf_err_set(err, 500, "out_of_memory", "out of memory"), -2);
	if (rc < 0)
		goto fail;
	if (json_array_size(p) > 0) {
		const json_t *first = json_array_get(p, 0);

		mf_err_set(err, 400, "validation_failed", "%zu problem(s) in the templates; the first: %s: %s: %s",
			   json_array_size(p), json_string_value(json_object_get(first, "file")),
			   json_string_value(json_object_get(first, "path")),
			   json_string_value(json_object_get(first, "message")));
		*problems = p;
		cat_seed_free(s);
		return -1;
	}
	json_decref(p);
	*out = s;
	return 0;
fail:
	json_decref(p);
	cat_seed_free(s);
	return -2;
}

/* ---- publishing ---- */

/* One statement; its result, or NULL with err (mf_pg_exec). */
static PGresult *q(PGconn *c, const char *sql, int n, const char *const *p, mf_err_t *err)
{
	return mf_pg_exec(c, sql, n, p, err);
}

static int q0(PGconn *c, const char *sql, int n, const char *const *p, mf_err_t *err)
{
	PGresult *r = q(c, sql, n, p, err);

	PQclear(r);
	return r ? 0 : -1;
}

static int audit(PGconn *c, const char *tenant, const char *action, const char *target, json_t *detail,
		 mf_err_t *err)
{
	char *d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
	const char *p[5] = { tenant, SEED_ACTOR, action, target, d };
	int rc;

	json_decref(detail);
	if (d == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	rc = q0(c, TN_AUDIT_SQL, 5, p, err);
	free(d);
	return rc;
}

/* The demo partner's id into pid: found, or created under the platform. */
static int ensure_partner(PGconn *c, char pid[37], mf_err_t *err)
{
	const char *p[1] = { CAT_SEED_PARTNER_SLUG };
	char platform[37];
	PGresult *r;

	r = q(c, "SELECT id::text, kind, deleted_at IS NOT NULL FROM platform.tenants WHERE slug = $1", 1, p, err);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 1) {
		bool ok = strcmp(PQgetvalue(r, 0, 1), "partner") == 0 && PQgetvalue(r, 0, 2)[0] == 'f';

		snprintf(pid, 37, "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
		if (!ok)
			return mf_err_set(err, 409, "slug_taken", "the slug %s belongs to a tenant that is not a live partner; "
					  "the shipped templates are published under a partner of that slug",
					  CAT_SEED_PARTNER_SLUG);
		return 0;
	}
	PQclear(r);
	r = q(c, "SELECT id::text FROM platform.tenants WHERE kind = 'platform'", 0, NULL, err);
	if (r == NULL)
		return -1;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return mf_err_set(err, 409, "no_platform", "there is no platform tenant yet: run mspflow bootstrap first");
	}
	snprintf(platform, sizeof(platform), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	if (tn_tenant_create(c, POL_PARTNER, platform, CAT_SEED_PARTNER_NAME, CAT_SEED_PARTNER_SLUG, SEED_ACTOR, pid,
			     err) < 0)
		return -1;
	mf_info("catalog", "demo partner created", MF_S("tenant_id", pid), MF_S("slug", CAT_SEED_PARTNER_SLUG));
	return 0;
}

/* For each template: already published (its summary entry written) or not
 * (pending[i] = true). */
static int find_published(PGconn *c, const char *pid, const cat_seed_t *s, bool *pending, json_t *summary,
			  mf_err_t *err)
{
	for (size_t i = 0; i < s->n; i++) {
		const json_t *doc = s->items[i].doc;
		char *text = json_dumps(doc, JSON_COMPACT), id[200];
		const char *p[4] = { pid, json_string_value(json_object_get(doc, "name")),
				     json_string_value(json_object_get(doc, "version")), text };
		json_t *entry;
		PGresult *r;

		if (text == NULL)
			return mf_err_set(err, 500, "out_of_memory", "out of memory");
		r = q(c, "SELECT (document - 'key_id' - 'signature') = $4::jsonb FROM platform.templates "
			 "WHERE partner_id = $1::uuid AND name = $2 AND version = $3", 4, p, err);
		free(text);
		if (r == NULL)
			return -1;
		pending[i] = PQntuples(r) == 0;
		snprintf(id, sizeof(id), "%s/%s", CAT_SEED_PARTNER_SLUG, p[1]);
		entry = json_pack("{s:s,s:s,s:s}", "template", id, "version", p[2], "state",
				  pending[i] ? "published" : "already_published");
		if (entry && !pending[i] && PQgetvalue(r, 0, 0)[0] == 'f')
			json_object_set_new(entry, "note", json_string("the file differs from the published version; "
								       "give it a new version to publish it"));
		PQclear(r);
		if (entry == NULL || json_array_append_new(summary, entry) < 0)
			return mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	return 0;
}

/* A new key pair: the public half registered for the partner (kid, pk_b64
 * as the database holds it), the private half in sk. */
static int new_key(PGconn *c, const char *pid, char kid[37], char *pk_db, size_t pk_len,
		   unsigned char sk[crypto_sign_SECRETKEYBYTES], mf_err_t *err)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	char b64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, sodium_base64_VARIANT_ORIGINAL)];
	PGresult *r;

	crypto_sign_keypair(pk, sk);
	sodium_bin2base64(b64, sizeof(b64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
	tn_uuid_new(kid);
	{
		const char *p[3] = { kid, pid, b64 };

		r = q(c, cat_key_insert_sql, 3, p, err);
	}
	if (r == NULL)
		return -1;
	PQclear(r);
	if (audit(c, pid, "signing_key.create", kid, cat_key_audit_detail(b64), err) < 0)
		return -1;
	/* verification reads the key back as the publish route does */
	{
		const char *p[2] = { pid, kid };

		r = q(c, cat_key_lookup_sql, 2, p, err);
	}
	if (r == NULL)
		return -1;
	if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 1), "active") != 0 ||
	    strlen(PQgetvalue(r, 0, 0)) >= pk_len) {
		PQclear(r);
		return mf_err_set(err, 500, "internal_error", "the new signing key did not read back");
	}
	snprintf(pk_db, pk_len, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return 0;
}

/* Signs, checks and stores one version. */
static int publish_one(PGconn *c, const char *pid, const char *kid, const char *pk_db,
		       const unsigned char sk[crypto_sign_SECRETKEYBYTES], const json_t *doc, const char *file,
		       mf_err_t *err)
{
	unsigned char sig[crypto_sign_BYTES];
	char b64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, sodium_base64_VARIANT_ORIGINAL)];
	char target[200];
	json_t *d = json_deep_copy(doc), *errors = NULL;
	mf_buf_t msg = MF_BUF_INIT;
	cat_publish_args_t a = { 0 };
	PGresult *r = NULL;
	int rc = -1;

	if (d == NULL || json_object_set_new(d, "key_id", json_string(kid)) < 0 ||
	    cat_signed_bytes(d, &msg, &errors, err) < 0) {
		if (errors == NULL)
			mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	crypto_sign_detached(sig, NULL, (const unsigned char *)msg.data, msg.len, sk);
	sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
	if (json_object_set_new(d, "signature", json_string(b64)) < 0) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	/* the publish route's checks, in its order */
	if (cat_template_validate(d, &errors, err) < 0) {
		const json_t *first = json_array_get(errors, 0);

		mf_err_set(err, 400, "validation_failed", "%s does not validate once signed: %s %s", file,
			   first ? json_string_value(json_object_get(first, "path")) : "",
			   first ? json_string_value(json_object_get(first, "message")) : "");
		goto out;
	}
	if (!cat_signature_ok(pk_db, json_object_get(d, "signature"), msg.data, msg.len)) {
		mf_err_set(err, 500, "bad_signature", "the signature of %s does not verify", file);
		goto out;
	}
	if (cat_publish_args_init(&a, pid, d) < 0) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	r = q(c, cat_publish_sql, 13, a.p, err);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 0) {
		mf_err_set(err, 409, "version_exists", "version %s of %s is already published", a.p[2], a.p[1]);
		goto out;
	}
	snprintf(target, sizeof(target), "%s/%s", PQgetvalue(r, 0, 1), a.p[1]);
	rc = audit(c, pid, "template.publish", target, cat_publish_audit_detail(d), err);
out:
	PQclear(r);
	cat_publish_args_free(&a);
	mf_buf_free(&msg);
	json_decref(errors);
	json_decref(d);
	return rc;
}

int cat_seed_publish(PGconn *c, const cat_seed_t *s, json_t **summary, mf_err_t *err)
{
	unsigned char sk[crypto_sign_SECRETKEYBYTES];
	char pid[37], kid[37] = "", pk_db[128];
	const char *lock[1] = { SEED_LOCK_KEY };
	bool *pending = calloc(s->n ? s->n : 1, sizeof(bool)), any = false;
	json_t *sum = json_array(), *e;
	size_t i;
	int rc = -1;

	*summary = NULL;
	if (pending == NULL || sum == NULL) {
		free(pending);
		json_decref(sum);
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	if (q0(c, "BEGIN", 0, NULL, err) < 0)
		goto out;
	if (q0(c, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock, err) < 0 || ensure_partner(c, pid, err) < 0 ||
	    find_published(c, pid, s, pending, sum, err) < 0)
		goto rollback;
	for (i = 0; i < s->n; i++)
		any = any || pending[i];
	if (any) {
		if (new_key(c, pid, kid, pk_db, sizeof(pk_db), sk, err) < 0) {
			sodium_memzero(sk, sizeof(sk));
			goto rollback;
		}
		for (i = 0; i < s->n; i++) {
			if (pending[i] && publish_one(c, pid, kid, pk_db, sk, s->items[i].doc, s->items[i].path, err) < 0)
				break;
			if (pending[i] && json_object_set_new(json_array_get(sum, i), "key_id", json_string(kid)) < 0) {
				mf_err_set(err, 500, "out_of_memory", "out of memory");
				break;
			}
		}
		/* the private half never outlives the signing */
		sodium_memzero(sk, sizeof(sk));
		if (i < s->n)
			goto rollback;
	}
	if (q0(c, "COMMIT", 0, NULL, err) < 0)
		goto out;
	json_array_foreach(sum, i, e)
		if (pending[i])
			mf_info("catalog", "template published", MF_S("template", json_string_value(json_object_get(e, "template"))),
				MF_S("version", json_string_value(json_object_get(e, "version"))), MF_S("key_id", kid));
	*summary = sum;
	sum = NULL;
	rc = 0;
	goto out;
rollback:
	PQclear(PQexec(c, "ROLLBACK"));
out:
	free(pending);
	json_decref(sum);
	return rc;
}
