/*
 * demo.h - what `mspflow dev --demo` adds to `mspflow dev` (CONTRACT 9):
 * an msp "Northwind IT" with its brand, its client "Contoso" with the
 * verified portal domain contoso.localhost, portal users, connectors to
 * the demo peers (demo_peers.h), the shipped templates installed, and one
 * won deal whose run waits for Contoso's finance approval.
 *
 * Ordering: mf_demo_new runs before the server (it reads, on a blocking
 * connection, what an earlier start made, and STATE/demo.json); once the
 * API listens, mf_demo_start seeds on a thread of its own through the
 * server's public API - the same intake, checks and audit as any client's
 * calls, and nothing blocking on an event loop - then writes
 * STATE/demo.json (0600) and prints the demo's URLs and logins.  Every
 * step is idempotent, so each start repeats them: connectors follow the
 * peers' new port, nothing else is made twice.
 */
#ifndef MF_DEMO_H
#define MF_DEMO_H

#include "core/config.h"
#include "core/err.h"

typedef struct mf_demo mf_demo_t;

/* Before the server starts.  cfg (borrowed) must outlive the result;
 * peers_port is the demo peers' listener. */
mf_demo_t *mf_demo_new(const mf_config_t *cfg, int peers_port, mf_err_t *err) __attribute__((warn_unused_result));
/* Once the API listens at base_url (copied): seeds in the background as
 * the platform admin client_id / secret (copied, wiped when done). */
int mf_demo_start(mf_demo_t *d, const char *base_url, const char *client_id, const char *secret)
	__attribute__((warn_unused_result));
/* Cancels the seeding if it still runs, waits for it, frees; accepts
 * NULL.  After the server has stopped. */
void mf_demo_free(mf_demo_t *d);

#endif
