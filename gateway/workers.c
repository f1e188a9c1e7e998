/*
 * workers.c - threads, listeners and shutdown of the HTTP server.
 *
 * Each worker thread owns an event_base and a listening socket on the API
 * address bound with SO_REUSEPORT, so the kernel spreads connections over
 * the workers without any hand-off between threads.  Before the group is
 * bound, a probe socket without SO_REUSEPORT claims the address once: a
 * port already used by another process fails loudly instead of being
 * silently shared, and port 0 becomes one concrete port for the group.
 * The main thread only waits for SIGINT/SIGTERM or gw_server_stop(), then
 * asks every worker (event_active on its stop event) to drain.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "core/log.h"
#include "gateway/httpd.h"

static int split_hostport(const char *hp, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon = strrchr(hp, ':');
	size_t n;

	if (colon == NULL)
		return -1;
	n = (size_t)(colon - hp);
	if (n >= 2 && hp[0] == '[' && hp[n - 1] == ']') {
		hp++;
		n -= 2;
	}
	if (n >= hlen || strlen(colon + 1) >= plen)
		return -1;
	memcpy(host, hp, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

/* Binds a listening socket; port_inout: 0 = any, then the bound port. */
static int bind_listener(const char *hostport, int *port_inout, bool reuseport, mf_err_t *err)
{
	char host[256], port[16];
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM }, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, one = 1, rc;

	if (split_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0)
		return mf_err_set(err, 500, "invalid_config", "bad listen address %s", hostport);
	if (*port_inout > 0)
		snprintf(port, sizeof(port), "%d", *port_inout);
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0)
		return mf_err_set(err, 500, "listen_failed", "cannot resolve %s: %s", hostport, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		mf_err_set(err, 500, "listen_failed", "cannot listen on %s: %s", hostport, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	*port_inout = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						      : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	gw_worker_t *w = arg;

	gw_conn_accept(w, fd, sa, l == w->admin_lis);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: log and go on; the listener stays enabled */
	mf_warn("gateway", "accept failed", MF_S("error", evutil_socket_error_to_string(e)));
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	gw_worker_flush_log(arg);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	gw_worker_t *w = arg;

	mf_warn("gateway", "shutdown grace period over; closing remaining connections",
		MF_I("worker", w->index), MF_I("connections", w->nconns));
	gw_worker_close_all(w);
	event_base_loopexit(w->base, NULL);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	gw_worker_t *w = arg;
	const mf_config_t *cfg = w->srv->cfg;
	struct timeval tv = { cfg->shutdown_grace_ms / 1000, (cfg->shutdown_grace_ms % 1000) * 1000 };

	w->draining = true;
	if (w->lis) {
		evconnlistener_free(w->lis);
		w->lis = NULL;
	}
	if (w->admin_lis) {
		evconnlistener_free(w->admin_lis);
		w->admin_lis = NULL;
	}
	gw_worker_drain(w);
	if (w->nconns == 0) {
		event_base_loopexit(w->base, NULL);
		return;
	}
	evtimer_add(w->grace_ev, &tv);
}

/* A worker's loop.  With the change list, libevent applies the changes
 * made to an fd's events during one pass of the loop as one epoll_ctl at
 * the next poll: an outbound HTTP connection that curl releases at the end
 * of a response (event_del) and hands to the next call in the same pass
 * (event_add) costs one epoll_ctl (a MOD) instead of two (measured with
 * bench/cx_bench.c: +10-20% calls/s).  libevent's caveat: it is unsafe with
 * fds cloned by dup() registered in the same loop; none are. */
static struct event_base *worker_base_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

static int worker_setup(gw_worker_t *w, int api_fd, int admin_fd)
{
	gw_server_t *s = w->srv;
	struct timeval flush = { 0, 200000 };

	TAILQ_INIT(&w->conns);
	TAILQ_INIT(&w->reqs);
	if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
		w->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)w;
	w->base = worker_base_new();
	if (w->base == NULL)
		return -1;
	w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
	w->grace_ev = evtimer_new(w->base, on_grace, w);
	w->flush_ev = event_new(w->base, -1, EV_PERSIST, on_flush, w);
	w->m_api = calloc((size_t)(s->opt.api ? s->opt.api->n : 0) + 1, sizeof(gw_mroute_t));
	w->m_admin = calloc((size_t)(s->opt.admin ? s->opt.admin->n : 0) + 1, sizeof(gw_mroute_t));
	w->lis = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1, api_fd);
	if (w->stop_ev == NULL || w->grace_ev == NULL || w->flush_ev == NULL || w->m_api == NULL ||
	    w->m_admin == NULL || w->lis == NULL)
		return -1;
	evconnlistener_set_error_cb(w->lis, on_accept_error);
	if (admin_fd >= 0) {
		w->admin_lis = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1, admin_fd);
		if (w->admin_lis == NULL)
			return -1;
		evconnlistener_set_error_cb(w->admin_lis, on_accept_error);
	}
	evtimer_add(w->flush_ev, &flush);
	if (s->opt.worker_init)
		w->data = s->opt.worker_init(w->index, w->base, s->opt.arg);
	return 0;
}

static void *worker_main(void *arg)
{
	gw_worker_t *w = arg;
	gw_server_t *s = w->srv;
	int ok = worker_setup(w, s->api_fds[w->index], w->index == 0 ? s->admin_fd : -1);

	if (ok < 0) {
		/* listeners that were not wrapped still own their fd */
		if (w->lis == NULL)
			close(s->api_fds[w->index]);
		if (w->index == 0 && w->admin_lis == NULL && s->admin_fd >= 0)
			close(s->admin_fd);
	}
	pthread_mutex_lock(&s->lock);
	w->ready = ok < 0 ? -1 : 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (ok == 0)
		event_base_dispatch(w->base);

	/* teardown on this thread: the pool's pending callbacks answer the
	 * requests that still wait on it, then the loop's objects go */
	if (s->opt.worker_fini && w->data)
		s->opt.worker_fini(w->data);
	w->data = NULL;
	gw_worker_close_all(w);
	gw_worker_free_requests(w);
	gw_worker_flush_log(w);
	mf_buf_free(&w->log);
	if (w->lis)
		evconnlistener_free(w->lis);
	if (w->admin_lis)
		evconnlistener_free(w->admin_lis);
	w->lis = w->admin_lis = NULL;
	if (w->stop_ev)
		event_free(w->stop_ev);
	if (w->grace_ev)
		event_free(w->grace_ev);
	if (w->flush_ev)
		event_free(w->flush_ev);
	w->stop_ev = w->grace_ev = w->flush_ev = NULL;
	if (w->base)
		event_base_free(w->base);
	w->base = NULL;
	return NULL;
}

static void threads_init(void)
{
	if (evthread_use_pthreads() < 0)
		mf_error("gateway", "libevent has no pthreads support");
}

gw_server_t *gw_server_new(const gw_options_t *opt, mf_err_t *err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	gw_server_t *s;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	pthread_once(&once, threads_init);
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	s->opt = *opt;
	s->cfg = opt->cfg;
	s->nworkers = s->cfg->workers > 0 ? s->cfg->workers : (cores > 0 ? (int)cores : 1);
	s->workers = calloc((size_t)s->nworkers, sizeof(*s->workers));
	s->api_fds = calloc((size_t)s->nworkers, sizeof(int));
	s->admin_fd = -1;
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (s->workers == NULL || s->api_fds == NULL || pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		mf_err_set(err, 500, "out_of_memory", "cannot allocate the server");
		gw_server_free(s);
		return NULL;
	}
	for (int i = 0; i < s->nworkers; i++) {
		s->workers[i].srv = s;
		s->workers[i].index = i;
		s->api_fds[i] = -1;
	}
	return s;
}

void gw_server_stop(gw_server_t *s)
{
	ssize_t ignored = write(s->stop_pipe[1], "x", 1);

	(void)ignored;
}

int gw_server_port(const gw_server_t *s, bool admin)
{
	return admin ? s->admin_port : s->port;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	mf_info("gateway", "shutting down", MF_S("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
	event_base_loopexit(arg, NULL);
}

static void on_stop_pipe(evutil_socket_t fd, short what, void *arg)
{
	mf_info("gateway", "shutting down", MF_S("signal", "stop"));
	event_base_loopexit(arg, NULL);
}

static void log_listening(const char *which, const char *hostport, int port)
{
	char host[256], p[16], addr[300];

	if (split_hostport(hostport, host, sizeof(host), p, sizeof(p)) < 0)
		host[0] = '\0';
	snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	mf_info("gateway", "listening", MF_S("listener", which), MF_S("addr", addr), MF_I("port", port));
}

int gw_server_run(gw_server_t *s, mf_err_t *err)
{
	struct event_base *main_base = NULL;
	struct event *sigint = NULL, *sigterm = NULL, *stopev = NULL;
	sigset_t block, old;
	int probe, port = 0, started = 0, rc = -1;

	/* the probe claims the address exclusively for a moment (see top) */
	probe = bind_listener(s->cfg->listen, &port, false, err);
	if (probe < 0)
		return -1;
	close(probe);
	for (int i = 0; i < s->nworkers; i++) {
		s->api_fds[i] = bind_listener(s->cfg->listen, &port, true, err);
		if (s->api_fds[i] < 0)
			goto out;
	}
	s->port = port;
	if (s->cfg->admin_listen[0]) {
		s->admin_port = 0;
		s->admin_fd = bind_listener(s->cfg->admin_listen, &s->admin_port, false, err);
		if (s->admin_fd < 0)
			goto out;
	}

	main_base = event_base_new();
	if (main_base == NULL) {
		mf_err_set(err, 500, "internal_error", "cannot create the main event loop");
		goto out;
	}
	sigint = evsignal_new(main_base, SIGINT, on_signal, main_base);
	sigterm = evsignal_new(main_base, SIGTERM, on_signal, main_base);
	stopev = event_new(main_base, s->stop_pipe[0], EV_READ, on_stop_pipe, main_base);
	if (!sigint || !sigterm || !stopev || evsignal_add(sigint, NULL) < 0 ||
	    evsignal_add(sigterm, NULL) < 0 || event_add(stopev, NULL) < 0) {
		mf_err_set(err, 500, "internal_error", "cannot watch signals");
		goto out;
	}

	/* workers never take SIGINT/SIGTERM: the main thread does */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (started = 0; started < s->nworkers; started++) {
		if (pthread_create(&s->workers[started].tid, NULL, worker_main, &s->workers[started]) != 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* fds of workers that never started are still ours */
	for (int i = started; i < s->nworkers; i++) {
		close(s->api_fds[i]);
		s->api_fds[i] = -1;
	}

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < started; i++)
		while (s->workers[i].ready == 0)
			pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	rc = started == s->nworkers ? 0 : -1;
	for (int i = 0; i < started; i++)
		if (s->workers[i].ready < 0)
			rc = -1;
	if (rc < 0) {
		mf_err_set(err, 500, "internal_error", "cannot start the worker threads");
	} else {
		log_listening("api", s->cfg->listen, s->port);
		if (s->admin_fd >= 0)
			log_listening("admin", s->cfg->admin_listen, s->admin_port);
		mf_info("gateway", "serving", MF_I("workers", s->nworkers));
		if (s->opt.on_serving)
			s->opt.on_serving(s, s->opt.arg);
		event_base_dispatch(main_base);
		mf_info("gateway", "draining in-flight requests", MF_I("grace_ms", s->cfg->shutdown_grace_ms));
	}
	for (int i = 0; i < started; i++)
		if (s->workers[i].ready > 0)
			event_active(s->workers[i].stop_ev, EV_READ, 0);
	for (int i = 0; i < started; i++)
		pthread_join(s->workers[i].tid, NULL);
	if (rc == 0)
		mf_info("gateway", "stopped");
	s->admin_fd = -1;	/* owned and closed by worker 0's listener */
	for (int i = 0; i < s->nworkers; i++)
		s->api_fds[i] = -1;
out:
	for (int i = 0; i < s->nworkers; i++)
		if (s->api_fds[i] >= 0)
			close(s->api_fds[i]);
	if (s->admin_fd >= 0)
		close(s->admin_fd);
	/* the grace period bounds the shutdown; a second signal must not kill
	 * the process half-way (dev still has PostgreSQL to stop).  Freeing the
	 * signal events restores the old dispositions, so the signals are
	 * blocked across that and ignored before they are let through again:
	 * one arriving in between stays pending and is then discarded. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	if (stopev)
		event_free(stopev);
	if (main_base)
		event_base_free(main_base);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

void gw_server_free(gw_server_t *s)
{
	if (s == NULL)
		return;
	for (int i = 0; s->workers && i < s->nworkers; i++) {
		free(s->workers[i].m_api);
		free(s->workers[i].m_admin);
	}
	free(s->workers);
	free(s->api_fds);
	if (s->stop_pipe[0] >= 0)
		close(s->stop_pipe[0]);
	if (s->stop_pipe[1] >= 0)
		close(s->stop_pipe[1]);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
