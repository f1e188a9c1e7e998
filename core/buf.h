/*
 * buf.h - a small growable byte/string buffer.
 *
 * Invariants: data is always NUL-terminated (data[len] == 0) once any
 * append has succeeded; len never counts the terminator.  Appends report
 * out-of-memory by returning -1 and leave the buffer unchanged; the buffer
 * never reallocates behind a pointer the caller holds except data itself.
 */
#ifndef MF_BUF_H
#define MF_BUF_H

#include <stddef.h>
#include <stdarg.h>

typedef struct mf_buf {
	char *data;
	size_t len;
	size_t cap;
} mf_buf_t;

#define MF_BUF_INIT { NULL, 0, 0 }

int mf_buf_reserve(mf_buf_t *b, size_t extra) __attribute__((warn_unused_result));
int mf_buf_add(mf_buf_t *b, const void *p, size_t n) __attribute__((warn_unused_result));
int mf_buf_adds(mf_buf_t *b, const char *s) __attribute__((warn_unused_result));
int mf_buf_addc(mf_buf_t *b, char c) __attribute__((warn_unused_result));
int mf_buf_addf(mf_buf_t *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), warn_unused_result));
/* Appends s as a JSON string literal, quotes included. */
int mf_buf_add_json_str(mf_buf_t *b, const char *s, size_t n) __attribute__((warn_unused_result));
void mf_buf_reset(mf_buf_t *b);		/* len = 0, keeps memory */
void mf_buf_free(mf_buf_t *b);		/* frees memory, back to MF_BUF_INIT */
/* Hands the data to the caller (who frees it) and resets the buffer. */
char *mf_buf_detach(mf_buf_t *b, size_t *len);

#endif
