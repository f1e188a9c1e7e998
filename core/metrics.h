/*
 * metrics.h - fixed-bucket latency histograms for /metrics, shared by the
 * modules that export one (engine, connectors).
 *
 * A histogram is a plain struct of counters updated with relaxed atomic
 * adds, so any thread may observe into one without a lock and /metrics may
 * read it from another thread at any time (the numbers are approximate
 * while they move: a bucket may be ahead of the count by an observation).
 * The buckets are the gateway's (gateway/stats.c): 0.5 ms to 10 s.
 */
#ifndef MF_METRICS_H
#define MF_METRICS_H

struct mf_buf;

#define MF_HIST_BUCKETS 14

typedef struct mf_hist {
	unsigned long long bucket[MF_HIST_BUCKETS];	/* not cumulative */
	unsigned long long count, sum_us;
} mf_hist_t;

/* Adds one observation of us microseconds (any thread). */
void mf_hist_observe(mf_hist_t *h, unsigned long long us);
/* Appends NAME_bucket{LABELS,le=...}, NAME_sum and NAME_count lines.
 * labels: "" or label pairs without braces, e.g. "type=\"http\"" (the
 * caller's constant text, never client input).  Returns 0 or -1. */
int mf_hist_render(struct mf_buf *out, const char *name, const char *labels, const mf_hist_t *h)
	__attribute__((warn_unused_result));

#endif
