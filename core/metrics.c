/*
 * metrics.c - see metrics.h.
 */
#include "core/buf.h"
#include "core/metrics.h"

static const double bucket_le[MF_HIST_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void mf_hist_observe(mf_hist_t *h, unsigned long long us)
{
	for (int b = 0; b < MF_HIST_BUCKETS; b++) {
		if ((double)us / 1e6 <= bucket_le[b]) {
			__atomic_fetch_add(&h->bucket[b], 1, __ATOMIC_RELAXED);
			break;
		}
	}
	__atomic_fetch_add(&h->sum_us, us, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
}

int mf_hist_render(mf_buf_t *out, const char *name, const char *labels, const mf_hist_t *h)
{
	unsigned long long cum = 0, count = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
	const char *sep = labels[0] ? "," : "";
	int rc = 0;

	for (int b = 0; b < MF_HIST_BUCKETS; b++) {
		cum += __atomic_load_n(&h->bucket[b], __ATOMIC_RELAXED);
		rc |= mf_buf_addf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bucket_le[b], cum);
	}
	/* +Inf must not be below any bucket, whatever raced */
	if (count < cum)
		count = cum;
	rc |= mf_buf_addf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, count);
	rc |= mf_buf_addf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, sep[0] ? "{" : "", labels,
			  sep[0] ? "}" : "", (double)__atomic_load_n(&h->sum_us, __ATOMIC_RELAXED) / 1e6, name,
			  sep[0] ? "{" : "", labels, sep[0] ? "}" : "", count);
	return rc ? -1 : 0;
}
