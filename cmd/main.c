/*
 * main.c - the mspflow command line: parses the subcommand and its flags,
 * loads the configuration, and hands over to serve / dev / migrate.
 *
 *   mspflow dev [--listen H:P] [--admin-listen H:P] [--state DIR] [--config FILE]
 *   mspflow serve --config FILE [--listen H:P] [--admin-listen H:P]
 *   mspflow migrate --config FILE
 *   mspflow routes | config-reference | version | help
 *
 * Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include <errno.h>
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

#include "cmd/devdb.h"
#include "cmd/serve.h"
#include "core/config.h"
#include "core/log.h"
#include "core/migrate.h"

#ifndef MSPFLOW_VERSION
#define MSPFLOW_VERSION "dev"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mspflow <command> [options]\n"
		"\n"
		"commands:\n"
		"  dev [--listen H:P] [--admin-listen H:P] [--state DIR] [--config FILE]\n"
		"        embedded default: a private PostgreSQL under DIR (default ./.mspflow),\n"
		"        migrated, and the server in the foreground\n"
		"  serve --config FILE [--listen H:P] [--admin-listen H:P]\n"
		"        production server against database_url\n"
		"  migrate --config FILE\n"
		"        bring the platform schema and every tenant schema up to date\n"
		"  routes              print every route: listener, method, path\n"
		"  config-reference    print every configuration key (Markdown)\n"
		"  version             version and linked library versions\n");
}

struct cli {
	const char *config, *listen, *admin_listen, *state;
};

/* Parses "--flag VALUE" / "--flag=VALUE" pairs; allowed is a mask of the
 * flags the command takes. */
enum { F_CONFIG = 1, F_LISTEN = 2, F_ADMIN = 4, F_STATE = 8 };

static int parse_flags(int argc, char **argv, unsigned allowed, struct cli *cli)
{
	static const struct { const char *name; unsigned bit; size_t off; } flags[] = {
		{ "--config", F_CONFIG, offsetof(struct cli, config) },
		{ "--listen", F_LISTEN, offsetof(struct cli, listen) },
		{ "--admin-listen", F_ADMIN, offsetof(struct cli, admin_listen) },
		{ "--state", F_STATE, offsetof(struct cli, state) },
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
	conn = PQconnectdb(cfg->database_url);
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

static int cmd_serve(int argc, char **argv)
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
	rc = mf_serve(&cfg, NULL, NULL, &err);
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

static int cmd_dev(int argc, char **argv)
{
	struct cli cli = { 0 };
	mf_config_t cfg;
	mf_err_t err = { 0 };
	mf_devdb_t *db = NULL;
	char *conninfo = NULL;
	int rc = 1;

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
	if (mf_config_set(&cfg, "database_url", conninfo, &err) < 0 || run_migrations(&cfg, false) < 0)
		goto out;
	if (mf_serve(&cfg, NULL, NULL, &err) < 0) {
		mf_error("dev", "server stopped with an error", MF_S("error", err.detail));
		goto out;
	}
	rc = 0;
out:
	mf_devdb_stop(db);
	free(conninfo);
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
	mf_log_hook_libevent();
	cmd = argv[1];
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 2, argv + 2);
	if (strcmp(cmd, "dev") == 0)
		return cmd_dev(argc - 2, argv + 2);
	if (strcmp(cmd, "migrate") == 0)
		return cmd_migrate(argc - 2, argv + 2);
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
