/*
 * module.c - the engine's process and worker state (engine.h).
 */
#include <stdlib.h>

#include "audit/audit.h"
#include "core/worker.h"
#include "engine/eng.h"

eng_t *eng_new(const mf_config_t *cfg, mf_err_t *err)
{
	eng_t *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	e->cfg = cfg;
	return e;
}

void eng_free(eng_t *e)
{
	free(e);
}

int eng_routes_add(eng_t *e, struct tn *tn, gw_router_t *api)
{
	if (eng_api_routes(e, tn, api) < 0 || eng_hooks_routes(e, tn, api) < 0)
		return -1;
	return 0;
}

eng_worker_t *eng_worker_new(eng_t *e, struct mf_worker *w, bool run_engine, mf_err_t *err)
{
	eng_worker_t *ew = calloc(1, sizeof(*ew));

	if (ew == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	ew->e = e;
	ew->w = w;
	if (run_engine) {
		ew->runner = eng_runner_new(ew, err);
		ew->outbox = ew->runner ? eng_outbox_new(ew, err) : NULL;
		/* the maintenance that is no step of a run: the audit chain
		 * and its retention, the insights rollups */
		bool fold = w->index == 0 && e->cfg->insights_fold_ms > 0;

		if (w->index == 0) {
			ew->pruner = audit_pruner_new(w);
			ew->chainer = audit_chainer_new(w);
			if (fold)
				ew->folder = eng_folder_new(w, e->cfg->insights_fold_ms);
			if (ew->pruner == NULL || ew->chainer == NULL || (fold && ew->folder == NULL))
				mf_err_set(err, 500, "out_of_memory", "out of memory");
		}
		if (ew->runner == NULL || ew->outbox == NULL ||
		    (w->index == 0 && (ew->pruner == NULL || ew->chainer == NULL)) || (fold && ew->folder == NULL)) {
			eng_worker_free(ew);
			return NULL;
		}
	}
	return ew;
}

void eng_worker_close(eng_worker_t *ew)
{
	if (ew) {
		audit_pruner_free(ew->pruner);
		ew->pruner = NULL;
		audit_chainer_close(ew->chainer);
		ew->chainer = NULL;
		eng_folder_close(ew->folder);
		ew->folder = NULL;
		eng_runner_close(ew->runner);
		eng_outbox_close(ew->outbox);
	}
}

void eng_worker_free(eng_worker_t *ew)
{
	if (ew == NULL)
		return;
	audit_pruner_free(ew->pruner);
	audit_chainer_close(ew->chainer);
	eng_folder_close(ew->folder);
	eng_outbox_free(ew->outbox);
	eng_runner_free(ew->runner);
	free(ew);
}

void eng_worker_stats(const eng_worker_t *ew, eng_stats_t *out)
{
	*out = (eng_stats_t){ 0 };
	if (ew && ew->runner)
		eng_runner_stats(ew->runner, out);
	if (ew && ew->outbox)
		eng_outbox_stats(ew->outbox, out);
}
