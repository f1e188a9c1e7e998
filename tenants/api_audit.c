/*
 * api_audit.c - GET /v1/tenants/{tenant_id}/audit: a tenant's audit log,
 * in chain order (docs/audit.md).
 *
 * Every entry is answered with what its hash covers (seq, at with
 * microseconds, actor, action, target, detail) and prev_hash / hash, so a
 * reader can recompute the chain from the pages alone; an entry the
 * chainer has not linked yet (within a second of its commit, normally)
 * comes after the chain with seq, prev_hash and hash null.  The page key
 * is the last chained seq and the last unchained id handed out; filters
 * narrow the entries, never the chain: a filtered page simply skips
 * entries.  Reading needs POL_AUDIT (the tenant's admins, its msp's
 * admins for a client, platform admins); outside reach it is 404 like any
 * other tenant route.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/urlenc.h"
#include "tenants/tn.h"

/* The entries' JSON: exactly what the hash covers, and the links (null
 * while the entry is not chained). */
#define ITEM "json_build_object('seq', a.seq, " \
	"'at', to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), " \
	"'actor', a.actor, 'action', a.action, 'target', a.target, 'detail', a.detail, " \
	"'prev_hash', encode(a.prev_hash, 'hex'), 'hash', encode(a.hash, 'hex'))::text"
#define FILTERS "AND ($3::text IS NULL OR a.action = $3) AND ($4::text IS NULL OR a.actor = $4) " \
	"AND ($5::timestamptz IS NULL OR a.at >= $5::timestamptz) " \
	"AND ($6::timestamptz IS NULL OR a.at < $6::timestamptz) "

/* $1 tenant, the cursor ($2 the last chained seq delivered, $8 the last
 * unchained id delivered, 0 for none), $3 action, $4 actor, $5 from, $6 to
 * (NULL: no filter), $7 limit + 1.  Chained entries by seq (the partial
 * (tenant_id, seq) index), then unchained ones by id (the partial
 * unchained index), read in one snapshot so that no entry is both.  Once a
 * reader has been handed unchained entries, the entries chained since with
 * an id at or below the last of them are not handed again (a.id > $8): they
 * are the ones it has seen unchained, or late commits an id-ordered walk
 * had passed anyway.  Each row carries the cursor that continues after it:
 * "S" or "S.I". */
static const char list_sql[] =
	"SELECT CASE WHEN x.part = 1 THEN coalesce(max(x.k) FILTER (WHERE x.part = 0) "
	"OVER (ORDER BY x.part, x.k), $2::bigint) || '.' || x.k "
	"WHEN $8::bigint = 0 THEN x.k::text ELSE x.k || '.' || $8::bigint END, x.j FROM ("
	"(SELECT 0 AS part, a.seq AS k, " ITEM " AS j FROM platform.audit_events a "
	"WHERE a.tenant_id = $1::uuid AND a.seq > $2::bigint AND a.id > $8::bigint " FILTERS
	"ORDER BY a.seq LIMIT $7::int) UNION ALL "
	"(SELECT 1, a.id, " ITEM " FROM platform.audit_events a "
	"WHERE a.tenant_id = $1::uuid AND a.hash IS NULL AND a.id > $8::bigint " FILTERS
	"ORDER BY a.id LIMIT $7::int)) x ORDER BY x.part, x.k LIMIT $7::int";

/* A cursor this route issued: "S" or "S.I", each 1 to 18 digits. */
static bool cursor_parse(const char *c, char seq[24], char id[24])
{
	size_t a = strspn(c, "0123456789"), b;

	if (a == 0 || a > 18)
		return false;
	snprintf(seq, 24, "%.*s", (int)a, c);
	if (c[a] == '\0') {
		snprintf(id, 24, "0");
		return true;
	}
	b = strspn(c + a + 1, "0123456789");
	if (c[a] != '.' || b == 0 || b > 18 || c[a + 1 + b] != '\0')
		return false;
	snprintf(id, 24, "%s", c + a + 1);
	return true;
}

/* RFC 3339 date-time (CONTRACT 2): YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM);
 * PostgreSQL then reads it exactly.  The shape only: a 31st of February is
 * the database's to refuse (400 too, see listed). */
static bool rfc3339_ok(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	size_t i;

	for (i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
			return false;
	if (s[i] == '.') {
		size_t j = ++i;

		while (s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == j || i - j > 9)
			return false;
	}
	if (s[i] == 'Z')
		return s[i + 1] == '\0';
	return (s[i] == '+' || s[i] == '-') && s[i + 1] >= '0' && s[i + 1] <= '9' && s[i + 2] >= '0' &&
	       s[i + 2] <= '9' && s[i + 3] == ':' && s[i + 4] >= '0' && s[i + 4] <= '9' && s[i + 5] >= '0' &&
	       s[i + 5] <= '9' && s[i + 6] == '\0';
}

static void listed(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_ctx_t *ctx = arg;
	json_t *items, *page;
	int n, limit = ctx->limit;

	/* from / to of the right shape but no real time (2024-02-31) */
	if (err && (strcmp(err->sqlstate, "22008") == 0 || strcmp(err->sqlstate, "22007") == 0)) {
		tn_invalid(ctx, "/from", "from and to must be RFC 3339 date-times");
		return;
	}
	if (tn_failed(ctx, err))
		return;
	items = json_array();
	n = PQntuples(res);
	for (int i = 0; items && i < n && i < limit; i++)
		if (json_array_append_new(items, json_loads(PQgetvalue(res, i, 1), 0, NULL)) < 0) {
			json_decref(items);
			items = NULL;
		}
	page = items ? json_pack("{s:o,s:o}", "items", items, "next_cursor",
				 tn_page_cursor(n > limit ? PQgetvalue(res, limit - 1, 0) : NULL)) : NULL;
	if (page == NULL)
		gw_respond_error(ctx->req, 503, "over_capacity", "out of memory; retry");
	else
		gw_respond_json(ctx->req, 200, page);
}

static void list_audit(tn_ctx_t *ctx)
{
	static const char *const names[4] = { "action", "actor", "from", "to" };
	const char *q = gw_req_query(ctx->req);
	char cursor[64], lim[16], f[4][256], seq[24], id[24];
	const char *p[8] = { ctx->target.id, seq, NULL, NULL, NULL, NULL, lim, id };
	mf_err_t err;

	if (tn_req_page(ctx->req, &ctx->limit, cursor, &err) < 0) {
		gw_respond_problem(ctx->req, &err);
		return;
	}
	if (!cursor_parse(cursor[0] ? cursor : "0", seq, id)) {
		gw_respond_error(ctx->req, 400, "validation_failed", "cursor is not one this server issued");
		return;
	}
	for (int i = 0; i < 4; i++) {
		char path[16];
		int rc = mf_form_get(q, q ? strlen(q) : 0, names[i], f[i], sizeof(f[i]));

		snprintf(path, sizeof(path), "/%s", names[i]);
		if (rc < 0 || (rc > 0 && f[i][0] == '\0')) {
			tn_invalid(ctx, path, "must be a non-empty value of at most 255 bytes");
			return;
		}
		if (rc > 0 && i >= 2 && !rfc3339_ok(f[i])) {
			tn_invalid(ctx, path, "must be an RFC 3339 date-time, e.g. 2024-05-01T00:00:00Z");
			return;
		}
		p[2 + i] = rc > 0 ? f[i] : NULL;
	}
	snprintf(lim, sizeof(lim), "%d", ctx->limit + 1);
	tn_q(ctx, list_sql, 8, p, listed);
}

int tn_audit_routes(tn_t *tn, gw_router_t *api)
{
	return tn_route(api, tn, "GET", "/v1/tenants/{tenant_id}/audit", POL_AUDIT, 0, list_audit);
}
