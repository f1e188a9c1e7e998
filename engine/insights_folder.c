/*
 * insights_folder.c - the server's insights folder (docs/insights.md,
 * "Folding"): worker 0 of every process that runs the engine moves the
 * facts writers appended to their schema's insights_pending into its
 * rollup, off the writers' path: a writer's statement appends its facts
 * with one plain INSERT and never touches the rollup.
 *
 * A pass walks platform.insights_due (the schemas with pending facts) in
 * name order, one statement per schema (platform.insights_fold_next), so
 * each schema is its own short transaction of at most BATCH facts, sent
 * through the worker's pool (never blocking the loop).  When some schema
 * filled its batch there is a backlog, and the next pass goes at once
 * instead of after the pause.  Several processes share the work: the
 * database skips a schema another folder holds (a try-lock), so no folder
 * ever waits for another.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/pg.h"
#include "core/worker.h"
#include "engine/eng.h"

#define BATCH 5000
#define BATCH_S "5000"

struct eng_folder {
	mf_worker_t *w;
	struct event *ev;
	int every_ms;
	char after[128];	/* the last schema of this pass ("" at its start) */
	bool full;		/* some schema of this pass filled its batch */
	bool busy;		/* a step is on the wire: its callback owns what follows */
	bool closing;		/* closed while busy: the callback frees us */
	bool failing;		/* the last step failed (warn once, not every pass) */
};

static void folder_free(eng_folder_t *f)
{
	if (f->ev)
		event_free(f->ev);
	free(f);
}

static void schedule(eng_folder_t *f, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (event_add(f->ev, &tv) < 0)
		mf_warn("insights", "cannot schedule the next fold");
}

/* the pass is over: start the next one after the pause, or at once when a
 * batch came back full */
static void pass_done(eng_folder_t *f)
{
	long ms = f->full ? 0 : f->every_ms;

	f->after[0] = '\0';
	f->full = false;
	schedule(f, ms);
}

static void folded(const PGresult *res, const mf_err_t *err, void *arg)
{
	eng_folder_t *f = arg;

	f->busy = false;
	if (f->closing) {
		folder_free(f);
		return;
	}
	if (err) {
		if (!f->failing)
			mf_warn("insights", "folding insights facts failed; retrying", MF_S("error", err->detail));
		f->failing = true;
		f->full = false;
		pass_done(f);
		return;
	}
	if (f->failing)
		mf_info("insights", "folding insights facts again");
	f->failing = false;
	if (PQntuples(res) != 1 || PQnfields(res) != 2 || PQgetlength(res, 0, 0) >= (int)sizeof(f->after)) {
		pass_done(f);
		return;
	}
	/* schema names are generated (t_...), far shorter than after[] */
	memcpy(f->after, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0) + 1);
	if (atoll(PQgetvalue(res, 0, 1)) >= BATCH)
		f->full = true;
	schedule(f, 0);		/* the next schema of this pass */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	eng_folder_t *f = arg;
	const char *params[2] = { BATCH_S, f->after };

	(void)fd;
	(void)what;
	if (!mf_pg_pool_up(f->w->pg)) {
		f->after[0] = '\0';
		schedule(f, f->every_ms);
		return;
	}
	if (mf_pg_query(f->w->pg, "SELECT schema_name, folded FROM platform.insights_fold_next($1::int, $2)",
			2, params, folded, f) < 0) {
		mf_debug("insights", "fold step not sent");
		f->after[0] = '\0';
		schedule(f, f->every_ms);
		return;
	}
	f->busy = true;
}

eng_folder_t *eng_folder_new(mf_worker_t *w, int every_ms)
{
	eng_folder_t *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->w = w;
	f->every_ms = every_ms;
	f->ev = evtimer_new(w->base, on_timer, f);
	if (f->ev == NULL) {
		folder_free(f);
		return NULL;
	}
	schedule(f, every_ms);
	return f;
}

void eng_folder_close(eng_folder_t *f)
{
	if (f == NULL)
		return;
	event_del(f->ev);
	if (f->busy)
		f->closing = true;	/* freed by folded(), when the pool fails the step */
	else
		folder_free(f);
}
