/*
 * err.c - filling mf_err_t records (see err.h).
 */
#include <stdio.h>
#include <string.h>

#include "core/err.h"

int mf_err_setv(mf_err_t *err, int status, const char *code, const char *fmt, va_list ap)
{
	if (err == NULL)
		return -1;
	err->status = status;
	snprintf(err->code, sizeof(err->code), "%s", code ? code : "internal_error");
	err->sqlstate[0] = '\0';
	err->retry_after = 0;
	if (fmt)
		vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	else
		err->detail[0] = '\0';
	return -1;
}

int mf_err_set(mf_err_t *err, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mf_err_setv(err, status, code, fmt, ap);
	va_end(ap);
	return -1;
}

void mf_err_clear(mf_err_t *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}
