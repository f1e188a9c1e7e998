/*
 * vault_admin.c - `mspflow vault rotate-master`: re-wraps every tenant data
 * key and re-seals every JWT signing key under a new master key while
 * servers keep running.  Blocking libpq: a command, never an event loop.
 *
 * With master_key_file (the servers re-read it when they meet a kid they
 * do not know):
 *   1. generate the new key; rewrite the file atomically as "new\nold...";
 *   2. record the new kid in platform.vault_master: the UPDATE waits for
 *      every transaction that is creating a data key (they read that row
 *      FOR SHARE), and later ones wrap under the new key (re-reading the
 *      file to find it);
 *   3. wait two seconds, so that every server's once-a-second limit on
 *      re-reading the file has passed since step 1;
 *   4. re-wrap the data keys in batches, each row in its own statement
 *      and only if it is still wrapped by the kid we read (a crash midway
 *      leaves every row openable: the file holds both keys); re-seal the
 *      signing keys the same way;
 *   5. when nothing is left under an old key, rewrite the file with the
 *      new key alone.
 * With master_key / MSPFLOW_MASTER_KEY (the operator lists the new key
 * first and the old ones after it, on every instance): steps 2 and 4
 * under the first key of the list, then a report of what other keys
 * still wrap.  The summary names kids and counts, never keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "connectors/vault_int.h"
#include "core/log.h"
#include "tenants/tenants.h"

#define BATCH "500"

typedef struct rewrap_report {
	int rewrapped, already, unopenable, changed;
} rewrap_report_t;

/* Re-wraps every data key not wrapped by the ring's first key, keyset
 * paginated so rows that cannot be opened are skipped, not retried. */
static int rewrap_all(PGconn *c, const mf_master_ring_t *ring, rewrap_report_t *rep, mf_err_t *err)
{
	const char *target = mf_master_ring_kid(ring, 0);
	char last_t[37] = "00000000-0000-0000-0000-000000000000", last_v[16] = "0";
	unsigned char *dek = sodium_malloc(CX_DEK_BYTES);

	memset(rep, 0, sizeof(*rep));
	if (dek == NULL)
		return mf_err_set(err, 500, "out_of_memory", "out of memory");
	for (;;) {
		const char *p[3] = { target, last_t, last_v };
		PGresult *r = mf_pg_exec(c, "SELECT tenant_id, version, master_kid, wrapped FROM platform.tenant_keys "
				     "WHERE master_kid <> $1 AND (tenant_id, version) > ($2::uuid, $3::int) "
				     "ORDER BY tenant_id, version LIMIT " BATCH, 3, p, err);
		int n;

		if (r == NULL) {
			sodium_free(dek);
			return -1;
		}
		n = PQntuples(r);
		for (int i = 0; i < n; i++) {
			const char *t = PQgetvalue(r, i, 0), *v = PQgetvalue(r, i, 1), *kid = PQgetvalue(r, i, 2);
			unsigned char *w, out[CX_WRAPPED_BYTES];
			char newkid[MF_MASTER_KID_HEX + 1], *text;
			size_t wlen = 0;
			int rc;

			snprintf(last_t, sizeof(last_t), "%s", t);
			snprintf(last_v, sizeof(last_v), "%s", v);
			w = cx_bytea_decode(PQgetvalue(r, i, 3), &wlen);
			rc = w ? cx_vault_dek_unwrap(ring, t, atoi(v), kid, w, wlen, dek) : -1;
			free(w);
			if (rc < 0) {
				mf_warn("vault", "a tenant data key opens under no master key of the ring",
					MF_S("tenant_id", t), MF_S("version", v), MF_S("master_kid", kid));
				rep->unopenable++;
				continue;
			}
			rc = cx_vault_dek_wrap(ring, 0, t, atoi(v), dek, out, newkid);
			sodium_memzero(dek, CX_DEK_BYTES);
			text = rc == 0 ? cx_bytea_encode(out, sizeof(out)) : NULL;
			if (text == NULL) {
				PQclear(r);
				sodium_free(dek);
				return mf_err_set(err, 500, "out_of_memory", "out of memory");
			}
			{
				/* only if nobody changed it meanwhile (a tenant rotation,
				 * a deletion, another rotate-master) */
				const char *u[5] = { t, v, kid, newkid, text };
				PGresult *ur = mf_pg_exec(c, "UPDATE platform.tenant_keys SET master_kid = $4, wrapped = $5::bytea "
						      "WHERE tenant_id = $1::uuid AND version = $2::int AND master_kid = $3",
						   5, u, err);

				free(text);
				if (ur == NULL) {
					PQclear(r);
					sodium_free(dek);
					return -1;
				}
				if (strcmp(PQcmdTuples(ur), "1") == 0)
					rep->rewrapped++;
				else
					rep->changed++;
				PQclear(ur);
			}
		}
		PQclear(r);
		if (n == 0)
			break;
	}
	sodium_free(dek);
	return 0;
}

/* {"kid": rows} of data keys not wrapped by kid; *left gets the total. */
static json_t *left_by_kid(PGconn *c, const char *kid, int *left, mf_err_t *err)
{
	const char *p[1] = { kid };
	PGresult *r = mf_pg_exec(c, "SELECT master_kid, count(*) FROM platform.tenant_keys WHERE master_kid <> $1 "
			     "GROUP BY master_kid ORDER BY master_kid", 1, p, err);
	json_t *o;

	*left = 0;
	if (r == NULL)
		return NULL;
	o = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		*left += atoi(PQgetvalue(r, i, 1));
		json_object_set_new(o, PQgetvalue(r, i, 0), json_integer(atoi(PQgetvalue(r, i, 1))));
	}
	PQclear(r);
	return o;
}

static int set_sealing_kid(PGconn *c, const char *kid, mf_err_t *err)
{
	const char *p[1] = { kid };
	PGresult *r = mf_pg_exec(c, "UPDATE platform.vault_master SET sealing_kid = $1, updated_at = now()", 1, p, err);

	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

/* base64 text of every key of ring, new first (sodium_malloc'd lines). */
static char **ring_lines(const mf_master_ring_t *ring, int from, int *n)
{
	int count = mf_master_ring_count(ring) - from;
	char **lines = calloc((size_t)(count > 0 ? count : 1), sizeof(char *));

	*n = 0;
	if (lines == NULL)
		return NULL;
	for (int i = 0; i < count; i++) {
		lines[i] = sodium_malloc(MF_MASTER_KEY_TEXT);
		if (lines[i] == NULL)
			return lines;	/* the caller frees what there is */
		sodium_bin2base64(lines[i], MF_MASTER_KEY_TEXT, mf_master_ring_key(ring, from + i), MF_MASTER_KEY_BYTES,
				  sodium_base64_VARIANT_ORIGINAL);
		(*n)++;
	}
	return lines;
}

static void lines_free(char **lines, int n)
{
	for (int i = 0; lines && i < n; i++)
		sodium_free(lines[i]);
	free(lines);
}

static json_t *kids_json(const mf_master_ring_t *ring, int from)
{
	json_t *a = json_array();

	for (int i = from; i < mf_master_ring_count(ring); i++)
		json_array_append_new(a, json_string(mf_master_ring_kid(ring, i)));
	return a;
}

static int rewrap_and_reseal(PGconn *c, const mf_master_ring_t *ring, json_t *summary, mf_err_t *err)
{
	rewrap_report_t rw;
	tn_reseal_report_t rs;

	if (set_sealing_kid(c, mf_master_ring_kid(ring, 0), err) < 0)
		return -1;
	if (rewrap_all(c, ring, &rw, err) < 0 || tn_keys_reseal(c, ring, &rs, err) < 0)
		return -1;
	json_object_set_new(summary, "tenant_keys", json_pack("{s:i,s:i,s:i}", "rewrapped", rw.rewrapped,
		"changed_meanwhile", rw.changed, "unopenable", rw.unopenable));
	json_object_set_new(summary, "signing_keys", json_pack("{s:i,s:i,s:i}", "resealed", rs.resealed,
		"already", rs.already, "unopenable", rs.unopenable));
	return rw.unopenable + rs.unopenable;
}

int cx_vault_rotate_master(const mf_config_t *cfg, FILE *out, mf_err_t *err)
{
	mf_master_ring_t *old = NULL, *both = NULL, *fresh = NULL;
	char newkey[MF_MASTER_KEY_TEXT + 8];
	char **lines = NULL;
	int nlines = 0, rc = -1, bad, left = 0;
	json_t *summary = json_object(), *still;
	PGconn *c = NULL;
	char *text;

	if (cfg->database_url[0] == '\0') {
		mf_err_set(err, 400, "invalid_config", "database_url is not set (config file or MSPFLOW_DATABASE_URL)");
		goto out;
	}
	if (mf_master_ring_load(cfg, &old, err) < 0)
		goto out;
	c = PQconnectdb(cfg->database_url);
	if (PQstatus(c) != CONNECTION_OK) {
		mf_err_set(err, 503, "database_unavailable", "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
		goto out;
	}
	if (cfg->master_key[0]) {
		/* keys from the configuration: re-wrap under the first one */
		json_object_set_new(summary, "mode", json_string("list"));
		json_object_set_new(summary, "sealing_kid", json_string(mf_master_ring_kid(old, 0)));
		json_object_set_new(summary, "other_kids", kids_json(old, 1));
		bad = rewrap_and_reseal(c, old, summary, err);
		if (bad < 0)
			goto out;
		still = left_by_kid(c, mf_master_ring_kid(old, 0), &left, err);
		if (still == NULL)
			goto out;
		json_object_set_new(summary, "still_wrapped_by_others", still);
		json_object_set_new(summary, "done", json_boolean(left == 0 && bad == 0));
		rc = left == 0 && bad == 0 ? 0 : 1;
		goto print;
	}
	/* keys from the file */
	json_object_set_new(summary, "mode", json_string("file"));
	if (mf_master_key_generate(newkey, sizeof(newkey)) < 0) {
		mf_err_set(err, 500, "internal_error", "cannot generate a key");
		goto out;
	}
	lines = ring_lines(old, 0, &nlines);
	if (lines == NULL || nlines != mf_master_ring_count(old) || nlines + 1 > MF_MASTER_MAX_KEYS) {
		mf_err_set(err, 500, "internal_error", nlines + 1 > MF_MASTER_MAX_KEYS
			   ? "the master key file holds too many keys" : "out of memory");
		goto out;
	}
	{
		const char **all = calloc((size_t)nlines + 1, sizeof(char *));
		size_t total = 0;

		if (all == NULL) {
			mf_err_set(err, 500, "out_of_memory", "out of memory");
			goto out;
		}
		all[0] = newkey;
		for (int i = 0; i < nlines; i++)
			all[i + 1] = lines[i];
		/* the ring the command works with: new first, then the old ones */
		for (int i = 0; i <= nlines; i++)
			total += strlen(all[i]) + 1;
		text = sodium_malloc(total + 1);
		if (text == NULL) {
			free(all);
			mf_err_set(err, 500, "out_of_memory", "out of memory");
			goto out;
		}
		text[0] = '\0';
		for (int i = 0; i <= nlines; i++) {
			strcat(text, all[i]);
			strcat(text, "\n");
		}
		rc = mf_master_ring_parse(text, strlen(text), &both, err);
		sodium_free(text);
		if (rc == 0)
			rc = mf_master_file_write(cfg->master_key_file, all, nlines + 1, err);
		free(all);
		if (rc < 0) {
			rc = -1;
			goto out;
		}
		rc = -1;
	}
	json_object_set_new(summary, "new_kid", json_string(mf_master_ring_kid(both, 0)));
	json_object_set_new(summary, "old_kids", kids_json(old, 0));
	if (set_sealing_kid(c, mf_master_ring_kid(both, 0), err) < 0)
		goto out;
	/* every server's one-second limit on re-reading the file has passed */
	sleep(2);
	bad = rewrap_and_reseal(c, both, summary, err);
	if (bad < 0)
		goto out;
	still = left_by_kid(c, mf_master_ring_kid(both, 0), &left, err);
	if (still == NULL)
		goto out;
	json_object_set_new(summary, "still_wrapped_by_others", still);
	if (left > 0 || bad > 0) {
		/* keep the old keys in the file: something still needs them */
		json_object_set_new(summary, "file", json_string("new key first, old keys kept"));
		json_object_set_new(summary, "done", json_false());
		rc = 1;
		goto print;
	}
	{
		const char *only[1] = { newkey };

		if (mf_master_file_write(cfg->master_key_file, only, 1, err) < 0)
			goto out;
	}
	json_object_set_new(summary, "file", json_string("new key only"));
	json_object_set_new(summary, "done", json_true());
	rc = 0;
print:
	text = json_dumps(summary, JSON_COMPACT);
	if (text)
		fprintf(out, "%s\n", text);
	free(text);
	if (rc > 0)
		mf_err_set(err, 409, "rotation_incomplete", "some keys are still wrapped by other master keys");
out:
	sodium_memzero(newkey, sizeof(newkey));
	lines_free(lines, nlines);
	mf_master_ring_unref(old);
	mf_master_ring_unref(both);
	mf_master_ring_unref(fresh);
	json_decref(summary);
	PQfinish(c);
	return rc == 0 ? 0 : -1;
}
