/*
 * test_redact.c - what call summaries hide: header names, JSON members and
 * secret values in text (raw and base64), bounded copies.
 */
#include <stdlib.h>

#include "connectors/redact.h"
#include "t.h"

static void test_headers(void)
{
	static const char *const hidden[] = {
		"Authorization", "authorization", "PROXY-AUTHORIZATION", "Cookie", "Set-Cookie", "X-Api-Key",
		"X-Auth-Token", "X-Amz-Security-Token", "X-Client-Secret", "X-Password", "X-Passwd", "Api_Key",
		"x-apikey", "Webhook-Signature", "X-Hub-Signature-256", "X-Session-Id", "X-Private-Key",
		"X-Credentials",
	};
	static const char *const shown[] = {
		"Content-Type", "Accept", "User-Agent", "X-Request-Id", "traceparent", "Content-Length", "Host",
		"Webhook-Id", "Webhook-Timestamp", "Retry-After",
	};
	static const char *const extra[] = { "X-Tenant-Key", NULL };

	for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		T_OK(cx_redact_header(hidden[i], NULL), hidden[i]);
	for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
		T_OK(!cx_redact_header(shown[i], NULL), shown[i]);
	T_OK(cx_redact_header("x_tenant_KEY", extra) && !cx_redact_header("x-tenant-key", NULL),
	     "extra names, compared normalised");
	T_OK(!cx_redact_header("X-Tenant-Keys", extra), "extra names match whole");
	T_OK(cx_redact_header(NULL, NULL), "no name: hide");
}

static json_t *load(const char *s)
{
	return json_loads(s, JSON_REJECT_DUPLICATES, NULL);
}

static const char *sget(const json_t *o, const char *path)
{
	/* path: keys separated by '/', no arrays */
	char buf[128], *k, *save = NULL;
	const json_t *v = o;

	snprintf(buf, sizeof(buf), "%s", path);
	for (k = strtok_r(buf, "/", &save); k && v; k = strtok_r(NULL, "/", &save))
		v = json_object_get(v, k);
	return json_string_value(v);
}

static void test_json(void)
{
	json_t *in = load("{\"user\":\"bob\",\"password\":\"hunter22\",\"nested\":{\"Client-Secret\":\"abc\","
			  "\"accessToken\":\"t\",\"github_token\":\"g\",\"max_tokens\":100,\"prompt_tokens\":5,"
			  "\"token_type\":\"Bearer\"},\"list\":[{\"api_key\":\"k\"},{\"x\":1}],"
			  "\"credentials\":{\"a\":1},\"card_number\":\"4111\",\"Authorization\":[1,2],"
			  "\"SSN\":\"123\",\"id\":7,\"ok\":true,\"none\":null}");
	json_t *before = json_deep_copy(in), *out;
	static const char *const fields[] = { "User", NULL };

	out = cx_redact_json(in, NULL, NULL, 0);
	T_OK(out != NULL && out != in, "a new object");
	T_STREQ(sget(out, "password"), CX_REDACTED, "password");
	T_STREQ(sget(out, "nested/Client-Secret"), CX_REDACTED, "Client-Secret (normalised name)");
	T_STREQ(sget(out, "nested/accessToken"), CX_REDACTED, "accessToken (camel case)");
	T_STREQ(sget(out, "nested/github_token"), CX_REDACTED, "any *_token");
	T_OK(json_integer_value(json_object_get(json_object_get(out, "nested"), "max_tokens")) == 100,
	     "max_tokens is a count and is kept");
	T_OK(json_integer_value(json_object_get(json_object_get(out, "nested"), "prompt_tokens")) == 5,
	     "prompt_tokens is kept");
	T_STREQ(sget(out, "nested/token_type"), "Bearer", "token_type is kept");
	T_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(out, "list"), 0), "api_key")),
		CX_REDACTED, "inside arrays");
	T_STREQ(sget(out, "credentials"), CX_REDACTED, "a whole object under a sensitive key");
	T_STREQ(sget(out, "Authorization"), CX_REDACTED, "a whole array under a sensitive key");
	T_STREQ(sget(out, "card_number"), CX_REDACTED, "card_number");
	T_STREQ(sget(out, "SSN"), CX_REDACTED, "SSN");
	T_STREQ(sget(out, "user"), "bob", "other members are kept");
	T_OK(json_integer_value(json_object_get(out, "id")) == 7 && json_is_true(json_object_get(out, "ok")) &&
	     json_is_null(json_object_get(out, "none")), "scalars are copied");
	T_OK(json_equal(in, before) && in->refcount == 1, "the input is unchanged and its reference not taken");
	json_object_set_new(json_object_get(out, "nested"), "max_tokens", json_integer(1));
	T_OK(json_equal(in, before), "the copy is deep: changing it leaves the input alone");
	json_decref(out);

	out = cx_redact_json(in, fields, NULL, 0);
	T_STREQ(sget(out, "user"), CX_REDACTED, "configured fields, compared normalised");
	json_decref(out);
	json_decref(before);
	json_decref(in);

	{
		static const char *const secrets[] = { "sekrit-value-123", "ab", NULL };

		in = load("{\"url\":\"https://x/?key=sekrit-value-123\",\"note\":\"sekrit-value-123 and sekrit-value-123\","
			  "\"sekrit-value-123\":1,\"short\":\"ab\",\"arr\":[\"sekrit-value-123\"]}");
		out = cx_redact_json(in, NULL, secrets, 0);
		T_STREQ(sget(out, "url"), "https://x/?key=" CX_REDACTED, "a secret inside a string value");
		T_STREQ(sget(out, "note"), CX_REDACTED " and " CX_REDACTED, "every occurrence");
		T_OK(json_object_get(out, "sekrit-value-123") == NULL && json_object_get(out, CX_REDACTED),
		     "a secret used as a key");
		T_STREQ(sget(out, "short"), "ab", "secrets shorter than 4 bytes are ignored");
		T_STREQ(json_string_value(json_array_get(json_object_get(out, "arr"), 0)), CX_REDACTED, "in arrays");
		json_decref(out);
		json_decref(in);
		in = json_string("sekrit-value-123");
		out = cx_redact_json(in, NULL, secrets, 0);
		T_STREQ(json_string_value(out), CX_REDACTED, "a top-level string");
		json_decref(out);
		json_decref(in);
	}

	in = load("[[[[1]]],{\"a\":{\"b\":{\"c\":1}}}]");
	out = cx_redact_json(in, NULL, NULL, 2);
	{
		char *s = json_dumps(out, JSON_COMPACT);

		T_STREQ(s, "[[\"[too deep]\"],{\"a\":\"[too deep]\"}]", "containers deeper than max_depth are not copied");
		free(s);
	}
	json_decref(out);
	json_decref(in);
	T_OK(cx_redact_json(NULL, NULL, NULL, 0) == NULL, "NULL in, NULL out");
}

static char *red(const char *in, const char *const *secrets, size_t max_out)
{
	return cx_redact_text(in, strlen(in), secrets, max_out);
}

#define CHECK_TEXT(in, secrets, max, want, what) do { \
	char *got_ = red((in), (secrets), (max)); \
	T_STREQ(got_, (want), (what)); \
	free(got_); \
} while (0)

static void test_text(void)
{
	static const char *const s1[] = { "abcd1234efgh", NULL };
	static const char *const s2[] = { "abcdef12", "abcdef1234", "xyz", "zzzz", NULL };
	static const char *const basic[] = { "hunter2secret", NULL };
	static const char *const q[] = { "????????", NULL };
	static const char *const long_s[] = { "sekrit-value", NULL };
	char big[300], *out;

	CHECK_TEXT("Authorization: Bearer abcd1234efgh", s1, 1000, "Authorization: Bearer " CX_REDACTED, "a secret");
	CHECK_TEXT("abcd1234efghabcd1234efgh!", s1, 1000, CX_REDACTED CX_REDACTED "!", "adjacent occurrences");
	CHECK_TEXT("xabcdef1234y xabcdef12y", s2, 1000, "x" CX_REDACTED "y x" CX_REDACTED "y",
		   "the longest secret wins, the shorter one still applies");
	CHECK_TEXT("xyz zzzzz", s2, 1000, "xyz " CX_REDACTED "z", "3-byte secrets are ignored, 4-byte ones are not");
	CHECK_TEXT("nothing to see", NULL, 1000, "nothing to see", "no secrets: a copy");
	CHECK_TEXT("", s1, 1000, "", "empty input");
	/* "user:hunter2secret" -> dXNlcjpodW50ZXIyc2VjcmV0 */
	out = red("Authorization: Basic dXNlcjpodW50ZXIyc2VjcmV0", basic, 1000);
	T_OK(out && strstr(out, "dXNlcjpodW50ZXIyc2VjcmV0") == NULL && strstr(out, CX_REDACTED) &&
	     strncmp(out, "Authorization: Basic dXNlcj", 27) == 0, "the password inside a Basic credential");
	free(out);
	/* base64("hunter2secret") = aHVudGVyMnNlY3JldA== */
	out = red("x=aHVudGVyMnNlY3JldA==", basic, 1000);
	T_OK(out && strstr(out, "aHVudGVyMnNlY3Jld") == NULL && strstr(out, CX_REDACTED), "the secret's own base64");
	free(out);
	/* "????????" -> Pz8/Pz8/Pz8 (standard), Pz8_Pz8_Pz8 (URL-safe) */
	CHECK_TEXT("a=Pz8/Pz8/Pz8= b=Pz8_Pz8_Pz8", q, 1000, "a=" CX_REDACTED "8= b=" CX_REDACTED "8",
		   "standard and URL-safe base64");
	CHECK_TEXT("token=hunter2se", basic, 1000, "token=" CX_REDACTED, "a secret cut off by the end of the input");
	CHECK_TEXT("token=hun", basic, 1000, "token=hun", "but not a 3-byte stub");
	{
		char *o = cx_redact_text("abc\0abcd1234efgh", 16, s1, 1000);

		T_STREQ(o, "abc" CX_REDACT_TRUNCATED, "text stops at a NUL byte");
		free(o);
	}

	memset(big, 'a', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	out = red(big, NULL, 40);
	T_OK(out && strlen(out) == 40 && strcmp(out + 40 - strlen(CX_REDACT_TRUNCATED), CX_REDACT_TRUNCATED) == 0,
	     "a long text is cut to max_out, marker included");
	free(out);
	out = red(big, NULL, 3);
	T_OK(out && strlen(out) == CX_REDACT_TEXT_MIN, "max_out below the minimum counts as the minimum");
	free(out);
	big[40] = '\0';
	CHECK_TEXT(big, NULL, 40, big, "a text of exactly max_out is not marked");
	CHECK_TEXT("0123456789abcdefsekrit-value0123456789abcdef", long_s, 32, "0123456789abcdef" CX_REDACT_TRUNCATED,
		   "the cut never splits a marker");
	CHECK_TEXT("xxxxxxxxxxxxxxxxxxxxsekrit-value0123456789", long_s, 32, "xxxxxxxxxxxxxxxxxx" CX_REDACT_TRUNCATED,
		   "a secret across the cut leaves nothing of itself");
	/* "a" + 20 two-byte characters: the cut lands inside the 9th */
	{
		char in[64] = "a";
		char want[64] = "a";

		for (int i = 0; i < 20; i++)
			strcat(in, "\xc3\xa9");
		for (int i = 0; i < 8; i++)
			strcat(want, "\xc3\xa9");
		strcat(want, CX_REDACT_TRUNCATED);
		CHECK_TEXT(in, NULL, 32, want, "the cut never splits a UTF-8 character");
	}
}

int main(void)
{
	test_headers();
	test_json();
	test_text();
	return t_done();
}
