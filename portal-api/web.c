/*
 * web.c - the portal page (docs/portal.md, "The portal page"): a static
 * single page that a client's users open in a browser and that speaks
 * the /portal/v1 API of the same portal.  Its three files are compiled in
 * (portal-api/gen_web.py, pa_web_assets); nothing here reads a disk.
 *
 *   GET /portal/             Host form: the portal whose verified domain is Host
 *   GET /portal/c/{portal}/  path form: the portal with that slug
 *   GET .../app.js, .../style.css   the page's assets, under either form
 *   GET /portal, /portal/c/{portal}  308 to the same with a trailing '/'
 *
 * index.html names its assets relatively ("app.js"), so one page serves
 * both forms.  Every answer first finds the portal as the API does
 * (pa_portal_find): the page of an unknown, suspended or foreign portal is
 * 404, so a page never outlives its portal.  The bytes are the same for
 * every portal, and carry no brand: app.js themes the page from the
 * portal's /branding.  Hence one ETag per file (a hash taken at build
 * time), and Cache-Control no-cache: browsers keep the file but ask again
 * each time, which costs a 304 and still lets a suspension show at once.
 */
#include <stdio.h>
#include <string.h>

#include "portal-api/pa.h"

/* The API's security headers, with a CSP that lets the page run its own
 * script and style and nothing else: no inline code, no third-party
 * origin but for the logo (an msp's logo_url is any https: URL). */
static const char page_csp[] =
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

static const char not_available[] =
	"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not available</title></head>\n"
	"<body><p>This portal is not available.</p></body></html>\n";

/* A redirect route's argument: anything but an asset. */
static const char redirect_marker;

static void page_headers(gw_req_t *req)
{
	gw_res_header(req, "X-Content-Type-Options", "nosniff");
	gw_res_header(req, "X-Frame-Options", "DENY");
	gw_res_header(req, "Content-Security-Policy", page_csp);
	gw_res_header(req, "Referrer-Policy", "no-referrer");
	gw_res_header(req, "Strict-Transport-Security", "max-age=31536000");
	gw_res_header(req, "Cross-Origin-Opener-Policy", "same-origin");
	gw_res_header(req, "Cross-Origin-Resource-Policy", "same-origin");
	gw_res_header(req, "Cache-Control", "no-cache");
}

/* Does If-None-Match (a list of entity tags, or "*") hold etag?  The
 * comparison is the weak one RFC 9110 13.1.2 asks for: W/ is ignored. */
static bool etag_matches(const char *inm, const char *etag)
{
	size_t n = strlen(etag);

	while (inm && *inm) {
		size_t len;

		inm += strspn(inm, " \t,");
		if (*inm == '*')
			return true;
		if (strncmp(inm, "W/", 2) == 0)
			inm += 2;
		len = strcspn(inm, ",");
		while (len && (inm[len - 1] == ' ' || inm[len - 1] == '\t'))
			len--;
		if (len == n && memcmp(inm, etag, n) == 0)
			return true;
		inm += strcspn(inm, ",");
	}
	return false;
}

static void found(gw_req_t *req, const char *tenant_id, void *arg)
{
	const pa_web_asset_t *a = arg;

	if (tenant_id == NULL) {
		gw_respond_raw(req, 404, "text/html; charset=utf-8", not_available, sizeof(not_available) - 1);
		return;
	}
	gw_req_set_tenant(req, tenant_id);
	if (arg == &redirect_marker) {
		char to[320];
		int n = snprintf(to, sizeof(to), "%s/", gw_req_path(req));

		if (n < 0 || (size_t)n >= sizeof(to)) {
			gw_respond_raw(req, 404, "text/html; charset=utf-8", not_available, sizeof(not_available) - 1);
			return;
		}
		gw_res_header(req, "Location", to);
		gw_respond_raw(req, 308, NULL, "", 0);
		return;
	}
	gw_res_header(req, "ETag", a->etag);
	if (etag_matches(gw_req_header(req, "if-none-match"), a->etag)) {
		gw_respond_raw(req, 304, NULL, "", 0);
		return;
	}
	gw_respond_raw(req, 200, a->content_type, a->data, a->len);
}

static void page_enter(gw_req_t *req, void *arg)
{
	page_headers(req);
	pa_portal_find(req, found, arg);
}

int pa_web_routes(pa_t *pa, gw_router_t *api)
{
	static const char *const prefixes[] = { "/portal", "/portal/c/{portal}" };

	(void)pa;
	for (size_t k = 0; k < 2; k++) {
		char pattern[128];

		if (gw_router_add(api, "GET", prefixes[k], page_enter, (void *)&redirect_marker, 0) < 0)
			return -1;
		for (const pa_web_asset_t *a = pa_web_assets; a->name; a++) {
			/* index.html is the directory's page, never named in a URL */
			snprintf(pattern, sizeof(pattern), "%s/%s", prefixes[k],
				 strcmp(a->name, "index.html") == 0 ? "" : a->name);
			if (gw_router_add(api, "GET", pattern, page_enter, (void *)a, 0) < 0)
				return -1;
		}
	}
	return 0;
}
