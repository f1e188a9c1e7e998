/*
 * offload.c - the thread pool of offload.h: one mutex-protected FIFO and a
 * condition variable; jobs are rare (logins, password changes) so nothing
 * smarter is needed.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/offload.h"

#define OFFLOAD_MAX_QUEUE 1024

typedef struct job {
	struct job *next;
	struct event_base *base;
	void (*work)(void *);
	void (*done)(void *);
	void *arg;
} job_t;

struct mf_offload {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	job_t *head, *tail;
	int queued, running, nthreads;
	bool stopping;
	pthread_t *threads;
};

static void job_done(evutil_socket_t fd, short what, void *arg)
{
	job_t *j = arg;

	j->done(j->arg);
	free(j);
}

static void *offload_main(void *arg)
{
	mf_offload_t *o = arg;

	for (;;) {
		job_t *j;

		pthread_mutex_lock(&o->lock);
		while (o->head == NULL && !o->stopping)
			/* the same condition also wakes wait_idle() callers */
			pthread_cond_wait(&o->cond, &o->lock);
		j = o->head;
		if (j == NULL) {
			pthread_mutex_unlock(&o->lock);
			return NULL;
		}
		o->head = j->next;
		if (o->head == NULL)
			o->tail = NULL;
		o->queued--;
		o->running++;
		pthread_mutex_unlock(&o->lock);
		j->work(j->arg);
		if (event_base_once(j->base, -1, EV_TIMEOUT, job_done, j, NULL) < 0) {
			/* the loop is gone (shutdown): finish here instead */
			mf_warn("offload", "event loop gone; completing a job off-loop");
			j->done(j->arg);
			free(j);
		}
		pthread_mutex_lock(&o->lock);
		o->running--;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->lock);
	}
}

void mf_offload_wait_idle(mf_offload_t *o)
{
	if (o == NULL)
		return;
	pthread_mutex_lock(&o->lock);
	while (o->head != NULL || o->running > 0)
		pthread_cond_wait(&o->cond, &o->lock);
	pthread_mutex_unlock(&o->lock);
}

mf_offload_t *mf_offload_new(int threads)
{
	mf_offload_t *o = calloc(1, sizeof(*o));

	if (o == NULL)
		return NULL;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
	o->threads = calloc((size_t)threads, sizeof(pthread_t));
	if (o->threads == NULL) {
		mf_offload_free(o);
		return NULL;
	}
	for (; o->nthreads < threads; o->nthreads++)
		if (pthread_create(&o->threads[o->nthreads], NULL, offload_main, o) != 0)
			break;
	if (o->nthreads == 0) {
		mf_offload_free(o);
		return NULL;
	}
	return o;
}

void mf_offload_free(mf_offload_t *o)
{
	if (o == NULL)
		return;
	pthread_mutex_lock(&o->lock);
	o->stopping = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	for (int i = 0; i < o->nthreads; i++)
		pthread_join(o->threads[i], NULL);
	free(o->threads);
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->cond);
	free(o);
}

int mf_offload_submit(mf_offload_t *o, struct event_base *base, void (*work)(void *),
		      void (*done)(void *), void *arg)
{
	job_t *j;

	pthread_mutex_lock(&o->lock);
	if (o->queued >= OFFLOAD_MAX_QUEUE || o->stopping) {
		pthread_mutex_unlock(&o->lock);
		return -1;
	}
	pthread_mutex_unlock(&o->lock);
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -1;
	j->base = base;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&o->lock);
	if (o->tail)
		o->tail->next = j;
	else
		o->head = j;
	o->tail = j;
	o->queued++;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	return 0;
}
