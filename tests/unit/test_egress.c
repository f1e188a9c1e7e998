/*
 * test_egress.c - the egress guard: allow-list parsing, the address rules
 * (IPv4, IPv6 and IPv6 forms embedding IPv4), connector URL checks, and
 * what a tenant's allow_private lifts (and what it does not).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>

#include <curl/curl.h>

#include "connectors/egress.h"
#include "t.h"

/* Address text -> verdict through cx_egress_addr_ok_ex, as opensocket sees
 * it; allow_private false is the strict cx_egress_addr_ok, which is also
 * called and must agree. */
static bool addr_ok_ex(const cx_egress_t *g, const char *text, bool allow_private, const char **why)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr *sa = NULL;
	socklen_t len = 0;
	const char *strict_why = "(none)";
	bool ok, strict;

	*why = "(none)";
	if (inet_pton(AF_INET, text, &sin.sin_addr) == 1) {
		sa = (struct sockaddr *)&sin;
		len = sizeof(sin);
	} else if (inet_pton(AF_INET6, text, &sin6.sin6_addr) == 1) {
		sa = (struct sockaddr *)&sin6;
		len = sizeof(sin6);
	} else {
		*why = "unparsable test input";
		return true;
	}
	ok = cx_egress_addr_ok_ex(g, sa, len, allow_private, why);
	strict = cx_egress_addr_ok(g, sa, len, &strict_why);
	if (!allow_private && (ok != strict || (!ok && strcmp(*why, strict_why) != 0))) {
		*why = "cx_egress_addr_ok_ex(false) disagrees with cx_egress_addr_ok";
		return !ok;
	}
	return ok;
}

static bool addr_ok(const cx_egress_t *g, const char *text, const char **why)
{
	return addr_ok_ex(g, text, false, why);
}

static const struct { const char *addr; const char *why; } refused[] = {
	{ "127.0.0.1", "loopback" }, { "127.255.255.254", "loopback" }, { "0.0.0.0", "unspecified" },
	{ "0.1.2.3", "unspecified" }, { "10.0.0.1", "private" }, { "10.255.255.255", "private" },
	{ "172.16.0.1", "private" }, { "172.31.255.255", "private" }, { "192.168.1.1", "private" },
	{ "169.254.0.1", "link_local" }, { "169.254.169.254", "metadata" }, { "100.64.0.1", "cgnat" },
	{ "100.127.255.255", "cgnat" }, { "100.100.100.200", "metadata" }, { "168.63.129.16", "metadata" },
	{ "224.0.0.1", "multicast" }, { "239.255.255.250", "multicast" }, { "240.0.0.1", "reserved" },
	{ "255.255.255.255", "broadcast" }, { "192.0.0.8", "reserved" }, { "198.18.0.1", "reserved" },
	{ "198.19.255.255", "reserved" }, { "192.0.2.1", "documentation" }, { "198.51.100.7", "documentation" },
	{ "203.0.113.9", "documentation" }, { "192.88.99.1", "reserved" },
	{ "::", "unspecified" }, { "::1", "loopback" }, { "fe80::1", "link_local" }, { "febf::1", "link_local" },
	{ "fc00::1", "ula" }, { "fdff:ffff::1", "ula" }, { "fd00:ec2::254", "metadata" },
	{ "ff02::1", "multicast" }, { "ff0e::1", "multicast" }, { "fec0::1", "private" },
	{ "::ffff:127.0.0.1", "loopback" }, { "::ffff:10.1.2.3", "private" },
	{ "::ffff:169.254.169.254", "metadata" }, { "::127.0.0.1", "loopback" }, { "::10.0.0.1", "private" },
	{ "::8.8.8.8", "reserved" }, { "64:ff9b::127.0.0.1", "loopback" }, { "64:ff9b::a9fe:a9fe", "metadata" },
	{ "64:ff9b:1::1", "reserved" }, { "2002:7f00:1::", "loopback" }, { "2002:c0a8:101::1", "private" },
	{ "2002:a9fe:a9fe::1", "metadata" }, { "::ffff:0:10.0.0.1", "private" }, { "2001:db8::1", "documentation" },
	{ "2001:0:4136:e378::1", "reserved" }, { "100::1", "reserved" }, { "4000::1", "reserved" },
	{ "1::1", "reserved" }, { "::2", "unspecified" }, { "::ffff:255.255.255.255", "broadcast" },
	{ "::ffff:224.0.0.1", "multicast" }, { "169.254.170.2", "metadata" }, { "169.254.170.23", "metadata" },
	{ "fd00:ec2::23", "metadata" }, { "::ffff:169.254.170.2", "metadata" }, { "169.254.170.3", "link_local" },
	{ "fd00:ec2::253", "ula" }, { "100.100.100.201", "cgnat" }, { "::ffff:100.100.100.200", "metadata" },
	{ "2002:6464:64c8::1", "metadata" }, { "fe80::a9fe:a9fe", "link_local" }, { "::ffff:192.0.2.1", "documentation" },
	{ "::ffff:100.64.0.1", "cgnat" }, { "64:ff9b::192.168.0.1", "private" }, { "::ffff:0.0.0.0", "unspecified" },
};

static const char *const allowed_addrs[] = {
	"8.8.8.8", "1.1.1.1", "93.184.216.34", "172.15.255.255", "172.32.0.1", "100.63.255.255",
	"100.128.0.0", "169.253.255.255", "198.17.255.255", "198.20.0.1", "223.255.255.255", "11.0.0.1",
	"2606:4700:4700::1111", "2a00:1450:4001:81b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808",
	"2002:808:808::1", "2001:4860:4860::8888",
};

static void test_rules(void)
{
	char what[128];
	const char *why;

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		bool ok = addr_ok(NULL, refused[i].addr, &why);

		snprintf(what, sizeof(what), "%s refused as %s", refused[i].addr, refused[i].why);
		T_OK(!ok && strcmp(why, refused[i].why) == 0, what);
		if (ok || strcmp(why, refused[i].why) != 0)
			printf("#   got %s (%s)\n", ok ? "allowed" : "refused", why);
	}
	for (size_t i = 0; i < sizeof(allowed_addrs) / sizeof(allowed_addrs[0]); i++) {
		snprintf(what, sizeof(what), "%s (public) allowed", allowed_addrs[i]);
		T_OK(addr_ok(NULL, allowed_addrs[i], &why), what);
	}
	{
		struct sockaddr sa = { .sa_family = AF_UNIX };

		T_OK(!cx_egress_addr_ok(NULL, &sa, sizeof(sa), &why) && strcmp(why, "family") == 0,
		     "a non-IP socket address is refused");
		struct sockaddr_in short_sin = { .sin_family = AF_INET };

		T_OK(!cx_egress_addr_ok(NULL, (struct sockaddr *)&short_sin, 4, &why), "a truncated sockaddr is refused");
		T_OK(!cx_egress_addr_ok(NULL, NULL, 0, NULL), "NULL address is refused, why may be NULL");
	}
}

/* What a tenant's allow_private lifts: exactly the five private classes,
 * in every form; every other refusal stands with the same reason. */
static bool lifted(const char *why)
{
	return !strcmp(why, "loopback") || !strcmp(why, "private") || !strcmp(why, "link_local") ||
	       !strcmp(why, "cgnat") || !strcmp(why, "ula");
}

static void test_allow_private(void)
{
	static const char *const now_ok[] = {
		"127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.0.1", "169.254.169.253", "100.64.0.1", "100.127.255.255", "::1", "fe80::1", "fc00::1",
		"fdff:ffff::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:172.16.5.4",
		"::ffff:169.254.1.1", "::ffff:100.64.1.1", "64:ff9b::127.0.0.1", "2002:c0a8:101::1", "2002:7f00:1::",
		"::ffff:0:10.0.0.1", "::127.0.0.1",
	};
	static const struct { const char *addr; const char *why; } still_refused[] = {
		{ "169.254.169.254", "metadata" }, { "169.254.170.2", "metadata" }, { "169.254.170.23", "metadata" },
		{ "100.100.100.200", "metadata" }, { "168.63.129.16", "metadata" }, { "fd00:ec2::254", "metadata" },
		{ "fd00:ec2::23", "metadata" }, { "::ffff:169.254.169.254", "metadata" },
		{ "64:ff9b::a9fe:a9fe", "metadata" }, { "2002:a9fe:a9fe::1", "metadata" },
		{ "::ffff:100.100.100.200", "metadata" }, { "224.0.0.1", "multicast" }, { "ff02::1", "multicast" },
		{ "::ffff:224.0.0.1", "multicast" }, { "255.255.255.255", "broadcast" }, { "0.0.0.0", "unspecified" },
		{ "::", "unspecified" }, { "::ffff:0.0.0.0", "unspecified" }, { "240.0.0.1", "reserved" },
		{ "192.0.0.8", "reserved" }, { "198.18.0.1", "reserved" }, { "100::1", "reserved" },
		{ "2001:0:4136:e378::1", "reserved" }, { "::8.8.8.8", "reserved" }, { "4000::1", "reserved" },
		{ "192.0.2.1", "documentation" }, { "2001:db8::1", "documentation" }, { "3fff::1", "documentation" },
	};
	char what[160];
	const char *why;
	int lifted_n = 0, kept_n = 0;

	/* The whole rule table, both ways. */
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		bool ok = addr_ok_ex(NULL, refused[i].addr, true, &why);

		if (lifted(refused[i].why)) {
			snprintf(what, sizeof(what), "allow_private: %s (%s) allowed", refused[i].addr, refused[i].why);
			T_OK(ok, what);
			lifted_n++;
		} else {
			snprintf(what, sizeof(what), "allow_private: %s still refused as %s", refused[i].addr,
				 refused[i].why);
			T_OK(!ok && strcmp(why, refused[i].why) == 0, what);
			kept_n++;
		}
		T_OK(!addr_ok_ex(NULL, refused[i].addr, false, &why), "  and refused without it");
	}
	printf("# allow_private over the rule table: %d lifted, %d still refused\n", lifted_n, kept_n);
	for (size_t i = 0; i < sizeof(now_ok) / sizeof(now_ok[0]); i++) {
		bool strict = addr_ok_ex(NULL, now_ok[i], false, &why);

		snprintf(what, sizeof(what), "%s: refused (%s) without allow_private, allowed with it", now_ok[i], why);
		T_OK(!strict && lifted(why) && addr_ok_ex(NULL, now_ok[i], true, &why), what);
	}
	for (size_t i = 0; i < sizeof(still_refused) / sizeof(still_refused[0]); i++) {
		snprintf(what, sizeof(what), "%s refused as %s with and without allow_private", still_refused[i].addr,
			 still_refused[i].why);
		T_OK(!addr_ok_ex(NULL, still_refused[i].addr, true, &why) && strcmp(why, still_refused[i].why) == 0 &&
		     !addr_ok_ex(NULL, still_refused[i].addr, false, &why) && strcmp(why, still_refused[i].why) == 0,
		     what);
	}
	for (size_t i = 0; i < sizeof(allowed_addrs) / sizeof(allowed_addrs[0]); i++) {
		snprintf(what, sizeof(what), "%s (public) allowed with allow_private", allowed_addrs[i]);
		T_OK(addr_ok_ex(NULL, allowed_addrs[i], true, &why), what);
	}
	{
		struct sockaddr sa = { .sa_family = AF_UNIX };

		T_OK(!cx_egress_addr_ok_ex(NULL, &sa, sizeof(sa), true, &why) && strcmp(why, "family") == 0,
		     "allow_private: a non-IP socket address is still refused");
		T_OK(!cx_egress_addr_ok_ex(NULL, NULL, 0, true, NULL), "allow_private: NULL address refused, why may be NULL");
	}
	{
		cx_egress_t *g = cx_egress_new("169.254.169.254/32", NULL);

		T_OK(addr_ok_ex(g, "169.254.169.254", true, &why) && addr_ok_ex(g, "169.254.169.254", false, &why),
		     "the operator's allow-list still wins over metadata, flag or not");
		T_OK(!addr_ok_ex(g, "169.254.170.2", true, &why) && !strcmp(why, "metadata"),
		     "an allow-list entry opens only itself");
		cx_egress_free(g);
	}
}

static void test_allow_list(void)
{
	static const char *const bad[] = {
		"junk", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08", "10.0.0.1/8", "fe80::1%eth0/128",
		"10.0.0.0/-1", "10.0.0.0/8,,10.1.0.0/16", ",10.0.0.0/8", "10.0.0.0/8,", "10.0.0.256/32",
		"1.2.3/24", "localhost", "10.0.0.0/8/8", "::1/1280", "2001:db8::1/32", "0x7f000001",
		"127.0.0.1 junk",
	};
	static const char *const good[] = {
		"", "   ", "127.0.0.2/32", "127.0.0.2/32, ::1/128, 10.20.0.0/16", "10.0.0.0/8 192.168.0.0/16",
		"10.0.0.0/8,192.168.0.0/16", "::/0", "0.0.0.0/0", "127.0.0.2", "fd00::/8\t10.0.0.0/8\n",
	};
	char what[160];
	mf_err_t err;
	cx_egress_t *g;
	const char *why;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mf_err_clear(&err);
		g = cx_egress_new(bad[i], &err);
		snprintf(what, sizeof(what), "allow-list \"%s\" refused: %.100s", bad[i], err.detail);
		T_OK(g == NULL && strcmp(err.code, "invalid_config") == 0, what);
		cx_egress_free(g);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		g = cx_egress_new(good[i], &err);
		snprintf(what, sizeof(what), "allow-list \"%s\" accepted", good[i]);
		T_OK(g != NULL, what);
		cx_egress_free(g);
	}
	cx_egress_free(NULL);
	g = cx_egress_new(NULL, &err);
	T_OK(g != NULL, "NULL allow-list = none");
	cx_egress_free(g);

	g = cx_egress_new("127.0.0.2/32, ::1/128, 10.20.0.0/16, 169.254.169.254/32", &err);
	T_OK(g != NULL, "allow-list with four entries");
	T_OK(addr_ok(g, "127.0.0.2", &why), "allow-listed 127.0.0.2 allowed");
	T_OK(!addr_ok(g, "127.0.0.1", &why) && !strcmp(why, "loopback"), "127.0.0.1 still refused");
	T_OK(!addr_ok(g, "127.0.0.3", &why), "127.0.0.3 still refused");
	T_OK(addr_ok(g, "::ffff:127.0.0.2", &why), "mapped form of an allowed v4 allowed");
	T_OK(!addr_ok(g, "::ffff:127.0.0.1", &why), "mapped form of a refused v4 refused");
	T_OK(!addr_ok(g, "::127.0.0.2", &why), "compatible form is not the mapped form");
	T_OK(addr_ok(g, "::1", &why), "allow-listed ::1 allowed");
	T_OK(addr_ok(g, "10.20.255.1", &why), "inside allowed /16");
	T_OK(!addr_ok(g, "10.21.0.1", &why) && !strcmp(why, "private"), "outside allowed /16 refused");
	T_OK(addr_ok(g, "169.254.169.254", &why), "an allow-list entry wins over metadata");
	T_OK(addr_ok(g, "8.8.8.8", &why), "public still allowed with an allow-list");
	cx_egress_free(g);

	g = cx_egress_new("0.0.0.0/0", &err);
	T_OK(addr_ok(g, "127.0.0.1", &why) && addr_ok(g, "::ffff:10.0.0.1", &why) && !addr_ok(g, "::1", &why),
	     "0.0.0.0/0 allows every v4 (and its mapped form), not v6");
	cx_egress_free(g);
}

static const struct { const char *url; int rc; const char *needle; } urls[] = {
	{ "https://api.example.com/v1/tickets?x=1", 0, NULL },
	{ "http://api.example.com:8080/", 0, NULL },
	{ "https://8.8.8.8/", 0, NULL },
	{ "https://[2606:4700:4700::1111]/", 0, NULL },
	{ "HTTPS://Example.COM/", 0, NULL },
	{ "https://my_host.internal.example/", 0, NULL },
	{ "https://example.com./", 0, NULL },
	{ "https://1.example.com/", 0, NULL },
	{ "https://0x.example/", 0, NULL },
	{ "file:///etc/passwd", CX_EGRESS_ESCHEME, "\"file\"" },
	{ "gopher://127.0.0.2:70/", CX_EGRESS_ESCHEME, "\"gopher\"" },
	{ "ftp://example.com/", CX_EGRESS_ESCHEME, "\"ftp\"" },
	{ "dict://example.com:11211/stat", CX_EGRESS_ESCHEME, "\"dict\"" },
	{ "ldap://example.com/", CX_EGRESS_ESCHEME, "\"ldap\"" },
	{ "javascript:alert(1)", CX_EGRESS_ESCHEME, "\"javascript\"" },
	{ "Gopher://x/", CX_EGRESS_ESCHEME, "\"gopher\"" },
	{ "https://user:secret@example.com/", CX_EGRESS_EREFUSED, "credentials" },
	{ "https://user@example.com/", CX_EGRESS_EREFUSED, "credentials" },
	{ "http://127.0.0.1/", CX_EGRESS_EREFUSED, "loopback" },
	{ "http://10.0.0.1/", CX_EGRESS_EREFUSED, "private" },
	{ "http://169.254.169.254/latest/meta-data", CX_EGRESS_EREFUSED, "metadata" },
	{ "http://[::1]:8080/", CX_EGRESS_EREFUSED, "loopback" },
	{ "http://[::ffff:127.0.0.1]/", CX_EGRESS_EREFUSED, "loopback" },
	{ "http://[::ffff:a9fe:a9fe]/", CX_EGRESS_EREFUSED, "metadata" },
	{ "http://[fd00:ec2::254]/", CX_EGRESS_EREFUSED, "metadata" },
	{ "http://0x7f000001/", CX_EGRESS_EREFUSED, "loopback" },
	{ "http://2130706433/", CX_EGRESS_EREFUSED, "loopback" },
	{ "http://0177.0.0.1/", CX_EGRESS_EREFUSED, "loopback" },
	{ "http://127.1/", CX_EGRESS_EREFUSED, "loopback" },
	{ "http://0/", CX_EGRESS_EREFUSED, "unspecified" },
	{ "http://0.0.0.0:80/", CX_EGRESS_EREFUSED, "unspecified" },
	{ "http://0xa9.0xfe.0xa9.0xfe/", CX_EGRESS_EREFUSED, "metadata" },
	{ "http://168.63.129.16/", CX_EGRESS_EREFUSED, "metadata" },
	{ "http://100.100.100.200/", CX_EGRESS_EREFUSED, "metadata" },
	{ "http://[fe80::1%25eth0]/", CX_EGRESS_EREFUSED, "zone" },
	{ "", CX_EGRESS_EINVAL, "empty" },
	{ "example.com/path", CX_EGRESS_EINVAL, "http://" },
	{ "//example.com/", CX_EGRESS_EINVAL, "http://" },
	{ "https:/27.1/", CX_EGRESS_EINVAL, "http://" },
	{ "https:example.com", CX_EGRESS_EINVAL, "http://" },
	{ "https:///example.com/", CX_EGRESS_EINVAL, "http://" },
	{ "http:\\\\127.0.0.1/", CX_EGRESS_EINVAL, NULL },
	{ "https://", CX_EGRESS_EINVAL, NULL },
	{ "https://exa mple.com/", CX_EGRESS_EINVAL, "space" },
	{ "https://example.com/\n", CX_EGRESS_EINVAL, "control" },
	{ "https://example.com:0/", CX_EGRESS_EINVAL, "port" },
	{ "https://example.com:65536/", CX_EGRESS_EINVAL, NULL },
	{ "https://example.com:99999/", CX_EGRESS_EINVAL, NULL },
	{ "https://-bad.example.com/", CX_EGRESS_EINVAL, "host" },
	{ "https://a..b/", CX_EGRESS_EINVAL, NULL },
	{ "https://1.2.3.4.5/", CX_EGRESS_EINVAL, NULL },
	{ "https://999.1.1.1/", CX_EGRESS_EINVAL, NULL },
	{ "https://example.0x1f/", CX_EGRESS_EINVAL, NULL },
	{ "https://%31%32%37.0.0.1/", CX_EGRESS_EREFUSED, "loopback" },	/* curl decodes the host */
	{ "https://[::1/", CX_EGRESS_EINVAL, NULL },
	{ "https://[zz::1]/", CX_EGRESS_EINVAL, NULL },
	{ "https://ex\xc3\xa4mple.com/", CX_EGRESS_EINVAL, "non-ASCII" },
};

static void test_urls(void)
{
	cx_egress_t *g;
	mf_err_t err;
	char what[256];

	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		int rc;

		mf_err_clear(&err);
		rc = cx_egress_url_check(NULL, urls[i].url, &err);
		snprintf(what, sizeof(what), "url \"%.80s\" -> %d %.120s", urls[i].url, urls[i].rc, rc ? err.detail : "");
		T_OK(rc == urls[i].rc && (urls[i].needle == NULL || strstr(err.detail, urls[i].needle)), what);
		if (rc != urls[i].rc)
			printf("#   got %d: %s\n", rc, err.detail);
		if (rc)
			T_OK(err.status == 400 && strstr(err.detail, "secret") == NULL &&
			     strstr(err.detail, "meta-data") == NULL, "detail has no userinfo or path");
	}
	g = cx_egress_new("127.0.0.2/32", &err);
	T_OK(cx_egress_url_check(g, "http://127.0.0.2:8080/", &err) == 0, "allow-listed literal passes");
	T_OK(cx_egress_url_check(g, "http://[::ffff:127.0.0.2]:8080/", &err) == 0, "its mapped literal passes");
	T_OK(cx_egress_url_check(g, "http://127.0.0.1:8080/", &err) == CX_EGRESS_EREFUSED, "127.0.0.1 still refused");
	T_OK(cx_egress_url_check(g, "http://localhost:8080/", &err) == 0, "a name is judged at connect time");
	cx_egress_free(g);
	T_OK(cx_egress_url_check(NULL, NULL, &err) == CX_EGRESS_EINVAL, "NULL url");
	T_OK(cx_egress_url_check_ex(NULL, NULL, true, &err) == CX_EGRESS_EINVAL, "NULL url, allow_private");
	{
		char longurl[9000];

		memset(longurl, 'a', sizeof(longurl) - 1);
		memcpy(longurl, "https://x.example/", 18);
		longurl[sizeof(longurl) - 1] = '\0';
		T_OK(cx_egress_url_check(NULL, longurl, &err) == CX_EGRESS_EINVAL, "over 8 KiB refused");
	}
}

/* Literal addresses in URLs follow the same relaxation; everything else
 * the URL check refuses (schemes, userinfo, syntax) is unaffected. */
static void test_urls_allow_private(void)
{
	static const char *const ok_with[] = {
		"http://127.0.0.1/", "http://[::1]:8080/", "http://0x7f000001/", "http://2130706433/",
		"http://0177.0.0.1/", "http://127.1/", "http://%31%32%37.0.0.1/", "http://[::ffff:127.0.0.1]/",
		"http://10.0.0.1/", "https://192.168.1.10:8443/api", "http://172.16.0.1/", "http://100.64.0.1/",
		"http://169.254.1.1/", "http://[fd12:3456::1]/", "http://[fe80::1]/",
	};
	static const struct { const char *url; int rc; const char *needle; } refused_with[] = {
		{ "http://169.254.169.254/latest/meta-data", CX_EGRESS_EREFUSED, "metadata" },
		{ "http://0xa9fea9fe/", CX_EGRESS_EREFUSED, "metadata" },
		{ "http://169.254.170.2/v2/credentials", CX_EGRESS_EREFUSED, "metadata" },
		{ "http://[fd00:ec2::254]/", CX_EGRESS_EREFUSED, "metadata" },
		{ "http://[::ffff:a9fe:a9fe]/", CX_EGRESS_EREFUSED, "metadata" },
		{ "http://100.100.100.200/", CX_EGRESS_EREFUSED, "metadata" },
		{ "http://168.63.129.16/", CX_EGRESS_EREFUSED, "metadata" },
		{ "http://0/", CX_EGRESS_EREFUSED, "unspecified" },
		{ "http://[::]/", CX_EGRESS_EREFUSED, "unspecified" },
		{ "http://224.0.0.1/", CX_EGRESS_EREFUSED, "multicast" },
		{ "http://255.255.255.255/", CX_EGRESS_EREFUSED, "broadcast" },
		{ "http://192.0.2.1/", CX_EGRESS_EREFUSED, "documentation" },
		{ "http://240.0.0.1/", CX_EGRESS_EREFUSED, "reserved" },
		{ "http://user:secret@127.0.0.1/", CX_EGRESS_EREFUSED, "credentials" },
		{ "http://[fe80::1%25eth0]/", CX_EGRESS_EREFUSED, "zone" },
		{ "gopher://127.0.0.1:70/", CX_EGRESS_ESCHEME, "\"gopher\"" },
		{ "https://127.0.0.1:0/", CX_EGRESS_EINVAL, "port" },
	};
	char what[256];
	mf_err_t err;

	for (size_t i = 0; i < sizeof(ok_with) / sizeof(ok_with[0]); i++) {
		int strict = cx_egress_url_check(NULL, ok_with[i], &err);
		int relaxed = cx_egress_url_check_ex(NULL, ok_with[i], true, &err);

		snprintf(what, sizeof(what), "url \"%s\": refused strictly, passes with allow_private", ok_with[i]);
		T_OK(strict == CX_EGRESS_EREFUSED && relaxed == 0, what);
	}
	for (size_t i = 0; i < sizeof(refused_with) / sizeof(refused_with[0]); i++) {
		int rc;

		mf_err_clear(&err);
		rc = cx_egress_url_check_ex(NULL, refused_with[i].url, true, &err);
		snprintf(what, sizeof(what), "url \"%s\" with allow_private -> %d (%.120s)", refused_with[i].url,
			 refused_with[i].rc, err.detail);
		T_OK(rc == refused_with[i].rc && strstr(err.detail, refused_with[i].needle), what);
	}
	/* allow_private false is exactly the strict check, over the whole table. */
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		if (cx_egress_url_check_ex(NULL, urls[i].url, false, &err) != urls[i].rc) {
			snprintf(what, sizeof(what), "url \"%.80s\": _ex(false) differs from the strict check", urls[i].url);
			T_OK(false, what);
		}
	}
	T_OK(true, "cx_egress_url_check_ex(false) agrees with cx_egress_url_check on every URL of the table");
}

int main(void)
{
	test_rules();
	test_allow_private();
	test_allow_list();
	test_urls();
	test_urls_allow_private();
	return t_done();
}
