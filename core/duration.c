/*
 * duration.c - ISO 8601 durations (see duration.h).
 *
 * A single left-to-right scan with a rank per designator (W=0, D=1, H=2,
 * M=3, S=4): a component whose rank is not above the previous one is out of
 * order or repeated.  Values are bounded while their digits are read, so
 * nothing overflows however long the digit run is.
 */
#include <stdbool.h>
#include <stdio.h>

#include "core/duration.h"

#define BAD(...) mf_err_set(err, 400, "invalid_duration", __VA_ARGS__)

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Friendlier messages for the mistakes people actually make, checked before
 * the grammar so "p1d" says "upper case" rather than "must start with P". */
static int precheck(const char *s, mf_err_t *err)
{
	for (const char *p = s; *p; p++) {
		char c = *p;

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			return BAD("a duration must not contain spaces");
		if (c == '-' || c == '+')
			return BAD("a duration must not have a sign");
		if (c == '.' || c == ',')
			return BAD("fractions are not supported; use a smaller unit (e.g. PT90M)");
		if (c >= 'a' && c <= 'z')
			return BAD("duration designators must be upper case (P, W, D, T, H, M, S)");
	}
	return 0;
}

int mf_duration_parse(const char *s, long long *seconds, mf_err_t *err)
{
	long long total = 0;
	bool in_time = false, weeks = false, any = false;
	int last = -1;
	const char *p;

	if (s == NULL || *s == '\0')
		return BAD("a duration is required, e.g. PT1H or P30D");
	if (precheck(s, err) < 0)
		return -1;
	if (s[0] != 'P')
		return BAD("a duration must start with P (ISO 8601, e.g. PT1H or P30D)");
	p = s + 1;
	while (*p) {
		long long value = 0, unit;
		int rank;

		if (*p == 'T') {
			if (in_time)
				return BAD("T may appear only once");
			in_time = true;
			p++;
			if (*p == '\0')
				return BAD("T must be followed by hours, minutes or seconds (e.g. PT30M)");
			continue;
		}
		if (!is_digit(*p))
			return BAD("each component must be digits followed by a designator (e.g. P2D)");
		while (is_digit(*p)) {
			value = value * 10 + (*p - '0');
			/* value <= MAX before the next *10, so this cannot overflow */
			if (value > MF_DURATION_MAX_SECONDS)
				return BAD("a duration may not exceed 10 years (P3650D)");
			p++;
		}
		switch (*p) {
		case 'Y':
			return BAD("years have no fixed length; use days (e.g. P365D)");
		case 'W':
			rank = 0, unit = 7 * 86400;
			break;
		case 'D':
			rank = 1, unit = 86400;
			break;
		case 'H':
			rank = 2, unit = 3600;
			break;
		case 'M':
			if (!in_time)
				return BAD("months have no fixed length; use days (e.g. P30D), or PT..M for minutes");
			rank = 3, unit = 60;
			break;
		case 'S':
			rank = 4, unit = 1;
			break;
		case '\0':
			return BAD("a number must be followed by a designator (W, D, H, M or S)");
		default:
			return BAD("unexpected character in a duration");
		}
		if (rank >= 2 && !in_time)
			return BAD("hours and seconds must follow T (e.g. PT1H)");
		if (rank < 2 && in_time)
			return BAD("weeks and days must come before T");
		if ((rank == 0 && any) || (weeks && rank != 0))
			return BAD("weeks cannot be combined with other components; use days");
		if (rank <= last)
			return BAD("components must appear once each, in the order D, H, M, S");
		if (value > MF_DURATION_MAX_SECONDS / unit ||
		    total + value * unit > MF_DURATION_MAX_SECONDS)
			return BAD("a duration may not exceed 10 years (P3650D)");
		total += value * unit;
		weeks = rank == 0;
		last = rank;
		any = true;
		p++;
	}
	if (!any)
		return BAD("a duration needs at least one component (e.g. P1D or PT1H)");
	*seconds = total;
	return 0;
}

int mf_duration_format(long long seconds, char *buf, size_t len)
{
	long long d, h, m, s;
	int n;

	if (buf == NULL || len == 0)
		return -1;
	buf[0] = '\0';
	if (seconds < 0)
		return -1;
	if (seconds == 0) {
		n = snprintf(buf, len, "PT0S");
	} else {
		char dpart[24] = "", hpart[24] = "", mpart[24] = "", spart[24] = "";

		d = seconds / 86400;
		h = seconds % 86400 / 3600;
		m = seconds % 3600 / 60;
		s = seconds % 60;
		if (d)
			snprintf(dpart, sizeof(dpart), "%lldD", d);
		if (h)
			snprintf(hpart, sizeof(hpart), "%lldH", h);
		if (m)
			snprintf(mpart, sizeof(mpart), "%lldM", m);
		if (s)
			snprintf(spart, sizeof(spart), "%lldS", s);
		n = snprintf(buf, len, "P%s%s%s%s%s", dpart, (h || m || s) ? "T" : "", hpart, mpart, spart);
	}
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return -1;
	}
	return 0;
}
