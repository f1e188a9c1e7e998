/* test_config.c - the config table: defaults, file syntax, ranges, env. */
#include <stdlib.h>

#include "core/config.h"
#include "t.h"

static int parse(mf_config_t *c, const char *text, mf_err_t *err)
{
	return mf_config_parse(c, text, strlen(text), "test.conf", err);
}

int main(void)
{
	mf_config_t c;
	mf_err_t err;

	T_OK(mf_config_init(&c) == 0, "defaults load");
	T_STREQ(c.listen, "127.0.0.1:8080", "default listen address (CONTRACT 1)");
	T_STREQ(c.admin_listen, "127.0.0.1:9464", "default admin address (CONTRACT 1)");
	T_OK(c.max_body_bytes == 1048576 && c.max_json_depth == 64, "default body and depth limits (CONTRACT 2)");
	T_OK(c.access_log == true, "access log on by default");

	T_OK(parse(&c, "# comment\n\nlisten = 0.0.0.0:9000\nworkers=3 # trailing\naccess_log = off\n"
		   "log_level = \"debug\"\n", &err) == 0, "a well-formed file parses");
	T_STREQ(c.listen, "0.0.0.0:9000", "string value");
	T_OK(c.workers == 3, "integer value with a trailing comment");
	T_OK(c.access_log == false, "boolean value");
	T_STREQ(c.log_level, "debug", "quoted value");

	T_OK(parse(&c, "no_such_key = 1\n", &err) < 0, "unknown keys are errors");
	T_OK(strstr(err.detail, "test.conf:1") != NULL, "errors name file and line");
	T_OK(parse(&c, "workers = -1\n", &err) < 0, "negative numbers are rejected");
	T_OK(parse(&c, "workers = 3x\n", &err) < 0, "trailing junk in numbers is rejected");
	T_OK(parse(&c, "max_body_bytes = 99999999999999999999\n", &err) < 0, "overflow is rejected");
	T_OK(parse(&c, "workers = 100000\n", &err) < 0, "out of range is rejected");
	T_OK(parse(&c, "access_log = maybe\n", &err) < 0, "non-boolean is rejected");
	T_OK(parse(&c, "listen\n", &err) < 0, "a line without '=' is rejected");

	T_OK(mf_config_parse(&c, "workers = 1\0\n", 13, "t", &err) < 0, "NUL bytes are rejected");

	setenv("MSPFLOW_WORKERS", "7", 1);
	setenv("MSPFLOW_DATABASE_URL", "postgresql:///x", 1);
	T_OK(mf_config_apply_env(&c, &err) == 0 && c.workers == 7, "environment overrides the file");
	T_STREQ(c.database_url, "postgresql:///x", "MSPFLOW_DATABASE_URL (CONTRACT 1)");
	T_STREQ(mf_config_direct_url(&c), "postgresql:///x", "no direct_database_url: the pooled URL serves LISTEN too");
	T_OK(mf_config_set(&c, "direct_database_url", "host=/run/pg", &err) == 0, "direct_database_url is a key");
	T_STREQ(mf_config_direct_url(&c), "host=/run/pg", "direct_database_url wins for session work");
	T_STREQ(c.database_url, "postgresql:///x", "and leaves the pool's URL alone");
	setenv("MSPFLOW_WORKERS", "lots", 1);
	T_OK(mf_config_apply_env(&c, &err) < 0, "a bad environment value is an error");
	unsetenv("MSPFLOW_WORKERS");

	T_OK(mf_config_set(&c, "listen", "nonsense", &err) == 0 && mf_config_validate(&c, &err) < 0,
	     "validate rejects a listen address without a port");
	T_OK(mf_config_set(&c, "listen", "127.0.0.1:0", &err) == 0 && mf_config_validate(&c, &err) == 0,
	     "port 0 is valid");
	T_OK(mf_config_set(&c, "log_level", "loud", &err) == 0 && mf_config_validate(&c, &err) < 0,
	     "validate rejects an unknown log level");
	mf_config_free(&c);
	mf_config_free(&c);
	return t_done();
}
