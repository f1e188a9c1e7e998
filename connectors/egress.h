/*
 * egress.h - the egress guard: which destinations a connector may reach.
 *
 * Connectors call systems whose address a tenant chose, so every outbound
 * connection is checked against one rule set: addresses that belong to the
 * platform's own network (loopback, RFC 1918, link-local, CGNAT, ULA,
 * cloud metadata services, multicast, reserved space, and IPv6 forms that
 * embed such an IPv4 address) are refused unless the operator allow-listed
 * them.  The guard is pure (no I/O, no DNS): cx_egress_url_check() judges a
 * URL as typed, and connectors/http.c checks the address actually being
 * connected, after resolution, with cx_egress_addr_ok().
 *
 * A tenant whose policy has egress.allow_private may reach its own private
 * network: the _ex variants take that per-call permission, which lifts the
 * "private" classes only (loopback, private, link_local, cgnat, ula, and
 * IPv6 forms embedding such an IPv4 address).  Metadata services,
 * multicast, broadcast, unspecified, reserved and documentation space stay
 * refused whatever the tenant's policy says: only the operator's
 * allow-list can open those.
 *
 * A cx_egress_t is immutable once built, so one guard may be shared by all
 * worker threads without locking.
 */
#ifndef CX_EGRESS_H
#define CX_EGRESS_H

#include <stdbool.h>
#include <sys/socket.h>

#include "core/err.h"

typedef struct cx_egress cx_egress_t;

/*
 * Builds a guard from the operator's allow-list: CIDRs separated by commas
 * and/or blanks, IPv4 or IPv6 ("127.0.0.2/32, ::1/128, 10.20.0.0/16"); a
 * bare address means that one host; "" or NULL allows nothing extra.
 * Parsing is strict: an entry with host bits set below its prefix
 * ("10.20.0.1/16") is refused as a probable typo, as are zone ids, prefix
 * lengths with leading zeros or out of range, empty entries and more than
 * 256 entries.  Returns a new guard (free with cx_egress_free) or NULL with
 * err set (400 "invalid_config", or 500 "out_of_memory").
 */
cx_egress_t *cx_egress_new(const char *allow, mf_err_t *err) __attribute__((warn_unused_result));
void cx_egress_free(cx_egress_t *g);	/* accepts NULL */

/*
 * True when a connection to sa may be made.  An allow-list match wins over
 * every rule, metadata addresses included (an allowed IPv4 network also
 * allows its IPv4-mapped IPv6 form).  Otherwise, on refusal, *why (if why
 * is not NULL) is set to a fixed word: "loopback", "private", "link_local",
 * "cgnat", "ula", "metadata", "multicast", "reserved", "documentation",
 * "broadcast", "unspecified" or "family" (not an IP socket address).
 * g may be NULL: no allow-list.
 */
bool cx_egress_addr_ok(const cx_egress_t *g, const struct sockaddr *sa, socklen_t len, const char **why);

/*
 * cx_egress_addr_ok, except that with allow_private an address refused as
 * "loopback", "private", "link_local", "cgnat" or "ula" is allowed.  Every
 * other refusal stands, so a metadata address inside link-local or CGNAT
 * space (169.254.169.254, 169.254.170.2, 100.100.100.200, fd00:ec2::254...)
 * is still refused as "metadata".  allow_private false is exactly
 * cx_egress_addr_ok.
 */
bool cx_egress_addr_ok_ex(const cx_egress_t *g, const struct sockaddr *sa, socklen_t len, bool allow_private,
			  const char **why);

/* Return codes of cx_egress_url_check, all negative. */
#define CX_EGRESS_EINVAL	(-1)	/* not a URL we accept: err code "invalid_url" */
#define CX_EGRESS_ESCHEME	(-2)	/* a scheme other than http/https: "egress_refused" */
#define CX_EGRESS_EREFUSED	(-3)	/* userinfo, or a literal address refused: "egress_refused" */

/*
 * Judges a connector base URL as a tenant saves it: only http and https,
 * no userinfo, a syntactically valid host, a port in 1..65535, and when the
 * host is a literal address (in any form libc or curl would accept:
 * 0x7f000001, 2130706433, 0177.0.0.1, 127.1, [::ffff:127.0.0.1]) the
 * address must pass cx_egress_addr_ok.  Host names are not resolved here:
 * they are judged by the address they resolve to at connect time.
 * Returns 0, or one of the codes above with err set (status 400; the
 * detail names the scheme or the reason, never the URL's query or
 * userinfo).  g may be NULL.
 */
int cx_egress_url_check(const cx_egress_t *g, const char *url, mf_err_t *err)
	__attribute__((warn_unused_result));

/*
 * cx_egress_url_check with a literal address judged by cx_egress_addr_ok_ex
 * (allow_private as there).  The transport uses it before each call with
 * that call's permission, so a literal URL and the connect-time check
 * agree.  Connector base URLs are still saved through the strict
 * cx_egress_url_check: a tenant's egress.allow_hosts never admits a
 * literal address, so a saved literal private URL could not be called.
 */
int cx_egress_url_check_ex(const cx_egress_t *g, const char *url, bool allow_private, mf_err_t *err)
	__attribute__((warn_unused_result));

#endif
