/*
 * trace.h - W3C Trace Context (level 1) `traceparent` values: parse,
 * validate, start a trace, derive a child span, format.
 *
 * The gateway parses the caller's header once per request (see
 * gw_req_trace()); connectors format a child span into the traceparent of
 * each outgoing call; the engine starts a trace per run.  Nothing here
 * records spans: the ids exist so that log lines of mspflow and of the
 * systems it talks to can be joined on trace_id.
 *
 * `tracestate` is not handled: mspflow adds no vendor entry, and carrying
 * the caller's list to outgoing calls is the connector layer's decision.
 *
 * Thread-safety: all functions are safe on any thread; the random ids come
 * from a per-thread ChaCha20 stream keyed from libsodium's randombytes
 * (re-keyed in a forked child).
 */
#ifndef MF_TRACE_H
#define MF_TRACE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

/* "00-" 32 hex "-" 16 hex "-" 2 hex: the length of a version-00 value. */
#define MF_TRACE_HEADER_LEN 55
/* Buffer size for mf_trace_format(): the value plus its NUL. */
#define MF_TRACE_HEADER_SIZE (MF_TRACE_HEADER_LEN + 1)
/* The only flag level 1 defines: the caller may have recorded the trace. */
#define MF_TRACE_SAMPLED 0x01

typedef struct mf_trace {
	char trace_id[33];	/* 32 lower-case hex digits, never all zero */
	/*
	 * 16 lower-case hex digits, never all zero.  After mf_trace_parse()
	 * this is the sender's span (the "parent-id" of the header); after
	 * mf_trace_new()/mf_trace_child() it is the holder's own span, i.e.
	 * what an outgoing traceparent carries as its parent-id.
	 */
	char parent_id[17];
	unsigned char flags;
} mf_trace_t;

/*
 * Parses a traceparent value s[0..len) (not necessarily NUL-terminated;
 * optional surrounding spaces/tabs are ignored).  Version 00 must be exactly
 * 55 characters; a higher version (not ff) is read by its first 55
 * characters when they are followed by '-' or the end, keeping only the
 * sampled flag, as the spec's forward-compatibility rule says.  Only
 * lower-case hex is valid; an all-zero trace-id or parent-id is invalid.
 * Returns 0 with t filled, or -1 with err (may be NULL) set to 400
 * "invalid_traceparent" and t untouched.
 */
int mf_trace_parse(mf_trace_t *t, const char *s, size_t len, mf_err_t *err)
	__attribute__((warn_unused_result));

/* A new trace: random trace-id and span id, flags 0 (nothing is sampled
 * here; a caller that records may set MF_TRACE_SAMPLED). */
void mf_trace_new(mf_trace_t *t);

/* A child span of parent: same trace-id and flags, a new random span id.
 * child may be the same object as parent. */
void mf_trace_child(const mf_trace_t *parent, mf_trace_t *child);

/* Writes "00-<trace-id>-<parent-id>-<flags>" and a NUL into out, which
 * must hold MF_TRACE_HEADER_SIZE bytes.  Returns 0, or -1 if outlen is too
 * small or t is not a valid trace (out is then "" when it has room). */
int mf_trace_format(const mf_trace_t *t, char *out, size_t outlen) __attribute__((warn_unused_result));

/* True when both ids are well-formed and non-zero. */
bool mf_trace_valid(const mf_trace_t *t);

#endif
