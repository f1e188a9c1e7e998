/*
 * trace.c - W3C Trace Context traceparent values (see trace.h).
 *
 * The parser works on a byte range and checks fixed positions only, so it
 * costs a few dozen comparisons per request and never allocates.  Random
 * ids come from a per-thread pool (see below), so starting a trace costs a
 * few dozen nanoseconds rather than a system call.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "core/trace.h"

static const char hexdig[] = "0123456789abcdef";

/* ---- random ids ---- */

/*
 * Each thread keeps a ChaCha20 key drawn from libsodium's randombytes once
 * and refills a small pool with the keystream under a fresh nonce: the
 * kernel's generator costs ~0.4 us per call plus ~4 ns per byte here, which
 * for a request without a traceparent would be a visible share of its
 * cost; a user-space block costs a few ns per id.  This is how libsodium's
 * own internal generator and arc4random work; trace ids need uniqueness
 * and unpredictability, not secrecy.
 */
#define POOL_BYTES 256

static __thread unsigned char pool[POOL_BYTES];
static __thread size_t pool_pos = POOL_BYTES;	/* = empty */
static __thread unsigned char pool_key[crypto_stream_chacha20_KEYBYTES];
static __thread uint64_t pool_nonce;
static __thread bool pool_keyed;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child starts with a copy of the parent's key and pool; without
 * this it would hand out the very ids the parent is about to hand out. */
static void pool_forget(void)
{
	pool_keyed = false;
	pool_pos = POOL_BYTES;
}

static void pool_register_atfork(void)
{
	(void)pthread_atfork(NULL, NULL, pool_forget);
}

static void pool_refill(void)
{
	unsigned char nonce[crypto_stream_chacha20_NONCEBYTES];

	if (!pool_keyed) {
		pthread_once(&atfork_once, pool_register_atfork);
		randombytes_buf(pool_key, sizeof(pool_key));
		pool_nonce = 0;
		pool_keyed = true;
	}
	/* 2^64 nonces per key: never reused within a thread's life */
	memcpy(nonce, &pool_nonce, sizeof(nonce));
	pool_nonce++;
	crypto_stream_chacha20(pool, sizeof(pool), nonce, pool_key);
	pool_pos = 0;
}

static void random_bytes(unsigned char *out, size_t n)
{
	if (n > POOL_BYTES) {
		randombytes_buf(out, n);
		return;
	}
	if (POOL_BYTES - pool_pos < n)
		pool_refill();
	memcpy(out, pool + pool_pos, n);
	pool_pos += n;
}

static bool all_zero(const unsigned char *b, size_t n)
{
	unsigned char acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= b[i];
	return acc == 0;
}

/* n random bytes as 2n lower-case hex digits + NUL; never all zero (the
 * spec makes that value invalid; it comes up once in 2^64 at worst). */
static void random_hex(char *out, size_t nbytes)
{
	unsigned char b[16];

	do
		random_bytes(b, nbytes);
	while (all_zero(b, nbytes));
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hexdig[b[i] >> 4];
		out[2 * i + 1] = hexdig[b[i] & 15];
	}
	out[2 * nbytes] = '\0';
}

void mf_trace_new(mf_trace_t *t)
{
	random_hex(t->trace_id, 16);
	random_hex(t->parent_id, 8);
	t->flags = 0;
}

void mf_trace_child(const mf_trace_t *parent, mf_trace_t *child)
{
	if (child != parent) {
		memcpy(child->trace_id, parent->trace_id, sizeof(child->trace_id));
		child->flags = parent->flags;
	}
	random_hex(child->parent_id, 8);
}

/* ---- parsing ---- */

static int hexval(char c)
{
	/* lower case only: the spec reserves upper case so that one id has one
	 * spelling, and an upper-case header is invalid rather than folded */
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* n lower-case hex digits, not all '0'. */
static bool hex_id_ok(const char *s, size_t n)
{
	bool nonzero = false;

	for (size_t i = 0; i < n; i++) {
		if (hexval(s[i]) < 0)
			return false;
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

static int bad(mf_err_t *err, const char *why)
{
	return mf_err_set(err, 400, "invalid_traceparent", "traceparent %s", why);
}

int mf_trace_parse(mf_trace_t *t, const char *s, size_t len, mf_err_t *err)
{
	int v_hi, v_lo, f_hi, f_lo;
	unsigned version;
	unsigned char flags;

	if (s == NULL)
		return bad(err, "is absent");
	/* HTTP strips optional whitespace around a field value; do it here too
	 * so callers holding a raw value get the same answer */
	while (len && (s[0] == ' ' || s[0] == '\t')) {
		s++;
		len--;
	}
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len < MF_TRACE_HEADER_LEN)
		return bad(err, "is too short");
	v_hi = hexval(s[0]);
	v_lo = hexval(s[1]);
	if (v_hi < 0 || v_lo < 0)
		return bad(err, "version is not two lower-case hex digits");
	version = (unsigned)(v_hi << 4 | v_lo);
	if (version == 0xff)
		return bad(err, "version ff is invalid");
	if (version == 0 && len != MF_TRACE_HEADER_LEN)
		return bad(err, "version 00 must be exactly 55 characters");
	if (version > 0 && len > MF_TRACE_HEADER_LEN && s[MF_TRACE_HEADER_LEN] != '-')
		return bad(err, "fields of a later version must follow a '-'");
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return bad(err, "fields are not separated by '-' at the right places");
	if (!hex_id_ok(s + 3, 32))
		return bad(err, "trace-id is not 32 lower-case hex digits, or is all zero");
	if (!hex_id_ok(s + 36, 16))
		return bad(err, "parent-id is not 16 lower-case hex digits, or is all zero");
	f_hi = hexval(s[53]);
	f_lo = hexval(s[54]);
	if (f_hi < 0 || f_lo < 0)
		return bad(err, "trace-flags is not two lower-case hex digits");
	flags = (unsigned char)(f_hi << 4 | f_lo);
	/* a later version may give the other bits a meaning we do not know */
	if (version > 0)
		flags &= MF_TRACE_SAMPLED;
	memcpy(t->trace_id, s + 3, 32);
	t->trace_id[32] = '\0';
	memcpy(t->parent_id, s + 36, 16);
	t->parent_id[16] = '\0';
	t->flags = flags;
	return 0;
}

bool mf_trace_valid(const mf_trace_t *t)
{
	return t && memchr(t->trace_id, '\0', sizeof(t->trace_id)) == t->trace_id + 32 &&
	       memchr(t->parent_id, '\0', sizeof(t->parent_id)) == t->parent_id + 16 &&
	       hex_id_ok(t->trace_id, 32) && hex_id_ok(t->parent_id, 16);
}

int mf_trace_format(const mf_trace_t *t, char *out, size_t outlen)
{
	if (outlen && out)
		out[0] = '\0';
	if (out == NULL || outlen < MF_TRACE_HEADER_SIZE || !mf_trace_valid(t))
		return -1;
	/* always version 00: the version we implement, whatever we received */
	out[0] = '0';
	out[1] = '0';
	out[2] = '-';
	memcpy(out + 3, t->trace_id, 32);
	out[35] = '-';
	memcpy(out + 36, t->parent_id, 16);
	out[52] = '-';
	out[53] = hexdig[t->flags >> 4];
	out[54] = hexdig[t->flags & 15];
	out[55] = '\0';
	return 0;
}
