/*
 * t.h - the smallest test helper that does the job: TAP-style "ok N - what"
 * lines, a failure count, and the exit status meson reads.
 */
#ifndef MF_T_H
#define MF_T_H

#include <stdio.h>
#include <string.h>

static int t_count, t_failed;

#define T_OK(cond, what) do { \
	t_count++; \
	if (cond) { printf("ok %d - %s\n", t_count, (what)); } \
	else { t_failed++; printf("not ok %d - %s (%s:%d: %s)\n", t_count, (what), __FILE__, __LINE__, #cond); } \
} while (0)

#define T_STREQ(a, b, what) do { \
	const char *t_a = (a), *t_b = (b); \
	T_OK(t_a && t_b && strcmp(t_a, t_b) == 0, what); \
	if (!(t_a && t_b && strcmp(t_a, t_b) == 0)) \
		printf("#   got \"%s\", want \"%s\"\n", t_a ? t_a : "(null)", t_b ? t_b : "(null)"); \
} while (0)

static inline int t_done(void)
{
	printf("1..%d\n", t_count);
	if (t_failed)
		printf("# %d of %d failed\n", t_failed, t_count);
	return t_failed ? 1 : 0;
}

#endif
