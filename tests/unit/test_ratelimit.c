/* test_ratelimit.c - the GCRA table (explicit clock, bounded memory,
 * threads) and the window limiter without a reachable database. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "core/pg.h"
#include "gateway/ratelimit.h"
#include "t.h"

#define MS 1000000ULL
#define SEC 1000000000ULL
#define T0 (1000 * SEC)

static bool take(gw_gcra_t *g, const char *k, double rate, double burst, uint64_t now, uint64_t *retry)
{
	return gw_gcra_take(g, k, strlen(k), rate, burst, now, retry);
}

static void test_gcra_burst_and_rate(void)
{
	gw_gcra_t *g = gw_gcra_new(1000);
	uint64_t retry = 12345, now;
	int n = 0;

	for (int i = 0; i < 5; i++)
		n += take(g, "ip:1", 10, 5, T0, &retry);
	T_OK(n == 5 && retry == 0, "gcra: a burst of 5 is admitted at once");
	T_OK(!take(g, "ip:1", 10, 5, T0, &retry), "gcra: the 6th at the same instant is refused");
	T_OK(retry == 100, "gcra: retry_after is one emission interval (100 ms at 10/s)");
	T_OK(!take(g, "ip:1", 10, 5, T0 + 99 * MS, &retry) && retry == 1, "gcra: 1 ms before retry_after: refused");
	T_OK(take(g, "ip:1", 10, 5, T0 + 100 * MS, &retry), "gcra: at retry_after: admitted");
	/* asking every millisecond for 10 s admits exactly rate * 10 */
	n = 0;
	for (now = T0 + 101 * MS; now < T0 + 101 * MS + 10 * SEC; now += MS)
		n += take(g, "ip:1", 10, 5, now, NULL);
	T_OK(n == 100, "gcra: then exactly 10 per second");
	if (n != 100)
		printf("#   admitted %d\n", n);
	/* after a long pause the full burst is back, not more */
	n = 0;
	for (int i = 0; i < 20; i++)
		n += take(g, "ip:1", 10, 5, T0 + 3600 * SEC, NULL);
	T_OK(n == 5, "gcra: idle refills to the burst, no further");
	gw_gcra_free(g);
}

static void test_gcra_retry_after_is_honest(void)
{
	static const double rates[] = { 3, 7.5, 0.5, 1000, 123.456, 0.01 };
	static const double bursts[] = { 1, 2, 3, 10, 1.5, 4 };
	gw_gcra_t *g = gw_gcra_new(1000);
	bool all = true;

	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		char key[32];
		uint64_t now = T0 + i * 7 * MS, retry = 0;

		snprintf(key, sizeof(key), "k%zu", i);
		while (take(g, key, rates[i], bursts[i], now, &retry))
			;
		for (int round = 0; round < 5; round++) {
			uint64_t r = retry, r2 = 0;

			if (r == 0 || take(g, key, rates[i], bursts[i], now + (r - 1) * MS, &r2) ||
			    !take(g, key, rates[i], bursts[i], now + r * MS, &r2)) {
				all = false;
				printf("#   rate %g burst %g: retry %llu not honest\n", rates[i], bursts[i],
				       (unsigned long long)r);
				break;
			}
			now += r * MS;
			take(g, key, rates[i], bursts[i], now, &retry);	/* refused again: the next wait */
		}
	}
	T_OK(all, "gcra: at now + retry_after the take succeeds, one ms earlier it fails");
	gw_gcra_free(g);
}

static void test_gcra_check_and_keys(void)
{
	gw_gcra_t *g = gw_gcra_new(1000);
	uint64_t r1 = 0, r2 = 0;
	bool ok = true;

	for (int i = 0; i < 100; i++)
		ok &= gw_gcra_check(g, "login:a", 7, 1, 3, T0, &r1);
	T_OK(ok && gw_gcra_count(g) == 0, "gcra: check admits a fresh key and stores nothing");
	ok = true;
	for (int i = 0; i < 3; i++)
		ok &= take(g, "login:a", 1, 3, T0, NULL);
	T_OK(ok, "gcra: check counted nothing: the whole burst is still there");
	T_OK(!gw_gcra_check(g, "login:a", 7, 1, 3, T0, &r1) && !take(g, "login:a", 1, 3, T0, &r2) && r1 == r2 &&
	     r1 == 1000, "gcra: check refuses like take, with the same retry_after");
	T_OK(take(g, "login:b", 1, 3, T0, NULL), "gcra: another key is independent");
	ok = true;
	for (int i = 0; i < 10; i++)
		ok &= gw_gcra_check(g, "login:b", 7, 1, 3, T0, NULL);
	T_OK(ok && take(g, "login:b", 1, 3, T0, NULL) && take(g, "login:b", 1, 3, T0, NULL) &&
	     !take(g, "login:b", 1, 3, T0, NULL), "gcra: check on a stored key counts nothing either");
	T_OK(gw_gcra_take(g, "login:a\0x", 9, 1, 3, T0, NULL), "gcra: keys are bytes (embedded NUL, longer)");
	gw_gcra_free(g);
}

static void test_gcra_bounded(void)
{
	gw_gcra_t *g = gw_gcra_new(1024);
	size_t max_seen = 0;
	bool hot_held = true, fresh_ok = true;
	char key[32];
	int n = 0;

	/* an abuser exhausted its budget (1 per 1000 s, burst 3) */
	for (int i = 0; i < 3; i++)
		n += take(g, "hot", 0.001, 3, T0, NULL);
	T_OK(n == 3 && !take(g, "hot", 0.001, 3, T0, NULL), "gcra: the hot key is exhausted");
	for (int i = 0; i < 200000; i++) {
		uint64_t now = T0 + (uint64_t)i * 1000;	/* 1 us apart: nothing has expired */

		snprintf(key, sizeof(key), "ip:%d", i);
		fresh_ok &= take(g, key, 1, 2, now, NULL);
		if ((i & 1023) == 0) {
			size_t c = gw_gcra_count(g);

			if (c > max_seen)
				max_seen = c;
			hot_held &= !take(g, "hot", 0.001, 3, now, NULL);
		}
	}
	if (gw_gcra_count(g) > max_seen)
		max_seen = gw_gcra_count(g);
	T_OK(max_seen <= 1024, "gcra: 200000 keys into a 1024-key table never exceed 1024 entries");
	T_OK(fresh_ok, "gcra: every new key got its first event");
	T_OK(hot_held, "gcra: eviction spares the key with the most debt (still refused)");
	/* the table still works: a recent key keeps its state */
	T_OK(take(g, "recent", 1, 1, T0 + SEC, NULL) && !take(g, "recent", 1, 1, T0 + SEC, NULL),
	     "gcra: a full table still limits new keys");
	/* once everything has expired, entries are reused without eviction */
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "late:%d", i);
		take(g, key, 1, 1, T0 + 7200 * SEC, NULL);
	}
	T_OK(gw_gcra_count(g) <= 1024, "gcra: expired entries are reused");
	gw_gcra_free(g);

	/* debtors (allowed once, then never again) among heavy churn: evictions
	 * move entries around (backward shift) and must never lose one.  At
	 * ~6% of each shard, a sample of 16 made only of debtors is ~1e-19. */
	g = gw_gcra_new(64 * 256);
	hot_held = true;
	for (int i = 0; i < 330000; i++) {
		snprintf(key, sizeof(key), "churn:%d", i);
		take(g, key, 1, 1, T0 + (uint64_t)i, NULL);
		/* debtors join a full table, so they sit displaced in probe chains */
		if (i >= 30000 && i % 300 == 0 && i < 330000) {
			snprintf(key, sizeof(key), "debtor:%d", (i - 30000) / 300);
			take(g, key, 1e-9, 1, T0 + (uint64_t)i, NULL);
		}
		if (i >= 60000 && i % 97 == 0) {
			snprintf(key, sizeof(key), "debtor:%d", (i / 97) % ((i - 30000) / 300));
			hot_held &= !take(g, key, 1e-9, 1, T0 + (uint64_t)i, NULL);
		}
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "debtor:%d", i);
		hot_held &= !take(g, key, 1e-9, 1, T0 + 330000, NULL);
	}
	T_OK(hot_held, "gcra: 300000 evictions never lose a key that is still in debt");
	T_OK(gw_gcra_count(g) <= 64 * 256, "gcra: and stay within max_keys");
	gw_gcra_free(g);

	g = gw_gcra_new(5);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "%d", i);
		take(g, key, 1, 1, T0, NULL);
	}
	T_OK(gw_gcra_count(g) <= 5, "gcra: a tiny table is bounded too");
	gw_gcra_free(g);
}

#define HKEYS 5000

struct hammer {
	gw_gcra_t *g;
	pthread_barrier_t *start;
	int admitted;
};

/* Every thread walks the same keys in the same order, trying each several
 * times: threads race on one key at a time, many thousand times over. */
static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	char key[16];

	pthread_barrier_wait(h->start);
	for (int k = 0; k < HKEYS; k++) {
		snprintf(key, sizeof(key), "shared:%d", k);
		for (int i = 0; i < 8; i++)
			/* rate ~0: nothing refills, so exactly the burst may pass */
			h->admitted += take(h->g, key, 1e-9, 5, T0 + (uint64_t)i, NULL);
	}
	return NULL;
}

static void test_gcra_threads(void)
{
	struct hammer h[4] = { 0 };
	pthread_t th[4];
	pthread_barrier_t start;
	gw_gcra_t *g = gw_gcra_new(1 << 16);
	int total = 0;

	pthread_barrier_init(&start, NULL, 4);
	for (int t = 0; t < 4; t++) {
		h[t].g = g;
		h[t].start = &start;
		pthread_create(&th[t], NULL, hammer_main, &h[t]);
	}
	for (int t = 0; t < 4; t++) {
		pthread_join(th[t], NULL);
		total += h[t].admitted;
	}
	T_OK(total == HKEYS * 5, "gcra: 4 threads on the same keys admit exactly the burst of each key");
	if (total != HKEYS * 5)
		printf("#   admitted %d of %d\n", total, HKEYS * 5);
	pthread_barrier_destroy(&start);
	gw_gcra_free(g);
}

/* ---- window limiter ---- */

struct answer {
	int calls;
	enum gw_rl_outcome outcome;
	gw_rl_result_t res;
};

static void on_answer(enum gw_rl_outcome outcome, const gw_rl_result_t *res, void *arg)
{
	struct answer *a = arg;

	a->calls++;
	a->outcome = outcome;
	a->res = *res;
}

static enum gw_rl_outcome acq(gw_rl_t *rl, const char *key, int limit, int w, time_t now, gw_rl_result_t *res,
			      struct answer *a)
{
	return gw_rl_acquire_at(rl, key, limit, w, now, res, on_answer, a);
}

static void test_rl_local(struct event_base *base)
{
	gw_rl_t *rl = gw_rl_new(base, NULL, 4);
	const time_t now = 1700000000;	/* a multiple of 10 */
	gw_rl_result_t res = { 0 };
	struct answer a = { 0 };
	gw_rl_stats_t st;
	int admitted = 0, pending = 0;

	for (int i = 0; i < 40; i++) {
		enum gw_rl_outcome o = acq(rl, "t:one", 100, 10, now + 2, &res, &a);

		admitted += o == GW_RL_ADMIT;
		pending += o == GW_RL_PENDING;
		if (i == 0)
			T_OK(res.limit == 100 && res.remaining == 24 && res.reset_s == 8,
			     "rl local: first answer: limit 100, remaining 24 of this worker's 25, reset 8 s");
	}
	T_OK(admitted == 25 && pending == 0 && a.calls == 0, "rl local: limit/sharers (100/4) admitted, never pending");
	T_OK(acq(rl, "t:one", 100, 10, now + 9, &res, &a) == GW_RL_REJECT && res.remaining == 0 && res.reset_s == 1,
	     "rl local: rejected with remaining 0, reset 1 s in the window's last second");
	gw_rl_refund_at(rl, "t:one", 10, now + 9);
	T_OK(acq(rl, "t:one", 100, 10, now + 9, &res, &a) == GW_RL_ADMIT, "rl local: a refunded unit is admitted again");
	T_OK(acq(rl, "t:one", 100, 10, now + 9, &res, &a) == GW_RL_REJECT, "rl local: only that one");
	gw_rl_refund_at(rl, "t:one", 10, now + 10);
	admitted = 0;
	for (int i = 0; i < 40; i++)
		admitted += acq(rl, "t:one", 100, 10, now + 10, &res, &a) == GW_RL_ADMIT;
	T_OK(admitted == 25, "rl local: the next window starts fresh (a refund after the window changed nothing)");
	T_OK(acq(rl, "t:one", 100, 10, now + 10, &res, &a) == GW_RL_REJECT && res.reset_s == 10,
	     "rl local: reset counts from the new window's start");
	T_OK(acq(rl, "t:one", 100, 60, now + 10, &res, &a) == GW_RL_ADMIT,
	     "rl local: another window length is another counter");
	T_OK(acq(rl, "t:two", 100, 10, now + 10, &res, &a) == GW_RL_ADMIT, "rl local: another key is independent");
	admitted = 0;
	for (int i = 0; i < 10; i++)
		admitted += acq(rl, "t:small", 2, 10, now, &res, &a) == GW_RL_ADMIT;
	T_OK(admitted == 1, "rl local: a limit below the worker count still admits one per worker");
	T_OK(acq(rl, "", 10, 10, now, &res, &a) == GW_RL_REJECT &&
	     acq(rl, "t:x", 0, 10, now, &res, &a) == GW_RL_REJECT &&
	     acq(rl, "t:x", 10, 3601, now, &res, &a) == GW_RL_REJECT &&
	     acq(rl, "t:0123456789012345678901234567890123456789012345678901234567890123456789012345678", 10, 10,
		 now, &res, &a) == GW_RL_REJECT,
	     "rl local: empty or 81-byte key, limit 0, window 3601 are refused");
	gw_rl_stats(rl, &st);
	T_OK(st.admitted == 25 + 1 + 25 + 2 + 1 && st.refunded == 1 && st.keys == 4 && st.leases == 0,
	     "rl local: counters");
	gw_rl_free(rl);
	gw_rl_free(NULL);
}

static void test_rl_memory(struct event_base *base)
{
	gw_rl_t *rl = gw_rl_new(base, NULL, 1);
	const time_t now = 1700000000;
	gw_rl_result_t res;
	struct answer a = { 0 };
	gw_rl_stats_t st;
	char key[32];
	bool ok = true;

	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "c:%d", i);
		ok &= acq(rl, key, 5, 10, now, &res, &a) == GW_RL_ADMIT;
	}
	gw_rl_stats(rl, &st);
	T_OK(ok && st.keys == 1000, "rl memory: 1000 keys kept while in use");
	/* three windows later the old keys are idle: each request drops two */
	for (int i = 0; i < 600; i++) {
		snprintf(key, sizeof(key), "d:%d", i);
		(void)acq(rl, key, 5, 10, now + 30, &res, &a);
	}
	gw_rl_stats(rl, &st);
	T_OK(st.keys == 600, "rl memory: keys idle for more than two windows are dropped");
	gw_rl_set_max_keys(rl, 100);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "e:%d", i);
		(void)acq(rl, key, 5, 10, now + 30, &res, &a);
		gw_rl_stats(rl, &st);
		if (st.keys > 600)
			ok = false;
	}
	T_OK(ok && st.keys <= 100, "rl memory: the key count is capped");
	gw_rl_free(rl);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

/* A pool that can never connect: leases fail with 503 from the loop, the
 * key falls back to its local budget and the waiters are answered. */
static void test_rl_unreachable_db(struct event_base *base)
{
	mf_pg_options_t po = { .conninfo = "host=/nonexistent-mspflow-dir port=1 connect_timeout=1", .size = 1,
			       .connect_timeout_ms = 1000, .query_timeout_ms = 2000, .max_queue = 16,
			       .retry_after_s = 1 };
	mf_pg_pool_t *pg = mf_pg_pool_new(base, &po);
	gw_rl_t *rl = gw_rl_new(base, pg, 2);
	struct answer a[8] = { 0 };
	gw_rl_result_t res;
	struct timeval guard = { 10, 0 };
	struct event *ev = evtimer_new(base, stop_loop, base);
	bool pending = true;
	int admitted = 0, rejected = 0;
	gw_rl_stats_t st;

	for (int i = 0; i < 8; i++)
		pending &= gw_rl_acquire(rl, "t:db", 6, 3600, &res, on_answer, &a[i]) == GW_RL_PENDING;
	T_OK(pending, "rl db down: requests wait for the lease");
	evtimer_add(ev, &guard);	/* a hang guard, not a timing assertion */
	while (a[7].calls == 0 && evtimer_pending(ev, NULL))
		event_base_loop(base, EVLOOP_ONCE);
	for (int i = 0; i < 8; i++) {
		admitted += a[i].calls == 1 && a[i].outcome == GW_RL_ADMIT;
		rejected += a[i].calls == 1 && a[i].outcome == GW_RL_REJECT;
	}
	T_OK(admitted == 3 && rejected == 5, "rl db down: each waiter answered once, limit/sharers (6/2) admitted");
	T_OK(gw_rl_acquire(rl, "t:db", 6, 3600, &res, on_answer, &a[0]) == GW_RL_REJECT,
	     "rl db down: the rest of the window is answered locally, without asking again");
	gw_rl_stats(rl, &st);
	T_OK(st.leases == 1 && st.lease_failures == 1 && st.waiting == 0, "rl db down: one lease, one failure");

	/* free with waiters and a lease still in the pool: the waiters are
	 * admitted, the lease's late answer finds the limiter detached */
	memset(a, 0, sizeof(a));
	T_OK(gw_rl_acquire(rl, "t:other", 6, 3600, &res, on_answer, &a[0]) == GW_RL_PENDING &&
	     gw_rl_acquire(rl, "t:other", 6, 3600, &res, on_answer, &a[1]) == GW_RL_PENDING,
	     "rl free: two waiters");
	gw_rl_free(rl);
	T_OK(a[0].calls == 1 && a[0].outcome == GW_RL_ADMIT && a[1].calls == 1 && a[1].outcome == GW_RL_ADMIT,
	     "rl free: waiters are admitted before free returns");
	for (int i = 0; i < 3; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);	/* the pool's deferred 503 reaches the detached lease */
	mf_pg_pool_free(pg);
	T_OK(a[0].calls == 1 && a[1].calls == 1, "rl free: nobody is answered twice");
	event_free(ev);
}

int main(void)
{
	struct event_base *base = event_base_new();

	test_gcra_burst_and_rate();
	test_gcra_retry_after_is_honest();
	test_gcra_check_and_keys();
	test_gcra_bounded();
	test_gcra_threads();
	test_rl_local(base);
	test_rl_memory(base);
	test_rl_unreachable_db(base);
	event_base_free(base);
	return t_done();
}
