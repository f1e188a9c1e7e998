/*
 * test_vault.c - the vault's cryptography and the master key ring, without
 * a database: sealed boxes round-trip, every single-byte change of a box
 * and every change of where it belongs (tenant, name, version, data-key
 * version) makes it fail, data keys wrap and unwrap across a ring of two
 * master keys, an unknown kid is told apart, and the key-list parser
 * accepts what the documentation promises and refuses the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "connectors/vault.h"
#include "core/masterkey.h"
#include "t.h"

static const char *T1 = "11111111-1111-4111-8111-111111111111";
static const char *T2 = "22222222-2222-4222-8222-222222222222";

static mf_master_ring_t *ring_of(const char *text)
{
	mf_master_ring_t *r = NULL;
	mf_err_t err = { 0 };

	if (mf_master_ring_parse(text, strlen(text), &r, &err) < 0)
		printf("# parse: %s\n", err.detail);
	return r;
}

static void test_seal_roundtrip_and_tamper(void)
{
	unsigned char dek[CX_DEK_BYTES], box[256], out[256];
	const char *msg = "{\"token\":\"s3cr3t-value\"}";
	size_t mlen = strlen(msg), blen = mlen + CX_SEAL_OVERHEAD, outlen = 0;
	int bad = 0;

	randombytes_buf(dek, sizeof(dek));
	T_OK(cx_vault_seal(dek, T1, "crm", 3, 1, (const unsigned char *)msg, mlen, box) == 0, "seal");
	T_OK(cx_vault_unseal(dek, T1, "crm", 3, 1, box, blen, out, &outlen) == 0 && outlen == mlen &&
	     memcmp(out, msg, mlen) == 0, "a sealed box opens to the same bytes");
	T_OK(memmem(box, blen, "s3cr3t", 6) == NULL, "the box does not contain the plaintext");
	for (size_t i = 0; i < blen; i++) {
		for (int bit = 0; bit < 8; bit++) {
			box[i] ^= (unsigned char)(1u << bit);
			if (cx_vault_unseal(dek, T1, "crm", 3, 1, box, blen, out, &outlen) == 0)
				bad++;
			box[i] ^= (unsigned char)(1u << bit);
		}
	}
	T_OK(bad == 0, "every single-bit flip of every byte (nonce, ciphertext, tag) fails to open");
	bad = 0;
	for (size_t i = 0; i < blen; i++) {
		unsigned char keep = box[i];

		box[i] = (unsigned char)(keep + 1 + (i % 254));
		if (cx_vault_unseal(dek, T1, "crm", 3, 1, box, blen, out, &outlen) == 0)
			bad++;
		box[i] = keep;
	}
	T_OK(bad == 0, "every single-byte change fails to open");
	T_OK(cx_vault_unseal(dek, T1, "crm", 3, 1, box, blen - 1, out, &outlen) < 0, "a truncated box fails");
	T_OK(cx_vault_unseal(dek, T1, "crm", 3, 1, box, 10, out, &outlen) < 0, "a box shorter than its overhead fails");
	T_OK(cx_vault_unseal(dek, T2, "crm", 3, 1, box, blen, out, &outlen) < 0, "another tenant's AD fails");
	T_OK(cx_vault_unseal(dek, T1, "psa", 3, 1, box, blen, out, &outlen) < 0, "another credential name fails");
	T_OK(cx_vault_unseal(dek, T1, "crm", 2, 1, box, blen, out, &outlen) < 0, "another credential version fails");
	T_OK(cx_vault_unseal(dek, T1, "crm", 3, 2, box, blen, out, &outlen) < 0, "another data-key version fails");
	/* names that could be confused if the AD were a plain concatenation */
	T_OK(cx_vault_seal(dek, T1, "a", 12, 1, (const unsigned char *)msg, mlen, box) == 0 &&
	     cx_vault_unseal(dek, T1, "a", 1, 21, box, blen, out, &outlen) < 0, "(version 12, key 1) is not (1, 21)");
	dek[0] ^= 1;
	T_OK(cx_vault_seal(dek, T1, "crm", 3, 1, (const unsigned char *)msg, mlen, box) == 0, "seal again");
	dek[0] ^= 1;
	T_OK(cx_vault_unseal(dek, T1, "crm", 3, 1, box, blen, out, &outlen) < 0, "another data key fails");
	sodium_memzero(dek, sizeof(dek));
}

static void test_dek_wrap_two_keys(void)
{
	char k1[MF_MASTER_KEY_TEXT], k2[MF_MASTER_KEY_TEXT], list[128], kid[MF_MASTER_KID_HEX + 1];
	unsigned char dek[CX_DEK_BYTES], back[CX_DEK_BYTES], w[CX_WRAPPED_BYTES];
	mf_master_ring_t *both, *old_only, *new_only;
	int bad = 0;

	T_OK(mf_master_key_generate(k1, sizeof(k1)) == 0 && mf_master_key_generate(k2, sizeof(k2)) == 0, "keygen");
	snprintf(list, sizeof(list), "%s,\n %s", k2, k1);	/* new first, old after */
	both = ring_of(list);
	old_only = ring_of(k1);
	new_only = ring_of(k2);
	T_OK(both && old_only && new_only, "rings parse");
	if (!both || !old_only || !new_only)
		return;
	T_OK(mf_master_ring_count(both) == 2, "two keys in the ring");
	T_STREQ(mf_master_ring_kid(both, 0), mf_master_ring_kid(new_only, 0), "the first key's kid");
	T_STREQ(mf_master_ring_kid(both, 1), mf_master_ring_kid(old_only, 0), "the second key's kid");
	T_OK(strlen(mf_master_ring_kid(both, 0)) == MF_MASTER_KID_HEX &&
	     strcmp(mf_master_ring_kid(both, 0), mf_master_ring_kid(both, 1)) != 0, "kids are 16 hex chars and differ");
	T_OK(strstr(list, mf_master_ring_kid(both, 0)) == NULL, "a kid is not part of the key text");

	randombytes_buf(dek, sizeof(dek));
	/* wrapped by the old key: opens under the old key alone and under both */
	T_OK(cx_vault_dek_wrap(old_only, 0, T1, 1, dek, w, kid) == 0, "wrap under the old key");
	T_STREQ(kid, mf_master_ring_kid(old_only, 0), "the wrap names its key");
	T_OK(cx_vault_dek_unwrap(both, T1, 1, kid, w, sizeof(w), back) == 0 && memcmp(dek, back, sizeof(dek)) == 0,
	     "a ring of two opens what the old key wrapped");
	T_OK(cx_vault_dek_unwrap(new_only, T1, 1, kid, w, sizeof(w), back) == -2,
	     "the new key alone reports the old kid as unknown");
	/* re-wrapped under the first key of the ring */
	T_OK(cx_vault_dek_wrap(both, 0, T1, 1, dek, w, kid) == 0, "re-wrap under the first key");
	T_STREQ(kid, mf_master_ring_kid(new_only, 0), "sealed by the first key");
	T_OK(cx_vault_dek_unwrap(new_only, T1, 1, kid, w, sizeof(w), back) == 0 && memcmp(dek, back, sizeof(dek)) == 0,
	     "the new key alone opens it");
	T_OK(cx_vault_dek_unwrap(old_only, T1, 1, kid, w, sizeof(w), back) == -2, "the old key alone does not");
	T_OK(cx_vault_dek_unwrap(both, T2, 1, kid, w, sizeof(w), back) == -1, "another tenant's wrapped key fails");
	T_OK(cx_vault_dek_unwrap(both, T1, 2, kid, w, sizeof(w), back) == -1, "another version fails");
	T_OK(cx_vault_dek_unwrap(both, T1, 1, mf_master_ring_kid(both, 1), w, sizeof(w), back) < 0,
	     "claiming the other key's kid fails");
	T_OK(cx_vault_dek_unwrap(both, T1, 1, "0123456789abcdef", w, sizeof(w), back) == -2, "an unknown kid");
	T_OK(cx_vault_dek_unwrap(both, T1, 1, kid, w, sizeof(w) - 1, back) == -1, "a short wrapped key fails");
	for (size_t i = 0; i < sizeof(w); i++) {
		w[i] ^= 0x20;
		if (cx_vault_dek_unwrap(both, T1, 1, kid, w, sizeof(w), back) != -1)
			bad++;
		w[i] ^= 0x20;
	}
	T_OK(bad == 0, "every byte flip of a wrapped data key fails");
	sodium_memzero(dek, sizeof(dek));
	mf_master_ring_unref(both);
	mf_master_ring_unref(old_only);
	mf_master_ring_unref(new_only);
}

static void test_key_list_parsing(void)
{
	char k1[MF_MASTER_KEY_TEXT], k2[MF_MASTER_KEY_TEXT], k3[MF_MASTER_KEY_TEXT], text[512];
	mf_master_ring_t *r = NULL;
	mf_err_t err = { 0 };

	T_OK(mf_master_key_generate(k1, sizeof(k1)) == 0 && mf_master_key_generate(k2, sizeof(k2)) == 0 &&
	     mf_master_key_generate(k3, sizeof(k3)) == 0, "keygen");
	T_OK(mf_master_key_generate(text, 10) < 0, "keygen refuses a short buffer");
	snprintf(text, sizeof(text), "\n  %s\r\n%s\t,%s,\n\n", k1, k2, k3);
	T_OK(mf_master_ring_parse(text, strlen(text), &r, &err) == 0 && mf_master_ring_count(r) == 3,
	     "newlines, tabs, commas and blank lines separate keys");
	T_OK(r && memcmp(mf_master_ring_key(r, 0), mf_master_ring_key(r, 1), 32) != 0, "keys differ");
	T_OK(mf_master_ring_find(r, mf_master_ring_kid(r, 2)) == 2 && mf_master_ring_find(r, "nope") == -1 &&
	     mf_master_ring_find(r, NULL) == -1, "find by kid");
	T_OK(mf_master_ring_key(r, 3) == NULL && mf_master_ring_kid(r, -1) == NULL, "out of range is NULL");
	mf_master_ring_ref(r);
	mf_master_ring_unref(r);
	mf_master_ring_unref(r);
	mf_master_ring_unref(NULL);

	static const struct { const char *text; const char *want; } bad[] = {
		{ "", "empty" }, { " ,\n\t", "empty" },
		{ "not-base64!", "not 32 bytes" },
		{ "AAAA", "not 32 bytes" },
		{ "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not 32 bytes" },	/* 36 bytes */
		{ "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "not 32 bytes" },	/* no padding */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char what[96];

		mf_err_clear(&err);
		r = (mf_master_ring_t *)1;
		snprintf(what, sizeof(what), "refused: case %zu (%s)", i, bad[i].want);
		T_OK(mf_master_ring_parse(bad[i].text, strlen(bad[i].text), &r, &err) < 0 && r == NULL &&
		     strstr(err.detail, bad[i].want) && err.status == 400, what);
	}
	snprintf(text, sizeof(text), "%s %s", k1, k1);
	T_OK(mf_master_ring_parse(text, strlen(text), &r, &err) < 0 && strstr(err.detail, "repeats"),
	     "a repeated key is refused");
	snprintf(text, sizeof(text), "%s x%s", k1, k2);
	T_OK(mf_master_ring_parse(text, strlen(text), &r, &err) < 0 && strstr(err.detail, "key 2") &&
	     strstr(err.detail, k2 + 4) == NULL, "a bad second key is named by position, never quoted");
	{
		char many[MF_MASTER_MAX_KEYS * 50 + 64] = "";

		for (int i = 0; i <= MF_MASTER_MAX_KEYS; i++) {
			char k[MF_MASTER_KEY_TEXT];

			if (mf_master_key_generate(k, sizeof(k)) == 0) {
				strcat(many, k);
				strcat(many, "\n");
			}
		}
		T_OK(mf_master_ring_parse(many, strlen(many), &r, &err) < 0 && strstr(err.detail, "more than"),
		     "more than 16 keys are refused");
	}
}

static void test_key_file(void)
{
	char dir[] = "/tmp/mf-vault-test-XXXXXX", path[128], link[128], k1[MF_MASTER_KEY_TEXT], k2[MF_MASTER_KEY_TEXT];
	const char *lines[2] = { k1, k2 };
	mf_config_t cfg;
	mf_master_ring_t *r = NULL, *again;
	mf_master_t *m;
	mf_err_t err = { 0 };
	struct stat st;

	if (mkdtemp(dir) == NULL || mf_config_init(&cfg) < 0)
		return;
	snprintf(path, sizeof(path), "%s/master.key", dir);
	snprintf(link, sizeof(link), "%s/link.key", dir);
	T_OK(mf_master_key_generate(k1, sizeof(k1)) == 0 && mf_master_key_generate(k2, sizeof(k2)) == 0, "keygen");
	T_OK(mf_master_file_write(path, lines, 1, &err) == 0, "write a key file");
	T_OK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "written with mode 0600");
	T_OK(mf_config_set(&cfg, "master_key_file", path, &err) == 0, "config");
	T_OK(mf_master_ring_load(&cfg, &r, &err) == 0 && mf_master_ring_count(r) == 1, "load one key from the file");
	m = mf_master_new(&cfg, &err);
	T_OK(m && mf_master_from_file(m), "a holder reading the file");
	T_OK(mf_master_file_write(path, lines, 2, &err) == 0, "rewrite with two keys");
	{
		mf_master_ring_t *two = NULL;
		const char *kid2;

		T_OK(mf_master_ring_load(&cfg, &two, &err) == 0 && mf_master_ring_count(two) == 2, "two keys now");
		kid2 = two ? mf_master_ring_kid(two, 1) : "";
		again = mf_master_refresh(m, mf_master_ring_kid(r, 0), false);
		T_OK(mf_master_ring_count(again) == 1, "a known kid does not re-read the file");
		mf_master_ring_unref(again);
		again = mf_master_refresh(m, kid2, false);
		T_OK(mf_master_ring_count(again) == 1, "an unknown kid within a second of the last read waits");
		mf_master_ring_unref(again);
		again = mf_master_refresh(m, kid2, true);
		T_OK(mf_master_ring_count(again) == 2 && mf_master_ring_find(again, kid2) == 1,
		     "forced: the file is re-read and the new kid found");
		mf_master_ring_unref(again);
		mf_master_ring_unref(two);
	}
	mf_master_free(m);
	chmod(path, 0640);
	T_OK(mf_master_ring_load(&cfg, &again, &err) < 0 && strstr(err.detail, "chmod 600"),
	     "a group-readable key file is refused");
	chmod(path, 0600);
	T_OK(symlink(path, link) == 0, "symlink");
	T_OK(mf_config_set(&cfg, "master_key_file", link, &err) == 0 && mf_master_ring_load(&cfg, &again, &err) < 0,
	     "a symlinked key file is refused (O_NOFOLLOW)");
	T_OK(mf_config_set(&cfg, "master_key", k2, &err) == 0 && mf_master_ring_load(&cfg, &again, &err) == 0 &&
	     mf_master_ring_count(again) == 1, "master_key wins over the file");
	mf_master_ring_unref(again);
	mf_master_ring_unref(r);
	unlink(link);
	unlink(path);
	rmdir(dir);
	mf_config_free(&cfg);
}

static void test_bytea(void)
{
	unsigned char b[3] = { 0x00, 0xab, 0xff }, *back;
	char *t = cx_bytea_encode(b, 3);
	size_t n = 0;

	T_STREQ(t, "\\x00abff", "bytea text");
	back = cx_bytea_decode(t, &n);
	T_OK(back && n == 3 && memcmp(back, b, 3) == 0, "bytea round trip");
	free(back);
	free(t);
	T_OK(cx_bytea_decode("00ab", &n) == NULL && cx_bytea_decode("\\x0", &n) == NULL &&
	     cx_bytea_decode("\\xzz", &n) == NULL, "malformed bytea text is refused");
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	test_seal_roundtrip_and_tamper();
	test_dek_wrap_two_keys();
	test_key_list_parsing();
	test_key_file();
	test_bytea();
	return t_done();
}
