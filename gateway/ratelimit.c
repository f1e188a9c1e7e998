/*
 * ratelimit.c - the process-wide GCRA table and the per-worker window
 * limiter that leases budget from PostgreSQL (see ratelimit.h).
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <sodium.h>

#include "core/log.h"
#include "gateway/ratelimit.h"

/* ================= GCRA ================= */

#define GCRA_SHARDS 64
#define GCRA_MIN_PER_SHARD 16
#define GCRA_SAMPLE 16			/* occupied slots looked at to pick a victim */
#define GCRA_INF ((uint64_t)1 << 62)	/* "never" in ns (146 years): no overflow below it */

struct gcra_slot {
	uint64_t h0, h1;		/* keyed hash of the key; h1 == 0: empty slot */
	uint64_t tat;			/* theoretical arrival time, ns */
};

struct gcra_shard {
	pthread_mutex_t lock;
	struct gcra_slot *slots;
	size_t mask;			/* slots - 1; slots >= 2 * cap keeps probes short */
	size_t count, cap;
	uint64_t rng;			/* xorshift state for victim sampling */
} __attribute__((aligned(64)));		/* one cache line per lock: no false sharing */

struct gw_gcra {
	unsigned char hkey[crypto_shorthash_siphashx24_KEYBYTES];
	unsigned nshards, shard_bits;
	struct gcra_shard *shards;
};

uint64_t gw_gcra_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int seed(void *buf, size_t len)
{
	/* sodium_init is idempotent and thread-safe; the test server and unit
	 * tests do not go through main() */
	if (sodium_init() < 0)
		return -1;
	randombytes_buf(buf, len);
	return 0;
}

gw_gcra_t *gw_gcra_new(size_t max_keys)
{
	gw_gcra_t *g = calloc(1, sizeof(*g));
	size_t cap, slots;

	if (g == NULL)
		return NULL;
	if (max_keys == 0)
		max_keys = 1;
	g->nshards = GCRA_SHARDS;
	while (g->nshards > 1 && max_keys / g->nshards < GCRA_MIN_PER_SHARD)
		g->nshards /= 2;
	for (unsigned n = g->nshards; n > 1; n >>= 1)
		g->shard_bits++;
	cap = max_keys / g->nshards;	/* floor: the total never exceeds max_keys */
	if (cap > SIZE_MAX / 4 / sizeof(struct gcra_slot))
		goto fail;
	for (slots = 2; slots < 2 * cap; slots <<= 1)
		;
	g->shards = aligned_alloc(64, sizeof(struct gcra_shard) * g->nshards);
	if (g->shards == NULL)
		goto fail;
	memset(g->shards, 0, sizeof(struct gcra_shard) * g->nshards);
	if (seed(g->hkey, sizeof(g->hkey)) < 0)
		goto fail;
	for (unsigned i = 0; i < g->nshards; i++) {
		struct gcra_shard *s = &g->shards[i];

		s->cap = cap;
		s->mask = slots - 1;
		s->slots = calloc(slots, sizeof(struct gcra_slot));
		randombytes_buf(&s->rng, sizeof(s->rng));
		s->rng |= 1;
		if (s->slots == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
			free(s->slots);
			s->slots = NULL;
			goto fail;
		}
	}
	return g;
fail:
	gw_gcra_free(g);
	return NULL;
}

void gw_gcra_free(gw_gcra_t *g)
{
	if (g == NULL)
		return;
	for (unsigned i = 0; g->shards && i < g->nshards; i++) {
		if (g->shards[i].slots == NULL)
			break;	/* construction stopped here */
		pthread_mutex_destroy(&g->shards[i].lock);
		free(g->shards[i].slots);
	}
	free(g->shards);
	free(g);
}

size_t gw_gcra_count(gw_gcra_t *g)
{
	size_t n = 0;

	for (unsigned i = 0; i < g->nshards; i++) {
		pthread_mutex_lock(&g->shards[i].lock);
		n += g->shards[i].count;
		pthread_mutex_unlock(&g->shards[i].lock);
	}
	return n;
}

/* Emission interval T and tolerance tau = (burst - 1) * T, in ns.  T is
 * clamped so that burst * T stays below GCRA_INF: a near-zero rate then
 * refills after years instead of overflowing, and the burst stays exact. */
static void gcra_params(double rate, double burst, uint64_t *T, uint64_t *tau)
{
	double t, ta;

	if (!(rate >= 1e-9))	/* also NaN */
		rate = 1e-9;
	if (!(burst >= 1))
		burst = 1;
	t = 1e9 / rate;
	if (t > (double)GCRA_INF / burst)
		t = (double)GCRA_INF / burst;
	*T = t < 1 ? 1 : (uint64_t)llround(t);
	ta = (burst - 1) * (double)*T;
	*tau = ta >= (double)GCRA_INF ? GCRA_INF : (uint64_t)llround(ta);
}

/* The GCRA decision for a stored TAT (0 = fresh key). */
static bool gcra_decide(uint64_t stored, uint64_t now, uint64_t T, uint64_t tau, uint64_t *new_tat,
			uint64_t *retry_ms)
{
	uint64_t tat = stored > now ? stored : now;
	uint64_t ahead = tat - now;

	if (ahead > tau) {
		uint64_t wait = ahead - tau;	/* ns until tat - tau == now */

		/* rounded up, so that now + retry_ms is allowed and one ms less is not */
		*retry_ms = wait / 1000000 + (wait % 1000000 != 0);
		return false;
	}
	*new_tat = tat > UINT64_MAX - T ? UINT64_MAX : tat + T;
	*retry_ms = 0;
	return true;
}

static inline bool slot_empty(const struct gcra_slot *s) { return s->h1 == 0; }

/* Backward-shift deletion for linear probing: no tombstones, so probe
 * chains never grow with churn. */
static void slot_delete(struct gcra_shard *s, size_t i)
{
	size_t j = i;

	for (;;) {
		size_t k;
		bool stays;

		j = (j + 1) & s->mask;
		if (slot_empty(&s->slots[j]))
			break;
		k = s->slots[j].h0 & s->mask;	/* home of the entry at j */
		/* it may move back to i unless its home lies cyclically in (i, j] */
		stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			s->slots[i] = s->slots[j];
			i = j;
		}
	}
	memset(&s->slots[i], 0, sizeof(s->slots[i]));
	s->count--;
}

/* The shard is full: drop the entry with the earliest TAT (the least debt,
 * so the least harm when it starts fresh) among a sample. */
static void evict_one(struct gcra_shard *s)
{
	size_t n = s->mask + 1, start, best = SIZE_MAX;
	int seen = 0;

	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	start = (size_t)s->rng & s->mask;
	for (size_t k = 0; k < n && seen < GCRA_SAMPLE; k++) {
		size_t j = (start + k) & s->mask;

		if (slot_empty(&s->slots[j]))
			continue;
		seen++;
		if (best == SIZE_MAX || s->slots[j].tat < s->slots[best].tat)
			best = j;
	}
	if (best != SIZE_MAX)
		slot_delete(s, best);
}

static bool gcra_run(gw_gcra_t *g, bool take, const void *key, size_t keylen, double rate, double burst,
		     uint64_t now, uint64_t *retry_after_ms)
{
	unsigned char h[crypto_shorthash_siphashx24_BYTES];
	uint64_t h0, h1, T, tau, new_tat = 0, retry = 0;
	struct gcra_shard *s;
	size_t i, reuse = SIZE_MAX;
	bool ok;

	crypto_shorthash_siphashx24(h, key, keylen, g->hkey);
	memcpy(&h0, h, 8);
	memcpy(&h1, h + 8, 8);
	h1 |= 1;	/* occupied slots have h1 != 0 */
	gcra_params(rate, burst, &T, &tau);
	s = &g->shards[g->shard_bits ? h0 >> (64 - g->shard_bits) : 0];

	pthread_mutex_lock(&s->lock);
	for (i = h0 & s->mask; !slot_empty(&s->slots[i]); i = (i + 1) & s->mask) {
		struct gcra_slot *e = &s->slots[i];

		if (e->h0 == h0 && e->h1 == h1) {
			ok = gcra_decide(e->tat, now, T, tau, &new_tat, &retry);
			if (ok && take)
				e->tat = new_tat;
			goto out;
		}
		/* a passed TAT is a fresh key's state: the slot is free to reuse,
		 * and being on this key's probe path it stays findable */
		if (reuse == SIZE_MAX && e->tat <= now)
			reuse = i;
	}
	ok = gcra_decide(0, now, T, tau, &new_tat, &retry);	/* a fresh key: always allowed */
	if (!ok || !take)
		goto out;
	if (reuse == SIZE_MAX && s->count >= s->cap) {
		evict_one(s);
		/* the deletion shifted entries: find this key's empty slot again */
		for (i = h0 & s->mask; !slot_empty(&s->slots[i]); i = (i + 1) & s->mask)
			;
	}
	if (reuse != SIZE_MAX)
		i = reuse;
	else
		s->count++;
	s->slots[i] = (struct gcra_slot){ h0, h1, new_tat };
out:
	pthread_mutex_unlock(&s->lock);
	if (retry_after_ms)
		*retry_after_ms = retry;
	return ok;
}

bool gw_gcra_take(gw_gcra_t *g, const void *key, size_t keylen, double rate, double burst,
		  uint64_t now_ns, uint64_t *retry_after_ms)
{
	return gcra_run(g, true, key, keylen, rate, burst, now_ns, retry_after_ms);
}

bool gw_gcra_check(gw_gcra_t *g, const void *key, size_t keylen, double rate, double burst,
		   uint64_t now_ns, uint64_t *retry_after_ms)
{
	return gcra_run(g, false, key, keylen, rate, burst, now_ns, retry_after_ms);
}

/* ================= window limiter ================= */

/*
 * A lease grants min(asked, limit - used) and adds it to used, in one
 * statement: the row lock of ON CONFLICT DO UPDATE serialises concurrent
 * leasers, and SET sees the old row, so the sum of grants never exceeds
 * the limit.  last_grant carries the grant to RETURNING.
 */
const char *const gw_rl_lease_sql =
	"INSERT INTO platform.rate_windows AS w (key, window_s, window_start, used, last_grant) "
	"VALUES ($1, $2::int, $3::bigint, LEAST($4::bigint, $5::bigint), LEAST($4::bigint, $5::bigint)) "
	"ON CONFLICT (key, window_s, window_start) DO UPDATE SET "
	"used = w.used + LEAST($4::bigint, GREATEST($5::bigint - w.used, 0)), "
	"last_grant = LEAST($4::bigint, GREATEST($5::bigint - w.used, 0)) "
	"RETURNING used, last_grant";

/* Windows that ended more than an hour ago ($1 = now - 3600); the first
 * condition lets the window_start index find them. */
static const char cleanup_sql[] =
	"DELETE FROM platform.rate_windows WHERE window_start < $1::bigint AND window_start + window_s < $1::bigint";

#define CLEANUP_EVERY_S 60
#define CLEANUP_FIRST_S 2		/* soon after start: a restarted fleet cleans up at once */

struct waiter {
	struct waiter *next;
	gw_rl_cb cb;
	void *arg;
};

struct lease;

typedef struct rl_key {
	struct rl_key *hnext;
	TAILQ_ENTRY(rl_key) lru;	/* head: most recently used */
	uint64_t hash;
	int window_s, limit;
	int64_t window_start;		/* the window the counters below belong to */
	int64_t last_used;
	int64_t available;		/* leased from the database, not used yet */
	int64_t taken;			/* admitted here this window, net of refunds */
	int64_t db_used;		/* cluster-wide used, as of the last lease answer */
	bool exhausted;			/* the database has no more for this window */
	bool fallback;			/* database unreachable: local budget this window */
	bool serving;			/* answering waiters (callbacks may re-enter) */
	struct lease *leasing;		/* the lease the waiters wait for */
	struct waiter *whead, *wtail;
	int nwait;
	size_t keylen;
	char key[GW_RL_MAX_KEY + 1];
} rl_key_t;

/* A lease statement in flight.  It names its key instead of pointing to it,
 * so keys can be evicted and the limiter freed while the pool still holds
 * the statement. */
struct lease {
	TAILQ_ENTRY(lease) all;		/* every lease whose answer has not come */
	TAILQ_ENTRY(lease) timeq;	/* leases whose waiters may still time out */
	gw_rl_t *rl;			/* NULL once the limiter is gone */
	bool timing;
	struct timespec deadline;
	int64_t window_start;
	int window_s, limit;
	uint64_t hash;
	size_t keylen;
	char key[GW_RL_MAX_KEY + 1];
};

TAILQ_HEAD(rl_key_list, rl_key);
TAILQ_HEAD(lease_list, lease);

struct gw_rl {
	struct event_base *base;
	mf_pg_pool_t *pg;
	int sharers, max_keys, nkeys, waiting;
	rl_key_t **buckets;
	size_t nbuckets;		/* power of two */
	struct rl_key_list lru;
	struct lease_list leases, timeq;
	struct event *lease_timer, *cleanup_timer;
	unsigned char hkey[crypto_shorthash_KEYBYTES];
	time_t last_warn;
	long suppressed;
	bool freeing;
	atomic_ullong admitted, rejected, refunded, leases_sent, lease_failures;
	atomic_int akeys, awaiting;
};

enum decision { D_ADMIT, D_REJECT, D_LEASE };

/* Counters have one writer (the owner thread): a relaxed load and store is
 * enough and avoids a locked instruction on the hot path. */
static inline void bump(atomic_ullong *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static uint64_t key_hash(const gw_rl_t *rl, const char *key, size_t keylen, int window_s)
{
	unsigned char buf[GW_RL_MAX_KEY + sizeof(int)], h[crypto_shorthash_BYTES];
	uint64_t v;

	memcpy(buf, key, keylen);
	memcpy(buf + keylen, &window_s, sizeof(int));
	crypto_shorthash(h, buf, keylen + sizeof(int), rl->hkey);
	memcpy(&v, h, sizeof(v));
	return v;
}

static rl_key_t *key_find(const gw_rl_t *rl, const char *key, size_t keylen, int window_s, uint64_t hash)
{
	for (rl_key_t *e = rl->buckets[hash & (rl->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == hash && e->window_s == window_s && e->keylen == keylen &&
		    memcmp(e->key, key, keylen) == 0)
			return e;
	return NULL;
}

static void key_remove(gw_rl_t *rl, rl_key_t *e)
{
	rl_key_t **pp = &rl->buckets[e->hash & (rl->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	TAILQ_REMOVE(&rl->lru, e, lru);
	free(e);
	rl->nkeys--;
	atomic_store_explicit(&rl->akeys, rl->nkeys, memory_order_relaxed);
}

static bool key_evictable(const rl_key_t *e)
{
	return e->leasing == NULL && e->nwait == 0 && !e->serving;
}

/* Drops keys idle for more than two of their windows, a couple per call:
 * the cost is spread over requests and the table follows the traffic. */
static void evict_idle(gw_rl_t *rl, time_t now)
{
	for (int i = 0; i < 2; i++) {
		rl_key_t *e = TAILQ_LAST(&rl->lru, rl_key_list);

		if (e == NULL || !key_evictable(e) || e->last_used + 2 * (int64_t)e->window_s >= now)
			return;
		key_remove(rl, e);
	}
}

static void grow_buckets(gw_rl_t *rl)
{
	size_t n = rl->nbuckets * 2;
	rl_key_t **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return;	/* longer chains, still correct */
	for (size_t i = 0; i < rl->nbuckets; i++) {
		rl_key_t *e = rl->buckets[i], *next;

		for (; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(rl->buckets);
	rl->buckets = b;
	rl->nbuckets = n;
}

static rl_key_t *key_create(gw_rl_t *rl, const char *key, size_t keylen, int window_s, uint64_t hash)
{
	rl_key_t *e;

	while (rl->nkeys >= rl->max_keys) {
		/* full of recently used keys: drop the least recently used one
		 * that nobody waits on (its lease, if any, is wasted; the
		 * database still holds the window's count) */
		rl_key_t *v = TAILQ_LAST(&rl->lru, rl_key_list);

		for (int i = 0; v && i < 8 && !key_evictable(v); i++)
			v = TAILQ_PREV(v, rl_key_list, lru);
		if (v == NULL || !key_evictable(v))
			return NULL;
		key_remove(rl, v);
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->hash = hash;
	e->window_s = window_s;
	e->window_start = -1;
	e->keylen = keylen;
	memcpy(e->key, key, keylen);
	e->hnext = rl->buckets[hash & (rl->nbuckets - 1)];
	rl->buckets[hash & (rl->nbuckets - 1)] = e;
	TAILQ_INSERT_HEAD(&rl->lru, e, lru);
	rl->nkeys++;
	atomic_store_explicit(&rl->akeys, rl->nkeys, memory_order_relaxed);
	if ((size_t)rl->nkeys > rl->nbuckets)
		grow_buckets(rl);
	return e;
}

static int64_t window_of(time_t now, int window_s)
{
	int64_t t = (int64_t)now;

	return t - (((t % window_s) + window_s) % window_s);	/* floor, also before 1970 */
}

/* Moves a key's counters to the window now is in.  A lease in flight and
 * its waiters stay: the answer, for the old window, is then discarded and
 * a new lease asked for. */
static void key_roll(rl_key_t *e, time_t now)
{
	int64_t ws = window_of(now, e->window_s);

	if (e->window_start == ws)
		return;
	e->window_start = ws;
	e->available = e->taken = e->db_used = 0;
	e->exhausted = e->fallback = false;
}

static int64_t local_cap(const gw_rl_t *rl, const rl_key_t *e)
{
	int64_t c = e->limit / rl->sharers;

	return c < 1 ? 1 : c;
}

static void fill_res(const gw_rl_t *rl, const rl_key_t *e, time_t now, gw_rl_result_t *res)
{
	int64_t reset = e->window_start + e->window_s - (int64_t)now, rem;

	if (rl->pg == NULL || e->fallback) {
		rem = local_cap(rl, e) - e->taken;
		if (rem < e->available)
			rem = e->available;
	} else {
		rem = e->limit - e->db_used + e->available;
	}
	res->limit = e->limit;
	res->remaining = (int)(rem < 0 ? 0 : rem > e->limit ? e->limit : rem);
	res->reset_s = (int)(reset < 1 ? 1 : reset > e->window_s ? e->window_s : reset);
}

static enum decision decide(const gw_rl_t *rl, rl_key_t *e)
{
	if (e->available > 0) {
		e->available--;
		e->taken++;
		return D_ADMIT;
	}
	if (rl->pg == NULL || e->fallback) {
		if (e->taken < local_cap(rl, e)) {
			e->taken++;
			return D_ADMIT;
		}
		return D_REJECT;
	}
	return e->exhausted ? D_REJECT : D_LEASE;
}

static void count(gw_rl_t *rl, enum decision d)
{
	bump(d == D_ADMIT ? &rl->admitted : &rl->rejected);
}

static void enter_fallback(gw_rl_t *rl, rl_key_t *e, const char *why)
{
	time_t now = time(NULL);

	if (e->fallback)
		return;
	e->fallback = true;
	/* once per window length per worker, however many keys fall back */
	if (rl->last_warn == 0 || now - rl->last_warn >= e->window_s) {
		mf_warn("ratelimit", "cannot lease from the database; limiting locally for the rest of the window",
			MF_S("reason", why), MF_I("window_s", e->window_s), MF_I("suppressed", rl->suppressed));
		rl->last_warn = now;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
	}
}

static void arm_lease_timer(gw_rl_t *rl)
{
	struct lease *l = TAILQ_FIRST(&rl->timeq);
	struct timespec now;
	struct timeval tv;
	long long ms;

	if (l == NULL || evtimer_pending(rl->lease_timer, NULL))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(l->deadline.tv_sec - now.tv_sec) * 1000 + (l->deadline.tv_nsec - now.tv_nsec) / 1000000;
	if (ms < 1)
		ms = 1;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(rl->lease_timer, &tv);
}

static void lease_done(const PGresult *res, const mf_err_t *err, void *arg);

/* Asks the database for budget for e's current window.  The size shrinks
 * with what the window has left, so the leases still unused when traffic
 * stops (wasted at window end) stay a few percent of the limit. */
static int send_lease(gw_rl_t *rl, rl_key_t *e)
{
	int64_t left = e->limit - e->db_used, ask = e->limit / 20;
	char p_w[16], p_ws[24], p_ask[24], p_lim[16];
	const char *params[5] = { NULL, p_w, p_ws, p_ask, p_lim };
	struct lease *l;

	if (left / 8 < ask)
		ask = left / 8;
	if (e->nwait > ask)	/* a burst queued up: ask for all of it at once */
		ask = e->nwait < left ? e->nwait : left;
	if (ask < 1)
		ask = 1;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -1;
	l->rl = rl;
	l->window_start = e->window_start;
	l->window_s = e->window_s;
	l->limit = e->limit;
	l->hash = e->hash;
	l->keylen = e->keylen;
	memcpy(l->key, e->key, e->keylen);
	params[0] = l->key;
	snprintf(p_w, sizeof(p_w), "%d", e->window_s);
	snprintf(p_ws, sizeof(p_ws), "%lld", (long long)e->window_start);
	snprintf(p_ask, sizeof(p_ask), "%lld", (long long)ask);
	snprintf(p_lim, sizeof(p_lim), "%d", e->limit);
	/* failures are reported through lease_done, from the loop; -1 only
	 * when the statement could not even be queued (out of memory) */
	if (mf_pg_query(rl->pg, gw_rl_lease_sql, 5, params, lease_done, l) < 0) {
		free(l);
		return -1;
	}
	bump(&rl->leases_sent);
	e->leasing = l;
	TAILQ_INSERT_TAIL(&rl->leases, l, all);
	clock_gettime(CLOCK_MONOTONIC, &l->deadline);
	l->deadline.tv_sec += GW_RL_LEASE_TIMEOUT_MS / 1000;
	l->deadline.tv_nsec += (long)(GW_RL_LEASE_TIMEOUT_MS % 1000) * 1000000L;
	if (l->deadline.tv_nsec >= 1000000000L) {
		l->deadline.tv_sec++;
		l->deadline.tv_nsec -= 1000000000L;
	}
	/* the timeout is constant, so the queue stays in deadline order */
	TAILQ_INSERT_TAIL(&rl->timeq, l, timeq);
	l->timing = true;
	arm_lease_timer(rl);
	return 0;
}

static struct waiter *waiter_pop(gw_rl_t *rl, rl_key_t *e)
{
	struct waiter *w = e->whead;

	e->whead = w->next;
	if (e->whead == NULL)
		e->wtail = NULL;
	e->nwait--;
	rl->waiting--;
	atomic_store_explicit(&rl->awaiting, rl->waiting, memory_order_relaxed);
	return w;
}

/* Answers e's waiters from what it has now; sends the next lease when the
 * budget runs out first.  Callbacks may call back into the limiter. */
static void serve_waiters(gw_rl_t *rl, rl_key_t *e)
{
	time_t now = time(NULL);

	key_roll(e, now);
	e->serving = true;
	while (e->nwait > 0) {
		enum decision d = decide(rl, e);
		gw_rl_result_t res;
		struct waiter *w;

		if (d == D_LEASE) {
			if (e->leasing || send_lease(rl, e) == 0)
				break;
			enter_fallback(rl, e, "out_of_memory");
			continue;
		}
		w = waiter_pop(rl, e);
		fill_res(rl, e, now, &res);
		count(rl, d);
		w->cb(d == D_ADMIT ? GW_RL_ADMIT : GW_RL_REJECT, &res, w->arg);
		free(w);
	}
	e->serving = false;
}

static void lease_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct lease *l = arg;
	gw_rl_t *rl = l->rl;
	rl_key_t *e;
	long long used = 0, granted = 0;
	bool current, ok;

	if (rl == NULL) {	/* the limiter is gone */
		free(l);
		return;
	}
	TAILQ_REMOVE(&rl->leases, l, all);
	if (l->timing)
		TAILQ_REMOVE(&rl->timeq, l, timeq);
	e = key_find(rl, l->key, l->keylen, l->window_s, l->hash);
	current = e && e->leasing == l;
	if (current)
		e->leasing = NULL;
	ok = err == NULL && res && PQntuples(res) == 1 && PQnfields(res) == 2;
	if (ok) {
		char *end1, *end2;

		used = strtoll(PQgetvalue(res, 0, 0), &end1, 10);
		granted = strtoll(PQgetvalue(res, 0, 1), &end2, 10);
		ok = *end1 == '\0' && *end2 == '\0' && granted >= 0 && used >= granted;
	}
	if (!ok) {
		bump(&rl->lease_failures);
		if (current)
			enter_fallback(rl, e, err ? err->code : "unexpected_answer");
	} else if (e && e->window_start == l->window_start) {
		/* also a late answer after the lease timed out: the database
		 * counted these units, so they are ours to use */
		e->available += granted;
		if (used > e->db_used)
			e->db_used = used;
		if (used >= l->limit)
			e->exhausted = true;
	}
	/* else: the window passed while the statement ran; its grant is lost */
	free(l);
	if (current)
		serve_waiters(rl, e);
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
	gw_rl_t *rl = arg;
	struct timespec now;
	struct lease *l;

	clock_gettime(CLOCK_MONOTONIC, &now);
	while ((l = TAILQ_FIRST(&rl->timeq)) != NULL &&
	       (l->deadline.tv_sec < now.tv_sec ||
		(l->deadline.tv_sec == now.tv_sec && l->deadline.tv_nsec <= now.tv_nsec))) {
		rl_key_t *e;

		TAILQ_REMOVE(&rl->timeq, l, timeq);
		l->timing = false;
		e = key_find(rl, l->key, l->keylen, l->window_s, l->hash);
		if (e == NULL || e->leasing != l)
			continue;
		/* the database is too slow to wait for: answer locally; the
		 * statement stays in the pool and its answer is still used */
		e->leasing = NULL;
		bump(&rl->lease_failures);
		enter_fallback(rl, e, "lease_timeout");
		serve_waiters(rl, e);
	}
	arm_lease_timer(rl);
}

static void cleanup_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	if (err == NULL && res)
		mf_debug("ratelimit", "old windows deleted", MF_S("rows", PQcmdTuples((PGresult *)res)));
	/* failures were logged by the pool; the next run tries again */
}

static void on_cleanup_timer(evutil_socket_t fd, short what, void *arg)
{
	/* one run per process per interval, whichever worker gets here first */
	static _Atomic long long last_run;
	struct timeval every = { CLEANUP_EVERY_S, 0 };
	gw_rl_t *rl = arg;
	long long now = (long long)time(NULL), prev = atomic_load(&last_run);
	char cutoff[24];
	const char *params[1] = { cutoff };

	evtimer_add(rl->cleanup_timer, &every);
	if ((prev != 0 && now - prev < CLEANUP_EVERY_S) || !atomic_compare_exchange_strong(&last_run, &prev, now))
		return;
	snprintf(cutoff, sizeof(cutoff), "%lld", now - 3600);
	if (mf_pg_query(rl->pg, cleanup_sql, 1, params, cleanup_done, NULL) < 0)
		mf_debug("ratelimit", "cleanup not sent");
}

gw_rl_t *gw_rl_new(struct event_base *base, mf_pg_pool_t *pg, int sharers)
{
	gw_rl_t *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	rl->base = base;
	rl->pg = pg;
	rl->sharers = sharers > 0 ? sharers : 1;
	rl->max_keys = GW_RL_DEFAULT_MAX_KEYS;
	rl->nbuckets = 64;
	rl->buckets = calloc(rl->nbuckets, sizeof(*rl->buckets));
	TAILQ_INIT(&rl->lru);
	TAILQ_INIT(&rl->leases);
	TAILQ_INIT(&rl->timeq);
	if (rl->buckets == NULL || seed(rl->hkey, sizeof(rl->hkey)) < 0)
		goto fail;
	if (pg) {
		struct timeval first = { CLEANUP_FIRST_S, 0 };

		rl->lease_timer = evtimer_new(base, on_lease_timer, rl);
		rl->cleanup_timer = evtimer_new(base, on_cleanup_timer, rl);
		if (rl->lease_timer == NULL || rl->cleanup_timer == NULL || evtimer_add(rl->cleanup_timer, &first) < 0)
			goto fail;
	}
	return rl;
fail:
	gw_rl_free(rl);
	return NULL;
}

void gw_rl_set_max_keys(gw_rl_t *rl, int max_keys)
{
	rl->max_keys = max_keys > 0 ? max_keys : 1;
}

void gw_rl_free(gw_rl_t *rl)
{
	time_t now = time(NULL);
	rl_key_t *e;
	struct lease *l;

	if (rl == NULL)
		return;
	rl->freeing = true;	/* callbacks below that call back in get ADMIT / nothing */
	TAILQ_FOREACH(e, &rl->lru, lru) {
		while (e->nwait > 0) {
			struct waiter *w = waiter_pop(rl, e);
			gw_rl_result_t res;

			fill_res(rl, e, now, &res);
			bump(&rl->admitted);
			w->cb(GW_RL_ADMIT, &res, w->arg);
			free(w);
		}
	}
	TAILQ_FOREACH(l, &rl->leases, all)
		l->rl = NULL;	/* lease_done frees it when the pool answers */
	while ((e = TAILQ_FIRST(&rl->lru)) != NULL) {
		TAILQ_REMOVE(&rl->lru, e, lru);
		free(e);
	}
	if (rl->lease_timer)
		event_free(rl->lease_timer);
	if (rl->cleanup_timer)
		event_free(rl->cleanup_timer);
	free(rl->buckets);
	free(rl);
}

enum gw_rl_outcome gw_rl_acquire_at(gw_rl_t *rl, const char *key, int limit, int window_s, time_t now,
				    gw_rl_result_t *res, gw_rl_cb cb, void *arg)
{
	size_t keylen = key ? strnlen(key, GW_RL_MAX_KEY + 1) : 0;
	uint64_t hash;
	enum decision d;
	struct waiter *w;
	rl_key_t *e;

	if (keylen == 0 || keylen > GW_RL_MAX_KEY || limit < 1 || window_s < 1 || window_s > 3600 || cb == NULL) {
		*res = (gw_rl_result_t){ limit > 0 ? limit : 0, 0, 1 };
		return GW_RL_REJECT;
	}
	if (rl->freeing) {
		*res = (gw_rl_result_t){ limit, limit, 1 };
		return GW_RL_ADMIT;
	}
	evict_idle(rl, now);
	hash = key_hash(rl, key, keylen, window_s);
	e = key_find(rl, key, keylen, window_s, hash);
	if (e == NULL && (e = key_create(rl, key, keylen, window_s, hash)) == NULL) {
		/* out of memory, or every key busy: do not stop the service */
		int64_t reset = window_of(now, window_s) + window_s - (int64_t)now;

		*res = (gw_rl_result_t){ limit, limit, (int)(reset < 1 ? 1 : reset) };
		bump(&rl->admitted);
		return GW_RL_ADMIT;
	}
	key_roll(e, now);
	e->limit = limit;
	e->last_used = now;
	if (TAILQ_FIRST(&rl->lru) != e) {
		TAILQ_REMOVE(&rl->lru, e, lru);
		TAILQ_INSERT_HEAD(&rl->lru, e, lru);
	}
	if (e->nwait == 0) {	/* else: first come, first served */
		d = decide(rl, e);
		if (d != D_LEASE) {
			fill_res(rl, e, now, res);
			count(rl, d);
			return d == D_ADMIT ? GW_RL_ADMIT : GW_RL_REJECT;
		}
	}
	if (e->nwait >= GW_RL_MAX_WAITERS) {
		fill_res(rl, e, now, res);
		bump(&rl->rejected);
		return GW_RL_REJECT;
	}
	w = malloc(sizeof(*w));
	if (w == NULL) {
		fill_res(rl, e, now, res);
		bump(&rl->admitted);
		return GW_RL_ADMIT;
	}
	*w = (struct waiter){ NULL, cb, arg };
	if (e->wtail)
		e->wtail->next = w;
	else
		e->whead = w;
	e->wtail = w;
	e->nwait++;
	rl->waiting++;
	atomic_store_explicit(&rl->awaiting, rl->waiting, memory_order_relaxed);
	/* waiters always have a lease in flight or are being served; this is
	 * the first one (nwait was 0), so it is alone in the queue */
	if (e->leasing == NULL && !e->serving && send_lease(rl, e) < 0) {
		free(waiter_pop(rl, e));
		enter_fallback(rl, e, "out_of_memory");
		d = decide(rl, e);
		fill_res(rl, e, now, res);
		count(rl, d);
		return d == D_ADMIT ? GW_RL_ADMIT : GW_RL_REJECT;
	}
	return GW_RL_PENDING;
}

enum gw_rl_outcome gw_rl_acquire(gw_rl_t *rl, const char *key, int limit, int window_s,
				 gw_rl_result_t *res, gw_rl_cb cb, void *arg)
{
	return gw_rl_acquire_at(rl, key, limit, window_s, time(NULL), res, cb, arg);
}

void gw_rl_refund_at(gw_rl_t *rl, const char *key, int window_s, time_t now)
{
	size_t keylen = key ? strnlen(key, GW_RL_MAX_KEY + 1) : 0;
	rl_key_t *e;

	if (rl->freeing || keylen == 0 || keylen > GW_RL_MAX_KEY || window_s < 1 || window_s > 3600)
		return;
	e = key_find(rl, key, keylen, window_s, key_hash(rl, key, keylen, window_s));
	if (e == NULL || e->window_start != window_of(now, window_s) || e->taken <= 0)
		return;
	e->taken--;
	/* a leased unit goes back to the lease; a local one back to the local budget */
	if (rl->pg && !e->fallback)
		e->available++;
	bump(&rl->refunded);
}

void gw_rl_refund(gw_rl_t *rl, const char *key, int window_s)
{
	gw_rl_refund_at(rl, key, window_s, time(NULL));
}

void gw_rl_stats(const gw_rl_t *rl, gw_rl_stats_t *out)
{
	gw_rl_t *m = (gw_rl_t *)rl;

	out->admitted = atomic_load_explicit(&m->admitted, memory_order_relaxed);
	out->rejected = atomic_load_explicit(&m->rejected, memory_order_relaxed);
	out->refunded = atomic_load_explicit(&m->refunded, memory_order_relaxed);
	out->leases = atomic_load_explicit(&m->leases_sent, memory_order_relaxed);
	out->lease_failures = atomic_load_explicit(&m->lease_failures, memory_order_relaxed);
	out->keys = atomic_load_explicit(&m->akeys, memory_order_relaxed);
	out->waiting = atomic_load_explicit(&m->awaiting, memory_order_relaxed);
}
