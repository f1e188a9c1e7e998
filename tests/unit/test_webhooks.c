/*
 * test_webhooks.c - Standard Webhooks v1 signing and verification.
 *
 * The fixed vector is the one the scheme's reference libraries (Go,
 * Python, ...) test their sign() with; the rest are the ways a received
 * message can be wrong.
 */
#include <sodium.h>

#include "connectors/webhooks.h"
#include "t.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define MSG_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define TS 1614265330LL
#define TS_S "1614265330"
#define BODY "{\"test\": 2432232314}"
#define SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* a well-formed v1 entry that is not the signature of anything here */
#define OTHER "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

static mf_err_t e;

static int verify(const char *secret, const char *id, const char *ts, const char *sig, const char *body,
		  long long now)
{
	mf_err_clear(&e);
	return cx_webhook_verify(secret, id, ts, sig, body, body ? strlen(body) : 0, now, 0, &e);
}

static int fails_with(int rc, const char *code)
{
	return rc == -1 && strcmp(e.code, code) == 0;
}

static void test_vector(void)
{
	char sig[CX_WEBHOOK_SIG_SIZE];

	T_OK(cx_webhook_sign(SECRET, MSG_ID, TS, BODY, strlen(BODY), sig, sizeof(sig), &e) == 0,
	     "sign the reference vector");
	T_STREQ(sig, SIG, "signature equals the reference libraries' expected value");
	T_OK(cx_webhook_sign(SECRET + 6, MSG_ID, TS, BODY, strlen(BODY), sig, sizeof(sig), &e) == 0 &&
	     strcmp(sig, SIG) == 0, "the whsec_ prefix is optional, as in the reference libraries");
	T_OK(verify(SECRET, MSG_ID, TS_S, SIG, BODY, TS) == 0, "reference vector verifies");
	T_OK(verify(SECRET + 6, MSG_ID, TS_S, SIG, BODY, TS) == 0, "and verifies with a bare base64 secret");
}

static void test_tampering(void)
{
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, SIG, "{\"test\": 2432232315}", TS), "bad_signature"),
	     "tampered body");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, SIG, "{\"test\":2432232314}", TS), "bad_signature"),
	     "re-serialised body (one space less)");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, SIG, "", TS), "bad_signature"), "empty body");
	T_OK(fails_with(verify(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJel", TS_S, SIG, BODY, TS), "bad_signature"),
	     "tampered id");
	T_OK(fails_with(verify(SECRET, MSG_ID, "1614265331", SIG, BODY, 1614265331), "bad_signature"),
	     "tampered timestamp (still within tolerance)");
	T_OK(fails_with(verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx", MSG_ID, TS_S, SIG, BODY, TS),
			"bad_signature"), "wrong secret");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=", BODY, TS),
			"bad_signature"), "signature with its last bits changed");
	T_OK(e.status == 401, "bad signature is a 401");
	T_OK(strstr(e.detail, "MfKQ") == NULL, "the detail never shows the secret");
	/* a valid MAC moved between fields of the signed content must not pass:
	 * "{id}.{ts}.{body}" is unambiguous only because ids carry no '.' */
	T_OK(fails_with(verify(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330", "0", SIG, "", 0), "malformed"),
	     "an id with a '.' is refused");
}

static void test_timestamps(void)
{
	char sig[CX_WEBHOOK_SIG_SIZE], ts[32];

	T_OK(verify(SECRET, MSG_ID, TS_S, SIG, BODY, TS + 300) == 0, "exactly 5 minutes old passes");
	T_OK(verify(SECRET, MSG_ID, TS_S, SIG, BODY, TS - 300) == 0, "exactly 5 minutes ahead passes");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, SIG, BODY, TS + 301), "timestamp_out_of_range"),
	     "5 minutes and 1 s old fails");
	T_OK(e.status == 401, "expired is a 401");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, SIG, BODY, TS - 301), "timestamp_out_of_range"),
	     "5 minutes and 1 s in the future fails");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, OTHER, BODY, TS + 100000), "timestamp_out_of_range"),
	     "the timestamp is checked before the signature");
	mf_err_clear(&e);
	T_OK(cx_webhook_verify(SECRET, MSG_ID, TS_S, SIG, BODY, strlen(BODY), TS + 3600, 7200, &e) == 0,
	     "a wider tolerance is honoured");
	T_OK(cx_webhook_verify(SECRET, MSG_ID, TS_S, SIG, BODY, strlen(BODY), TS + 61, 60, &e) == -1,
	     "a narrower tolerance is honoured");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, SIG, BODY, -9223372036854775807LL - 1),
			"timestamp_out_of_range"), "an absurd 'now' does not overflow");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, SIG, BODY, 9223372036854775807LL), "timestamp_out_of_range"),
	     "nor does the other end");
	for (size_t i = 0; i < 6; i++) {
		static const char *const bad[] = { "01614265330", "+1614265330", "-1614265330", "1614265330.0",
						   "1614265330 ", "1234567890123456" };

		snprintf(ts, sizeof(ts), "%s", bad[i]);
		T_OK(fails_with(verify(SECRET, MSG_ID, ts, SIG, BODY, TS), "malformed"), bad[i]);
	}
	T_OK(fails_with(verify(SECRET, MSG_ID, "hello", SIG, BODY, TS), "malformed"), "a word as timestamp");
	T_OK(cx_webhook_sign(SECRET, MSG_ID, 0, "x", 1, sig, sizeof(sig), &e) == 0 &&
	     verify(SECRET, MSG_ID, "0", sig, "x", 0) == 0, "timestamp 0 signs and verifies as \"0\"");
	T_OK(cx_webhook_sign(SECRET, MSG_ID, -1, "x", 1, sig, sizeof(sig), &e) == -1 &&
	     strcmp(e.code, "malformed") == 0, "a negative timestamp is not signed");
}

static void test_signature_lists(void)
{
	T_OK(verify(SECRET, MSG_ID, TS_S, OTHER " v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " SIG " " OTHER,
		    BODY, TS) == 0, "multiple signatures where one matches (reference multi-sig case)");
	T_OK(verify(SECRET, MSG_ID, TS_S, SIG " " OTHER, BODY, TS) == 0, "the matching one first");
	T_OK(verify(SECRET, MSG_ID, TS_S, "  " SIG "  ", BODY, TS) == 0, "extra spaces around entries");
	T_OK(verify(SECRET, MSG_ID, TS_S, "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== " SIG,
		    BODY, TS) == 0, "an asymmetric v1a entry is skipped");
	T_OK(verify(SECRET, MSG_ID, TS_S, "junk ,,, v1, v1,=== v1,@@@@ " SIG, BODY, TS) == 0,
	     "junk entries are skipped");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, TS),
			"bad_signature"), "a signature without its v1, prefix does not count");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, TS),
			"bad_signature"), "the right MAC under another version does not count");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, TS),
			"bad_signature"), "the version is case-sensitive");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, TS),
			"bad_signature"), "URL-safe base64 is not the scheme's encoding");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", BODY, TS),
			"bad_signature"), "unpadded base64 is refused");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=x", BODY, TS),
			"bad_signature"), "trailing garbage in an entry");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=", BODY, TS),
			"bad_signature"), "non-canonical padding bits are refused");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v1,g0hM9SsE+OTPJTGt\xebtmIKtSyZlE3uFJELVlNIOLJ1OE=", BODY, TS),
			"bad_signature"), "a byte >= 0x80 in place of '/' is not base64 (libsodium 1.0.18 reads it as '/')");
	T_OK(fails_with(verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\xff", MSG_ID, TS_S, SIG, BODY, TS), "bad_secret"),
	     "nor in a secret");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\t" OTHER,
			       BODY, TS), "bad_signature"), "entries are separated by spaces only");
	/* oversized header: 4096 bytes is the limit, the match at the end */
	{
		static char big[CX_WEBHOOK_SIG_HEADER_MAX + 64];
		size_t n = 0;

		while (n + sizeof(OTHER) + sizeof(SIG) < CX_WEBHOOK_SIG_HEADER_MAX) {
			memcpy(big + n, OTHER " ", sizeof(OTHER));
			n += sizeof(OTHER);
		}
		memcpy(big + n, SIG, sizeof(SIG));
		T_OK(verify(SECRET, MSG_ID, TS_S, big, BODY, TS) == 0, "a long list within the limit verifies");
		memset(big, ' ', CX_WEBHOOK_SIG_HEADER_MAX + 1);
		memcpy(big + CX_WEBHOOK_SIG_HEADER_MAX + 1 - (sizeof(SIG) - 1), SIG, sizeof(SIG));
		T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, big, BODY, TS), "malformed"),
		     "a signature header over 4096 bytes is refused before any work");
	}
}

static void test_malformed(void)
{
	char id[CX_WEBHOOK_ID_MAX + 2];

	T_OK(fails_with(verify(SECRET, NULL, TS_S, SIG, BODY, TS), "malformed"), "missing id");
	T_OK(e.status == 400, "malformed is a 400");
	T_OK(fails_with(verify(SECRET, "", TS_S, SIG, BODY, TS), "malformed"), "empty id");
	T_OK(fails_with(verify(SECRET, MSG_ID, NULL, SIG, BODY, TS), "malformed"), "missing timestamp");
	T_OK(fails_with(verify(SECRET, MSG_ID, "", SIG, BODY, TS), "malformed"), "empty timestamp");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, NULL, BODY, TS), "malformed"), "missing signature");
	T_OK(fails_with(verify(SECRET, MSG_ID, TS_S, "", BODY, TS), "malformed"), "empty signature");
	T_OK(fails_with(verify(SECRET, "msg id", TS_S, SIG, BODY, TS), "malformed"), "an id with a space");
	T_OK(fails_with(verify(SECRET, "msg\x01", TS_S, SIG, BODY, TS), "malformed"), "an id with a control byte");
	memset(id, 'a', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	T_OK(fails_with(verify(SECRET, id, TS_S, SIG, BODY, TS), "malformed"), "an id over 256 bytes");
	id[CX_WEBHOOK_ID_MAX] = '\0';
	T_OK(fails_with(verify(SECRET, id, TS_S, SIG, BODY, TS), "bad_signature"), "an id of 256 bytes is accepted");
	T_OK(cx_webhook_verify(SECRET, MSG_ID, TS_S, SIG, NULL, 0, TS, 0, NULL) == -1,
	     "NULL body of length 0 is an empty body; NULL err is fine");
}

static void test_secrets(void)
{
	char s1[CX_WEBHOOK_SECRET_SIZE], s2[CX_WEBHOOK_SECRET_SIZE], sig[CX_WEBHOOK_SIG_SIZE];
	unsigned char key[64];
	size_t keylen = 0;

	T_OK(cx_webhook_secret_new(s1, sizeof(s1)) == 0 && cx_webhook_secret_new(s2, sizeof(s2)) == 0,
	     "new secrets");
	T_OK(strncmp(s1, "whsec_", 6) == 0 && strlen(s1) == CX_WEBHOOK_SECRET_SIZE - 1, "whsec_ + 44 characters");
	T_OK(sodium_base642bin(key, sizeof(key), s1 + 6, strlen(s1 + 6), NULL, &keylen, NULL,
			       sodium_base64_VARIANT_ORIGINAL) == 0 && keylen == 32, "32 key bytes");
	T_OK(strcmp(s1, s2) != 0, "two secrets differ");
	T_OK(cx_webhook_secret_new(s1, CX_WEBHOOK_SECRET_SIZE - 1) == -1, "too small a buffer is refused");
	T_OK(cx_webhook_secret_new(s1, sizeof(s1)) == 0 &&
	     cx_webhook_sign(s1, "msg_1", 1700000000, "hello", 5, sig, sizeof(sig), &e) == 0 &&
	     cx_webhook_verify(s1, "msg_1", "1700000000", sig, "hello", 5, 1700000010, 0, &e) == 0,
	     "a new secret signs and verifies a round trip");
	T_OK(cx_webhook_verify(s2, "msg_1", "1700000000", sig, "hello", 5, 1700000010, 0, &e) == -1 &&
	     strcmp(e.code, "bad_signature") == 0, "and another secret does not verify it");

	/* 16 bytes: below the scheme's 24-byte minimum */
	T_OK(fails_with(verify("whsec_AAAAAAAAAAAAAAAAAAAAAA==", MSG_ID, TS_S, SIG, BODY, TS), "bad_secret"),
	     "a 16-byte key is refused");
	T_OK(e.status == 500, "a bad secret is the receiver's 500, not the sender's fault");
	T_OK(fails_with(verify("whsec_not base64!", MSG_ID, TS_S, SIG, BODY, TS), "bad_secret"), "not base64");
	T_OK(fails_with(verify("whsec_", MSG_ID, TS_S, SIG, BODY, TS), "bad_secret"), "empty key");
	T_OK(fails_with(verify(NULL, MSG_ID, TS_S, SIG, BODY, TS), "bad_secret"), "no secret");
	T_OK(fails_with(verify("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			       MSG_ID, TS_S, SIG, BODY, TS), "bad_secret"), "a 66-byte key is refused");
	T_OK(cx_webhook_sign("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			     MSG_ID, TS, BODY, strlen(BODY), sig, sizeof(sig), &e) == 0, "a 64-byte key is fine");
	T_OK(cx_webhook_sign(SECRET, MSG_ID, TS, BODY, strlen(BODY), sig, CX_WEBHOOK_SIG_SIZE - 1, &e) == -1 &&
	     sig[0] == '\0', "a small output buffer is refused and left empty");
	T_OK(cx_webhook_sign(SECRET, "a.b", TS, BODY, strlen(BODY), sig, sizeof(sig), &e) == -1 &&
	     strcmp(e.code, "malformed") == 0, "an id with '.' is not signed");
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	test_vector();
	test_tampering();
	test_timestamps();
	test_signature_lists();
	test_malformed();
	test_secrets();
	return t_done();
}
