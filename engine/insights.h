/*
 * insights.h - the pure half of GET /v1/tenants/{t}/insights
 * (docs/insights.md): turning the per-schema partials that each tenant
 * schema's insights_partial() answers into the route's JSON, and the
 * percentile arithmetic behind it.  No I/O; tests/unit/test_insights.c.
 *
 * A partial is {"counts": {"metric|dim": n}, "dists": {"metric|dim":
 * {"n", "hist": {"bucket": n}, "values": [sorted ms] | null}}}.
 */
#ifndef ENG_INSIGHTS_H
#define ENG_INSIGHTS_H

#include <stddef.h>
#include <jansson.h>

/* A distribution with at most this many values is answered exactly
 * (values fetched from the raw facts); above it, from the histogram. */
#define ENG_INS_EXACT 2000
/* Histogram buckets: 0 is [0, 1) ms, b >= 1 is [2^((b-1)/4), 2^(b/4)) ms. */
#define ENG_INS_BUCKETS 256

/* The bucket of a latency in ms (the SQL insights_bucket); clamped to the last. */
int eng_ins_bucket(double ms);
/* The value a bucket stands for: its geometric middle (0.5 for bucket 0). */
double eng_ins_bucket_mid(int b);
/* percentile_cont(p) of n sorted values (linear interpolation between
 * closest ranks); n must be > 0. */
double eng_ins_pct_sorted(const double *v, size_t n, double p);
/* The p-th percentile read from bucket counts hist[0 .. ENG_INS_BUCKETS)
 * holding n values in all (n > 0): the middle of the bucket holding the
 * value of rank floor(p * (n - 1)). */
double eng_ins_pct_hist(const long long *hist, long long n, double p);

/* An RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM))
 * as seconds since the epoch into *t; -1 when s is not one. */
int eng_ins_parse_time(const char *s, double *t);

/* The answer's metrics (new reference; NULL when out of memory) of the
 * partials parts[0 .. n) taken together (borrowed). */
json_t *eng_ins_report(json_t *const *parts, size_t n);

#endif
