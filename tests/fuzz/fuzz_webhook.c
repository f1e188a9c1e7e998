/*
 * fuzz_webhook.c - Standard Webhooks verification with fuzzed headers,
 * body and secret.  Input: "secret\nid\ntimestamp\nsignature\nbody" (an
 * empty secret line means the scheme's test secret; missing lines are
 * absent headers).  Never crashes, answers only with its documented codes,
 * and accepts a message only when the header really holds, as one of its
 * space-separated entries, the signature cx_webhook_sign() makes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/webhooks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEST_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define NOW 1614265330LL

static bool has_entry(const char *hdr, const char *sig)
{
	size_t n = strlen(sig);

	for (const char *p = hdr; (p = strstr(p, sig)) != NULL; p++)
		if ((p == hdr || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1), *field[4] = { NULL, NULL, NULL, NULL }, *p, *body;
	char sig[CX_WEBHOOK_SIG_SIZE];
	size_t blen;
	mf_err_t err;
	int rc;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	p = copy;
	for (int i = 0; i < 4 && p; i++) {
		char *nl = memchr(p, '\n', size - (size_t)(p - copy));

		field[i] = p;
		if (nl)
			*nl = '\0';
		p = nl ? nl + 1 : NULL;
	}
	body = p ? p : copy + size;
	blen = size - (size_t)(body - copy);
	if (field[0] && field[0][0] == '\0')
		field[0] = TEST_SECRET;
	mf_err_clear(&err);
	rc = cx_webhook_verify(field[0], field[1], field[2], field[3], body, blen, NOW, 0, &err);
	if (rc == 0) {
		long long ts = strtoll(field[2], NULL, 10);

		if (cx_webhook_sign(field[0], field[1], ts, body, blen, sig, sizeof(sig), NULL) != 0 ||
		    !has_entry(field[3], sig))
			abort();
	} else if (strcmp(err.code, "malformed") && strcmp(err.code, "bad_signature") &&
		   strcmp(err.code, "timestamp_out_of_range") && strcmp(err.code, "bad_secret")) {
		abort();
	}
	free(copy);
	return 0;
}
