/*
 * test_metrics.c - the /metrics histograms (cumulative buckets, +Inf,
 * sum and count, labels) and the span exporter's behaviour without a
 * network: off without an endpoint, spans queued and bounded, what is
 * left at shutdown counted as dropped, attributes in OTLP's shape.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/metrics.h"
#include "core/otlp.h"
#include "t.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"

static int has(const mf_buf_t *b, const char *line)
{
	return b->data && strstr(b->data, line) != NULL;
}

/* the value after "NAME{LABELS} " in the exporter's counters */
static unsigned long long counter(const char *sample)
{
	mf_buf_t b = MF_BUF_INIT;
	unsigned long long v = ~0ULL;
	const char *p;

	if (mf_otlp_metrics(&b) == 0 && (p = strstr(b.data, sample)) != NULL)
		v = strtoull(p + strlen(sample) + 1, NULL, 10);
	mf_buf_free(&b);
	return v;
}

static void test_histogram(void)
{
	mf_hist_t h = { 0 };
	mf_buf_t b = MF_BUF_INIT;

	mf_hist_observe(&h, 300);		/* 0.3 ms: first bucket */
	mf_hist_observe(&h, 1000);		/* exactly 1 ms: le="0.001" */
	mf_hist_observe(&h, 40000);		/* 40 ms */
	mf_hist_observe(&h, 20000000);		/* 20 s: above the last bucket */
	T_OK(mf_hist_render(&b, "x_seconds", "type=\"http\"", &h) == 0, "a histogram renders");
	T_OK(has(&b, "x_seconds_bucket{type=\"http\",le=\"0.0005\"} 1\n"), "the first bucket");
	T_OK(has(&b, "x_seconds_bucket{type=\"http\",le=\"0.001\"} 2\n"), "an upper bound is inclusive");
	T_OK(has(&b, "x_seconds_bucket{type=\"http\",le=\"0.05\"} 3\n"), "buckets are cumulative");
	T_OK(has(&b, "x_seconds_bucket{type=\"http\",le=\"10\"} 3\n"), "the last finite bucket leaves out 20 s");
	T_OK(has(&b, "x_seconds_bucket{type=\"http\",le=\"+Inf\"} 4\n"), "+Inf counts everything");
	T_OK(has(&b, "x_seconds_sum{type=\"http\"} 20.041300\n"), "sum in seconds");
	T_OK(has(&b, "x_seconds_count{type=\"http\"} 4\n"), "count");
	mf_buf_reset(&b);
	T_OK(mf_hist_render(&b, "y_seconds", "", &(mf_hist_t){ 0 }) == 0, "an empty histogram renders");
	T_OK(has(&b, "y_seconds_bucket{le=\"+Inf\"} 0\n") && has(&b, "y_seconds_sum 0.000000\ny_seconds_count 0\n"),
	     "without labels: no stray comma or braces");
	mf_buf_free(&b);
}

static void test_exporter(void)
{
	mf_config_t cfg;
	struct event_base *base = event_base_new();
	unsigned long long full0, failed0;
	json_t *a;
	mf_otlp_t *o;

	T_OK(base && mf_config_init(&cfg) == 0, "set-up");
	T_OK(mf_otlp_new(base, &cfg) == NULL, "no exporter without otlp_endpoint");
	T_OK(!mf_otlp_enabled(), "a thread without an exporter records nothing");
	mf_otlp_span(TID, "00f067aa0ba902b7", NULL, "x", MF_SPAN_INTERNAL, 1, 2, false, json_array());

	a = json_array();
	mf_otlp_attr_str(a, "k", "v");
	mf_otlp_attr_str(a, "absent", NULL);
	mf_otlp_attr_int(a, "n", 42);
	T_OK(json_array_size(a) == 2, "a NULL value adds no attribute");
	T_STREQ(json_string_value(json_object_get(json_object_get(json_array_get(a, 0), "value"), "stringValue")), "v",
		"a string attribute");
	T_STREQ(json_string_value(json_object_get(json_object_get(json_array_get(a, 1), "value"), "intValue")), "42",
		"an integer attribute is a string in OTLP JSON");
	json_decref(a);

	free(cfg.otlp_endpoint);
	cfg.otlp_endpoint = strdup("http://127.0.0.1:9/");	/* never contacted: the loop does not run */
	cfg.otlp_max_queue = 16;
	o = mf_otlp_new(base, &cfg);
	T_OK(o != NULL, "an exporter with an endpoint");
	mf_otlp_thread_set(o);
	T_OK(mf_otlp_enabled(), "the thread records spans");
	full0 = counter("mspflow_otlp_spans_total{result=\"dropped_queue_full\"}");
	failed0 = counter("mspflow_otlp_spans_total{result=\"dropped_export_failed\"}");
	for (int i = 0; i < 20; i++) {
		a = json_array();
		mf_otlp_attr_int(a, "i", i);
		mf_otlp_span(TID, "00f067aa0ba902b7", "", "x", MF_SPAN_CLIENT, 2, 1, i % 2, a);
	}
	T_OK(counter("mspflow_otlp_spans_total{result=\"dropped_queue_full\"}") == full0 + 4,
	     "beyond otlp_max_queue spans are dropped and counted");
	mf_otlp_free(o);
	T_OK(!mf_otlp_enabled(), "freeing the thread's exporter turns recording off");
	T_OK(counter("mspflow_otlp_spans_total{result=\"dropped_export_failed\"}") == failed0 + 16,
	     "spans still queued at shutdown are counted as dropped");
	mf_config_free(&cfg);
	event_base_free(base);
}

int main(void)
{
	test_histogram();
	test_exporter();
	return t_done();
}
