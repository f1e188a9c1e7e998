/*
 * offload.h - a small thread pool for CPU-heavy work that must not run on
 * an event loop (Argon2id password hashing takes tens of milliseconds and
 * 64 MiB on purpose).
 *
 * A job's work() runs on a pool thread; its done() then runs on the event
 * loop that submitted it (posted with event_base_once, which libevent makes
 * thread-safe once evthread_use_pthreads() is on).  A job must own
 * everything work() touches: the request that asked for it may be gone by
 * then, which done() checks.
 */
#ifndef MF_OFFLOAD_H
#define MF_OFFLOAD_H

struct event_base;
typedef struct mf_offload mf_offload_t;

mf_offload_t *mf_offload_new(int threads);
/* Finishes the queued jobs (their done() is posted as usual), then joins
 * the threads.  Accepts NULL. */
void mf_offload_free(mf_offload_t *o);
/* Blocks until no job is queued or running, so that no done() will be
 * posted to a loop about to be freed.  For shutdown only. */
void mf_offload_wait_idle(mf_offload_t *o);
/* Queues a job.  Returns 0, or -1 (out of memory, or more than 1024 jobs
 * waiting: the caller answers 503) without calling anything. */
int mf_offload_submit(mf_offload_t *o, struct event_base *base, void (*work)(void *arg),
		      void (*done)(void *arg), void *arg) __attribute__((warn_unused_result));

#endif
