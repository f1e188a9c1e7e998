/*
 * route.c - the router: literal segments and {param} segments, per-method.
 *
 * Routes are few (tens) and matching is a scan that compares segments in
 * place without allocating; where two routes match, the one with a literal
 * segment at the first point of difference wins, so /items/new beats
 * /items/{id}.  The table is built before the server starts and only read
 * afterwards, so every worker thread shares it without locks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/route.h"

gw_router_t *gw_router_new(void)
{
	return calloc(1, sizeof(gw_router_t));
}

static void route_clear(gw_route_t *rt)
{
	free(rt->method);
	free(rt->pattern);
	for (int i = 0; i < rt->nseg; i++) {
		free(rt->seg[i]);
		free(rt->param[i]);
	}
}

void gw_router_free(gw_router_t *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < r->n; i++)
		route_clear(&r->routes[i]);
	free(r->routes);
	free(r);
}

int gw_router_add(gw_router_t *r, const char *method, const char *pattern,
		  gw_handler_fn fn, void *arg, unsigned flags)
{
	gw_route_t rt = { 0 };
	const char *p = pattern;

	if (pattern[0] != '/' || fn == NULL)
		return -1;
	rt.method = strdup(method);
	rt.pattern = strdup(pattern);
	if (rt.method == NULL || rt.pattern == NULL)
		goto fail;
	while (*p == '/') {
		const char *s = ++p, *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);

		if (rt.nseg == GW_MAX_SEGMENTS || (n == 0 && e))
			goto fail;
		if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
			rt.param[rt.nseg] = strndup(s + 1, n - 2);
			if (rt.param[rt.nseg] == NULL)
				goto fail;
		} else {
			rt.seg[rt.nseg] = strndup(s, n);
			if (rt.seg[rt.nseg] == NULL)
				goto fail;
		}
		rt.nseg++;
		p = s + n;
	}
	if (r->n == r->cap) {
		int cap = r->cap ? r->cap * 2 : 16;
		gw_route_t *nr = realloc(r->routes, (size_t)cap * sizeof(*nr));

		if (nr == NULL)
			goto fail;
		r->routes = nr;
		r->cap = cap;
	}
	rt.fn = fn;
	rt.arg = arg;
	rt.flags = flags;
	rt.id = r->n;
	r->routes[r->n++] = rt;
	return 0;
fail:
	route_clear(&rt);
	return -1;
}

void gw_router_each(const gw_router_t *r, void (*fn)(const gw_route_t *route, void *arg), void *arg)
{
	for (int i = 0; i < r->n; i++)
		fn(&r->routes[i], arg);
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into out (NUL-terminated).  Refuses bad escapes,
 * %00 and an encoded '/', which would change the path's shape. */
static int pct_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi, lo;

			if (i + 2 >= n)
				return -1;
			hi = unhex(s[i + 1]);
			lo = unhex(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0) || (hi == 2 && lo == 15))
				return -1;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return 0;
}

/* Splits path into segment (start, length) pairs; -1 if too many. */
static int split(const char *path, size_t len, const char **seg, size_t *seglen)
{
	int n = 0;
	size_t i = 0;

	if (len == 0 || path[0] != '/')
		return -1;
	while (i < len) {
		size_t s = ++i;

		while (i < len && path[i] != '/')
			i++;
		if (n == GW_MAX_SEGMENTS)
			return -1;
		seg[n] = path + s;
		seglen[n++] = i - s;
	}
	return n;
}

static void allow_add(gw_match_t *m, const char *method)
{
	size_t n = strlen(m->allow), k = strlen(method);

	/* skip duplicates: "GET" twice from two routes */
	for (const char *p = m->allow; (p = strstr(p, method)) != NULL; p += k)
		if ((p == m->allow || p[-1] == ' ') && (p[k] == ',' || p[k] == '\0'))
			return;
	if (n + k + 3 >= sizeof(m->allow))
		return;
	if (n)
		memcpy(m->allow + n, ", ", 2), n += 2;
	memcpy(m->allow + n, method, k + 1);
}

/* Does rt's pattern match the split path?  score: one bit per literal
 * segment, earlier segments weigh more, so literals beat parameters. */
static bool path_matches(const gw_route_t *rt, const char *const *seg, const size_t *seglen, int nseg,
			 unsigned *score)
{
	*score = 0;
	if (rt->nseg != nseg)
		return false;
	for (int k = 0; k < nseg; k++) {
		if (rt->seg[k] == NULL) {
			if (seglen[k] == 0)
				return false;	/* a parameter is never empty */
			continue;
		}
		if (strlen(rt->seg[k]) != seglen[k] || memcmp(rt->seg[k], seg[k], seglen[k]) != 0)
			return false;
		*score |= 1u << (GW_MAX_SEGMENTS - 1 - k);
	}
	return true;
}

void gw_router_match(const gw_router_t *r, const char *method, const char *path, size_t path_len,
		     char *scratch, gw_match_t *m)
{
	const char *seg[GW_MAX_SEGMENTS];
	size_t seglen[GW_MAX_SEGMENTS];
	const gw_route_t *best = NULL;
	unsigned best_score = 0;
	bool path_known = false, is_head = strcmp(method, "HEAD") == 0;
	int nseg = split(path, path_len, seg, seglen);

	memset(m, 0, sizeof(*m));
	m->status = 404;
	if (nseg < 0)
		return;
	for (int i = 0; i < r->n; i++) {
		const gw_route_t *rt = &r->routes[i];
		unsigned score;

		if (!path_matches(rt, seg, seglen, nseg, &score))
			continue;
		path_known = true;
		if (strcmp(rt->method, method) != 0 && !(is_head && strcmp(rt->method, "GET") == 0))
			continue;
		if (best == NULL || score > best_score) {
			best = rt;
			best_score = score;
		}
	}
	if (best == NULL) {
		if (!path_known)
			return;
		/* 405: list what the path does answer */
		m->status = 405;
		for (int i = 0; i < r->n; i++) {
			const gw_route_t *rt = &r->routes[i];
			unsigned score;

			if (!path_matches(rt, seg, seglen, nseg, &score))
				continue;
			allow_add(m, rt->method);
			if (strcmp(rt->method, "GET") == 0)
				allow_add(m, "HEAD");
		}
		return;
	}
	m->route = best;
	m->status = 0;
	for (int k = 0; k < nseg; k++) {
		if (best->seg[k] != NULL || m->nparams == GW_MAX_PARAMS)
			continue;
		if (pct_decode(seg[k], seglen[k], scratch) < 0) {
			m->route = NULL;
			m->status = 400;
			return;
		}
		m->pname[m->nparams] = best->param[k];
		m->pvalue[m->nparams++] = scratch;
		scratch += strlen(scratch) + 1;
	}
}

int gw_router_on_refusal(gw_router_t *r, const char *prefix, void (*fn)(gw_req_t *req))
{
	gw_refusal_hook_t *h;

	if (r->nhooks >= GW_MAX_REFUSAL_HOOKS || strlen(prefix) >= sizeof(h->prefix))
		return -1;
	h = &r->hooks[r->nhooks++];
	snprintf(h->prefix, sizeof(h->prefix), "%s", prefix);
	h->fn = fn;
	return 0;
}
