/*
 * test_webhook_backoff.c - the outbound webhook delivery schedule
 * (engine/hooks_int.h): the exponential wait with its cap and jitter, the
 * receiver's Retry-After taking over when it asks for longer, and
 * Retry-After values in both of their forms.
 */
#include <stdint.h>
#include <time.h>

#include "engine/hooks_int.h"
#include "t.h"

#define MAX ENG_WEBHOOK_BACKOFF_MAX_MS
#define RA_MAX ENG_WEBHOOK_RETRY_AFTER_MAX_MS

static void test_doubles_without_jitter(void)
{
	T_OK(eng_webhook_backoff_ms(1, 5000, -1, 0) == 5000, "the first retry waits the base");
	T_OK(eng_webhook_backoff_ms(2, 5000, -1, 0) == 10000, "the second waits twice as long");
	T_OK(eng_webhook_backoff_ms(3, 5000, -1, 0) == 20000, "then four times");
	T_OK(eng_webhook_backoff_ms(10, 5000, -1, 0) == 5000LL << 9, "attempt 10: base * 2^9");
	T_OK(eng_webhook_backoff_ms(0, 5000, -1, 0) == 5000, "attempt 0 reads as 1");
	T_OK(eng_webhook_backoff_ms(-7, 5000, -1, 0) == 5000, "a negative attempt reads as 1");
	T_OK(eng_webhook_backoff_ms(1, 0, -1, 0) == 1, "a base of 0 still waits (1 ms)");
}

static void test_capped(void)
{
	T_OK(eng_webhook_backoff_ms(12, 5000, -1, 0) == MAX, "attempt 12 of 5 s is capped at an hour");
	T_OK(eng_webhook_backoff_ms(1000, 5000, -1, UINT32_MAX) == MAX, "a huge attempt does not overflow");
	T_OK(eng_webhook_backoff_ms(INT32_MAX, 1, -1, 0) == MAX, "INT_MAX attempts are capped");
	T_OK(eng_webhook_backoff_ms(1, MAX * 10, -1, 0) == MAX, "a base above the cap is the cap");
	T_OK(eng_webhook_backoff_ms(30, 5000, -1, UINT32_MAX) == MAX, "jitter never lifts a capped wait above the cap");
}

static void test_jitter(void)
{
	long long lo = eng_webhook_backoff_ms(3, 1000, -1, 0), hi = eng_webhook_backoff_ms(3, 1000, -1, UINT32_MAX);
	long long mid = eng_webhook_backoff_ms(3, 1000, -1, UINT32_MAX / 2);
	bool mono = true;

	T_OK(lo == 4000, "no jitter at rnd 0");
	T_OK(hi == 4800, "at most 20% more at the largest rnd");
	T_OK(mid > lo && mid < hi, "a middle rnd lands in between");
	for (uint64_t r = 0, prev = 0; r <= UINT32_MAX; prev = r, r += 65536 * 97)
		if (eng_webhook_backoff_ms(4, 1000, -1, (uint32_t)r) < eng_webhook_backoff_ms(4, 1000, -1, (uint32_t)prev))
			mono = false;
	T_OK(mono, "the wait grows with rnd");
}

static void test_retry_after(void)
{
	T_OK(eng_webhook_backoff_ms(1, 1000, 30000, 0) == 30000, "a longer Retry-After wins");
	T_OK(eng_webhook_backoff_ms(5, 1000, 2000, 0) == 16000, "a shorter Retry-After does not shorten the backoff");
	T_OK(eng_webhook_backoff_ms(1, 1000, 0, 0) == 1000, "Retry-After 0 leaves the backoff");
	T_OK(eng_webhook_backoff_ms(1, 1000, RA_MAX * 4, 0) == RA_MAX, "Retry-After is honoured up to 6 hours");
	T_OK(eng_webhook_backoff_ms(1, 1000, MAX * 2, 0) == MAX * 2, "Retry-After may exceed the backoff cap");
	T_OK(eng_webhook_backoff_ms(1, 1000, -1, 0) == 1000, "-1: no Retry-After");
}

static void test_retry_after_parse(void)
{
	time_t now = 1700000000;	/* Tue, 14 Nov 2023 22:13:20 GMT */

	T_OK(eng_webhook_retry_after_ms("120", now) == 120000, "delta-seconds");
	T_OK(eng_webhook_retry_after_ms("0", now) == 0, "zero seconds");
	T_OK(eng_webhook_retry_after_ms(" 5 ", now) == 5000, "surrounding blanks");
	T_OK(eng_webhook_retry_after_ms("Tue, 14 Nov 2023 22:14:20 GMT", now) == 60000, "an HTTP-date a minute ahead");
	T_OK(eng_webhook_retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0, "an HTTP-date past: now");
	T_OK(eng_webhook_retry_after_ms(NULL, now) == -1, "absent");
	T_OK(eng_webhook_retry_after_ms("", now) == -1, "empty");
	T_OK(eng_webhook_retry_after_ms("soon", now) == -1, "neither form");
	T_OK(eng_webhook_retry_after_ms("-5", now) == -1, "a negative delay");
	T_OK(eng_webhook_retry_after_ms("1.5", now) == -1, "a fraction");
	T_OK(eng_webhook_retry_after_ms("99999999999999999999", now) >= 0, "a huge delay does not overflow");
}

int main(void)
{
	test_doubles_without_jitter();
	test_capped();
	test_jitter();
	test_retry_after();
	test_retry_after_parse();
	return t_done();
}
