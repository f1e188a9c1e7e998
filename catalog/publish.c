/*
 * publish.c - the storage side of a signing key and of a template version
 * (see publish.h), shared by the routes and the seed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "catalog/publish.h"
#include "catalog/template.h"
#include "tenants/tn.h"

const char cat_key_insert_sql[] =
	"INSERT INTO platform.partner_signing_keys (id, partner_id, public_key) VALUES ($1::uuid, $2::uuid, "
	"decode($3, 'base64')) RETURNING " CAT_KEY_COLS;

const char cat_key_lookup_sql[] =
	"SELECT encode(public_key, 'base64'), state FROM platform.partner_signing_keys "
	"WHERE partner_id = $1::uuid AND id = $2::uuid";

const char cat_publish_sql[] =
	"INSERT INTO platform.templates (partner_id, name, version, v_major, v_minor, v_patch, is_release, "
	"v_pre, description, tags, document, key_id, signature) VALUES ($1::uuid, $2, $3, $4::bigint, "
	"$5::bigint, $6::bigint, $7::boolean, $8, $9, $10::text[], $11::jsonb, $12::uuid, $13) "
	"ON CONFLICT (partner_id, name, version) DO NOTHING RETURNING " CAT_TS("published_at") ", "
	"(SELECT slug FROM platform.tenants WHERE id = $1::uuid)";

int cat_publish_args_init(cat_publish_args_t *a, const char *partner_id, const json_t *b)
{
	const char *version = json_string_value(json_object_get(b, "version"));
	const json_t *d = json_object_get(b, "description"), *tags = json_object_get(b, "tags");
	cat_semver_t sv;

	memset(a, 0, sizeof(*a));
	if (version == NULL || !cat_semver_parse(version, &sv))
		return -1;
	if (tags)
		a->tags = tn_pg_array_literal(tags);
	else {
		json_t *none = json_array();

		a->tags = none ? tn_pg_array_literal(none) : NULL;
		json_decref(none);
	}
	a->doc = json_dumps(b, JSON_COMPACT);
	if (a->tags == NULL || a->doc == NULL) {
		cat_publish_args_free(a);
		return -1;
	}
	snprintf(a->maj, sizeof(a->maj), "%lld", sv.major);
	snprintf(a->min, sizeof(a->min), "%lld", sv.minor);
	snprintf(a->pat, sizeof(a->pat), "%lld", sv.patch);
	a->p[0] = partner_id;
	a->p[1] = json_string_value(json_object_get(b, "name"));
	a->p[2] = version;
	a->p[3] = a->maj;
	a->p[4] = a->min;
	a->p[5] = a->pat;
	a->p[6] = sv.pre[0] ? "false" : "true";
	a->p[7] = sv.pre;
	a->p[8] = d ? json_string_value(d) : "";
	a->p[9] = a->tags;
	a->p[10] = a->doc;
	a->p[11] = json_string_value(json_object_get(b, "key_id"));
	a->p[12] = json_string_value(json_object_get(b, "signature"));
	return 0;
}

void cat_publish_args_free(cat_publish_args_t *a)
{
	free(a->tags);
	free(a->doc);
	a->tags = a->doc = NULL;
}

bool cat_signature_ok(const char *pk_b64, const json_t *sig, const char *msg, size_t len)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES + 1], sb[crypto_sign_BYTES + 1];
	size_t pn = 0, sn = 0;

	return json_is_string(sig) &&
	       sodium_base642bin(pk, sizeof(pk), pk_b64, strlen(pk_b64), "\n", &pn, NULL,
				 sodium_base64_VARIANT_ORIGINAL) == 0 && pn == crypto_sign_PUBLICKEYBYTES &&
	       sodium_base642bin(sb, sizeof(sb), json_string_value(sig), json_string_length(sig), NULL, &sn, NULL,
				 sodium_base64_VARIANT_ORIGINAL) == 0 && sn == crypto_sign_BYTES &&
	       crypto_sign_verify_detached(sb, (const unsigned char *)msg, len, pk) == 0;
}

json_t *cat_key_audit_detail(const char *public_key_b64)
{
	return json_pack("{s:s}", "public_key", public_key_b64);
}

json_t *cat_publish_audit_detail(const json_t *b)
{
	return json_pack("{s:O,s:O}", "version", json_object_get(b, "version"), "key_id", json_object_get(b, "key_id"));
}
