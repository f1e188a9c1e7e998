/*
 * publish.h - private to catalog/: what the publish routes (api.c) and the
 * seed of the shipped templates (seed.c) share, so that a seeded signing
 * key and template version are stored, checked and audited exactly as the
 * routes store them: the SQL, its parameters, the signature check and the
 * audit details.
 */
#ifndef CAT_PUBLISH_H
#define CAT_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define CAT_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* A signing key as the routes answer it: id, public_key (base64), state,
 * created_at, revoked_at ('' for none). */
#define CAT_KEY_COLS "id::text, encode(public_key, 'base64'), state, " CAT_TS("created_at") ", " \
	"coalesce(" CAT_TS("revoked_at") ", '')"

/* $1 key id, $2 partner id, $3 the public key in base64; RETURNING
 * CAT_KEY_COLS.  Audited as signing_key.create (cat_key_audit_detail). */
extern const char cat_key_insert_sql[];
/* $1 partner id, $2 key id: the key's public half (base64) and state. */
extern const char cat_key_lookup_sql[];
/* The 13 parameters of cat_publish_args_t; RETURNING published_at and the
 * partner's slug, no row when the version exists.  Audited as
 * template.publish, target "<slug>/<name>" (cat_publish_audit_detail). */
extern const char cat_publish_sql[];

/* cat_publish_sql's parameters for a checked document (borrowed; it must
 * outlive the arguments, which point into it).  The struct must not move
 * between init and use: p points into it. */
typedef struct cat_publish_args {
	const char *p[13];
	char maj[24], min[24], pat[24];
	char *tags, *doc;	/* owned */
} cat_publish_args_t;
/* Returns 0, or -1 (out of memory, or a version that does not parse: the
 * document was not validated). */
int cat_publish_args_init(cat_publish_args_t *a, const char *partner_id, const json_t *body)
	__attribute__((warn_unused_result));
void cat_publish_args_free(cat_publish_args_t *a);	/* accepts a zeroed struct */

/* True when sig (a JSON string, borrowed) is base64 of a 64-byte Ed25519
 * signature of msg[0..len) by the key pk_b64 (base64 as PostgreSQL's
 * encode() writes it: line breaks allowed). */
bool cat_signature_ok(const char *pk_b64, const json_t *sig, const char *msg, size_t len);

/* The audit details (new references): {"public_key"} of a key created,
 * {"version", "key_id"} of a version published. */
json_t *cat_key_audit_detail(const char *public_key_b64);
json_t *cat_publish_audit_detail(const json_t *body);

#endif
