/*
 * cx_bench.c - outbound calls per second through the connector layer, on
 * one worker loop, exactly as the engine will make them: cx_call() with the
 * connector and its credential from the tenant's schema and vault (cached
 * after the first call), the auth header, the egress guard on every new
 * connection, the connector's outbound rate limiter, Idempotency-Key and
 * traceparent, and the redacted summary of every call.
 *
 *   mspflow-cxbench CONFIG TENANT_ID CONNECTOR CALLS CONCURRENCY
 *
 * CONFIG is a server config file (database_url, master key, egress_allow).
 * Prints one JSON line: calls, errors, seconds, calls_per_s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <libpq-fe.h>

#include "connectors/connectors.h"
#include "connectors/vault.h"
#include "core/config.h"
#include "core/log.h"
#include "core/masterkey.h"
#include "core/worker.h"
#include "gateway/ratelimit.h"

struct run {
	cx_worker_t *xw;
	cx_http_t *http;		/* raw mode: the transport alone */
	char url[256];
	bool summaries;			/* CXBENCH_SUMMARY=1: build every call's summary */
	cx_call_opts_t opts;
	long started, done, total, errors, warmup;
	struct timespec t0;
	struct event_base *base;
};

static void start_one(struct run *r);

/* The loop as a gateway worker has it (gateway/workers.c): epoll with
 * libevent's change list.  CXBENCH_NO_CHANGELIST=1: without it. */
static struct event_base *worker_base_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	if (!getenv("CXBENCH_NO_CHANGELIST"))
		event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

static void done(const cx_result_t *res, void *arg)
{
	struct run *r = arg;

	if (r->summaries && !r->http)
		json_decref(cx_result_summary(res));	/* what a run timeline would keep */
	if (res->error || res->status != 200) {
		if (r->errors++ < 3)
			fprintf(stderr, "call failed: %d %s %s\n", res->status, res->error ? res->error : "",
				res->detail);
	}
	if (++r->done == r->warmup)
		clock_gettime(CLOCK_MONOTONIC, &r->t0);
	if (r->done == r->total) {
		event_base_loopbreak(r->base);
		return;
	}
	start_one(r);
}

static void raw_done(const cx_http_response_t *res, void *arg)
{
	cx_result_t cr = { .status = res->status, .error = res->error };

	snprintf(cr.detail, sizeof(cr.detail), "%s", res->detail);
	done(&cr, arg);
}

static void start_one(struct run *r)
{
	mf_err_t err;

	if (r->started >= r->total)
		return;
	r->started++;
	if (r->http) {
		cx_http_request_t req = { .method = "GET", .url = r->url };

		if (cx_http_send(r->http, &req, raw_done, r, &err) == NULL) {
			fprintf(stderr, "cx_http_send: %s\n", err.detail);
			exit(1);
		}
		return;
	}
	if (cx_call(r->xw, &r->opts, done, r, &err) == NULL) {
		fprintf(stderr, "cx_call: %s\n", err.detail);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	mf_config_t cfg;
	mf_err_t err;
	mf_worker_t w = { 0 };
	struct run r = { 0 };
	char schema[64] = "";
	struct timespec t1;
	long conc;

	if (argc == 5 && strncmp(argv[1], "http", 4) == 0) {
		/* raw: mspflow-cxbench URL CALLS CONCURRENCY -: the transport alone,
		 * no connector, credential, limiter or summary (for comparison) */
		cx_http_options_t ho = { 0 };
		cx_egress_t *g;
		long conc_raw;

		if (evthread_use_pthreads() < 0 || cx_http_global_init(&err) < 0 ||
		    (g = cx_egress_new("127.0.0.1/32, ::1/128", &err)) == NULL)
			return 1;
		ho.egress = g;
		ho.max_connections = ho.max_host_connections = getenv("CXBENCH_CONNS") ? atoi(getenv("CXBENCH_CONNS")) : 0;
		r.base = worker_base_new();
		r.http = cx_http_new(r.base, &ho, &err);
		snprintf(r.url, sizeof(r.url), "%s", argv[1]);
		r.total = atol(argv[2]);
		conc_raw = atol(argv[3]);
		r.warmup = r.total / 10;
		for (long i = 0; i < conc_raw; i++)
			start_one(&r);
		event_base_dispatch(r.base);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double rs = (double)(t1.tv_sec - r.t0.tv_sec) + (double)(t1.tv_nsec - r.t0.tv_nsec) / 1e9;

		printf("{\"calls\": %ld, \"errors\": %ld, \"seconds\": %.3f, \"calls_per_s\": %.0f}\n",
		       r.total - r.warmup, r.errors, rs, (double)(r.total - r.warmup) / rs);
		cx_http_free(r.http);
		cx_egress_free(g);
		event_base_free(r.base);
		return r.errors ? 1 : 0;
	}
	if (argc != 6) {
		fprintf(stderr, "usage: %s CONFIG TENANT_ID CONNECTOR CALLS CONCURRENCY\n"
			"       %s URL CALLS CONCURRENCY -   (the transport alone)\n", argv[0], argv[0]);
		return 2;
	}
	if (mf_config_init(&cfg) < 0 || mf_config_load(&cfg, argv[1], &err) < 0) {
		fprintf(stderr, "config: %s\n", err.detail);
		return 1;
	}
	mf_log_set_level("warn");
	if (evthread_use_pthreads() < 0 || cx_http_global_init(&err) < 0)
		return 1;
	{
		/* start-up only: the tenant's schema, as the guard would give it */
		PGconn *c = PQconnectdb(cfg.database_url);
		const char *p[1] = { argv[2] };
		PGresult *res = PQexecParams(c, "SELECT schema_name FROM platform.tenants WHERE id = $1::uuid", 1, NULL,
					     p, NULL, NULL, 0);

		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			fprintf(stderr, "no such tenant\n");
			return 1;
		}
		snprintf(schema, sizeof(schema), "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		PQfinish(c);
	}
	mf_master_t *master = mf_master_new(&cfg, &err);
	cx_vault_t *vault = master ? cx_vault_new(&cfg, master, &err) : NULL;
	cx_t *cx = vault ? cx_new(&cfg, vault, &err) : NULL;

	if (cx == NULL) {
		fprintf(stderr, "set-up: %s\n", err.detail);
		return 1;
	}
	w.base = r.base = worker_base_new();
	w.cfg = &cfg;
	mf_pg_options_t po = { .conninfo = cfg.database_url, .size = 2, .connect_timeout_ms = 5000,
			       .query_timeout_ms = 10000, .max_queue = 1024, .retry_after_s = 1 };
	w.pg = mf_pg_pool_new(w.base, &po);
	w.rl = gw_rl_new(w.base, w.pg, 1);
	w.vault = cx_vault_worker_new(vault, w.base, w.pg);
	r.xw = w.cx = cx_worker_new(cx, &w, &err);
	if (r.xw == NULL) {
		fprintf(stderr, "worker: %s\n", err.detail);
		return 1;
	}
	r.summaries = getenv("CXBENCH_SUMMARY") && strcmp(getenv("CXBENCH_SUMMARY"), "1") == 0;
	r.opts.tenant_id = argv[2];
	r.opts.schema = schema;
	r.opts.connector = argv[3];
	r.opts.method = "GET";
	r.opts.path = "/healthz";
	r.total = atol(argv[4]);
	conc = atol(argv[5]);
	r.warmup = r.total / 10;
	for (long i = 0; i < conc; i++)
		start_one(&r);
	event_base_dispatch(w.base);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - r.t0.tv_sec) + (double)(t1.tv_nsec - r.t0.tv_nsec) / 1e9;
	long measured = r.total - r.warmup;

	printf("{\"calls\": %ld, \"errors\": %ld, \"seconds\": %.3f, \"calls_per_s\": %.0f}\n", measured, r.errors,
	       secs, (double)measured / secs);
	cx_worker_free(r.xw);
	cx_vault_worker_free(w.vault);
	gw_rl_free(w.rl);
	mf_pg_pool_free(w.pg);
	event_base_free(w.base);
	cx_free(cx);
	cx_vault_free(vault);
	mf_master_free(master);
	mf_config_free(&cfg);
	return r.errors ? 1 : 0;
}
