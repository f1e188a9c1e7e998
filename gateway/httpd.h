/*
 * httpd.h - private structures of the HTTP server, shared by httpd.c
 * (connections, requests, responses), workers.c (threads, listeners,
 * shutdown) and stats.c (metrics).
 */
#ifndef GW_HTTPD_H
#define GW_HTTPD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "core/buf.h"
#include "gateway/gateway.h"
#include "gateway/http1.h"
#include "gateway/route.h"

#define GW_HIST_BUCKETS 14
#define GW_STATUS_SLOTS 16

/* One (route, status) cell of a worker's metrics shard.  Written only by
 * the owning worker; read by /metrics on any thread with relaxed loads. */
typedef struct gw_mslot {
	int status;			/* 0 = unused; published with release */
	uint64_t count, sum_us;
	uint64_t bucket[GW_HIST_BUCKETS];	/* non-cumulative */
} gw_mslot_t;

typedef struct gw_mroute {
	gw_mslot_t slot[GW_STATUS_SLOTS];
} gw_mroute_t;

struct gw_conn;
struct sockaddr;
TAILQ_HEAD(gw_conn_list, gw_conn);
TAILQ_HEAD(gw_req_list, gw_req);

typedef struct gw_worker {
	gw_server_t *srv;
	int index;
	pthread_t tid;
	struct event_base *base;
	struct evconnlistener *lis, *admin_lis;
	struct event *stop_ev, *grace_ev, *flush_ev;
	void *data;			/* from worker_init */
	struct gw_conn_list conns;
	struct gw_req_list reqs;	/* every live request, to free at exit */
	int nconns;
	bool draining;
	mf_buf_t log;			/* access log lines not yet written */
	time_t date_sec;
	char date[40];			/* "Date: ...\r\n" for date_sec */
	uint64_t rng;
	gw_mroute_t *m_api, *m_admin;	/* routes + 1 (unmatched) each */
	int ready;			/* 1 ok, -1 failed, under srv->lock */
} gw_worker_t;

struct gw_server {
	const mf_config_t *cfg;
	gw_options_t opt;
	int nworkers;
	gw_worker_t *workers;
	int port, admin_port;
	int *api_fds, admin_fd;
	int stop_pipe[2];
	atomic_int nconns;
	atomic_ullong rejected, parse_errors;
	pthread_mutex_t lock;		/* start-up handshake only */
	pthread_cond_t cond;
};

/* httpd.c */
void gw_conn_accept(gw_worker_t *w, int fd, const struct sockaddr *sa, bool admin);
void gw_worker_drain(gw_worker_t *w);
void gw_worker_close_all(gw_worker_t *w);
/* Frees requests whose handlers never answered (their events died with
 * the loop).  Only after the loop has stopped for good. */
void gw_worker_free_requests(gw_worker_t *w);
void gw_worker_flush_log(gw_worker_t *w);

/* stats.c */
void gw_metrics_record(gw_worker_t *w, bool admin, int route_id, int status, uint64_t us);

#endif
