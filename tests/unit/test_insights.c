/*
 * test_insights.c - the insights merge and percentile arithmetic
 * (engine/insights.c): percentile_cont, histogram buckets and their
 * error bound, RFC 3339 parsing, and merging partials.
 */
#include <math.h>
#include <string.h>

#include "engine/insights.h"
#include "t.h"

static void test_pct_sorted_is_percentile_cont(void)
{
	double v[] = { 10, 20, 30, 40, 50, 60 };

	T_OK(eng_ins_pct_sorted(v, 6, 0.5) == 35, "eng_ins_pct_sorted(v, 6, 0.5) == 35");
	T_OK(eng_ins_pct_sorted(v, 6, 0.9) == 55, "eng_ins_pct_sorted(v, 6, 0.9) == 55");
	T_OK(fabs(eng_ins_pct_sorted(v, 6, 0.99) - 59.5) < 1e-9, "fabs(eng_ins_pct_sorted(v, 6, 0.99) - 59.5) < 1e-9");
	T_OK(eng_ins_pct_sorted(v, 1, 0.99) == 10, "eng_ins_pct_sorted(v, 1, 0.99) == 10");
	T_OK(eng_ins_pct_sorted(v, 6, 0) == 10, "eng_ins_pct_sorted(v, 6, 0) == 10");
	T_OK(eng_ins_pct_sorted(v, 6, 1) == 60, "eng_ins_pct_sorted(v, 6, 1) == 60");
}

static void test_buckets_bound_the_error(void)
{
	T_OK(eng_ins_bucket(0) == 0, "eng_ins_bucket(0) == 0");
	T_OK(eng_ins_bucket(0.99) == 0, "eng_ins_bucket(0.99) == 0");
	T_OK(eng_ins_bucket(1) == 1, "eng_ins_bucket(1) == 1");
	T_OK(eng_ins_bucket(2) == 5, "eng_ins_bucket(2) == 5");
	T_OK(eng_ins_bucket(1e300) == ENG_INS_BUCKETS - 1, "eng_ins_bucket(1e300) == ENG_INS_BUCKETS - 1");
	{
		double worst = 0;

		for (double ms = 1; ms < 1e10; ms *= 1.01) {
			double mid = eng_ins_bucket_mid(eng_ins_bucket(ms));

			if (fabs(mid - ms) / ms > worst)
				worst = fabs(mid - ms) / ms;
		}
		T_OK(worst < 0.091, "a bucket's middle is within 9 % of every value in it");
	}
}


static void test_pct_hist_reads_the_rank_bucket(void)
{
	long long h[ENG_INS_BUCKETS] = { 0 };

	h[eng_ins_bucket(100)] = 50;
	h[eng_ins_bucket(1000)] = 49;
	h[eng_ins_bucket(100000)] = 1;
	T_OK(fabs(eng_ins_pct_hist(h, 100, 0.51) - 1000) / 1000 < 0.091, "rank 50 of 0..99 is in the second bucket");
	T_OK(fabs(eng_ins_pct_hist(h, 100, 0.5) - 100) / 100 < 0.091, "rank 49 of 0..99 is in the first bucket");
	T_OK(fabs(eng_ins_pct_hist(h, 100, 0.99) - 1000) / 1000 < 0.091, "fabs(eng_ins_pct_hist(h, 100, 0.99) - 1000) / 1000 < 0.091");
	T_OK(fabs(eng_ins_pct_hist(h, 100, 1.0) - 100000) / 100000 < 0.091, "fabs(eng_ins_pct_hist(h, 100, 1.0) - 100000) / 100000 < 0.091");
}

static void test_rfc3339(void)
{
	double t;

	T_OK(eng_ins_parse_time("1970-01-01T00:00:00Z", &t) == 0 && t == 0, "eng_ins_parse_time(\"1970-01-01T00:00:00Z\", &t) == 0 && t == 0");
	T_OK(eng_ins_parse_time("2024-03-10T00:00:00Z", &t) == 0 && t == 1710028800, "eng_ins_parse_time(\"2024-03-10T00:00:00Z\", &t) == 0 && t == 17100288");
	T_OK(eng_ins_parse_time("2024-03-10T02:00:00+02:00", &t) == 0 && t == 1710028800, "eng_ins_parse_time(\"2024-03-10T02:00:00+02:00\", &t) == 0 && t == 171");
	T_OK(eng_ins_parse_time("2024-03-09T23:00:00.5-01:00", &t) == 0 && t == 1710028800.5, "eng_ins_parse_time(\"2024-03-09T23:00:00.5-01:00\", &t) == 0 && t == 1");
	T_OK(eng_ins_parse_time("2024-02-29T00:00:00z", &t) == 0, "eng_ins_parse_time(\"2024-02-29T00:00:00z\", &t) == 0");
	T_OK(eng_ins_parse_time("2023-02-29T00:00:00Z", &t) < 0, "eng_ins_parse_time(\"2023-02-29T00:00:00Z\", &t) < 0");
	T_OK(eng_ins_parse_time("2024-04-31T00:00:00Z", &t) < 0, "eng_ins_parse_time(\"2024-04-31T00:00:00Z\", &t) < 0");
	T_OK(eng_ins_parse_time("2024-03-10T24:00:00Z", &t) < 0, "eng_ins_parse_time(\"2024-03-10T24:00:00Z\", &t) < 0");
	T_OK(eng_ins_parse_time("2024-03-10T00:00:00", &t) < 0, "eng_ins_parse_time(\"2024-03-10T00:00:00\", &t) < 0");
	T_OK(eng_ins_parse_time("2024-03-10 00:00:00Z", &t) < 0, "eng_ins_parse_time(\"2024-03-10 00:00:00Z\", &t) < 0");
	T_OK(eng_ins_parse_time("2024-03-10T00:00:00.Z", &t) < 0, "eng_ins_parse_time(\"2024-03-10T00:00:00.Z\", &t) < 0");
	T_OK(eng_ins_parse_time("2024-03-10T00:00:00+0200", &t) < 0, "eng_ins_parse_time(\"2024-03-10T00:00:00+0200\", &t) < 0");
	T_OK(eng_ins_parse_time("2024-03-10T00:00:00Zjunk", &t) < 0, "eng_ins_parse_time(\"2024-03-10T00:00:00Zjunk\", &t) < 0");
	T_OK(eng_ins_parse_time("", &t) < 0, "eng_ins_parse_time(\"\", &t) < 0");
}

static void test_merge_exact_then_hist(void)
{
	json_t *a = json_loads("{\"counts\": {\"started|\": 3, \"cycle|succeeded\": 2, \"cycle|failed\": 1,"
			       "\"dead_letter|timeout\": 2, \"dead_letter|http_status\": 2, \"dead_letter|bad\": 1,"
			       "\"ai|auto\": 3, \"ai|edited\": 1, \"call|crm\": 4, \"call_error|crm\": 1,"
			       "\"tasks_closed|fin\": 2, \"sla_breached|fin\": 1, \"sla_late|fin\": 1},"
			       "\"dists\": {\"cycle|succeeded\": {\"n\": 2, \"hist\": {\"14\": 2}, \"values\": [10, 30]},"
			       "\"cycle|failed\": {\"n\": 1, \"hist\": {\"14\": 1}, \"values\": [20]},"
			       "\"call|crm\": {\"n\": 4, \"hist\": {\"27\": 4}, \"values\": [100, 100, 110, 120]}}}",
			       0, NULL);
	json_t *b = json_loads("{\"counts\": {\"started|\": 1, \"cycle|succeeded\": 1},"
			       "\"dists\": {\"cycle|succeeded\": {\"n\": 1, \"hist\": {\"50\": 1}, \"values\": null}}}",
			       0, NULL);
	json_t *parts[2] = { a, b }, *r, *c;

	T_OK(a && b, "a && b");
	r = eng_ins_report(parts, 1);
	T_OK(r != NULL, "r != NULL");
	T_OK(json_integer_value(json_object_get(json_object_get(r, "runs"), "dead_lettered")) == 5, "json_integer_value(json_object_get(json_object_get(r, \"runs\"), \"dea");
	c = json_object_get(r, "cycle_time_ms");
	T_OK(json_is_true(json_object_get(c, "exact")) && json_real_value(json_object_get(c, "p50")) == 20, "json_is_true(json_object_get(c, \"exact\")) && json_real_value(json_ob");
	c = json_object_get(r, "exceptions");
	T_OK(json_array_size(c) == 3, "json_array_size(c) == 3");
	T_OK(strcmp(json_string_value(json_object_get(json_array_get(c, 0), "code")), "http_status") == 0, "the most frequent code first");
	T_OK(strcmp(json_string_value(json_object_get(json_array_get(c, 2), "code")), "bad") == 0, "the rarest code last");
	c = json_object_get(r, "ai");
	T_OK(json_real_value(json_object_get(c, "override_rate")) == 0.25, "json_real_value(json_object_get(c, \"override_rate\")) == 0.25");
	c = json_object_get(json_object_get(r, "connectors"), "crm");
	T_OK(json_real_value(json_object_get(c, "error_rate")) == 0.25, "json_real_value(json_object_get(c, \"error_rate\")) == 0.25");
	T_OK(json_real_value(json_object_get(json_object_get(c, "latency_ms"), "p50")) == 105, "json_real_value(json_object_get(json_object_get(c, \"latency_ms\"), \"");
	c = json_object_get(json_object_get(json_object_get(r, "sla"), "by_role"), "fin");
	T_OK(json_real_value(json_object_get(c, "breach_rate")) == 0.5, "json_real_value(json_object_get(c, \"breach_rate\")) == 0.5");
	json_decref(r);
	/* with b (no values): the histogram answers, inexact */
	r = eng_ins_report(parts, 2);
	T_OK(r != NULL, "r != NULL");
	c = json_object_get(r, "cycle_time_ms");
	T_OK(json_integer_value(json_object_get(c, "count")) == 4, "json_integer_value(json_object_get(c, \"count\")) == 4");
	T_OK(json_is_false(json_object_get(c, "exact")), "json_is_false(json_object_get(c, \"exact\"))");
	T_OK(fabs(json_real_value(json_object_get(c, "p50")) - eng_ins_bucket_mid(14)) < 0.001, "fabs(json_real_value(json_object_get(c, \"p50\")) - eng_ins_bucket_mid");
	T_OK(json_integer_value(json_object_get(json_object_get(r, "runs"), "started")) == 4, "json_integer_value(json_object_get(json_object_get(r, \"runs\"), \"sta");
	json_decref(r);
	json_decref(a);
	json_decref(b);
}

int main(void)
{
	test_pct_sorted_is_percentile_cont();
	test_buckets_bound_the_error();
	test_pct_hist_reads_the_rank_bucket();
	test_rfc3339();
	test_merge_exact_then_hist();
	return t_done();
}
