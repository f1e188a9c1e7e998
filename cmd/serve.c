/*
 * serve.c - the composition root (see serve.h): operations routes, the
 * per-worker PostgreSQL pools, and the gateway's run loop.
 *
 * Operations routes live here rather than in gateway/ because readiness
 * depends on the database and the migrations, which the gateway does not
 * know about.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "catalog/catalog.h"
#include "portal-api/portal.h"
#include "cmd/serve.h"
#include "connectors/connectors.h"
#include "connectors/vault.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/masterkey.h"
#include "core/migrate.h"
#include "core/otlp.h"
#include "core/pg.h"
#include "core/worker.h"
#include "engine/engine.h"
#include "gateway/ratelimit.h"
#include "gateway/route.h"
#include "tenants/tenants.h"

#define MAX_WORKERS 256

/* Workers publish themselves here (release) so /metrics, running on any
 * worker, can read their pools' counters (acquire, then relaxed loads). */
static _Atomic(mf_worker_t *) workers[MAX_WORKERS];

static const char healthz_body[] = "{\"status\":\"ok\"}";

static void handle_healthz(gw_req_t *req, void *arg)
{
	gw_respond_raw(req, 200, "application/json", healthz_body, sizeof(healthz_body) - 1);
}

static void readyz_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	gw_req_t *req = arg;
	static const char ready[] = "{\"status\":\"ready\"}";

	if (err && strcmp(err->sqlstate, "42P01") != 0) {
		gw_respond_problem(req, err);
		return;
	}
	/* 42P01: no platform.schema_migrations yet, i.e. never migrated */
	if (err || PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		gw_respond_error(req, 503, "migrations_pending",
				 "the database schema is not at the version this binary expects; run mspflow migrate");
		return;
	}
	gw_respond_raw(req, 200, "application/json", ready, sizeof(ready) - 1);
}

static void handle_readyz(gw_req_t *req, void *arg)
{
	mf_worker_t *w = gw_req_worker_data(req);
	char version[16];
	const char *params[1] = { version };

	if (w == NULL || w->pg == NULL) {
		gw_respond_error(req, 503, "database_unavailable", "no database is configured");
		return;
	}
	snprintf(version, sizeof(version), "%d", mf_migration_set_latest(&mf_migrations_platform));
	if (mf_pg_query(w->pg, mf_migrate_ready_sql, 1, params, readyz_done, req) < 0)
		gw_respond_error(req, 503, "database_unavailable", "the database is not reachable");
}

static int add_identity_metrics(mf_buf_t *out)
{
	tn_stats_t sum = { 0 };
	gw_rl_stats_t rsum = { 0 };

	for (int i = 0; i < MAX_WORKERS; i++) {
		mf_worker_t *w = atomic_load_explicit(&workers[i], memory_order_acquire);
		tn_stats_t s;
		gw_rl_stats_t r;

		if (w == NULL)
			continue;
		if (w->tn) {
			tn_worker_stats(w->tn, &s);
			sum.verified += s.verified;
			sum.cached += s.cached;
			sum.refused += s.refused;
			sum.ip_limited += s.ip_limited;
			sum.rate_limited += s.rate_limited;
		}
		if (w->rl) {
			gw_rl_stats(w->rl, &r);
			rsum.admitted += r.admitted;
			rsum.rejected += r.rejected;
			rsum.leases += r.leases;
			rsum.lease_failures += r.lease_failures;
		}
	}
	return mf_buf_addf(out,
		"# HELP mspflow_auth_tokens_total Bearer tokens by outcome of the guard.\n"
		"# TYPE mspflow_auth_tokens_total counter\n"
		"mspflow_auth_tokens_total{outcome=\"verified\"} %llu\n"
		"mspflow_auth_tokens_total{outcome=\"cached\"} %llu\n"
		"mspflow_auth_tokens_total{outcome=\"refused\"} %llu\n"
		"mspflow_auth_tokens_total{outcome=\"ip_limited\"} %llu\n"
		"# HELP mspflow_rate_limited_total Calls refused by a tenant or API-client limit.\n"
		"# TYPE mspflow_rate_limited_total counter\nmspflow_rate_limited_total %llu\n"
		"# HELP mspflow_ratelimit_decisions_total Window limiter decisions.\n"
		"# TYPE mspflow_ratelimit_decisions_total counter\n"
		"mspflow_ratelimit_decisions_total{outcome=\"admit\"} %llu\n"
		"mspflow_ratelimit_decisions_total{outcome=\"reject\"} %llu\n"
		"# HELP mspflow_ratelimit_leases_total Budget leases asked of PostgreSQL, and those that failed.\n"
		"# TYPE mspflow_ratelimit_leases_total counter\n"
		"mspflow_ratelimit_leases_total{result=\"sent\"} %llu\n"
		"mspflow_ratelimit_leases_total{result=\"failed\"} %llu\n",
		sum.verified, sum.cached, sum.refused, sum.ip_limited, sum.rate_limited,
		rsum.admitted, rsum.rejected, rsum.leases, rsum.lease_failures);
}

static int add_pg_metrics(mf_buf_t *out)
{
	mf_pg_stats_t sum = { 0 };
	int rc = 0;

	for (int i = 0; i < MAX_WORKERS; i++) {
		mf_worker_t *w = atomic_load_explicit(&workers[i], memory_order_acquire);
		mf_pg_stats_t s;

		if (w == NULL || w->pg == NULL)
			continue;
		mf_pg_pool_stats(w->pg, &s);
		sum.queries += s.queries;
		sum.errors += s.errors;
		sum.reconnects += s.reconnects;
		sum.unavailable += s.unavailable;
		sum.open += s.open;
		sum.busy += s.busy;
		sum.queued += s.queued;
	}
	rc |= mf_buf_addf(out,
		"# HELP mspflow_db_queries_total Statements sent to PostgreSQL.\n"
		"# TYPE mspflow_db_queries_total counter\nmspflow_db_queries_total %llu\n"
		"# HELP mspflow_db_errors_total Statements that failed.\n"
		"# TYPE mspflow_db_errors_total counter\nmspflow_db_errors_total %llu\n"
		"# HELP mspflow_db_reconnects_total Connections re-established after a failure.\n"
		"# TYPE mspflow_db_reconnects_total counter\nmspflow_db_reconnects_total %llu\n"
		"# HELP mspflow_db_unavailable_total Statements refused because no connection was up.\n"
		"# TYPE mspflow_db_unavailable_total counter\nmspflow_db_unavailable_total %llu\n"
		"# HELP mspflow_db_connections Pool connections by state.\n"
		"# TYPE mspflow_db_connections gauge\n"
		"mspflow_db_connections{state=\"open\"} %d\nmspflow_db_connections{state=\"busy\"} %d\n"
		"# HELP mspflow_db_queue_length Statements waiting for a connection.\n"
		"# TYPE mspflow_db_queue_length gauge\nmspflow_db_queue_length %d\n",
		sum.queries, sum.errors, sum.reconnects, sum.unavailable, sum.open, sum.busy, sum.queued);
	return rc;
}

static int add_vault_metrics(mf_buf_t *out)
{
	cx_vault_stats_t sum = { 0 };

	for (int i = 0; i < MAX_WORKERS; i++) {
		mf_worker_t *w = atomic_load_explicit(&workers[i], memory_order_acquire);
		cx_vault_stats_t s;

		if (w == NULL || w->vault == NULL)
			continue;
		cx_vault_worker_stats(w->vault, &s);
		sum.opened += s.opened;
		sum.failed += s.failed;
		sum.cache_hits += s.cache_hits;
		sum.cache_misses += s.cache_misses;
	}
	return mf_buf_addf(out,
		"# HELP mspflow_vault_opens_total Credentials opened for connectors, by outcome.\n"
		"# TYPE mspflow_vault_opens_total counter\n"
		"mspflow_vault_opens_total{outcome=\"opened\"} %llu\n"
		"mspflow_vault_opens_total{outcome=\"failed\"} %llu\n"
		"# HELP mspflow_vault_data_key_cache_total Tenant data key lookups in the workers' caches.\n"
		"# TYPE mspflow_vault_data_key_cache_total counter\n"
		"mspflow_vault_data_key_cache_total{result=\"hit\"} %llu\n"
		"mspflow_vault_data_key_cache_total{result=\"miss\"} %llu\n",
		sum.opened, sum.failed, sum.cache_hits, sum.cache_misses);
}

static int add_connector_metrics(mf_buf_t *out)
{
	cx_stats_t sum = { 0 };

	for (int i = 0; i < MAX_WORKERS; i++) {
		mf_worker_t *w = atomic_load_explicit(&workers[i], memory_order_acquire);
		cx_stats_t s;

		if (w == NULL || w->cx == NULL)
			continue;
		cx_worker_stats(w->cx, &s);
		sum.calls += s.calls;
		sum.failures += s.failures;
		sum.retries += s.retries;
		sum.token_fetches += s.token_fetches;
		sum.held += s.held;
		sum.http.calls += s.http.calls;
		sum.http.egress_refused += s.http.egress_refused;
		sum.http.connections_opened += s.http.connections_opened;
		sum.http.active += s.http.active;
	}
	return mf_buf_addf(out,
		"# HELP mspflow_connector_calls_total Calls through connectors, and those that ended in an error.\n"
		"# TYPE mspflow_connector_calls_total counter\n"
		"mspflow_connector_calls_total{result=\"all\"} %llu\n"
		"mspflow_connector_calls_total{result=\"error\"} %llu\n"
		"# HELP mspflow_connector_retries_total Attempts repeated after 429/503 or a failed connect.\n"
		"# TYPE mspflow_connector_retries_total counter\nmspflow_connector_retries_total %llu\n"
		"# HELP mspflow_connector_oauth_fetches_total OAuth2 access tokens fetched for connectors.\n"
		"# TYPE mspflow_connector_oauth_fetches_total counter\nmspflow_connector_oauth_fetches_total %llu\n"
		"# HELP mspflow_connector_held_total Calls that waited out a peer's Retry-After.\n"
		"# TYPE mspflow_connector_held_total counter\nmspflow_connector_held_total %llu\n"
		"# HELP mspflow_outbound_requests_total Outbound HTTP requests sent (token requests and redirects included).\n"
		"# TYPE mspflow_outbound_requests_total counter\nmspflow_outbound_requests_total %llu\n"
		"# HELP mspflow_outbound_egress_refused_total Outbound connections the egress guard refused.\n"
		"# TYPE mspflow_outbound_egress_refused_total counter\nmspflow_outbound_egress_refused_total %llu\n"
		"# HELP mspflow_outbound_connections_opened_total Outbound sockets opened.\n"
		"# TYPE mspflow_outbound_connections_opened_total counter\nmspflow_outbound_connections_opened_total %llu\n"
		"# HELP mspflow_outbound_active Outbound requests running or queued now.\n"
		"# TYPE mspflow_outbound_active gauge\nmspflow_outbound_active %d\n",
		sum.calls, sum.failures, sum.retries, sum.token_fetches, sum.held, sum.http.calls,
		sum.http.egress_refused, sum.http.connections_opened, sum.http.active);
}

static int add_engine_metrics(mf_buf_t *out)
{
	eng_stats_t sum = { 0 };

	for (int i = 0; i < MAX_WORKERS; i++) {
		mf_worker_t *w = atomic_load_explicit(&workers[i], memory_order_acquire);
		eng_stats_t s;

		if (w == NULL || w->eng == NULL)
			continue;
		eng_worker_stats(w->eng, &s);
		sum.claims += s.claims;
		sum.claimed += s.claimed;
		sum.applied += s.applied;
		sum.lost_leases += s.lost_leases;
		sum.steps += s.steps;
		sum.runs_finished += s.runs_finished;
		sum.runs_failed += s.runs_failed;
		sum.retries += s.retries;
		sum.calls += s.calls;
		sum.ai_auto += s.ai_auto;
		sum.ai_review += s.ai_review;
		sum.ai_invalid += s.ai_invalid;
		sum.in_memory += s.in_memory;
		sum.wh_delivered += s.wh_delivered;
		sum.wh_retrying += s.wh_retrying;
		sum.wh_failed += s.wh_failed;
		sum.wh_in_flight += s.wh_in_flight;
	}
	return mf_buf_addf(out,
		"# HELP mspflow_engine_claims_total Claims sent to the run queue, and the runs they took.\n"
		"# TYPE mspflow_engine_claims_total counter\n"
		"mspflow_engine_claims_total %llu\n"
		"# HELP mspflow_engine_claimed_runs_total Runs taken from the queue.\n"
		"# TYPE mspflow_engine_claimed_runs_total counter\nmspflow_engine_claimed_runs_total %llu\n"
		"# HELP mspflow_engine_applied_total Run changes written (one per run and apply).\n"
		"# TYPE mspflow_engine_applied_total counter\nmspflow_engine_applied_total %llu\n"
		"# HELP mspflow_engine_lost_leases_total Run changes dropped because the lease had passed to another worker or the run was cancelled.\n"
		"# TYPE mspflow_engine_lost_leases_total counter\nmspflow_engine_lost_leases_total %llu\n"
		"# HELP mspflow_engine_steps_total Steps executed.\n"
		"# TYPE mspflow_engine_steps_total counter\nmspflow_engine_steps_total %llu\n"
		"# HELP mspflow_engine_runs_finished_total Runs that ended, by outcome.\n"
		"# TYPE mspflow_engine_runs_finished_total counter\n"
		"mspflow_engine_runs_finished_total{state=\"succeeded\"} %llu\n"
		"mspflow_engine_runs_finished_total{state=\"failed\"} %llu\n"
		"# HELP mspflow_engine_retries_total Step attempts scheduled again after a failure.\n"
		"# TYPE mspflow_engine_retries_total counter\nmspflow_engine_retries_total %llu\n"
		"# HELP mspflow_engine_calls_total HTTP step calls completed.\n"
		"# TYPE mspflow_engine_calls_total counter\nmspflow_engine_calls_total %llu\n"
		"# HELP mspflow_engine_ai_answers_total Valid AI step answers, by what governance made of them "
		"(auto: flowed on; review: sent to a human).\n"
		"# TYPE mspflow_engine_ai_answers_total counter\n"
		"mspflow_engine_ai_answers_total{governance=\"auto\"} %llu\n"
		"mspflow_engine_ai_answers_total{governance=\"review\"} %llu\n"
		"# HELP mspflow_engine_ai_invalid_answers_total AI step answers that failed the task's schema.\n"
		"# TYPE mspflow_engine_ai_invalid_answers_total counter\nmspflow_engine_ai_invalid_answers_total %llu\n"
		"# HELP mspflow_engine_runs_in_memory Runs the workers hold now.\n"
		"# TYPE mspflow_engine_runs_in_memory gauge\nmspflow_engine_runs_in_memory %d\n"
		"# HELP mspflow_webhook_attempts_total Outbound webhook delivery attempts, by outcome (retrying: failed, "
		"another attempt scheduled; failed: attempts exhausted).\n"
		"# TYPE mspflow_webhook_attempts_total counter\n"
		"mspflow_webhook_attempts_total{outcome=\"delivered\"} %llu\n"
		"mspflow_webhook_attempts_total{outcome=\"retrying\"} %llu\n"
		"mspflow_webhook_attempts_total{outcome=\"failed\"} %llu\n"
		"# HELP mspflow_webhook_deliveries_in_memory Deliveries the workers hold now.\n"
		"# TYPE mspflow_webhook_deliveries_in_memory gauge\nmspflow_webhook_deliveries_in_memory %d\n",
		sum.claims, sum.claimed, sum.applied, sum.lost_leases, sum.steps, sum.runs_finished, sum.runs_failed,
		sum.retries, sum.calls, sum.ai_auto, sum.ai_review, sum.ai_invalid, sum.in_memory, sum.wh_delivered, sum.wh_retrying, sum.wh_failed,
		sum.wh_in_flight);
}

static void handle_metrics(gw_req_t *req, void *arg)
{
	mf_buf_t out = MF_BUF_INIT;

	if (gw_server_metrics(gw_req_server(req), &out) < 0 || add_pg_metrics(&out) < 0 ||
	    add_identity_metrics(&out) < 0 || add_vault_metrics(&out) < 0 || add_connector_metrics(&out) < 0 ||
	    add_engine_metrics(&out) < 0 || eng_metrics_render(&out) < 0 || cx_metrics_render(&out) < 0 ||
	    mf_otlp_metrics(&out) < 0) {
		mf_buf_free(&out);
		gw_respond_error(req, 500, "internal_error", "metrics unavailable");
		return;
	}
	gw_respond_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
	mf_buf_free(&out);
}

struct serve_ctx {
	const mf_config_t *cfg;
	tn_t *tn;
	mf_master_t *master;
	cx_vault_t *vault;
	cx_t *cx;
	eng_t *eng;
	const mf_serve_hooks_t *hooks;
	pa_t *pa;
};

static void on_serving(gw_server_t *srv, void *arg)
{
	struct serve_ctx *sc = arg;

	if (sc->hooks && sc->hooks->on_serving)
		sc->hooks->on_serving(gw_server_port(srv, false), sc->hooks->arg);
}

static void *worker_init(int index, struct event_base *base, void *arg)
{
	struct serve_ctx *sc = arg;
	const mf_config_t *cfg = sc->cfg;
	mf_worker_t *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->index = index;
	w->base = base;
	w->cfg = cfg;
	/* first, so every module's spans on this thread find it */
	w->otlp = mf_otlp_new(base, cfg);
	mf_otlp_thread_set(w->otlp);
	if (cfg->database_url[0]) {
		mf_pg_options_t po = {
			.conninfo = cfg->database_url,
			.size = cfg->db_pool_size,
			.connect_timeout_ms = cfg->db_connect_timeout_ms,
			.query_timeout_ms = cfg->db_query_timeout_ms,
			.max_queue = 1024,
			.retry_after_s = cfg->db_retry_after_s,
		};

		w->pg = mf_pg_pool_new(base, &po);
		if (w->pg == NULL)
			mf_error("serve", "cannot create the database pool", MF_I("worker", index));
	}
	/* sharers: the worker count as gw_server_new resolves it (0 = one per core) */
	w->rl = gw_rl_new(base, w->pg, cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN));
	if (w->rl == NULL)
		mf_error("serve", "cannot create the rate limiter", MF_I("worker", index));
	if (sc->tn) {
		w->tn = tn_worker_new(sc->tn, w);
		if (w->tn == NULL)
			mf_error("serve", "cannot create the identity state", MF_I("worker", index));
	}
	if (sc->vault) {
		w->vault = cx_vault_worker_new(sc->vault, base, w->pg);
		if (w->vault == NULL)
			mf_error("serve", "cannot create the vault state", MF_I("worker", index));
	}
	if (sc->cx && w->pg && w->rl && w->vault) {
		mf_err_t err;

		w->cx = cx_worker_new(sc->cx, w, &err);
		if (w->cx == NULL)
			mf_error("serve", "cannot create the connector state", MF_I("worker", index),
				 MF_S("error", err.detail));
	}
	if (sc->eng && w->pg) {
		mf_err_t err;
		bool run = cfg->engine_enabled || (sc->hooks && sc->hooks->worker_only);

		w->eng = eng_worker_new(sc->eng, w, run, &err);
		if (w->eng == NULL)
			mf_error("serve", "cannot create the engine state", MF_I("worker", index),
				 MF_S("error", err.detail));
	}
	w->pa = sc->pa;
	if (index < MAX_WORKERS)
		atomic_store_explicit(&workers[index], w, memory_order_release);
	return w;
}

static void worker_fini(void *data)
{
	mf_worker_t *w = data;

	if (w == NULL)
		return;
	if (w->index < MAX_WORKERS)
		atomic_store_explicit(&workers[w->index], NULL, memory_order_release);
	/* calls in flight end first ("shutting_down"); a call still waiting
	 * for the limiter is freed when gw_rl_free answers it */
	eng_worker_close(w->eng);	/* no new claims; its calls are cancelled */
	pa_worker_fini(w->pa);	/* its DNS lookups in flight end */
	cx_worker_free(w->cx);
	gw_rl_free(w->rl);	/* answers its waiters; leases still in the pool are detached */
	/* then the pool: its pending callbacks still find the identity state
	 * they belong to */
	mf_pg_pool_free(w->pg);
	eng_worker_free(w->eng);
	tn_worker_free(w->tn);
	cx_vault_worker_free(w->vault);
	mf_otlp_free(w->otlp);
	free(w);
}

static int add_ops_routes(gw_router_t *r, bool with_metrics)
{
	if (gw_router_add(r, "GET", "/healthz", handle_healthz, NULL, 0) < 0 ||
	    gw_router_add(r, "GET", "/readyz", handle_readyz, NULL, 0) < 0)
		return -1;
	if (with_metrics && gw_router_add(r, "GET", "/metrics", handle_metrics, NULL, 0) < 0)
		return -1;
	return 0;
}

struct print_ctx {
	FILE *out;
	const char *listener;
};

static void print_route(const gw_route_t *rt, void *arg)
{
	struct print_ctx *p = arg;

	fprintf(p->out, "%s %s %s\n", p->listener, rt->method, rt->pattern);
}

int mf_serve_print_routes(FILE *out)
{
	gw_router_t *api = gw_router_new(), *admin = gw_router_new();
	struct print_ctx a = { out, "api" }, b = { out, "admin" };
	int rc = -1;

	mf_config_t cfg;
	tn_t *tn = NULL;
	cx_vault_t *vault = NULL;
	cx_t *cx = NULL;
	eng_t *eng = NULL;
	pa_t *pa = NULL;

	if (mf_config_init(&cfg) < 0)
		return -1;
	tn = tn_new(&cfg, NULL, NULL);
	vault = cx_vault_new(&cfg, NULL, NULL);
	cx = vault ? cx_new(&cfg, vault, NULL) : NULL;
	eng = eng_new(&cfg, NULL);
	pa = tn && eng ? pa_new(tn, eng, NULL) : NULL;
	if (api && admin && tn && vault && cx && eng && pa && add_ops_routes(api, false) == 0 &&
	    add_ops_routes(admin, true) == 0 && tn_routes_add(tn, api) == 0 && cx_vault_routes(vault, tn, api) == 0 &&
	    cx_routes_add(cx, tn, api) == 0 && eng_routes_add(eng, tn, api) == 0 && cat_routes_add(tn, api) == 0 &&
	    pa_routes_add(pa, api) == 0) {
		gw_router_each(api, print_route, &a);
		gw_router_each(admin, print_route, &b);
		rc = 0;
	}
	gw_router_free(api);
	gw_router_free(admin);
	pa_free(pa);
	tn_free(tn);
	cx_free(cx);
	cx_vault_free(vault);
	eng_free(eng);
	mf_config_free(&cfg);
	return rc;
}

/* Start-up, blocking and before any loop: the first signing key and the
 * ring every worker starts from.  A database that is down now is not
 * fatal: the gateway comes up, /readyz says 503, and the workers load the
 * ring on their next refresh. */
static void prepare_keys(const mf_config_t *cfg, tn_t *tn, mf_master_t *m)
{
	mf_master_ring_t *master = mf_master_get(m);
	mf_err_t err;
	PGconn *c;

	if (!cfg->database_url[0]) {
		mf_master_ring_unref(master);
		return;
	}
	if (master == NULL) {
		mf_warn("serve", "no master key: this instance cannot sign tokens nor open the vault",
			MF_S("error", "set master_key_file or MSPFLOW_MASTER_KEY (mspflow keygen makes one)"));
		return;
	}
	/* a session advisory lock: not through a transaction-mode pooler */
	c = PQconnectdb(mf_config_direct_url(cfg));
	if (PQstatus(c) != CONNECTION_OK) {
		mf_warn("serve", "database unreachable at start; the key ring loads later");
	} else if (tn_keys_ensure(c, master, &err) < 0 || tn_keys_seed(tn, c, &err) < 0) {
		mf_warn("serve", "cannot prepare the signing keys (run mspflow migrate?)", MF_S("error", err.detail));
	}
	PQfinish(c);
	mf_master_ring_unref(master);
}

int mf_serve(const mf_config_t *cfg, const mf_serve_hooks_t *hooks, mf_err_t *err)
{
	gw_router_t *api = gw_router_new(), *admin = gw_router_new();
	gw_server_t *srv = NULL;
	struct serve_ctx sc = { cfg, NULL, NULL, NULL, NULL, NULL, hooks };
	bool worker_only = hooks && hooks->worker_only;
	int rc = -1;

	if (api == NULL || admin == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	sc.master = mf_master_new(cfg, err);
	if (sc.master == NULL)
		goto out;
	sc.tn = tn_new(cfg, sc.master, err);
	if (sc.tn == NULL)
		goto out;
	sc.vault = cx_vault_new(cfg, sc.master, err);
	if (sc.vault == NULL)
		goto out;
	sc.cx = cx_new(cfg, sc.vault, err);
	if (sc.cx == NULL)
		goto out;
	sc.eng = eng_new(cfg, err);
	if (sc.eng == NULL)
		goto out;
	sc.pa = pa_new(sc.tn, sc.eng, err);
	if (sc.pa == NULL)
		goto out;
	prepare_keys(cfg, sc.tn, sc.master);
	if (add_ops_routes(api, false) < 0 || add_ops_routes(admin, true) < 0 ||
	    (!worker_only && (tn_routes_add(sc.tn, api) < 0 || cx_vault_routes(sc.vault, sc.tn, api) < 0 ||
			      cx_routes_add(sc.cx, sc.tn, api) < 0 || eng_routes_add(sc.eng, sc.tn, api) < 0 ||
			      cat_routes_add(sc.tn, api) < 0 || pa_routes_add(sc.pa, api) < 0)) ||
	    (hooks && hooks->routes && hooks->routes(api, admin, hooks->arg) < 0)) {
		mf_err_set(err, 500, "internal_error", "cannot build the routes");
		goto out;
	}
	gw_options_t opt = {
		.cfg = cfg, .api = api, .admin = admin,
		.worker_init = worker_init, .worker_fini = worker_fini, .on_serving = on_serving, .arg = &sc,
	};
	srv = gw_server_new(&opt, err);
	if (srv == NULL)
		goto out;
	rc = gw_server_run(srv, err);
out:
	gw_server_free(srv);
	gw_router_free(api);
	gw_router_free(admin);
	pa_free(sc.pa);
	tn_free(sc.tn);
	cx_free(sc.cx);
	cx_vault_free(sc.vault);
	eng_free(sc.eng);
	mf_master_free(sc.master);
	return rc;
}
