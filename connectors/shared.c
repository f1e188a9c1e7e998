/*
 * shared.c - what every worker of the process must agree on about a
 * connector: its OAuth2 access token (fetched by one caller while the
 * others wait, then reused until shortly before it expires) and the hold a
 * peer imposed with 429/503 Retry-After.
 *
 * One mutex guards the table: it is taken once or twice per call, for a
 * hash lookup and a copy, never across I/O.  Tokens live in sodium_malloc'd
 * memory (locked, kept out of core dumps) and are wiped when dropped.
 * Waiters poll rather than being called back across threads: a call that
 * finds a fetch under way looks again a few milliseconds later on its own
 * loop, so no pointer to a call ever crosses a thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "connectors/cx.h"

#define KEY_MAX 160
#define TOKEN_MAX 8192

typedef struct sh_entry {
	struct sh_entry *next;
	char key[KEY_MAX];
	enum cx_tok_state state;
	unsigned gen;
	char *token;			/* sodium_malloc'd, or NULL */
	long long expires_ms;
	long long failed_ms;
	char detail[160];
	long long hold_until;
	long long touched;
} sh_entry_t;

struct cx_shared {
	pthread_mutex_t mu;
	sh_entry_t **slots;
	size_t nslots, n, max;
};

static size_t slot_of(const cx_shared_t *s, const char *key)
{
	unsigned long long h = 1469598103934665603ull;

	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (size_t)(h % s->nslots);
}

cx_shared_t *cx_shared_new(size_t max_entries)
{
	cx_shared_t *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->max = max_entries ? max_entries : 10000;
	s->nslots = s->max / 2 + 1;
	s->slots = calloc(s->nslots, sizeof(*s->slots));
	if (s->slots == NULL || pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s->slots);
		free(s);
		return NULL;
	}
	return s;
}

static void drop_token(sh_entry_t *e)
{
	if (e->token) {
		sodium_free(e->token);	/* wipes */
		e->token = NULL;
	}
}

void cx_shared_free(cx_shared_t *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nslots; i++) {
		while (s->slots[i]) {
			sh_entry_t *e = s->slots[i];

			s->slots[i] = e->next;
			drop_token(e);
			free(e);
		}
	}
	pthread_mutex_destroy(&s->mu);
	free(s->slots);
	free(s);
}

/* Removes entries nobody needs any more: no fetch under way, token and
 * hold expired.  Called when the table is full. */
static void sweep(cx_shared_t *s, long long now)
{
	for (size_t i = 0; i < s->nslots; i++) {
		sh_entry_t **pp = &s->slots[i];

		while (*pp) {
			sh_entry_t *e = *pp;

			if (e->state != CX_TOK_FETCHING && e->expires_ms <= now && e->hold_until <= now &&
			    now - e->touched > 1000) {
				*pp = e->next;
				drop_token(e);
				free(e);
				s->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* The entry of key, created when missing (NULL when the table is full of
 * live entries or out of memory: the caller then works without sharing). */
static sh_entry_t *lookup(cx_shared_t *s, const char *key, long long now, bool create)
{
	size_t i = slot_of(s, key);
	sh_entry_t *e;

	for (e = s->slots[i]; e; e = e->next)
		if (strcmp(e->key, key) == 0) {
			/* only forward: cx_tok_done and cx_tok_drop look up
			 * without a clock (now 0), which must not make a live
			 * entry look a second idle to sweep() */
			if (now > e->touched)
				e->touched = now;
			return e;
		}
	if (!create || strlen(key) >= KEY_MAX)
		return NULL;
	if (s->n >= s->max)
		sweep(s, now);
	if (s->n >= s->max || (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	memcpy(e->key, key, strlen(key) + 1);
	e->touched = now;
	e->next = s->slots[i];
	s->slots[i] = e;
	s->n++;
	return e;
}

enum cx_tok_state cx_tok_get(cx_shared_t *s, const char *key, long long now_ms, char *out, size_t len,
			     cx_tok_view_t *view)
{
	enum cx_tok_state st;
	sh_entry_t *e;

	pthread_mutex_lock(&s->mu);
	e = lookup(s, key, now_ms, true);
	if (e == NULL) {
		/* no room to share: the caller fetches for itself */
		pthread_mutex_unlock(&s->mu);
		view->state = CX_TOK_EMPTY;
		view->gen = 0;
		return CX_TOK_EMPTY;
	}
	if (e->state == CX_TOK_READY && e->expires_ms > now_ms && e->token && strlen(e->token) < len) {
		memcpy(out, e->token, strlen(e->token) + 1);
		st = CX_TOK_READY;
	} else if (e->state == CX_TOK_READY && e->expires_ms > now_ms && e->token) {
		/* a good token this caller has no room for: it fails alone
		 * rather than throwing away everyone's token to fetch anew */
		st = CX_TOK_FAILED;
		snprintf(view->detail, sizeof(view->detail), "the access token is longer than %zu bytes",
			 len ? len - 1 : 0);
	} else if (e->state == CX_TOK_FETCHING) {
		st = CX_TOK_FETCHING;
	} else if (e->state == CX_TOK_FAILED && view->gen == e->gen && view->state == CX_TOK_FETCHING) {
		/* the fetch this caller waited for failed: it fails too rather
		 * than starting a storm of fetches against a broken endpoint */
		st = CX_TOK_FAILED;
		memcpy(view->detail, e->detail, sizeof(view->detail));
	} else {
		drop_token(e);
		e->state = CX_TOK_FETCHING;
		e->gen++;
		st = CX_TOK_EMPTY;
	}
	view->gen = e->gen;
	view->state = st;
	pthread_mutex_unlock(&s->mu);
	return st;
}

void cx_tok_done(cx_shared_t *s, const char *key, const char *token, long long expires_ms, const char *detail)
{
	sh_entry_t *e;
	size_t n = token ? strlen(token) : 0;

	pthread_mutex_lock(&s->mu);
	e = lookup(s, key, 0, false);
	if (e) {
		drop_token(e);
		if (token && n < TOKEN_MAX && (e->token = sodium_malloc(n + 1)) != NULL) {
			memcpy(e->token, token, n + 1);
			e->expires_ms = expires_ms;
			e->state = CX_TOK_READY;
		} else if (token == NULL && detail == NULL) {
			e->state = CX_TOK_EMPTY;	/* abandoned: the next caller fetches */
		} else {
			e->state = CX_TOK_FAILED;
			snprintf(e->detail, sizeof(e->detail), "%s", detail ? detail : "the token could not be kept");
		}
	}
	pthread_mutex_unlock(&s->mu);
}

void cx_tok_drop(cx_shared_t *s, const char *key, const char *token)
{
	sh_entry_t *e;

	if (token == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	e = lookup(s, key, 0, false);
	if (e && e->state == CX_TOK_READY && e->token && strlen(token) == strlen(e->token) &&
	    sodium_memcmp(e->token, token, strlen(token)) == 0) {
		drop_token(e);
		e->state = CX_TOK_EMPTY;
	}
	pthread_mutex_unlock(&s->mu);
}

void cx_hold_set(cx_shared_t *s, const char *key, long long until_ms)
{
	sh_entry_t *e;

	pthread_mutex_lock(&s->mu);
	e = lookup(s, key, until_ms, true);
	if (e && until_ms > e->hold_until)
		e->hold_until = until_ms;
	pthread_mutex_unlock(&s->mu);
}

long long cx_hold_get(cx_shared_t *s, const char *key, long long now_ms)
{
	long long until = 0;
	sh_entry_t *e;

	pthread_mutex_lock(&s->mu);
	e = lookup(s, key, now_ms, false);
	if (e && e->hold_until > now_ms)
		until = e->hold_until;
	pthread_mutex_unlock(&s->mu);
	return until;
}
