/*
 * webhooks.h - Standard Webhooks symmetric signatures (HMAC-SHA256, "v1"):
 * signing the webhooks mspflow sends and verifying the ones it receives.
 *
 * The scheme (standardwebhooks.com): a message carries the headers
 * webhook-id, webhook-timestamp (unix seconds) and webhook-signature, a
 * space-separated list of "<version>,<base64>" entries.  A "v1" entry is
 * base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where key is the
 * base64-decoded part of a "whsec_<base64>" secret.  Several entries let a
 * sender sign with an old and a new secret while a secret is rotated;
 * entries of other versions ("v1a" asymmetric, ...) are skipped.
 *
 * Secrets: 24 to 64 key bytes, as the scheme requires; the "whsec_" prefix
 * is optional on input (the scheme's reference libraries accept the bare
 * base64 too) and always written by cx_webhook_secret_new().  Secrets are
 * never copied into error details.  Nothing here allocates; all functions
 * are thread-safe.
 *
 * Ownership: every pointer is borrowed for the duration of the call; out
 * buffers belong to the caller.
 */
#ifndef CX_WEBHOOKS_H
#define CX_WEBHOOKS_H

#include <stddef.h>

#include "core/err.h"

#define CX_WEBHOOK_SECRET_PREFIX "whsec_"
#define CX_WEBHOOK_KEY_MIN 24			/* key bytes, per the scheme */
#define CX_WEBHOOK_KEY_MAX 64
#define CX_WEBHOOK_KEY_NEW 32			/* what cx_webhook_secret_new() draws */
/* "whsec_" + base64 of 32 bytes (44) + NUL */
#define CX_WEBHOOK_SECRET_SIZE 51
/* "v1," + base64 of a 32-byte MAC (44) + NUL */
#define CX_WEBHOOK_SIG_SIZE 48
#define CX_WEBHOOK_TOLERANCE_DEFAULT 300	/* seconds, either way */
/* Limits on received headers: far above anything a sender needs (an id is
 * ~30 bytes, a signature entry 47), low enough to bound the work. */
#define CX_WEBHOOK_ID_MAX 256
#define CX_WEBHOOK_SIG_HEADER_MAX 4096

/* Writes a new secret "whsec_<base64 of 32 random bytes>" into out (at
 * least CX_WEBHOOK_SECRET_SIZE bytes).  Returns 0, or -1 if out is too
 * small. */
int cx_webhook_secret_new(char *out, size_t len) __attribute__((warn_unused_result));

/*
 * Signs body[0..len) as message msg_id sent at unix time ts, writing
 * "v1,<base64>" into out (at least CX_WEBHOOK_SIG_SIZE bytes).  msg_id must
 * be 1..CX_WEBHOOK_ID_MAX printable ASCII characters without '.' or space
 * (a '.' would make "{id}.{ts}" ambiguous); ts must be >= 0.
 * Returns 0, or -1 with err: 500 "bad_secret" (not a 24..64-byte base64
 * key), 400 "malformed" (msg_id or ts), 500 "buffer_too_small".
 */
int cx_webhook_sign(const char *secret, const char *msg_id, long long ts, const void *body, size_t len,
		    char *out, size_t outlen, mf_err_t *err) __attribute__((warn_unused_result));

/*
 * Verifies a received message: msg_id, ts_header and sig_header are the
 * values of webhook-id, webhook-timestamp and webhook-signature (NULL when
 * absent); body[0..len) is the raw body as received, before any parsing.
 * now is the current unix time; tolerance_s <= 0 means
 * CX_WEBHOOK_TOLERANCE_DEFAULT.  The checks run in this order:
 *   500 "bad_secret"             the secret itself is unusable (the
 *                                receiver's configuration, not the sender)
 *   400 "malformed"              a header absent, empty or over its limit;
 *                                an id as cx_webhook_sign() requires; a
 *                                timestamp that is not plain decimal digits
 *                                (no sign, no leading zero, at most 15)
 *   401 "timestamp_out_of_range" |now - timestamp| > tolerance (replays,
 *                                and clocks too far apart)
 *   401 "bad_signature"          no "v1" entry equals the expected MAC
 *                                (compared in constant time; other entries
 *                                and junk tokens are skipped)
 * Returns 0 when one v1 entry matches, else -1 with err (may be NULL).
 */
int cx_webhook_verify(const char *secret, const char *msg_id, const char *ts_header, const char *sig_header,
		      const void *body, size_t len, long long now, int tolerance_s, mf_err_t *err)
	__attribute__((warn_unused_result));

#endif
