/*
 * demo.c - seeds the `mspflow dev --demo` walkthrough (demo.h).
 *
 * Everything the demo makes goes through the server's own public API as
 * the dev platform admin, from a thread of its own with blocking libcurl:
 * tenants, branding, the portal domain and its confirmation, policies,
 * connectors, users, template installations and the deal event.  So the
 * demo is what an operator's script would get - nothing is written around
 * a route's checks, and event intake is POST .../events itself, under an
 * Idempotency-Key, so a start that finds no STATE/demo.json replays the
 * first event instead of starting a second run.
 *
 * What cannot be found through the API is read before the server starts:
 * the platform tenant's id and the demo tenants' ids by slug (a platform
 * admin has no "find tenant by slug" route), and the users' passwords from
 * STATE/demo.json (the API never returns one).  A user whose password was
 * lost is made again with a new one.
 *
 * Secrets: the admin's secret, the token and the users' passwords go to
 * STATE/demo.json (0600) and stdout, never to the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "cmd/demo.h"
#include "core/buf.h"
#include "core/log.h"

#define MSP_SLUG "northwind"
#define MSP_NAME "Northwind IT"
#define CLIENT_SLUG "contoso"
#define CLIENT_NAME "Contoso"
#define CLIENT_DOMAIN "contoso.localhost"
#define DEAL_ID "D-1001"
/* the first start's event; a replay under it starts no run */
#define DEAL_KEY "demo:crm.deal.closed_won:" DEAL_ID
/* how long the seeding waits for the deal's run to reach its approval */
#define RUN_WAIT_S 30
#define MAX_ANSWER (1024 * 1024)

enum owner { AT_MSP, AT_CLIENT };

static const struct demo_user {
	const char *key, *email, *name;
	enum owner at;
	const char *roles[5];
} demo_users[] = {
	/* holds the roles the installed templates' approvals are assigned
	 * to, so they show in Contoso's portal */
	{ "client_approver", "alex.morgan@contoso.example", "Alex Morgan", AT_CLIENT,
	  { "client_admin", "finance_approver", "change_manager", "cab_member", NULL } },
	{ "client_user", "sam.lee@contoso.example", "Sam Lee", AT_CLIENT, { "client_user", NULL } },
	{ "msp_admin", "jordan.price@northwind.example", "Jordan Price", AT_MSP, { "msp_admin", NULL } },
};

/* Installed into Contoso under the template's own name.  The deal of
 * the walkthrough (75000, margin 32%) is at least large_deal_amount, so it
 * needs the finance approval. */
static const struct demo_install {
	const char *name, *params;
} demo_installs[] = {
	{ "opportunity-to-project",
	  "{\"min_margin_percent\": 20, \"large_deal_amount\": 50000, \"installments\": 3, "
	  "\"project_template\": \"standard-delivery\"}" },
	{ "change-request-routing",
	  "{\"cab_cost_threshold\": 5000, \"standard_preapproved_limit\": 1000, \"currency\": \"USD\"}" },
	{ "client-onboarding", "{}" },
	{ "billing-readiness", "{}" },
};

static const char *const connectors[] = { "crm", "psa", "erp", "rmm", "llm" };

struct mf_demo {
	const mf_config_t *cfg;
	int peers_port;
	char platform_id[37], msp_id[37], client_id[37];
	char *path;			/* STATE/demo.json */
	json_t *saved;			/* what it held at start, or NULL */
	/* seeding thread */
	pthread_t thread;
	bool started;
	atomic_bool stop;
	char *base_url, *admin_id, *admin_secret;
	char token[4096];
	json_t *logins;			/* key -> {email, password, roles} */
	char event_id[37], run_id[37], run_state[16];
	char peers_url[64];
};

/* ---- before the server: what an earlier start made ---- */

static int lookup(mf_demo_t *d, mf_err_t *err)
{
	static const char sql[] =
		"SELECT (SELECT id::text FROM platform.tenants WHERE kind = 'platform' AND deleted_at IS NULL LIMIT 1), "
		"m.id::text, (SELECT c.id::text FROM platform.tenants c WHERE c.slug = $2 AND c.kind = 'client' "
		"  AND c.parent_id = m.id AND c.deleted_at IS NULL) "
		"FROM (SELECT NULL) x LEFT JOIN platform.tenants m ON m.slug = $1 AND m.kind = 'msp' AND m.deleted_at IS NULL";
	const char *p[2] = { MSP_SLUG, CLIENT_SLUG };
	PGconn *c = PQconnectdb(d->cfg->database_url);
	PGresult *r = NULL;
	int rc = -1;

	if (PQstatus(c) != CONNECTION_OK) {
		mf_err_set(err, 503, "db_unavailable", "cannot connect to PostgreSQL");
		goto out;
	}
	r = PQexecParams(c, sql, 2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
		mf_err_set(err, 500, "internal_error", "cannot read the demo tenants (no platform tenant?)");
		goto out;
	}
	snprintf(d->platform_id, sizeof(d->platform_id), "%s", PQgetvalue(r, 0, 0));
	snprintf(d->msp_id, sizeof(d->msp_id), "%s", PQgetvalue(r, 0, 1));
	snprintf(d->client_id, sizeof(d->client_id), "%s", PQgetvalue(r, 0, 2));
	rc = 0;
out:
	PQclear(r);
	PQfinish(c);
	return rc;
}

mf_demo_t *mf_demo_new(const mf_config_t *cfg, int peers_port, mf_err_t *err)
{
	mf_demo_t *d = calloc(1, sizeof(*d));

	if (d == NULL || asprintf(&d->path, "%s/demo.json", cfg->state_dir) < 0 ||
	    (d->logins = json_object()) == NULL) {
		if (d)
			json_decref(d->logins);
		free(d);
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	d->cfg = cfg;
	d->peers_port = peers_port;
	snprintf(d->peers_url, sizeof(d->peers_url), "http://127.0.0.1:%d", peers_port);
	atomic_init(&d->stop, false);
	if (lookup(d, err) < 0) {
		mf_demo_free(d);
		return NULL;
	}
	/* a file that does not parse is as good as none: users whose
	 * passwords it held are made again */
	d->saved = json_load_file(d->path, 0, NULL);
	return d;
}

/* ---- the API, blocking, on the seeding thread ---- */

static size_t on_data(char *ptr, size_t size, size_t n, void *arg)
{
	mf_buf_t *b = arg;

	if (b->len + size * n > MAX_ANSWER || mf_buf_add(b, ptr, size * n) < 0)
		return 0;
	return size * n;
}

/* Lets a stop interrupt a call in flight. */
static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t e)
{
	mf_demo_t *d = arg;

	(void)a, (void)b, (void)c, (void)e;
	return atomic_load(&d->stop) ? 1 : 0;
}

/* One call: the HTTP status (-1: no answer, err says why); *out the
 * answer's JSON (new reference; NULL when none).  body is borrowed. */
static long call(mf_demo_t *d, const char *method, const char *path, const json_t *body, const char *idem,
		 json_t **out, mf_err_t *err)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdr = NULL, *more;
	mf_buf_t b = MF_BUF_INIT;
	char *url = NULL, *text = NULL, line[4200];
	long status = -1;
	CURLcode cc;

	*out = NULL;
	if (h == NULL || asprintf(&url, "%s%s", d->base_url, path) < 0 ||
	    (body && (text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	if (d->token[0]) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", d->token);
		hdr = curl_slist_append(hdr, line);
		sodium_memzero(line, sizeof(line));
	}
	if (idem) {
		snprintf(line, sizeof(line), "Idempotency-Key: %s", idem);
		more = curl_slist_append(hdr, line);
		hdr = more ? more : hdr;
	}
	if (text) {
		more = curl_slist_append(hdr, "Content-Type: application/json");
		hdr = more ? more : hdr;
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, d);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		mf_err_set(err, 502, "call_failed", "%s %s: %s", method, path, curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (b.len > 0)
		*out = json_loadb(b.data, b.len, 0, NULL);
	if (status >= 300) {
		const char *detail = json_string_value(json_object_get(*out, "detail"));

		mf_err_set(err, (int)status, "call_failed", "%s %s answered %ld: %.300s", method, path, status,
			   detail ? detail : "");
	}
out:
	if (text) {
		sodium_memzero(text, strlen(text));	/* may hold a password */
		free(text);
	}
	free(url);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	mf_buf_free(&b);
	return status;
}

/* A call that must answer one of the wanted statuses (0-terminated). */
static int want(mf_demo_t *d, const char *method, const char *path, const json_t *body, const char *idem,
		json_t **out, mf_err_t *err, ...)
{
	json_t *o = NULL;
	long st = call(d, method, path, body, idem, &o, err);
	va_list ap;
	int w;

	va_start(ap, err);
	while ((w = va_arg(ap, int)) != 0 && w != st)
		;
	va_end(ap);
	if (w == 0) {
		if (st >= 0 && st < 300)
			mf_err_set(err, 502, "unexpected", "%s %s answered %ld", method, path, st);
		json_decref(o);
		return -1;
	}
	if (out)
		*out = o;
	else
		json_decref(o);
	return 0;
}

static int get_token(mf_demo_t *d, mf_err_t *err)
{
	json_t *body = json_pack("{s:s,s:s,s:s}", "grant_type", "client_credentials", "client_id", d->admin_id,
				 "client_secret", d->admin_secret), *out = NULL;
	const char *t;
	int rc;

	d->token[0] = '\0';
	rc = body ? want(d, "POST", "/oauth/token", body, NULL, &out, err, 200, 0) : -1;
	json_decref(body);
	t = json_string_value(json_object_get(out, "access_token"));
	if (rc == 0 && (t == NULL || strlen(t) >= sizeof(d->token)))
		rc = mf_err_set(err, 502, "unexpected", "the token endpoint answered no usable token");
	if (rc == 0)
		snprintf(d->token, sizeof(d->token), "%s", t);
	json_decref(out);
	return rc;
}

/* GET path's "document"; PUT want when it differs (so a restart adds no
 * version or audit row).  want is borrowed. */
static int ensure_doc(mf_demo_t *d, const char *path, const json_t *wanted, mf_err_t *err)
{
	json_t *cur = NULL;
	int rc = want(d, "GET", path, NULL, NULL, &cur, err, 200, 0);

	if (rc == 0 && !json_equal(json_object_get(cur, "document"), (json_t *)wanted))
		rc = want(d, "PUT", path, wanted, NULL, NULL, err, 200, 201, 0);
	json_decref(cur);
	return rc;
}

/* ---- the steps ---- */

/* Private egress and AI are governed from the platform down
 * (docs/policies.md): Contoso can only have them if the platform allows
 * them too.  The platform's own document is kept; only these fields are
 * set in it. */
static int platform_policy(mf_demo_t *d, mf_err_t *err)
{
	char path[128];
	json_t *cur = NULL, *doc, *eg, *ai, *hosts;
	int rc;

	snprintf(path, sizeof(path), "/v1/tenants/%s/policy", d->platform_id);
	if (want(d, "GET", path, NULL, NULL, &cur, err, 200, 0) < 0)
		return -1;
	doc = json_deep_copy(json_object_get(cur, "document"));
	json_decref(cur);
	if (!json_is_object(doc)) {
		json_decref(doc);
		doc = json_object();
	}
	eg = json_object_get(doc, "egress");
	if (!json_is_object(eg))
		json_object_set_new(doc, "egress", (eg = json_object()));
	hosts = json_object_get(eg, "allow_hosts");
	if (!json_is_array(hosts))
		json_object_set_new(eg, "allow_hosts", (hosts = json_array()));
	{
		size_t i;
		json_t *h;
		bool listed = false;

		json_array_foreach(hosts, i, h)
			listed = listed || (json_is_string(h) && strcmp(json_string_value(h), "localhost") == 0);
		if (!listed)
			json_array_append_new(hosts, json_string("localhost"));
	}
	json_object_set_new(eg, "allow_private", json_true());
	ai = json_object_get(doc, "ai");
	if (!json_is_object(ai))
		json_object_set_new(doc, "ai", (ai = json_object()));
	json_object_set_new(ai, "enabled", json_true());
	json_object_set_new(ai, "require_human_approval", json_false());
	rc = ensure_doc(d, path, doc, err);
	json_decref(doc);
	return rc;
}

/* The msp or the client: found before the start, or made now. */
static int tenant(mf_demo_t *d, enum owner at, mf_err_t *err)
{
	char *id = at == AT_MSP ? d->msp_id : d->client_id, path[128];
	json_t *body, *out = NULL;
	int rc;

	if (id[0])
		return 0;
	if (at == AT_MSP) {
		snprintf(path, sizeof(path), "/v1/tenants");
		body = json_pack("{s:s,s:s,s:s}", "kind", "msp", "name", MSP_NAME, "slug", MSP_SLUG);
	} else {
		snprintf(path, sizeof(path), "/v1/tenants/%s/clients", d->msp_id);
		body = json_pack("{s:s,s:s}", "name", CLIENT_NAME, "slug", CLIENT_SLUG);
	}
	rc = body ? want(d, "POST", path, body, NULL, &out, err, 201, 0) : -1;
	json_decref(body);
	if (rc == 0 && json_string_length(json_object_get(out, "id")) == 36)
		snprintf(id, 37, "%s", json_string_value(json_object_get(out, "id")));
	else if (rc == 0)
		rc = mf_err_set(err, 502, "unexpected", "POST %s answered no tenant id", path);
	json_decref(out);
	if (rc == 0)
		mf_info("demo", "tenant created", MF_S("tenant_id", id), MF_S("slug", at == AT_MSP ? MSP_SLUG : CLIENT_SLUG));
	return rc;
}

static int branding(mf_demo_t *d, mf_err_t *err)
{
	char path[128];
	json_t *b = json_pack("{s:s,s:s,s:s}", "display_name", MSP_NAME, "primary_color", "#0B6E4F", "support_email",
			      "support@northwind.example");
	int rc;

	snprintf(path, sizeof(path), "/v1/tenants/%s/branding", d->msp_id);
	rc = b ? ensure_doc(d, path, b, err) : -1;
	json_decref(b);
	return rc;
}

/* Claimed, then vouched for by the platform admin (no DNS for
 * *.localhost); both answer 200 when already done. */
static int domain(mf_demo_t *d, mf_err_t *err)
{
	char path[192];
	json_t *b = json_pack("{s:s}", "domain", CLIENT_DOMAIN);
	int rc;

	snprintf(path, sizeof(path), "/v1/tenants/%s/domains", d->client_id);
	rc = b ? want(d, "POST", path, b, NULL, NULL, err, 200, 201, 0) : -1;
	json_decref(b);
	snprintf(path, sizeof(path), "/v1/tenants/%s/domains/%s/confirm", d->client_id, CLIENT_DOMAIN);
	return rc < 0 ? -1 : want(d, "POST", path, NULL, NULL, NULL, err, 200, 0);
}

/* Loopback egress for this client only: the peers listen on 127.0.0.1. */
static int client_policy(mf_demo_t *d, mf_err_t *err)
{
	char path[128];
	json_t *p = json_pack("{s:{s:[s],s:b},s:{s:b,s:b}}", "egress", "allow_hosts", "localhost", "allow_private", 1,
			      "ai", "enabled", 1, "require_human_approval", 0);
	int rc;

	snprintf(path, sizeof(path), "/v1/tenants/%s/policy", d->client_id);
	rc = p ? ensure_doc(d, path, p, err) : -1;
	json_decref(p);
	return rc;
}

/* PUT at every start: the peers' port is new each time. */
static int connectors_put(mf_demo_t *d, mf_err_t *err)
{
	for (size_t i = 0; i < sizeof(connectors) / sizeof(connectors[0]); i++) {
		char path[160], url[96];
		json_t *b;
		int rc;

		/* "localhost": allow_hosts lists names, never addresses */
		snprintf(url, sizeof(url), "http://localhost:%d/%s%s", d->peers_port, connectors[i],
			 strcmp(connectors[i], "llm") == 0 ? "/v1" : "");
		snprintf(path, sizeof(path), "/v1/tenants/%s/connectors/%s", d->client_id, connectors[i]);
		/* each demo connector is named after the kind of system it reaches */
		b = json_pack("{s:s,s:i,s:s}", "base_url", url, "timeout_ms", 10000, "kind", connectors[i]);
		rc = b ? want(d, "PUT", path, b, NULL, NULL, err, 200, 201, 0) : -1;
		json_decref(b);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static char *saved_password(mf_demo_t *d, const char *key, const char *email)
{
	json_t *u = json_object_get(json_object_get(d->saved, "logins"), key);
	const char *pw = json_string_value(json_object_get(u, "password"));

	const char *was = json_string_value(json_object_get(u, "email"));

	if (pw == NULL || was == NULL || strcmp(was, email) != 0)
		return NULL;
	return strdup(pw);
}

/* 18 random bytes, base64url: 24 characters. */
static char *new_password(void)
{
	unsigned char raw[18];
	char *pw = malloc(sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING));

	randombytes_buf(raw, sizeof(raw));
	if (pw)
		sodium_bin2base64(pw, sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
				  raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	return pw;
}

static void free_password(char *pw)
{
	if (pw)
		sodium_memzero(pw, strlen(pw));
	free(pw);
}

/* The user's id in the listing, or NULL (borrowed from list). */
static const char *user_id(const json_t *list, const char *email)
{
	size_t i;
	json_t *u;

	json_array_foreach(json_object_get(list, "items"), i, u)
		if (json_is_string(json_object_get(u, "email")) &&
		    strcmp(json_string_value(json_object_get(u, "email")), email) == 0)
			return json_string_value(json_object_get(u, "id"));
	return NULL;
}

static int user(mf_demo_t *d, const struct demo_user *u, mf_err_t *err)
{
	const char *tid = u->at == AT_MSP ? d->msp_id : d->client_id, *id;
	char path[192], *pw = saved_password(d, u->key, u->email);
	json_t *list = NULL, *roles = json_array(), *body, *login;
	int rc = -1;

	for (int i = 0; roles && u->roles[i]; i++)
		json_array_append_new(roles, json_string(u->roles[i]));
	snprintf(path, sizeof(path), "/v1/tenants/%s/users?limit=500", tid);
	if (roles == NULL || want(d, "GET", path, NULL, NULL, &list, err, 200, 0) < 0)
		goto out;
	id = user_id(list, u->email);
	if (id && pw == NULL) {
		/* its password is gone with an old demo.json: a new user */
		snprintf(path, sizeof(path), "/v1/tenants/%s/users/%s", tid, id);
		if (want(d, "DELETE", path, NULL, NULL, NULL, err, 200, 204, 0) < 0)
			goto out;
		id = NULL;
	}
	if (id == NULL) {
		if (pw == NULL && (pw = new_password()) == NULL) {
			mf_err_set(err, 500, "out_of_memory", "out of memory");
			goto out;
		}
		snprintf(path, sizeof(path), "/v1/tenants/%s/users", tid);
		body = json_pack("{s:s,s:s,s:s,s:O}", "email", u->email, "name", u->name, "password", pw, "roles", roles);
		rc = body ? want(d, "POST", path, body, NULL, NULL, err, 201, 0) : -1;
		if (body) {
			json_t *p = json_object_get(body, "password");

			/* jansson's copy of the password */
			sodium_memzero((char *)json_string_value(p), json_string_length(p));
		}
		json_decref(body);
		if (rc < 0)
			goto out;
		mf_info("demo", "portal user created", MF_S("tenant_id", tid), MF_S("email", u->email));
	}
	login = json_pack("{s:s,s:s,s:O}", "email", u->email, "password", pw, "roles", roles);
	rc = login ? json_object_set_new(d->logins, u->key, login) : -1;
	if (rc < 0)
		mf_err_set(err, 500, "out_of_memory", "out of memory");
out:
	free_password(pw);
	json_decref(list);
	json_decref(roles);
	return rc;
}

/* The catalog's latest version of a template id (borrowed from cat), or NULL. */
static const char *latest_version(const json_t *cat, const char *id)
{
	size_t i;
	json_t *e;

	json_array_foreach(json_object_get(cat, "items"), i, e)
		if (json_is_string(json_object_get(e, "id")) && strcmp(json_string_value(json_object_get(e, "id")), id) == 0)
			return json_string_value(json_object_get(e, "latest_version"));
	return NULL;
}

static int installs(mf_demo_t *d, mf_err_t *err)
{
	char path[160];
	json_t *list = NULL, *cat = NULL;
	int rc = 0;

	snprintf(path, sizeof(path), "/v1/tenants/%s/installations?limit=500", d->client_id);
	if (want(d, "GET", path, NULL, NULL, &list, err, 200, 0) < 0)
		return -1;
	/* the versions the seed published: the shipped templates' own */
	if (want(d, "GET", "/v1/catalog/templates?limit=500", NULL, NULL, &cat, err, 200, 0) < 0) {
		json_decref(list);
		return -1;
	}
	snprintf(path, sizeof(path), "/v1/tenants/%s/installations", d->client_id);
	for (size_t i = 0; rc == 0 && i < sizeof(demo_installs) / sizeof(demo_installs[0]); i++) {
		const struct demo_install *in = &demo_installs[i];
		char tpl[96];
		bool have = false;
		size_t k;
		json_t *e, *body;

		json_array_foreach(json_object_get(list, "items"), k, e)
			have = have || (json_is_string(json_object_get(e, "workflow")) &&
					strcmp(json_string_value(json_object_get(e, "workflow")), in->name) == 0);
		if (have)
			continue;
		snprintf(tpl, sizeof(tpl), "demo-partner/%s", in->name);
		if (latest_version(cat, tpl) == NULL) {
			rc = mf_err_set(err, 409, "template_not_found", "%s is not in the catalog", tpl);
			break;
		}
		body = json_pack("{s:s,s:s,s:o,s:s}", "template", tpl, "version", latest_version(cat, tpl), "params",
				 json_loads(in->params, 0, NULL), "workflow_name", in->name);
		rc = body ? want(d, "POST", path, body, NULL, NULL, err, 201, 0)
			  : mf_err_set(err, 500, "out_of_memory", "out of memory");
		json_decref(body);
		if (rc == 0)
			mf_info("demo", "template installed", MF_S("tenant_id", d->client_id), MF_S("template", tpl));
	}
	json_decref(list);
	json_decref(cat);
	return rc;
}

/* The won deal, posted once: the run's id comes from demo.json, or from
 * the event intake (a replay of the first event answers its run). */
static int deal_event(mf_demo_t *d, mf_err_t *err)
{
	const json_t *old = json_object_get(d->saved, "deal");
	const char *rid = json_string_value(json_object_get(old, "run_id"));
	const char *eid = json_string_value(json_object_get(old, "event_id"));
	char path[160];
	json_t *body, *out = NULL;
	int rc;

	if (rid && eid && strlen(rid) == 36 && strlen(eid) == 36) {
		snprintf(d->run_id, sizeof(d->run_id), "%s", rid);
		snprintf(d->event_id, sizeof(d->event_id), "%s", eid);
		return 0;
	}
	snprintf(path, sizeof(path), "/v1/tenants/%s/events", d->client_id);
	body = json_pack("{s:s,s:{s:{s:s,s:s,s:i,s:s}}}", "type", "crm.deal.closed_won", "data", "deal", "id", DEAL_ID,
			 "name", "Contoso - Azure migration", "amount", 75000, "currency", "USD");
	rc = body ? want(d, "POST", path, body, DEAL_KEY, &out, err, 202, 0) : -1;
	json_decref(body);
	if (rc == 0) {
		eid = json_string_value(json_object_get(out, "event_id"));
		rid = json_string_value(json_array_get(json_object_get(out, "run_ids"), 0));
		if (eid == NULL || rid == NULL || strlen(rid) != 36)
			rc = mf_err_set(err, 502, "unexpected", "the deal event started no run (is opportunity-to-project "
					"installed?)");
		else {
			snprintf(d->event_id, sizeof(d->event_id), "%s", eid);
			snprintf(d->run_id, sizeof(d->run_id), "%s", rid);
		}
	}
	json_decref(out);
	return rc;
}

/* Until the deal's run stops running: waiting (for the approval) on a
 * first start. */
static void wait_run(mf_demo_t *d)
{
	char path[192];

	snprintf(path, sizeof(path), "/v1/tenants/%s/runs/%s", d->client_id, d->run_id);
	for (int i = 0; i < RUN_WAIT_S * 5 && !atomic_load(&d->stop); i++) {
		mf_err_t err = { 0 };
		json_t *run = NULL;
		const char *st;

		if (call(d, "GET", path, NULL, NULL, &run, &err) == 200 &&
		    (st = json_string_value(json_object_get(run, "state"))) != NULL) {
			snprintf(d->run_state, sizeof(d->run_state), "%s", st);
			if (strcmp(st, "pending") != 0 && strcmp(st, "running") != 0) {
				json_decref(run);
				return;
			}
		}
		json_decref(run);
		usleep(200 * 1000);	/* the seeding thread's own; no loop waits */
	}
}

/* ---- the result: STATE/demo.json and stdout ---- */

static json_t *summary(mf_demo_t *d)
{
	const char *base = d->base_url, *colon = strrchr(base, ':');
	char portal[160], path_form[160], api[160], path_api[160];

	snprintf(portal, sizeof(portal), "http://%s%s/portal/", CLIENT_DOMAIN, colon);
	snprintf(api, sizeof(api), "http://%s%s/portal/v1", CLIENT_DOMAIN, colon);
	snprintf(path_form, sizeof(path_form), "%s/portal/c/%s/", base, CLIENT_SLUG);
	snprintf(path_api, sizeof(path_api), "%s/portal/v1/c/%s", base, CLIENT_SLUG);
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s},s:{s:s,s:s,s:s,s:s},s:O,s:{s:s,s:s,s:s,s:s}}",
			 "portal_url", portal, "portal_path_url", path_form, "portal_api", api, "portal_path_api",
			 path_api, "api_base_url", base, "peers_url", d->peers_url, "msp", "id", d->msp_id, "slug",
			 MSP_SLUG, "name", MSP_NAME, "client", "id", d->client_id, "slug", CLIENT_SLUG, "name",
			 CLIENT_NAME, "domain", CLIENT_DOMAIN, "logins", d->logins, "deal", "id", DEAL_ID, "event_id",
			 d->event_id, "run_id", d->run_id, "state", d->run_state);
}

/* A new file renamed over the old one, mode 0600. */
static int write_file(const char *path, const char *text)
{
	char *tmp = NULL;
	size_t n = strlen(text);
	int fd;
	bool ok;

	if (asprintf(&tmp, "%s.new", path) < 0)
		return -1;
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ok = fd >= 0 && write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1;
	if (fd >= 0 && close(fd) < 0)
		ok = false;
	if (ok && rename(tmp, path) < 0)
		ok = false;
	if (!ok)
		unlink(tmp);
	free(tmp);
	return ok ? 0 : -1;
}

static void print_login(const json_t *logins, const char *key, const char *label)
{
	const json_t *u = json_object_get(logins, key);

	printf("  %-14s %s  password %s\n", label, json_string_value(json_object_get(u, "email")),
	       json_string_value(json_object_get(u, "password")));
}

static int publish(mf_demo_t *d, mf_err_t *err)
{
	json_t *s = summary(d), *line = s ? json_pack("{s:O}", "demo", s) : NULL;
	char *text = s ? json_dumps(s, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	char *one = line ? json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	int rc = 0;

	if (text == NULL || one == NULL)
		rc = mf_err_set(err, 500, "out_of_memory", "out of memory");
	else if (write_file(d->path, text) < 0)
		rc = mf_err_set(err, 500, "io_error", "cannot write %s", d->path);
	if (rc == 0) {
		flockfile(stdout);
		printf("%s\n", one);
		printf("demo: Northwind IT's client Contoso; the run of deal %s is %s%s\n", DEAL_ID,
		       d->run_state[0] ? d->run_state : "not started yet",
		       strcmp(d->run_state, "waiting") == 0 ? " (for the finance approval)" : "");
		printf("  portal         %s  (path form %s)\n", json_string_value(json_object_get(s, "portal_url")),
		       json_string_value(json_object_get(s, "portal_path_url")));
		printf("  portal API     %s  (path form %s)\n", json_string_value(json_object_get(s, "portal_api")),
		       json_string_value(json_object_get(s, "portal_path_api")));
		print_login(d->logins, "client_approver", "approver");
		print_login(d->logins, "client_user", "client user");
		print_login(d->logins, "msp_admin", "msp admin");
		printf("  mock systems   %s  (GET %s/calls lists what they received)\n", d->peers_url, d->peers_url);
		printf("  all of it in   %s\n", d->path);
		fflush(stdout);
		funlockfile(stdout);
	}
	if (text)
		sodium_memzero(text, strlen(text));
	if (one)
		sodium_memzero(one, strlen(one));
	free(text);
	free(one);
	json_decref(line);
	json_decref(s);
	return rc;
}

static int seed(mf_demo_t *d, mf_err_t *err)
{
	size_t i;

	if (get_token(d, err) < 0 || platform_policy(d, err) < 0 || tenant(d, AT_MSP, err) < 0 ||
	    branding(d, err) < 0 || tenant(d, AT_CLIENT, err) < 0 || domain(d, err) < 0 ||
	    client_policy(d, err) < 0 || connectors_put(d, err) < 0)
		return -1;
	for (i = 0; i < sizeof(demo_users) / sizeof(demo_users[0]); i++)
		if (user(d, &demo_users[i], err) < 0)
			return -1;
	if (installs(d, err) < 0 || deal_event(d, err) < 0)
		return -1;
	wait_run(d);
	return publish(d, err);
}

static void *run(void *arg)
{
	mf_demo_t *d = arg;
	mf_err_t err = { 0 };

	if (seed(d, &err) < 0 && !atomic_load(&d->stop)) {
		mf_error("demo", "the demo was not seeded", MF_S("error", err.detail));
		fprintf(stderr, "mspflow: the demo was not seeded: %s\n", err.detail);
	} else if (!atomic_load(&d->stop)) {
		mf_info("demo", "demo ready", MF_S("client_id", d->client_id), MF_S("run_id", d->run_id),
			MF_S("run_state", d->run_state));
	}
	sodium_memzero(d->token, sizeof(d->token));
	return NULL;
}

int mf_demo_start(mf_demo_t *d, const char *base_url, const char *client_id, const char *secret)
{
	d->base_url = strdup(base_url);
	d->admin_id = strdup(client_id);
	d->admin_secret = strdup(secret);
	if (d->base_url == NULL || d->admin_id == NULL || d->admin_secret == NULL)
		return -1;
	if (pthread_create(&d->thread, NULL, run, d) != 0)
		return -1;
	d->started = true;
	return 0;
}

/* Wipes the passwords a logins object holds before it goes. */
static void wipe_logins(json_t *logins)
{
	const char *k;
	json_t *u, *p;

	json_object_foreach(logins, k, u)
		if ((p = json_object_get(u, "password")) != NULL && json_is_string(p))
			sodium_memzero((char *)json_string_value(p), json_string_length(p));
}

void mf_demo_free(mf_demo_t *d)
{
	if (d == NULL)
		return;
	if (d->started) {
		atomic_store(&d->stop, true);
		pthread_join(d->thread, NULL);
	}
	if (d->admin_secret)
		sodium_memzero(d->admin_secret, strlen(d->admin_secret));
	free(d->admin_secret);
	free(d->admin_id);
	free(d->base_url);
	free(d->path);
	wipe_logins(json_object_get(d->saved, "logins"));
	wipe_logins(d->logins);
	json_decref(d->saved);
	json_decref(d->logins);
	free(d);
}
