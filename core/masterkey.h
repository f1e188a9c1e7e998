/*
 * masterkey.h - the master key ring: the keys that wrap every other stored
 * key (tenant data keys of the vault, the platform's JWT signing keys).
 *
 * master_key / MSPFLOW_MASTER_KEY hold a whitespace- or comma-separated
 * list of base64 keys (32 bytes each); master_key_file holds one per line
 * (mode 0600, opened with O_NOFOLLOW).  The FIRST key seals; every key
 * opens.  Each key has a kid: the first 8 bytes (hex) of BLAKE2b keyed
 * with it over a fixed label, so a stored blob can say which key wrapped
 * it without revealing anything about the key.
 *
 * Key bytes live in sodium_malloc'd memory (mlock'ed where the limit
 * allows, guard pages, excluded from core dumps, read-only once built) and
 * are wiped when the ring is freed; decode buffers are wiped too.
 *
 * mf_master_t is the process's holder of the current ring, shared by all
 * worker threads (a mutex guards the pointer; rings themselves are
 * immutable and reference counted).  When the keys come from a file, a
 * kid the ring does not know makes it re-read the file, at most once a
 * second, so `mspflow vault rotate-master` never needs a restart.
 */
#ifndef MF_MASTERKEY_H
#define MF_MASTERKEY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "core/err.h"

#define MF_MASTER_KEY_BYTES 32
#define MF_MASTER_KID_HEX 16		/* 8 bytes as hex */
#define MF_MASTER_MAX_KEYS 16
/* base64 text of one key, NUL included */
#define MF_MASTER_KEY_TEXT 45

typedef struct mf_master_ring mf_master_ring_t;
typedef struct mf_master mf_master_t;

/* ---- rings (immutable once built) ---- */

/* Parses a key list (base64 keys separated by whitespace or commas).  An
 * empty list, a token that is not 32 bytes of base64, more than
 * MF_MASTER_MAX_KEYS keys or a repeated key fail with err (400
 * invalid_config; the detail never quotes key text).  *out is a new ring
 * with one reference. */
int mf_master_ring_parse(const char *text, size_t len, mf_master_ring_t **out, mf_err_t *err)
	__attribute__((warn_unused_result));
/* The ring from cfg: master_key when set, else master_key_file. */
int mf_master_ring_load(const mf_config_t *cfg, mf_master_ring_t **out, mf_err_t *err)
	__attribute__((warn_unused_result));
mf_master_ring_t *mf_master_ring_ref(mf_master_ring_t *r);
/* Drops a reference; the last one wipes and frees.  Accepts NULL. */
void mf_master_ring_unref(mf_master_ring_t *r);
int mf_master_ring_count(const mf_master_ring_t *r);
/* Key i (0 = the sealing key), MF_MASTER_KEY_BYTES, borrowed from r. */
const unsigned char *mf_master_ring_key(const mf_master_ring_t *r, int i);
const char *mf_master_ring_kid(const mf_master_ring_t *r, int i);
/* Index of the key with this kid, or -1. */
int mf_master_ring_find(const mf_master_ring_t *r, const char *kid);

/* The kid of a key (MF_MASTER_KID_HEX chars + NUL). */
void mf_master_kid(const unsigned char key[MF_MASTER_KEY_BYTES], char kid[MF_MASTER_KID_HEX + 1]);
/* A new random key as base64 text (out at least MF_MASTER_KEY_TEXT). */
int mf_master_key_generate(char *out, size_t len) __attribute__((warn_unused_result));
/* Reads a key file as the server does (0600, O_NOFOLLOW); *text is
 * sodium_malloc'd, NUL-terminated, freed with sodium_free (which wipes). */
int mf_master_file_read(const char *path, char **text, size_t *len, mf_err_t *err)
	__attribute__((warn_unused_result));
/* Replaces path atomically (temporary file 0600 in the same folder,
 * fsync, rename, fsync of the folder) with lines, one key per line. */
int mf_master_file_write(const char *path, const char *const *lines, int n, mf_err_t *err)
	__attribute__((warn_unused_result));

/* ---- the process holder ---- */

/* Loads the ring from cfg (cfg borrowed; must outlive the holder).  With
 * no master key configured, returns a holder whose ring is NULL. */
mf_master_t *mf_master_new(const mf_config_t *cfg, mf_err_t *err);
void mf_master_free(mf_master_t *m);	/* accepts NULL */
/* The current ring (a new reference, NULL when none): any thread. */
mf_master_ring_t *mf_master_get(mf_master_t *m);
/* Like mf_master_get, but first, when the keys come from a file and the
 * current ring lacks kid (kid NULL: "something did not open"), re-reads
 * the file unless it was read less than a second ago (force: always).
 * A file that no longer parses keeps the current ring (and is logged). */
mf_master_ring_t *mf_master_refresh(mf_master_t *m, const char *kid, bool force);
bool mf_master_from_file(const mf_master_t *m);

#endif
