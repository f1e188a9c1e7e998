/*
 * keys.c - the master key and the platform's JWT key ring.
 *
 * Signing keys live in platform.signing_keys so that every instance sharing
 * the database signs and verifies with the same ring.  Private keys are
 * sealed with XChaCha20-Poly1305 under a key derived (crypto_kdf) from the
 * first master key of the ring (core/masterkey.h), with the kid as
 * associated data, so a row cannot be swapped for another's; they open
 * under any master key of the ring (each derived key is tried), which is
 * what lets `mspflow vault rotate-master` re-seal them while servers run.
 * The master keys themselves are never stored in the database.
 *
 * Start-up (blocking, before any event loop): tn_keys_ensure() creates the
 * first key when there is none, and tn_keys_seed() reads the ring that
 * every worker starts with.  Afterwards each worker reloads the ring every
 * key_refresh_s through its async pool.  Rotation inserts a key whose
 * active_from lies two refresh periods ahead, so every instance can verify
 * its tokens before the first one is signed, and retires older keys once
 * their last tokens have expired.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/masterkey.h"
#include "tenants/tn.h"

#define KEYS_LOCK "31078753305488504"	/* advisory lock: key creation */
#define KDF_CONTEXT "jwtkeys_"

static const char ring_sql[] =
	"SELECT kid, public_pem, encode(private_box, 'hex'), (active_from <= now())::int "
	"FROM platform.signing_keys WHERE retire_at IS NULL OR retire_at > now() ORDER BY active_from, kid";

void tn_keys_derive(const unsigned char master[32], unsigned char box[32])
{
	crypto_kdf_derive_from_key(box, 32, 1, KDF_CONTEXT, master);
}

/* The private PEM of a row under any key of the ring (malloc'd, wiped by
 * the caller), and which key opened it; NULL when none does. */
static char *unseal(const unsigned char box[32], const char *kid, const char *hex);

static char *unseal_ring(const mf_master_ring_t *ring, const char *kid, const char *hex, int *which)
{
	unsigned char box[32];
	char *pem = NULL;

	for (int i = 0; pem == NULL && i < mf_master_ring_count(ring); i++) {
		tn_keys_derive(mf_master_ring_key(ring, i), box);
		pem = unseal(box, kid, hex);
		if (pem && which)
			*which = i;
	}
	sodium_memzero(box, sizeof(box));
	return pem;
}

/* ---- sealing ---- */

/* hex of nonce || ciphertext, malloc'd, in PostgreSQL's bytea hex input form */
static char *seal(const unsigned char box[32], const char *kid, const char *pem)
{
	size_t mlen = strlen(pem), clen = mlen + crypto_aead_xchacha20poly1305_ietf_ABYTES;
	size_t blen = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + clen;
	unsigned char *b = malloc(blen);
	char *hex = malloc(2 * blen + 3);
	unsigned long long outlen;

	if (b == NULL || hex == NULL) {
		free(b);
		free(hex);
		return NULL;
	}
	randombytes_buf(b, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(b + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &outlen,
		(const unsigned char *)pem, mlen, (const unsigned char *)kid, strlen(kid), NULL, b, box);
	hex[0] = '\\';
	hex[1] = 'x';
	sodium_bin2hex(hex + 2, 2 * blen + 1, b, blen);
	free(b);
	return hex;
}

/* The private PEM from the hex text of private_box, malloc'd (wiped by
 * the caller after use), or NULL when it does not open. */
static char *unseal(const unsigned char box[32], const char *kid, const char *hex)
{
	size_t hlen = strlen(hex), blen = hlen / 2, n = 0;
	unsigned char *b = malloc(blen + 1);
	char *pem = NULL;
	unsigned long long mlen;

	if (b == NULL || sodium_hex2bin(b, blen, hex, hlen, NULL, &n, NULL) != 0 ||
	    n < crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
		goto out;
	pem = malloc(n);
	if (pem == NULL)
		goto out;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *)pem, &mlen, NULL,
		b + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, n - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
		(const unsigned char *)kid, strlen(kid), b, box) != 0) {
		free(pem);
		pem = NULL;
		goto out;
	}
	pem[mlen] = '\0';
out:
	free(b);
	return pem;
}

static void free_secret(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

/* ---- the ring from rows (kid, public_pem, box hex, active) ---- */

static gw_keyring_t *ring_from_result(tn_t *tn, const PGresult *res)
{
	const mf_config_t *cfg = tn->cfg;
	gw_keyring_t *ring = gw_keyring_new(cfg->jwt_issuer, cfg->jwt_audience, cfg->jwt_leeway_s);
	mf_master_ring_t *mring = mf_master_get(tn->master);
	const char *signer = NULL;
	mf_err_t err;

	if (ring == NULL) {
		mf_master_ring_unref(mring);
		return NULL;
	}
	for (int i = 0; res && i < PQntuples(res); i++) {
		const char *kid = PQgetvalue(res, i, 0);
		char *priv = unseal_ring(mring, kid, PQgetvalue(res, i, 2), NULL);

		if (priv == NULL && mf_master_from_file(tn->master)) {
			/* re-sealed under a master key added to the file since */
			mf_master_ring_unref(mring);
			mring = mf_master_refresh(tn->master, NULL, false);
			priv = unseal_ring(mring, kid, PQgetvalue(res, i, 2), NULL);
		}
		if (priv == NULL) {
			mf_error("keys", "a signing key does not open with this master key", MF_S("kid", kid));
			continue;
		}
		if (gw_keyring_add_platform(ring, kid, PQgetvalue(res, i, 1), priv, &err) < 0)
			mf_error("keys", "a signing key was refused", MF_S("kid", kid), MF_S("error", err.detail));
		else if (strcmp(PQgetvalue(res, i, 3), "1") == 0)
			signer = kid;	/* rows come oldest first: the newest active key signs */
		free_secret(priv);
	}
	mf_master_ring_unref(mring);
	if (signer && gw_keyring_set_signer(ring, signer, &err) < 0)
		mf_error("keys", "cannot select the signing key", MF_S("error", err.detail));
	if (tn->issuers && gw_keyring_add_issuers_json(ring, tn->issuers, &err) < 0)
		mf_error("keys", "external issuers refused", MF_S("error", err.detail));
	return ring;
}

/* ---- blocking, for start-up and commands ---- */

/* Generates and stores a key that signs from `delay_s` seconds on. */
static int insert_key(PGconn *c, const unsigned char box[32], int delay_s, char kid_out[32], mf_err_t *err)
{
	char *pub = NULL, *priv = NULL, *sealed = NULL, kid[32], delay[16];
	unsigned char rnd[12];
	PGresult *r;
	int rc = -1;

	if (gw_jwt_generate_es256(&pub, &priv, err) < 0)
		return -1;
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2base64(kid, sizeof(kid), rnd, sizeof(rnd), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sealed = seal(box, kid, priv);
	snprintf(delay, sizeof(delay), "%d", delay_s);
	if (sealed) {
		const char *p[4] = { kid, pub, sealed, delay };

		r = mf_pg_exec(c, "INSERT INTO platform.signing_keys (kid, alg, public_pem, private_box, active_from) "
				   "VALUES ($1, 'ES256', $2, $3::bytea, now() + make_interval(secs => $4::int))",
				4, p, err);
		if (r) {
			PQclear(r);
			rc = 0;
			if (kid_out)
				memcpy(kid_out, kid, sizeof(kid));
		}
	} else {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	free(pub);
	free_secret(priv);
	free(sealed);
	return rc;
}

int tn_keys_ensure(PGconn *c, const mf_master_ring_t *master, mf_err_t *err)
{
	const char *lock[1] = { KEYS_LOCK };
	unsigned char box[32];
	PGresult *r;
	int rc = -1;

	tn_keys_derive(mf_master_ring_key(master, 0), box);
	r = mf_pg_exec(c, "SELECT pg_advisory_lock($1::bigint)", 1, lock, err);
	if (r == NULL)
		goto out;
	PQclear(r);
	r = mf_pg_exec(c, "SELECT count(*) FROM platform.signing_keys "
			   "WHERE active_from <= now() AND (retire_at IS NULL OR retire_at > now())", 0, NULL, err);
	if (r) {
		bool none = strcmp(PQgetvalue(r, 0, 0), "0") == 0;
		char kid[32];

		PQclear(r);
		rc = 0;
		if (none) {
			/* first start: no instance can hold a token yet, so the key signs at once */
			rc = insert_key(c, box, 0, kid, err);
			if (rc == 0)
				mf_info("keys", "created the first signing key", MF_S("kid", kid));
		}
	}
	PQclear(PQexecParams(c, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, lock, NULL, NULL, 0));
out:
	sodium_memzero(box, sizeof(box));
	return rc;
}

int tn_keys_rotate(PGconn *c, const mf_config_t *cfg, const mf_master_ring_t *master, FILE *out, mf_err_t *err)
{
	unsigned char box[32];
	char kid[32], delay[16], keep[16];
	PGresult *r;
	int rc = -1;
	/* every instance reloads within key_refresh_s: twice that and the new
	 * key is known everywhere before it signs anything */
	int d = 2 * cfg->key_refresh_s + 1;

	tn_keys_derive(mf_master_ring_key(master, 0), box);
	r = mf_pg_exec(c, "BEGIN", 0, NULL, err);
	if (r == NULL)
		goto out;
	PQclear(r);
	if (insert_key(c, box, d, kid, err) < 0)
		goto rollback;
	snprintf(delay, sizeof(delay), "%d", d);
	snprintf(keep, sizeof(keep), "%d", cfg->token_ttl_s + cfg->jwt_leeway_s);
	{
		const char *p[3] = { kid, delay, keep };

		/* older keys verify until the last token they can still sign
		 * (until the new key takes over) has expired */
		r = mf_pg_exec(c, "UPDATE platform.signing_keys SET retire_at = now() + "
				   "make_interval(secs => $2::int + $3::int) "
				   "WHERE kid <> $1 AND (retire_at IS NULL OR retire_at > now() + "
				   "make_interval(secs => $2::int + $3::int))", 3, p, err);
	}
	if (r == NULL)
		goto rollback;
	PQclear(r);
	r = mf_pg_exec(c, "COMMIT", 0, NULL, err);
	if (r == NULL)
		goto out;
	PQclear(r);
	fprintf(out, "{\"kid\":\"%s\",\"signs_in_s\":%d,\"old_keys_retire_in_s\":%d}\n", kid, d,
		d + cfg->token_ttl_s + cfg->jwt_leeway_s);
	rc = 0;
	goto out;
rollback:
	PQclear(PQexec(c, "ROLLBACK"));
out:
	sodium_memzero(box, sizeof(box));
	return rc;
}

int tn_keys_reseal(PGconn *c, const mf_master_ring_t *master, tn_reseal_report_t *rep, mf_err_t *err)
{
	unsigned char box[32];
	PGresult *r;

	memset(rep, 0, sizeof(*rep));
	r = mf_pg_exec(c, "SELECT kid, encode(private_box, 'hex') FROM platform.signing_keys ORDER BY kid", 0, NULL, err);
	if (r == NULL)
		return -1;
	tn_keys_derive(mf_master_ring_key(master, 0), box);
	for (int i = 0; i < PQntuples(r); i++) {
		const char *kid = PQgetvalue(r, i, 0), *old = PQgetvalue(r, i, 1);
		int which = -1;
		char *pem = unseal_ring(master, kid, old, &which), *sealed;
		char oldhex[4 + 4096];
		PGresult *u;

		if (pem == NULL) {
			mf_warn("keys", "a signing key opens under no master key of the ring", MF_S("kid", kid));
			rep->unopenable++;
			continue;
		}
		if (which == 0) {
			free_secret(pem);
			rep->already++;
			continue;
		}
		sealed = seal(box, kid, pem);
		free_secret(pem);
		snprintf(oldhex, sizeof(oldhex), "\\x%s", old);
		if (sealed == NULL || strlen(old) + 3 >= sizeof(oldhex)) {
			free(sealed);
			rep->unopenable++;
			continue;
		}
		{
			/* one row per statement, and only if nobody re-sealed it meanwhile */
			const char *p[3] = { kid, sealed, oldhex };

			u = mf_pg_exec(c, "UPDATE platform.signing_keys SET private_box = $2::bytea "
					   "WHERE kid = $1 AND private_box = $3::bytea", 3, p, err);
		}
		free(sealed);
		if (u == NULL) {
			PQclear(r);
			sodium_memzero(box, sizeof(box));
			return -1;
		}
		if (strcmp(PQcmdTuples(u), "1") == 0)
			rep->resealed++;
		PQclear(u);
	}
	PQclear(r);
	sodium_memzero(box, sizeof(box));
	return 0;
}

/* Start-up: the ring every worker begins with. */
int tn_keys_seed(tn_t *tn, PGconn *c, mf_err_t *err)
{
	PGresult *r = mf_pg_exec(c, ring_sql, 0, NULL, err);
	gw_keyring_t *ring;

	if (r == NULL)
		return -1;
	ring = ring_from_result(tn, r);
	if (ring == NULL) {
		PQclear(r);
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	}
	gw_keyring_free(ring);
	/* a PGresult is immutable: the workers read it concurrently to build
	 * their first rings, then tn_free() clears it */
	PQclear(tn->seed);
	tn->seed = r;
	return 0;
}

/* ---- per worker: async reload ---- */

static void reload_done(const PGresult *res, const mf_err_t *err, void *arg)
{
	tn_worker_t *tw = arg;
	gw_keyring_t *ring;

	tw->key_loading = false;
	if (err) {
		mf_warn("keys", "cannot reload the signing key ring", MF_S("error", err->detail));
		return;
	}
	ring = ring_from_result(tw->tn, res);
	if (ring == NULL)
		return;
	gw_keyring_free(tw->ring);
	tw->ring = ring;
	tw->keys_loaded_at = tn_now_ms();
}

static void reload(evutil_socket_t fd, short what, void *arg)
{
	tn_worker_t *tw = arg;

	if (tw->key_loading || tw->w->pg == NULL || !tw->tn->have_master)
		return;
	tw->key_loading = true;
	if (mf_pg_query(tw->w->pg, ring_sql, 0, NULL, reload_done, tw) < 0)
		tw->key_loading = false;
}

int tn_keys_worker_start(tn_worker_t *tw)
{
	struct timeval tv = { tw->tn->cfg->key_refresh_s, 0 };

	/* no seed (no database or no master key): a ring of external issuers only */
	tw->ring = ring_from_result(tw->tn, tw->tn->seed);
	if (tw->ring == NULL)
		return -1;
	tw->key_timer = event_new(tw->w->base, -1, EV_PERSIST, reload, tw);
	if (tw->key_timer == NULL || event_add(tw->key_timer, &tv) < 0)
		return -1;
	return 0;
}
