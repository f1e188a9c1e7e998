/*
 * redact.c - scrubbing connector call summaries (see redact.h).
 *
 * Secret values are turned into a pattern set once per call: each secret,
 * plus for longer ones the parts of its base64 encodings that do not depend
 * on neighbouring bytes.  The scanner then tries every pattern at every
 * input position (a first-byte table skips most positions), takes the
 * longest match and emits CX_REDACTED for it.  Because every position is
 * tried against the whole remaining input, no copied run of input can hold
 * a complete secret; truncation only ever shortens copied runs or drops
 * whole markers, so it cannot create one either.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "connectors/redact.h"
#include "core/buf.h"

#define B64_MIN_SECRET 6	/* shorter secrets give too short base64 cores */

/* ---- names ---- */

/* Lower-cases s and drops '-' and '_' into out (size cap); returns false
 * when it does not fit. */
static bool name_norm(const char *s, size_t n, char *out, size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '-' || c == '_')
			continue;
		if (k + 1 >= cap)
			return false;
		out[k++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[k] = '\0';
	return true;
}

static bool in_list(const char *norm, const char *const *list)
{
	for (; list && *list; list++)
		if (strcmp(norm, *list) == 0)
			return true;
	return false;
}

static bool has_any(const char *norm, const char *const *subs)
{
	for (; *subs; subs++)
		if (strstr(norm, *subs))
			return true;
	return false;
}

/* Caller-supplied names, compared normalised and whole. */
static bool in_extra(const char *norm, const char *const *extra)
{
	char e[256];

	for (; extra && *extra; extra++)
		if (name_norm(*extra, strlen(*extra), e, sizeof(e)) && strcmp(norm, e) == 0)
			return true;
	return false;
}

static const char *const header_subs[] = {
	"authorization", "cookie", "token", "secret", "passw", "apikey", "session", "credential",
	"signature", "privatekey", NULL,
};

bool cx_redact_header(const char *name, const char *const *extra)
{
	char norm[256];

	if (name == NULL)
		return true;
	/* an absurdly long header name is not worth the risk */
	if (!name_norm(name, strlen(name), norm, sizeof(norm)))
		return true;
	return has_any(norm, header_subs) || in_extra(norm, extra);
}

static const char *const key_subs[] = {
	"password", "passwd", "secret", "apikey", "privatekey", "credential", "passphrase", "accesskey",
	"signingkey", NULL,
};
static const char *const key_whole[] = {
	"authorization", "proxyauthorization", "auth", "cookie", "setcookie", "sessionid", "ssn",
	"cardnumber", "creditcard", "creditcardnumber", "cvv", "cvc", "pin", "otp", NULL,
};

static bool key_norm_sensitive(const char *norm, size_t n, const char *const *fields)
{
	/* "...token" but not "...tokens": max_tokens and prompt_tokens are
	 * counts worth keeping */
	if (n >= 5 && strcmp(norm + n - 5, "token") == 0)
		return true;
	return has_any(norm, key_subs) || in_list(norm, key_whole) || in_extra(norm, fields);
}

static bool key_sensitive(const char *key, const char *const *fields)
{
	char small[256], *norm = small;
	size_t n = strlen(key);
	bool r;

	if (n >= sizeof(small)) {
		norm = malloc(n + 1);
		if (norm == NULL)
			return true;	/* cannot tell: hide */
	}
	if (!name_norm(key, n, norm, n >= sizeof(small) ? n + 1 : sizeof(small)))
		r = true;
	else
		r = key_norm_sensitive(norm, strlen(norm), fields);
	if (norm != small)
		free(norm);
	return r;
}

/* ---- secret patterns ---- */

typedef struct pat {
	const unsigned char *p;
	size_t n;
} pat_t;

typedef struct patset {
	pat_t *v;
	size_t n;
	unsigned char *store;		/* base64 cores */
	bool first[256];		/* some pattern starts with this byte */
	size_t maxlen;
} patset_t;

static void patset_free(patset_t *ps)
{
	free(ps->v);
	free(ps->store);
	memset(ps, 0, sizeof(*ps));
}

static void patset_add(patset_t *ps, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < ps->n; i++)
		if (ps->v[i].n == n && memcmp(ps->v[i].p, p, n) == 0)
			return;
	ps->v[ps->n].p = p;
	ps->v[ps->n].n = n;
	ps->n++;
	ps->first[p[0]] = true;
	if (n > ps->maxlen)
		ps->maxlen = n;
}

/*
 * The base64 text of a secret inside a longer encoded run depends on where
 * the secret starts within a 3-byte group (alignment a = 0, 1, 2).  Output
 * character i covers bits [6i, 6i+6) of the run; with the secret at bits
 * [8a, 8a+8n) the characters from ceil(8a/6) up to floor((8a+8n)/6) are
 * fixed by the secret alone, whatever surrounds it.  Those "cores" are what
 * we look for; the at most 4 bits at either end stay visible.
 */
static size_t b64_core(const unsigned char *s, size_t n, int a, int variant, unsigned char *out)
{
	size_t rawlen = (size_t)a + n + 2, i0 = ((size_t)a * 8 + 5) / 6, i1 = ((size_t)a + n) * 8 / 6;
	unsigned char *raw = calloc(1, rawlen);
	char *enc;
	size_t enclen = sodium_base64_ENCODED_LEN(rawlen, variant);

	if (raw == NULL)
		return 0;
	enc = malloc(enclen);
	if (enc == NULL) {
		free(raw);
		return 0;
	}
	memcpy(raw + a, s, n);
	sodium_bin2base64(enc, enclen, raw, rawlen, variant);
	memcpy(out, enc + i0, i1 - i0);
	free(enc);
	free(raw);
	return i1 - i0;
}

static int patset_build(patset_t *ps, const char *const *secrets)
{
	size_t nsec = 0, store = 0, used = 0;
	static const int variants[2] = {
		sodium_base64_VARIANT_ORIGINAL_NO_PADDING, sodium_base64_VARIANT_URLSAFE_NO_PADDING,
	};

	memset(ps, 0, sizeof(*ps));
	for (const char *const *s = secrets; s && *s; s++) {
		size_t n = strlen(*s);

		if (n < CX_REDACT_SECRET_MIN)
			continue;
		nsec++;
		if (n >= B64_MIN_SECRET)
			store += 6 * ((n + 2) * 8 / 6 + 1);
	}
	if (nsec == 0)
		return 0;
	ps->v = malloc(nsec * 7 * sizeof(*ps->v));
	ps->store = store ? malloc(store) : NULL;
	if (ps->v == NULL || (store && ps->store == NULL)) {
		patset_free(ps);
		return -1;
	}
	for (const char *const *s = secrets; *s; s++) {
		const unsigned char *u = (const unsigned char *)*s;
		size_t n = strlen(*s);

		if (n < CX_REDACT_SECRET_MIN)
			continue;
		patset_add(ps, u, n);
		if (n < B64_MIN_SECRET)
			continue;
		for (int a = 0; a < 3; a++)
			for (int v = 0; v < 2; v++) {
				size_t k = b64_core(u, n, a, variants[v], ps->store + used);

				if (k == 0) {
					patset_free(ps);
					return -1;
				}
				patset_add(ps, ps->store + used, k);
				used += k;
			}
	}
	return 0;
}

/*
 * Length of input covered by the longest pattern matching at s[0..rem):
 * a whole pattern, or when the input ends inside one, the rest of the
 * input if that is CX_REDACT_SECRET_MIN bytes or more of its beginning.
 * 0 when nothing matches.
 */
static size_t match_at(const patset_t *ps, const unsigned char *s, size_t rem)
{
	size_t best = 0;

	if (!ps->first[s[0]])
		return 0;
	for (size_t i = 0; i < ps->n; i++) {
		const pat_t *p = &ps->v[i];

		if (p->p[0] != s[0])
			continue;
		if (p->n <= rem) {
			if (p->n > best && memcmp(p->p, s, p->n) == 0)
				best = p->n;
		} else if (rem >= CX_REDACT_SECRET_MIN && rem > best && memcmp(p->p, s, rem) == 0) {
			best = rem;
		}
	}
	return best;
}

/* ---- text ---- */

/* Drops a trailing incomplete UTF-8 sequence (only raw input bytes can be
 * non-ASCII; markers are ASCII). */
static void utf8_trim(mf_buf_t *b)
{
	size_t n = b->len, k = 0;

	while (k < 4 && k < n && ((unsigned char)b->data[n - 1 - k] & 0xc0) == 0x80)
		k++;
	if (k < n) {
		unsigned char lead = (unsigned char)b->data[n - 1 - k];
		size_t need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;

		if (lead >= 0xc0 && k < need)
			b->len = n - 1 - k;
	}
	b->data[b->len] = '\0';
}

/*
 * Copies in[0..len) into out with patterns replaced, up to max_out bytes
 * (SIZE_MAX: no limit), stopping at a NUL byte if stop_at_nul.  When
 * anything is left out, the copy is cut back to a piece boundary that
 * leaves room for CX_REDACT_TRUNCATED, which is appended.  Returns 0, or
 * -1 out of memory.
 */
static int redact_run(mf_buf_t *out, const unsigned char *in, size_t len, const patset_t *ps, size_t max_out,
		      bool stop_at_nul)
{
	const size_t mlen = sizeof(CX_REDACTED) - 1, tlen = sizeof(CX_REDACT_TRUNCATED) - 1;
	size_t end = len, i = 0, safe = 0;
	bool cut = false;

	if (stop_at_nul) {
		const unsigned char *z = memchr(in, '\0', len);

		if (z)
			end = (size_t)(z - in);
	}
	if (mf_buf_reserve(out, 1) < 0)
		return -1;
	out->data[out->len] = '\0';
	while (i < end) {
		size_t m = ps->n ? match_at(ps, in + i, end - i) : 0;
		size_t piece = m ? mlen : 1;

		if (max_out != SIZE_MAX && out->len + piece > max_out) {
			cut = true;
			break;
		}
		if ((m ? mf_buf_add(out, CX_REDACTED, mlen) : mf_buf_addc(out, (char)in[i])) < 0)
			return -1;
		i += m ? m : 1;
		if (max_out != SIZE_MAX && out->len + tlen <= max_out)
			safe = out->len;
	}
	if (end < len)
		cut = true;
	if (!cut)
		return 0;
	if (out->len + tlen > max_out) {
		out->len = safe;
		utf8_trim(out);
	}
	return mf_buf_add(out, CX_REDACT_TRUNCATED, tlen);
}

char *cx_redact_text(const char *in, size_t len, const char *const *secrets, size_t max_out)
{
	mf_buf_t out = MF_BUF_INIT;
	patset_t ps;

	if (in == NULL)
		len = 0;
	if (max_out < CX_REDACT_TEXT_MIN)
		max_out = CX_REDACT_TEXT_MIN;
	if (max_out == SIZE_MAX)
		max_out--;
	if (patset_build(&ps, secrets) < 0)
		return NULL;
	if (redact_run(&out, (const unsigned char *)(in ? in : ""), len, &ps, max_out, true) < 0) {
		patset_free(&ps);
		mf_buf_free(&out);
		return NULL;
	}
	patset_free(&ps);
	return mf_buf_detach(&out, NULL);
}

/* ---- JSON ---- */

/* A new string: s with secrets replaced.  NULL out of memory.  If the
 * replacement broke UTF-8 (a secret beginning mid-character), the whole
 * value goes: jansson would refuse it, and hiding is the safe side. */
static json_t *str_redact(const char *s, size_t n, const patset_t *ps)
{
	mf_buf_t b = MF_BUF_INIT;
	json_t *j;

	if (ps->n == 0)
		return json_stringn(s, n);
	if (redact_run(&b, (const unsigned char *)s, n, ps, SIZE_MAX, false) < 0) {
		mf_buf_free(&b);
		return NULL;
	}
	j = json_stringn(b.data, b.len);
	mf_buf_free(&b);
	return j ? j : json_string(CX_REDACTED);
}

static json_t *copy(const json_t *in, const char *const *fields, const patset_t *ps, int depth, int max_depth)
{
	json_t *out;

	switch (json_typeof(in)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *v;

		if (depth >= max_depth)
			return json_string(CX_REDACT_TOO_DEEP);
		out = json_object();
		if (out == NULL)
			return NULL;
		/* jansson's iteration API takes a non-const object; it does not
		 * modify it */
		json_object_foreach((json_t *)in, key, v) {
			json_t *nv = key_sensitive(key, fields) ? json_string(CX_REDACTED)
								: copy(v, fields, ps, depth + 1, max_depth);
			json_t *nk;
			int rc;

			if (nv == NULL) {
				json_decref(out);
				return NULL;
			}
			if (ps->n == 0) {
				rc = json_object_set_new(out, key, nv);
			} else {
				nk = str_redact(key, strlen(key), ps);
				if (nk == NULL) {
					json_decref(nv);
					json_decref(out);
					return NULL;
				}
				/* two keys may redact to the same text: the later wins,
				 * which loses a value but never shows a secret */
				rc = json_object_set_new(out, json_string_value(nk), nv);
				json_decref(nk);
			}
			if (rc < 0) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *v;

		if (depth >= max_depth)
			return json_string(CX_REDACT_TOO_DEEP);
		out = json_array();
		if (out == NULL)
			return NULL;
		json_array_foreach(in, i, v) {
			if (json_array_append_new(out, copy(v, fields, ps, depth + 1, max_depth)) < 0) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	}
	case JSON_STRING:
		return str_redact(json_string_value(in), json_string_length(in), ps);
	default:
		/* numbers, booleans, null: nothing to hide, and a copy keeps the
		 * result independent of the input */
		return json_deep_copy(in);
	}
}

json_t *cx_redact_json(const json_t *in, const char *const *fields, const char *const *secrets, int max_depth)
{
	patset_t ps;
	json_t *out;

	if (in == NULL)
		return NULL;
	if (max_depth <= 0)
		max_depth = CX_REDACT_DEPTH_DEFAULT;
	if (patset_build(&ps, secrets) < 0)
		return NULL;
	out = copy(in, fields, &ps, 0, max_depth);
	patset_free(&ps);
	return out;
}
