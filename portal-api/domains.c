/*
 * domains.c - a client's portal domains (docs/portal.md):
 *
 *   POST   /v1/tenants/{t}/domains {"domain"}          201 the claim and its TXT token (200 if already claimed)
 *   GET    /v1/tenants/{t}/domains                     the claims
 *   DELETE /v1/tenants/{t}/domains/{domain}            204
 *   POST   /v1/tenants/{t}/domains/{domain}/verify     looks the TXT record up; 200 verified, else 409
 *   POST   /v1/tenants/{t}/domains/{domain}/confirm    an msp admin of the client or a platform admin
 *                                                      vouches for the domain instead (no DNS)
 *
 * A portal answers on a domain only once its claim is verified.  A domain
 * is one tenant's: the table's primary key; a deleted tenant's claim goes
 * to the next claimer.  The DNS lookup (res_nquery, blocking) runs on the
 * module's own small thread pool, never on an event loop.
 */
#include <arpa/nameser.h>
#include <ctype.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/offload.h"
#include "core/pg.h"
#include "core/worker.h"
#include "portal-api/pa.h"

#define TXT_PREFIX "portal-verification="
#define TXT_NAME "_portal-verification."
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define DOMAIN_JSON \
	"json_build_object('domain', d.domain, 'tenant_id', d.tenant_id, 'verified', d.verified_at IS NOT NULL, " \
	"'verified_at', " TS("d.verified_at") ", 'created_at', " TS("d.created_at") ", " \
	"'verification', json_build_object('type', 'dns_txt', 'name', '" TXT_NAME "' || d.domain, " \
	"'value', '" TXT_PREFIX "' || d.token))::text"

/* $1 domain, $2 tenant, $3 token, $4 actor: a new claim, or a deleted
 * tenant's taken over; audited in the same statement. */
static const char claim_sql[] =
	"WITH d AS (INSERT INTO platform.portal_domains AS p (domain, tenant_id, token) "
	"  VALUES ($1, $2::uuid, $3) ON CONFLICT (domain) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, "
	"  token = EXCLUDED.token, verified_at = NULL, verified_by = NULL, created_at = now() "
	"  WHERE (SELECT deleted_at FROM platform.tenants WHERE id = p.tenant_id) IS NOT NULL RETURNING *), "
	"a AS (INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail) "
	"  SELECT $2::uuid, $4, 'domain.claim', 'domain:' || domain, '{}'::jsonb FROM d) "
	"SELECT " DOMAIN_JSON " FROM d";

static const char one_sql[] =
	"SELECT " DOMAIN_JSON ", d.token FROM platform.portal_domains d WHERE d.domain = $1 AND d.tenant_id = $2::uuid";

static const char list_sql[] =
	"SELECT " DOMAIN_JSON " FROM platform.portal_domains d WHERE d.tenant_id = $1::uuid ORDER BY d.domain";

/* $1 domain, $2 tenant, $3 actor, $4 how ("dns" or "confirmed") */
static const char verified_sql[] =
	"WITH d AS (UPDATE platform.portal_domains SET verified_at = coalesce(verified_at, now()), "
	"  verified_by = coalesce(verified_by, $3) WHERE domain = $1 AND tenant_id = $2::uuid RETURNING *), "
	"a AS (INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail) "
	"  SELECT $2::uuid, $3, 'domain.verify', 'domain:' || domain, jsonb_build_object('how', $4::text) FROM d) "
	"SELECT " DOMAIN_JSON " FROM d";

static const char delete_sql[] =
	"WITH d AS (DELETE FROM platform.portal_domains WHERE domain = $1 AND tenant_id = $2::uuid RETURNING domain), "
	"a AS (INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail) "
	"  SELECT $2::uuid, $3, 'domain.delete', 'domain:' || domain, '{}'::jsonb FROM d) "
	"SELECT domain FROM d";

typedef struct dom_req {
	tn_call_t *call;
	pa_t *pa;
	char domain[256];
	char token[64];
	bool found;			/* verify: the TXT record holds the token */
	bool dns_failed;
} dom_req_t;

static dom_req_t *dom_new(tn_call_t *call, pa_t *pa, const char *domain)
{
	dom_req_t *d;

	if (call->kind != POL_CLIENT) {
		/* portals are clients': elsewhere the collection does not exist */
		gw_respond_error(call->req, 404, "not_found", "no such tenant");
		return NULL;
	}
	if (domain && !tn_domain_ok(domain)) {
		gw_respond_error(call->req, 404, "not_found", "no such domain");
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		gw_respond_error(call->req, 503, "over_capacity", "out of memory; retry");
		return NULL;
	}
	d->call = call;
	d->pa = pa;
	snprintf(d->domain, sizeof(d->domain), "%s", domain ? domain : "");
	call->data = d;
	call->data_free = free;
	return d;
}

static bool query(dom_req_t *d, const char *sql, int n, const char *const *p, mf_pg_cb cb)
{
	mf_worker_t *w = gw_req_worker_data(d->call->req);

	if (w == NULL || w->pg == NULL || mf_pg_query(w->pg, sql, n, p, cb, d) < 0) {
		gw_respond_error(d->call->req, 503, "database_unavailable", "the database is not reachable");
		return false;
	}
	return true;
}

/* A query's answer names a domain claim: else it answered (the error, or
 * 404) and returns false. */
static bool found(dom_req_t *d, const PGresult *res, const mf_err_t *err)
{
	if (err) {
		gw_respond_problem(d->call->req, err);
		return false;
	}
	if (PQntuples(res) == 0) {
		gw_respond_error(d->call->req, 404, "not_found", "no such domain");
		return false;
	}
	return true;
}

/* Answers the first column of the first row, or 404. */
static void answer_one(const PGresult *res, const mf_err_t *err, void *arg, int status)
{
	dom_req_t *d = arg;

	if (!found(d, res, err))
		return;
	gw_respond_json(d->call->req, status, json_loads(PQgetvalue(res, 0, 0), 0, NULL));
}

/* ---- POST claim ---- */

static void claim_existing(const PGresult *res, const mf_err_t *err, void *arg)
{
	dom_req_t *d = arg;

	if (!err && PQntuples(res) == 0) {
		gw_respond_error(d->call->req, 409, "domain_taken", "the domain %s belongs to another tenant", d->domain);
		return;
	}
	answer_one(res, err, arg, 200);
}

static void claimed(const PGresult *res, const mf_err_t *err, void *arg)
{
	dom_req_t *d = arg;
	const char *p[2] = { d->domain, d->call->tenant_id };

	if (!err && PQntuples(res) == 0) {
		/* taken: by this tenant already (the same claim again), or another */
		query(d, one_sql, 2, p, claim_existing);
		return;
	}
	answer_one(res, err, arg, 201);
}

static void post_domain(tn_call_t *call, void *arg)
{
	json_t *body, *errors = NULL;
	static const char *const keys[] = { "domain", NULL };
	const char *domain;
	unsigned char raw[18];
	char token[32];
	mf_err_t err;
	dom_req_t *d;

	body = gw_req_json(call->req, &err);
	if (body == NULL) {
		gw_respond_problem(call->req, &err);
		return;
	}
	if (tn_only_keys(body, keys, &err, &errors) < 0) {
		json_decref(body);
		gw_respond_problem_ext(call->req, &err, errors ? json_pack("{s:o}", "errors", errors) : NULL);
		return;
	}
	domain = json_string_value(json_object_get(body, "domain"));
	if (!tn_domain_ok(domain) || strlen(domain) != json_string_length(json_object_get(body, "domain"))) {
		json_decref(body);
		mf_err_set(&err, 400, "validation_failed", "/domain: must be a lower-case DNS name");
		gw_respond_problem_ext(call->req, &err, json_pack("{s:[{s:s,s:s}]}", "errors", "path", "/domain",
								  "message", "must be a lower-case DNS name"));
		return;
	}
	if (call->kind != POL_CLIENT) {
		json_decref(body);
		gw_respond_error(call->req, 404, "not_found", "no such tenant");
		return;
	}
	d = dom_new(call, arg, domain);
	json_decref(body);
	if (d == NULL)
		return;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(token, sizeof(token), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	{
		const char *p[4] = { d->domain, call->tenant_id, token, call->actor };

		query(d, claim_sql, 4, p, claimed);
	}
}

/* ---- GET list ---- */

static void listed(const PGresult *res, const mf_err_t *err, void *arg)
{
	dom_req_t *d = arg;
	json_t *items = json_array();

	if (err) {
		json_decref(items);
		gw_respond_problem(d->call->req, err);
		return;
	}
	for (int i = 0; items && i < PQntuples(res); i++)
		json_array_append_new(items, json_loads(PQgetvalue(res, i, 0), 0, NULL));
	gw_respond_json(d->call->req, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

static void list_domains(tn_call_t *call, void *arg)
{
	dom_req_t *d = dom_new(call, arg, NULL);
	const char *p[1] = { call->tenant_id };

	if (d)
		query(d, list_sql, 1, p, listed);
}

/* ---- DELETE ---- */

static void deleted(const PGresult *res, const mf_err_t *err, void *arg)
{
	dom_req_t *d = arg;

	if (!found(d, res, err))
		return;
	gw_respond_raw(d->call->req, 204, NULL, "", 0);
}

static void delete_domain(tn_call_t *call, void *arg)
{
	dom_req_t *d = dom_new(call, arg, gw_req_param(call->req, "domain"));
	const char *p[3];

	if (d == NULL)
		return;
	p[0] = d->domain;
	p[1] = call->tenant_id;
	p[2] = call->actor;
	query(d, delete_sql, 3, p, deleted);
}

/* ---- confirm and verify ---- */

static void verified_answer(const PGresult *res, const mf_err_t *err, void *arg)
{
	answer_one(res, err, arg, 200);
}

static void mark_verified(dom_req_t *d, const char *how)
{
	const char *p[4] = { d->domain, d->call->tenant_id, d->call->actor, how };

	query(d, verified_sql, 4, p, verified_answer);
}

static void confirm_domain(tn_call_t *call, void *arg)
{
	dom_req_t *d = dom_new(call, arg, gw_req_param(call->req, "domain"));

	if (d)
		mark_verified(d, "confirmed");
}

/* On a pool thread: is there a TXT record _portal-verification.<domain>
 * holding portal-verification=<token>?  Blocking, with a short timeout. */
static void dns_work(void *arg)
{
	dom_req_t *d = arg;
	struct __res_state st;
	unsigned char ans[4096];
	char name[300], want[128];
	ns_msg msg;
	int n;

	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) != 0) {
		d->dns_failed = true;
		return;
	}
	st.retrans = 2;
	st.retry = 1;
	snprintf(name, sizeof(name), TXT_NAME "%s", d->domain);
	snprintf(want, sizeof(want), TXT_PREFIX "%s", d->token);
	n = res_nquery(&st, name, ns_c_in, ns_t_txt, ans, sizeof(ans));
	if (n > 0 && ns_initparse(ans, n, &msg) == 0) {
		for (int i = 0; i < ns_msg_count(msg, ns_s_an) && !d->found; i++) {
			ns_rr rr;
			const unsigned char *rd;
			int len;

			if (ns_parserr(&msg, ns_s_an, i, &rr) != 0 || ns_rr_type(rr) != ns_t_txt)
				continue;
			rd = ns_rr_rdata(rr);
			len = ns_rr_rdlen(rr);
			/* character-strings: a length byte, then the text */
			for (int k = 0; k < len && !d->found;) {
				int sl = rd[k];

				if (k + 1 + sl > len)
					break;
				d->found = (size_t)sl == strlen(want) && memcmp(rd + k + 1, want, (size_t)sl) == 0;
				k += 1 + sl;
			}
		}
	}
	res_nclose(&st);
}

static void dns_done(void *arg)
{
	dom_req_t *d = arg;

	if (d->found) {
		mark_verified(d, "dns");
		return;
	}
	gw_respond_error(d->call->req, 409, "domain_not_verified",
			 "no TXT record %s%s holding the verification value was found; publish it and retry",
			 TXT_NAME, d->domain);
}

static void got_token(const PGresult *res, const mf_err_t *err, void *arg)
{
	dom_req_t *d = arg;

	if (!found(d, res, err))
		return;
	snprintf(d->token, sizeof(d->token), "%s", PQgetvalue(res, 0, 1));
	if (mf_offload_submit(d->pa->dns, gw_req_base(d->call->req), dns_work, dns_done, d) < 0)
		gw_respond_error(d->call->req, 503, "over_capacity", "too many verifications at once; retry");
}

static void verify_domain(tn_call_t *call, void *arg)
{
	dom_req_t *d = dom_new(call, arg, gw_req_param(call->req, "domain"));
	const char *p[2];

	if (d == NULL)
		return;
	p[0] = d->domain;
	p[1] = call->tenant_id;
	query(d, one_sql, 2, p, got_token);
}

int pa_domains_routes(pa_t *pa, gw_router_t *api)
{
	tn_t *tn = pa->tn;

	if (pa->dns == NULL && (pa->dns = mf_offload_new(1)) == NULL)
		return -1;
	if (tn_guard_add(api, tn, "POST", "/v1/tenants/{tenant_id}/domains", POL_EDIT, GW_ROUTE_JSON_BODY, post_domain,
			 pa) < 0 ||
	    tn_guard_add(api, tn, "GET", "/v1/tenants/{tenant_id}/domains", POL_READ, 0, list_domains, pa) < 0 ||
	    tn_guard_add(api, tn, "DELETE", "/v1/tenants/{tenant_id}/domains/{domain}", POL_EDIT, 0, delete_domain,
			 pa) < 0 ||
	    tn_guard_add(api, tn, "POST", "/v1/tenants/{tenant_id}/domains/{domain}/verify", POL_EDIT, 0,
			 verify_domain, pa) < 0 ||
	    /* the client's own admin cannot vouch for its domain: its msp or
	     * the platform does, as with suspending it */
	    tn_guard_add(api, tn, "POST", "/v1/tenants/{tenant_id}/domains/{domain}/confirm", POL_LIFECYCLE, 0,
			 confirm_domain, pa) < 0)
		return -1;
	return 0;
}
