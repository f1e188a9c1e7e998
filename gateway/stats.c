/*
 * stats.c - per-worker request metrics and their Prometheus rendering.
 *
 * Each worker owns a shard: for every route (and one "unmatched" slot) up
 * to GW_STATUS_SLOTS status codes, each with a counter, a latency sum and
 * a histogram.  Only the owner writes, with relaxed atomic stores; a slot's
 * status is published with a release store after the slot is zeroed, and
 * the scraper reads it with acquire, so /metrics on any thread sees
 * consistent-enough numbers without any lock on the request path.
 */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "gateway/httpd.h"

static const double bucket_le[GW_HIST_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ADD(p, v) __atomic_store_n((p), LOAD(p) + (v), __ATOMIC_RELAXED)

void gw_metrics_record(gw_worker_t *w, bool admin, int route_id, int status, uint64_t us)
{
	const gw_router_t *rt = admin ? w->srv->opt.admin : w->srv->opt.api;
	gw_mroute_t *m = admin ? w->m_admin : w->m_api;
	gw_mslot_t *s = NULL;
	int idx = route_id >= 0 ? route_id : (rt ? rt->n : 0);

	if (m == NULL)
		return;
	for (int i = 0; i < GW_STATUS_SLOTS; i++) {
		gw_mslot_t *x = &m[idx].slot[i];
		int st = __atomic_load_n(&x->status, __ATOMIC_RELAXED);

		if (st == status) {
			s = x;
			break;
		}
		if (st == 0) {
			__atomic_store_n(&x->status, status, __ATOMIC_RELEASE);
			s = x;
			break;
		}
	}
	if (s == NULL)
		return;		/* more distinct statuses than slots: not counted */
	ADD(&s->count, 1);
	ADD(&s->sum_us, us);
	for (int b = 0; b < GW_HIST_BUCKETS; b++) {
		if ((double)us / 1e6 <= bucket_le[b]) {
			ADD(&s->bucket[b], 1);
			break;
		}
	}
}

static int render_router(gw_server_t *srv, bool admin, mf_buf_t *out, bool hist)
{
	const gw_router_t *rt = admin ? srv->opt.admin : srv->opt.api;
	int nroutes = rt ? rt->n : 0;
	int rc = 0;

	for (int r = 0; r <= nroutes; r++) {
		const char *route = r < nroutes ? rt->routes[r].pattern : "unmatched";
		const char *method = r < nroutes ? rt->routes[r].method : "";
		int statuses[64], ns = 0;

		/* distinct statuses seen by any worker for this route */
		for (int wi = 0; wi < srv->nworkers; wi++) {
			gw_mroute_t *m = admin ? srv->workers[wi].m_admin : srv->workers[wi].m_api;

			for (int i = 0; m && i < GW_STATUS_SLOTS; i++) {
				int st = __atomic_load_n(&m[r].slot[i].status, __ATOMIC_ACQUIRE);
				int k;

				if (st == 0)
					break;
				for (k = 0; k < ns && statuses[k] != st; k++)
					;
				if (k == ns && ns < 64)
					statuses[ns++] = st;
			}
		}
		for (int k = 0; k < ns; k++) {
			uint64_t count = 0, sum = 0, buckets[GW_HIST_BUCKETS] = { 0 }, cum = 0;

			for (int wi = 0; wi < srv->nworkers; wi++) {
				gw_mroute_t *m = admin ? srv->workers[wi].m_admin : srv->workers[wi].m_api;

				for (int i = 0; m && i < GW_STATUS_SLOTS; i++) {
					gw_mslot_t *s = &m[r].slot[i];

					if (__atomic_load_n(&s->status, __ATOMIC_ACQUIRE) != statuses[k])
						continue;
					count += LOAD(&s->count);
					sum += LOAD(&s->sum_us);
					for (int b = 0; b < GW_HIST_BUCKETS; b++)
						buckets[b] += LOAD(&s->bucket[b]);
				}
			}
			if (!hist) {
				rc |= mf_buf_addf(out, "mspflow_http_requests_total{listener=\"%s\",route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
						  admin ? "admin" : "api", route, method, statuses[k], (unsigned long long)count);
				continue;
			}
			for (int b = 0; b < GW_HIST_BUCKETS; b++) {
				cum += buckets[b];
				rc |= mf_buf_addf(out, "mspflow_http_request_duration_seconds_bucket{listener=\"%s\",route=\"%s\",status=\"%d\",le=\"%g\"} %llu\n",
						  admin ? "admin" : "api", route, statuses[k], bucket_le[b], (unsigned long long)cum);
			}
			rc |= mf_buf_addf(out, "mspflow_http_request_duration_seconds_bucket{listener=\"%s\",route=\"%s\",status=\"%d\",le=\"+Inf\"} %llu\n"
					  "mspflow_http_request_duration_seconds_sum{listener=\"%s\",route=\"%s\",status=\"%d\"} %.6f\n"
					  "mspflow_http_request_duration_seconds_count{listener=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
					  admin ? "admin" : "api", route, statuses[k], (unsigned long long)count,
					  admin ? "admin" : "api", route, statuses[k], (double)sum / 1e6,
					  admin ? "admin" : "api", route, statuses[k], (unsigned long long)count);
		}
	}
	return rc;
}

int gw_server_metrics(gw_server_t *srv, mf_buf_t *out)
{
	int rc = 0;

	rc |= mf_buf_adds(out, "# HELP mspflow_http_requests_total HTTP requests answered, by route and status.\n"
			       "# TYPE mspflow_http_requests_total counter\n");
	rc |= render_router(srv, false, out, false);
	rc |= render_router(srv, true, out, false);
	rc |= mf_buf_adds(out, "# HELP mspflow_http_request_duration_seconds Time from request head to response queued.\n"
			       "# TYPE mspflow_http_request_duration_seconds histogram\n");
	rc |= render_router(srv, false, out, true);
	rc |= render_router(srv, true, out, true);
	rc |= mf_buf_addf(out,
			  "# HELP mspflow_http_connections_open Client connections open now.\n"
			  "# TYPE mspflow_http_connections_open gauge\nmspflow_http_connections_open %d\n"
			  "# HELP mspflow_http_connections_rejected_total Connections refused over max_connections.\n"
			  "# TYPE mspflow_http_connections_rejected_total counter\nmspflow_http_connections_rejected_total %llu\n"
			  "# HELP mspflow_http_parse_errors_total Requests refused as malformed.\n"
			  "# TYPE mspflow_http_parse_errors_total counter\nmspflow_http_parse_errors_total %llu\n",
			  atomic_load(&srv->nconns), (unsigned long long)atomic_load(&srv->rejected),
			  (unsigned long long)atomic_load(&srv->parse_errors));
	return rc ? -1 : 0;
}
