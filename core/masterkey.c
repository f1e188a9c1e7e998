/*
 * masterkey.c - the master key ring and its process holder (see
 * masterkey.h).  Used by tenants/keys.c (JWT signing keys), the vault
 * (connectors/vault.c) and the `mspflow vault rotate-master` command.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/log.h"
#include "core/masterkey.h"

#define KID_LABEL "mspflow master key id v1"
#define FILE_MAX 8192			/* a key file is a few lines */
#define TOKEN_MAX 64

struct mf_master_ring {
	atomic_int refs;
	int n;
	unsigned char *keys;		/* sodium_malloc'd, n * 32, read-only */
	char kid[MF_MASTER_MAX_KEYS][MF_MASTER_KID_HEX + 1];
};

struct mf_master {
	pthread_mutex_t mu;		/* guards ring and last_read_ms */
	mf_master_ring_t *ring;
	bool from_file;
	char *path;
	long long last_read_ms;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mf_master_kid(const unsigned char key[MF_MASTER_KEY_BYTES], char kid[MF_MASTER_KID_HEX + 1])
{
	unsigned char h[crypto_generichash_BYTES_MIN];

	crypto_generichash(h, sizeof(h), (const unsigned char *)KID_LABEL, sizeof(KID_LABEL) - 1, key,
			   MF_MASTER_KEY_BYTES);
	sodium_bin2hex(kid, MF_MASTER_KID_HEX + 1, h, MF_MASTER_KID_HEX / 2);
	sodium_memzero(h, sizeof(h));
}

static bool is_sep(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == '\v' || c == '\f';
}

/* Calls fn for each token; stops at the first non-zero return. */
static int each_token(const char *text, size_t len, int (*fn)(const char *t, size_t n, int i, void *arg), void *arg)
{
	size_t i = 0;
	int idx = 0, rc;

	while (i < len) {
		size_t start;

		while (i < len && is_sep(text[i]))
			i++;
		if (i >= len)
			break;
		start = i;
		while (i < len && !is_sep(text[i]))
			i++;
		rc = fn(text + start, i - start, idx++, arg);
		if (rc)
			return rc;
	}
	return 0;
}

struct parse {
	int n;
	mf_master_ring_t *r;
	mf_err_t *err;
};

static int count_token(const char *t, size_t n, int i, void *arg)
{
	struct parse *p = arg;

	if (i >= MF_MASTER_MAX_KEYS) {
		mf_err_set(p->err, 400, "invalid_config", "the master key list holds more than %d keys",
			   MF_MASTER_MAX_KEYS);
		return -1;
	}
	if (n > TOKEN_MAX) {
		mf_err_set(p->err, 400, "invalid_config", "master key %d of the list is not 32 bytes of base64", i + 1);
		return -1;
	}
	p->n++;
	return 0;
}

static int decode_token(const char *t, size_t n, int i, void *arg)
{
	struct parse *p = arg;
	unsigned char *k = p->r->keys + (size_t)i * MF_MASTER_KEY_BYTES;
	size_t got = 0;
	const char *end = NULL;

	/* straight into the locked region: no copy of the key to wipe */
	if (sodium_base642bin(k, MF_MASTER_KEY_BYTES, t, n, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    got != MF_MASTER_KEY_BYTES || end != t + n) {
		mf_err_set(p->err, 400, "invalid_config", "master key %d of the list is not 32 bytes of base64", i + 1);
		return -1;
	}
	mf_master_kid(k, p->r->kid[i]);
	for (int j = 0; j < i; j++)
		if (strcmp(p->r->kid[j], p->r->kid[i]) == 0) {
			mf_err_set(p->err, 400, "invalid_config", "master key %d of the list repeats key %d", i + 1, j + 1);
			return -1;
		}
	return 0;
}

int mf_master_ring_parse(const char *text, size_t len, mf_master_ring_t **out, mf_err_t *err)
{
	struct parse p = { 0, NULL, err };

	*out = NULL;
	if (each_token(text, len, count_token, &p) != 0)
		return -1;
	if (p.n == 0)
		return mf_err_set(err, 400, "invalid_config", "the master key list is empty");
	p.r = calloc(1, sizeof(*p.r));
	if (p.r == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	p.r->keys = sodium_malloc((size_t)p.n * MF_MASTER_KEY_BYTES);
	if (p.r->keys == NULL) {
		free(p.r);
		return mf_err_set(err, 500, "out_of_memory", "out of memory (locked memory)");
	}
	p.r->n = p.n;
	atomic_init(&p.r->refs, 1);
	if (each_token(text, len, decode_token, &p) != 0) {
		sodium_free(p.r->keys);	/* wipes */
		free(p.r);
		return -1;
	}
	sodium_mprotect_readonly(p.r->keys);
	*out = p.r;
	return 0;
}

int mf_master_file_read(const char *path, char **text, size_t *len, mf_err_t *err)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd;

	*text = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return mf_err_set(err, 400, "invalid_config", "cannot open master_key_file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
		close(fd);
		return mf_err_set(err, 400, "invalid_config",
				  "master_key_file %s must be a regular file not readable by group or others (chmod 600)",
				  path);
	}
	buf = sodium_malloc(FILE_MAX + 1);
	if (buf == NULL) {
		close(fd);
		return mf_err_set(err, 500, "out_of_memory", "out of memory (locked memory)");
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, FILE_MAX - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			sodium_free(buf);
			return mf_err_set(err, 400, "invalid_config", "cannot read master_key_file %s", path);
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == FILE_MAX) {
			close(fd);
			sodium_free(buf);
			return mf_err_set(err, 400, "invalid_config", "master_key_file %s is too large", path);
		}
	}
	close(fd);
	buf[got] = '\0';
	*text = buf;
	*len = got;
	return 0;
}

int mf_master_ring_load(const mf_config_t *cfg, mf_master_ring_t **out, mf_err_t *err)
{
	char *text;
	size_t len;
	int rc;

	*out = NULL;
	if (cfg->master_key[0])
		return mf_master_ring_parse(cfg->master_key, strlen(cfg->master_key), out, err);
	if (!cfg->master_key_file[0])
		return mf_err_set(err, 400, "invalid_config",
				  "no master key: set master_key_file or MSPFLOW_MASTER_KEY (mspflow keygen makes one)");
	if (mf_master_file_read(cfg->master_key_file, &text, &len, err) < 0)
		return -1;
	rc = mf_master_ring_parse(text, len, out, err);
	if (rc < 0 && err && strstr(err->detail, "empty"))
		mf_err_set(err, 400, "invalid_config", "master_key_file %s is empty", cfg->master_key_file);
	sodium_free(text);
	return rc;
}

mf_master_ring_t *mf_master_ring_ref(mf_master_ring_t *r)
{
	if (r)
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	return r;
}

void mf_master_ring_unref(mf_master_ring_t *r)
{
	if (r == NULL || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
		return;
	sodium_free(r->keys);		/* wipes before unmapping */
	free(r);
}

int mf_master_ring_count(const mf_master_ring_t *r)
{
	return r ? r->n : 0;
}

const unsigned char *mf_master_ring_key(const mf_master_ring_t *r, int i)
{
	return i >= 0 && i < r->n ? r->keys + (size_t)i * MF_MASTER_KEY_BYTES : NULL;
}

const char *mf_master_ring_kid(const mf_master_ring_t *r, int i)
{
	return i >= 0 && i < r->n ? r->kid[i] : NULL;
}

int mf_master_ring_find(const mf_master_ring_t *r, const char *kid)
{
	if (r == NULL || kid == NULL)
		return -1;
	for (int i = 0; i < r->n; i++)
		if (strcmp(r->kid[i], kid) == 0)
			return i;
	return -1;
}

int mf_master_key_generate(char *out, size_t len)
{
	unsigned char key[MF_MASTER_KEY_BYTES];

	if (len < sodium_base64_ENCODED_LEN(MF_MASTER_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL))
		return -1;
	randombytes_buf(key, sizeof(key));
	sodium_bin2base64(out, len, key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	return 0;
}

int mf_master_file_write(const char *path, const char *const *lines, int n, mf_err_t *err)
{
	size_t total = 1, off = 0;
	char *tmp = NULL, *buf, *dcopy = NULL;
	int fd = -1, rc = -1;

	for (int i = 0; i < n; i++)
		total += strlen(lines[i]) + 1;
	buf = sodium_malloc(total);
	if (buf == NULL || asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
		tmp = NULL;
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		size_t l = strlen(lines[i]);

		memcpy(buf + off, lines[i], l);
		off += l;
		buf[off++] = '\n';
	}
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		mf_err_set(err, 500, "io_error", "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	for (size_t w = 0; w < off;) {
		ssize_t k = write(fd, buf + w, off - w);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			mf_err_set(err, 500, "io_error", "cannot write %s: %s", tmp, strerror(errno));
			goto out;
		}
		w += (size_t)k;
	}
	if (fchmod(fd, 0600) < 0 || fsync(fd) < 0) {
		mf_err_set(err, 500, "io_error", "cannot sync %s: %s", tmp, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) < 0) {
		mf_err_set(err, 500, "io_error", "cannot replace %s: %s", path, strerror(errno));
		goto out;
	}
	/* the rename itself must survive a crash */
	dcopy = strdup(path);
	if (dcopy) {
		int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	rc = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	if (buf)
		sodium_free(buf);
	free(tmp);
	free(dcopy);
	return rc;
}

/* ---- holder ---- */

mf_master_t *mf_master_new(const mf_config_t *cfg, mf_err_t *err)
{
	mf_master_t *m = calloc(1, sizeof(*m));

	if (m == NULL || sodium_init() < 0) {
		free(m);
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	pthread_mutex_init(&m->mu, NULL);
	if (!cfg->master_key[0] && !cfg->master_key_file[0])
		return m;
	m->from_file = cfg->master_key[0] == '\0';
	if (m->from_file && (m->path = strdup(cfg->master_key_file)) == NULL) {
		mf_master_free(m);
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	if (mf_master_ring_load(cfg, &m->ring, err) < 0) {
		mf_master_free(m);
		return NULL;
	}
	m->last_read_ms = now_ms();
	return m;
}

void mf_master_free(mf_master_t *m)
{
	if (m == NULL)
		return;
	mf_master_ring_unref(m->ring);
	pthread_mutex_destroy(&m->mu);
	free(m->path);
	free(m);
}

bool mf_master_from_file(const mf_master_t *m)
{
	return m && m->from_file;
}

mf_master_ring_t *mf_master_get(mf_master_t *m)
{
	mf_master_ring_t *r;

	if (m == NULL)
		return NULL;
	pthread_mutex_lock(&m->mu);
	r = mf_master_ring_ref(m->ring);
	pthread_mutex_unlock(&m->mu);
	return r;
}

mf_master_ring_t *mf_master_refresh(mf_master_t *m, const char *kid, bool force)
{
	mf_master_ring_t *r, *fresh = NULL;
	long long now = now_ms();
	mf_err_t err = { 0 };
	char *text;
	size_t len;

	if (m == NULL)
		return NULL;
	pthread_mutex_lock(&m->mu);
	if (!m->from_file || (kid && mf_master_ring_find(m->ring, kid) >= 0) ||
	    (!force && now - m->last_read_ms < 1000))
		goto out;
	m->last_read_ms = now;
	/* a small local file, at most once a second: reading it here costs
	 * less than handing it to another thread would */
	if (mf_master_file_read(m->path, &text, &len, &err) == 0) {
		int rc = mf_master_ring_parse(text, len, &fresh, &err);

		sodium_free(text);
		if (rc < 0)
			fresh = NULL;
	}
	if (fresh == NULL) {
		mf_warn("masterkey", "cannot re-read the master key file; keeping the keys in memory",
			MF_S("error", err.detail));
		goto out;
	}
	mf_info("masterkey", "master key file re-read", MF_I("keys", fresh->n), MF_S("sealing_kid", fresh->kid[0]),
		MF_S("wanted_kid", kid), MF_B("found", kid == NULL || mf_master_ring_find(fresh, kid) >= 0));
	mf_master_ring_unref(m->ring);
	m->ring = fresh;
out:
	r = mf_master_ring_ref(m->ring);
	pthread_mutex_unlock(&m->mu);
	return r;
}
