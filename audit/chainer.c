/*
 * chainer.c - the server's audit chainer (audit.h, docs/audit.md): worker 0
 * of every process that runs the engine links committed, unchained audit
 * entries into their tenants' hash chains every EVERY_MS
 * (platform.audit_chain_due), off the writers' path: writers insert plain
 * rows and never wait for the chain.
 *
 * One statement at a time, sent through the worker's pool (never blocking
 * the loop); each is its own short transaction of at most BATCH entries.
 * When a pass fills its batch there is a backlog, and the next pass goes
 * at once instead of after the pause.  Several processes share the work:
 * the database skips a tenant another chainer holds (a try-lock), so no
 * chainer ever waits for another.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "audit/audit.h"
#include "core/log.h"
#include "core/pg.h"
#include "core/worker.h"

#define EVERY_MS 500
#define BATCH 2000
#define BATCH_S "2000"

struct audit_chainer {
	mf_worker_t *w;
	struct event *ev;
	bool busy;		/* a pass is on the wire: its callback owns what follows */
	bool closing;		/* closed while busy: the callback frees us */
	bool failing;		/* the last pass failed (warn once, not every pass) */
};

static void chainer_free(audit_chainer_t *c)
{
	if (c->ev)
		event_free(c->ev);
	free(c);
}

static void schedule(audit_chainer_t *c, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (event_add(c->ev, &tv) < 0)
		mf_warn("audit", "cannot schedule the next chain pass");
}

static void chained(const PGresult *res, const mf_err_t *err, void *arg)
{
	audit_chainer_t *c = arg;
	long long n = 0;

	c->busy = false;
	if (c->closing) {
		chainer_free(c);
		return;
	}
	if (err) {
		if (!c->failing)
			mf_warn("audit", "chaining audit entries failed; retrying", MF_S("error", err->detail));
		c->failing = true;
	} else {
		if (c->failing)
			mf_info("audit", "chaining audit entries again");
		c->failing = false;
		if (PQntuples(res) == 1)
			n = atoll(PQgetvalue(res, 0, 0));
	}
	/* a full batch: more is waiting, go on at once */
	schedule(c, n >= BATCH ? 0 : EVERY_MS);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	audit_chainer_t *c = arg;
	const char *params[1] = { BATCH_S };

	if (!mf_pg_pool_up(c->w->pg)) {
		schedule(c, EVERY_MS);
		return;
	}
	if (mf_pg_query(c->w->pg, "SELECT platform.audit_chain_due($1::int)", 1, params, chained, c) < 0) {
		mf_debug("audit", "chain pass not sent");
		schedule(c, EVERY_MS);
		return;
	}
	c->busy = true;
}

audit_chainer_t *audit_chainer_new(mf_worker_t *w)
{
	audit_chainer_t *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->w = w;
	c->ev = evtimer_new(w->base, on_timer, c);
	if (c->ev == NULL) {
		chainer_free(c);
		return NULL;
	}
	schedule(c, EVERY_MS);
	return c;
}

void audit_chainer_close(audit_chainer_t *c)
{
	if (c == NULL)
		return;
	event_del(c->ev);
	if (c->busy)
		c->closing = true;	/* freed by chained(), when the pool fails the pass */
	else
		chainer_free(c);
}
