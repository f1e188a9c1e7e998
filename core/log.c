/*
 * log.c - JSON-lines logger on stderr (see log.h).
 *
 * Each line is built in a heap buffer and written with a single
 * write(2), which the kernel keeps atomic for pipes up to PIPE_BUF and in
 * practice for regular files and terminals, so lines from different
 * threads never interleave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/buf.h"
#include "core/log.h"

int mf_log_level_current = MF_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int mf_log_set_level(const char *name)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			mf_log_level_current = i;
			return 0;
		}
	}
	return -1;
}

void mf_log_write_line(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, line, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;		/* nowhere left to report it */
		}
		line += n;
		len -= (size_t)n;
	}
}

static int add_ts(mf_buf_t *b)
{
	struct timespec ts;
	struct tm tm;
	char tbuf[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
	return mf_buf_addf(b, "{\"ts\":\"%s.%03ldZ\"", tbuf, ts.tv_nsec / 1000000);
}

void mf_log_fields(enum mf_log_level lvl, const char *module, const char *msg, ...)
{
	static const char oom[] =
		"{\"level\":\"error\",\"module\":\"log\",\"msg\":\"out of memory formatting a log line\"}\n";
	mf_buf_t b = MF_BUF_INIT;
	va_list ap;
	int rc = 0;

	if (mf_buf_reserve(&b, 256) < 0) {
		mf_log_write_line(oom, sizeof(oom) - 1);
		return;
	}
	rc |= add_ts(&b);
	rc |= mf_buf_addf(&b, ",\"level\":\"%s\",\"module\":", level_names[lvl]);
	rc |= mf_buf_add_json_str(&b, module, strlen(module));
	rc |= mf_buf_adds(&b, ",\"msg\":");
	rc |= mf_buf_add_json_str(&b, msg, strlen(msg));

	va_start(ap, msg);
	for (;;) {
		const char *key = va_arg(ap, const char *);
		int type;

		if (key == NULL)
			break;
		type = va_arg(ap, int);
		rc |= mf_buf_addc(&b, ',');
		rc |= mf_buf_add_json_str(&b, key, strlen(key));
		rc |= mf_buf_addc(&b, ':');
		switch (type) {
		case MF_LF_STR: {
			const char *v = va_arg(ap, const char *);

			rc |= v ? mf_buf_add_json_str(&b, v, strlen(v)) : mf_buf_adds(&b, "null");
			break;
		}
		case MF_LF_INT:
			rc |= mf_buf_addf(&b, "%lld", va_arg(ap, long long));
			break;
		case MF_LF_DBL:
			rc |= mf_buf_addf(&b, "%.6g", va_arg(ap, double));
			break;
		case MF_LF_BOOL:
			rc |= mf_buf_adds(&b, va_arg(ap, int) ? "true" : "false");
			break;
		default:
			rc |= mf_buf_adds(&b, "null");
			goto out;	/* the argument list can no longer be trusted */
		}
	}
out:
	va_end(ap);
	rc |= mf_buf_adds(&b, "}\n");
	if (rc == 0)
		mf_log_write_line(b.data, b.len);
	else
		mf_log_write_line(oom, sizeof(oom) - 1);
	mf_buf_free(&b);
}

static void libevent_log_cb(int severity, const char *msg)
{
	enum mf_log_level lvl = severity >= EVENT_LOG_ERR ? MF_LOG_ERROR :
				severity == EVENT_LOG_WARN ? MF_LOG_WARN :
				severity == EVENT_LOG_MSG ? MF_LOG_INFO : MF_LOG_DEBUG;

	mf_log(lvl, "libevent", msg);
}

void mf_log_hook_libevent(void)
{
	event_set_log_callback(libevent_log_cb);
}
