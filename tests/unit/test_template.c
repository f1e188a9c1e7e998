/*
 * test_template.c - a template document's rules (catalog/template.c):
 * semver, names, parameter specs with their exact paths, and the bytes a
 * signature covers.
 */
#include <stdlib.h>
#include <string.h>

#include "catalog/template.h"
#include "core/json.h"
#include "t.h"

static json_t *parse(const char *s)
{
	mf_err_t err;

	return mf_json_parse(s, strlen(s), 64, &err);
}

/* The first error path of validating a minimal template with extra JSON
 * members merged in ("" when valid). */
static char *first_path(const char *extra)
{
	static char out[256];
	json_t *b = parse("{\"name\":\"t\",\"version\":\"1.0.0\",\"key_id\":\"k\",\"signature\":\"s\","
			  "\"workflow\":{\"trigger\":{\"event\":\"a.b\"},\"steps\":[{\"id\":\"x\",\"type\":\"transform\","
			  "\"output\":{\"v\":\"params.p\"}}]}}");
	json_t *e = parse(extra), *errors = NULL;
	mf_err_t err;

	json_object_update(b, e);
	out[0] = '\0';
	if (cat_template_validate(b, &errors, &err) < 0)
		snprintf(out, sizeof(out), "%s",
			 json_string_value(json_object_get(json_array_get(errors, 0), "path")));
	json_decref(errors);
	json_decref(b);
	json_decref(e);
	return out;
}

static const char specs_text[] =
	"{\"threshold\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100,\"required\":true},"
	"\"tier\":{\"type\":\"string\",\"enum\":[\"basic\",\"pro\"],\"default\":\"basic\"},"
	"\"code\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}$\"},"
	"\"ratio\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
	"\"on\":{\"type\":\"boolean\",\"default\":false}}";

/* The paths of cat_params_resolve's errors joined with ",", or the resolved object. */
static char *resolve(const char *given)
{
	static char out[1024];
	json_t *specs = parse(specs_text), *g = given ? parse(given) : NULL, *res = NULL, *errors = NULL;
	mf_err_t err;
	int rc = cat_params_resolve(specs, g, &res, &errors, &err);

	out[0] = '\0';
	if (rc == 0) {
		char *d = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);

		snprintf(out, sizeof(out), "%s", d);
		free(d);
	} else
		for (size_t i = 0; i < json_array_size(errors); i++)
			snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? "," : "",
				 json_string_value(json_object_get(json_array_get(errors, i), "path")));
	json_decref(res);
	json_decref(errors);
	json_decref(specs);
	json_decref(g);
	return out;
}

static void test_params(void)
{
	T_STREQ(resolve("{\"threshold\":5}"), "{\"on\":false,\"threshold\":5,\"tier\":\"basic\"}",
		"defaults filled in, absent optional ones left out");
	T_STREQ(resolve("{\"threshold\":100,\"tier\":\"pro\",\"code\":\"ABC\",\"ratio\":0.5,\"on\":true}"),
		"{\"code\":\"ABC\",\"on\":true,\"ratio\":0.5,\"threshold\":100,\"tier\":\"pro\"}", "every value valid");
	T_STREQ(resolve(NULL), "/params/threshold", "no params: a required one missing");
	T_STREQ(resolve("{}"), "/params/threshold", "required missing");
	T_STREQ(resolve("{\"threshold\":\"5\"}"), "/params/threshold", "wrong type");
	T_STREQ(resolve("{\"threshold\":1.5}"), "/params/threshold", "a real for an integer");
	T_STREQ(resolve("{\"threshold\":0}"), "/params/threshold", "below minimum");
	T_STREQ(resolve("{\"threshold\":101}"), "/params/threshold", "above maximum");
	T_STREQ(resolve("{\"threshold\":5,\"ratio\":1.01}"), "/params/ratio", "a number above maximum");
	T_STREQ(resolve("{\"threshold\":5,\"tier\":\"gold\"}"), "/params/tier", "not in enum");
	T_STREQ(resolve("{\"threshold\":5,\"code\":\"abc\"}"), "/params/code", "pattern mismatch");
	T_STREQ(resolve("{\"threshold\":5,\"bogus\":1,\"a/b\":2}"), "/params/bogus,/params/a~1b",
		"unknown params, escaped pointers, in document order");
	T_STREQ(resolve("[1]"), "/params", "params not an object");
	T_STREQ(resolve("{\"tier\":1,\"bogus\":1}"), "/params/tier,/params/bogus,/params/threshold",
		"every problem at once: the given ones in order, then missing ones");
	{
		static const char head[] = "{\"threshold\":5,\"code\":\"";
		char big[2200];

		memset(big, 'A', sizeof(big));
		memcpy(big, head, strlen(head));
		memcpy(big + sizeof(big) - 3, "\"}", 3);
		T_STREQ(resolve(big), "/params/code", "an over-long value is not matched");
	}
}

/* The paths of validating a template whose workflow is steps_json, with
 * the template's messages msgs_json (NULL: none), joined with ",". */
static char *message_paths(const char *msgs_json, const char *steps_json)
{
	static char out[512];
	char text[2048];
	json_t *b, *errors = NULL;
	mf_err_t err;

	snprintf(text, sizeof(text), "{\"name\":\"t\",\"version\":\"1.0.0\",\"key_id\":\"k\",\"signature\":\"s\","
		 "%s%s%s\"workflow\":{\"trigger\":{\"event\":\"a.b\"},\"steps\":%s}}", msgs_json ? "\"messages\":" : "",
		 msgs_json ? msgs_json : "", msgs_json ? "," : "", steps_json);
	b = parse(text);
	out[0] = '\0';
	if (b && cat_template_validate(b, &errors, &err) < 0)
		for (size_t i = 0; i < json_array_size(errors); i++)
			snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? "," : "",
				 json_string_value(json_object_get(json_array_get(errors, i), "path")));
	json_decref(errors);
	json_decref(b);
	return b ? out : "(unparsed)";
}

/* An install gives the workflow the template's messages, so publish checks
 * its message steps against them. */
static void test_message_steps(void)
{
	static const char step[] = "[{\"id\":\"m\",\"type\":\"message\",\"message\":\"welcome\"}]";

	T_STREQ(message_paths("{\"welcome\":\"Hi from {{ brand.display_name }}\"}", step), "",
		"a message step may name one of the template's messages");
	T_STREQ(message_paths(NULL, step), "/workflow/steps/0/message", "a message step naming no message");
	T_STREQ(message_paths("{\"other\":\"x\"}", step), "/workflow/steps/0/message",
		"a message step naming another message");
	T_STREQ(message_paths("{\"welcome\":\"{{# a }}\"}", step), "/messages/welcome",
		"a broken message is reported once, at the template's /messages");
}

int main(void)
{
	cat_semver_t v;
	static const char *const good[] = { "0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1",
					    "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y", "9007199254740991.0.0" };
	static const char *const badv[] = { "", "1", "1.0", "1.0.0.0", "01.0.0", "1.00.0", "1.0.0-", "1.0.0-01",
					    "1.0.0+b", "1.0.0-a..b", "v1.0.0", "1.0.0-a_b", "9007199254740992.0.0",
					    " 1.0.0", "1.0.0 " };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		T_OK(cat_semver_parse(good[i], &v), good[i]);
	for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++)
		T_OK(!cat_semver_parse(badv[i], &v), badv[i]);
	T_OK(cat_semver_parse("1.2.3-rc.1", &v) && v.major == 1 && v.minor == 2 && v.patch == 3 &&
	     strcmp(v.pre, "rc.1") == 0, "semver parts");
	T_OK(cat_semver_parse("1.2.3", &v) && v.pre[0] == '\0', "a release has no pre-release");

	T_OK(cat_name_ok("a") && cat_name_ok("onboard-user-2") && !cat_name_ok("-a") && !cat_name_ok("A") &&
	     !cat_name_ok("a_b") && !cat_name_ok(""), "names");

	T_STREQ(first_path("{}"), "", "a minimal template with params.* in the workflow is valid");
	T_STREQ(first_path("{\"parameters\":{\"p\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":5,\"default\":3}}}"),
		"", "a bounded integer with a default");
	T_STREQ(first_path("{\"parameters\":{\"p\":{\"type\":\"integer\",\"default\":\"3\"}}}"), "/parameters/p/default",
		"a default of another type");
	T_STREQ(first_path("{\"parameters\":{\"p\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\",\"default\":\"A\"}}}"),
		"/parameters/p/default", "a default that misses the pattern");
	T_STREQ(first_path("{\"parameters\":{\"p\":{\"type\":\"string\",\"minimum\":1}}}"), "/parameters/p/minimum",
		"minimum on a string");
	T_STREQ(first_path("{\"parameters\":{\"p\":{\"type\":\"number\",\"enum\":[]}}}"), "/parameters/p/enum",
		"an empty enum");
	T_STREQ(first_path("{\"parameters\":{\"a/b\":{\"type\":\"number\"}}}"), "/parameters/a~1b",
		"a bad parameter name, pointer-escaped");
	T_STREQ(first_path("{\"parameters\":{\"p\":{\"type\":\"string\",\"required\":true,\"default\":\"x\"}}}"),
		"/parameters/p/default", "a required parameter has no default");
	T_STREQ(first_path("{\"messages\":{\"m\":\"{{ }}\"}}"), "/messages/m", "a message whose {{ }} does not parse");
	T_STREQ(first_path("{\"connectors\":[{\"name\":\"a\",\"kind\":\"http\",\"x\":1}]}"), "/connectors/0/x",
		"an unknown connector member");
	T_STREQ(first_path("{\"workflow\":{\"steps\":[]}}"), "/workflow", "the workflow is validated");
	T_STREQ(first_path("{\"tags\":[\"ok\",\"no way\"]}"), "/tags/1", "a bad tag");

	{
		json_t *b = parse("{\"signature\":\"zz\",\"b\":[1,2],\"a\":\"\\u00e9\"}"), *errors = NULL;
		mf_buf_t out = MF_BUF_INIT;
		mf_err_t err;

		T_OK(cat_signed_bytes(b, &out, &errors, &err) == 0 && strcmp(out.data, "{\"a\":\"\xc3\xa9\",\"b\":[1,2]}") == 0,
		     "the signed bytes leave the signature out");
		T_OK(json_object_get(b, "signature") != NULL, "and do not change the body");
		mf_buf_free(&out);
		json_decref(b);
		b = parse("{\"x\":{\"y\":[0.5]}}");
		T_OK(cat_signed_bytes(b, &out, &errors, &err) == -2 && err.status == 400 &&
		     strcmp(json_string_value(json_object_get(json_array_get(errors, 0), "path")), "/x/y/0") == 0,
		     "a real is non_integer_number with its path");
		json_decref(errors);
		mf_buf_free(&out);
		json_decref(b);
	}
	test_params();
	test_message_steps();
	return t_done();
}
