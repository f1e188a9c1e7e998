/*
 * vault.c - the vault's cryptography, its per-worker data-key cache, and
 * cx_vault_open() (see vault.h).  The HTTP routes are in vault_api.c and
 * the master-key rotation command in vault_admin.c.
 *
 * The DEK cache is 4-way set associative (64 sets): bounded, O(1), and an
 * entry expires ttl_ms after it was unwrapped, so a rotated or shredded
 * tenant key leaves a worker's memory within that time even if nothing
 * asks for it again.  The key bytes live in one sodium_malloc'd slab
 * (guard pages, mlock'ed, excluded from core dumps) and are wiped on
 * eviction and when the worker stops.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "connectors/vault_int.h"
#include "core/log.h"

#define CACHE_SETS 64
#define CACHE_WAYS 4
#define CACHE_TTL_MS 30000

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool cx_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > CX_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return false;
	}
	return true;
}

/* ---- bytea text ---- */

unsigned char *cx_bytea_decode(const char *text, size_t *len)
{
	size_t hlen, n = 0;
	unsigned char *b;

	if (text == NULL || text[0] != '\\' || text[1] != 'x')
		return NULL;
	hlen = strlen(text + 2);
	if (hlen % 2)
		return NULL;
	b = malloc(hlen / 2 + 1);
	if (b == NULL || sodium_hex2bin(b, hlen / 2, text + 2, hlen, NULL, &n, NULL) != 0 || n != hlen / 2) {
		free(b);
		return NULL;
	}
	*len = n;
	return b;
}

char *cx_bytea_encode(const unsigned char *b, size_t len)
{
	char *t = malloc(2 * len + 3);

	if (t == NULL)
		return NULL;
	t[0] = '\\';
	t[1] = 'x';
	sodium_bin2hex(t + 2, 2 * len + 1, b, len);
	return t;
}

/* ---- cryptography ---- */

static size_t dek_ad(char *ad, size_t cap, const char *tenant, int version, const char *kid)
{
	int n = snprintf(ad, cap, "dek|%s|%d|%s", tenant, version, kid);

	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

static size_t cred_ad(char *ad, size_t cap, const char *tenant, const char *name, int version, int key_version)
{
	int n = snprintf(ad, cap, "cred|%s|%s|%d|%d", tenant, name, version, key_version);

	return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

int cx_vault_dek_wrap(const mf_master_ring_t *ring, int key, const char *tenant_id, int version,
		      const unsigned char dek[CX_DEK_BYTES], unsigned char out[CX_WRAPPED_BYTES],
		      char kid[MF_MASTER_KID_HEX + 1])
{
	const unsigned char *mk = ring ? mf_master_ring_key(ring, key) : NULL;
	char ad[160];
	size_t adlen;

	if (mk == NULL)
		return -1;
	snprintf(kid, MF_MASTER_KID_HEX + 1, "%s", mf_master_ring_kid(ring, key));
	adlen = dek_ad(ad, sizeof(ad), tenant_id, version, kid);
	if (adlen == 0)
		return -1;
	randombytes_buf(out, CX_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + CX_NONCE_BYTES, NULL, dek, CX_DEK_BYTES,
						   (const unsigned char *)ad, adlen, NULL, out, mk);
	return 0;
}

int cx_vault_dek_unwrap(const mf_master_ring_t *ring, const char *tenant_id, int version, const char *kid,
			const unsigned char *wrapped, size_t len, unsigned char dek[CX_DEK_BYTES])
{
	int i = mf_master_ring_find(ring, kid);
	unsigned long long mlen = 0;
	char ad[160];
	size_t adlen;

	if (i < 0)
		return -2;
	adlen = dek_ad(ad, sizeof(ad), tenant_id, version, kid);
	if (adlen == 0 || len != CX_WRAPPED_BYTES)
		return -1;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(dek, &mlen, NULL, wrapped + CX_NONCE_BYTES,
						       len - CX_NONCE_BYTES, (const unsigned char *)ad, adlen,
						       wrapped, mf_master_ring_key(ring, i)) != 0 ||
	    mlen != CX_DEK_BYTES) {
		sodium_memzero(dek, CX_DEK_BYTES);
		return -1;
	}
	return 0;
}

int cx_vault_seal(const unsigned char dek[CX_DEK_BYTES], const char *tenant_id, const char *name, int version,
		  int key_version, const unsigned char *m, size_t mlen, unsigned char *out)
{
	char ad[200];
	size_t adlen = cred_ad(ad, sizeof(ad), tenant_id, name, version, key_version);

	if (adlen == 0)
		return -1;
	randombytes_buf(out, CX_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + CX_NONCE_BYTES, NULL, m, mlen, (const unsigned char *)ad,
						   adlen, NULL, out, dek);
	return 0;
}

int cx_vault_unseal(const unsigned char dek[CX_DEK_BYTES], const char *tenant_id, const char *name, int version,
		    int key_version, const unsigned char *box, size_t blen, unsigned char *out, size_t *outlen)
{
	char ad[200];
	size_t adlen = cred_ad(ad, sizeof(ad), tenant_id, name, version, key_version);
	unsigned long long mlen = 0;

	if (adlen == 0 || blen < CX_SEAL_OVERHEAD)
		return -1;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, box + CX_NONCE_BYTES, blen - CX_NONCE_BYTES,
						       (const unsigned char *)ad, adlen, box, dek) != 0)
		return -1;
	*outlen = (size_t)mlen;
	return 0;
}

/* ---- process and worker ---- */

cx_vault_t *cx_vault_new(const mf_config_t *cfg, mf_master_t *master, mf_err_t *err)
{
	cx_vault_t *v = calloc(1, sizeof(*v));

	if (v == NULL || sodium_init() < 0) {
		free(v);
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	v->cfg = cfg;
	v->master = master;
	return v;
}

void cx_vault_free(cx_vault_t *v)
{
	free(v);
}

cx_vault_worker_t *cx_vault_worker_new(cx_vault_t *v, struct event_base *base, mf_pg_pool_t *pg)
{
	cx_vault_worker_t *vw = calloc(1, sizeof(*vw));

	if (vw == NULL)
		return NULL;
	vw->v = v;
	vw->base = base;
	vw->pg = pg;
	vw->nsets = CACHE_SETS;
	vw->ways = CACHE_WAYS;
	vw->ttl_ms = CACHE_TTL_MS;
	vw->entries = calloc((size_t)(CACHE_SETS * CACHE_WAYS), sizeof(*vw->entries));
	vw->keys = sodium_malloc((size_t)(CACHE_SETS * CACHE_WAYS) * CX_DEK_BYTES);
	if (vw->entries == NULL || vw->keys == NULL) {
		cx_vault_worker_free(vw);
		return NULL;
	}
	sodium_memzero(vw->keys, (size_t)(CACHE_SETS * CACHE_WAYS) * CX_DEK_BYTES);
	return vw;
}

void cx_vault_worker_free(cx_vault_worker_t *vw)
{
	if (vw == NULL)
		return;
	if (vw->keys)
		sodium_free(vw->keys);	/* wipes */
	free(vw->entries);
	free(vw);
}

void cx_vault_worker_stats(const cx_vault_worker_t *vw, cx_vault_stats_t *out)
{
	cx_vault_worker_t *w = (cx_vault_worker_t *)vw;

	out->opened = atomic_load_explicit(&w->n_opened, memory_order_relaxed);
	out->failed = atomic_load_explicit(&w->n_failed, memory_order_relaxed);
	out->cache_hits = atomic_load_explicit(&w->n_hits, memory_order_relaxed);
	out->cache_misses = atomic_load_explicit(&w->n_misses, memory_order_relaxed);
}

static unsigned set_of(const cx_vault_worker_t *vw, const char *tenant, int version)
{
	uint32_t h = 2166136261u;

	for (const char *p = tenant; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ (uint32_t)version) * 16777619u;
	return h % (unsigned)vw->nsets;
}

static void slot_clear(cx_vault_worker_t *vw, int idx)
{
	sodium_memzero(vw->keys + (size_t)idx * CX_DEK_BYTES, CX_DEK_BYTES);
	memset(&vw->entries[idx], 0, sizeof(vw->entries[idx]));
}

static int cache_find(cx_vault_worker_t *vw, const char *tenant, int version, long long now)
{
	int base = (int)set_of(vw, tenant, version) * vw->ways;

	for (int i = base; i < base + vw->ways; i++) {
		cx_dek_entry_t *e = &vw->entries[i];

		if (e->version == 0)
			continue;
		if (e->expires_ms <= now) {
			slot_clear(vw, i);
			continue;
		}
		if (e->version == version && strcmp(e->tenant, tenant) == 0)
			return i;
	}
	return -1;
}

void cx_dek_put(cx_vault_worker_t *vw, const char *tenant, int version, const unsigned char dek[CX_DEK_BYTES])
{
	long long now = now_ms();
	int base = (int)set_of(vw, tenant, version) * vw->ways, victim = -1;

	if (strlen(tenant) >= sizeof(vw->entries[0].tenant))
		return;
	victim = cache_find(vw, tenant, version, now);
	for (int i = base; victim < 0 && i < base + vw->ways; i++)
		if (vw->entries[i].version == 0)
			victim = i;
	if (victim < 0) {
		/* the least recently used way of the set */
		victim = base;
		for (int i = base + 1; i < base + vw->ways; i++)
			if (vw->entries[i].used_ms < vw->entries[victim].used_ms)
				victim = i;
	}
	slot_clear(vw, victim);
	memcpy(vw->keys + (size_t)victim * CX_DEK_BYTES, dek, CX_DEK_BYTES);
	snprintf(vw->entries[victim].tenant, sizeof(vw->entries[victim].tenant), "%s", tenant);
	vw->entries[victim].version = version;
	vw->entries[victim].expires_ms = now + vw->ttl_ms;
	vw->entries[victim].used_ms = now;
}

void cx_vault_worker_forget(cx_vault_worker_t *vw, const char *tenant_id)
{
	if (vw == NULL)
		return;
	for (int i = 0; i < vw->nsets * vw->ways; i++)
		if (vw->entries[i].version && strcmp(vw->entries[i].tenant, tenant_id) == 0)
			slot_clear(vw, i);
}

const char *cx_dek_why_name(enum cx_dek_why w)
{
	switch (w) {
	case CX_DEK_OK: return "ok";
	case CX_DEK_MISSING: return "data_key_missing";
	case CX_DEK_UNKNOWN_KID: return "master_key_unknown";
	case CX_DEK_BAD: return "data_key_does_not_open";
	}
	return "unknown";
}

enum cx_dek_why cx_dek_get(cx_vault_worker_t *vw, const char *tenant, int version, const char *kid,
			   const char *wrapped, unsigned char dek[CX_DEK_BYTES])
{
	long long now = now_ms();
	int i = cache_find(vw, tenant, version, now), rc;
	mf_master_ring_t *ring;
	unsigned char *w;
	size_t wlen = 0;

	/* the row decides whether the key still exists: a shredded tenant's
	 * key may linger in this cache until it expires, but is never used */
	if (wrapped == NULL || wrapped[0] == '\0' || kid == NULL || kid[0] == '\0')
		return CX_DEK_MISSING;
	if (i >= 0) {
		atomic_fetch_add_explicit(&vw->n_hits, 1, memory_order_relaxed);
		vw->entries[i].used_ms = now;
		memcpy(dek, vw->keys + (size_t)i * CX_DEK_BYTES, CX_DEK_BYTES);
		return CX_DEK_OK;
	}
	atomic_fetch_add_explicit(&vw->n_misses, 1, memory_order_relaxed);
	w = cx_bytea_decode(wrapped, &wlen);
	if (w == NULL)
		return CX_DEK_BAD;
	ring = mf_master_get(vw->v->master);
	rc = cx_vault_dek_unwrap(ring, tenant, version, kid, w, wlen, dek);
	if (rc == -2) {
		/* wrapped by a key this instance does not know yet: a rotation
		 * may have added it to the key file */
		mf_master_ring_unref(ring);
		ring = mf_master_refresh(vw->v->master, kid, false);
		rc = cx_vault_dek_unwrap(ring, tenant, version, kid, w, wlen, dek);
	}
	mf_master_ring_unref(ring);
	free(w);
	if (rc == -2)
		return CX_DEK_UNKNOWN_KID;
	if (rc < 0)
		return CX_DEK_BAD;
	cx_dek_put(vw, tenant, version, dek);
	return CX_DEK_OK;
}

void cx_unreadable(mf_err_t *err, const char *tenant, const char *name, const char *reason)
{
	/* names and reasons only: never a byte of a box or key */
	mf_warn("vault", "a credential does not open", MF_S("tenant_id", tenant), MF_S("credential", name),
		MF_S("reason", reason));
	mf_err_set(err, 409, "credential_unreadable",
		   "credential \"%s\" cannot be decrypted (its stored form was altered or moved, or its key is gone); "
		   "store it again", name);
}

/* ---- secrets ---- */

void cx_secret_free(cx_secret_t *s)
{
	if (s == NULL)
		return;
	if (s->data)
		sodium_free(s->data);	/* wipes */
	sodium_memzero(s, sizeof(*s));
	free(s);
}

struct open_req {
	cx_vault_worker_t *vw;
	char tenant[37];
	char name[CX_NAME_MAX + 1];
	cx_secret_cb cb;
	void *arg;
};

static const char open_sql[] =
	"SELECT type, version, key_version, box, master_kid, wrapped FROM platform.vault_secret($1, $2::uuid, $3)";

static void open_fail(struct open_req *o, const mf_err_t *err)
{
	atomic_fetch_add_explicit(&o->vw->n_failed, 1, memory_order_relaxed);
	o->cb(NULL, err, o->arg);
	free(o);
}

static void opened(const PGresult *res, const mf_err_t *err, void *arg)
{
	struct open_req *o = arg;
	unsigned char dek[CX_DEK_BYTES], *box = NULL;
	cx_secret_t *s = NULL;
	mf_err_t e = { 0 };
	enum cx_dek_why why;
	size_t blen = 0, mlen = 0;
	int version, key_version;

	if (err) {
		/* the schema vanished under us: the tenant was just deleted */
		if (strcmp(err->sqlstate, "42P01") == 0 || strcmp(err->sqlstate, "3F000") == 0) {
			mf_err_set(&e, 404, "not_found", "no such credential");
			open_fail(o, &e);
		} else {
			open_fail(o, err);
		}
		return;
	}
	if (PQntuples(res) == 0) {
		mf_err_set(&e, 404, "not_found", "no such credential");
		open_fail(o, &e);
		return;
	}
	version = atoi(PQgetvalue(res, 0, 1));
	key_version = atoi(PQgetvalue(res, 0, 2));
	why = cx_dek_get(o->vw, o->tenant, key_version, PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5), dek);
	if (why != CX_DEK_OK) {
		cx_unreadable(&e, o->tenant, o->name, cx_dek_why_name(why));
		open_fail(o, &e);
		return;
	}
	box = cx_bytea_decode(PQgetvalue(res, 0, 3), &blen);
	s = calloc(1, sizeof(*s));
	if (box == NULL || s == NULL || blen < CX_SEAL_OVERHEAD ||
	    (s->data = sodium_malloc(blen - CX_SEAL_OVERHEAD + 1)) == NULL) {
		sodium_memzero(dek, sizeof(dek));
		free(box);
		free(s);
		if (box == NULL || blen < CX_SEAL_OVERHEAD)
			cx_unreadable(&e, o->tenant, o->name, "box_malformed");
		else
			mf_err_set(&e, 503, "over_capacity", "out of memory; retry");
		open_fail(o, &e);
		return;
	}
	if (cx_vault_unseal(dek, o->tenant, o->name, version, key_version, box, blen, s->data, &mlen) < 0) {
		sodium_memzero(dek, sizeof(dek));
		free(box);
		cx_secret_free(s);
		cx_unreadable(&e, o->tenant, o->name, "box_does_not_open");
		open_fail(o, &e);
		return;
	}
	sodium_memzero(dek, sizeof(dek));
	free(box);
	s->data[mlen] = '\0';
	s->len = mlen;
	s->version = version;
	snprintf(s->type, sizeof(s->type), "%s", PQgetvalue(res, 0, 0));
	atomic_fetch_add_explicit(&o->vw->n_opened, 1, memory_order_relaxed);
	o->cb(s, NULL, o->arg);
	free(o);
}

int cx_vault_open(cx_vault_worker_t *vw, const char *tenant_id, const char *schema, const char *name,
		  cx_secret_cb cb, void *arg)
{
	struct open_req *o;
	const char *p[3];

	if (vw == NULL || vw->pg == NULL || !cx_name_ok(name) || schema == NULL || schema[0] == '\0' ||
	    tenant_id == NULL || strlen(tenant_id) != 36)
		return -1;
	o = calloc(1, sizeof(*o));
	if (o == NULL)
		return -1;
	o->vw = vw;
	memcpy(o->tenant, tenant_id, 37);
	snprintf(o->name, sizeof(o->name), "%s", name);
	o->cb = cb;
	o->arg = arg;
	p[0] = schema;
	p[1] = o->tenant;
	p[2] = o->name;
	if (mf_pg_query(vw->pg, open_sql, 3, p, opened, o) < 0) {
		free(o);
		return -1;
	}
	return 0;
}
