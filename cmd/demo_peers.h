/*
 * demo_peers.h - the systems `mspflow dev --demo` pretends to be: a CRM, a
 * PSA, an ERP, an RMM and an OpenAI-compatible LLM, answering plausible
 * JSON on one loopback listener of their own (never the API's router, so
 * `mspflow routes` and the OpenAPI document do not see them).
 *
 * Paths are prefixed by the system: /crm/..., /psa/..., /erp/...,
 * /rmm/..., /llm/v1/chat/completions.  GET /calls answers the last calls
 * received (at most MF_PEERS_MAX_CALLS, oldest first), so a walkthrough can
 * show what the PSA was sent.
 *
 * Threading: the peers run on a thread of their own with their own event
 * base; the handle is only touched by the thread that started it.
 */
#ifndef MF_DEMO_PEERS_H
#define MF_DEMO_PEERS_H

#include "core/err.h"

#define MF_PEERS_MAX_CALLS 200

typedef struct mf_peers mf_peers_t;

/* Binds 127.0.0.1:0 and starts serving; NULL with err when it cannot. */
mf_peers_t *mf_peers_start(mf_err_t *err) __attribute__((warn_unused_result));
/* The listener's port. */
int mf_peers_port(const mf_peers_t *p);
/* Stops the thread and frees everything; accepts NULL. */
void mf_peers_stop(mf_peers_t *p);

#endif
