/*
 * jwt.h - JWT verification and signing for the API gateway, and a
 * per-worker cache of verified tokens.
 *
 * libjwt 1.10.2 does the signature math, and nothing else: it skips the
 * signature for a zero-length key or alg "none", compares alg without case,
 * lets an HS256 token "verify" with an RSA/EC public key's PEM as the HMAC
 * secret, ignores kid/crit/exp/nbf/iss/aud, takes the last of duplicate JSON
 * keys and alloca()s the token's length.  So gw_jwt_verify() does everything
 * else itself before libjwt sees the token: length cap, strict base64url
 * segments, its own duplicate-rejecting parse of header and payload, a
 * header allow-list, key lookup by (iss, exact kid), a byte-exact alg that
 * must be the key's configured alg, the expected signature length, and
 * every claim's type and value from that parse.  libjwt only confirms the
 * signature, and its idea of the alg is checked once more afterwards.
 *
 * ES256 signatures: libjwt 1.10.2 emits and expects the JOSE form (raw
 * 64-byte R||S, checked on this machine, against the RFC 7515 A.3 vector and
 * by tests/unit/test_jwt_interop.py against Python's cryptography), so
 * signing goes through libjwt too.
 *
 * One exception: libjwt 1.10.2's jwt_decode refuses any "typ" but "JWT"
 * (case-insensitive), so for tokens with typ "at+jwt" (RFC 9068 access
 * tokens) the signature is checked with OpenSSL EVP here instead (HMAC with
 * a constant-time compare, RSA PKCS#1 v1.5, ECDSA raw R||S -> DER), after
 * exactly the same checks.
 *
 * Threading: a key ring is built on one thread (new/add/set_signer) and is
 * read-only afterwards; gw_jwt_verify, gw_jwt_sign, gw_keyring_jwks and
 * gw_keyring_count may then run on any number of threads at once.  A token
 * cache belongs to one thread.
 */
#ifndef GW_JWT_H
#define GW_JWT_H

#include <stddef.h>
#include <jansson.h>
#include "core/err.h"

#define GW_JWT_MAX_TOKEN 8192	/* longer tokens are refused before any parsing */
#define GW_JWT_MAX_ROLES 32

typedef struct gw_claims {
	char sub[128];
	char tenant_id[37];	/* canonical lower-case UUID text (36 chars) */
	char iss[256];
	char jti[64];
	int nroles;
	char roles[GW_JWT_MAX_ROLES][64];
	long long iat, nbf, exp;	/* unix seconds */
	int issuer;		/* 0 = platform key ring, 1.. = index+1 of an external issuer */
} gw_claims_t;

/* ---- key ring ---- */

typedef struct gw_keyring gw_keyring_t;

/*
 * issuer/audience: what platform tokens carry and what every token must
 * match (external issuers have their own iss, and an optional own audience,
 * defaulting to this one).  Both are copied; 1..255 bytes.
 * leeway_s: clock leeway for exp/nbf/iat, 0..60.
 * Returns NULL for bad arguments or out of memory.
 */
gw_keyring_t *gw_keyring_new(const char *issuer, const char *audience, int leeway_s);
void gw_keyring_free(gw_keyring_t *ring);	/* NULL is fine; wipes private keys */

/*
 * A platform ES256 key.  kid must match ^[A-Za-z0-9_-]{1,64}$; public_pem is
 * a P-256 public key (SubjectPublicKeyInfo PEM); private_pem (PKCS#8 or SEC1
 * PEM, unencrypted) may be NULL for a verify-only key, e.g. an older key kept
 * for rotation, and must match public_pem otherwise.  Refuses empty,
 * unparsable and non-P-256 keys and duplicate kids.  Both strings are
 * borrowed; the ring keeps its own canonical copies.
 */
int gw_keyring_add_platform(gw_keyring_t *ring, const char *kid, const char *public_pem,
			    const char *private_pem, mf_err_t *err)
	__attribute__((warn_unused_result));

/* Which platform key signs new tokens (it must have a private key). */
int gw_keyring_set_signer(gw_keyring_t *ring, const char *kid, mf_err_t *err)
	__attribute__((warn_unused_result));

/*
 * External issuers from a JSON array (borrowed):
 * [{"issuer": "https://idp.example", "audience": "optional", "keys": [
 *     {"kid": "k1", "alg": "RS256"|"RS384"|"RS512"|"ES256"|"ES384"|"ES512",
 *      "pem": "-----BEGIN PUBLIC KEY-----..."},
 *     {"kid": "h1", "alg": "HS256"|"HS384"|"HS512", "secret": "<base64>"} ]}]
 * Validates strictly and names the JSON path ("$[0].keys[1].pem: ...") in
 * err: unknown fields, wrong types, a PEM that is not a SubjectPublicKeyInfo
 * of the alg's type (RSA 2048..8192 bits; P-256/P-384/P-521 for
 * ES256/384/512), a secret that is not standard padded base64 or decodes to
 * fewer bytes than max(32, hash size) (RFC 7518 3.2), duplicate issuers
 * (also against the platform issuer) and duplicate kids.  A key may omit
 * kid only when its issuer has exactly one key; such a key matches only
 * tokens without a kid, and a kid matches only byte-equal kids.
 * All or nothing: on error the ring is unchanged.
 */
int gw_keyring_add_issuers_json(gw_keyring_t *ring, const json_t *doc, mf_err_t *err)
	__attribute__((warn_unused_result));

/* JWKS of the platform public keys:
 * {"keys":[{"kty":"EC","crv":"P-256","x","y","kid","alg":"ES256","use":"sig"}]}.
 * New reference (caller json_decref()s it), NULL when out of memory. */
json_t *gw_keyring_jwks(const gw_keyring_t *ring);
int gw_keyring_count(const gw_keyring_t *ring);	/* platform keys */
int gw_keyring_leeway(const gw_keyring_t *ring);	/* for gw_tokcache_new */

/* ---- tokens ---- */

/*
 * Verifies token[0..len) (need not be NUL-terminated) at time now.  Returns
 * 0 and fills *out, or -1 with *out zeroed and *reason set to a short static
 * string for logs and metrics (never any part of the token):
 *   too_long, bad_segments, bad_base64, bad_header_json, bad_header,
 *   forbidden_header (crit/jku/x5u/jwk/x5c/x5t...), unknown_header, bad_alg,
 *   alg_none, bad_typ, bad_kid, bad_payload_json, bad_payload, bad_iss,
 *   unknown_issuer, missing_kid, unknown_kid, alg_mismatch, bad_aud,
 *   wrong_aud, bad_sub, bad_tenant_id, bad_roles, bad_jti, missing_jti,
 *   bad_iat, bad_nbf, bad_exp, exp_before_iat, expired, not_yet_valid,
 *   iat_future, bad_signature, internal.
 * Cheap checks (claims, times) come before the signature, so floods of
 * expired or malformed tokens cost no public-key work; a forged token may
 * therefore be reported as e.g. "expired" rather than "bad_signature".
 * Time rules (L = leeway): now < exp + L, nbf <= now + L, iat <= now + L,
 * exp > iat; iat/nbf/exp are JSON integers in 0..2^53.
 */
int gw_jwt_verify(const gw_keyring_t *ring, const char *token, size_t len, long long now,
		  gw_claims_t *out, const char **reason)
	__attribute__((warn_unused_result));

/*
 * Signs claims with the signer key: iss/aud come from the ring;
 * iat/nbf/exp/jti/sub/tenant_id/roles from *claims (validated by the same
 * rules verify applies; tenant_id is lower-cased; an empty jti gets a random
 * 128-bit one).  Header {"alg":"ES256","typ":"JWT","kid":...}.
 * Returns a malloc'd NUL-terminated token (caller frees), or NULL with err.
 */
char *gw_jwt_sign(const gw_keyring_t *ring, const gw_claims_t *claims, mf_err_t *err)
	__attribute__((warn_unused_result));

/* New P-256 key pair as malloc'd PEM strings: SubjectPublicKeyInfo and
 * unencrypted PKCS#8.  The caller frees both (wipe the private one). */
int gw_jwt_generate_es256(char **public_pem, char **private_pem, mf_err_t *err)
	__attribute__((warn_unused_result));

/* ---- verified-token cache ---- */

/*
 * One per worker thread, single-threaded, bounded: at most capacity entries
 * (8-way set-associative, LRU within a set), keyed by a SipHash
 * (crypto_shorthash, random key per cache) of the token and a full byte
 * compare.  Each entry holds a copy of the token and its claims.
 *
 * An entry is valid while now < exp + leeway (the same bound gw_jwt_verify
 * uses, so the cache never accepts what verify would refuse; likewise
 * nbf/iat <= now + leeway); get returns NULL otherwise.  Put replaces the
 * entry for the same token, else takes a free way, else evicts the set's
 * least recently used entry.  Tokens longer than GW_JWT_MAX_TOKEN are not
 * cached.  Cache only tokens gw_jwt_verify accepted, with the same leeway.
 */
typedef struct gw_tokcache gw_tokcache_t;

/* capacity 1..2^24; NULL for bad arguments or out of memory. */
gw_tokcache_t *gw_tokcache_new(size_t capacity, int leeway_s);
void gw_tokcache_free(gw_tokcache_t *c);	/* NULL is fine */
/* Borrowed until the next put/clear/free on this cache. */
const gw_claims_t *gw_tokcache_get(gw_tokcache_t *c, const char *token, size_t len, long long now);
/* Out of memory just leaves the token uncached. */
void gw_tokcache_put(gw_tokcache_t *c, const char *token, size_t len, const gw_claims_t *claims);
void gw_tokcache_clear(gw_tokcache_t *c);
size_t gw_tokcache_count(const gw_tokcache_t *c);	/* entries held */
size_t gw_tokcache_memory(const gw_tokcache_t *c);	/* bytes held, tables included */

#endif
