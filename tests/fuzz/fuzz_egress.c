/*
 * fuzz_egress.c - the egress guard's two parsers: the allow-list and the
 * connector URL check.  Neither may crash or read out of bounds; a parsed
 * allow-list must behave (answer for a few fixed addresses); a URL that
 * passes must start with http:// or https:// and carry no userinfo; a
 * refusal must come with a detail; allow_private only ever turns an
 * address refusal into a pass (or into the refusal a later check makes),
 * never the other way, and changes no other verdict.
 *
 * Input: the first line is tried as an allow-list, the rest as a URL, and
 * the whole input as each too.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "connectors/egress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void probe(const cx_egress_t *g)
{
	static const char *const v4[] = { "127.0.0.1", "10.1.2.3", "8.8.8.8", "169.254.169.254" };
	static const char *const v6[] = { "::1", "::ffff:127.0.0.2", "2002:7f00:1::", "2606:4700::1" };
	const char *why;

	for (size_t i = 0; i < 4; i++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

		inet_pton(AF_INET, v4[i], &sin.sin_addr);
		inet_pton(AF_INET6, v6[i], &sin6.sin6_addr);
		why = NULL;
		if (!cx_egress_addr_ok(g, (struct sockaddr *)&sin, sizeof(sin), &why) && why == NULL)
			abort();
		why = NULL;
		if (!cx_egress_addr_ok(g, (struct sockaddr *)&sin6, sizeof(sin6), &why) && why == NULL)
			abort();
	}
}

static void check_url(const cx_egress_t *g, const char *url)
{
	mf_err_t err;
	int rc;

	memset(&err, 0, sizeof(err));
	rc = cx_egress_url_check(g, url, &err);
	{
		mf_err_t err2;
		int rc2 = cx_egress_url_check_ex(g, url, true, &err2);

		/* An address refusal lifted lets the later checks speak: a bad
		 * port after a private literal becomes EINVAL. */
		if (rc2 != rc && !(rc == CX_EGRESS_EREFUSED && (rc2 == 0 || rc2 == CX_EGRESS_EINVAL)))
			abort();
	}
	if (rc == 0) {
		if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
			abort();
		return;
	}
	if (rc != CX_EGRESS_EINVAL && rc != CX_EGRESS_ESCHEME && rc != CX_EGRESS_EREFUSED)
		abort();
	if (err.detail[0] == '\0' || strnlen(err.detail, sizeof(err.detail)) == sizeof(err.detail))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *nl;
	cx_egress_t *g;
	mf_err_t err;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';			/* an embedded NUL just ends the text early */
	g = cx_egress_new(s, &err);
	if (g)
		probe(g);
	cx_egress_free(g);
	check_url(NULL, s);
	nl = strchr(s, '\n');
	if (nl) {
		*nl = '\0';
		g = cx_egress_new(s, &err);
		if (g)
			probe(g);
		check_url(g, nl + 1);
		cx_egress_free(g);
	}
	free(s);
	return 0;
}
