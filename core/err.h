/*
 * err.h - the caller-owned error record passed as the last argument of
 * functions that can fail with detail worth showing at the edge.
 *
 * Only the edge (an HTTP handler, a command) turns an mf_err_t into a
 * response or a log line.  Messages must never contain secrets: they may be
 * shown to API clients as the problem "detail".
 */
#ifndef MF_ERR_H
#define MF_ERR_H

#include <stdarg.h>

typedef struct mf_err {
	int status;		/* HTTP status the edge should answer, 0 = none */
	char code[40];		/* stable machine string, e.g. "not_found" */
	char sqlstate[6];	/* PostgreSQL SQLSTATE when it came from the db */
	int retry_after;	/* seconds, for 429/503; 0 = none */
	char detail[256];	/* human text, safe to show to the client */
} mf_err_t;

/* Fill err (which may be NULL) and return -1, so callers can write
 * "return mf_err_set(err, 400, "bad_json", "...")". */
int mf_err_set(mf_err_t *err, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int mf_err_setv(mf_err_t *err, int status, const char *code, const char *fmt, va_list ap);
void mf_err_clear(mf_err_t *err);

#endif
