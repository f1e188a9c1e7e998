/*
 * prune.c - the server's periodic audit retention (audit.h): worker 0 of
 * every process that runs the engine asks the database now and then to
 * seal and delete entries past their tenant's retention.audit
 * (platform.audit_prune_due).  Several processes may do it at once: the
 * database serialises sealing per tenant, and a second pass finds nothing
 * left to do.  Each pass deletes at most BATCH entries per tenant, so one
 * pass stays short however much is due; the rest goes on the next one.
 */
#include <stdlib.h>

#include <event2/event.h>

#include "audit/audit.h"
#include "core/log.h"
#include "core/pg.h"
#include "core/worker.h"

#define FIRST_S 30
#define EVERY_S 600
#define BATCH "5000"

struct audit_pruner {
	mf_worker_t *w;
	struct event *ev;
};

static void pruned(const PGresult *res, const mf_err_t *err, void *arg)
{
	if (err)
		mf_warn("audit", "pruning failed", MF_S("error", err->detail));
	else if (PQntuples(res) == 1 && atoll(PQgetvalue(res, 0, 0)) > 0)
		mf_info("audit", "sealed and pruned audit entries past retention",
			MF_I("entries", atoll(PQgetvalue(res, 0, 0))));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	audit_pruner_t *p = arg;
	struct timeval every = { EVERY_S, 0 };
	const char *params[1] = { BATCH };

	if (event_add(p->ev, &every) < 0)
		mf_warn("audit", "cannot schedule the next pruning");
	if (mf_pg_pool_up(p->w->pg) &&
	    mf_pg_query(p->w->pg, "SELECT platform.audit_prune_due($1::int)", 1, params, pruned, NULL) < 0)
		mf_debug("audit", "pruning not sent");
}

audit_pruner_t *audit_pruner_new(mf_worker_t *w)
{
	audit_pruner_t *p = calloc(1, sizeof(*p));
	struct timeval first = { FIRST_S, 0 };

	if (p == NULL)
		return NULL;
	p->w = w;
	p->ev = evtimer_new(w->base, on_timer, p);
	if (p->ev == NULL || evtimer_add(p->ev, &first) < 0) {
		audit_pruner_free(p);
		return NULL;
	}
	return p;
}

void audit_pruner_free(audit_pruner_t *p)
{
	if (p == NULL)
		return;
	if (p->ev)
		event_free(p->ev);
	free(p);
}
