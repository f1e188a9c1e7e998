/*
 * otlp.h - spans exported to an OpenTelemetry collector as OTLP/HTTP JSON
 * (POST <otlp_endpoint>/v1/traces), off unless otlp_endpoint is set.
 *
 * Each worker thread owns one exporter (mf_otlp_new on its loop, made the
 * thread's with mf_otlp_thread_set), so the modules that record spans
 * (gateway requests, engine runs and steps, connector calls) need no
 * handle: mf_otlp_span() appends to the calling thread's queue, or does
 * nothing on a thread without one.  The queue is bounded (otlp_max_queue
 * spans); a full queue drops the span.  Every otlp_flush_ms (sooner when a
 * quarter of the queue is waiting) the queue is sent in one POST through a
 * curl multi handle driven by the worker's libevent loop, so the loop
 * never waits on the collector; one POST at a time, never retried: a batch
 * the collector refuses or does not take within its deadline is dropped
 * and counted.  Span ids are W3C trace context ids (core/trace.h).
 *
 * Attributes never carry secrets or bodies; the callers put in ids,
 * methods, routes, statuses and step types only.
 */
#ifndef MF_OTLP_H
#define MF_OTLP_H

#include <stdbool.h>
#include <jansson.h>

#include "core/config.h"

struct event_base;
struct mf_buf;

enum mf_span_kind { MF_SPAN_INTERNAL = 1, MF_SPAN_SERVER = 2, MF_SPAN_CLIENT = 3 };

typedef struct mf_otlp mf_otlp_t;

/* On the worker's thread.  NULL when otlp_endpoint is empty (nothing is
 * recorded) or out of memory (logged).  cfg is borrowed. */
mf_otlp_t *mf_otlp_new(struct event_base *base, const mf_config_t *cfg);
/* Accepts NULL.  Spans still queued or in flight are dropped (counted). */
void mf_otlp_free(mf_otlp_t *o);
/* The exporter mf_otlp_span() uses on this thread (NULL: none). */
void mf_otlp_thread_set(mf_otlp_t *o);
/* True when this thread records spans: callers skip building them otherwise. */
bool mf_otlp_enabled(void);
/* The wall clock in nanoseconds since the Unix epoch. */
unsigned long long mf_otlp_now_ns(void);

/* Records a finished span on this thread's exporter.  trace_id: 32 hex;
 * span_id, parent_id: 16 hex (parent_id NULL or "" = a root span).
 * error: status ERROR, else OK.  attrs: an array built with
 * mf_otlp_attr_*, stolen (may be NULL).  Without an exporter it only
 * frees attrs. */
void mf_otlp_span(const char *trace_id, const char *span_id, const char *parent_id, const char *name,
		  enum mf_span_kind kind, unsigned long long start_ns, unsigned long long end_ns, bool error,
		  json_t *attrs);
/* OTLP KeyValue entries appended to an array (NULL-safe: an attrs of NULL
 * or a NULL value adds nothing). */
void mf_otlp_attr_str(json_t *attrs, const char *key, const char *value);
void mf_otlp_attr_int(json_t *attrs, const char *key, long long value);

/* Prometheus text of the exporters' counters (all threads). */
int mf_otlp_metrics(struct mf_buf *out) __attribute__((warn_unused_result));

#endif
