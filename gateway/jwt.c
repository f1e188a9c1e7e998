/*
 * jwt.c - JWT verification and signing, and the verified-token cache (see
 * jwt.h for the libjwt 1.10.2 pitfalls this module stands in front of).
 *
 * Keys are held as the exact bytes libjwt gets: public keys as a canonical
 * SubjectPublicKeyInfo PEM re-exported from the parsed key (so what was
 * validated is what libjwt reads, never a second PEM block or trailing
 * junk), HMAC secrets as decoded bytes, the signer's private key as an
 * unencrypted PKCS#8 PEM (so libjwt never reaches OpenSSL's passphrase
 * prompt).  Every key carries the one alg it may be used with.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "core/json.h"
#include "gateway/jwt.h"

#define STR_MAX 255		/* issuer, audience, external kid */
#define PEM_MAX 65536
#define SECRET_MAX 1024
#define TIME_MAX (1LL << 53)	/* beyond this JSON numbers stop being exact in most parsers */

enum key_kind { K_HMAC, K_RSA, K_EC };

struct alg_info {
	const char *name;
	jwt_alg_t alg;
	enum key_kind kind;
	const char *group;	/* EC: OpenSSL group name */
	size_t sig_len;		/* HMAC: digest size; EC: 2 * coordinate size; RSA: from the key */
	const EVP_MD *(*md)(void);
};

static const struct alg_info algs[] = {
	{ "HS256", JWT_ALG_HS256, K_HMAC, NULL, 32, EVP_sha256 },
	{ "HS384", JWT_ALG_HS384, K_HMAC, NULL, 48, EVP_sha384 },
	{ "HS512", JWT_ALG_HS512, K_HMAC, NULL, 64, EVP_sha512 },
	{ "RS256", JWT_ALG_RS256, K_RSA, NULL, 0, EVP_sha256 },
	{ "RS384", JWT_ALG_RS384, K_RSA, NULL, 0, EVP_sha384 },
	{ "RS512", JWT_ALG_RS512, K_RSA, NULL, 0, EVP_sha512 },
	{ "ES256", JWT_ALG_ES256, K_EC, "prime256v1", 64, EVP_sha256 },
	{ "ES384", JWT_ALG_ES384, K_EC, "secp384r1", 96, EVP_sha384 },
	{ "ES512", JWT_ALG_ES512, K_EC, "secp521r1", 132, EVP_sha512 },
};
#define ALG_ES256 (&algs[6])

struct gw_key {
	char *kid;			/* NULL: no kid (an external issuer's only key) */
	size_t kid_len;
	const struct alg_info *alg;
	unsigned char *material;	/* what libjwt gets: public key PEM or HMAC secret */
	size_t material_len;
	size_t sig_len;			/* decoded signature length this key produces */
	EVP_PKEY *pub;			/* the same public key, for the at+jwt path */
	unsigned char x[32], y[32];	/* platform keys: the point, for the JWKS */
	char *private_pem;		/* platform signer candidates only */
	size_t private_len;
};

struct gw_issuer {
	char *iss, *aud;		/* aud NULL: the ring's audience */
	size_t iss_len, aud_len;
	struct gw_key *keys;
	int nkeys;
};

struct gw_keyring {
	struct gw_issuer platform;	/* iss/aud: the ring's issuer and audience */
	struct gw_issuer *ext;
	int next;
	int signer;			/* index into platform.keys, -1 = none */
	int leeway;
};

/* ---- helpers ---- */

static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;	/* an encrypted PEM fails instead of prompting on the terminal */
}

static bool has_nul(const char *s, size_t n)
{
	return memchr(s, '\0', n) != NULL;
}

static void key_clear(struct gw_key *k)
{
	free(k->kid);
	EVP_PKEY_free(k->pub);
	if (k->material)
		OPENSSL_clear_free(k->material, k->material_len);
	if (k->private_pem)
		OPENSSL_clear_free(k->private_pem, k->private_len);
	memset(k, 0, sizeof(*k));
}

static void issuer_clear(struct gw_issuer *is)
{
	for (int i = 0; i < is->nkeys; i++)
		key_clear(&is->keys[i]);
	free(is->keys);
	free(is->iss);
	free(is->aud);
	memset(is, 0, sizeof(*is));
}

static const struct alg_info *alg_by_name(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (strlen(algs[i].name) == n && memcmp(algs[i].name, s, n) == 0)
			return &algs[i];
	return NULL;
}

static EVP_PKEY *pubkey_from_pem(const char *pem, size_t len)
{
	BIO *b;
	EVP_PKEY *k = NULL;

	if (len == 0 || len > PEM_MAX)
		return NULL;
	b = BIO_new_mem_buf(pem, (int)len);
	if (b)
		k = PEM_read_bio_PUBKEY(b, NULL, no_password, NULL);
	BIO_free(b);
	ERR_clear_error();
	return k;
}

/* Whether k is a key alg a may use; sets *sig_len. */
static bool pubkey_fits(const struct alg_info *a, EVP_PKEY *k, size_t *sig_len)
{
	char group[64];

	if (a->kind == K_RSA) {
		int bits = EVP_PKEY_get_bits(k);

		/* "RSA" excludes RSA-PSS keys; the bounds keep out weak keys and
		 * the CPU cost of huge ones on every unverified request. */
		if (!EVP_PKEY_is_a(k, "RSA") || bits < 2048 || bits > 8192)
			return false;
		*sig_len = (size_t)EVP_PKEY_get_size(k);
		return true;
	}
	if (a->kind == K_EC) {
		if (!EVP_PKEY_is_a(k, "EC") ||
		    EVP_PKEY_get_group_name(k, group, sizeof(group), NULL) != 1 ||
		    strcmp(group, a->group) != 0) {
			ERR_clear_error();
			return false;
		}
		*sig_len = a->sig_len;
		return true;
	}
	return false;
}

/* The key's canonical PEM (public, or unencrypted PKCS#8 when priv), malloc'd. */
static char *pem_export(EVP_PKEY *k, bool priv, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *m = NULL;
	char *out = NULL;
	int ok;

	if (b == NULL)
		return NULL;
	ok = priv ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) : PEM_write_bio_PUBKEY(b, k);
	if (ok == 1 && BIO_get_mem_ptr(b, &m) == 1 && m && m->length > 0) {
		out = malloc(m->length + 1);
		if (out) {
			memcpy(out, m->data, m->length);
			out[m->length] = '\0';
			*len = m->length;
		}
		OPENSSL_cleanse(m->data, m->length);
	}
	BIO_free(b);
	ERR_clear_error();
	return out;
}

/*
 * Strict base64url (RFC 7515 2): only [A-Za-z0-9_-], no padding, no
 * whitespace, and the unused low bits of the last character zero, so every
 * byte string has exactly one accepted encoding.
 */
static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		int v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-')
			v = 62;
		else if (c == '_')
			v = 63;
		else
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;
	*outlen = o;
	return 0;
}

static char *b64url_encode(const unsigned char *p, size_t n)
{
	size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *s = malloc(cap);

	if (s)
		sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return s;
}

static bool kid_syntax_ok(const char *kid)
{
	size_t n = strlen(kid);

	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = kid[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool uuid_ok(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		char c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

static void uuid_lower(char dst[37], const char *s)
{
	for (size_t i = 0; i < 36; i++)
		dst[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
	dst[36] = '\0';
}

static bool role_ok(const char *s, size_t n)
{
	if (n < 1 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* ---- key ring ---- */

gw_keyring_t *gw_keyring_new(const char *issuer, const char *audience, int leeway_s)
{
	gw_keyring_t *r;

	if (issuer == NULL || audience == NULL || leeway_s < 0 || leeway_s > 60)
		return NULL;
	if (strlen(issuer) < 1 || strlen(issuer) > STR_MAX || strlen(audience) < 1 || strlen(audience) > STR_MAX)
		return NULL;
	if (sodium_init() < 0)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->platform.iss = strdup(issuer);
	r->platform.aud = strdup(audience);
	if (r->platform.iss == NULL || r->platform.aud == NULL) {
		gw_keyring_free(r);
		return NULL;
	}
	r->platform.iss_len = strlen(issuer);
	r->platform.aud_len = strlen(audience);
	r->signer = -1;
	r->leeway = leeway_s;
	return r;
}

void gw_keyring_free(gw_keyring_t *ring)
{
	if (ring == NULL)
		return;
	issuer_clear(&ring->platform);
	for (int i = 0; i < ring->next; i++)
		issuer_clear(&ring->ext[i]);
	free(ring->ext);
	free(ring);
}

static const struct gw_key *platform_key(const gw_keyring_t *ring, const char *kid)
{
	for (int i = 0; i < ring->platform.nkeys; i++)
		if (strcmp(ring->platform.keys[i].kid, kid) == 0)
			return &ring->platform.keys[i];
	return NULL;
}

int gw_keyring_add_platform(gw_keyring_t *ring, const char *kid, const char *public_pem,
			    const char *private_pem, mf_err_t *err)
{
	struct gw_key k = { 0 };
	EVP_PKEY *pub = NULL, *priv = NULL;
	BIGNUM *bx = NULL, *by = NULL;
	BIO *b;
	struct gw_key *nk;
	size_t sig_len;

	if (ring == NULL || kid == NULL || !kid_syntax_ok(kid))
		return mf_err_set(err, 400, "invalid_config", "platform key: kid must match ^[A-Za-z0-9_-]{1,64}$");
	if (platform_key(ring, kid))
		return mf_err_set(err, 400, "invalid_config", "platform key %s: duplicate kid", kid);
	if (public_pem == NULL || public_pem[0] == '\0')
		return mf_err_set(err, 400, "invalid_config", "platform key %s: empty public key", kid);
	pub = pubkey_from_pem(public_pem, strlen(public_pem));
	if (pub == NULL) {
		mf_err_set(err, 400, "invalid_config",
			   "platform key %s: public key is not a SubjectPublicKeyInfo PEM", kid);
		goto fail;
	}
	if (!pubkey_fits(ALG_ES256, pub, &sig_len)) {
		mf_err_set(err, 400, "invalid_config", "platform key %s: public key is not a P-256 key", kid);
		goto fail;
	}
	if (EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
	    EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1 ||
	    BN_bn2binpad(bx, k.x, 32) != 32 || BN_bn2binpad(by, k.y, 32) != 32) {
		mf_err_set(err, 400, "invalid_config", "platform key %s: cannot read the public point", kid);
		goto fail;
	}
	if (private_pem) {
		if (private_pem[0] == '\0' || strlen(private_pem) > PEM_MAX) {
			mf_err_set(err, 400, "invalid_config", "platform key %s: empty private key", kid);
			goto fail;
		}
		b = BIO_new_mem_buf(private_pem, (int)strlen(private_pem));
		if (b)
			priv = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
		BIO_free(b);
		if (priv == NULL) {
			mf_err_set(err, 400, "invalid_config",
				   "platform key %s: private key is not an unencrypted PEM private key", kid);
			goto fail;
		}
		if (!pubkey_fits(ALG_ES256, priv, &sig_len) || EVP_PKEY_eq(pub, priv) != 1) {
			mf_err_set(err, 400, "invalid_config",
				   "platform key %s: private key is not the P-256 key of the public key", kid);
			goto fail;
		}
		k.private_pem = pem_export(priv, true, &k.private_len);
		if (k.private_pem == NULL) {
			mf_err_set(err, 500, "out_of_memory", "out of memory");
			goto fail;
		}
	}
	k.material = (unsigned char *)pem_export(pub, false, &k.material_len);
	k.kid = strdup(kid);
	if (k.material == NULL || k.kid == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto fail;
	}
	k.kid_len = strlen(kid);
	k.alg = ALG_ES256;
	k.sig_len = sig_len;
	nk = realloc(ring->platform.keys, (size_t)(ring->platform.nkeys + 1) * sizeof(*nk));
	if (nk == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto fail;
	}
	ring->platform.keys = nk;
	k.pub = pub;
	nk[ring->platform.nkeys++] = k;
	EVP_PKEY_free(priv);
	BN_free(bx);
	BN_free(by);
	return 0;
fail:
	key_clear(&k);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(priv);
	BN_free(bx);
	BN_free(by);
	ERR_clear_error();
	return -1;
}

int gw_keyring_set_signer(gw_keyring_t *ring, const char *kid, mf_err_t *err)
{
	const struct gw_key *k;

	if (ring == NULL || kid == NULL)
		return mf_err_set(err, 400, "invalid_config", "signer: no kid");
	k = platform_key(ring, kid);
	if (k == NULL)
		return mf_err_set(err, 400, "invalid_config", "signer: no platform key with that kid");
	if (k->private_pem == NULL)
		return mf_err_set(err, 400, "invalid_config", "signer %s: the key has no private key", kid);
	ring->signer = (int)(k - ring->platform.keys);
	return 0;
}

/* A JSON string's bytes, if it is a string of 1..max bytes without NUL. */
static const char *json_str(const json_t *j, size_t max, size_t *len)
{
	const char *s;

	if (!json_is_string(j))
		return NULL;
	s = json_string_value(j);
	*len = json_string_length(j);
	if (*len < 1 || *len > max || has_nul(s, *len))
		return NULL;
	return s;
}

static int parse_ext_key(const json_t *jk, const char *path, struct gw_key *k, mf_err_t *err)
{
	const char *field, *s, *alg_s = NULL, *pem = NULL, *secret = NULL;
	size_t n, alg_n = 0, pem_n = 0, secret_n = 0;
	json_t *v;
	EVP_PKEY *pub = NULL;

	if (!json_is_object(jk))
		return mf_err_set(err, 400, "invalid_config", "%s: expected an object", path);
	json_object_foreach((json_t *)jk, field, v) {
		if (strcmp(field, "kid") == 0) {
			s = json_str(v, STR_MAX, &n);
			if (s == NULL)
				return mf_err_set(err, 400, "invalid_config",
						  "%s.kid: expected a string of 1..%d bytes", path, STR_MAX);
			k->kid = malloc(n + 1);
			if (k->kid == NULL)
				return mf_err_set(err, 500, "out_of_memory", "out of memory");
			memcpy(k->kid, s, n);
			k->kid[n] = '\0';
			k->kid_len = n;
		} else if (strcmp(field, "alg") == 0) {
			alg_s = json_str(v, 16, &alg_n);
			if (alg_s == NULL)
				return mf_err_set(err, 400, "invalid_config", "%s.alg: expected a string", path);
		} else if (strcmp(field, "pem") == 0) {
			pem = json_str(v, PEM_MAX, &pem_n);
			if (pem == NULL)
				return mf_err_set(err, 400, "invalid_config", "%s.pem: expected a PEM string", path);
		} else if (strcmp(field, "secret") == 0) {
			secret = json_str(v, SECRET_MAX * 2, &secret_n);
			if (secret == NULL)
				return mf_err_set(err, 400, "invalid_config", "%s.secret: expected a base64 string", path);
		} else {
			/* the field name is config, not a secret, but keep it bounded */
			return mf_err_set(err, 400, "invalid_config", "%s: unknown field \"%.40s\"", path, field);
		}
	}
	if (alg_s == NULL)
		return mf_err_set(err, 400, "invalid_config", "%s.alg: required", path);
	k->alg = alg_by_name(alg_s, alg_n);
	if (k->alg == NULL)
		return mf_err_set(err, 400, "invalid_config",
				  "%s.alg: must be one of HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 ES512", path);
	if (k->alg->kind == K_HMAC) {
		size_t want = k->alg->sig_len > 32 ? k->alg->sig_len : 32;

		if (pem)
			return mf_err_set(err, 400, "invalid_config", "%s.pem: not allowed with %s (use secret)",
					  path, k->alg->name);
		if (secret == NULL)
			return mf_err_set(err, 400, "invalid_config", "%s.secret: required for %s", path, k->alg->name);
		k->material = malloc(secret_n);
		if (k->material == NULL)
			return mf_err_set(err, 500, "out_of_memory", "out of memory");
		if (sodium_base642bin(k->material, secret_n, secret, secret_n, NULL, &k->material_len, NULL,
				      sodium_base64_VARIANT_ORIGINAL) != 0) {
			k->material_len = secret_n;	/* so key_clear wipes all of it */
			return mf_err_set(err, 400, "invalid_config", "%s.secret: not standard base64", path);
		}
		if (k->material_len < want || k->material_len > SECRET_MAX)
			return mf_err_set(err, 400, "invalid_config", "%s.secret: %s needs %zu..%d bytes, got %zu",
					  path, k->alg->name, want, SECRET_MAX, k->material_len);
		k->sig_len = k->alg->sig_len;
		return 0;
	}
	if (secret)
		return mf_err_set(err, 400, "invalid_config", "%s.secret: not allowed with %s (use pem)",
				  path, k->alg->name);
	if (pem == NULL)
		return mf_err_set(err, 400, "invalid_config", "%s.pem: required for %s", path, k->alg->name);
	pub = pubkey_from_pem(pem, pem_n);
	if (pub == NULL)
		return mf_err_set(err, 400, "invalid_config",
				  "%s.pem: not a public key (SubjectPublicKeyInfo PEM)", path);
	if (!pubkey_fits(k->alg, pub, &k->sig_len)) {
		EVP_PKEY_free(pub);
		return mf_err_set(err, 400, "invalid_config", "%s.pem: not a public key for %s%s", path,
				  k->alg->name, k->alg->kind == K_RSA ? " (RSA, 2048..8192 bits)" : "");
	}
	k->material = (unsigned char *)pem_export(pub, false, &k->material_len);
	k->pub = pub;
	if (k->material == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	return 0;
}

static bool issuer_taken(const gw_keyring_t *ring, const struct gw_issuer *more, int nmore,
			 const char *s, size_t n)
{
	if (ring->platform.iss_len == n && memcmp(ring->platform.iss, s, n) == 0)
		return true;
	for (int i = 0; i < ring->next; i++)
		if (ring->ext[i].iss_len == n && memcmp(ring->ext[i].iss, s, n) == 0)
			return true;
	for (int i = 0; i < nmore; i++)
		if (more[i].iss_len == n && memcmp(more[i].iss, s, n) == 0)
			return true;
	return false;
}

static int parse_issuer(const gw_keyring_t *ring, const json_t *ji, int idx, struct gw_issuer *prev,
			struct gw_issuer *is, mf_err_t *err)
{
	char path[64];
	const char *field, *s;
	json_t *v, *keys = NULL;
	size_t n, nk;

	snprintf(path, sizeof(path), "$[%d]", idx);
	if (!json_is_object(ji))
		return mf_err_set(err, 400, "invalid_config", "%s: expected an object", path);
	json_object_foreach((json_t *)ji, field, v) {
		if (strcmp(field, "issuer") == 0 || strcmp(field, "audience") == 0) {
			bool iss = field[0] == 'i';
			char **dst = iss ? &is->iss : &is->aud;

			s = json_str(v, STR_MAX, &n);
			if (s == NULL)
				return mf_err_set(err, 400, "invalid_config", "%s.%s: expected a string of 1..%d bytes",
						  path, field, STR_MAX);
			*dst = malloc(n + 1);
			if (*dst == NULL)
				return mf_err_set(err, 500, "out_of_memory", "out of memory");
			memcpy(*dst, s, n);
			(*dst)[n] = '\0';
			*(iss ? &is->iss_len : &is->aud_len) = n;
		} else if (strcmp(field, "keys") == 0) {
			keys = v;
		} else {
			return mf_err_set(err, 400, "invalid_config", "%s: unknown field \"%.40s\"", path, field);
		}
	}
	if (is->iss == NULL)
		return mf_err_set(err, 400, "invalid_config", "%s.issuer: required", path);
	if (issuer_taken(ring, prev, idx, is->iss, is->iss_len))
		return mf_err_set(err, 400, "invalid_config", "%s.issuer: duplicate issuer", path);
	if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > 64)
		return mf_err_set(err, 400, "invalid_config", "%s.keys: expected an array of 1..64 keys", path);
	nk = json_array_size(keys);
	is->keys = calloc(nk, sizeof(*is->keys));
	if (is->keys == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	for (size_t j = 0; j < nk; j++) {
		char kpath[96];

		snprintf(kpath, sizeof(kpath), "%s.keys[%zu]", path, j);
		is->nkeys++;
		if (parse_ext_key(json_array_get(keys, j), kpath, &is->keys[j], err) < 0)
			return -1;
		if (is->keys[j].kid == NULL && nk > 1)
			return mf_err_set(err, 400, "invalid_config",
					  "%s.kid: required when an issuer has more than one key", kpath);
		for (size_t i = 0; i < j; i++)
			if (is->keys[i].kid_len == is->keys[j].kid_len &&
			    memcmp(is->keys[i].kid, is->keys[j].kid, is->keys[j].kid_len) == 0)
				return mf_err_set(err, 400, "invalid_config", "%s.kid: duplicate kid", kpath);
	}
	return 0;
}

int gw_keyring_add_issuers_json(gw_keyring_t *ring, const json_t *doc, mf_err_t *err)
{
	struct gw_issuer *tmp, *grown;
	size_t n;

	if (ring == NULL)
		return mf_err_set(err, 400, "invalid_config", "no key ring");
	if (!json_is_array(doc))
		return mf_err_set(err, 400, "invalid_config", "$: expected an array of issuers");
	n = json_array_size(doc);
	if (n == 0)
		return 0;
	if (n > 1024)
		return mf_err_set(err, 400, "invalid_config", "$: more than 1024 issuers");
	tmp = calloc(n, sizeof(*tmp));
	if (tmp == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (parse_issuer(ring, json_array_get(doc, i), (int)i, tmp, &tmp[i], err) < 0) {
			for (size_t j = 0; j <= i; j++)
				issuer_clear(&tmp[j]);
			free(tmp);
			ERR_clear_error();
			return -1;
		}
	}
	grown = realloc(ring->ext, ((size_t)ring->next + n) * sizeof(*grown));
	if (grown == NULL) {
		for (size_t j = 0; j < n; j++)
			issuer_clear(&tmp[j]);
		free(tmp);
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	ring->ext = grown;
	memcpy(ring->ext + ring->next, tmp, n * sizeof(*tmp));
	ring->next += (int)n;
	free(tmp);
	return 0;
}

json_t *gw_keyring_jwks(const gw_keyring_t *ring)
{
	json_t *keys = json_array(), *doc = json_object();

	if (ring == NULL || keys == NULL || doc == NULL)
		goto fail;
	for (int i = 0; i < ring->platform.nkeys; i++) {
		const struct gw_key *k = &ring->platform.keys[i];
		char *x = b64url_encode(k->x, 32), *y = b64url_encode(k->y, 32);
		json_t *jk = (x && y) ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256",
						  "x", x, "y", y, "kid", k->kid, "alg", "ES256", "use", "sig")
				      : NULL;

		free(x);
		free(y);
		if (jk == NULL || json_array_append_new(keys, jk) < 0)
			goto fail;
	}
	if (json_object_set_new(doc, "keys", keys) < 0) {
		keys = NULL;
		goto fail;
	}
	return doc;
fail:
	json_decref(keys);
	json_decref(doc);
	return NULL;
}

int gw_keyring_count(const gw_keyring_t *ring)
{
	return ring ? ring->platform.nkeys : 0;
}

int gw_keyring_leeway(const gw_keyring_t *ring)
{
	return ring ? ring->leeway : 0;
}

/* ---- verification ---- */

static const char *forbidden_headers[] = {
	/* key or certificate by reference or by value: the token would choose
	 * its own key; crit: extensions we do not implement must fail;
	 * b64/zip/enc: change what the bytes mean (RFC 7797, JWE). */
	"crit", "jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc",
};

struct hdr {
	const char *alg, *kid;
	size_t alg_len, kid_len;
	bool at_jwt;		/* typ "at+jwt" (RFC 9068) */
};

static const char *check_header(json_t *h, struct hdr *out)
{
	const char *field;
	json_t *v;

	if (!json_is_object(h))
		return "bad_header";
	json_object_foreach(h, field, v) {
		for (size_t i = 0; i < sizeof(forbidden_headers) / sizeof(forbidden_headers[0]); i++)
			if (strcmp(field, forbidden_headers[i]) == 0)
				return "forbidden_header";
	}
	/* An allow-list: a parameter we do not know could mean something to
	 * whoever minted the token that we are not enforcing. */
	json_object_foreach(h, field, v) {
		if (strcmp(field, "alg") == 0) {
			if (!json_is_string(v))
				return "bad_alg";
			out->alg = json_string_value(v);
			out->alg_len = json_string_length(v);
		} else if (strcmp(field, "typ") == 0) {
			if (!json_is_string(v) || !(strcmp(json_string_value(v), "JWT") == 0 ||
						    strcmp(json_string_value(v), "at+jwt") == 0))
				return "bad_typ";
			out->at_jwt = json_string_value(v)[0] == 'a';
		} else if (strcmp(field, "kid") == 0) {
			if (!json_is_string(v) || json_string_length(v) == 0)
				return "bad_kid";
			out->kid = json_string_value(v);
			out->kid_len = json_string_length(v);
		} else {
			return "unknown_header";
		}
	}
	if (out->alg == NULL || out->alg_len == 0)
		return "bad_alg";
	if (out->alg_len == 4 && strncasecmp(out->alg, "none", 4) == 0)
		return "alg_none";
	return NULL;
}

static const struct gw_key *find_key(const struct gw_issuer *is, const struct hdr *h, const char **reason)
{
	for (int i = 0; i < is->nkeys; i++) {
		const struct gw_key *k = &is->keys[i];

		if (h->kid == NULL ? k->kid == NULL
				   : (k->kid && k->kid_len == h->kid_len && memcmp(k->kid, h->kid, h->kid_len) == 0))
			return k;
	}
	*reason = h->kid ? "unknown_kid" : "missing_kid";
	return NULL;
}

static int get_time(json_t *p, const char *name, long long *v)
{
	json_t *j = json_object_get(p, name);
	json_int_t x;

	/* json_is_integer is false for 1.5, 1.0 and 1e3 (reals in jansson) */
	if (!json_is_integer(j))
		return -1;
	x = json_integer_value(j);
	if (x < 0 || x > TIME_MAX)
		return -1;
	*v = (long long)x;
	return 0;
}

static bool aud_has(json_t *aud, const char *want, size_t want_len, bool *bad)
{
	size_t i;
	json_t *v;

	*bad = false;
	if (json_is_string(aud))
		return json_string_length(aud) == want_len && memcmp(json_string_value(aud), want, want_len) == 0;
	if (!json_is_array(aud) || json_array_size(aud) == 0) {
		*bad = true;
		return false;
	}
	json_array_foreach(aud, i, v) {
		if (!json_is_string(v)) {
			*bad = true;
			return false;
		}
	}
	json_array_foreach(aud, i, v)
		if (json_string_length(v) == want_len && memcmp(json_string_value(v), want, want_len) == 0)
			return true;
	return false;
}

static const char *check_claims(const gw_keyring_t *ring, const struct gw_issuer *is, json_t *p,
				long long now, gw_claims_t *c)
{
	const char *s;
	size_t n, i;
	json_t *v, *roles;
	bool bad;
	long long L = ring->leeway;

	if (!aud_has(json_object_get(p, "aud"), is->aud ? is->aud : ring->platform.aud,
		     is->aud ? is->aud_len : ring->platform.aud_len, &bad))
		return bad ? "bad_aud" : "wrong_aud";
	s = json_str(json_object_get(p, "sub"), sizeof(c->sub) - 1, &n);
	if (s == NULL)
		return "bad_sub";
	memcpy(c->sub, s, n);
	c->sub[n] = '\0';
	s = json_str(json_object_get(p, "tenant_id"), 36, &n);
	if (s == NULL || !uuid_ok(s, n))
		return "bad_tenant_id";
	uuid_lower(c->tenant_id, s);
	roles = json_object_get(p, "roles");
	if (!json_is_array(roles) || json_array_size(roles) > GW_JWT_MAX_ROLES)
		return "bad_roles";
	json_array_foreach(roles, i, v) {
		if (!json_is_string(v) || !role_ok(json_string_value(v), json_string_length(v)))
			return "bad_roles";
		memcpy(c->roles[i], json_string_value(v), json_string_length(v) + 1);
	}
	c->nroles = (int)json_array_size(roles);
	v = json_object_get(p, "jti");
	if (v) {
		s = json_str(v, sizeof(c->jti) - 1, &n);
		if (s == NULL)
			return "bad_jti";
		memcpy(c->jti, s, n);
		c->jti[n] = '\0';
	} else if (is == &ring->platform) {
		return "missing_jti";
	}
	if (get_time(p, "iat", &c->iat) < 0)
		return "bad_iat";
	if (get_time(p, "nbf", &c->nbf) < 0)
		return "bad_nbf";
	if (get_time(p, "exp", &c->exp) < 0)
		return "bad_exp";
	if (c->exp <= c->iat)
		return "exp_before_iat";
	/* claims are <= 2^53 and L <= 60: none of these overflow */
	if (now >= c->exp + L)
		return "expired";
	if (c->nbf - L > now)
		return "not_yet_valid";
	if (c->iat - L > now)
		return "iat_future";
	return NULL;
}

/*
 * The signature check for typ "at+jwt" tokens, which libjwt 1.10.2's
 * jwt_decode refuses outright (it allows no typ but "JWT").  Everything
 * before it is shared with the libjwt path: the key, its one alg (already
 * byte-equal to the header's) and the signature length are settled, so
 * this is only the math of RFC 7518 3.2-3.4.
 */
static bool evp_verify(const struct gw_key *k, const char *in, size_t n, const unsigned char *sig, size_t slen)
{
	const EVP_MD *md = k->alg->md();
	EVP_MD_CTX *ctx = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE], *der = NULL;
	unsigned int maclen = 0;
	int derlen;
	bool ok = false;

	if (k->alg->kind == K_HMAC) {
		if (HMAC(md, k->material, (int)k->material_len, (const unsigned char *)in, n, mac, &maclen) == NULL)
			return false;
		ok = maclen == slen && CRYPTO_memcmp(mac, sig, slen) == 0;
		OPENSSL_cleanse(mac, sizeof(mac));
		return ok;
	}
	if (k->pub == NULL)
		return false;
	if (k->alg->kind == K_EC) {
		/* JOSE raw R||S -> the DER ECDSA-Sig-Value OpenSSL verifies */
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, (int)(slen / 2), NULL);
		s = BN_bin2bn(sig + slen / 2, (int)(slen / 2), NULL);
		if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
			goto out;
		r = s = NULL;	/* owned by es now */
		derlen = i2d_ECDSA_SIG(es, &der);
		if (derlen <= 0)
			goto out;
		sig = der;
		slen = (size_t)derlen;
	}
	ctx = EVP_MD_CTX_new();
	/* RSA keys default to PKCS#1 v1.5 padding, which is what RS* means */
	ok = ctx && EVP_DigestVerifyInit(ctx, NULL, md, NULL, k->pub) == 1 &&
	     EVP_DigestVerify(ctx, sig, slen, (const unsigned char *)in, n) == 1;
out:
	EVP_MD_CTX_free(ctx);
	ECDSA_SIG_free(es);
	BN_free(r);
	BN_free(s);
	OPENSSL_free(der);
	return ok;
}

static const char *verify(const gw_keyring_t *ring, const char *token, size_t len, long long now,
			  gw_claims_t *c, unsigned char *scratch)
{
	const char *d1, *d2, *reason = NULL;
	unsigned char *hbuf = scratch, *pbuf, *sbuf;
	char *copy;
	size_t hlen, plen, slen, hseg, pseg, sseg;
	json_t *h = NULL, *p = NULL, *iss;
	struct hdr hd = { 0 };
	const struct gw_issuer *is = NULL;
	const struct gw_key *k;
	jwt_t *jwt = NULL;
	int rc;

	d1 = memchr(token, '.', len);
	d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return "bad_segments";
	hseg = (size_t)(d1 - token);
	pseg = (size_t)(d2 - d1 - 1);
	sseg = len - (size_t)(d2 + 1 - token);
	if (hseg == 0 || pseg == 0 || sseg == 0)
		return "bad_segments";
	/* decoded sizes are at most 3/4 of the text: all three fit in len bytes */
	if (b64url_decode(token, hseg, hbuf, &hlen) < 0)
		return "bad_base64";
	pbuf = hbuf + hlen;
	if (b64url_decode(d1 + 1, pseg, pbuf, &plen) < 0)
		return "bad_base64";
	sbuf = pbuf + plen;
	if (b64url_decode(d2 + 1, sseg, sbuf, &slen) < 0)
		return "bad_base64";

	h = mf_json_parse((const char *)hbuf, hlen, 4, NULL);
	if (h == NULL)
		return "bad_header_json";
	reason = check_header(h, &hd);
	if (reason)
		goto out;
	p = mf_json_parse((const char *)pbuf, plen, 16, NULL);
	if (p == NULL) {
		reason = "bad_payload_json";
		goto out;
	}
	if (!json_is_object(p)) {
		reason = "bad_payload";
		goto out;
	}
	iss = json_object_get(p, "iss");
	if (!json_is_string(iss) || json_string_length(iss) == 0 || json_string_length(iss) > STR_MAX) {
		reason = "bad_iss";
		goto out;
	}
	if (json_string_length(iss) == ring->platform.iss_len &&
	    memcmp(json_string_value(iss), ring->platform.iss, ring->platform.iss_len) == 0) {
		is = &ring->platform;
		c->issuer = 0;
	}
	for (int i = 0; is == NULL && i < ring->next; i++) {
		if (json_string_length(iss) == ring->ext[i].iss_len &&
		    memcmp(json_string_value(iss), ring->ext[i].iss, ring->ext[i].iss_len) == 0) {
			is = &ring->ext[i];
			c->issuer = i + 1;
		}
	}
	if (is == NULL) {
		reason = "unknown_issuer";
		goto out;
	}
	k = find_key(is, &hd, &reason);
	if (k == NULL)
		goto out;
	/* Byte-exact: libjwt would take "es256", and would take "HS256" with
	 * this key's PEM text as the HMAC secret. */
	if (hd.alg_len != strlen(k->alg->name) || memcmp(hd.alg, k->alg->name, hd.alg_len) != 0) {
		reason = "alg_mismatch";
		goto out;
	}
	reason = check_claims(ring, is, p, now, c);
	if (reason)
		goto out;
	memcpy(c->iss, is->iss, is->iss_len + 1);
	if (slen != k->sig_len) {
		reason = "bad_signature";
		goto out;
	}
	/* libjwt skips the signature check for a zero-length key */
	if (k->material == NULL || k->material_len == 0 || k->material_len > INT32_MAX) {
		reason = "internal";
		goto out;
	}
	if (hd.at_jwt) {
		if (!evp_verify(k, token, (size_t)(d2 - token), sbuf, slen))
			reason = "bad_signature";
		goto out;
	}
	/* libjwt wants a C string; the decoded segments above took at most len bytes */
	copy = (char *)sbuf + slen;
	memcpy(copy, token, len);
	copy[len] = '\0';
	rc = jwt_decode(&jwt, copy, k->material, (int)k->material_len);
	if (rc != 0 || jwt == NULL) {
		reason = "bad_signature";
		goto out;
	}
	if (jwt_get_alg(jwt) != k->alg->alg)
		reason = "alg_mismatch";
out:
	jwt_free(jwt);
	json_decref(h);
	json_decref(p);
	if (reason)
		ERR_clear_error();	/* keep the thread's queue clean for its TLS connections */
	return reason;
}

int gw_jwt_verify(const gw_keyring_t *ring, const char *token, size_t len, long long now,
		  gw_claims_t *out, const char **reason)
{
	const char *r, *dummy;
	unsigned char *scratch;

	if (reason == NULL)
		reason = &dummy;
	if (out == NULL) {
		*reason = "internal";
		return -1;
	}
	memset(out, 0, sizeof(*out));
	if (ring == NULL || token == NULL) {
		*reason = "internal";
		return -1;
	}
	if (len > GW_JWT_MAX_TOKEN) {
		*reason = "too_long";
		return -1;
	}
	/* decoded segments (< len) and a NUL-terminated copy for libjwt, on
	 * the heap: libjwt already alloca()s len bytes of the worker's stack */
	scratch = malloc(2 * len + 2);
	if (scratch == NULL) {
		*reason = "internal";
		return -1;
	}
	r = verify(ring, token, len, now, out, scratch);
	free(scratch);
	if (r) {
		memset(out, 0, sizeof(*out));
		*reason = r;
		return -1;
	}
	*reason = NULL;
	return 0;
}

/* ---- signing ---- */

static bool cstr_ok(const char *s, size_t cap, size_t min)
{
	size_t n = strnlen(s, cap);

	return n < cap && n >= min;
}

int gw_jwt_generate_es256(char **public_pem, char **private_pem, mf_err_t *err)
{
	EVP_PKEY *k;
	size_t n;

	if (public_pem == NULL || private_pem == NULL)
		return mf_err_set(err, 500, "internal_error", "no output");
	*public_pem = *private_pem = NULL;
	k = EVP_EC_gen("P-256");
	if (k == NULL) {
		ERR_clear_error();
		return mf_err_set(err, 500, "internal_error", "P-256 key generation failed");
	}
	*public_pem = pem_export(k, false, &n);
	*private_pem = pem_export(k, true, &n);
	EVP_PKEY_free(k);
	if (*public_pem == NULL || *private_pem == NULL) {
		free(*public_pem);
		if (*private_pem)
			OPENSSL_clear_free(*private_pem, strlen(*private_pem));
		*public_pem = *private_pem = NULL;
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	return 0;
}

static json_t *sign_payload(const gw_keyring_t *ring, const gw_claims_t *c, mf_err_t *err)
{
	char tenant[37], *jti_gen = NULL;
	json_t *p, *roles;
	int bad = 0;

	if (!cstr_ok(c->sub, sizeof(c->sub), 1)) {
		mf_err_set(err, 400, "invalid_claims", "sub must be 1..127 bytes");
		return NULL;
	}
	if (!cstr_ok(c->tenant_id, sizeof(c->tenant_id), 36) || !uuid_ok(c->tenant_id, 36)) {
		mf_err_set(err, 400, "invalid_claims", "tenant_id must be a UUID");
		return NULL;
	}
	if (c->nroles < 0 || c->nroles > GW_JWT_MAX_ROLES) {
		mf_err_set(err, 400, "invalid_claims", "roles: 0..%d", GW_JWT_MAX_ROLES);
		return NULL;
	}
	for (int i = 0; i < c->nroles; i++) {
		if (!cstr_ok(c->roles[i], sizeof(c->roles[i]), 1) || !role_ok(c->roles[i], strlen(c->roles[i]))) {
			mf_err_set(err, 400, "invalid_claims", "roles[%d] must be 1..63 bytes of [a-z0-9_]", i);
			return NULL;
		}
	}
	if (!cstr_ok(c->jti, sizeof(c->jti), 0)) {
		mf_err_set(err, 400, "invalid_claims", "jti must be at most 63 bytes");
		return NULL;
	}
	if (c->iat < 0 || c->iat > TIME_MAX || c->nbf < 0 || c->nbf > TIME_MAX || c->exp < 0 ||
	    c->exp > TIME_MAX || c->exp <= c->iat) {
		mf_err_set(err, 400, "invalid_claims", "iat/nbf/exp must be in 0..2^53 and exp after iat");
		return NULL;
	}
	if (c->jti[0] == '\0') {
		unsigned char rnd[16];

		randombytes_buf(rnd, sizeof(rnd));
		jti_gen = b64url_encode(rnd, sizeof(rnd));
		if (jti_gen == NULL) {
			mf_err_set(err, 500, "out_of_memory", "out of memory");
			return NULL;
		}
	}
	uuid_lower(tenant, c->tenant_id);
	p = json_object();
	roles = json_array();
	if (p == NULL || roles == NULL) {
		json_decref(roles);
		bad = 1;
	} else {
		bad |= json_object_set_new(p, "roles", roles);
	}
	for (int i = 0; !bad && i < c->nroles; i++)
		bad |= json_array_append_new(roles, json_string(c->roles[i]));
	/* json_string() is NULL for invalid UTF-8, and set_new then fails */
	if (!bad) {
		bad |= json_object_set_new(p, "iss", json_string(ring->platform.iss));
		bad |= json_object_set_new(p, "aud", json_string(ring->platform.aud));
		bad |= json_object_set_new(p, "sub", json_string(c->sub));
		bad |= json_object_set_new(p, "tenant_id", json_string(tenant));
		bad |= json_object_set_new(p, "jti", json_string(jti_gen ? jti_gen : c->jti));
		bad |= json_object_set_new(p, "iat", json_integer(c->iat));
		bad |= json_object_set_new(p, "nbf", json_integer(c->nbf));
		bad |= json_object_set_new(p, "exp", json_integer(c->exp));
	}
	free(jti_gen);
	if (bad) {
		json_decref(p);
		mf_err_set(err, 400, "invalid_claims", "claims are not valid UTF-8 strings (or out of memory)");
		return NULL;
	}
	return p;
}

char *gw_jwt_sign(const gw_keyring_t *ring, const gw_claims_t *claims, mf_err_t *err)
{
	const struct gw_key *k;
	json_t *p;
	char *payload, *tok = NULL, *out = NULL;
	jwt_t *jwt = NULL;

	if (ring == NULL || claims == NULL) {
		mf_err_set(err, 500, "internal_error", "no key ring or claims");
		return NULL;
	}
	if (ring->signer < 0) {
		mf_err_set(err, 500, "jwt_no_signer", "no signing key is configured");
		return NULL;
	}
	k = &ring->platform.keys[ring->signer];
	p = sign_payload(ring, claims, err);
	if (p == NULL)
		return NULL;
	payload = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	if (payload == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	if (jwt_new(&jwt) != 0 || jwt_add_grants_json(jwt, payload) != 0 ||
	    jwt_add_header(jwt, "kid", k->kid) != 0 || jwt_add_header(jwt, "typ", "JWT") != 0 ||
	    jwt_set_alg(jwt, JWT_ALG_ES256, (const unsigned char *)k->private_pem, (int)k->private_len) != 0 ||
	    (tok = jwt_encode_str(jwt)) == NULL) {
		mf_err_set(err, 500, "jwt_sign_failed", "signing the token failed");
	} else if (strlen(tok) > GW_JWT_MAX_TOKEN) {
		mf_err_set(err, 400, "invalid_claims", "the signed token would exceed %d bytes", GW_JWT_MAX_TOKEN);
	} else {
		out = tok;
		tok = NULL;
	}
	free(tok);
	free(payload);
	jwt_free(jwt);
	ERR_clear_error();
	return out;
}

/* ---- verified-token cache ---- */

#define TC_WAYS 8
#define TC_MAX_CAPACITY ((size_t)1 << 24)

struct tc_entry {
	gw_claims_t claims;
	size_t len;
	char tok[];
};

struct tc_slot {
	uint64_t hash;
	uint64_t stamp;		/* last use, for LRU within the set */
	struct tc_entry *e;	/* NULL: free way */
};

struct gw_tokcache {
	unsigned char key[crypto_shorthash_KEYBYTES];
	size_t nsets, ways, count, bytes;
	uint64_t clock;
	int leeway;
	struct tc_slot slots[];
};

gw_tokcache_t *gw_tokcache_new(size_t capacity, int leeway_s)
{
	gw_tokcache_t *c;
	size_t ways, nsets;

	if (capacity < 1 || capacity > TC_MAX_CAPACITY || leeway_s < 0 || leeway_s > 60)
		return NULL;
	if (sodium_init() < 0)
		return NULL;
	/* floor, so the slots never exceed capacity */
	ways = capacity < TC_WAYS ? capacity : TC_WAYS;
	nsets = capacity / ways;
	c = calloc(1, sizeof(*c) + nsets * ways * sizeof(struct tc_slot));
	if (c == NULL)
		return NULL;
	/* a random key per cache: no one can aim tokens at one set */
	crypto_shorthash_keygen(c->key);
	c->nsets = nsets;
	c->ways = ways;
	c->leeway = leeway_s;
	c->bytes = sizeof(*c) + nsets * ways * sizeof(struct tc_slot);
	return c;
}

void gw_tokcache_clear(gw_tokcache_t *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nsets * c->ways; i++) {
		if (c->slots[i].e) {
			c->bytes -= sizeof(struct tc_entry) + c->slots[i].e->len;
			free(c->slots[i].e);
		}
		c->slots[i] = (struct tc_slot){ 0 };
	}
	c->count = 0;
}

void gw_tokcache_free(gw_tokcache_t *c)
{
	if (c == NULL)
		return;
	gw_tokcache_clear(c);
	sodium_memzero(c->key, sizeof(c->key));
	free(c);
}

static struct tc_slot *tc_set(gw_tokcache_t *c, const char *token, size_t len, uint64_t *h)
{
	unsigned char out[crypto_shorthash_BYTES];

	crypto_shorthash(out, (const unsigned char *)token, len, c->key);
	memcpy(h, out, sizeof(*h));
	return &c->slots[(*h % c->nsets) * c->ways];
}

static struct tc_slot *tc_find(gw_tokcache_t *c, struct tc_slot *set, uint64_t h, const char *token, size_t len)
{
	for (size_t i = 0; i < c->ways; i++) {
		struct tc_slot *s = &set[i];

		if (s->e && s->hash == h && s->e->len == len && memcmp(s->e->tok, token, len) == 0)
			return s;
	}
	return NULL;
}

const gw_claims_t *gw_tokcache_get(gw_tokcache_t *c, const char *token, size_t len, long long now)
{
	struct tc_slot *set, *s;
	const gw_claims_t *cl;
	uint64_t h;
	long long L;

	if (c == NULL || token == NULL || len == 0 || len > GW_JWT_MAX_TOKEN)
		return NULL;
	set = tc_set(c, token, len, &h);
	s = tc_find(c, set, h, token, len);
	if (s == NULL)
		return NULL;
	cl = &s->e->claims;
	L = c->leeway;
	/* the verify rules again; an expired entry stays until evicted, since
	 * freeing it here would break an earlier get's borrowed pointer */
	if (now >= cl->exp + L || cl->nbf - L > now || cl->iat - L > now)
		return NULL;
	s->stamp = ++c->clock;
	return cl;
}

void gw_tokcache_put(gw_tokcache_t *c, const char *token, size_t len, const gw_claims_t *claims)
{
	struct tc_slot *set, *s;
	struct tc_entry *e;
	uint64_t h;

	if (c == NULL || token == NULL || claims == NULL || len == 0 || len > GW_JWT_MAX_TOKEN)
		return;
	set = tc_set(c, token, len, &h);
	s = tc_find(c, set, h, token, len);
	if (s) {
		s->e->claims = *claims;
		s->stamp = ++c->clock;
		return;
	}
	e = malloc(sizeof(*e) + len);
	if (e == NULL)
		return;
	e->claims = *claims;
	e->len = len;
	memcpy(e->tok, token, len);
	s = &set[0];
	for (size_t i = 0; i < c->ways && s->e; i++)
		if (set[i].e == NULL || set[i].stamp < s->stamp)
			s = &set[i];
	if (s->e) {
		c->bytes -= sizeof(*s->e) + s->e->len;
		free(s->e);
		c->count--;
	}
	s->e = e;
	s->hash = h;
	s->stamp = ++c->clock;
	c->bytes += sizeof(*e) + len;
	c->count++;
}

size_t gw_tokcache_count(const gw_tokcache_t *c)
{
	return c ? c->count : 0;
}

size_t gw_tokcache_memory(const gw_tokcache_t *c)
{
	return c ? c->bytes : 0;
}
