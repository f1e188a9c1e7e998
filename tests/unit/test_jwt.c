/*
 * test_jwt.c - JWT verification, signing, key ring config and the token
 * cache.  Tokens are built here with OpenSSL directly (ES256 raw R||S,
 * RS256, HMAC), not with libjwt, so the signer under test and the signer
 * in the test are independent; gw_jwt_sign's output is checked with an
 * ES256 verifier written here too.
 */
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sodium.h>

#include "gateway/jwt.h"
#include "t.h"

#define NOW 1700000000LL
#define LEEWAY 30
#define ISS "https://auth.mspflow.test"
#define AUD "mspflow-api"
#define TENANT "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
#define HS_ISS "https://idp.hs.test"
#define RS_ISS "https://idp.rsa.test"
#define RS_AUD "rsa-aud"
#define HDR_A "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"kA\"}"

enum { S_ES, S_RS, S_HS, S_JUNK };
typedef struct {
	int kind;
	EVP_PKEY *pk;
	const EVP_MD *md;
	const unsigned char *secret;
	size_t secret_len;
} signer_t;

/* ---- token building ---- */

static char *b64u(const void *p, size_t n)
{
	size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *s = malloc(cap);

	sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return s;
}

static size_t sign_bytes(const signer_t *s, const char *in, size_t n, unsigned char *sig)
{
	EVP_MD_CTX *ctx;
	unsigned char der[1024];
	size_t dlen = sizeof(der);
	unsigned int hl = 0;

	switch (s->kind) {
	case S_HS:
		HMAC(s->md, s->secret, (int)s->secret_len, (const unsigned char *)in, n, sig, &hl);
		return hl;
	case S_JUNK:
		memset(sig, 0x41, 64);
		return 64;
	}
	ctx = EVP_MD_CTX_new();
	if (EVP_DigestSignInit(ctx, NULL, s->md, NULL, s->pk) != 1 ||
	    EVP_DigestSign(ctx, der, &dlen, (const unsigned char *)in, n) != 1)
		abort();
	EVP_MD_CTX_free(ctx);
	if (s->kind == S_RS) {
		memcpy(sig, der, dlen);
		return dlen;
	} else {
		/* JOSE ES*: raw R||S, each left-padded to the coordinate size */
		const unsigned char *p = der;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
		size_t coord = ((size_t)EVP_PKEY_get_bits(s->pk) + 7) / 8;

		if (es == NULL || BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)coord) < 0 ||
		    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + coord, (int)coord) < 0)
			abort();
		ECDSA_SIG_free(es);
		return 2 * coord;
	}
}

/* header.payload.signature over the exact JSON texts given */
static char *mk(const char *hdr, const char *pay, const signer_t *s)
{
	char *h = b64u(hdr, strlen(hdr)), *p = b64u(pay, strlen(pay)), *in, *sig64, *tok;
	unsigned char sig[1024];
	size_t n, sl;

	n = strlen(h) + 1 + strlen(p);
	in = malloc(n + 1);
	snprintf(in, n + 1, "%s.%s", h, p);
	sl = sign_bytes(s, in, n, sig);
	sig64 = b64u(sig, sl);
	tok = malloc(n + 2 + strlen(sig64));
	sprintf(tok, "%s.%s", in, sig64);
	free(h);
	free(p);
	free(in);
	free(sig64);
	return tok;
}

static json_t *claims_base(void)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:[s,s], s:I, s:I, s:I, s:s}", "iss", ISS, "aud", AUD,
			 "sub", "user-1", "tenant_id", TENANT, "roles", "admin", "read_only",
			 "iat", (json_int_t)(NOW - 10), "nbf", (json_int_t)(NOW - 10),
			 "exp", (json_int_t)(NOW + 600), "jti", "jti-1");
}

/* JSON text of j (consumed); a static buffer, good until the next call */
static const char *txt(json_t *j)
{
	static char buf[16384];
	char *s = json_dumps(j, JSON_COMPACT);

	snprintf(buf, sizeof(buf), "%s", s);
	free(s);
	json_decref(j);
	return buf;
}

/* base claims with one claim replaced (v consumed) or, for v NULL, removed */
static const char *with(const char *k, json_t *v)
{
	json_t *c = claims_base();

	if (v)
		json_object_set_new(c, k, v);
	else
		json_object_del(c, k);
	return txt(c);
}

/* ---- checks ---- */

static void rej(const gw_keyring_t *r, char *tok, const char *want, const char *what)
{
	gw_claims_t c;
	const char *reason = NULL;
	int rc = gw_jwt_verify(r, tok, strlen(tok), NOW, &c, &reason);

	T_OK(rc == -1 && reason && strcmp(reason, want) == 0 && c.sub[0] == '\0', what);
	if (!(rc == -1 && reason && strcmp(reason, want) == 0))
		printf("#   rc %d reason %s, want %s\n", rc, reason ? reason : "(null)", want);
	free(tok);
}

static int acc_at(const gw_keyring_t *r, char *tok, long long now, gw_claims_t *c, const char *what)
{
	const char *reason = NULL;
	int rc = gw_jwt_verify(r, tok, strlen(tok), now, c, &reason);

	T_OK(rc == 0, what);
	if (rc != 0)
		printf("#   reason %s\n", reason ? reason : "(null)");
	free(tok);
	return rc;
}

static int acc(const gw_keyring_t *r, char *tok, const char *what)
{
	gw_claims_t c;

	return acc_at(r, tok, NOW, &c, what);
}

/* ---- keys ---- */

static EVP_PKEY *priv_from_pem(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);

	BIO_free(b);
	return k;
}

static EVP_PKEY *pub_from_pem(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);

	BIO_free(b);
	return k;
}

static char *pem_of(EVP_PKEY *k, int priv)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out;
	long n;

	if (priv)
		PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_PUBKEY(b, k);
	n = BIO_get_mem_data(b, &data);
	/* the BIO's data is not NUL-terminated: no strndup (ASan's strict
	 * string checks read to the NUL) */
	out = malloc((size_t)n + 1);
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	BIO_free(b);
	return out;
}

static void ec_point(EVP_PKEY *k, unsigned char x[32], unsigned char y[32])
{
	BIGNUM *bx = NULL, *by = NULL;

	EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &bx);
	EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &by);
	BN_bn2binpad(bx, x, 32);
	BN_bn2binpad(by, y, 32);
	BN_free(bx);
	BN_free(by);
}

/* ES256 verification written against RFC 7518 3.4, independent of libjwt */
static int es256_verify_raw(EVP_PKEY *pub, const char *tok)
{
	const char *d2 = strrchr(tok, '.');
	unsigned char sig[128], der[128], *p = der;
	size_t sl;
	ECDSA_SIG *es = ECDSA_SIG_new();
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int dl, ok;

	if (sodium_base642bin(sig, sizeof(sig), d2 + 1, strlen(d2 + 1), NULL, &sl, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || sl != 64)
		ok = 0;
	else {
		ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
		dl = i2d_ECDSA_SIG(es, &p);
		ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1 &&
		     EVP_DigestVerify(ctx, der, (size_t)dl, (const unsigned char *)tok, (size_t)(d2 - tok)) == 1;
	}
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(ctx);
	return ok;
}

static json_t *decode_segment(const char *tok, int idx)
{
	char seg[8192];
	unsigned char bin[8192];
	const char *s = tok;
	size_t n, bl;
	json_t *j;

	for (int i = 0; i < idx; i++)
		s = strchr(s, '.') + 1;
	n = strcspn(s, ".");
	memcpy(seg, s, n);
	if (sodium_base642bin(bin, sizeof(bin), seg, n, NULL, &bl, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return NULL;
	j = json_loadb((const char *)bin, bl, JSON_REJECT_DUPLICATES, NULL);
	return j;
}

/* ---- globals for the cases ---- */

static char *pubA, *privA, *pubB, *privB, *pubC, *privC, *rsa_pub;
static EVP_PKEY *kA, *kB, *kC, *kR;
static unsigned char hs_secret[32];
static signer_t sA, sB, sC;

static gw_keyring_t *make_ring(int with_a, int with_b, int with_ext)
{
	gw_keyring_t *r = gw_keyring_new(ISS, AUD, LEEWAY);
	mf_err_t err;

	if (with_a && gw_keyring_add_platform(r, "kA", pubA, NULL, &err) < 0)
		abort();
	if (with_b && (gw_keyring_add_platform(r, "kB", pubB, privB, &err) < 0 ||
		       gw_keyring_set_signer(r, "kB", &err) < 0))
		abort();
	if (with_ext) {
		char b64[128];
		json_t *doc;

		sodium_bin2base64(b64, sizeof(b64), hs_secret, sizeof(hs_secret), sodium_base64_VARIANT_ORIGINAL);
		doc = json_pack("[{s:s, s:[{s:s, s:s, s:s}]}, {s:s, s:s, s:[{s:s, s:s, s:s}]}]",
				"issuer", HS_ISS, "keys", "kid", "h1", "alg", "HS256", "secret", b64,
				"issuer", RS_ISS, "audience", RS_AUD, "keys", "kid", "r1", "alg", "RS256", "pem", rsa_pub);
		if (gw_keyring_add_issuers_json(r, doc, &err) < 0) {
			printf("# %s\n", err.detail);
			abort();
		}
		json_decref(doc);
	}
	return r;
}

/* ---- cases ---- */

static void test_good(gw_keyring_t *r)
{
	gw_claims_t in = { 0 }, c;
	mf_err_t err;
	char *tok, *tok2;
	json_t *h, *p;
	const char *reason;

	snprintf(in.sub, sizeof(in.sub), "user-42");
	snprintf(in.tenant_id, sizeof(in.tenant_id), "6F1C2D3E-4A5B-4C6D-8E9F-0A1B2C3D4E5F");
	in.nroles = 2;
	snprintf(in.roles[0], sizeof(in.roles[0]), "admin");
	snprintf(in.roles[1], sizeof(in.roles[1]), "read_only");
	in.iat = NOW - 5;
	in.nbf = NOW - 5;
	in.exp = NOW + 900;
	tok = gw_jwt_sign(r, &in, &err);
	T_OK(tok != NULL, "gw_jwt_sign signs");
	if (tok == NULL)
		return;
	T_OK(gw_jwt_verify(r, tok, strlen(tok), NOW, &c, &reason) == 0, "a signed token verifies");
	T_STREQ(c.sub, "user-42", "sub comes back");
	T_STREQ(c.tenant_id, TENANT, "tenant_id comes back lower-cased");
	T_STREQ(c.iss, ISS, "iss comes back");
	T_OK(c.nroles == 2, "two roles");
	T_STREQ(c.roles[0], "admin", "role 0");
	T_STREQ(c.roles[1], "read_only", "role 1");
	T_OK(c.iat == NOW - 5 && c.nbf == NOW - 5 && c.exp == NOW + 900, "iat/nbf/exp come back");
	T_OK(c.issuer == 0, "platform issuer");
	T_OK(strlen(c.jti) == 22, "an empty jti gets a random 128-bit one");
	T_OK(es256_verify_raw(kB, tok), "the signature is raw R||S ES256 (independent verifier)");
	h = decode_segment(tok, 0);
	T_OK(h && json_object_size(h) == 3 && strcmp(json_string_value(json_object_get(h, "alg")), "ES256") == 0 &&
	     strcmp(json_string_value(json_object_get(h, "typ")), "JWT") == 0 &&
	     strcmp(json_string_value(json_object_get(h, "kid")), "kB") == 0,
	     "header is {alg: ES256, typ: JWT, kid: kB}");
	json_decref(h);
	p = decode_segment(tok, 1);
	T_OK(p && strcmp(json_string_value(json_object_get(p, "aud")), AUD) == 0 &&
	     strcmp(json_string_value(json_object_get(p, "tenant_id")), TENANT) == 0,
	     "payload carries aud and the lower-cased tenant_id");
	json_decref(p);
	tok2 = gw_jwt_sign(r, &in, &err);
	T_OK(tok2 && gw_jwt_verify(r, tok2, strlen(tok2), NOW, &c, &reason) == 0 &&
	     strcmp(c.jti, "") != 0, "a second token verifies");
	{
		gw_claims_t c1;

		T_OK(gw_jwt_verify(r, tok, strlen(tok), NOW, &c1, &reason) == 0 && strcmp(c1.jti, c.jti) != 0,
		     "generated jtis differ");
	}
	free(tok2);
	/* a token one byte off is not the same token */
	tok[strlen(tok) - 5] ^= 0x01;
	T_OK(gw_jwt_verify(r, tok, strlen(tok), NOW, &c, &reason) == -1, "a flipped signature byte fails");
	free(tok);

	snprintf(in.jti, sizeof(in.jti), "fixed-jti");
	tok = gw_jwt_sign(r, &in, &err);
	T_OK(tok && gw_jwt_verify(r, tok, strlen(tok), NOW, &c, &reason) == 0 && strcmp(c.jti, "fixed-jti") == 0,
	     "a given jti is kept");
	free(tok);

	/* the test's own signer, with the verify-only key A */
	acc(r, mk(HDR_A, txt(claims_base()), &sA), "a token by an independent ES256 signer verifies");
	acc(r, mk("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"kA\"}", txt(claims_base()), &sA),
	    "typ at+jwt is accepted (signature checked outside libjwt)");
	rej(r, mk("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"kA\"}", txt(claims_base()), &sC),
	    "bad_signature", "at+jwt: another key's signature fails");
	rej(r, mk("{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"kA\"}", txt(claims_base()),
		  &(signer_t){ S_JUNK }), "bad_signature", "at+jwt: a junk signature fails");
	rej(r, mk("{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"kA\"}", txt(claims_base()),
		  &(signer_t){ S_HS, NULL, EVP_sha256(), (const unsigned char *)pubA, strlen(pubA) }),
	    "alg_mismatch", "at+jwt: HS256 with the PEM as secret");
	acc(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\"}", txt(claims_base()), &sA), "typ may be absent");
	acc(r, mk(HDR_A, with("aud", json_pack("[s,s]", "other", AUD)), &sA), "an aud array with ours");
	acc(r, mk(HDR_A, with("roles", json_array()), &sA), "no roles is allowed");
	{
		json_t *c2 = claims_base();

		json_object_set_new(c2, "extra", json_pack("{s:[i]}", "nested", 1));
		acc(r, mk(HDR_A, txt(c2), &sA), "unknown claims are ignored");
	}
}

static void test_sign_refusals(gw_keyring_t *r)
{
	gw_claims_t in = { 0 };
	mf_err_t err;
	gw_keyring_t *noskey = make_ring(1, 0, 0);
	char *tok;

	snprintf(in.sub, sizeof(in.sub), "u");
	snprintf(in.tenant_id, sizeof(in.tenant_id), TENANT);
	in.iat = in.nbf = NOW;
	in.exp = NOW + 60;
	tok = gw_jwt_sign(noskey, &in, &err);
	T_OK(tok == NULL && strcmp(err.code, "jwt_no_signer") == 0, "no signer key, no token");
	gw_keyring_free(noskey);
	snprintf(in.tenant_id, sizeof(in.tenant_id), "not-a-uuid");
	T_OK(gw_jwt_sign(r, &in, &err) == NULL && strcmp(err.code, "invalid_claims") == 0, "sign refuses a bad tenant_id");
	snprintf(in.tenant_id, sizeof(in.tenant_id), TENANT);
	in.nroles = 1;
	snprintf(in.roles[0], sizeof(in.roles[0]), "Admin");
	T_OK(gw_jwt_sign(r, &in, &err) == NULL, "sign refuses a role outside [a-z0-9_]");
	in.nroles = 0;
	in.exp = in.iat;
	T_OK(gw_jwt_sign(r, &in, &err) == NULL, "sign refuses exp <= iat");
	in.exp = NOW + 60;
	in.sub[0] = '\0';
	T_OK(gw_jwt_sign(r, &in, &err) == NULL, "sign refuses an empty sub");
	memset(in.sub, 'a', sizeof(in.sub));
	T_OK(gw_jwt_sign(r, &in, &err) == NULL, "sign refuses an unterminated sub");
}

static void test_alg(gw_keyring_t *r)
{
	const char *pay = txt(claims_base());
	char buf[256];
	signer_t junk = { S_JUNK };
	signer_t hs_pem = { S_HS, NULL, EVP_sha256(), (const unsigned char *)pubA, strlen(pubA) };
	char *forged;
	jwt_t *j = NULL;

	{
		/* alg none with no signature: libjwt would take it; here the empty segment fails first */
		char *h = b64u("{\"alg\":\"none\",\"kid\":\"kA\"}", 25), *p = b64u(pay, strlen(pay));
		char *t = malloc(strlen(h) + strlen(p) + 3);

		sprintf(t, "%s.%s.", h, p);
		rej(r, t, "bad_segments", "alg none with an empty signature");
		free(h);
		free(p);
	}
	rej(r, mk("{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"kA\"}", pay, &junk), "alg_none", "alg none");
	rej(r, mk("{\"alg\":\"NoNe\",\"typ\":\"JWT\",\"kid\":\"kA\"}", pay, &junk), "alg_none", "alg NoNe");
	rej(r, mk("{\"alg\":\"\",\"typ\":\"JWT\",\"kid\":\"kA\"}", pay, &junk), "bad_alg", "alg empty");
	rej(r, mk("{\"typ\":\"JWT\",\"kid\":\"kA\"}", pay, &sA), "bad_alg", "alg missing");
	rej(r, mk("{\"alg\":7,\"kid\":\"kA\"}", pay, &sA), "bad_alg", "alg not a string");
	rej(r, mk("{\"alg\":\"es256\",\"typ\":\"JWT\",\"kid\":\"kA\"}", pay, &sA), "alg_mismatch",
	    "alg es256 (lower case) with a real ES256 signature");
	rej(r, mk("{\"alg\":\"ES384\",\"typ\":\"JWT\",\"kid\":\"kA\"}", pay, &sA), "alg_mismatch",
	    "alg ES384 on a P-256 key");

	/* the classic key confusion: HS256 with the public key's PEM as the secret */
	forged = mk("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"kA\"}", pay, &hs_pem);
	T_OK(jwt_decode(&j, forged, (const unsigned char *)pubA, (int)strlen(pubA)) == 0,
	     "(libjwt alone accepts the HS256-with-PEM forgery, so the next check means something)");
	jwt_free(j);
	rej(r, forged, "alg_mismatch", "HS256 signed with the public key PEM bytes");

	snprintf(buf, sizeof(buf), "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"kA\",\"%s\":%s}", "crit", "[\"exp\"]");
	rej(r, mk(buf, pay, &sA), "forbidden_header", "crit header");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"jku\":\"https://evil/jwks\"}", pay, &sA), "forbidden_header",
	    "jku header");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"x5u\":\"https://evil/cert\"}", pay, &sA), "forbidden_header",
	    "x5u header");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"jwk\":{\"kty\":\"EC\"}}", pay, &sA), "forbidden_header",
	    "jwk header");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"x5c\":[\"MII\"]}", pay, &sA), "forbidden_header", "x5c header");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"x5t\":\"abc\"}", pay, &sA), "forbidden_header", "x5t header");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"cty\":\"JWT\"}", pay, &sA), "unknown_header",
	    "an unknown header parameter");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"typ\":\"jwt\"}", pay, &sA), "bad_typ", "typ jwt (lower case)");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\",\"typ\":1}", pay, &sA), "bad_typ", "typ not a string");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":1}", pay, &sA), "bad_kid", "kid not a string");
	rej(r, mk("{\"alg\":\"ES256\",\"alg\":\"none\",\"kid\":\"kA\"}", pay, &sA), "bad_header_json",
	    "duplicate header keys");
	rej(r, mk("[\"ES256\"]", pay, &sA), "bad_header", "header not an object");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA\"}x", pay, &sA), "bad_header_json", "header with trailing junk");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"k\\u0000A\"}", pay, &sA), "bad_header_json", "\\u0000 in the kid");
}

static void test_kid(gw_keyring_t *r)
{
	const char *pay = txt(claims_base());

	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kZ\"}", pay, &sA), "unknown_kid", "unknown kid");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"../../etc/passwd\"}", pay, &sA), "unknown_kid", "path-like kid");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"ka\"}", pay, &sA), "unknown_kid", "kid differing in case");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kA \"}", pay, &sA), "unknown_kid", "kid with a trailing space");
	rej(r, mk("{\"alg\":\"ES256\"}", pay, &sA), "missing_kid", "missing kid");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"\"}", pay, &sA), "bad_kid", "empty kid");
	rej(r, mk(HDR_A, pay, &sC), "bad_signature", "a signature by another P-256 key under the same kid");
	rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"kB\"}", pay, &sA), "bad_signature", "key A's signature under kid kB");
}

static void test_time(gw_keyring_t *r)
{
	json_t *c;
	gw_claims_t cl;

#define TIMES(iat, nbf, exp) (c = claims_base(), json_object_set_new(c, "iat", json_integer(iat)), \
	json_object_set_new(c, "nbf", json_integer(nbf)), json_object_set_new(c, "exp", json_integer(exp)), txt(c))
	rej(r, mk(HDR_A, TIMES(NOW - 1000, NOW - 1000, NOW - LEEWAY - 1), &sA), "expired", "expired beyond leeway");
	rej(r, mk(HDR_A, TIMES(NOW - 1000, NOW - 1000, NOW - LEEWAY), &sA), "expired", "expired exactly at leeway");
	acc(r, mk(HDR_A, TIMES(NOW - 1000, NOW - 1000, NOW - LEEWAY + 1), &sA), "expired within leeway is accepted");
	acc(r, mk(HDR_A, TIMES(NOW - 1000, NOW - 1000, NOW - 1), &sA), "expired a second ago is accepted");
	rej(r, mk(HDR_A, TIMES(NOW, NOW + LEEWAY + 1, NOW + 600), &sA), "not_yet_valid", "nbf beyond leeway");
	acc(r, mk(HDR_A, TIMES(NOW, NOW + LEEWAY, NOW + 600), &sA), "nbf within leeway is accepted");
	rej(r, mk(HDR_A, TIMES(NOW + LEEWAY + 1, NOW, NOW + 600), &sA), "iat_future", "iat in the future");
	acc(r, mk(HDR_A, TIMES(NOW + LEEWAY, NOW, NOW + 600), &sA), "iat within leeway is accepted");
	rej(r, mk(HDR_A, TIMES(NOW - 10, NOW - 10, NOW - 10), &sA), "exp_before_iat", "exp == iat");
	rej(r, mk(HDR_A, TIMES(NOW, NOW, NOW - 5), &sA), "exp_before_iat", "exp < iat");
	acc_at(r, mk(HDR_A, TIMES(NOW - 10, NOW - 10, NOW + 600), &sA), NOW + 600 + LEEWAY - 1, &cl,
	       "still accepted one second before exp + leeway");
#undef TIMES
}

static void test_claims(gw_keyring_t *r)
{
	json_t *roles;
	char big[200];

	rej(r, mk(HDR_A, with("aud", json_string("other-api")), &sA), "wrong_aud", "wrong aud");
	rej(r, mk(HDR_A, with("aud", json_pack("[s,s]", "a", "b")), &sA), "wrong_aud", "aud array without ours");
	rej(r, mk(HDR_A, with("aud", json_pack("[s,i]", AUD, 1)), &sA), "bad_aud", "aud array with a non-string");
	rej(r, mk(HDR_A, with("aud", json_array()), &sA), "bad_aud", "empty aud array");
	rej(r, mk(HDR_A, with("aud", NULL), &sA), "bad_aud", "missing aud");
	rej(r, mk(HDR_A, with("aud", json_string(AUD "x")), &sA), "wrong_aud", "aud with our audience as a prefix");
	rej(r, mk(HDR_A, with("iss", json_string("https://evil.test")), &sA), "unknown_issuer", "wrong iss");
	rej(r, mk(HDR_A, with("iss", json_string(ISS "/")), &sA), "unknown_issuer", "iss with a trailing slash");
	rej(r, mk(HDR_A, with("iss", NULL), &sA), "bad_iss", "missing iss");
	rej(r, mk(HDR_A, with("iss", json_integer(1)), &sA), "bad_iss", "iss not a string");
	rej(r, mk(HDR_A, "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"a\",\"sub\":\"b\",\"tenant_id\":\"" TENANT
		  "\",\"roles\":[],\"iat\":1699999990,\"nbf\":1699999990,\"exp\":1700000600,\"jti\":\"j\"}", &sA),
	    "bad_payload_json", "duplicate claims");
	rej(r, mk(HDR_A, "[1]", &sA), "bad_payload", "payload not an object");
	rej(r, mk(HDR_A, "not json", &sA), "bad_payload_json", "payload not JSON");
	rej(r, mk(HDR_A, with("exp", json_string("1700000600")), &sA), "bad_exp", "exp as a string");
	rej(r, mk(HDR_A, with("exp", json_real(1.5)), &sA), "bad_exp", "exp as a float 1.5");
	rej(r, mk(HDR_A, with("exp", json_real(1700000600.0)), &sA), "bad_exp", "exp as a float with .0");
	rej(r, mk(HDR_A, with("exp", json_true()), &sA), "bad_exp", "exp as a boolean");
	rej(r, mk(HDR_A, with("exp", json_integer((1LL << 53) + 1)), &sA), "bad_exp", "exp beyond 2^53");
	rej(r, mk(HDR_A, with("exp", json_integer(-1)), &sA), "bad_exp", "negative exp");
	rej(r, mk(HDR_A, with("exp", NULL), &sA), "bad_exp", "missing exp");
	rej(r, mk(HDR_A, with("iat", json_string("now")), &sA), "bad_iat", "iat as a string");
	rej(r, mk(HDR_A, with("nbf", NULL), &sA), "bad_nbf", "missing nbf");
	rej(r, mk(HDR_A, with("roles", json_string("admin")), &sA), "bad_roles", "roles as a string");
	rej(r, mk(HDR_A, with("roles", json_pack("[s,i]", "admin", 1)), &sA), "bad_roles", "roles with a non-string");
	rej(r, mk(HDR_A, with("roles", json_pack("[s]", "Admin")), &sA), "bad_roles", "a role with upper case");
	rej(r, mk(HDR_A, with("roles", json_pack("[s]", "")), &sA), "bad_roles", "an empty role");
	memset(big, 'a', 64);
	big[64] = '\0';
	rej(r, mk(HDR_A, with("roles", json_pack("[s]", big)), &sA), "bad_roles", "a 64-byte role");
	big[63] = '\0';
	acc(r, mk(HDR_A, with("roles", json_pack("[s]", big)), &sA), "a 63-byte role is fine");
	roles = json_array();
	for (int i = 0; i < 33; i++)
		json_array_append_new(roles, json_string("r"));
	rej(r, mk(HDR_A, with("roles", roles), &sA), "bad_roles", "33 roles");
	roles = json_array();
	for (int i = 0; i < 32; i++)
		json_array_append_new(roles, json_string("r"));
	acc(r, mk(HDR_A, with("roles", roles), &sA), "32 roles are fine");
	rej(r, mk(HDR_A, with("roles", NULL), &sA), "bad_roles", "missing roles");
	rej(r, mk(HDR_A, with("tenant_id", json_string("not-a-uuid")), &sA), "bad_tenant_id", "tenant_id not a UUID");
	rej(r, mk(HDR_A, with("tenant_id", json_string("6f1c2d3e4a5b4c6d8e9f0a1b2c3d4e5f")), &sA), "bad_tenant_id",
	    "tenant_id without hyphens");
	rej(r, mk(HDR_A, with("tenant_id", json_string("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5g")), &sA), "bad_tenant_id",
	    "tenant_id with a non-hex digit");
	rej(r, mk(HDR_A, with("tenant_id", json_integer(5)), &sA), "bad_tenant_id", "tenant_id a number");
	rej(r, mk(HDR_A, with("sub", json_string("")), &sA), "bad_sub", "sub empty");
	memset(big, 's', 128);
	big[128] = '\0';
	rej(r, mk(HDR_A, with("sub", json_string(big)), &sA), "bad_sub", "sub of 128 bytes");
	big[127] = '\0';
	acc(r, mk(HDR_A, with("sub", json_string(big)), &sA), "sub of 127 bytes is fine");
	rej(r, mk(HDR_A, with("sub", NULL), &sA), "bad_sub", "missing sub");
	rej(r, mk(HDR_A, with("jti", NULL), &sA), "missing_jti", "platform token without jti");
	memset(big, 'j', 64);
	big[64] = '\0';
	rej(r, mk(HDR_A, with("jti", json_string(big)), &sA), "bad_jti", "jti of 64 bytes");
	rej(r, mk(HDR_A, with("jti", json_integer(1)), &sA), "bad_jti", "jti a number");
	rej(r, mk(HDR_A, "{\"iss\":\"" ISS "\",\"sub\":\"\\u0000\"}", &sA), "bad_payload_json", "\\u0000 in a claim");
}

static void test_shapes(gw_keyring_t *r)
{
	char *good = mk(HDR_A, txt(claims_base()), &sA), *t;
	size_t n = strlen(good);
	char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');

	T_OK(acc(r, strdup(good), "the base token verifies") == 0, "(base token for the shape cases)");
	t = strndup(good, n - 2);
	rej(r, t, "bad_signature", "truncated signature");
	t = strndup(good, n - 1);
	rej(r, t, "bad_base64", "truncated to an impossible base64 length");
	t = strndup(good, (size_t)(d2 - good));
	rej(r, t, "bad_segments", "two segments");
	t = malloc(n + 8);
	sprintf(t, "%s.AAAA", good);
	rej(r, t, "bad_segments", "four segments");
	t = malloc(n + 8);
	sprintf(t, "%s.", good);
	rej(r, t, "bad_segments", "a trailing dot");
	t = malloc(n + 8);
	sprintf(t, ".%s", d1 + 1);
	rej(r, t, "bad_segments", "empty header segment");
	t = malloc(n + 8);
	snprintf(t, n + 8, "%.*s.%s", (int)(d1 - good), good, d2 + 1);
	rej(r, t, "bad_segments", "header..signature");
	rej(r, strdup(""), "bad_segments", "empty token");
	rej(r, strdup(".."), "bad_segments", "only dots");
	t = malloc(n + 8);
	sprintf(t, "%s==", good);
	rej(r, t, "bad_base64", "padding '='");
	t = strdup(good);
	t[n - 3] = '+';
	rej(r, t, "bad_base64", "'+' (standard base64) in the signature");
	t = strdup(good);
	t[3] = '/';
	rej(r, t, "bad_base64", "'/' in the header");
	t = strdup(good);
	t[(d1 - good) + 4] = ' ';
	rej(r, t, "bad_base64", "a space in the payload");
	t = malloc(n + 8);
	sprintf(t, "%s\n", good);
	rej(r, t, "bad_base64", "a trailing newline");
	t = malloc(n + 8);
	sprintf(t, " %s", good);
	rej(r, t, "bad_base64", "leading whitespace");
	{
		/* 64 bytes -> 86 chars, the last carrying 4 unused bits: set one */
		static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
		int v = (int)(strchr(alpha, good[n - 1]) - alpha);

		t = strdup(good);
		t[n - 1] = alpha[v ^ 1];
		rej(r, t, "bad_base64", "non-canonical base64url (unused bits set)");
	}
	{
		gw_claims_t c;
		const char *reason;

		T_OK(gw_jwt_verify(r, good, n - 1, NOW, &c, &reason) == -1 && strcmp(reason, "bad_base64") == 0,
		     "the length argument is honoured (no strlen)");
		t = malloc(n + 8);
		memcpy(t, good, n);
		memcpy(t + n, "\0junk", 5);
		T_OK(gw_jwt_verify(r, t, n + 5, NOW, &c, &reason) == -1 && strcmp(reason, "bad_base64") == 0,
		     "a NUL inside the given length is refused");
		free(t);
	}
	free(good);
}

static void test_sizes(gw_keyring_t *r)
{
	size_t big = 20u << 20;
	char *t = malloc(big);
	gw_claims_t c;
	const char *reason;
	char *h = b64u(HDR_A, strlen(HDR_A));
	size_t hl = strlen(h);

	memset(t, 'A', big);
	memcpy(t, h, hl);
	t[hl] = '.';
	t[big / 2] = '.';
	T_OK(gw_jwt_verify(r, t, 64 << 10, NOW, &c, &reason) == -1 && strcmp(reason, "too_long") == 0,
	     "a 64 KiB token is refused as too_long");
	T_OK(gw_jwt_verify(r, t, big, NOW, &c, &reason) == -1 && strcmp(reason, "too_long") == 0,
	     "a 20 MiB token is refused as too_long, without a crash");
	T_OK(gw_jwt_verify(r, t, GW_JWT_MAX_TOKEN + 1, NOW, &c, &reason) == -1 && strcmp(reason, "too_long") == 0,
	     "GW_JWT_MAX_TOKEN + 1 bytes is too long");
	/* exactly the limit: parsed (and refused later, for other reasons) */
	t[GW_JWT_MAX_TOKEN - 100] = '.';
	T_OK(gw_jwt_verify(r, t, GW_JWT_MAX_TOKEN, NOW, &c, &reason) == -1 && strcmp(reason, "too_long") != 0,
	     "GW_JWT_MAX_TOKEN bytes is not too long");
	free(t);
	free(h);
	{
		/* a real token near the limit goes all the way to libjwt */
		json_t *cl = claims_base();
		char pad[5000];

		memset(pad, 'p', sizeof(pad) - 1);
		pad[sizeof(pad) - 1] = '\0';
		json_object_set_new(cl, "padding", json_string(pad));
		t = mk(HDR_A, txt(cl), &sA);
		T_OK(strlen(t) > 6000 && strlen(t) <= GW_JWT_MAX_TOKEN, "(a ~7 KB token)");
		acc(r, t, "a valid token near the size limit verifies");
	}
	T_OK(gw_jwt_verify(r, NULL, 0, NOW, &c, &reason) == -1, "a NULL token is refused");
	T_OK(gw_jwt_verify(r, "a.b.c", 5, NOW, NULL, &reason) == -1, "a NULL out is refused");
}

static void test_external(gw_keyring_t *r)
{
	unsigned char other[32];
	signer_t hs = { S_HS, NULL, EVP_sha256(), hs_secret, sizeof(hs_secret) };
	signer_t hs_other = { S_HS, NULL, EVP_sha256(), other, sizeof(other) };
	signer_t hs384 = { S_HS, NULL, EVP_sha384(), hs_secret, sizeof(hs_secret) };
	signer_t rs = { S_RS, kR, EVP_sha256() };
	json_t *c;
	gw_claims_t cl;
	const char *hs_pay, *HS_HDR = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"h1\"}";
	const char *RS_HDR = "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"r1\"}";
	char rs_pay[4096];

	memset(other, 0x5a, sizeof(other));
	c = claims_base();
	json_object_set_new(c, "iss", json_string(HS_ISS));
	json_object_del(c, "jti");
	hs_pay = txt(c);
	if (acc_at(r, mk(HS_HDR, hs_pay, &hs), NOW, &cl, "external HS256 token verifies (no jti needed)") == 0) {
		T_OK(cl.issuer == 1, "issuer index 1");
		T_STREQ(cl.iss, HS_ISS, "external iss comes back");
		T_STREQ(cl.jti, "", "no jti");
	}
	rej(r, mk(HS_HDR, hs_pay, &hs_other), "bad_signature", "external HS256 with another secret");
	acc(r, mk("{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"h1\"}", hs_pay, &hs), "external HS256 at+jwt verifies");
	rej(r, mk("{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"h1\"}", hs_pay, &hs_other), "bad_signature",
	    "external HS256 at+jwt with another secret");
	rej(r, mk("{\"alg\":\"HS384\",\"typ\":\"JWT\",\"kid\":\"h1\"}", hs_pay, &hs384), "alg_mismatch",
	    "external HS256 key, token signed as HS384");
	rej(r, mk("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", hs_pay, &hs), "missing_kid", "external token without kid");
	rej(r, mk(HS_HDR, txt(claims_base()), &hs), "unknown_kid", "HS256 token claiming the platform issuer");

	c = claims_base();
	json_object_set_new(c, "iss", json_string(RS_ISS));
	json_object_set_new(c, "aud", json_string(RS_AUD));
	snprintf(rs_pay, sizeof(rs_pay), "%s", txt(c));
	if (acc_at(r, mk(RS_HDR, rs_pay, &rs), NOW, &cl, "external RS256 token verifies") == 0)
		T_OK(cl.issuer == 2, "issuer index 2");
	acc(r, mk("{\"alg\":\"RS256\",\"typ\":\"at+jwt\",\"kid\":\"r1\"}", rs_pay, &rs), "external RS256 at+jwt verifies");
	{
		char *t = mk("{\"alg\":\"RS256\",\"typ\":\"at+jwt\",\"kid\":\"r1\"}", rs_pay, &rs);
		char *sig = strrchr(t, '.') + 1;

		sig[10] = sig[10] == 'A' ? 'B' : 'A';
		rej(r, t, "bad_signature", "external RS256 at+jwt with a modified signature");
	}
	rej(r, mk(RS_HDR, with("iss", json_string(RS_ISS)), &rs), "wrong_aud",
	    "the RS256 issuer has its own audience");
	rej(r, mk(RS_HDR, txt(claims_base()), &rs), "unknown_kid", "RS256 token claiming the platform issuer");
	rej(r, mk("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"kA\"}", txt(claims_base()), &rs), "alg_mismatch",
	    "RS256 token under a platform kid");
	rej(r, mk("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"r1\"}", rs_pay, &sA), "alg_mismatch",
	    "ES256 token under the RS256 kid");
	rej(r, mk("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"r1\"}", rs_pay,
		  &(signer_t){ S_HS, NULL, EVP_sha256(), (const unsigned char *)rsa_pub, strlen(rsa_pub) }),
	    "alg_mismatch", "HS256 with the RSA public key PEM as the secret");
}

static void test_rotation(void)
{
	gw_keyring_t *both = make_ring(1, 1, 0), *only_b = make_ring(0, 1, 0);
	gw_claims_t in = { 0 };
	mf_err_t err;
	char *tb;

	snprintf(in.sub, sizeof(in.sub), "u");
	snprintf(in.tenant_id, sizeof(in.tenant_id), TENANT);
	in.iat = in.nbf = NOW;
	in.exp = NOW + 60;
	tb = gw_jwt_sign(both, &in, &err);
	T_OK(gw_keyring_count(both) == 2 && gw_keyring_count(only_b) == 1, "key counts");
	acc(both, mk(HDR_A, txt(claims_base()), &sA), "ring {A verify-only, B signer} takes A's tokens");
	if (tb == NULL)
		abort();
	acc(both, strdup(tb), "ring {A, B} takes B's tokens");
	rej(only_b, mk(HDR_A, txt(claims_base()), &sA), "unknown_kid", "without A, A's tokens fail");
	acc(only_b, tb, "without A, B's tokens still verify");
	gw_keyring_free(both);
	gw_keyring_free(only_b);
}

static void test_jwks(gw_keyring_t *r)
{
	json_t *j = gw_keyring_jwks(r), *k;
	size_t i;
	int good = 0;

	T_OK(j && json_array_size(json_object_get(j, "keys")) == 2, "JWKS lists both platform keys");
	json_array_foreach(json_object_get(j, "keys"), i, k) {
		const char *kid = json_string_value(json_object_get(k, "kid"));
		const char *x = json_string_value(json_object_get(k, "x")), *y = json_string_value(json_object_get(k, "y"));
		unsigned char bx[64], by[64], wx[32], wy[32];
		size_t lx = 0, ly = 0;

		if (!kid || !x || !y || json_object_size(k) != 7 ||
		    strcmp(json_string_value(json_object_get(k, "kty")), "EC") != 0 ||
		    strcmp(json_string_value(json_object_get(k, "crv")), "P-256") != 0 ||
		    strcmp(json_string_value(json_object_get(k, "alg")), "ES256") != 0 ||
		    strcmp(json_string_value(json_object_get(k, "use")), "sig") != 0)
			continue;
		if (sodium_base642bin(bx, sizeof(bx), x, strlen(x), NULL, &lx, NULL,
				      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
		    sodium_base642bin(by, sizeof(by), y, strlen(y), NULL, &ly, NULL,
				      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || lx != 32 || ly != 32)
			continue;
		ec_point(strcmp(kid, "kA") == 0 ? kA : kB, wx, wy);
		if (memcmp(bx, wx, 32) == 0 && memcmp(by, wy, 32) == 0 && (!strcmp(kid, "kA") || !strcmp(kid, "kB")))
			good++;
	}
	T_OK(good == 2, "each JWK has kty/crv/alg/use and x/y of 32 bytes matching its public key");
	json_decref(j);
}

static void test_config(void)
{
	gw_keyring_t *r = gw_keyring_new(ISS, AUD, LEEWAY);
	mf_err_t err;
	char *p384, *rsa1024, b64[256];
	EVP_PKEY *k;
	json_t *doc;

	T_OK(gw_keyring_new(ISS, AUD, 61) == NULL && gw_keyring_new(ISS, AUD, -1) == NULL, "leeway 0..60");
	T_OK(gw_keyring_new("", AUD, 0) == NULL && gw_keyring_new(ISS, "", 0) == NULL, "empty issuer/audience refused");
	T_OK(gw_keyring_add_platform(r, "a/b", pubA, NULL, &err) < 0, "kid with '/' refused");
	T_OK(gw_keyring_add_platform(r, "", pubA, NULL, &err) < 0, "empty kid refused");
	T_OK(gw_keyring_add_platform(r, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", pubA, NULL, &err) < 0,
	     "65-char kid refused");
	T_OK(gw_keyring_add_platform(r, "k1", "", NULL, &err) < 0, "empty PEM refused");
	T_OK(gw_keyring_add_platform(r, "k1", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", NULL, &err) < 0,
	     "garbage PEM refused");
	T_OK(gw_keyring_add_platform(r, "k1", privA, NULL, &err) < 0, "a private key as public_pem refused");
	T_OK(gw_keyring_add_platform(r, "k1", rsa_pub, NULL, &err) < 0, "an RSA key refused for the platform");
	k = EVP_EC_gen("P-384");
	p384 = pem_of(k, 0);
	EVP_PKEY_free(k);
	T_OK(gw_keyring_add_platform(r, "k1", p384, NULL, &err) < 0, "a P-384 key refused for the platform");
	T_OK(gw_keyring_add_platform(r, "k1", pubA, privB, &err) < 0, "a private key not matching the public key refused");
	T_OK(gw_keyring_count(r) == 0, "nothing was added");
	T_OK(gw_keyring_add_platform(r, "k1", pubA, NULL, &err) == 0, "a verify-only key");
	T_OK(gw_keyring_add_platform(r, "k1", pubB, NULL, &err) < 0, "duplicate kid refused");
	T_OK(gw_keyring_set_signer(r, "k1", &err) < 0, "a verify-only key cannot sign");
	T_OK(gw_keyring_set_signer(r, "k9", &err) < 0, "an unknown kid cannot sign");
	T_OK(gw_keyring_add_platform(r, "k2", pubB, privB, &err) == 0 && gw_keyring_set_signer(r, "k2", &err) == 0,
	     "a key pair can sign");
	{
		/* SEC1 "EC PRIVATE KEY" PEM is accepted too */
		BIO *b = BIO_new(BIO_s_mem());
		char *data, *sec1;
		long n;

		OSSL_ENCODER_CTX *ec = OSSL_ENCODER_CTX_new_for_pkey(kC, EVP_PKEY_KEYPAIR, "PEM", "type-specific", NULL);

		OSSL_ENCODER_to_bio(ec, b);
		OSSL_ENCODER_CTX_free(ec);
		n = BIO_get_mem_data(b, &data);
		sec1 = malloc((size_t)n + 1);
		memcpy(sec1, data, (size_t)n);
		sec1[n] = '\0';
		BIO_free(b);
		T_OK(strstr(sec1, "BEGIN EC PRIVATE KEY") && gw_keyring_add_platform(r, "k3", pubC, sec1, &err) == 0,
		     "a SEC1 private key is accepted");
		free(sec1);
	}

#define BAD_ISSUERS(what, want_path, ...) do { \
	doc = json_pack(__VA_ARGS__); \
	T_OK(doc && gw_keyring_add_issuers_json(r, doc, &err) < 0 && strstr(err.detail, want_path) != NULL, what); \
	if (doc && strstr(err.detail, want_path) == NULL) printf("#   detail: %s\n", err.detail); \
	json_decref(doc); \
} while (0)
	sodium_bin2base64(b64, sizeof(b64), hs_secret, 31, sodium_base64_VARIANT_ORIGINAL);
	BAD_ISSUERS("issuers must be an array", "$:", "{s:s}", "issuer", "x");
	BAD_ISSUERS("short secret refused", "$[0].keys[0].secret", "[{s:s, s:[{s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "h", "alg", "HS256", "secret", b64);
	sodium_bin2base64(b64, sizeof(b64), hs_secret, 32, sodium_base64_VARIANT_ORIGINAL);
	BAD_ISSUERS("a 32-byte secret is short for HS512", "$[0].keys[0].secret", "[{s:s, s:[{s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "h", "alg", "HS512", "secret", b64);
	BAD_ISSUERS("secret not base64", "$[0].keys[0].secret", "[{s:s, s:[{s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "h", "alg", "HS256", "secret", "!!!not base64 at all, no!!!!!!!!!!!!!!!!!!!!!!");
	BAD_ISSUERS("unknown issuer field", "$[0]: unknown field", "[{s:s, s:s, s:[{s:s, s:s, s:s}]}]",
		    "issuer", "i", "jwks_uri", "https://x", "keys", "kid", "h", "alg", "HS256", "secret", b64);
	BAD_ISSUERS("unknown key field", "$[0].keys[0]: unknown field", "[{s:s, s:[{s:s, s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "h", "alg", "HS256", "secret", b64, "use", "sig");
	BAD_ISSUERS("issuer of the wrong type", "$[0].issuer", "[{s:i, s:[{s:s, s:s, s:s}]}]",
		    "issuer", 1, "keys", "kid", "h", "alg", "HS256", "secret", b64);
	BAD_ISSUERS("missing issuer", "$[0].issuer", "[{s:[{s:s, s:s, s:s}]}]",
		    "keys", "kid", "h", "alg", "HS256", "secret", b64);
	BAD_ISSUERS("empty keys", "$[0].keys", "[{s:s, s:[]}]", "issuer", "i", "keys");
	BAD_ISSUERS("unknown alg", "$[0].keys[0].alg", "[{s:s, s:[{s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "h", "alg", "none", "secret", b64);
	BAD_ISSUERS("alg in lower case", "$[0].keys[0].alg", "[{s:s, s:[{s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "h", "alg", "hs256", "secret", b64);
	BAD_ISSUERS("a private key PEM refused", "$[1].keys[0].pem", "[{s:s, s:[{s:s, s:s}]}, {s:s, s:[{s:s, s:s}]}]",
		    "issuer", "ok", "keys", "alg", "ES256", "pem", pubA,
		    "issuer", "i", "keys", "alg", "ES256", "pem", privA);
	BAD_ISSUERS("an EC key for RS256 refused", "$[0].keys[0].pem", "[{s:s, s:[{s:s, s:s}]}]",
		    "issuer", "i", "keys", "alg", "RS256", "pem", pubA);
	BAD_ISSUERS("an RSA key for ES256 refused", "$[0].keys[0].pem", "[{s:s, s:[{s:s, s:s}]}]",
		    "issuer", "i", "keys", "alg", "ES256", "pem", rsa_pub);
	BAD_ISSUERS("a P-384 key for ES256 refused", "$[0].keys[0].pem", "[{s:s, s:[{s:s, s:s}]}]",
		    "issuer", "i", "keys", "alg", "ES256", "pem", p384);
	k = EVP_RSA_gen(1024);
	rsa1024 = pem_of(k, 0);
	EVP_PKEY_free(k);
	BAD_ISSUERS("a 1024-bit RSA key refused", "$[0].keys[0].pem", "[{s:s, s:[{s:s, s:s}]}]",
		    "issuer", "i", "keys", "alg", "RS256", "pem", rsa1024);
	BAD_ISSUERS("pem for an HS alg refused", "$[0].keys[0].pem", "[{s:s, s:[{s:s, s:s}]}]",
		    "issuer", "i", "keys", "alg", "HS256", "pem", pubA);
	BAD_ISSUERS("secret and pem together refused", "$[0].keys[0]", "[{s:s, s:[{s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "alg", "ES256", "pem", pubA, "secret", b64);
	BAD_ISSUERS("duplicate issuer", "$[1].issuer", "[{s:s, s:[{s:s, s:s}]}, {s:s, s:[{s:s, s:s}]}]",
		    "issuer", "i", "keys", "alg", "ES256", "pem", pubA,
		    "issuer", "i", "keys", "alg", "ES256", "pem", pubB);
	BAD_ISSUERS("the platform issuer cannot be external", "$[0].issuer", "[{s:s, s:[{s:s, s:s}]}]",
		    "issuer", ISS, "keys", "alg", "ES256", "pem", pubA);
	BAD_ISSUERS("duplicate kid", "$[0].keys[1].kid", "[{s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "x", "alg", "ES256", "pem", pubA, "kid", "x", "alg", "ES256", "pem", pubB);
	BAD_ISSUERS("kid required with two keys", "$[0].keys[1].kid", "[{s:s, s:[{s:s, s:s, s:s}, {s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", "x", "alg", "ES256", "pem", pubA, "alg", "ES256", "pem", pubB);
	BAD_ISSUERS("kid of the wrong type", "$[0].keys[0].kid", "[{s:s, s:[{s:i, s:s, s:s}]}]",
		    "issuer", "i", "keys", "kid", 3, "alg", "ES256", "pem", pubA);
#undef BAD_ISSUERS
	free(p384);
	free(rsa1024);

	/* all or nothing: issuer "ok" from the refused batch above is unknown */
	{
		json_t *c = claims_base();
		gw_claims_t cl;
		const char *reason;
		char *t;

		json_object_set_new(c, "iss", json_string("ok"));
		t = mk("{\"alg\":\"ES256\"}", txt(c), &sA);
		T_OK(gw_jwt_verify(r, t, strlen(t), NOW, &cl, &reason) == -1 && strcmp(reason, "unknown_issuer") == 0,
		     "a refused batch adds no issuer");
		free(t);
		/* a single kid-less key matches a token without kid */
		doc = json_pack("[{s:s, s:[{s:s, s:s}]}]", "issuer", "ok", "keys", "alg", "ES256", "pem", pubA);
		T_OK(gw_keyring_add_issuers_json(r, doc, &err) == 0, "an issuer with one kid-less key");
		json_decref(doc);
		c = claims_base();
		json_object_set_new(c, "iss", json_string("ok"));
		acc(r, mk("{\"alg\":\"ES256\"}", txt(c), &sA), "its token without kid verifies");
		c = claims_base();
		json_object_set_new(c, "iss", json_string("ok"));
		rej(r, mk("{\"alg\":\"ES256\",\"kid\":\"any\"}", txt(c), &sA), "unknown_kid",
		    "a kid-less key does not match a token with a kid");
	}
	gw_keyring_free(r);
	gw_keyring_free(NULL);
}

/* RFC 7515 A.3: an ES256 JWS from the spec, checked through libjwt with the
 * spec's key, so the raw R||S format is the standard's and not an echo of
 * our own signer. */
static void test_rfc7515_vector(void)
{
	static const char tok[] =
		"eyJhbGciOiJFUzI1NiJ9"
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
		".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
	static const char x64[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
	static const char y64[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
	unsigned char pt[65];
	size_t n;
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *k = NULL;
	char *pem, bad[sizeof(tok)];
	jwt_t *j = NULL;

	pt[0] = 0x04;
	sodium_base642bin(pt + 1, 32, x64, strlen(x64), NULL, &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_base642bin(pt + 33, 32, y64, strlen(y64), NULL, &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
	params[2] = OSSL_PARAM_construct_end();
	EVP_PKEY_fromdata_init(ctx);
	EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params);
	EVP_PKEY_CTX_free(ctx);
	pem = pem_of(k, 0);
	T_OK(es256_verify_raw(k, tok), "RFC 7515 A.3 verifies with the test's own ES256 verifier");
	T_OK(jwt_decode(&j, tok, (const unsigned char *)pem, (int)strlen(pem)) == 0,
	     "RFC 7515 A.3 verifies through libjwt: libjwt speaks raw R||S");
	jwt_free(j);
	j = NULL;
	memcpy(bad, tok, sizeof(tok));
	bad[sizeof(tok) - 10] = bad[sizeof(tok) - 10] == 'A' ? 'B' : 'A';
	T_OK(jwt_decode(&j, bad, (const unsigned char *)pem, (int)strlen(pem)) != 0, "and a modified copy does not");
	jwt_free(j);
	free(pem);
	EVP_PKEY_free(k);
}

static char *tok_n(int i)
{
	char *t = malloc(64);

	snprintf(t, 64, "aaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbb.%08d", i);
	return t;
}

static void test_cache(void)
{
	gw_tokcache_t *c = gw_tokcache_new(1024, LEEWAY);
	gw_claims_t cl = { 0 }, cl2;
	const gw_claims_t *g;
	const char *t1 = "header.payload.signatureAAAA", *t2 = "header.payload.signatureAAAB";
	size_t mem_full, present = 0;

	T_OK(gw_tokcache_new(0, 0) == NULL && gw_tokcache_new(16, 61) == NULL, "bad cache arguments refused");
	snprintf(cl.sub, sizeof(cl.sub), "cached");
	cl.iat = cl.nbf = NOW - 10;
	cl.exp = NOW + 100;
	T_OK(gw_tokcache_get(c, t1, strlen(t1), NOW) == NULL, "empty cache misses");
	gw_tokcache_put(c, t1, strlen(t1), &cl);
	g = gw_tokcache_get(c, t1, strlen(t1), NOW);
	T_OK(g && strcmp(g->sub, "cached") == 0 && g->exp == NOW + 100, "put then get");
	T_OK(gw_tokcache_get(c, t2, strlen(t2), NOW) == NULL, "same prefix, other last byte: miss");
	T_OK(gw_tokcache_get(c, t1, strlen(t1) - 1, NOW) == NULL, "a prefix of a cached token: miss");
	T_OK(gw_tokcache_get(c, t1, strlen(t1), NOW + 100 + LEEWAY - 1) != NULL, "valid until exp + leeway");
	T_OK(gw_tokcache_get(c, t1, strlen(t1), NOW + 100 + LEEWAY) == NULL, "gone at exp + leeway");
	T_OK(gw_tokcache_get(c, t1, strlen(t1), NOW - 10 - LEEWAY - 1) == NULL, "not before nbf - leeway");
	cl2 = cl;
	snprintf(cl2.sub, sizeof(cl2.sub), "replaced");
	gw_tokcache_put(c, t1, strlen(t1), &cl2);
	g = gw_tokcache_get(c, t1, strlen(t1), NOW);
	T_OK(g && strcmp(g->sub, "replaced") == 0 && gw_tokcache_count(c) == 1, "put replaces the same token");
	gw_tokcache_put(c, t2, strlen(t2), &cl);
	T_OK(gw_tokcache_count(c) == 2, "a token differing in one byte is another entry");
	g = gw_tokcache_get(c, t2, strlen(t2), NOW);
	T_OK(g && strcmp(g->sub, "cached") == 0, "and has its own claims");
	gw_tokcache_clear(c);
	T_OK(gw_tokcache_count(c) == 0 && gw_tokcache_get(c, t1, strlen(t1), NOW) == NULL, "clear empties it");

	/* bounded: fill, then insert 10x capacity more */
	for (int i = 0; i < 1024 * 4; i++) {
		char *t = tok_n(i);

		gw_tokcache_put(c, t, strlen(t), &cl);
		free(t);
	}
	mem_full = gw_tokcache_memory(c);
	for (int i = 1024 * 4; i < 1024 * 14; i++) {
		char *t = tok_n(i);

		gw_tokcache_put(c, t, strlen(t), &cl);
		free(t);
	}
	T_OK(gw_tokcache_count(c) == 1024, "a full cache holds exactly capacity entries");
	T_OK(gw_tokcache_memory(c) == mem_full, "memory does not grow past a full cache");
	T_OK(mem_full < 1024 * (sizeof(gw_claims_t) + 256) + 64 * 1024, "memory is about capacity entries");
	for (int i = 1024 * 14 - 256; i < 1024 * 14; i++) {
		char *t = tok_n(i);

		present += gw_tokcache_get(c, t, strlen(t), NOW) != NULL;
		free(t);
	}
	T_OK(present >= 250, "the most recent entries are mostly present");
	printf("# %zu of the last 256 present\n", present);
	{
		char *t = tok_n(5);

		T_OK(gw_tokcache_get(c, t, strlen(t), NOW) == NULL, "an old entry was evicted");
		free(t);
	}
	gw_tokcache_free(c);
	gw_tokcache_free(NULL);

	c = gw_tokcache_new(3, 0);
	for (int i = 0; i < 100; i++) {
		char *t = tok_n(i);

		gw_tokcache_put(c, t, strlen(t), &cl);
		free(t);
	}
	T_OK(gw_tokcache_count(c) <= 3, "a tiny cache stays tiny");
	gw_tokcache_free(c);
}

int main(void)
{
	mf_err_t err;
	gw_keyring_t *r;

	if (sodium_init() < 0)
		return 2;
	T_OK(gw_jwt_generate_es256(&pubA, &privA, &err) == 0 && gw_jwt_generate_es256(&pubB, &privB, &err) == 0 &&
	     gw_jwt_generate_es256(&pubC, &privC, &err) == 0, "generate three P-256 key pairs");
	T_OK(strstr(pubA, "BEGIN PUBLIC KEY") && strstr(privA, "BEGIN PRIVATE KEY"), "SPKI and PKCS#8 PEM");
	kA = priv_from_pem(privA);
	kB = priv_from_pem(privB);
	kC = priv_from_pem(privC);
	{
		EVP_PKEY *pa = pub_from_pem(pubA);

		T_OK(kA && kB && kC && pa && EVP_PKEY_eq(pa, kA) == 1, "generated PEMs load and match");
		EVP_PKEY_free(pa);
	}
	kR = EVP_RSA_gen(2048);
	rsa_pub = pem_of(kR, 0);
	randombytes_buf(hs_secret, sizeof(hs_secret));
	sA = (signer_t){ S_ES, kA, EVP_sha256() };
	sB = (signer_t){ S_ES, kB, EVP_sha256() };
	sC = (signer_t){ S_ES, kC, EVP_sha256() };

	r = make_ring(1, 1, 1);
	test_good(r);
	test_sign_refusals(r);
	test_alg(r);
	test_kid(r);
	test_time(r);
	test_claims(r);
	test_shapes(r);
	test_sizes(r);
	test_external(r);
	test_rotation();
	test_jwks(r);
	test_config();
	test_rfc7515_vector();
	test_cache();
	gw_keyring_free(r);

	EVP_PKEY_free(kA);
	EVP_PKEY_free(kB);
	EVP_PKEY_free(kC);
	EVP_PKEY_free(kR);
	free(pubA);
	free(pubB);
	free(pubC);
	free(privA);
	free(privB);
	free(privC);
	free(rsa_pub);
	return t_done();
}
