/*
 * listen.c - one LISTEN connection per worker, driven by the worker's
 * event loop: PQconnectStart/PQconnectPoll, then LISTEN, then
 * PQconsumeInput + PQnotifies whenever the socket is readable.  Nothing
 * blocks.  A broken connection is reopened after a backoff (250 ms
 * doubling to 5 s); the callback also runs after every (re)connect, since
 * notifications sent meanwhile were missed.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "core/log.h"
#include "engine/eng.h"

struct eng_listen {
	struct event_base *base;
	char *conninfo;
	char *channel;
	void (*cb)(void *arg);
	void *arg;
	PGconn *conn;
	struct event *io;
	struct event *retry;
	int backoff_ms;
	enum { L_IDLE, L_CONNECTING, L_LISTENING, L_READY } phase;
};

static void schedule_retry(eng_listen_t *l);

static void drop_conn(eng_listen_t *l)
{
	if (l->io) {
		event_free(l->io);
		l->io = NULL;
	}
	if (l->conn) {
		PQfinish(l->conn);
		l->conn = NULL;
	}
	l->phase = L_IDLE;
}

static int watch(eng_listen_t *l, short what);

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	eng_listen_t *l = arg;

	if (l->phase == L_CONNECTING) {
		switch (PQconnectPoll(l->conn)) {
		case PGRES_POLLING_READING:
			if (watch(l, EV_READ) < 0)
				goto fail;
			return;
		case PGRES_POLLING_WRITING:
			if (watch(l, EV_WRITE) < 0)
				goto fail;
			return;
		case PGRES_POLLING_OK: {
			char *quoted = PQescapeIdentifier(l->conn, l->channel, strlen(l->channel));
			char sql[160];

			if (quoted == NULL)
				goto fail;
			snprintf(sql, sizeof(sql), "LISTEN %s", quoted);
			PQfreemem(quoted);
			if (PQsetnonblocking(l->conn, 1) != 0 || !PQsendQuery(l->conn, sql))
				goto fail;
			l->phase = L_LISTENING;
			if (PQflush(l->conn) != 0 || watch(l, EV_READ | EV_PERSIST) < 0)
				goto fail;
			return;
		}
		default:
			goto fail;
		}
	}
	if (!PQconsumeInput(l->conn))
		goto fail;
	if (l->phase == L_LISTENING) {
		PGresult *res;

		while (!PQisBusy(l->conn) && (res = PQgetResult(l->conn)) != NULL) {
			bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

			PQclear(res);
			if (!ok)
				goto fail;
		}
		if (PQisBusy(l->conn))
			return;
		l->phase = L_READY;
		l->backoff_ms = 0;
		l->cb(l->arg);	/* anything sent while we were away */
	}
	{
		PGnotify *n;
		bool any = false;

		while ((n = PQnotifies(l->conn)) != NULL) {
			any = true;
			PQfreemem(n);
		}
		if (any)
			l->cb(l->arg);
	}
	return;
fail:
	mf_warn("engine", "notification connection lost; reconnecting",
		MF_S("error", l->conn ? PQerrorMessage(l->conn) : "connect"));
	drop_conn(l);
	schedule_retry(l);
	(void)fd;
	(void)what;
}

static int watch(eng_listen_t *l, short what)
{
	if (l->io)
		event_free(l->io);
	l->io = event_new(l->base, PQsocket(l->conn), what, on_io, l);
	return l->io && event_add(l->io, NULL) == 0 ? 0 : -1;
}

static void start(eng_listen_t *l)
{
	l->conn = PQconnectStart(l->conninfo);
	if (l->conn == NULL || PQstatus(l->conn) == CONNECTION_BAD || PQsocket(l->conn) < 0) {
		drop_conn(l);
		schedule_retry(l);
		return;
	}
	l->phase = L_CONNECTING;
	if (watch(l, EV_WRITE) < 0) {
		drop_conn(l);
		schedule_retry(l);
	}
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	start(arg);
}

static void schedule_retry(eng_listen_t *l)
{
	struct timeval tv;

	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : 250;
	if (l->backoff_ms > 5000)
		l->backoff_ms = 5000;
	tv.tv_sec = l->backoff_ms / 1000;
	tv.tv_usec = (l->backoff_ms % 1000) * 1000;
	event_add(l->retry, &tv);
}

eng_listen_t *eng_listen_new(struct event_base *base, const char *conninfo, const char *channel,
			     void (*cb)(void *arg), void *arg)
{
	eng_listen_t *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->base = base;
	l->cb = cb;
	l->arg = arg;
	l->conninfo = strdup(conninfo);
	l->channel = strdup(channel);
	l->retry = evtimer_new(base, on_retry, l);
	if (l->conninfo == NULL || l->channel == NULL || l->retry == NULL) {
		eng_listen_free(l);
		return NULL;
	}
	start(l);
	return l;
}

void eng_listen_free(eng_listen_t *l)
{
	if (l == NULL)
		return;
	drop_conn(l);
	if (l->retry)
		event_free(l->retry);
	free(l->conninfo);
	free(l->channel);
	free(l);
}
