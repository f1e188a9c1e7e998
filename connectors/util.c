/*
 * util.c - the runtime's small pure helpers, kept apart from call.c so
 * they can be tested without a loop, a pool or a peer: the Retry-After
 * value a 429/503 carries, a request URL from base_url and a call's path,
 * and the URL as a call summary shows it (query values of sensitive names
 * hidden).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "connectors/cx.h"
#include "connectors/redact.h"
#include "core/urlenc.h"

long long cx_retry_after_ms(const char *value, time_t now)
{
	const char *p = value, *end;
	long long s = 0;

	if (value == NULL)
		return -1;
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == p)
		return -1;
	if (isdigit((unsigned char)*p)) {
		/* delta-seconds = 1*DIGIT; a huge value is a long wait, not an
		 * overflow (the caller caps holds anyway) */
		for (const char *q = p; q < end; q++) {
			if (!isdigit((unsigned char)*q))
				return -1;
			if (s < CX_RETRY_AFTER_MAX_S)
				s = s * 10 + (*q - '0');
		}
		return (s < CX_RETRY_AFTER_MAX_S ? s : CX_RETRY_AFTER_MAX_S) * 1000;
	}
	/* an HTTP-date: every form of RFC 9110 starts with the day's name;
	 * anything else curl_getdate might read is not one */
	if (!isalpha((unsigned char)*p))
		return -1;
	char date[64];
	time_t t;

	if ((size_t)(end - p) >= sizeof(date))
		return -1;
	memcpy(date, p, (size_t)(end - p));
	date[end - p] = '\0';
	t = curl_getdate(date, NULL);
	if (t <= 0)
		return -1;
	if (t <= now)
		return 0;
	return (long long)(t - now < CX_RETRY_AFTER_MAX_S ? t - now : CX_RETRY_AFTER_MAX_S) * 1000;
}

char *cx_url_join(const char *base, const char *path)
{
	size_t bl = strlen(base), pl = strlen(path);
	char *u = malloc(bl + pl + 2);

	if (u == NULL)
		return NULL;
	memcpy(u, base, bl);
	if (pl && path[0] != '/' && path[0] != '?' && (bl == 0 || base[bl - 1] != '/'))
		u[bl++] = '/';
	else if (pl && path[0] == '/' && bl && base[bl - 1] == '/')
		bl--;
	memcpy(u + bl, path, pl + 1);
	return u;
}

/* Is a query field's name one whose value a summary must not show?  The
 * name is judged as written and decoded ("%74oken" is "token"). */
static bool field_hidden(const char *name, size_t n, const char *const *fields)
{
	char raw[128], dec[128];

	if (n >= sizeof(raw))
		n = sizeof(raw) - 1;
	memcpy(raw, name, n);
	raw[n] = '\0';
	if (cx_redact_header(raw, fields))
		return true;
	return mf_form_decode(raw, n, dec, sizeof(dec)) == 0 && cx_redact_header(dec, fields);
}

json_t *cx_url_redacted(const char *url, const char *const *fields)
{
	const char *q = strchr(url, '?');
	size_t nfields = 1, len = strlen(url);
	/* not UTF-8 (a peer's Location can carry any bytes): "[binary]" */
	char *out, *o;
	json_t *j;

	if (q == NULL) {
		j = json_string(url);
		return j ? j : json_string("[binary]");
	}
	/* a hidden value becomes CX_REDACTED, which can be longer than the
	 * value: "a=&a=" grows by that much per field */
	for (const char *p = q; *p; p++)
		nfields += *p == '&';
	out = malloc(len + nfields * (sizeof(CX_REDACTED) - 1) + 1);
	if (out == NULL)
		return json_string("");
	memcpy(out, url, (size_t)(q - url) + 1);
	o = out + (q - url) + 1;
	for (const char *p = q + 1; *p;) {
		size_t n = strcspn(p, "&"), k = strcspn(p, "=&");

		if (k < n && field_hidden(p, k, fields)) {
			memcpy(o, p, k + 1);	/* the name as written, and '=' */
			o += k + 1;
			memcpy(o, CX_REDACTED, sizeof(CX_REDACTED) - 1);
			o += sizeof(CX_REDACTED) - 1;
		} else {
			memcpy(o, p, n);
			o += n;
		}
		p += n;
		if (*p == '&')
			*o++ = *p++;
	}
	*o = '\0';
	j = json_string(out);
	free(out);
	return j ? j : json_string("[binary]");
}
