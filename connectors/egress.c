/*
 * egress.c - the egress guard (see egress.h).
 *
 * The rules are two small tables, IPv4 and IPv6, walked in order so that a
 * specific entry (a metadata address) is found before the block containing
 * it (link-local).  IPv6 forms that carry an IPv4 address (mapped,
 * compatible, NAT64, 6to4) are judged by the IPv4 address they carry,
 * because that is where the packets end up.  Everything outside global
 * unicast 2000::/3 that no rule names is "reserved": the IPv6 rule is an
 * allow-list of the public space, not a list of known bad blocks.
 *
 * allow_private (the _ex variants) is applied after the tables have spoken:
 * it turns a refusal into a pass only when the refusing rule's class is one
 * of the private ones, so the order that puts metadata addresses before
 * the blocks containing them also keeps them refused.
 *
 * URL syntax is curl's (curl_url), so the guard and the transport agree on
 * what a URL means; numeric IPv4 host forms are recognised with inet_aton,
 * the same parser getaddrinfo uses for them.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "connectors/egress.h"

#define MAX_ALLOW 256
#define MAX_URL 8192

struct allow_entry {
	int family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* network byte order; 4 bytes used for IPv4 */
	int prefix;
};

struct cx_egress {
	int n;
	struct allow_entry e[];
};

struct v4_rule { uint32_t net; int prefix; const char *why; };
struct v6_rule { uint8_t net[16]; int prefix; const char *why; };

#define V4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))

/* Most specific first: the first match decides. */
static const struct v4_rule v4_rules[] = {
	{ V4(169, 254, 169, 254), 32, "metadata" },	/* AWS, GCP, Azure IMDS, OpenStack, Oracle */
	{ V4(169, 254, 170, 2), 32, "metadata" },	/* AWS ECS task metadata and credentials */
	{ V4(169, 254, 170, 23), 32, "metadata" },	/* AWS EKS Pod Identity agent (credentials) */
	{ V4(100, 100, 100, 200), 32, "metadata" },	/* Alibaba Cloud */
	{ V4(168, 63, 129, 16), 32, "metadata" },	/* Azure wire server: a public address */
	{ V4(255, 255, 255, 255), 32, "broadcast" },
	{ V4(0, 0, 0, 0), 8, "unspecified" },
	{ V4(10, 0, 0, 0), 8, "private" },
	{ V4(100, 64, 0, 0), 10, "cgnat" },
	{ V4(127, 0, 0, 0), 8, "loopback" },
	{ V4(169, 254, 0, 0), 16, "link_local" },
	{ V4(172, 16, 0, 0), 12, "private" },
	{ V4(192, 0, 0, 0), 24, "reserved" },		/* IETF protocol assignments */
	{ V4(192, 0, 2, 0), 24, "documentation" },
	{ V4(192, 88, 99, 0), 24, "reserved" },		/* 6to4 relay anycast */
	{ V4(192, 168, 0, 0), 16, "private" },
	{ V4(198, 18, 0, 0), 15, "reserved" },		/* benchmarking */
	{ V4(198, 51, 100, 0), 24, "documentation" },
	{ V4(203, 0, 113, 0), 24, "documentation" },
	{ V4(224, 0, 0, 0), 4, "multicast" },
	{ V4(240, 0, 0, 0), 4, "reserved" },
};

/* Rules without an embedded IPv4 address; embedding forms are handled in
 * v6_why() before this table. */
static const struct v6_rule v6_rules[] = {
	{ { 0xfd, 0x00, 0x0e, 0xc2, [15] = 0x54, [14] = 0x02 }, 128, "metadata" },	/* fd00:ec2::254 */
	{ { 0xfd, 0x00, 0x0e, 0xc2, [15] = 0x23 }, 128, "metadata" },		/* fd00:ec2::23, EKS Pod Identity */
	{ { 0 }, 128, "unspecified" },
	{ { [15] = 1 }, 128, "loopback" },
	{ { 0x01, 0x00 }, 64, "reserved" },			/* 100::/64 discard */
	{ { 0x20, 0x01, 0x0d, 0xb8 }, 32, "documentation" },	/* 2001:db8::/32 */
	{ { 0x20, 0x01, 0x00, 0x00 }, 32, "reserved" },		/* Teredo: embeds an obfuscated IPv4 */
	{ { 0x3f, 0xff }, 20, "documentation" },		/* 3fff::/20 */
	{ { 0xfc }, 7, "ula" },
	{ { 0xfe, 0x80 }, 10, "link_local" },
	{ { 0xfe, 0xc0 }, 10, "private" },			/* deprecated site-local */
	{ { 0xff }, 8, "multicast" },
};

static bool prefix_match(const uint8_t *a, const uint8_t *net, int prefix)
{
	int full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ net[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static const char *v4_why(uint32_t a)
{
	for (size_t i = 0; i < sizeof(v4_rules) / sizeof(v4_rules[0]); i++) {
		uint32_t mask = v4_rules[i].prefix ? 0xffffffffu << (32 - v4_rules[i].prefix) : 0;

		if ((a & mask) == v4_rules[i].net)
			return v4_rules[i].why;
	}
	return NULL;
}

static uint32_t load_v4(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static const char *v6_why(const uint8_t *a)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const uint8_t translated[12] = { [8] = 0xff, [9] = 0xff };	/* ::ffff:0:0:0/96 */
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
	static const uint8_t zero[12] = { 0 };
	const char *why;

	for (size_t i = 0; i < 4; i++)		/* metadata, ::, ::1 before ::/96 */
		if (prefix_match(a, v6_rules[i].net, v6_rules[i].prefix))
			return v6_rules[i].why;
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, translated, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return v4_why(load_v4(a + 12));
	if (memcmp(a, zero, 12) == 0)		/* IPv4-compatible: deprecated, never legitimate */
		return (why = v4_why(load_v4(a + 12))) ? why : "reserved";
	if (a[0] == 0x20 && a[1] == 0x02)	/* 6to4 2002:AABB:CCDD::/48 */
		return v4_why(load_v4(a + 2));
	if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b)
		return "reserved";		/* 64:ff9b:1::/48, local-use NAT64 */
	for (size_t i = 4; i < sizeof(v6_rules) / sizeof(v6_rules[0]); i++)
		if (prefix_match(a, v6_rules[i].net, v6_rules[i].prefix))
			return v6_rules[i].why;
	if ((a[0] & 0xe0) != 0x20)		/* outside 2000::/3 global unicast */
		return "reserved";
	return NULL;
}

static bool allowed(const cx_egress_t *g, int family, const uint8_t *a)
{
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (g == NULL)
		return false;
	for (int i = 0; i < g->n; i++) {
		const struct allow_entry *e = &g->e[i];

		if (e->family == family && prefix_match(a, e->addr, e->prefix))
			return true;
		if (e->family == AF_INET && family == AF_INET6 && memcmp(a, mapped, 12) == 0 &&
		    prefix_match(a + 12, e->addr, e->prefix))
			return true;
	}
	return false;
}

/* The classes a tenant's allow_private lifts: its own networks.  Not
 * "metadata" (the platform's credentials), nor the space where nothing
 * legitimate listens or that reaches many hosts at once. */
static bool private_class(const char *why)
{
	static const char *const words[] = { "loopback", "private", "link_local", "cgnat", "ula" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(why, words[i]) == 0)
			return true;
	return false;
}

bool cx_egress_addr_ok_ex(const cx_egress_t *g, const struct sockaddr *sa, socklen_t len, bool allow_private,
			  const char **why)
{
	const char *w = NULL;

	if (cx_egress_addr_ok(g, sa, len, &w))
		return true;
	if (allow_private && private_class(w))
		return true;
	if (why)
		*why = w;
	return false;
}

bool cx_egress_addr_ok(const cx_egress_t *g, const struct sockaddr *sa, socklen_t len, const char **why)
{
	const char *w = "family";

	if (sa != NULL && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		const uint8_t *a = (const uint8_t *)&sin->sin_addr;

		if (allowed(g, AF_INET, a) || (w = v4_why(load_v4(a))) == NULL)
			return true;
	} else if (sa != NULL && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *a = sin6->sin6_addr.s6_addr;

		if (allowed(g, AF_INET6, a) || (w = v6_why(a)) == NULL)
			return true;
	}
	if (why)
		*why = w;
	return false;
}

/* --- allow-list ------------------------------------------------------ */

static int parse_entry(const char *tok, struct allow_entry *e, mf_err_t *err)
{
	char addr[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(tok, '/');
	size_t alen = slash ? (size_t)(slash - tok) : strlen(tok);
	int bits;

	if (alen == 0 || alen >= sizeof(addr))
		return mf_err_set(err, 400, "invalid_config", "egress_allow: \"%.60s\" is not an address/prefix", tok);
	memcpy(addr, tok, alen);
	addr[alen] = '\0';
	memset(e, 0, sizeof(*e));
	if (inet_pton(AF_INET, addr, e->addr) == 1) {
		e->family = AF_INET;
		bits = 32;
	} else if (inet_pton(AF_INET6, addr, e->addr) == 1) {
		e->family = AF_INET6;
		bits = 128;
	} else {
		return mf_err_set(err, 400, "invalid_config",
				  "egress_allow: \"%.60s\" is not an IPv4 or IPv6 address", addr);
	}
	e->prefix = bits;
	if (slash) {
		const char *p = slash + 1;
		int v = 0;

		if (*p == '\0' || strlen(p) > 3 || (p[0] == '0' && p[1] != '\0'))
			return mf_err_set(err, 400, "invalid_config", "egress_allow: bad prefix length in \"%.60s\"", tok);
		for (; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return mf_err_set(err, 400, "invalid_config",
						  "egress_allow: bad prefix length in \"%.60s\"", tok);
			v = v * 10 + (*p - '0');
		}
		if (v > bits)
			return mf_err_set(err, 400, "invalid_config",
					  "egress_allow: prefix /%d is longer than %d bits in \"%.60s\"", v, bits, tok);
		e->prefix = v;
	}
	for (int b = e->prefix; b < bits; b++) {
		if (e->addr[b / 8] & (0x80 >> (b % 8)))
			return mf_err_set(err, 400, "invalid_config",
					  "egress_allow: \"%.60s\" has host bits set below /%d", tok, e->prefix);
	}
	return 0;
}

cx_egress_t *cx_egress_new(const char *allow, mf_err_t *err)
{
	cx_egress_t *g = calloc(1, sizeof(*g) + MAX_ALLOW * sizeof(struct allow_entry));
	const char *p = allow ? allow : "";
	bool comma_seen = true;		/* a leading comma is an empty entry */
	bool any = false;

	if (g == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return NULL;
	}
	for (;;) {
		char tok[128];
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',') {
			if (*p == ',') {
				if (comma_seen)
					goto empty;
				comma_seen = true;
			}
			p++;
		}
		if (*p == '\0')
			break;
		n = strcspn(p, " \t\r\n,");
		if (n >= sizeof(tok)) {
			mf_err_set(err, 400, "invalid_config", "egress_allow: entry \"%.40s...\" is too long", p);
			goto fail;
		}
		if (g->n == MAX_ALLOW) {
			mf_err_set(err, 400, "invalid_config", "egress_allow: more than %d entries", MAX_ALLOW);
			goto fail;
		}
		memcpy(tok, p, n);
		tok[n] = '\0';
		for (size_t i = 0; i < n; i++) {
			if (!isxdigit((unsigned char)tok[i]) && tok[i] != '.' && tok[i] != ':' && tok[i] != '/') {
				mf_err_set(err, 400, "invalid_config",
					   "egress_allow: unexpected character in \"%.60s\" (CIDRs only, no zone ids)", tok);
				goto fail;
			}
		}
		if (parse_entry(tok, &g->e[g->n], err) < 0)
			goto fail;
		g->n++;
		any = true;
		comma_seen = false;
		p += n;
	}
	if (comma_seen && any)
		goto empty;
	return g;
empty:
	mf_err_set(err, 400, "invalid_config", "egress_allow: empty entry (stray comma)");
fail:
	free(g);
	return NULL;
}

void cx_egress_free(cx_egress_t *g)
{
	free(g);
}

/* --- URL check ------------------------------------------------------- */

/* Host names as DNS would take them (plus '_', which some internal names
 * use): labels of letters, digits, '-' and '_', 1..63 bytes, 253 in all,
 * one optional trailing dot.  A last label that is a number means the
 * writer meant an address, and inet_aton already said it is not one. */
static bool host_name_ok(const char *h)
{
	size_t len = strlen(h), label = 0, last;
	bool numeric = true;

	if (len > 0 && h[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)h[i] : '.';

		if (c == '.') {
			if (label == 0 || h[i - 1] == '-' || h[i - label] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c == '_') || ++label > 63)
			return false;
	}
	/* The last label: decimal digits, or "0x" and hex digits, which
	 * inet_aton would read as a number. */
	for (last = len; last > 0 && h[last - 1] != '.'; last--)
		;
	if (len - last >= 2 && h[last] == '0' && (h[last + 1] == 'x' || h[last + 1] == 'X')) {
		for (size_t i = last + 2; i < len; i++)
			if (!isxdigit((unsigned char)h[i]))
				numeric = false;
	} else {
		for (size_t i = last; i < len; i++)
			if (!isdigit((unsigned char)h[i]))
				numeric = false;
	}
	return !numeric;
}

static int check_address(const cx_egress_t *g, int family, const void *addr, bool allow_private, mf_err_t *err)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	const char *why = NULL;
	char text[INET6_ADDRSTRLEN];

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		sl = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		sl = sizeof(*sin6);
	}
	if (cx_egress_addr_ok_ex(g, (struct sockaddr *)&ss, sl, allow_private, &why))
		return 0;
	inet_ntop(family, addr, text, sizeof(text));
	mf_err_set(err, 400, "egress_refused", "address %s is not allowed (%s)", text, why);
	return CX_EGRESS_EREFUSED;
}

static int url_fail(mf_err_t *err, int rc, const char *code, const char *detail)
{
	mf_err_set(err, 400, code, "%s", detail);
	return rc;
}

static int check_parsed(const cx_egress_t *g, CURLU *u, bool allow_private, mf_err_t *err)
{
	static const CURLUPart cred_parts[] = { CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS };
	char *host = NULL, *port = NULL, *zone = NULL, *part = NULL;
	unsigned char a6[16];
	struct in_addr a4;
	int rc = 0;

	for (size_t i = 0; i < sizeof(cred_parts) / sizeof(cred_parts[0]); i++) {
		if (curl_url_get(u, cred_parts[i], &part, 0) == CURLUE_OK) {
			curl_free(part);
			return url_fail(err, CX_EGRESS_EREFUSED, "egress_refused",
					"credentials in the URL (user:password@) are not allowed");
		}
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host == NULL || host[0] == '\0') {
		curl_free(host);
		return url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "the URL has no host");
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) {
		rc = url_fail(err, CX_EGRESS_EREFUSED, "egress_refused", "IPv6 zone ids are not allowed");
		goto out;
	}
	if (host[0] == '[') {
		size_t n = strlen(host);
		char inner[INET6_ADDRSTRLEN + 1];

		if (n < 3 || host[n - 1] != ']' || n - 2 >= sizeof(inner)) {
			rc = url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "malformed IPv6 address in the URL");
			goto out;
		}
		memcpy(inner, host + 1, n - 2);
		inner[n - 2] = '\0';
		if (inet_pton(AF_INET6, inner, a6) != 1) {
			rc = url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "malformed IPv6 address in the URL");
			goto out;
		}
		rc = check_address(g, AF_INET6, a6, allow_private, err);
	} else if (inet_aton(host, &a4) == 1) {
		rc = check_address(g, AF_INET, &a4, allow_private, err);
	} else if (!host_name_ok(host)) {
		rc = url_fail(err, CX_EGRESS_EINVAL, "invalid_url",
			      "the URL's host is neither a valid name nor an IP address");
	}
	if (rc < 0)
		goto out;
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) {
		char *end;
		long v = strtol(port, &end, 10);

		if (*end != '\0' || end == port || v < 1 || v > 65535)
			rc = url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "the URL's port is not in 1..65535");
	}
out:
	curl_free(host);
	curl_free(port);
	curl_free(zone);
	return rc;
}

int cx_egress_url_check(const cx_egress_t *g, const char *url, mf_err_t *err)
{
	return cx_egress_url_check_ex(g, url, false, err);
}

int cx_egress_url_check_ex(const cx_egress_t *g, const char *url, bool allow_private, mf_err_t *err)
{
	char scheme[24];
	size_t n = 0, len;
	CURLU *u;
	CURLUcode uc;
	int rc;

	if (url == NULL || (len = strlen(url)) == 0)
		return url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "the URL is empty");
	if (len > MAX_URL)
		return url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "the URL is longer than 8192 bytes");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return url_fail(err, CX_EGRESS_EINVAL, "invalid_url",
					"the URL contains a space, a control or a non-ASCII character");
	/* The scheme is judged by hand first, so the refusal can name it
	 * whether or not curl knows it. */
	while (isalpha((unsigned char)url[n]) || (n > 0 && (isdigit((unsigned char)url[n]) ||
	       url[n] == '+' || url[n] == '-' || url[n] == '.'))) {
		if (n < sizeof(scheme) - 1)
			scheme[n] = (char)tolower((unsigned char)url[n]);
		n++;
	}
	if (n == 0 || url[n] != ':')
		return url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "the URL must start with http:// or https://");
	if (n >= sizeof(scheme))
		n = sizeof(scheme) - 1;
	scheme[n] = '\0';
	if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
		mf_err_set(err, 400, "egress_refused", "scheme \"%s\" is not allowed (only http and https)", scheme);
		return CX_EGRESS_ESCHEME;
	}
	/* curl also takes "https:/host" and "https:///host"; a stored base
	 * URL should mean the same to every parser that reads it later. */
	if (url[n + 1] != '/' || url[n + 2] != '/' || url[n + 3] == '/')
		return url_fail(err, CX_EGRESS_EINVAL, "invalid_url", "the URL must start with http:// or https://");
	u = curl_url();
	if (u == NULL) {
		mf_err_set(err, 500, "out_of_memory", "out of memory");
		return CX_EGRESS_EINVAL;
	}
	uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		mf_err_set(err, 400, "invalid_url", "not a valid URL (%s)", curl_url_strerror(uc));
		curl_url_cleanup(u);
		return CX_EGRESS_EINVAL;
	}
	rc = check_parsed(g, u, allow_private, err);
	curl_url_cleanup(u);
	return rc;
}
