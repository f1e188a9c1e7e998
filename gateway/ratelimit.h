/*
 * ratelimit.h - the gateway's two rate limiters.
 *
 * gw_gcra_t: one process-wide table of GCRA states (pre-authentication
 * limits per IP, failed-login throttling).  Exact within the process, shared
 * by every worker thread, bounded in memory.  Not cluster-wide: a key's
 * budget is per process.
 *
 * gw_rl_t: a per-worker fixed-window limiter (N requests per W seconds,
 * windows aligned to the unix epoch) that holds cluster-wide by leasing
 * budget from PostgreSQL.  The hot path is local and lock-free; only an
 * empty lease costs one statement on the worker's pool, and the requests of
 * that key wait for its answer.  When the database cannot be reached the key
 * falls back, for the rest of that window, to limit/sharers per worker.
 */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "core/pg.h"

struct event_base;

/* ---- process-wide GCRA table ---- */

typedef struct gw_gcra gw_gcra_t;

/* Thread-safe: 64 shards (fewer for tiny tables), each an open-addressing
 * table under its own mutex.  At most max_keys entries in total, allocated
 * up front; an entry whose TAT has passed is free to reuse, and when a shard
 * is full the entry with the earliest TAT among a sample is evicted (that
 * key just starts fresh).  Keys are identified by a keyed 128-bit SipHash of
 * their bytes.  Returns NULL when out of memory. */
gw_gcra_t *gw_gcra_new(size_t max_keys);
void gw_gcra_free(gw_gcra_t *g);
/* GCRA: rate events per second (> 0; smaller than 1e-9 counts as 1e-9),
 * burst = how many may arrive at once (< 1 counts as 1).  now_ns:
 * CLOCK_MONOTONIC in nanoseconds (see gw_gcra_now).  take counts the event
 * and returns true when it is allowed (*retry_after_ms = 0); false (nothing
 * counted) with *retry_after_ms = the whole milliseconds after which one
 * event is allowed: at now + that it is, one millisecond earlier it is not.
 * check: the same decision without counting.  retry_after_ms may be NULL. */
bool gw_gcra_take(gw_gcra_t *g, const void *key, size_t keylen, double rate, double burst,
		  uint64_t now_ns, uint64_t *retry_after_ms);
bool gw_gcra_check(gw_gcra_t *g, const void *key, size_t keylen, double rate, double burst,
		   uint64_t now_ns, uint64_t *retry_after_ms);
/* Entries in use (for tests and metrics; takes each shard lock in turn). */
size_t gw_gcra_count(gw_gcra_t *g);
uint64_t gw_gcra_now(void);

/* ---- cluster-wide window limiter ---- */

typedef struct gw_rl gw_rl_t;

typedef struct gw_rl_result {
	int limit;		/* the window's limit */
	int remaining;		/* best estimate cluster-wide, >= 0 */
	int reset_s;		/* seconds until the window ends, >= 1 */
} gw_rl_result_t;

enum gw_rl_outcome { GW_RL_ADMIT = 0, GW_RL_REJECT = 1, GW_RL_PENDING = 2 };

/* outcome is ADMIT or REJECT; res is valid during the call. */
typedef void (*gw_rl_cb)(enum gw_rl_outcome outcome, const gw_rl_result_t *res, void *arg);

#define GW_RL_MAX_KEY 80
#define GW_RL_MAX_WAITERS 4096		/* per key, while its lease is asked for */
#define GW_RL_DEFAULT_MAX_KEYS 100000
#define GW_RL_LEASE_TIMEOUT_MS 1000	/* then the key falls back to local limits */

/* Single-threaded: owned by the worker whose loop base is.  pg may be NULL
 * (local-only: no database configured); sharers = worker threads in this
 * process (the local-only budget is limit/sharers per worker, at least 1).
 * Returns NULL when out of memory. */
gw_rl_t *gw_rl_new(struct event_base *base, mf_pg_pool_t *pg, int sharers);
/* Waiting requests are answered GW_RL_ADMIT before it returns (shutdown
 * must not hang them); their callbacks must not use rl any more.  Leases
 * still in flight are detached: the pool may be freed before or after rl. */
void gw_rl_free(gw_rl_t *rl);
/* Bounds the number of keys kept (default GW_RL_DEFAULT_MAX_KEYS, >= 1).
 * Keys idle for more than two windows are dropped anyway. */
void gw_rl_set_max_keys(gw_rl_t *rl, int max_keys);

/* key: 1..GW_RL_MAX_KEY bytes of UTF-8 text (e.g. "t:<uuid>", "c:<uuid>"; it
 * is a text column in the database); limit >= 1;
 * window_s 1..3600.  Returns ADMIT or REJECT with *res filled (cb not
 * called), or PENDING: cb(arg) is called later from this worker's loop,
 * exactly once.  Arguments out of range are a caller bug and are answered
 * REJECT.  Out of memory or too many keys answers ADMIT: the limiter never
 * stops the service. */
enum gw_rl_outcome gw_rl_acquire(gw_rl_t *rl, const char *key, int limit, int window_s,
				 gw_rl_result_t *res, gw_rl_cb cb, void *arg);
/* The same with an explicit unix time, for tests of the local-only mode
 * (lease answers always use time(NULL)). */
enum gw_rl_outcome gw_rl_acquire_at(gw_rl_t *rl, const char *key, int limit, int window_s, time_t now,
				    gw_rl_result_t *res, gw_rl_cb cb, void *arg);
/* Gives back one unit admitted in the current window (a request admitted
 * here and then rejected by another limiter).  Nothing when the window has
 * passed or the key is unknown. */
void gw_rl_refund(gw_rl_t *rl, const char *key, int window_s);
void gw_rl_refund_at(gw_rl_t *rl, const char *key, int window_s, time_t now);

/* Counters for /metrics: written by the owner thread, readable from any
 * thread (relaxed atomics, approximate). */
typedef struct gw_rl_stats {
	unsigned long long admitted, rejected, refunded;
	unsigned long long leases;		/* lease statements sent */
	unsigned long long lease_failures;	/* errors and timeouts: the key fell back */
	int keys, waiting;
} gw_rl_stats_t;
void gw_rl_stats(const gw_rl_t *rl, gw_rl_stats_t *out);

/* The lease statement (for tests and review).  $1 key, $2 window_s, $3
 * window start (unix s), $4 units asked, $5 limit; returns one row: used
 * (after the grant), granted. */
extern const char *const gw_rl_lease_sql;

#endif
