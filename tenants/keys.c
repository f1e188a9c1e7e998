/*
 * keys.c - the master key and the platform's JWT key ring.
 *
 * Signing keys live in platform.signing_keys so that every instance sharing
 * the database signs and verifies with the same ring.  Private keys are
 * sealed with XChaCha20-Poly1305 under a key derived (crypto_kdf) from the
 * master key, with the kid as associated data, so a row cannot be swapped
 * for another's.  The master key itself is never stored in the database.
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
#include "tenants/tn.h"

#define KEYS_LOCK "31078753305488504"	/* advisory lock: key creation */
#define KDF_CONTEXT "jwtkeys_"

static const char ring_sql[] =
	"SELECT kid, public_pem, encode(private_box, 'hex'), (active_from <= now())::int "
	"FROM platform.signing_keys WHERE retire_at IS NULL OR retire_at > now() ORDER BY active_from, kid";

/* ---- master key ---- */

static int decode_master(const char *text, unsigned char key[32], mf_err_t *err)
{
	size_t n = 0;
	const char *end;
	char buf[128];
	size_t len = strcspn(text, "\r\n");

	if (len >= sizeof(buf))
		return mf_err_set(err, 400, "invalid_config", "the master key is not 32 bytes of base64");
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (sodium_base642bin(key, 32, buf, len, NULL, &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    n != 32 || *end != '\0') {
		sodium_memzero(buf, sizeof(buf));
		return mf_err_set(err, 400, "invalid_config", "the master key is not 32 bytes of base64");
	}
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int tn_master_key_load(const mf_config_t *cfg, unsigned char key[32], mf_err_t *err)
{
	char text[128];
	struct stat st;
	ssize_t n;
	int fd, rc;

	if (cfg->master_key[0])
		return decode_master(cfg->master_key, key, err);
	if (!cfg->master_key_file[0])
		return mf_err_set(err, 400, "invalid_config",
				  "no master key: set master_key_file or MSPFLOW_MASTER_KEY (mspflow keygen makes one)");
	fd = open(cfg->master_key_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return mf_err_set(err, 400, "invalid_config", "cannot open master_key_file %s: %s",
				  cfg->master_key_file, strerror(errno));
	if (fstat(fd, &st) < 0 || (st.st_mode & 077) != 0) {
		close(fd);
		return mf_err_set(err, 400, "invalid_config",
				  "master_key_file %s must not be readable by group or others (chmod 600)",
				  cfg->master_key_file);
	}
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return mf_err_set(err, 400, "invalid_config", "master_key_file %s is empty", cfg->master_key_file);
	text[n] = '\0';
	rc = decode_master(text, key, err);
	sodium_memzero(text, sizeof(text));
	return rc;
}

int tn_master_key_generate(char *out, size_t len)
{
	unsigned char key[32];

	if (len < sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL))
		return -1;
	randombytes_buf(key, sizeof(key));
	sodium_bin2base64(out, len, key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	return 0;
}

void tn_keys_derive(const unsigned char master[32], unsigned char box[32])
{
	crypto_kdf_derive_from_key(box, 32, 1, KDF_CONTEXT, master);
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
	const char *signer = NULL;
	mf_err_t err;

	if (ring == NULL)
		return NULL;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *kid = PQgetvalue(res, i, 0);
		char *priv = unseal(tn->keybox, kid, PQgetvalue(res, i, 2));

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
	if (signer && gw_keyring_set_signer(ring, signer, &err) < 0)
		mf_error("keys", "cannot select the signing key", MF_S("error", err.detail));
	if (tn->issuers && gw_keyring_add_issuers_json(ring, tn->issuers, &err) < 0)
		mf_error("keys", "external issuers refused", MF_S("error", err.detail));
	return ring;
}

/* ---- blocking, for start-up and commands ---- */

static PGresult *exec_params(PGconn *c, const char *sql, int n, const char *const *p, mf_err_t *err)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
		mf_err_set(err, 500, "database_error", "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
			   ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : PQerrorMessage(c));
		PQclear(r);
		return NULL;
	}
	return r;
}

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

		r = exec_params(c, "INSERT INTO platform.signing_keys (kid, alg, public_pem, private_box, active_from) "
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

int tn_keys_ensure(PGconn *c, const unsigned char master[32], mf_err_t *err)
{
	const char *lock[1] = { KEYS_LOCK };
	unsigned char box[32];
	PGresult *r;
	int rc = -1;

	tn_keys_derive(master, box);
	r = exec_params(c, "SELECT pg_advisory_lock($1::bigint)", 1, lock, err);
	if (r == NULL)
		goto out;
	PQclear(r);
	r = exec_params(c, "SELECT count(*) FROM platform.signing_keys "
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

int tn_keys_rotate(PGconn *c, const mf_config_t *cfg, const unsigned char master[32], FILE *out, mf_err_t *err)
{
	unsigned char box[32];
	char kid[32], delay[16], keep[16];
	PGresult *r;
	int rc = -1;
	/* every instance reloads within key_refresh_s: twice that and the new
	 * key is known everywhere before it signs anything */
	int d = 2 * cfg->key_refresh_s + 1;

	tn_keys_derive(master, box);
	r = exec_params(c, "BEGIN", 0, NULL, err);
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
		r = exec_params(c, "UPDATE platform.signing_keys SET retire_at = now() + "
				   "make_interval(secs => $2::int + $3::int) "
				   "WHERE kid <> $1 AND (retire_at IS NULL OR retire_at > now() + "
				   "make_interval(secs => $2::int + $3::int))", 3, p, err);
	}
	if (r == NULL)
		goto rollback;
	PQclear(r);
	r = exec_params(c, "COMMIT", 0, NULL, err);
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

/* Start-up: the ring every worker begins with. */
int tn_keys_seed(tn_t *tn, PGconn *c, mf_err_t *err)
{
	PGresult *r = exec_params(c, ring_sql, 0, NULL, err);
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
