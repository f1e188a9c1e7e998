/*
 * pgasync.c - the per-thread asynchronous PostgreSQL pool (see pg.h).
 *
 * Each connection is a small state machine driven by libevent events on
 * libpq's socket: DOWN -> CONNECTING (PQconnectPoll) -> IDLE <-> BUSY
 * (PQsendQueryParams, PQflush, PQconsumeInput/PQgetResult), with PINNED
 * while a transaction holds it.  Failures never surface synchronously:
 * every outcome reaches the caller through its callback from the loop, so
 * callers have one code path.  Statement SQL is constant text the caller
 * keeps alive (string literals); parameter values are copied.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/pg.h"

enum { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };
enum { K_QUERY, K_BEGIN, K_END };

typedef struct pgq {
	TAILQ_ENTRY(pgq) link;
	int kind;
	const char *sql;
	int nparams;
	char **params;			/* one block: pointers then strings */
	char *owned_sql;		/* a script's copied text (nparams < 0) */
	mf_pg_cb cb;
	mf_pg_conn_cb conn_cb;
	void *arg;
	struct timespec deadline;
	mf_err_t err;			/* for deferred failures */
	mf_pg_pool_t *pool;
} pgq_t;

TAILQ_HEAD(pgq_list, pgq);

struct mf_pg_conn {
	mf_pg_pool_t *pool;
	PGconn *pg;
	struct event *io, *timer;
	int state;
	bool pinned;			/* inside a transaction owned by a caller */
	bool connected_once;
	pgq_t *cur;
	PGresult *result;		/* last result of the statement in flight */
	PGresult *error;		/* first error result, wins over others */
	int backoff_ms;
};

struct mf_pg_pool {
	struct event_base *base;
	mf_pg_options_t opt;
	char *conninfo;
	int n;
	mf_pg_conn_t *conns;
	struct pgq_list queue;
	int queued;
	struct event *sweep;		/* expires queued statements */
	atomic_ullong queries, errors, reconnects, unavailable;
	atomic_int open, busy, nqueued;
	bool freeing;
	struct timespec last_wake;	/* demand wake-up of a backed-off connection */
};

static void conn_io(evutil_socket_t fd, short what, void *arg);
static void conn_timer(evutil_socket_t fd, short what, void *arg);
static void pool_dispatch(mf_pg_pool_t *p);

static void ms_from_now(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void set_unavailable(mf_pg_pool_t *p, mf_err_t *err)
{
	mf_err_set(err, 503, "database_unavailable", "the database is not reachable; retry later");
	err->retry_after = p->opt.retry_after_s > 0 ? p->opt.retry_after_s : 1;
}

/* Calls a statement's callback with an error and frees it. */
static void q_fail(pgq_t *q, const mf_err_t *err)
{
	if (q->kind == K_BEGIN)
		q->conn_cb(NULL, err, q->arg);
	else if (q->cb)
		q->cb(NULL, err, q->arg);
	free(q->params);
	free(q->owned_sql);
	free(q);
}

static void q_deferred(evutil_socket_t fd, short what, void *arg)
{
	pgq_t *q = arg;

	q_fail(q, &q->err);
}

/* Fails q from the loop, never from inside the caller's own call. */
static int q_fail_later(mf_pg_pool_t *p, pgq_t *q, const mf_err_t *err)
{
	struct timeval zero = { 0, 0 };

	q->err = *err;
	if (event_base_once(p->base, -1, EV_TIMEOUT, q_deferred, q, &zero) < 0) {
		free(q->params);
		free(q->owned_sql);
		free(q);
		return -1;
	}
	return 0;
}

static pgq_t *q_new(mf_pg_pool_t *p, int kind, const char *sql, int nparams, const char *const *params)
{
	pgq_t *q = calloc(1, sizeof(*q));
	size_t total = 0;
	char *s;

	if (q == NULL)
		return NULL;
	q->kind = kind;
	q->sql = sql;
	q->pool = p;
	q->nparams = nparams;
	if (nparams > 0) {
		for (int i = 0; i < nparams; i++)
			total += params[i] ? strlen(params[i]) + 1 : 0;
		q->params = malloc((size_t)nparams * sizeof(char *) + total);
		if (q->params == NULL) {
			free(q);
			return NULL;
		}
		s = (char *)(q->params + nparams);
		for (int i = 0; i < nparams; i++) {
			if (params[i] == NULL) {
				q->params[i] = NULL;	/* SQL NULL */
				continue;
			}
			q->params[i] = s;
			strcpy(s, params[i]);
			s += strlen(s) + 1;
		}
	}
	ms_from_now(&q->deadline, p->opt.query_timeout_ms > 0 ? p->opt.query_timeout_ms : 15000);
	return q;
}

static bool pool_has_up(const mf_pg_pool_t *p)
{
	for (int i = 0; i < p->n; i++)
		if (p->conns[i].state == C_IDLE || p->conns[i].state == C_BUSY)
			return true;
	return false;
}

static bool pool_has_connecting(const mf_pg_pool_t *p)
{
	for (int i = 0; i < p->n; i++)
		if (p->conns[i].state == C_CONNECTING)
			return true;
	return false;
}

bool mf_pg_pool_up(const mf_pg_pool_t *p)
{
	return p && pool_has_up(p);
}

/* ---- connection lifecycle ---- */

static void watch(mf_pg_conn_t *c, short what, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	event_del(c->io);
	event_assign(c->io, c->pool->base, PQsocket(c->pg), what, conn_io, c);
	event_add(c->io, NULL);
	if (timeout_ms > 0)
		event_add(c->timer, &tv);
}

static void notice_cb(void *arg, const char *msg)
{
	mf_debug("pg", "notice", MF_S("message", msg));
}

static void schedule_reconnect(mf_pg_conn_t *c)
{
	struct timeval tv;
	int ms = c->backoff_ms ? c->backoff_ms : 100;
	int jitter = ms / 5;

	ms += jitter ? (rand() % (2 * jitter + 1)) - jitter : 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 200;
	if (c->backoff_ms > 5000)
		c->backoff_ms = 5000;
	event_add(c->timer, &tv);
}

static void conn_start(mf_pg_conn_t *c)
{
	mf_pg_pool_t *p = c->pool;
	const char *const keys[] = { "dbname", "application_name", NULL };
	const char *const vals[] = { p->conninfo, "mspflow", NULL };

	c->pg = PQconnectStartParams(keys, vals, 1);
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD || PQsocket(c->pg) < 0) {
		PQfinish(c->pg);
		c->pg = NULL;
		c->state = C_DOWN;
		schedule_reconnect(c);
		return;
	}
	PQsetNoticeProcessor(c->pg, notice_cb, NULL);
	c->state = C_CONNECTING;
	watch(c, EV_WRITE, p->opt.connect_timeout_ms > 0 ? p->opt.connect_timeout_ms : 5000);
}

/* The connection broke (or a statement timed out): fail what it carried,
 * drop it and try again later. */
static void conn_broken(mf_pg_conn_t *c, const mf_err_t *why)
{
	mf_pg_pool_t *p = c->pool;
	bool was_up = c->state == C_IDLE || c->state == C_BUSY;
	pgq_t *q = c->cur;
	mf_err_t err;

	if (c->pg && was_up && !p->freeing)
		mf_warn("pg", "connection lost", MF_S("error", PQerrorMessage(c->pg)));
	event_del(c->io);
	event_del(c->timer);
	PQclear(c->result);
	PQclear(c->error);
	c->result = c->error = NULL;
	PQfinish(c->pg);
	c->pg = NULL;
	if (was_up)
		atomic_fetch_sub(&p->open, 1);
	if (c->state == C_BUSY)
		atomic_fetch_sub(&p->busy, 1);
	c->state = C_DOWN;
	c->cur = NULL;
	if (q) {
		if (why)
			err = *why;
		else
			set_unavailable(p, &err);
		atomic_fetch_add(&p->errors, 1);
		q_fail(q, &err);
	}
	if (p->freeing)
		return;
	if (!c->pinned)
		schedule_reconnect(c);
	/* nobody left to run the queue: tell the waiters now */
	if (!pool_has_up(p) && !pool_has_connecting(p)) {
		set_unavailable(p, &err);
		while (!TAILQ_EMPTY(&p->queue)) {
			pgq_t *x = TAILQ_FIRST(&p->queue);

			TAILQ_REMOVE(&p->queue, x, link);
			p->queued--;
			atomic_fetch_sub(&p->nqueued, 1);
			atomic_fetch_add(&p->unavailable, 1);
			q_fail(x, &err);
		}
	}
}

static void map_error(const PGresult *res, mf_err_t *err)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (state == NULL)
		state = "XX000";
	if (!strcmp(state, "23505") || !strcmp(state, "23503"))
		mf_err_set(err, 409, "conflict", "the change conflicts with existing data");
	else if (!strcmp(state, "57014"))
		mf_err_set(err, 504, "query_timeout", "the database statement took too long");
	else if (!strcmp(state, "40001") || !strcmp(state, "40P01")) {
		mf_err_set(err, 503, "retry", "a concurrent change interfered; retry");
		err->retry_after = 1;
	} else if (!strncmp(state, "08", 2) || !strcmp(state, "57P01") || !strcmp(state, "57P03"))
		mf_err_set(err, 503, "database_unavailable", "the database is not reachable; retry later");
	else
		mf_err_set(err, 500, "database_error", "a database statement failed");
	snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state);
	/* the server's message names the problem and, except for data
	 * exceptions (class 22, e.g. "invalid input syntax for type integer:
	 * <value>"), not the values; those may be secrets, so keep them out */
	mf_warn("pg", "statement failed", MF_S("sqlstate", state),
		MF_S("error", strncmp(state, "22", 2) == 0 ? "data exception (value withheld)"
			      : PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)));
}

/* A statement finished on c: deliver it and make c available again. */
static void conn_done(mf_pg_conn_t *c)
{
	mf_pg_pool_t *p = c->pool;
	pgq_t *q = c->cur;
	PGresult *res = c->error ? c->error : c->result;
	mf_err_t err;
	bool ok = res && (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK);

	event_del(c->timer);
	c->cur = NULL;
	c->state = C_IDLE;
	atomic_fetch_sub(&p->busy, 1);
	if (q->kind == K_BEGIN) {
		if (ok)
			c->pinned = true;
		else {
			map_error(res, &err);
			atomic_fetch_add(&p->errors, 1);
		}
		q->conn_cb(ok ? c : NULL, ok ? NULL : &err, q->arg);
	} else {
		bool rolled_back = false;

		if (q->kind == K_END) {
			c->pinned = false;
			/* COMMIT of a transaction that already failed succeeds with
			 * the tag ROLLBACK: the caller must not believe it committed */
			rolled_back = ok && strcmp(q->sql, "COMMIT") == 0 && strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
		}
		if (ok && !rolled_back) {
			if (q->cb)
				q->cb(res, NULL, q->arg);
		} else {
			if (rolled_back)
				mf_err_set(&err, 500, "database_error", "the transaction was rolled back after an earlier error");
			else if (res)
				map_error(res, &err);
			else
				mf_err_set(&err, 500, "database_error", "the database returned no result");
			atomic_fetch_add(&p->errors, 1);
			if (q->cb)
				q->cb(NULL, &err, q->arg);
		}
	}
	PQclear(c->result);
	PQclear(c->error);
	c->result = c->error = NULL;
	free(q->params);
	free(q->owned_sql);
	free(q);
	if (!c->pinned)
		pool_dispatch(p);
}

static void conn_send(mf_pg_conn_t *c, pgq_t *q)
{
	mf_pg_pool_t *p = c->pool;
	struct timespec now;
	long ms;

	c->cur = q;
	c->state = C_BUSY;
	atomic_fetch_add(&p->busy, 1);
	atomic_fetch_add(&p->queries, 1);
	if (q->nparams < 0 ? !PQsendQuery(c->pg, q->sql)
	    : !PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, (const char *const *)q->params, NULL, NULL, 0)) {
		mf_err_t err;

		/* we may be inside the caller's mf_pg_query(): its callback must
		 * run from the loop, so detach the statement before dropping c */
		c->cur = NULL;
		set_unavailable(p, &err);
		atomic_fetch_add(&p->errors, 1);
		if (q_fail_later(p, q, &err) < 0)
			mf_error("pg", "out of memory: a failed statement lost its callback");
		conn_broken(c, NULL);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (q->deadline.tv_sec - now.tv_sec) * 1000 + (q->deadline.tv_nsec - now.tv_nsec) / 1000000;
	watch(c, PQflush(c->pg) == 1 ? EV_WRITE : EV_READ, ms > 1 ? (int)ms : 1);
}

static void conn_io(evutil_socket_t fd, short what, void *arg)
{
	mf_pg_conn_t *c = arg;
	mf_pg_pool_t *p = c->pool;

	if (c->state == C_CONNECTING) {
		switch (PQconnectPoll(c->pg)) {
		case PGRES_POLLING_READING:
			watch(c, EV_READ, 0);
			return;
		case PGRES_POLLING_WRITING:
			watch(c, EV_WRITE, 0);
			return;
		case PGRES_POLLING_OK:
			event_del(c->timer);
			if (PQsetnonblocking(c->pg, 1) != 0) {
				conn_broken(c, NULL);
				return;
			}
			if (c->connected_once)
				atomic_fetch_add(&p->reconnects, 1);
			if (c->connected_once || c->backoff_ms > 200)
				mf_info("pg", "connected");
			c->connected_once = true;
			c->backoff_ms = 0;
			mf_debug("pg", "connection up", MF_I("queued", p->queued));
			c->state = C_IDLE;
			atomic_fetch_add(&p->open, 1);
			/* watch the idle connection so a server restart is noticed
			 * before the next statement is sent on a dead socket */
			watch(c, EV_READ, 0);
			pool_dispatch(p);
			return;
		default:
			mf_debug("pg", "connect failed", MF_S("error", PQerrorMessage(c->pg)));
			conn_broken(c, NULL);
			return;
		}
	}
	if (c->state != C_BUSY) {
		/* idle connection readable: a notice, or the server closed it */
		if (PQconsumeInput(c->pg) == 0 || PQstatus(c->pg) == CONNECTION_BAD)
			conn_broken(c, NULL);
		else
			event_add(c->io, NULL);
		return;
	}
	if (what & EV_WRITE) {
		int f = PQflush(c->pg);

		if (f < 0) {
			conn_broken(c, NULL);
			return;
		}
		event_del(c->io);
		event_assign(c->io, p->base, PQsocket(c->pg), f == 1 ? EV_WRITE : EV_READ, conn_io, c);
		event_add(c->io, NULL);
		return;
	}
	if (PQconsumeInput(c->pg) == 0) {
		conn_broken(c, NULL);
		return;
	}
	while (!PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);

		if (r == NULL) {
			event_del(c->io);
			/* keep watching for EOF while idle */
			event_assign(c->io, p->base, PQsocket(c->pg), EV_READ, conn_io, c);
			conn_done(c);
			if (c->state == C_IDLE && c->pg)
				event_add(c->io, NULL);
			return;
		}
		if (PQresultStatus(r) == PGRES_FATAL_ERROR && c->error == NULL) {
			c->error = r;
		} else {
			PQclear(c->result);
			c->result = r;
		}
	}
	/* the rest of the answer has not arrived yet: keep waiting */
	event_add(c->io, NULL);
}

static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
	mf_pg_conn_t *c = arg;
	mf_err_t err;

	switch (c->state) {
	case C_DOWN:
		if (!c->pinned)
			conn_start(c);
		break;
	case C_CONNECTING:
		mf_debug("pg", "connect timed out");
		conn_broken(c, NULL);
		break;
	case C_BUSY:
		/* PQcancel would block the loop; dropping the connection makes
		 * the server abandon the statement instead */
		mf_err_set(&err, 504, "query_timeout", "the database statement took too long");
		mf_warn("pg", "statement timed out; reconnecting");
		conn_broken(c, &err);
		break;
	}
}

/* ---- pool ---- */

static void sweep_queue(evutil_socket_t fd, short what, void *arg)
{
	mf_pg_pool_t *p = arg;
	struct timespec now;
	pgq_t *q, *next;
	mf_err_t err;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (q = TAILQ_FIRST(&p->queue); q; q = next) {
		next = TAILQ_NEXT(q, link);
		if (q->deadline.tv_sec > now.tv_sec ||
		    (q->deadline.tv_sec == now.tv_sec && q->deadline.tv_nsec > now.tv_nsec))
			continue;
		TAILQ_REMOVE(&p->queue, q, link);
		p->queued--;
		atomic_fetch_sub(&p->nqueued, 1);
		mf_err_set(&err, 504, "query_timeout", "the database was too busy to run the statement in time");
		q_fail(q, &err);
	}
}

static void pool_dispatch(mf_pg_pool_t *p)
{
	for (int i = 0; i < p->n && !TAILQ_EMPTY(&p->queue); i++) {
		mf_pg_conn_t *c = &p->conns[i];
		pgq_t *q;

		if (c->state != C_IDLE || c->pinned)
			continue;
		q = TAILQ_FIRST(&p->queue);
		TAILQ_REMOVE(&p->queue, q, link);
		p->queued--;
		atomic_fetch_sub(&p->nqueued, 1);
		conn_send(c, q);
	}
}

mf_pg_pool_t *mf_pg_pool_new(struct event_base *base, const mf_pg_options_t *opt)
{
	mf_pg_pool_t *p = calloc(1, sizeof(*p));
	struct timeval sweep = { 0, 250000 };

	if (p == NULL)
		return NULL;
	p->base = base;
	p->opt = *opt;
	p->n = opt->size > 0 ? opt->size : 1;
	p->conninfo = strdup(opt->conninfo ? opt->conninfo : "");
	p->conns = calloc((size_t)p->n, sizeof(*p->conns));
	p->sweep = event_new(base, -1, EV_PERSIST, sweep_queue, p);
	TAILQ_INIT(&p->queue);
	if (p->conninfo == NULL || p->conns == NULL || p->sweep == NULL)
		goto fail;
	p->opt.conninfo = p->conninfo;
	for (int i = 0; i < p->n; i++) {
		mf_pg_conn_t *c = &p->conns[i];

		c->pool = p;
		c->io = event_new(base, -1, 0, conn_io, c);
		c->timer = evtimer_new(base, conn_timer, c);
		if (c->io == NULL || c->timer == NULL)
			goto fail;
	}
	event_add(p->sweep, &sweep);
	for (int i = 0; i < p->n; i++)
		conn_start(&p->conns[i]);
	return p;
fail:
	mf_pg_pool_free(p);
	return NULL;
}

void mf_pg_pool_free(mf_pg_pool_t *p)
{
	mf_err_t err;

	if (p == NULL)
		return;
	p->freeing = true;
	set_unavailable(p, &err);
	for (int i = 0; p->conns && i < p->n; i++) {
		mf_pg_conn_t *c = &p->conns[i];

		if (c->pool == NULL)
			continue;
		if (c->io && c->timer)
			conn_broken(c, &err);
		if (c->io)
			event_free(c->io);
		if (c->timer)
			event_free(c->timer);
	}
	while (!TAILQ_EMPTY(&p->queue)) {
		pgq_t *q = TAILQ_FIRST(&p->queue);

		TAILQ_REMOVE(&p->queue, q, link);
		q_fail(q, &err);
	}
	if (p->sweep)
		event_free(p->sweep);
	free(p->conns);
	free(p->conninfo);
	free(p);
}

/* Nothing is up and every connection sleeps in its backoff: a statement
 * arriving now says the database is wanted, so one connection tries at
 * once (at most every 250 ms per pool) instead of at the end of a backoff
 * that may have grown to seconds.  The statement itself still fails fast. */
static void wake_one(mf_pg_pool_t *p)
{
	struct timespec now;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - p->last_wake.tv_sec) * 1000 + (now.tv_nsec - p->last_wake.tv_nsec) / 1000000;
	if (p->last_wake.tv_sec != 0 && ms < 250)
		return;
	for (int i = 0; i < p->n; i++) {
		mf_pg_conn_t *c = &p->conns[i];

		if (c->state == C_DOWN && !c->pinned && evtimer_pending(c->timer, NULL)) {
			p->last_wake = now;
			event_del(c->timer);
			conn_start(c);
			return;
		}
	}
}

static int submit(mf_pg_pool_t *p, pgq_t *q)
{
	mf_err_t err;

	if (!pool_has_up(p) && !pool_has_connecting(p)) {
		if (!p->freeing)
			wake_one(p);
		atomic_fetch_add(&p->unavailable, 1);
		set_unavailable(p, &err);
		return q_fail_later(p, q, &err);
	}
	if (p->opt.max_queue > 0 && p->queued >= p->opt.max_queue) {
		mf_err_set(&err, 503, "database_busy", "too many statements are waiting; retry later");
		err.retry_after = 1;
		return q_fail_later(p, q, &err);
	}
	TAILQ_INSERT_TAIL(&p->queue, q, link);
	p->queued++;
	atomic_fetch_add(&p->nqueued, 1);
	pool_dispatch(p);
	return 0;
}

int mf_pg_query(mf_pg_pool_t *p, const char *sql, int nparams, const char *const *params,
		mf_pg_cb cb, void *arg)
{
	pgq_t *q = q_new(p, K_QUERY, sql, nparams, params);

	if (q == NULL)
		return -1;
	q->cb = cb;
	q->arg = arg;
	return submit(p, q);
}

int mf_pg_tx_begin(mf_pg_pool_t *p, mf_pg_conn_cb cb, void *arg)
{
	pgq_t *q = q_new(p, K_BEGIN, "BEGIN", 0, NULL);

	if (q == NULL)
		return -1;
	q->conn_cb = cb;
	q->arg = arg;
	return submit(p, q);
}

static int conn_submit(mf_pg_conn_t *c, pgq_t *q)
{
	mf_err_t err;

	if (c->state != C_IDLE || c->cur != NULL) {
		if (c->state == C_DOWN) {
			set_unavailable(c->pool, &err);
			if (q->kind == K_END) {
				/* the transaction died with its connection */
				c->pinned = false;
				schedule_reconnect(c);
			}
		} else {
			mf_err_set(&err, 500, "internal_error", "a statement is already running in this transaction");
		}
		return q_fail_later(c->pool, q, &err);
	}
	conn_send(c, q);
	return 0;
}

int mf_pg_conn_query(mf_pg_conn_t *c, const char *sql, int nparams, const char *const *params,
		     mf_pg_cb cb, void *arg)
{
	pgq_t *q = q_new(c->pool, K_QUERY, sql, nparams, params);

	if (q == NULL)
		return -1;
	q->cb = cb;
	q->arg = arg;
	return conn_submit(c, q);
}

int mf_pg_conn_script(mf_pg_conn_t *c, const char *script, mf_pg_cb cb, void *arg)
{
	pgq_t *q = q_new(c->pool, K_QUERY, NULL, -1, NULL);

	if (q == NULL)
		return -1;
	q->owned_sql = strdup(script);
	if (q->owned_sql == NULL) {
		free(q);
		return -1;
	}
	q->sql = q->owned_sql;
	q->cb = cb;
	q->arg = arg;
	return conn_submit(c, q);
}

int mf_pg_tx_end(mf_pg_conn_t *c, bool commit, mf_pg_cb cb, void *arg)
{
	pgq_t *q = q_new(c->pool, K_END, commit ? "COMMIT" : "ROLLBACK", 0, NULL);

	if (q == NULL)
		return -1;
	q->cb = cb;
	q->arg = arg;
	return conn_submit(c, q);
}

void mf_pg_pool_stats(const mf_pg_pool_t *p, mf_pg_stats_t *out)
{
	mf_pg_pool_t *m = (mf_pg_pool_t *)p;

	out->queries = atomic_load_explicit(&m->queries, memory_order_relaxed);
	out->errors = atomic_load_explicit(&m->errors, memory_order_relaxed);
	out->reconnects = atomic_load_explicit(&m->reconnects, memory_order_relaxed);
	out->unavailable = atomic_load_explicit(&m->unavailable, memory_order_relaxed);
	out->open = atomic_load_explicit(&m->open, memory_order_relaxed);
	out->busy = atomic_load_explicit(&m->busy, memory_order_relaxed);
	out->queued = atomic_load_explicit(&m->nqueued, memory_order_relaxed);
}

PGresult *mf_pg_exec(PGconn *c, const char *sql, int n, const char *const *params, mf_err_t *err)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
		const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		mf_err_set(err, 500, "database_error", "%s", m ? m : PQerrorMessage(c));
		if (err && state)
			snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state);
		PQclear(r);
		return NULL;
	}
	return r;
}
