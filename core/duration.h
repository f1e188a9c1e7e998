/*
 * duration.h - ISO 8601 durations, the subset the API uses.
 *
 * Accepted: "P" followed by either "nW" alone, or "[nD][T[nH][nM][nS]]"
 * with at least one component; each n is unsigned decimal digits (leading
 * zeros allowed), designators upper case, each at most once and in that
 * order.  Refused: years and months (their length in seconds depends on the
 * calendar, so "P1M" could not be compared with a limit), fractions, signs,
 * spaces, weeks mixed with other components, and anything longer than
 * MF_DURATION_MAX_SECONDS (10 years counted as 3650 days, so that
 * "P3650D" is the longest value; no component can overflow on the way).
 *
 * The canonical form (mf_duration_format) never uses W: days, then T with
 * hours, minutes and seconds, zero components left out, "PT0S" for zero.
 */
#ifndef MF_DURATION_H
#define MF_DURATION_H

#include <stddef.h>
#include "core/err.h"

#define MF_DURATION_MAX_SECONDS (3650LL * 86400)
/* Enough for the canonical form of any non-negative long long. */
#define MF_DURATION_BUFSZ 48

/* Parses s into *seconds.  Returns 0, or -1 with err = 400
 * "invalid_duration"; the detail names the rule broken and never quotes the
 * input, so it is safe to put in API responses and logs.  *seconds is only
 * written on success. */
int mf_duration_parse(const char *s, long long *seconds, mf_err_t *err)
	__attribute__((warn_unused_result));

/* Writes the canonical form of seconds (>= 0) into buf.  Returns 0, or -1
 * if seconds is negative or buf is too small (buf then holds "" when
 * len > 0).  Any value accepted by mf_duration_parse round-trips:
 * parse(format(x)) == x. */
int mf_duration_format(long long seconds, char *buf, size_t len)
	__attribute__((warn_unused_result));

#endif
