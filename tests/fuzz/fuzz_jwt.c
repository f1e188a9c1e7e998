/*
 * fuzz_jwt.c - gw_jwt_verify on arbitrary bytes must never crash, and what
 * it accepts must carry sane, NUL-terminated claims.
 *
 * The ring has a platform ES256 key (kid "fz1") and an external HS256
 * issuer (kid "h1"), both fixed test keys, so runs are deterministic and the
 * seed tokens in tests/fuzz/corpus/fuzz_jwt/ (signed with these keys for
 * issuer/audience below, valid at FUZZ_NOW) reach the signature code.
 * Accepted tokens also go through a small token cache.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW 1700000000LL

/* test keys only: nothing anywhere trusts them */
static const char fz_priv[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgF8afIMdhrPDZbaB9\n"
	"vztaLnwBtoxGb5Zyq1RAUFQw/O6hRANCAAQFhf1CCeoC7BuH6X9GFmjTMmFKGABo\n"
	"LEdeEhZD/y06bwQwV39t771SoiNrhOctgxz8jp+gAR8KiLi6C+ZqqmCW\n"
	"-----END PRIVATE KEY-----\n";
static const char fz_pub[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBYX9QgnqAuwbh+l/RhZo0zJhShgA\n"
	"aCxHXhIWQ/8tOm8EMFd/be+9UqIja4TnLYMc/I6foAEfCoi4ugvmaqpglg==\n"
	"-----END PUBLIC KEY-----\n";
static const char fz_issuers[] =
	"[{\"issuer\":\"https://idp.fuzz.test\",\"keys\":[{\"kid\":\"h1\",\"alg\":\"HS256\","
	"\"secret\":\"S4fcMIp8wJMD5XizkAf2Guhso2z8UtfOPuNQsQTLuqs=\"}]}]";

static gw_keyring_t *ring;
static gw_tokcache_t *cache;

static void setup(void)
{
	mf_err_t err;
	json_t *doc = json_loads(fz_issuers, 0, NULL);
	gw_claims_t c = { 0 };
	const char *reason;
	char *tok;

	ring = gw_keyring_new("https://auth.fuzz.test", "fuzz-api", 30);
	cache = gw_tokcache_new(64, 30);
	if (ring == NULL || cache == NULL || doc == NULL ||
	    gw_keyring_add_platform(ring, "fz1", fz_pub, fz_priv, &err) < 0 ||
	    gw_keyring_set_signer(ring, "fz1", &err) < 0 || gw_keyring_add_issuers_json(ring, doc, &err) < 0)
		abort();
	json_decref(doc);
	/* the keys work: a token signed here verifies */
	snprintf(c.sub, sizeof(c.sub), "fuzz");
	snprintf(c.tenant_id, sizeof(c.tenant_id), "00000000-0000-4000-8000-000000000000");
	c.iat = c.nbf = FUZZ_NOW;
	c.exp = FUZZ_NOW + 60;
	tok = gw_jwt_sign(ring, &c, &err);
	if (tok == NULL || gw_jwt_verify(ring, tok, strlen(tok), FUZZ_NOW, &c, &reason) != 0)
		abort();
	free(tok);
}

static int terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gw_claims_t c;
	const char *reason = NULL;
	const gw_claims_t *g;

	if (ring == NULL)
		setup();
	if (gw_jwt_verify(ring, (const char *)data, size, FUZZ_NOW, &c, &reason) == 0) {
		if (reason != NULL || !terminated(c.sub, sizeof(c.sub)) || c.sub[0] == '\0' ||
		    strlen(c.tenant_id) != 36 || !terminated(c.iss, sizeof(c.iss)) || !terminated(c.jti, sizeof(c.jti)) ||
		    c.nroles < 0 || c.nroles > GW_JWT_MAX_ROLES || c.exp <= c.iat || c.issuer < 0 || c.issuer > 1)
			abort();
		gw_tokcache_put(cache, (const char *)data, size, &c);
		g = gw_tokcache_get(cache, (const char *)data, size, FUZZ_NOW);
		if (g == NULL || memcmp(g, &c, sizeof(c)) != 0)
			abort();
	} else if (reason == NULL || strlen(reason) > 32) {
		abort();
	}
	return 0;
}
