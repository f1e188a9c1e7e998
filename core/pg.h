/*
 * pg.h - asynchronous PostgreSQL for event loops.
 *
 * A pool belongs to one event_base (one worker thread) and is used only from
 * that thread.  Connections are opened with PQconnectStart/PQconnectPoll and
 * queries sent with PQsendQueryParams; libpq's socket is watched by libevent
 * and nothing ever blocks the loop.  A broken connection is reopened with
 * exponential backoff.  While no connection is up, queries fail at once with
 * a 503 "database_unavailable" error carrying Retry-After, so the gateway can
 * answer without waiting; when PostgreSQL comes back the pool recovers by
 * itself.
 *
 * SQL text is constant; values are passed only as parameters (text format).
 */
#ifndef MF_PG_H
#define MF_PG_H

#include <stdbool.h>
#include <libpq-fe.h>
#include "core/err.h"

struct event_base;
typedef struct mf_pg_pool mf_pg_pool_t;
typedef struct mf_pg_conn mf_pg_conn_t;

typedef struct mf_pg_options {
	const char *conninfo;		/* copied */
	int size;			/* connections in the pool */
	int connect_timeout_ms;
	int query_timeout_ms;		/* queued + running time before the query fails */
	int max_queue;			/* waiting queries beyond which new ones fail with 503 */
	int retry_after_s;		/* put into the 503 errors */
} mf_pg_options_t;

/*
 * Result callback.  On success res is the (last) result, borrowed: valid
 * only during the call; err is NULL.  On failure res is NULL and err says
 * why (503 database_unavailable, 504 query_timeout, or the server's error
 * with its SQLSTATE and status 500 / 409 for unique and FK violations).
 */
typedef void (*mf_pg_cb)(const PGresult *res, const mf_err_t *err, void *arg);
/* Called with the pinned connection for a transaction, or NULL + err. */
typedef void (*mf_pg_conn_cb)(mf_pg_conn_t *conn, const mf_err_t *err, void *arg);

mf_pg_pool_t *mf_pg_pool_new(struct event_base *base, const mf_pg_options_t *opt);
/* Closes every connection; pending callbacks are called with a 503 error. */
void mf_pg_pool_free(mf_pg_pool_t *pool);
/* At least one connection is established right now. */
bool mf_pg_pool_up(const mf_pg_pool_t *pool);

/* Runs one parameterised statement on any free connection. */
int mf_pg_query(mf_pg_pool_t *pool, const char *sql, int nparams,
		const char *const *params, mf_pg_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* Transactions: acquire pins a connection and sends BEGIN; queries then go
 * through mf_pg_conn_query; mf_pg_conn_release(conn, commit) sends COMMIT
 * (or ROLLBACK) and reports the outcome, then returns the connection. */
int mf_pg_tx_begin(mf_pg_pool_t *pool, mf_pg_conn_cb cb, void *arg)
	__attribute__((warn_unused_result));
int mf_pg_conn_query(mf_pg_conn_t *conn, const char *sql, int nparams,
		     const char *const *params, mf_pg_cb cb, void *arg)
	__attribute__((warn_unused_result));
/* Runs a multi-statement script (simple query protocol, no parameters; the
 * text is copied) inside a transaction.  Only for text the program built
 * itself from constants and generated identifiers, such as a new tenant
 * schema's migrations; cb gets the last result or the first error. */
int mf_pg_conn_script(mf_pg_conn_t *conn, const char *script, mf_pg_cb cb, void *arg)
	__attribute__((warn_unused_result));
int mf_pg_tx_end(mf_pg_conn_t *conn, bool commit, mf_pg_cb cb, void *arg)
	__attribute__((warn_unused_result));

/* Blocking, for start-up and command-line commands only (never inside an
 * event loop): one parameterised statement.  Returns the result (the
 * caller PQclear()s it), or NULL with err = 500 "database_error" and the
 * server's message (with its SQLSTATE). */
PGresult *mf_pg_exec(PGconn *c, const char *sql, int n, const char *const *params, mf_err_t *err);

/* Counters for /metrics (read from any thread; approximate). */
typedef struct mf_pg_stats {
	unsigned long long queries, errors, reconnects, unavailable;
	int open, busy, queued;
} mf_pg_stats_t;
void mf_pg_pool_stats(const mf_pg_pool_t *pool, mf_pg_stats_t *out);

#endif
