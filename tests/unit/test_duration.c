/* test_duration.c - ISO 8601 durations: the accepted subset, every refusal, canonical form. */
#include <stdio.h>

#include "core/duration.h"
#include "t.h"

static long long parse_ok(const char *s)
{
	long long v = -7;
	mf_err_t err;
	char what[128];

	snprintf(what, sizeof(what), "\"%s\" parses", s);
	T_OK(mf_duration_parse(s, &v, &err) == 0, what);
	return v;
}

/* Refused with 400 invalid_duration and a detail containing want. */
static void parse_bad(const char *s, const char *want)
{
	long long v = -7;
	mf_err_t err;
	char what[160];
	int rc;

	mf_err_clear(&err);
	rc = mf_duration_parse(s, &v, &err);
	snprintf(what, sizeof(what), "\"%s\" is refused (%s)", s ? s : "NULL", want);
	T_OK(rc == -1 && v == -7 && err.status == 400 && strcmp(err.code, "invalid_duration") == 0 &&
	     strstr(err.detail, want) != NULL, what);
	if (rc == 0 || strstr(err.detail, want) == NULL)
		printf("#   detail: %s\n", err.detail);
}

static void fmt_is(long long secs, const char *want)
{
	char buf[MF_DURATION_BUFSZ], what[96];

	snprintf(what, sizeof(what), "%lld formats as %s", secs, want);
	T_OK(mf_duration_format(secs, buf, sizeof(buf)) == 0, what);
	T_STREQ(buf, want, what);
}

int main(void)
{
	char buf[MF_DURATION_BUFSZ];

	/* the accepted grammar */
	T_OK(parse_ok("P2D") == 172800, "P2D is two days");
	T_OK(parse_ok("PT1H") == 3600, "PT1H is an hour");
	T_OK(parse_ok("PT1M") == 60, "PT1M is a minute, not a month");
	T_OK(parse_ok("PT90S") == 90, "seconds above 59 are fine");
	T_OK(parse_ok("PT1M30S") == 90, "minutes and seconds add up");
	T_OK(parse_ok("P1DT2H3M4S") == 86400 + 7200 + 180 + 4, "every component at once");
	T_OK(parse_ok("P2W") == 14 * 86400, "weeks");
	T_OK(parse_ok("PT0S") == 0, "zero is a duration");
	T_OK(parse_ok("P0D") == 0, "zero days too");
	T_OK(parse_ok("P007D") == 7 * 86400, "leading zeros are plain decimal, not octal");
	T_OK(parse_ok("P3650D") == MF_DURATION_MAX_SECONDS, "exactly 10 years is the limit");
	T_OK(parse_ok("PT87600H") == MF_DURATION_MAX_SECONDS, "the limit in hours");
	T_OK(parse_ok("P0000000000000000000000000001D") == 86400, "a long run of zeros does not overflow");

	/* refusals, each with its own reason */
	parse_bad(NULL, "required");
	parse_bad("", "required");
	parse_bad("P", "at least one component");
	parse_bad("PT", "T must be followed");
	parse_bad("P1DT", "T must be followed");
	parse_bad("1D", "must start with P");
	parse_bad("D", "must start with P");
	parse_bad("p1d", "upper case");
	parse_bad("P1d", "upper case");
	parse_bad("pt1h", "upper case");
	parse_bad("-P1D", "sign");
	parse_bad("P-1D", "sign");
	parse_bad("+PT1H", "sign");
	parse_bad("P 1D", "spaces");
	parse_bad(" P1D", "spaces");
	parse_bad("P1D ", "spaces");
	parse_bad("PT1.5S", "fractions");
	parse_bad("PT1,5S", "fractions");
	parse_bad("P1Y", "years");
	parse_bad("P1M", "months");
	parse_bad("P1Y2M", "years");
	parse_bad("P1H", "must follow T");
	parse_bad("P30S", "must follow T");
	parse_bad("PT1D", "before T");
	parse_bad("PT1W", "before T");
	parse_bad("P1W2D", "weeks cannot be combined");
	parse_bad("P2D1W", "weeks cannot be combined");
	parse_bad("P1WT1H", "weeks cannot be combined");
	parse_bad("PT1S1M", "in the order");
	parse_bad("PT1H1H", "in the order");
	parse_bad("P1D2D", "in the order");
	parse_bad("PTT1H", "only once");
	parse_bad("P1DT1HT1M", "only once");
	parse_bad("P12", "followed by a designator");
	parse_bad("PTH", "digits followed by a designator");
	parse_bad("PD", "digits followed by a designator");
	parse_bad("P1X", "unexpected character");
	parse_bad("P1D\xc3\xa9", "digits followed by a designator");
	parse_bad("P3651D", "10 years");
	parse_bad("P3650DT1S", "10 years");
	parse_bad("P522W", "10 years");
	parse_bad("PT315360001S", "10 years");
	parse_bad("P99999999999999999999999999D", "10 years");
	parse_bad("PT9223372036854775807S", "10 years");
	parse_bad("P3000DT20000H", "10 years");

	/* canonical form */
	fmt_is(172800, "P2D");
	fmt_is(3600, "PT1H");
	fmt_is(90, "PT1M30S");
	fmt_is(0, "PT0S");
	fmt_is(1, "PT1S");
	fmt_is(14 * 86400, "P14D");
	fmt_is(86400 + 1, "P1DT1S");
	fmt_is(86400 + 7200 + 180 + 4, "P1DT2H3M4S");
	fmt_is(MF_DURATION_MAX_SECONDS, "P3650D");
	fmt_is(9223372036854775807LL, "P106751991167300DT15H30M7S");
	T_OK(mf_duration_format(-1, buf, sizeof(buf)) == -1 && buf[0] == '\0', "negative seconds are refused");
	T_OK(mf_duration_format(90, buf, 7) == -1 && buf[0] == '\0', "a buffer one byte short is refused, empty");
	T_OK(mf_duration_format(90, buf, 8) == 0, "a buffer of exactly the right size works");
	T_OK(mf_duration_format(90, NULL, 8) == -1, "no buffer is refused");

	/* round trips: parse(format(x)) == x across the accepted range, and
	 * format(parse(s)) is the canonical spelling of s */
	{
		int bad = 0;
		long long step = 1;

		for (long long x = 0; x <= MF_DURATION_MAX_SECONDS; x += step) {
			long long back = -1;

			if (mf_duration_format(x, buf, sizeof(buf)) != 0 ||
			    mf_duration_parse(buf, &back, NULL) != 0 || back != x)
				bad++;
			if (x > 200000)
				step = 7919;	/* a prime stride reaches every remainder */
		}
		T_OK(bad == 0, "parse(format(x)) == x from 0 to 10 years");
	}
	{
		static const char *const spelled[][2] = {
			{"PT60M", "PT1H"}, {"PT3600S", "PT1H"}, {"P1W", "P7D"}, {"PT24H", "P1D"},
			{"PT36H", "P1DT12H"}, {"P01DT00H", "P1D"}, {"PT0H0M0S", "PT0S"},
		};
		for (size_t i = 0; i < sizeof(spelled) / sizeof(spelled[0]); i++) {
			long long v = -1;
			char what[96];

			snprintf(what, sizeof(what), "%s is canonically %s", spelled[i][0], spelled[i][1]);
			T_OK(mf_duration_parse(spelled[i][0], &v, NULL) == 0 &&
			     mf_duration_format(v, buf, sizeof(buf)) == 0, what);
			T_STREQ(buf, spelled[i][1], what);
		}
	}
	return t_done();
}
