/*
 * jwt_interop.c - the C side of test_jwt_interop.py: signs tokens with
 * gw_jwt_sign for Python to verify, and verifies tokens Python made.
 *
 *   jwt_interop sign N            -> {"public_pem": ..., "tokens": [N tokens]}
 *   jwt_interop verify PEMFILE NOW < token
 *                                 -> {"sub": ..., ...} and exit 0, or
 *                                    {"error": reason} and exit 1
 * Issuer "https://auth.interop.test", audience "interop-api", kid "c1"
 * for signing and "py1" for verifying, leeway 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/jwt.h"

#define ISS "https://auth.interop.test"
#define AUD "interop-api"

static int do_sign(int n)
{
	char *pub, *priv;
	mf_err_t err;
	gw_keyring_t *r = gw_keyring_new(ISS, AUD, 0);
	json_t *out = json_object(), *toks = json_array();
	gw_claims_t c = { 0 };

	if (gw_jwt_generate_es256(&pub, &priv, &err) < 0 || gw_keyring_add_platform(r, "c1", pub, priv, &err) < 0 ||
	    gw_keyring_set_signer(r, "c1", &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.detail);
		return 2;
	}
	snprintf(c.tenant_id, sizeof(c.tenant_id), "0E8F4A52-1B2C-4D3E-9F00-AABBCCDDEEFF");
	c.nroles = 2;
	snprintf(c.roles[0], sizeof(c.roles[0]), "tenant_admin");
	snprintf(c.roles[1], sizeof(c.roles[1]), "viewer");
	c.iat = c.nbf = 1700000000;
	c.exp = 1700000600;
	for (int i = 0; i < n; i++) {
		char *t;

		snprintf(c.sub, sizeof(c.sub), "user-%d", i);
		t = gw_jwt_sign(r, &c, &err);
		if (t == NULL) {
			fprintf(stderr, "sign: %s\n", err.detail);
			return 2;
		}
		json_array_append_new(toks, json_string(t));
		free(t);
	}
	json_object_set_new(out, "public_pem", json_string(pub));
	json_object_set_new(out, "tokens", toks);
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(out);
	free(pub);
	free(priv);
	gw_keyring_free(r);
	return 0;
}

static int do_verify(const char *pemfile, long long now)
{
	static char pem[16384], tok[GW_JWT_MAX_TOKEN + 2];
	FILE *f = fopen(pemfile, "r");
	size_t n, tl;
	mf_err_t err;
	gw_keyring_t *r = gw_keyring_new(ISS, AUD, 0);
	gw_claims_t c;
	const char *reason;
	json_t *out, *roles;
	int rc;

	if (f == NULL)
		return 2;
	n = fread(pem, 1, sizeof(pem) - 1, f);
	fclose(f);
	pem[n] = '\0';
	if (gw_keyring_add_platform(r, "py1", pem, NULL, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.detail);
		return 2;
	}
	tl = fread(tok, 1, sizeof(tok), stdin);
	while (tl > 0 && tok[tl - 1] == '\n')
		tl--;
	rc = gw_jwt_verify(r, tok, tl, now, &c, &reason);
	if (rc < 0) {
		out = json_pack("{s:s}", "error", reason);
	} else {
		roles = json_array();
		for (int i = 0; i < c.nroles; i++)
			json_array_append_new(roles, json_string(c.roles[i]));
		out = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:i}", "sub", c.sub, "tenant_id", c.tenant_id,
				"iss", c.iss, "jti", c.jti, "roles", roles, "iat", (json_int_t)c.iat,
				"nbf", (json_int_t)c.nbf, "exp", (json_int_t)c.exp, "issuer", c.issuer);
	}
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(out);
	gw_keyring_free(r);
	return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "sign") == 0)
		return do_sign(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "verify") == 0)
		return do_verify(argv[2], atoll(argv[3]));
	fprintf(stderr, "usage: %s sign N | verify PEMFILE NOW < token\n", argv[0]);
	return 2;
}
