/*
 * insights.c - merges per-schema partials into the insights answer
 * (insights.h, docs/insights.md).  An msp's answer is the merge of its
 * own schema's partial and each client's; a client's is its own alone,
 * so an msp's per-client breakdown equals what each client reads.
 *
 * A distribution is exact while every partial that has it carried its
 * values and there are at most ENG_INS_EXACT of them in all; otherwise
 * its histograms are summed and percentiles read from buckets (within 9 %).
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/insights.h"

int eng_ins_bucket(double ms)
{
	int b;

	if (!(ms >= 1.0))
		return 0;
	b = (int)floor(log2(ms) * 4) + 1;
	return b >= ENG_INS_BUCKETS ? ENG_INS_BUCKETS - 1 : b;
}

double eng_ins_bucket_mid(int b)
{
	return b <= 0 ? 0.5 : exp2((b - 0.5) / 4.0);
}

double eng_ins_pct_sorted(const double *v, size_t n, double p)
{
	double pos = p * (double)(n - 1);
	size_t lo = (size_t)floor(pos);

	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (v[lo + 1] - v[lo]) * (pos - (double)lo);
}

double eng_ins_pct_hist(const long long *hist, long long n, double p)
{
	long long rank = (long long)floor(p * (double)(n - 1)), seen = 0;

	for (int b = 0; b < ENG_INS_BUCKETS; b++) {
		seen += hist[b];
		if (seen > rank)
			return eng_ins_bucket_mid(b);
	}
	return eng_ins_bucket_mid(ENG_INS_BUCKETS - 1);
}

/* ---- time ---- */

static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm). */
static long long days_from_civil(long long y, int m, int d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int eng_ins_parse_time(const char *s, double *t)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, off = 0;
	double frac = 0, scale = 0.1;
	const char *p;

	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
	    s[16] != ':')
		return -1;
	y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 || mi < 0 || mi > 59 ||
	    sec < 0 || sec > 59)
		return -1;
	if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -1;
	p = s + 19;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -1;
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			if (scale > 1e-10)
				frac += (*p - '0') * scale;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		off = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh = digits(p + 1, 2), om = digits(p + 4, 2);

		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -1;
		off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
	} else {
		return -1;
	}
	*t = (double)(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off) + frac;
	return 0;
}

/* ---- distributions ---- */

typedef struct {
	long long n;
	long long hist[ENG_INS_BUCKETS];
	double *v;		/* the values while exact (owned) */
	size_t nv, cap;
	bool exact;
} dist_t;

static void dist_init(dist_t *d)
{
	memset(d, 0, sizeof(*d));
	d->exact = true;
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Adds a partial's distribution (borrowed); -1 when out of memory. */
static int dist_add(dist_t *d, const json_t *pd)
{
	const json_t *vals = json_object_get(pd, "values"), *x;
	const char *k;
	size_t i;

	d->n += json_integer_value(json_object_get(pd, "n"));
	json_object_foreach((json_t *)json_object_get(pd, "hist"), k, x) {
		long b = strtol(k, NULL, 10);

		if (b >= 0 && b < ENG_INS_BUCKETS)
			d->hist[b] += json_integer_value(x);
	}
	if (!d->exact)
		return 0;
	if (!json_is_array(vals) || d->n > ENG_INS_EXACT) {
		d->exact = false;
		free(d->v);
		d->v = NULL;
		d->nv = d->cap = 0;
		return 0;
	}
	if (d->nv + json_array_size(vals) > d->cap) {
		size_t cap = d->nv + json_array_size(vals) + 64;
		double *nv = realloc(d->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		d->v = nv;
		d->cap = cap;
	}
	json_array_foreach(vals, i, x)
		d->v[d->nv++] = json_number_value(x);
	return 0;
}

static json_t *ms_json(double v)
{
	return json_real(round(v * 1000.0) / 1000.0);
}

/* {"count", "p50", "p90"[, "p99"], "exact"} (new reference); the
 * percentiles null without values.  Sorts d's values. */
static json_t *dist_json(dist_t *d, bool p99)
{
	static const double ps[] = { 0.5, 0.9, 0.99 };
	static const char *const names[] = { "p50", "p90", "p99" };
	/* exact holds only if the values are all there (a partial's raw read
	 * can lag its count by a concurrent commit: then use the buckets) */
	bool exact = d->exact && (long long)d->nv == d->n;
	json_t *o = json_pack("{s:I, s:b}", "count", (json_int_t)d->n, "exact", exact || d->n == 0);

	if (o == NULL)
		return NULL;
	if (exact && d->nv > 1)
		qsort(d->v, d->nv, sizeof(*d->v), dbl_cmp);
	for (int i = 0; i < (p99 ? 3 : 2); i++) {
		json_t *v = d->n <= 0 ? json_null()
			    : exact ? ms_json(eng_ins_pct_sorted(d->v, d->nv, ps[i]))
			    : ms_json(eng_ins_pct_hist(d->hist, d->n, ps[i]));

		if (json_object_set_new(o, names[i], v) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* ---- the merge ---- */

static long long count_of(json_t *const *parts, size_t n, const char *key)
{
	long long s = 0;

	for (size_t i = 0; i < n; i++)
		s += json_integer_value(json_object_get(json_object_get(parts[i], "counts"), key));
	return s;
}

/* The dims of every "prefix|dim" key of section ("counts" or "dists") in
 * any part, as an object {dim: true} (new reference). */
static json_t *dims_of(json_t *const *parts, size_t n, const char *section, const char *prefix)
{
	json_t *out = json_object();
	size_t pl = strlen(prefix);
	const char *k;
	json_t *x;

	for (size_t i = 0; out && i < n; i++)
		json_object_foreach(json_object_get(parts[i], section), k, x)
			if (strncmp(k, prefix, pl) == 0 && k[pl] == '|' &&
			    json_object_set_new(out, k + pl + 1, json_true()) < 0) {
				json_decref(out);
				return NULL;
			}
	return out;
}

/* The distribution "metric|dim" over all parts, as JSON (new reference). */
static json_t *dist_of(json_t *const *parts, size_t n, const char *const *keys, int nkeys, bool p99)
{
	dist_t *d = malloc(sizeof(*d));
	json_t *out = NULL;
	int rc = 0;

	if (d == NULL)
		return NULL;
	dist_init(d);
	for (size_t i = 0; i < n && rc == 0; i++)
		for (int j = 0; j < nkeys && rc == 0; j++) {
			const json_t *pd = json_object_get(json_object_get(parts[i], "dists"), keys[j]);

			if (pd)
				rc = dist_add(d, pd);
		}
	if (rc == 0)
		out = dist_json(d, p99);
	free(d->v);
	free(d);
	return out;
}

static double ratio(long long a, long long b)
{
	return b > 0 ? round((double)a / (double)b * 1e6) / 1e6 : 0.0;
}

static json_t *runs_json(json_t *const *parts, size_t n)
{
	long long dl = 0;
	json_t *codes = dims_of(parts, n, "counts", "dead_letter");
	const char *k;
	json_t *x;
	char key[320];

	if (codes == NULL)
		return NULL;
	json_object_foreach(codes, k, x) {
		snprintf(key, sizeof(key), "dead_letter|%s", k);
		dl += count_of(parts, n, key);
	}
	json_decref(codes);
	return json_pack("{s:I, s:I, s:I, s:I, s:I}", "started", (json_int_t)count_of(parts, n, "started|"),
			 "succeeded", (json_int_t)count_of(parts, n, "cycle|succeeded"), "failed",
			 (json_int_t)count_of(parts, n, "cycle|failed"), "cancelled",
			 (json_int_t)count_of(parts, n, "cycle|cancelled"), "dead_lettered", (json_int_t)dl);
}

static int code_cmp(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "count")), cy = json_integer_value(json_object_get(y, "count"));

	if (cx != cy)
		return cx > cy ? -1 : 1;
	return strcmp(json_string_value(json_object_get(x, "code")), json_string_value(json_object_get(y, "code")));
}

/* [{"code", "count"}] by count, most first (new reference). */
static json_t *exceptions_json(json_t *const *parts, size_t n)
{
	json_t *codes = dims_of(parts, n, "counts", "dead_letter"), *out = json_array(), *x;
	json_t **items = NULL;
	size_t m = 0;
	const char *k;
	char key[320];

	if (codes == NULL || out == NULL || (items = calloc(json_object_size(codes) + 1, sizeof(*items))) == NULL)
		goto fail;
	json_object_foreach(codes, k, x) {
		snprintf(key, sizeof(key), "dead_letter|%s", k);
		if ((items[m] = json_pack("{s:s, s:I}", "code", k, "count", (json_int_t)count_of(parts, n, key))) == NULL)
			goto fail;
		m++;
	}
	qsort(items, m, sizeof(*items), code_cmp);
	for (size_t i = 0; i < m; i++) {
		if (json_array_append_new(out, items[i]) < 0) {
			for (size_t j = i + 1; j < m; j++)
				json_decref(items[j]);
			m = 0;
			goto fail;
		}
	}
	free(items);
	json_decref(codes);
	return out;
fail:
	for (size_t i = 0; items && i < m; i++)
		json_decref(items[i]);
	free(items);
	json_decref(codes);
	json_decref(out);
	return NULL;
}

static json_t *sla_of(json_t *const *parts, size_t n, const char *role)
{
	static const char *const names[] = { "tasks_closed", "sla_breached", "sla_late", "sla_expired", "sla_escalated" };
	static const char *const out_names[] = { "tasks_closed", "breached", "late", "expired", "escalated" };
	long long c[5];
	char key[320];

	for (int i = 0; i < 5; i++) {
		if (role) {
			snprintf(key, sizeof(key), "%s|%s", names[i], role);
			c[i] = count_of(parts, n, key);
		} else {
			json_t *roles = dims_of(parts, n, "counts", names[i]), *x;
			const char *k;

			if (roles == NULL)
				return NULL;
			c[i] = 0;
			json_object_foreach(roles, k, x) {
				snprintf(key, sizeof(key), "%s|%s", names[i], k);
				c[i] += count_of(parts, n, key);
			}
			json_decref(roles);
		}
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", out_names[0], (json_int_t)c[0], out_names[1],
			 (json_int_t)c[1], out_names[2], (json_int_t)c[2], out_names[3], (json_int_t)c[3],
			 out_names[4], (json_int_t)c[4], "breach_rate", ratio(c[1], c[0]));
}

static json_t *ai_json(json_t *const *parts, size_t n)
{
	long long a = count_of(parts, n, "ai|auto"), acc = count_of(parts, n, "ai|accepted"),
		  ed = count_of(parts, n, "ai|edited"), rej = count_of(parts, n, "ai|rejected"),
		  ex = count_of(parts, n, "ai|expired"), all = a + acc + ed + rej + ex, reviewed = acc + ed + rej + ex;

	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "answers", (json_int_t)all, "auto",
			 (json_int_t)a, "accepted", (json_int_t)acc, "edited", (json_int_t)ed, "rejected",
			 (json_int_t)rej, "expired", (json_int_t)ex, "reviewed", (json_int_t)reviewed, "overridden",
			 (json_int_t)(ed + rej), "override_rate", ratio(ed + rej, all), "review_override_rate",
			 ratio(ed + rej, acc + ed + rej));
}

/* {"<role>": {...}} over dims of prefix in dists (or counts), each built by fn. */
static json_t *per_dim(json_t *const *parts, size_t n, const char *section, const char *prefix,
		       json_t *(*fn)(json_t *const *, size_t, const char *))
{
	json_t *dims = dims_of(parts, n, section, prefix), *out = json_object(), *x;
	const char *k;

	if (dims == NULL || out == NULL)
		goto fail;
	json_object_foreach(dims, k, x)
		if (json_object_set_new(out, k, fn(parts, n, k)) < 0)
			goto fail;
	json_decref(dims);
	return out;
fail:
	json_decref(dims);
	json_decref(out);
	return NULL;
}

static json_t *approval_of(json_t *const *parts, size_t n, const char *role)
{
	char key[320];
	const char *keys[1] = { key };

	snprintf(key, sizeof(key), "approval|%s", role);
	return dist_of(parts, n, keys, 1, false);
}

static json_t *connector_of(json_t *const *parts, size_t n, const char *name)
{
	char key[320], ekey[320];
	const char *keys[1] = { key };
	long long calls, errors;
	json_t *lat;

	snprintf(key, sizeof(key), "call|%s", name);
	snprintf(ekey, sizeof(ekey), "call_error|%s", name);
	calls = count_of(parts, n, key);
	errors = count_of(parts, n, ekey);
	if ((lat = dist_of(parts, n, keys, 1, false)) == NULL)
		return NULL;
	json_object_del(lat, "count");
	return json_pack("{s:I, s:I, s:f, s:o}", "calls", (json_int_t)calls, "errors", (json_int_t)errors,
			 "error_rate", ratio(errors, calls), "latency_ms", lat);
}

json_t *eng_ins_report(json_t *const *parts, size_t n)
{
	static const char *const cycle[] = { "cycle|succeeded", "cycle|failed", "cycle|cancelled" };

	/* json_pack's "o" steals even when packing fails: NULLs fail it */
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "runs", runs_json(parts, n), "cycle_time_ms",
			 dist_of(parts, n, cycle, 3, true), "approval_latency_ms",
			 per_dim(parts, n, "dists", "approval", approval_of), "sla",
			 json_pack("{s:o, s:o}", "total", sla_of(parts, n, NULL), "by_role",
				   per_dim(parts, n, "counts", "tasks_closed", sla_of)),
			 "exceptions", exceptions_json(parts, n), "ai", ai_json(parts, n), "connectors",
			 per_dim(parts, n, "counts", "call", connector_of));
}
