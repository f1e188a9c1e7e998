/*
 * catalog.h - the partner template catalog (CONTRACT 8, docs/templates.md):
 * partners' Ed25519 signing keys, signed template versions, and the
 * catalog that msps, partners and the platform search.  Its routes go
 * through the access guard of tenants/ (permissions templates and
 * catalog); its tables are platform.partner_signing_keys and platform.templates.
 */
#ifndef CAT_CATALOG_H
#define CAT_CATALOG_H

#include <stddef.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "core/err.h"
#include "gateway/gateway.h"

struct tn;

/* Adds the catalog's routes; tn is borrowed and must outlive the router. */
int cat_routes_add(struct tn *tn, gw_router_t *api) __attribute__((warn_unused_result));

/* ---- the templates shipped with mspflow (seed.c, docs/templates.md) ---- */

/* A template file: the path its messages name, and its text. */
typedef struct cat_seed_file {
	const char *path;
	const char *text;
} cat_seed_file_t;
typedef struct cat_seed_files {
	const cat_seed_file_t *items;
	int count;
} cat_seed_files_t;
/* Every catalog/templates/<name>.json, compiled in by catalog/gen_templates.py so
 * that an installed binary needs no data files. */
extern const cat_seed_files_t cat_seed_templates;

/* The partner the shipped templates are published under. */
#define CAT_SEED_PARTNER_SLUG "demo-partner"
#define CAT_SEED_PARTNER_NAME "Demo Delivery Partners"

typedef struct cat_seed cat_seed_t;

/* Reads the templates to seed: DIR's *.json files in name order, or the
 * compiled-in ones when dir is NULL, and checks each one as it will be
 * published: cat_template_validate (the workflow included) with a
 * placeholder key and signature, integers only; a file must not carry
 * key_id or signature (the seed signs), and no two files may share a name
 * and version.  Returns 0 with *out (free with cat_seed_free); -1 when a
 * file fails, with *problems a new array of {"file", "path", "message"}
 * listing every problem found; -2 when a file cannot be read (err), or
 * out of memory. */
int cat_seed_load(const char *dir, cat_seed_t **out, json_t **problems, mf_err_t *err)
	__attribute__((warn_unused_result));
void cat_seed_free(cat_seed_t *s);		/* accepts NULL */
size_t cat_seed_count(const cat_seed_t *s);
/* The i-th template (borrowed, without key_id and signature) and the file it came from. */
const json_t *cat_seed_doc(const cat_seed_t *s, size_t i);
const char *cat_seed_path(const cat_seed_t *s, size_t i);

/* Blocking, for commands and start-up only (never in an event loop):
 * in one transaction on conn, makes sure the partner CAT_SEED_PARTNER_SLUG
 * exists (created as POST /v1/tenants creates it, under the platform
 * tenant) and publishes every template version of s it has not published
 * yet, as POST .../templates stores and audits it, signed with a new
 * Ed25519 key registered for the partner in the same transaction (made
 * only when something is to be published; its private half is wiped
 * before this returns and never leaves the process).  *summary (a new
 * array, set on success) holds one {"template", "version", "state":
 * "published" | "already_published", "key_id"?, "note"?} per template.
 * Returns 0, or -1 with err and nothing stored. */
int cat_seed_publish(PGconn *conn, const cat_seed_t *s, json_t **summary, mf_err_t *err)
	__attribute__((warn_unused_result));

#endif
