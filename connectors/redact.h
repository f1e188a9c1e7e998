/*
 * redact.h - scrubbing connector call summaries before they are kept.
 *
 * The run timeline keeps a summary of each connector call's request and
 * response.  Credentials and configured sensitive fields must never reach
 * it, so every summary passes through one of these:
 *   - cx_redact_header()  decides which header values to drop;
 *   - cx_redact_json()    copies a JSON body with sensitive members'
 *                         values replaced and known secret values scrubbed
 *                         from every string;
 *   - cx_redact_text()    copies any other body, bounded, with the known
 *                         secret values (and their base64 forms) replaced.
 *
 * Names are compared "normalised": case-insensitively and ignoring '-'
 * and '_', so "Client-Secret", "client_secret" and "clientSecret" are one
 * name.  Erring towards hiding is deliberate: a redacted harmless value
 * costs a little debugging, a kept secret is a leak.
 *
 * Secret values shorter than CX_REDACT_SECRET_MIN bytes are ignored: a
 * one-to-three byte string is no credential, and replacing it would shred
 * ordinary text.  The replacement is the literal CX_REDACTED.
 *
 * All functions are thread-safe and keep no state.
 */
#ifndef CX_REDACT_H
#define CX_REDACT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define CX_REDACTED "[redacted]"
#define CX_REDACT_TRUNCATED "...[truncated]"
#define CX_REDACT_TOO_DEEP "[too deep]"
#define CX_REDACT_SECRET_MIN 4
#define CX_REDACT_TEXT_MIN 32		/* smallest max_out honoured */
#define CX_REDACT_DEPTH_DEFAULT 32

/*
 * True when a header's value must not be kept: Authorization,
 * Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key, X-Auth-Token, any
 * name containing token, secret, passw(or)d, api-key/apikey, session,
 * credential, signature or private-key, and any name in extra (a
 * NULL-terminated list, may be NULL).  A NULL name is redacted.
 */
bool cx_redact_header(const char *name, const char *const *extra);

/*
 * Returns a new deep copy of in (a new reference: the caller
 * json_decref()s it; in is borrowed and never changed) in which:
 *   - the value of every object member whose normalised key is sensitive
 *     is the string CX_REDACTED, whatever it was (an object, an array...).
 *     Sensitive: password, passwd, secret, client_secret, api_key, apikey,
 *     private_key, credential(s), passphrase, access_key, signing_key (or
 *     any key containing one of those), any key ending in "token"
 *     (access_token, id_token, github_token; not "max_tokens"), and
 *     authorization, auth, cookie, set_cookie, session_id, ssn,
 *     card_number, credit_card, cvv, cvc, pin, otp; plus the names in
 *     fields (NULL-terminated, may be NULL; matched whole);
 *   - every occurrence of a string of secrets (NULL-terminated, may be
 *     NULL) in any other string value or key is replaced as by
 *     cx_redact_text() (no truncation);
 *   - a container nested deeper than max_depth (<= 0: the default) is the
 *     string CX_REDACT_TOO_DEEP rather than copied unexamined.
 * Returns NULL for a NULL in or when out of memory.
 */
json_t *cx_redact_json(const json_t *in, const char *const *fields, const char *const *secrets, int max_depth)
	__attribute__((warn_unused_result));

/*
 * Returns a NUL-terminated copy of in[0..len) (the caller free()s it; NULL
 * only when out of memory) of at most max_out bytes (values below
 * CX_REDACT_TEXT_MIN count as that) in which every occurrence of each
 * string of secrets (NULL-terminated, may be NULL) is CX_REDACTED.  For a
 * secret of 6 bytes or more its base64 forms (standard and URL-safe, at
 * each of the three alignments inside a longer encoded run, as in a Basic
 * Authorization value of "user:secret") are replaced too.  A secret cut off
 * by the end of the input (its first 4 bytes or more) is replaced as well.
 * Text after an embedded NUL is not copied: such input is binary, and a
 * summary of it would say nothing.  When anything is left out the copy ends
 * with CX_REDACT_TRUNCATED, cut at a marker or UTF-8 character boundary.
 * Bytes are otherwise copied as they are (invalid UTF-8 stays invalid).
 */
char *cx_redact_text(const char *in, size_t len, const char *const *secrets, size_t max_out)
	__attribute__((warn_unused_result));

#endif
