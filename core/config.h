/*
 * config.h - the server's configuration as one typed table.
 *
 * A config file is "key = value" lines ('#' starts a comment; values may be
 * double-quoted).  Every key can also be set from the environment as
 * MSPFLOW_<KEY> (upper case), which wins over the file; command-line flags
 * win over both.  Unknown keys and malformed values are errors.  The table in
 * config.c is the single source of truth for names, types, defaults and the
 * README's configuration reference (mspflow config-reference prints it).
 */
#ifndef MF_CONFIG_H
#define MF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "core/err.h"

typedef struct mf_config {
	char *listen;			/* host:port of the API listener */
	char *admin_listen;		/* host:port of the admin (metrics) listener, "" = off */
	char *database_url;		/* libpq conninfo or URI */
	char *direct_database_url;	/* bypasses a transaction-mode pooler; "" = database_url */
	int workers;			/* worker threads; 0 = number of cores */
	int max_connections;		/* open client connections, all workers together */
	int max_header_bytes;		/* request line + headers */
	int max_body_bytes;		/* request body after de-chunking */
	int max_json_depth;
	int header_timeout_ms;		/* time allowed to send a whole request head */
	int body_timeout_ms;		/* time allowed to send a whole request body */
	int idle_timeout_ms;		/* keep-alive idle time between requests */
	int write_timeout_ms;		/* a response that cannot be written in this time is dropped */
	int max_requests_per_conn;	/* keep-alive requests before the server closes; 0 = unlimited */
	int shutdown_grace_ms;		/* SIGTERM: how long in-flight requests may take */
	int db_pool_size;		/* PostgreSQL connections per worker thread */
	int db_connect_timeout_ms;
	int db_query_timeout_ms;	/* a queued or running query older than this fails */
	int db_retry_after_s;		/* Retry-After sent with 503 when the database is down */
	char *log_level;		/* debug | info | warn | error */
	bool access_log;
	char *state_dir;		/* mspflow dev: cluster and credentials live here */
	char *master_key;		/* base64 master keys, first seals (secret: never log) */
	char *master_key_file;
	char *jwt_issuer;
	char *jwt_audience;
	char *jwt_issuers_file;
	int jwt_leeway_s;
	int token_ttl_s;
	int key_refresh_s;
	int token_cache_size;
	int auth_cache_ttl_ms;
	int auth_ip_rate;
	int auth_ip_burst;
	int auth_fail_per_min;
	char *egress_allow;		/* CIDRs connectors may reach despite the egress rules */
	int connector_max_connections;	/* outbound connections per worker */
	int connector_max_host_connections;
	int connector_max_calls;	/* outbound calls running + queued per worker */
	int connector_max_response_bytes;
	int connector_timeout_ms;
	int connector_connect_timeout_ms;
	int connector_cache_ttl_ms;	/* connector + credential reuse per worker */
	int engine_enabled;		/* the workers run workflow steps */
	int engine_lease_ms;		/* a claimed run's lease */
	int engine_poll_ms;		/* timer and safety poll of an idle worker */
	int engine_batch;		/* runs per claim */
	int engine_max_runs;		/* runs in memory per worker thread */
	int engine_gauge_ms;		/* queue and dead-letter gauges' refresh period */
	int insights_fold_ms;		/* insights folder's pause between passes; 0 = off */
	int webhook_retry_base_ms;	/* first wait before an outbound webhook is retried */
	int webhook_max_attempts;	/* attempts of one delivery before it fails */
	char *otlp_endpoint;		/* OTLP/HTTP collector; "" = no spans */
	char *otlp_service_name;
	int otlp_flush_ms;		/* export period per worker */
	int otlp_max_queue;		/* spans queued per worker before drops */
} mf_config_t;

/* Fills cfg with the defaults.  Returns 0 or -1 (out of memory). */
int mf_config_init(mf_config_t *cfg) __attribute__((warn_unused_result));
/* Reads FILE (path may be NULL: defaults + environment only). */
int mf_config_load(mf_config_t *cfg, const char *path, mf_err_t *err) __attribute__((warn_unused_result));
/* Parses config text already in memory; origin names it in errors. */
int mf_config_parse(mf_config_t *cfg, const char *text, size_t len, const char *origin, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Applies MSPFLOW_* environment variables. */
int mf_config_apply_env(mf_config_t *cfg, mf_err_t *err) __attribute__((warn_unused_result));
/* Sets one key from a string, as a file line or flag would. */
int mf_config_set(mf_config_t *cfg, const char *key, const char *value, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Checks cross-field constraints (ranges were checked by set). */
int mf_config_validate(const mf_config_t *cfg, mf_err_t *err) __attribute__((warn_unused_result));
void mf_config_free(mf_config_t *cfg);
/* The conninfo for session-scoped work that a transaction-mode pooler
 * (PgBouncer) cannot carry: LISTEN and session advisory locks.
 * direct_database_url when set, else database_url. */
const char *mf_config_direct_url(const mf_config_t *cfg);
/* Markdown table of every key, type, default and meaning. */
void mf_config_print_reference(FILE *out);

#endif
