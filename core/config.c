/*
 * config.c - the configuration table (see config.h).
 *
 * One row per key: name, type, where it lives in mf_config_t, default,
 * bounds and a one-line meaning.  Loading a file, applying the environment,
 * command-line flags and the README reference all walk this table, so a
 * new setting is one row here and one field in the struct.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL };

struct cfg_row {
	const char *name;
	enum cfg_type type;
	size_t off;
	const char *def;
	long min, max;
	const char *doc;
};

#define ROW(n, t, d, lo, hi, doc) { #n, t, offsetof(mf_config_t, n), d, lo, hi, doc }

static const struct cfg_row rows[] = {
	ROW(listen, CFG_STR, "127.0.0.1:8080", 0, 0, "API listener, host:port (port 0 picks a free port)"),
	ROW(admin_listen, CFG_STR, "127.0.0.1:9464", 0, 0, "admin listener for /metrics, host:port; empty disables it"),
	ROW(database_url, CFG_STR, "", 0, 0, "PostgreSQL conninfo or URI (serve, migrate); `mspflow dev` sets it"),
	ROW(direct_database_url, CFG_STR, "", 0, 0, "conninfo that reaches PostgreSQL without a transaction-mode pooler (PgBouncer): used for the LISTEN connections, `mspflow migrate` and the signing-key lock at start (docs/scale-out.md); empty = database_url"),
	ROW(workers, CFG_INT, "0", 0, 256, "worker threads, each with its own event loop; 0 = one per core"),
	ROW(max_connections, CFG_INT, "4096", 1, 1000000, "open client connections over all workers; more are answered 503"),
	ROW(max_header_bytes, CFG_INT, "16384", 1024, 1048576, "request line plus headers; larger heads get 431"),
	ROW(max_body_bytes, CFG_INT, "1048576", 0, 1073741824, "request body after de-chunking; larger bodies get 413"),
	ROW(max_json_depth, CFG_INT, "64", 1, 1000, "JSON nesting allowed in request bodies; deeper gets 400"),
	ROW(header_timeout_ms, CFG_INT, "10000", 100, 3600000, "time a client has to send a whole request head (then 408)"),
	ROW(body_timeout_ms, CFG_INT, "30000", 100, 3600000, "time a client has to send a whole request body (then 408)"),
	ROW(idle_timeout_ms, CFG_INT, "60000", 100, 3600000, "keep-alive idle time between requests before closing"),
	ROW(write_timeout_ms, CFG_INT, "30000", 100, 3600000, "time allowed to flush a response before the connection is dropped"),
	ROW(max_requests_per_conn, CFG_INT, "0", 0, INT_MAX, "requests served on one keep-alive connection; 0 = unlimited"),
	ROW(shutdown_grace_ms, CFG_INT, "30000", 0, 3600000, "on SIGTERM, how long in-flight requests may take to finish"),
	ROW(db_pool_size, CFG_INT, "4", 1, 256, "PostgreSQL connections per worker thread"),
	ROW(db_connect_timeout_ms, CFG_INT, "5000", 100, 600000, "connection attempt timeout"),
	ROW(db_query_timeout_ms, CFG_INT, "15000", 100, 3600000, "queue plus run time before a query fails with 504"),
	ROW(db_retry_after_s, CFG_INT, "2", 1, 3600, "Retry-After (seconds) on 503 while the database is unreachable"),
	ROW(log_level, CFG_STR, "info", 0, 0, "debug | info | warn | error"),
	ROW(access_log, CFG_BOOL, "true", 0, 0, "one JSON line per request (buffered, flushed at least every 200 ms)"),
	ROW(state_dir, CFG_STR, ".mspflow", 0, 0, "`mspflow dev`: folder of the embedded cluster and credentials"),
	ROW(master_key, CFG_STR, "", 0, 0, "master key ring: base64 keys of 32 random bytes (`mspflow keygen`), separated by commas or spaces; the first seals, all open (docs/vault.md); prefer `MSPFLOW_MASTER_KEY` or `master_key_file`"),
	ROW(master_key_file, CFG_STR, "", 0, 0, "file holding the master keys, one per line, first seals (mode 0600, no symlink); re-read when a stored key names an unknown one; `mspflow dev` creates STATE/master.key"),
	ROW(jwt_issuer, CFG_STR, "urn:tenancy:platform", 0, 0, "`iss` of the tokens this platform signs"),
	ROW(jwt_audience, CFG_STR, "urn:tenancy:api", 0, 0, "`aud` every accepted token must carry"),
	ROW(jwt_issuers_file, CFG_STR, "", 0, 0, "JSON file of trusted external issuers and their keys (docs/identity.md); empty = none"),
	ROW(jwt_leeway_s, CFG_INT, "30", 0, 60, "clock leeway for exp, nbf and iat"),
	ROW(token_ttl_s, CFG_INT, "3600", 60, 86400, "lifetime of issued access tokens"),
	ROW(key_refresh_s, CFG_INT, "10", 1, 3600, "how often each worker reloads the signing key ring from the database"),
	ROW(token_cache_size, CFG_INT, "16384", 0, 1048576, "verified tokens cached per worker (0 = verify every request)"),
	ROW(auth_cache_ttl_ms, CFG_INT, "2000", 0, 5000, "how long a worker trusts what it read of a tenant or API client; bounds how late a suspension or deletion takes effect"),
	ROW(auth_ip_rate, CFG_INT, "100", 1, 1000000, "token signature checks per second per client IP before 429 (tokens already verified are cached and free)"),
	ROW(auth_ip_burst, CFG_INT, "400", 1, 1000000, "burst allowance of auth_ip_rate"),
	ROW(auth_fail_per_min, CFG_INT, "10", 1, 100000, "failed token requests or sign-ins per minute per account (and 5 times that per client address) before 429"),
	ROW(egress_allow, CFG_STR, "", 0, 0, "CIDRs (comma or blank separated, IPv4 or IPv6) that connectors may reach although the egress guard refuses them (loopback, private, link-local, CGNAT, ULA, metadata...); empty = none"),
	ROW(connector_max_connections, CFG_INT, "64", 1, 100000, "outbound connector connections open per worker, all hosts; more calls wait for a free one"),
	ROW(connector_max_host_connections, CFG_INT, "8", 1, 100000, "outbound connector connections per worker to one host:port"),
	ROW(connector_max_calls, CFG_INT, "4096", 1, 1000000, "outbound connector calls running or waiting per worker; more are refused at once (busy)"),
	ROW(connector_max_response_bytes, CFG_INT, "1048576", 1024, 1073741824, "largest connector response body accepted; larger ones are cut off (too_large)"),
	ROW(connector_timeout_ms, CFG_INT, "30000", 100, 3600000, "default deadline of a whole outbound connector call, waiting for a connection included"),
	ROW(connector_connect_timeout_ms, CFG_INT, "5000", 100, 600000, "time allowed to open one outbound connection (TCP and TLS)"),
	ROW(connector_cache_ttl_ms, CFG_INT, "5000", 0, 600000, "how long a worker reuses a connector's definition and opened credential before reading them again; a change made through this worker applies at once"),
	ROW(engine_enabled, CFG_INT, "1", 0, 1, "1: this instance's workers claim and run workflow steps; 0: a gateway only (runs are left to mspflow worker processes)"),
	ROW(engine_lease_ms, CFG_INT, "30000", 1000, 600000, "how long a claimed run stays with its worker without a renewal; a crashed worker's runs are taken over after this"),
	ROW(engine_poll_ms, CFG_INT, "1000", 20, 60000, "how often an idle worker looks for due timers and missed wake-ups (new work is announced by NOTIFY)"),
	ROW(engine_batch, CFG_INT, "128", 1, 1000, "runs one claim takes at most"),
	ROW(engine_max_runs, CFG_INT, "512", 1, 100000, "runs a worker thread holds in memory at once (claims stop above it)"),
	ROW(engine_gauge_ms, CFG_INT, "15000", 100, 3600000, "how often worker 0 of each process counts the run queue and the dead letters over all tenants for /metrics (the first count right at start; docs/operations.md)"),
	ROW(insights_fold_ms, CFG_INT, "500", 0, 60000, "how often worker 0 of each engine process folds the insights facts written since into the tenants' rollups (at once again while a batch comes back full; docs/insights.md); 0 = never (reads stay exact, but slower as facts pile up)"),
	ROW(webhook_retry_base_ms, CFG_INT, "5000", 100, 3600000, "wait before the second attempt of an outbound webhook delivery; each later wait doubles (up to an hour, plus jitter, at least the receiver's Retry-After)"),
	ROW(webhook_max_attempts, CFG_INT, "12", 1, 100, "attempts of one outbound webhook delivery before it is marked failed"),
	ROW(otlp_endpoint, CFG_STR, "", 0, 0, "OTLP/HTTP collector base URL (spans are POSTed as JSON to <endpoint>/v1/traces); empty = no spans are recorded (docs/telemetry.md)"),
	ROW(otlp_service_name, CFG_STR, "mspflow", 0, 0, "service.name of the exported spans"),
	ROW(otlp_flush_ms, CFG_INT, "1000", 10, 600000, "how often each worker sends the spans it has queued (sooner once otlp_max_queue / 4 are waiting)"),
	ROW(otlp_max_queue, CFG_INT, "2048", 16, 1000000, "spans a worker queues at most; more are dropped (and counted) while the collector is slow or down"),
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static const struct cfg_row *row_find(const char *name)
{
	for (size_t i = 0; i < NROWS; i++)
		if (strcmp(rows[i].name, name) == 0)
			return &rows[i];
	return NULL;
}

static int row_set(mf_config_t *cfg, const struct cfg_row *r, const char *value, mf_err_t *err)
{
	void *field = (char *)cfg + r->off;

	switch (r->type) {
	case CFG_STR: {
		char *copy = strdup(value);

		if (copy == NULL)
			return mf_err_set(err, 500, "out_of_memory", "out of memory");
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	case CFG_INT: {
		char *end;
		long v;

		errno = 0;
		v = strtol(value, &end, 10);
		if (errno || end == value || *end != '\0' || !isdigit((unsigned char)value[0]))
			return mf_err_set(err, 400, "invalid_config", "%s: \"%s\" is not a whole number",
					  r->name, value);
		if (v < r->min || v > r->max)
			return mf_err_set(err, 400, "invalid_config", "%s: %ld is outside %ld..%ld",
					  r->name, v, r->min, r->max);
		*(int *)field = (int)v;
		return 0;
	}
	case CFG_BOOL:
		if (!strcmp(value, "true") || !strcmp(value, "on") || !strcmp(value, "1") || !strcmp(value, "yes"))
			*(bool *)field = true;
		else if (!strcmp(value, "false") || !strcmp(value, "off") || !strcmp(value, "0") || !strcmp(value, "no"))
			*(bool *)field = false;
		else
			return mf_err_set(err, 400, "invalid_config", "%s: \"%s\" is not a boolean (true/false)",
					  r->name, value);
		return 0;
	}
	return mf_err_set(err, 500, "internal_error", "bad config table");
}

int mf_config_init(mf_config_t *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NROWS; i++) {
		if (row_set(cfg, &rows[i], rows[i].def, NULL) < 0) {
			mf_config_free(cfg);
			return -1;
		}
	}
	return 0;
}

int mf_config_set(mf_config_t *cfg, const char *key, const char *value, mf_err_t *err)
{
	const struct cfg_row *r = row_find(key);

	if (r == NULL)
		return mf_err_set(err, 400, "invalid_config", "unknown setting \"%s\"", key);
	return row_set(cfg, r, value, err);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* Parses one "key = value" line in place.  Returns 1 for a setting, 0 for a
 * blank or comment line, -1 for a syntax error. */
static int parse_line(char *line, char **key, char **value)
{
	char *eq, *k, *v, *p;

	line = trim(line);
	if (*line == '\0' || *line == '#')
		return 0;
	eq = strchr(line, '=');
	if (eq == NULL)
		return -1;
	*eq = '\0';
	k = trim(line);
	v = trim(eq + 1);
	if (*k == '\0')
		return -1;
	for (p = k; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
			return -1;
	if (*v == '"') {
		size_t n = strlen(v);

		if (n < 2 || v[n - 1] != '"')
			return -1;
		v[n - 1] = '\0';
		v++;
		if (strchr(v, '"'))
			return -1;
	} else if ((p = strchr(v, '#')) != NULL) {
		*p = '\0';		/* trailing comment on an unquoted value */
		v = trim(v);
	}
	*key = k;
	*value = v;
	return 1;
}

int mf_config_parse(mf_config_t *cfg, const char *text, size_t len, const char *origin, mf_err_t *err)
{
	char line[4096];
	size_t pos = 0;
	int lineno = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *key, *value;
		int r;

		lineno++;
		if (n >= sizeof(line))
			return mf_err_set(err, 400, "invalid_config", "%s:%d: line too long", origin, lineno);
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + (nl != NULL);
		if (strlen(line) != n)
			return mf_err_set(err, 400, "invalid_config", "%s:%d: NUL byte in line", origin, lineno);
		r = parse_line(line, &key, &value);
		if (r < 0)
			return mf_err_set(err, 400, "invalid_config", "%s:%d: expected key = value", origin, lineno);
		if (r == 0)
			continue;
		if (mf_config_set(cfg, key, value, err) < 0) {
			if (err) {
				char reason[sizeof(err->detail)];

				memcpy(reason, err->detail, sizeof(reason));
				snprintf(err->detail, sizeof(err->detail), "%.60s:%d: %.170s", origin, lineno, reason);
			}
			return -1;
		}
	}
	return 0;
}

int mf_config_load(mf_config_t *cfg, const char *path, mf_err_t *err)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	if (path == NULL)
		return 0;
	f = fopen(path, "re");
	if (f == NULL)
		return mf_err_set(err, 400, "invalid_config", "cannot open config file %s: %s", path,
				  strerror(errno));
	for (;;) {
		char chunk[4096];
		size_t n = fread(chunk, 1, sizeof(chunk), f);
		char *p;

		if (n == 0)
			break;
		if (len + n > 1024 * 1024) {
			free(text);
			fclose(f);
			return mf_err_set(err, 400, "invalid_config", "%s: larger than 1 MiB", path);
		}
		p = realloc(text, len + n);
		if (p == NULL) {
			free(text);
			fclose(f);
			return mf_err_set(err, 500, "out_of_memory", "out of memory");
		}
		text = p;
		memcpy(text + len, chunk, n);
		len += n;
	}
	if (ferror(f)) {
		free(text);
		fclose(f);
		return mf_err_set(err, 400, "invalid_config", "cannot read %s", path);
	}
	fclose(f);
	rc = mf_config_parse(cfg, text ? text : "", len, path, err);
	free(text);
	return rc;
}

int mf_config_apply_env(mf_config_t *cfg, mf_err_t *err)
{
	for (size_t i = 0; i < NROWS; i++) {
		char name[64] = "MSPFLOW_";
		size_t n = strlen(name);
		const char *v;

		for (const char *p = rows[i].name; *p && n < sizeof(name) - 1; p++)
			name[n++] = (char)toupper((unsigned char)*p);
		name[n] = '\0';
		v = getenv(name);
		if (v && row_set(cfg, &rows[i], v, err) < 0)
			return -1;
	}
	return 0;
}

static bool hostport_ok(const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || colon == s)
		return false;
	port = strtol(colon + 1, &end, 10);
	return *end == '\0' && end != colon + 1 && port >= 0 && port <= 65535;
}

int mf_config_validate(const mf_config_t *cfg, mf_err_t *err)
{
	if (!hostport_ok(cfg->listen))
		return mf_err_set(err, 400, "invalid_config", "listen: \"%s\" is not host:port", cfg->listen);
	if (cfg->admin_listen[0] && !hostport_ok(cfg->admin_listen))
		return mf_err_set(err, 400, "invalid_config", "admin_listen: \"%s\" is not host:port",
				  cfg->admin_listen);
	if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
	    strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error"))
		return mf_err_set(err, 400, "invalid_config", "log_level: \"%s\" is not debug|info|warn|error",
				  cfg->log_level);
	return 0;
}

const char *mf_config_direct_url(const mf_config_t *cfg)
{
	return cfg->direct_database_url && cfg->direct_database_url[0] ? cfg->direct_database_url : cfg->database_url;
}

void mf_config_free(mf_config_t *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < NROWS; i++) {
		if (rows[i].type == CFG_STR) {
			char **field = (char **)((char *)cfg + rows[i].off);

			free(*field);
			*field = NULL;
		}
	}
}

void mf_config_print_reference(FILE *out)
{
	fprintf(out, "| key | type | default | meaning |\n|---|---|---|---|\n");
	for (size_t i = 0; i < NROWS; i++) {
		const struct cfg_row *r = &rows[i];

		fprintf(out, "| `%s` | %s | `%s` | %s |\n", r->name,
			r->type == CFG_STR ? "string" : r->type == CFG_INT ? "integer" : "boolean",
			r->def[0] ? r->def : "\"\"", r->doc);
	}
}
