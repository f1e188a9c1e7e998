/*
 * log.h - structured logging: one JSON object per line on stderr.
 *
 * Every line carries ts, level, module and msg; callers add fields as
 * "key", value pairs.  The level is checked before anything is formatted.
 * Lines are written with one write(2) each, so threads never interleave.
 * Never pass a secret as a field.
 */
#ifndef MF_LOG_H
#define MF_LOG_H

#include <stdbool.h>

enum mf_log_level { MF_LOG_DEBUG, MF_LOG_INFO, MF_LOG_WARN, MF_LOG_ERROR };

extern int mf_log_level_current;

int mf_log_set_level(const char *name);	/* 0, or -1 for an unknown name */
static inline bool mf_log_enabled(enum mf_log_level l) { return (int)l >= mf_log_level_current; }

/*
 * Field list: a sequence of (const char *key, int type, value) ending with
 * NULL.  Types: MF_LF_STR (const char *, NULL -> null), MF_LF_INT (long long),
 * MF_LF_DBL (double), MF_LF_BOOL (int).  Use the MF_S/MF_I/MF_D/MF_B macros.
 */
enum { MF_LF_STR = 1, MF_LF_INT, MF_LF_DBL, MF_LF_BOOL };
#define MF_S(k, v) (k), MF_LF_STR, (const char *)(v)
#define MF_I(k, v) (k), MF_LF_INT, (long long)(v)
#define MF_D(k, v) (k), MF_LF_DBL, (double)(v)
#define MF_B(k, v) (k), MF_LF_BOOL, (int)(v)

void mf_log_fields(enum mf_log_level lvl, const char *module, const char *msg, ...);

#define mf_log(lvl, module, msg, ...) do { \
	if (mf_log_enabled(lvl)) mf_log_fields((lvl), (module), (msg), ##__VA_ARGS__, (const char *)0); \
} while (0)
#define mf_debug(mod, msg, ...) mf_log(MF_LOG_DEBUG, mod, msg, ##__VA_ARGS__)
#define mf_info(mod, msg, ...)  mf_log(MF_LOG_INFO, mod, msg, ##__VA_ARGS__)
#define mf_warn(mod, msg, ...)  mf_log(MF_LOG_WARN, mod, msg, ##__VA_ARGS__)
#define mf_error(mod, msg, ...) mf_log(MF_LOG_ERROR, mod, msg, ##__VA_ARGS__)

/* Appends an already formatted JSON line (no trailing newline needed) to
 * stderr in one write.  Used by the access log, which builds its own line. */
void mf_log_write_line(const char *line, size_t len);

/* Route libevent's internal messages into this log. */
void mf_log_hook_libevent(void);

#endif
