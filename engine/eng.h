/*
 * eng.h - private to engine/: the process and worker state, and the
 * pieces the engine's files share.
 *
 *   runner.c     claims, leases, advancing runs, batched applies
 *   listen.c     the LISTEN connection that wakes a worker
 *   start.c      runs an event starts (pure)
 *   api_*.c      workflows, runs, tasks and events routes
 *   hooks.c      inbound webhooks (Standard Webhooks verification)
 *   outbox.c     outbound webhook subscriptions and their deliveries
 */
#ifndef ENG_ENG_H
#define ENG_ENG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <jansson.h>

#include "engine/engine.h"

struct event_base;
struct mf_worker;

/* The NOTIFY channel of due work (eng_enqueue). */
#define ENG_CHANNEL "mspflow_engine"

struct eng {
	const mf_config_t *cfg;
};

typedef struct eng_runner eng_runner_t;
typedef struct eng_outbox eng_outbox_t;

struct eng_worker {
	eng_t *e;
	struct mf_worker *w;
	eng_runner_t *runner;		/* NULL when the engine is off here */
	eng_outbox_t *outbox;		/* webhook deliveries, NULL when off */
	struct audit_pruner *pruner;	/* audit retention (audit/prune.c): worker 0 of an engine */
	struct audit_chainer *chainer;	/* the audit chain (audit/chainer.c): worker 0 of an engine */
	struct eng_folder *folder;	/* insights folding (insights_folder.c): worker 0 of an engine */
};

/* ---- runner.c ---- */
eng_runner_t *eng_runner_new(eng_worker_t *ew, mf_err_t *err);
/* Stops claiming and cancels calls; callbacks still pending only free. */
void eng_runner_close(eng_runner_t *r);
void eng_runner_free(eng_runner_t *r);
void eng_runner_stats(const eng_runner_t *r, eng_stats_t *out);

/* The wall clock in seconds, and a time as RFC 3339 UTC with
 * milliseconds ("2026-01-02T03:04:05.678Z"). */
double eng_wall_now(void);
void eng_iso_time(double t, char out[64]);

/* ---- listen.c: one LISTEN connection driven by the worker's loop ---- */
typedef struct eng_listen eng_listen_t;
/* cb runs on every notification on channel (and once after each
 * (re)connect, since notifications may have been missed meanwhile). */
eng_listen_t *eng_listen_new(struct event_base *base, const char *conninfo, const char *channel,
			     void (*cb)(void *arg), void *arg);
void eng_listen_free(eng_listen_t *l);

/* ---- insights_folder.c: pending insights facts into the rollups ---- */
typedef struct eng_folder eng_folder_t;
/* Starts folding every every_ms (> 0) on w's loop and pool. */
eng_folder_t *eng_folder_new(struct mf_worker *w, int every_ms);
/* Stops it: freed at once, or by its callback when a pass is on the wire. */
void eng_folder_close(eng_folder_t *f);

/* ---- routes ---- */
int eng_api_routes(eng_t *e, struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));
int eng_hooks_routes(eng_t *e, struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));

/* ---- outbox.c ---- */
eng_outbox_t *eng_outbox_new(eng_worker_t *ew, mf_err_t *err);
/* Stops claiming and cancels deliveries in flight (their leases expire
 * and they are sent again); callbacks still pending only free. */
void eng_outbox_close(eng_outbox_t *o);
void eng_outbox_free(eng_outbox_t *o);
/* Adds the outbox's counters to out (any thread, approximate). */
void eng_outbox_stats(const eng_outbox_t *o, eng_stats_t *out);	/* accepts NULL; after the pool */

#endif
