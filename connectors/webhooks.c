/*
 * webhooks.c - Standard Webhooks v1 signatures (see webhooks.h).
 *
 * The MAC is computed once per verification and compared against each v1
 * entry with sodium_memcmp(), so the time taken says nothing about how
 * close a forged entry came.  Received headers are checked against fixed
 * limits before anything else, and the timestamp before the MAC, so a
 * replayed or oversized message costs no hashing.  Key material lives on
 * the stack and is wiped before returning.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "connectors/webhooks.h"

#define MAC_LEN crypto_auth_hmacsha256_BYTES	/* 32 */
#define MAC_B64_LEN 44				/* base64 of 32 bytes, padded */
#define TS_DIGITS_MAX 15

/*
 * Standard base64 alphabet with at most two '=' at the end.  Checked before
 * sodium_base642bin() because libsodium 1.0.18's decoder reads every byte
 * >= 0x80 as '/' (found by fuzz_webhook): harmless for forgery, but it
 * would make a signature or secret accept many spellings.
 */
static bool b64_text_ok(const char *s, size_t n)
{
	size_t pad = 0;

	while (pad < 2 && pad < n && s[n - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < n - pad; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
		      c == '/'))
			return false;
	}
	return true;
}

/* Decodes "whsec_<base64>" (prefix optional) into key; returns its length,
 * or -1. */
static int secret_decode(const char *secret, unsigned char key[CX_WEBHOOK_KEY_MAX])
{
	size_t plen = sizeof(CX_WEBHOOK_SECRET_PREFIX) - 1, n, keylen = 0;

	if (secret == NULL)
		return -1;
	if (strncmp(secret, CX_WEBHOOK_SECRET_PREFIX, plen) == 0)
		secret += plen;
	n = strnlen(secret, 4 * CX_WEBHOOK_KEY_MAX);
	if (n == 0 || n >= 4 * CX_WEBHOOK_KEY_MAX || !b64_text_ok(secret, n))
		return -1;
	/* NULL end pointer: any character outside the alphabet fails */
	if (sodium_base642bin(key, CX_WEBHOOK_KEY_MAX, secret, n, NULL, &keylen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	if (keylen < CX_WEBHOOK_KEY_MIN) {
		sodium_memzero(key, CX_WEBHOOK_KEY_MAX);
		return -1;
	}
	return (int)keylen;
}

/* The scheme asks that ids carry no '.'; spaces and control characters
 * have no business in a header-borne id either. */
static bool msg_id_ok(const char *id)
{
	size_t n;

	if (id == NULL)
		return false;
	n = strnlen(id, CX_WEBHOOK_ID_MAX + 1);
	if (n == 0 || n > CX_WEBHOOK_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (id[i] <= ' ' || id[i] > '~' || id[i] == '.')
			return false;
	return true;
}

static void mac_compute(const unsigned char *key, size_t keylen, const char *id, const char *ts,
			const void *body, size_t len, unsigned char mac[MAC_LEN])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, keylen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)id, strlen(id));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	if (len)
		crypto_auth_hmacsha256_update(&st, body, len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

int cx_webhook_secret_new(char *out, size_t len)
{
	unsigned char key[CX_WEBHOOK_KEY_NEW];
	size_t plen = sizeof(CX_WEBHOOK_SECRET_PREFIX) - 1;

	if (out == NULL || len < CX_WEBHOOK_SECRET_SIZE)
		return -1;
	randombytes_buf(key, sizeof(key));
	memcpy(out, CX_WEBHOOK_SECRET_PREFIX, plen);
	sodium_bin2base64(out + plen, len - plen, key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	return 0;
}

int cx_webhook_sign(const char *secret, const char *msg_id, long long ts, const void *body, size_t len,
		    char *out, size_t outlen, mf_err_t *err)
{
	unsigned char key[CX_WEBHOOK_KEY_MAX], mac[MAC_LEN];
	char tsbuf[24];
	int keylen;

	if (out && outlen)
		out[0] = '\0';
	if (out == NULL || outlen < CX_WEBHOOK_SIG_SIZE)
		return mf_err_set(err, 500, "buffer_too_small", "signature buffer too small");
	if (!msg_id_ok(msg_id))
		return mf_err_set(err, 400, "malformed", "message id must be 1..%d printable characters without '.'",
				  CX_WEBHOOK_ID_MAX);
	if (ts < 0)
		return mf_err_set(err, 400, "malformed", "timestamp must not be negative");
	if (body == NULL && len)
		return mf_err_set(err, 400, "malformed", "no body");
	keylen = secret_decode(secret, key);
	if (keylen < 0)
		return mf_err_set(err, 500, "bad_secret", "webhook secret is not whsec_ + base64 of %d..%d bytes",
				  CX_WEBHOOK_KEY_MIN, CX_WEBHOOK_KEY_MAX);
	snprintf(tsbuf, sizeof(tsbuf), "%lld", ts);
	mac_compute(key, (size_t)keylen, msg_id, tsbuf, body, len, mac);
	sodium_memzero(key, sizeof(key));
	memcpy(out, "v1,", 3);
	sodium_bin2base64(out + 3, outlen - 3, mac, sizeof(mac), sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

/* Plain decimal digits, no sign, no leading zero, at most TS_DIGITS_MAX
 * (so the value fits easily and "0123" cannot sign as "123"). */
static int ts_parse(const char *s, long long *ts)
{
	size_t n = s ? strnlen(s, TS_DIGITS_MAX + 1) : 0;
	long long v = 0;

	if (n == 0 || n > TS_DIGITS_MAX || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*ts = v;
	return 0;
}

/* |now - ts| > tol without overflow for any now: ts is in [0, 10^15), so
 * the true distance fits in an unsigned 64-bit value. */
static bool ts_outside(long long now, long long ts, long long tol)
{
	unsigned long long d = now >= ts ? (unsigned long long)now - (unsigned long long)ts
					 : (unsigned long long)ts - (unsigned long long)now;

	return d > (unsigned long long)tol;
}

/* Does one "v1,<base64>" token equal mac?  Tokens of other versions, and
 * v1 tokens that do not decode to exactly 32 bytes, are simply not a match. */
static bool entry_matches(const char *tok, size_t n, const unsigned char mac[MAC_LEN])
{
	unsigned char got[MAC_LEN];
	size_t gotlen = 0;
	bool eq;

	if (n != 3 + MAC_B64_LEN || memcmp(tok, "v1,", 3) != 0 || !b64_text_ok(tok + 3, MAC_B64_LEN))
		return false;
	if (sodium_base642bin(got, sizeof(got), tok + 3, MAC_B64_LEN, NULL, &gotlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 || gotlen != MAC_LEN)
		return false;
	eq = sodium_memcmp(got, mac, MAC_LEN) == 0;
	sodium_memzero(got, sizeof(got));
	return eq;
}

int cx_webhook_verify(const char *secret, const char *msg_id, const char *ts_header, const char *sig_header,
		      const void *body, size_t len, long long now, int tolerance_s, mf_err_t *err)
{
	unsigned char key[CX_WEBHOOK_KEY_MAX], mac[MAC_LEN];
	long long ts;
	size_t siglen;
	int keylen;
	bool ok = false;

	keylen = secret_decode(secret, key);
	if (keylen < 0)
		return mf_err_set(err, 500, "bad_secret", "webhook secret is not whsec_ + base64 of %d..%d bytes",
				  CX_WEBHOOK_KEY_MIN, CX_WEBHOOK_KEY_MAX);
	if (!msg_id_ok(msg_id)) {
		sodium_memzero(key, sizeof(key));
		return mf_err_set(err, 400, "malformed", "webhook-id is missing or not a plain id");
	}
	if (ts_parse(ts_header, &ts) != 0) {
		sodium_memzero(key, sizeof(key));
		return mf_err_set(err, 400, "malformed", "webhook-timestamp is missing or not unix seconds");
	}
	siglen = sig_header ? strnlen(sig_header, CX_WEBHOOK_SIG_HEADER_MAX + 1) : 0;
	if (siglen == 0 || siglen > CX_WEBHOOK_SIG_HEADER_MAX) {
		sodium_memzero(key, sizeof(key));
		return mf_err_set(err, 400, "malformed", "webhook-signature is missing or longer than %d bytes",
				  CX_WEBHOOK_SIG_HEADER_MAX);
	}
	if (body == NULL && len) {
		sodium_memzero(key, sizeof(key));
		return mf_err_set(err, 400, "malformed", "no body");
	}
	if (ts_outside(now, ts, tolerance_s > 0 ? tolerance_s : CX_WEBHOOK_TOLERANCE_DEFAULT)) {
		sodium_memzero(key, sizeof(key));
		return mf_err_set(err, 401, "timestamp_out_of_range",
				  "webhook-timestamp is too far from the current time");
	}
	mac_compute(key, (size_t)keylen, msg_id, ts_header, body, len, mac);
	sodium_memzero(key, sizeof(key));
	for (size_t i = 0; i < siglen;) {
		size_t j = i;

		while (j < siglen && sig_header[j] != ' ')
			j++;
		/* no early exit: every entry is looked at whatever matched before */
		if (j > i && entry_matches(sig_header + i, j - i, mac))
			ok = true;
		i = j + 1;
	}
	sodium_memzero(mac, sizeof(mac));
	if (!ok)
		return mf_err_set(err, 401, "bad_signature", "no webhook-signature entry matches");
	return 0;
}
