/*
 * main.c - the mspflow command line: parses the subcommand and its flags,
 * loads the configuration, and hands over to serve / dev / migrate.
 *
 *   mspflow dev [--listen H:P] [--admin-listen H:P] [--state DIR] [--config FILE] [--demo]
 *   mspflow serve --config FILE [--listen H:P] [--admin-listen H:P]
 *   mspflow migrate --config FILE
 *   mspflow bootstrap --config FILE
 *   mspflow seed-catalog --config FILE [--dir DIR]
 *   mspflow rotate-keys --config FILE
 *   mspflow vault rotate-master --config FILE
 *   mspflow audit chain|verify|prune (--tenant ID|SLUG | --all) --config FILE
 *   mspflow keygen | routes | config-reference | version | help
 *
 * Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <sodium.h>

#include "audit/audit.h"
#include "catalog/catalog.h"
#include "cmd/demo.h"
#include "cmd/demo_peers.h"
#include "cmd/devdb.h"
#include "cmd/serve.h"
#include "connectors/egress.h"
#include "connectors/http.h"
#include "connectors/vault.h"
#include "core/config.h"
#include "core/log.h"
#include "core/masterkey.h"
#include "core/migrate.h"
#include "tenants/tenants.h"

#ifndef MSPFLOW_VERSION
#define MSPFLOW_VERSION "dev"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mspflow <command> [options]\n"
		"\n"
		"commands:\n"
		"  dev [--listen H:P] [--admin-listen H:P] [--state DIR] [--config FILE] [--demo]\n"
		"        embedded default: a private PostgreSQL under DIR (default ./.mspflow),\n"
		"        migrated, the shipped templates seeded (seed-catalog), and the\n"
		"        server in the foreground; --demo adds mock CRM/PSA/ERP/RMM/LLM\n"
		"        systems on a loopback port, an msp \"Northwind IT\" with a client\n"
		"        \"Contoso\" (portal contoso.localhost), portal users, the templates\n"
		"        installed and one deal waiting for approval; prints the logins and\n"
		"        writes them to DIR/demo.json\n"
		"  serve --config FILE [--listen H:P] [--admin-listen H:P]\n"
		"        production server against database_url\n"
		"  worker --config FILE [--listen H:P] [--admin-listen H:P]\n"
		"        workflow engine only: claims and runs workflow steps; its listener\n"
		"        answers /healthz and /readyz\n"
		"  migrate --config FILE\n"
		"        bring the platform schema and every tenant schema up to date\n"
		"  bootstrap --config FILE\n"
		"        create the platform tenant if missing and a new platform-admin\n"
		"        API client; prints its credentials as JSON\n"
		"  seed-catalog --config FILE [--dir DIR]\n"
		"        publish the shipped templates (or DIR's *.json) under the demo partner\n"
		"        \"demo-partner\", signed with a new key; versions already there are\n"
		"        skipped; one JSON line per template\n"
		"  rotate-keys --config FILE\n"
		"        add a new token signing key; older keys verify until their tokens expire\n"
		"  vault rotate-master --config FILE\n"
		"        re-wrap every tenant data key and signing key under a new master key\n"
		"        (master_key_file: generated and written; a key list: its first key)\n"
		"  audit chain (--tenant ID|SLUG | --all) --config FILE\n"
		"        link committed audit entries into their chain now (the server does it\n"
		"        every half second)\n"
		"  audit verify (--tenant ID|SLUG | --all) [--no-chain] [--max-unchained-age S]\n"
		"        --config FILE\n"
		"        chain, then recompute the audit hash chain from the last checkpoint; exit 0\n"
		"        intact (a JSON summary), 1 tampered or entries unchained for longer than\n"
		"        S (300) seconds (one JSON line per problem), 3 not checked\n"
		"  audit prune (--tenant ID|SLUG | --all) --config FILE\n"
		"        seal and delete audit entries past the tenant's retention.audit\n"
		"  keygen              print a new master key\n"
		"  routes              print every route: listener, method, path\n"
		"  config-reference    print every configuration key (Markdown)\n"
		"  version             version and linked library versions\n");
}

struct cli {
	const char *config, *listen, *admin_listen, *state, *dir;
};

/* Parses "--flag VALUE" / "--flag=VALUE" pairs; allowed is a mask of the
 * flags the command takes. */
enum { F_CONFIG = 1, F_LISTEN = 2, F_ADMIN = 4, F_STATE = 8, F_DIR = 16 };

static int parse_flags(int argc, char **argv, unsigned allowed, struct cli *cli)
{
	static const struct { const char *name; unsigned bit; size_t off; } flags[] = {
		{ "--config", F_CONFIG, offsetof(struct cli, config) },
		{ "--listen", F_LISTEN, offsetof(struct cli, listen) },
		{ "--admin-listen", F_ADMIN, offsetof(struct cli, admin_listen) },
		{ "--state", F_STATE, offsetof(struct cli, state) },
		{ "--dir", F_DIR, offsetof(struct cli, dir) },
	};

	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *value = NULL;
		size_t k, n;

		for (k = 0; k < sizeof(flags) / sizeof(flags[0]); k++) {
			n = strlen(flags[k].name);
			if (strncmp(arg, flags[k].name, n) == 0 && (arg[n] == '\0' || arg[n] == '='))
				break;
		}
		if (k == sizeof(flags) / sizeof(flags[0]) || !(allowed & flags[k].bit)) {
			fprintf(stderr, "mspflow: unknown option %s\n", arg);
			return -1;
		}
		if (arg[n] == '=') {
			value = arg + n + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			fprintf(stderr, "mspflow: %s needs a value\n", arg);
			return -1;
		}
		*(const char **)((char *)cli + flags[k].off) = value;
	}
	return 0;
}

static int load_config(mf_config_t *cfg, const struct cli *cli)
{
	mf_err_t err = { 0 };
	cx_egress_t *egress;

	if (mf_config_init(cfg) < 0) {
		fprintf(stderr, "mspflow: out of memory\n");
		return -1;
	}
	if (mf_config_load(cfg, cli->config, &err) < 0 ||
	    mf_config_apply_env(cfg, &err) < 0 ||
	    (cli->listen && mf_config_set(cfg, "listen", cli->listen, &err) < 0) ||
	    (cli->admin_listen && mf_config_set(cfg, "admin_listen", cli->admin_listen, &err) < 0) ||
	    (cli->state && mf_config_set(cfg, "state_dir", cli->state, &err) < 0) ||
	    mf_config_validate(cfg, &err) < 0) {
		fprintf(stderr, "mspflow: %s\n", err.detail);
		mf_config_free(cfg);
		return -1;
	}
	/* The allow-list is parsed here too, so a typo stops the start
	 * instead of surfacing on the first connector call. */
	egress = cx_egress_new(cfg->egress_allow, &err);
	if (egress == NULL) {
		fprintf(stderr, "mspflow: %s\n", err.detail);
		mf_config_free(cfg);
		return -1;
	}
	cx_egress_free(egress);
	mf_log_set_level(cfg->log_level);
	return 0;
}

/* Migrations run on a blocking connection: this is a command / start-up
 * step, before any event loop exists. */
static int run_migrations(const mf_config_t *cfg, bool print_summary)
{
	mf_migrate_report_t rep = { 0 };
	mf_err_t err = { 0 };
	PGconn *conn;
	int rc;

	if (cfg->database_url[0] == '\0') {
		fprintf(stderr, "mspflow: database_url is not set (config file or MSPFLOW_DATABASE_URL)\n");
		return -1;
	}
	/* the migrations hold a session advisory lock: never through a
	 * transaction-mode pooler (direct_database_url) */
	conn = PQconnectdb(mf_config_direct_url(cfg));
	if (PQstatus(conn) != CONNECTION_OK) {
		/* libpq's message names host and database, never the password */
		mf_error("migrate", "cannot connect to PostgreSQL", MF_S("error", PQerrorMessage(conn)));
		PQfinish(conn);
		return -1;
	}
	rc = mf_migrate_all(conn, &rep, &err);
	PQfinish(conn);
	if (rc < 0) {
		mf_error("migrate", "migration failed", MF_S("error", err.detail), MF_S("sqlstate", err.sqlstate));
		if (print_summary)
			fprintf(stderr, "mspflow: migration failed: %s\n", err.detail);
		return -1;
	}
	mf_info("migrate", "schemas up to date", MF_I("platform_version", mf_migration_set_latest(&mf_migrations_platform)),
		MF_I("schemas", rep.schemas_total), MF_I("changed", rep.schemas_changed),
		MF_I("applied", rep.migrations_applied));
	if (print_summary)
		printf("{\"platform_version\":%d,\"tenant_version\":%d,\"schemas\":%d,\"changed\":%d,\"applied\":%d}\n",
		       mf_migration_set_latest(&mf_migrations_platform),
		       mf_migration_set_latest(&mf_migrations_tenant),
		       rep.schemas_total, rep.schemas_changed, rep.migrations_applied);
	return 0;
}

static int cmd_serve(int argc, char **argv, bool worker_only)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	mf_err_t err = { 0 };
	int rc;

	if (parse_flags(argc, argv, F_CONFIG | F_LISTEN | F_ADMIN, &cli) < 0)
		return 2;
	if (load_config(&cfg, &cli) < 0)
		return 1;
	if (cfg.database_url[0] == '\0')
		mf_warn("serve", "database_url is not set: /readyz will answer 503");
	rc = mf_serve(&cfg, &(mf_serve_hooks_t){ .worker_only = worker_only }, &err);
	if (rc < 0)
		mf_error("serve", "server stopped with an error", MF_S("error", err.detail));
	mf_config_free(&cfg);
	return rc < 0 ? 1 : 0;
}

static int cmd_migrate(int argc, char **argv)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	int rc;

	if (parse_flags(argc, argv, F_CONFIG, &cli) < 0)
		return 2;
	if (load_config(&cfg, &cli) < 0)
		return 1;
	rc = run_migrations(&cfg, true);
	mf_config_free(&cfg);
	return rc < 0 ? 1 : 0;
}

static PGconn *connect_db(const mf_config_t *cfg)
{
	PGconn *conn;

	if (cfg->database_url[0] == '\0') {
		fprintf(stderr, "mspflow: database_url is not set (config file or MSPFLOW_DATABASE_URL)\n");
		return NULL;
	}
	conn = PQconnectdb(cfg->database_url);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "mspflow: cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static bool migrated(PGconn *conn)
{
	char v[16];
	const char *p[1] = { v };
	PGresult *r;
	bool ok;

	snprintf(v, sizeof(v), "%d", mf_migration_set_latest(&mf_migrations_platform));
	r = PQexecParams(conn, mf_migrate_ready_sql, 1, NULL, p, NULL, NULL, 0);
	ok = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!ok)
		fprintf(stderr, "mspflow: the database is not migrated to this version; run mspflow migrate first\n");
	return ok;
}

static int cmd_bootstrap(int argc, char **argv)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	mf_err_t err = { 0 };
	PGconn *conn;
	char *json = NULL;
	int rc = 1;

	if (parse_flags(argc, argv, F_CONFIG, &cli) < 0)
		return 2;
	if (load_config(&cfg, &cli) < 0)
		return 1;
	conn = connect_db(&cfg);
	if (conn && migrated(conn)) {
		if (tn_bootstrap(conn, "platform admin (bootstrap)", &json, &err) < 0) {
			fprintf(stderr, "mspflow: bootstrap failed: %s\n", err.detail);
		} else {
			printf("%s\n", json);
			rc = 0;
		}
	}
	if (json)
		sodium_memzero(json, strlen(json));
	free(json);
	PQfinish(conn);
	mf_config_free(&cfg);
	return rc;
}

/* Loads and checks the templates, then publishes what is new.  out gets
 * the summary lines (NULL: logged only, as dev does); every problem of a
 * broken file goes to stderr, and nothing is published. */
static int seed_catalog(const mf_config_t *cfg, const char *dir, FILE *out)
{
	cat_seed_t *seed = NULL;
	json_t *problems = NULL, *summary = NULL, *e;
	mf_err_t err = { 0 };
	PGconn *conn;
	size_t i;
	int rc;

	rc = cat_seed_load(dir, &seed, &problems, &err);
	if (rc == -1) {
		json_array_foreach(problems, i, e)
			fprintf(stderr, "mspflow: %s: %s: %s\n", json_string_value(json_object_get(e, "file")),
				json_string_value(json_object_get(e, "path"))[0] ?
				json_string_value(json_object_get(e, "path")) : "(the document)",
				json_string_value(json_object_get(e, "message")));
		fprintf(stderr, "mspflow: seed-catalog: %zu problem(s); nothing was published\n", json_array_size(problems));
		json_decref(problems);
		return -1;
	}
	if (rc < 0) {
		fprintf(stderr, "mspflow: seed-catalog: %s\n", err.detail);
		return -1;
	}
	conn = connect_db(cfg);
	rc = conn && migrated(conn) ? cat_seed_publish(conn, seed, &summary, &err) : -2;
	PQfinish(conn);
	cat_seed_free(seed);
	if (rc == -2)
		return -1;
	if (rc < 0) {
		mf_error("catalog", "seeding the catalog failed", MF_S("error", err.detail));
		fprintf(stderr, "mspflow: seed-catalog: %s; nothing was published\n", err.detail);
		return -1;
	}
	json_array_foreach(summary, i, e) {
		char *line = json_dumps(e, JSON_COMPACT);

		if (out && line)
			fprintf(out, "%s\n", line);
		free(line);
	}
	json_decref(summary);
	return 0;
}

static int cmd_seed_catalog(int argc, char **argv)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	int rc;

	if (parse_flags(argc, argv, F_CONFIG | F_DIR, &cli) < 0)
		return 2;
	if (load_config(&cfg, &cli) < 0)
		return 1;
	rc = seed_catalog(&cfg, cli.dir, stdout);
	mf_config_free(&cfg);
	return rc < 0 ? 1 : 0;
}

static int cmd_rotate_keys(int argc, char **argv)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	mf_err_t err = { 0 };
	mf_master_ring_t *master = NULL;
	PGconn *conn = NULL;
	int rc = 1;

	if (parse_flags(argc, argv, F_CONFIG, &cli) < 0)
		return 2;
	if (load_config(&cfg, &cli) < 0)
		return 1;
	if (mf_master_ring_load(&cfg, &master, &err) < 0) {
		fprintf(stderr, "mspflow: %s\n", err.detail);
	} else if ((conn = connect_db(&cfg)) != NULL && migrated(conn)) {
		if (tn_keys_rotate(conn, &cfg, master, stdout, &err) < 0)
			fprintf(stderr, "mspflow: key rotation failed: %s\n", err.detail);
		else
			rc = 0;
	}
	mf_master_ring_unref(master);
	PQfinish(conn);
	mf_config_free(&cfg);
	return rc;
}

static int cmd_vault(int argc, char **argv)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	mf_err_t err = { 0 };
	int rc;

	if (argc < 1 || strcmp(argv[0], "rotate-master") != 0) {
		fprintf(stderr, "mspflow: usage: mspflow vault rotate-master --config FILE\n");
		return 2;
	}
	if (parse_flags(argc - 1, argv + 1, F_CONFIG, &cli) < 0)
		return 2;
	if (load_config(&cfg, &cli) < 0)
		return 1;
	rc = cx_vault_rotate_master(&cfg, stdout, &err);
	if (rc < 0)
		fprintf(stderr, "mspflow: master key rotation: %s\n", err.detail);
	mf_config_free(&cfg);
	return rc < 0 ? 1 : 0;
}

static int cmd_keygen(void)
{
	char key[64];

	if (mf_master_key_generate(key, sizeof(key)) < 0)
		return 1;
	printf("%s\n", key);
	sodium_memzero(key, sizeof(key));
	return 0;
}

/* ---- dev: credentials.json ---- */

struct dev_creds {
	const mf_config_t *cfg;
	char *path;
	char client_id[64];
	char secret[128];
};

/* Creates STATE/master.key (0600) the first time; dev uses it unless a
 * master key is configured. */
static int dev_master_key(mf_config_t *cfg)
{
	char *path = NULL, key[64];
	mf_err_t err = { 0 };
	int fd, rc = -1;

	if (cfg->master_key[0] || cfg->master_key_file[0])
		return 0;
	if (asprintf(&path, "%s/master.key", cfg->state_dir) < 0)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (mf_master_key_generate(key, sizeof(key)) == 0) {
			size_t n = strlen(key);

			key[n++] = '\n';
			rc = write(fd, key, n) == (ssize_t)n ? 0 : -1;
		}
		sodium_memzero(key, sizeof(key));
		close(fd);
		if (rc < 0) {
			unlink(path);
			fprintf(stderr, "mspflow: cannot write %s\n", path);
			goto out;
		}
	} else if (errno != EEXIST) {
		fprintf(stderr, "mspflow: cannot create %s: %s\n", path, strerror(errno));
		goto out;
	}
	rc = mf_config_set(cfg, "master_key_file", path, &err);
out:
	free(path);
	return rc;
}

/* Reuses the client in STATE/credentials.json while it is still valid,
 * else bootstraps a new platform-admin client. */
static int dev_credentials(const mf_config_t *cfg, struct dev_creds *dc)
{
	json_t *old;
	PGconn *conn;
	mf_err_t err = { 0 };
	char *json = NULL;
	int rc = -1;

	if (asprintf(&dc->path, "%s/credentials.json", cfg->state_dir) < 0) {
		dc->path = NULL;
		return -1;
	}
	conn = connect_db(cfg);
	if (conn == NULL)
		return -1;
	old = json_load_file(dc->path, 0, NULL);
	if (old) {
		const char *id = json_string_value(json_object_get(old, "client_id"));
		const char *sec = json_string_value(json_object_get(old, "client_secret"));

		if (id && sec && strlen(id) < sizeof(dc->client_id) && strlen(sec) < sizeof(dc->secret) &&
		    tn_client_valid(conn, id, sec)) {
			snprintf(dc->client_id, sizeof(dc->client_id), "%s", id);
			snprintf(dc->secret, sizeof(dc->secret), "%s", sec);
			rc = 0;
		}
		json_decref(old);
	}
	if (rc < 0) {
		if (tn_bootstrap(conn, "platform admin (mspflow dev)", &json, &err) < 0) {
			fprintf(stderr, "mspflow: cannot create the platform admin: %s\n", err.detail);
		} else {
			json_t *j = json_loads(json, 0, NULL);

			snprintf(dc->client_id, sizeof(dc->client_id), "%s",
				 json_string_value(json_object_get(j, "client_id")));
			snprintf(dc->secret, sizeof(dc->secret), "%s",
				 json_string_value(json_object_get(j, "client_secret")));
			json_decref(j);
			sodium_memzero(json, strlen(json));
			rc = 0;
		}
		free(json);
	}
	PQfinish(conn);
	return rc;
}

/* The API's URL as a local client reaches it. */
static void dev_base_url(const mf_config_t *cfg, int port, char url[320])
{
	char host[256];
	const char *listen = cfg->listen, *colon = strrchr(listen, ':');

	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "127.0.0.1");
	snprintf(url, 320, "http://%s:%d", host, port);
}

/* Once the port is known: STATE/credentials.json (0600) and stdout. */
static void dev_on_serving(int port, void *arg)
{
	struct dev_creds *dc = arg;
	char url[320], *text, *tmp;
	json_t *j;
	int fd;
	bool ok;

	dev_base_url(dc->cfg, port, url);
	j = json_pack("{s:s,s:s,s:s}", "base_url", url, "client_id", dc->client_id, "client_secret", dc->secret);
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (text == NULL)
		return;
	/* a new file renamed over the old one: a reader sees either whole */
	if (asprintf(&tmp, "%s.new", dc->path) < 0)
		tmp = NULL;
	if (tmp)
		unlink(tmp);
	fd = tmp ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
	ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) && write(fd, "\n", 1) == 1;
	if (fd >= 0 && close(fd) < 0)
		ok = false;
	if (ok && rename(tmp, dc->path) < 0)
		ok = false;
	if (!ok) {
		mf_error("dev", "cannot write credentials.json", MF_S("path", dc->path));
		if (tmp)
			unlink(tmp);
	}
	free(tmp);
	printf("%s\n", text);
	fflush(stdout);
	sodium_memzero(text, strlen(text));
	free(text);
}

/* --demo: the credentials as always, then the demo's seeding, which
 * needs the API's port. */
struct dev_demo {
	struct dev_creds *dc;
	mf_demo_t *demo;
};

static void demo_on_serving(int port, void *arg)
{
	struct dev_demo *dd = arg;
	char url[320];

	dev_on_serving(port, dd->dc);
	dev_base_url(dd->dc->cfg, port, url);
	if (mf_demo_start(dd->demo, url, dd->dc->client_id, dd->dc->secret) < 0) {
		mf_error("dev", "cannot start the demo's seeding");
		fprintf(stderr, "mspflow: cannot start the demo's seeding\n");
	}
}

static int cmd_dev(int argc, char **argv)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	mf_err_t err = { 0 };
	mf_devdb_t *db = NULL;
	char *conninfo = NULL;
	struct dev_creds dc = { 0 };
	mf_peers_t *peers = NULL;
	struct dev_demo dd = { .dc = &dc };
	mf_serve_hooks_t hooks = { .on_serving = dev_on_serving, .arg = &dc };
	bool demo = false;
	int rc = 1, n = 0;

	/* --demo is the one flag without a value: taken out before the rest */
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--demo") == 0)
			demo = true;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	if (parse_flags(argc, argv, F_CONFIG | F_LISTEN | F_ADMIN | F_STATE, &cli) < 0)
		return 2;
	if (load_config(&cfg, &cli) < 0)
		return 1;
	if (mkdir(cfg.state_dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "mspflow: cannot create state folder %s: %s\n", cfg.state_dir, strerror(errno));
		goto out;
	}
	if (mf_devdb_start(cfg.state_dir, &db, &conninfo, &err) < 0) {
		mf_error("dev", "cannot start the embedded PostgreSQL", MF_S("error", err.detail));
		fprintf(stderr, "mspflow: cannot start the embedded PostgreSQL: %s\n", err.detail);
		goto out;
	}
	if (mf_config_set(&cfg, "database_url", conninfo, &err) < 0 || dev_master_key(&cfg) < 0 ||
	    run_migrations(&cfg, false) < 0 || dev_credentials(&cfg, &dc) < 0)
		goto out;
	/* a newcomer's catalog has the shipped templates; a seed that fails
	 * (say, a tenant of that slug made by hand) must not keep dev down */
	if (seed_catalog(&cfg, NULL, NULL) < 0)
		mf_warn("dev", "the shipped templates were not seeded; starting without them");
	dc.cfg = &cfg;
	if (demo) {
		/* the peers first: the connectors the seeding writes need their port */
		peers = mf_peers_start(&err);
		dd.demo = peers ? mf_demo_new(&cfg, mf_peers_port(peers), &err) : NULL;
		if (dd.demo == NULL) {
			mf_error("dev", "cannot prepare the demo", MF_S("error", err.detail));
			fprintf(stderr, "mspflow: cannot prepare the demo: %s\n", err.detail);
			goto out;
		}
		hooks = (mf_serve_hooks_t){ .on_serving = demo_on_serving, .arg = &dd };
	}
	if (mf_serve(&cfg, &hooks, &err) < 0) {
		mf_error("dev", "server stopped with an error", MF_S("error", err.detail));
		goto out;
	}
	rc = 0;
out:
	/* the seeding talks to the server and the peers: it goes first */
	mf_demo_free(dd.demo);
	mf_peers_stop(peers);
	mf_devdb_stop(db);
	free(conninfo);
	free(dc.path);
	sodium_memzero(dc.secret, sizeof(dc.secret));
	mf_config_free(&cfg);
	return rc;
}

static int cmd_version(void)
{
	int pq = PQlibVersion();

	printf("mspflow %s\n", MSPFLOW_VERSION);
	printf("libevent %s\n", event_get_version());
	printf("libpq %d.%d\n", pq / 10000, pq % 10000);
	printf("openssl %s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("jansson %s\n", jansson_version_str());
	printf("libsodium %s\n", sodium_version_string());
	printf("libcurl %s\n", curl_version_info(CURLVERSION_NOW)->version);
	return 0;
}

int main(int argc, char **argv)
{
	mf_err_t err = { 0 };
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	/* A client that goes away mid-write must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0) {
		fprintf(stderr, "mspflow: libsodium failed to initialise\n");
		return 1;
	}
	if (cx_http_global_init(&err) < 0) {
		fprintf(stderr, "mspflow: %s\n", err.detail);
		return 1;
	}
	mf_log_hook_libevent();
	cmd = argv[1];
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 2, argv + 2, false);
	if (strcmp(cmd, "worker") == 0)
		return cmd_serve(argc - 2, argv + 2, true);
	if (strcmp(cmd, "dev") == 0)
		return cmd_dev(argc - 2, argv + 2);
	if (strcmp(cmd, "migrate") == 0)
		return cmd_migrate(argc - 2, argv + 2);
	if (strcmp(cmd, "bootstrap") == 0)
		return cmd_bootstrap(argc - 2, argv + 2);
	if (strcmp(cmd, "seed-catalog") == 0)
		return cmd_seed_catalog(argc - 2, argv + 2);
	if (strcmp(cmd, "rotate-keys") == 0)
		return cmd_rotate_keys(argc - 2, argv + 2);
	if (strcmp(cmd, "vault") == 0)
		return cmd_vault(argc - 2, argv + 2);
	if (strcmp(cmd, "audit") == 0)
		return audit_main(argc - 2, argv + 2);
	if (strcmp(cmd, "keygen") == 0)
		return cmd_keygen();
	if (strcmp(cmd, "routes") == 0)
		return mf_serve_print_routes(stdout) < 0 ? 1 : 0;
	if (strcmp(cmd, "config-reference") == 0) {
		mf_config_print_reference(stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
		return cmd_version();
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "mspflow: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
