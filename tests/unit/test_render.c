/*
 * test_render.c - the logic-less renderer (core/render.h): escaping, raw
 * values, sections over arrays, objects and booleans, inverted sections,
 * scope lookup from the innermost outwards, parse errors with their byte
 * offsets, and the size, depth and work bounds.
 */
#include <stdlib.h>
#include <string.h>

#include "core/render.h"
#include "t.h"

static json_t *scope;

static char *R(const char *tpl)
{
	static char *last;
	mf_render_err_t err;

	free(last);
	last = NULL;
	if (mf_render(tpl, strlen(tpl), scope, &last, &err) < 0)
		return NULL;
	return last;
}

static long E(const char *tpl, const char *code)
{
	mf_render_err_t err;
	char *out = (char *)"x";

	if (mf_render(tpl, strlen(tpl), scope, &out, &err) == 0) {
		free(out);
		return -100;
	}
	if (out != NULL || strcmp(err.err.code, code) != 0 || err.err.status != 400)
		return -200;
	return err.offset;
}

int main(void)
{
	char *big, *out;
	mf_render_err_t err;
	size_t n;

	scope = json_loads("{\"brand\": {\"display_name\": \"A & <B> \\\"q\\\" 'x'\", \"color\": \"#112233\"},"
			   " \"tenant\": {\"id\": \"t1\", \"name\": \"Acme\"}, \"n\": 42, \"r\": 1.5, \"yes\": true,"
			   " \"no\": false, \"nil\": null, \"empty\": \"\", \"none\": [], \"obj\": {\"k\": \"v\", \"name\": \"inner\"},"
			   " \"items\": [{\"name\": \"one\"}, {\"name\": \"two\", \"tenant\": {\"name\": \"shadow\"}}],"
			   " \"words\": [\"a<\", \"b\"], \"nested\": [[1, 2], [3]]}", 0, NULL);
	T_OK(scope != NULL, "scope parses");

	/* values */
	T_STREQ(R("Hi {{ brand.display_name }}!"), "Hi A &amp; &lt;B&gt; &quot;q&quot; &#39;x&#39;!", "{{x}} escapes & < > \" '");
	T_STREQ(R("{{{brand.display_name}}}"), "A & <B> \"q\" 'x'", "{{{x}}} is raw");
	T_STREQ(R("{{& brand.display_name }}"), "A & <B> \"q\" 'x'", "{{& x}} is raw");
	T_STREQ(R("{{n}} {{r}} {{yes}} {{no}} [{{nil}}] [{{missing}}] [{{missing.deeper}}]"), "42 1.5 true false [] [] []",
		"numbers, booleans, null and missing names");
	T_STREQ(R("{{obj}}"), "{&quot;k&quot;:&quot;v&quot;,&quot;name&quot;:&quot;inner&quot;}", "objects render as escaped JSON");
	T_STREQ(R("{{words.0}}|{{items.1.name}}|{{words.9}}"), "a&lt;|two|", "digit segments index arrays");
	T_STREQ(R("no tags at all"), "no tags at all", "plain text passes through");
	T_STREQ(R(""), "", "the empty template renders empty");
	T_STREQ(R("a {{! a comment with {{ braces }} b"), "a  b", "comments render nothing");
	T_STREQ(R("{ } }} {x}"), "{ } }} {x}", "lone braces are text");

	/* sections */
	T_STREQ(R("{{#items}}<{{name}}>{{/items}}"), "<one><two>", "an array repeats its section");
	T_STREQ(R("{{#words}}[{{.}}]{{/words}}"), "[a&lt;][b]", ". is the current element");
	T_STREQ(R("{{#nested}}({{#.}}{{.}}{{/.}}){{/nested}}"), "(12)(3)", "arrays of arrays");
	T_STREQ(R("{{#obj}}{{k}}/{{name}}/{{tenant.name}}{{/obj}}"), "v/inner/Acme", "an object section: inner first, then outward");
	T_STREQ(R("{{#items}}{{tenant.name}};{{/items}}"), "Acme;shadow;", "an element's own key shadows the outer one");
	T_STREQ(R("{{#yes}}Y{{/yes}}{{#no}}N{{/no}}{{#nil}}Z{{/nil}}{{#empty}}E{{/empty}}{{#none}}L{{/none}}{{#missing}}M{{/missing}}"),
		"Y", "false, null, \"\", [] and missing skip; true renders once");
	T_STREQ(R("{{^no}}a{{/no}}{{^nil}}b{{/nil}}{{^none}}c{{/none}}{{^yes}}d{{/yes}}{{^items}}e{{/items}}{{^missing}}f{{/missing}}"),
		"abcf", "inverted sections render when the section would not");
	T_STREQ(R("{{#n}}{{.}}{{/n}}{{#brand.color}}{{.}}{{/brand.color}}"), "42#112233", "a scalar section pushes the scalar");
	T_STREQ(R("{{# items }}{{ name }}{{/ items }}"), "onetwo", "spaces inside tags");

	/* parse errors with offsets */
	T_OK(E("ab {{#x}}cd", "invalid_template") == 3, "unclosed section: offset of its opening tag");
	T_OK(E("{{#a}}{{#b}}{{/a}}{{/b}}", "invalid_template") == 12, "mismatched close: offset of the close");
	T_OK(E("xx{{/a}}", "invalid_template") == 2, "a close without an open");
	T_OK(E("hello {{ na me }}", "invalid_template") == 9, "bad name: offset of the name");
	T_OK(E("{{a..b}}", "invalid_template") == 2 && E("{{.a}}", "invalid_template") == 2 && E("{{}}", "invalid_template") == 2,
	     "empty segments and empty names");
	T_OK(E("{{> partial}}", "invalid_template") == 2, "no partials");
	T_OK(E("{{=<% %>=}}", "invalid_template") == 2, "no set-delimiters");
	T_OK(E("abc {{ name", "invalid_template") == 4, "an unclosed tag");
	T_OK(E("{{{ name }}", "invalid_template") == 0, "a triple mustache needs }}}");
	T_OK(E("{{#no}}{{bad name}}{{/no}}", "invalid_template") == 9, "errors in skipped sections are still reported");
	memset(&err, 0, sizeof(err));
	out = (char *)"x";
	T_OK(mf_render("{{#x}}", 6, scope, &out, &err) < 0 && out == NULL && strstr(err.err.detail, "template at byte 0") != NULL,
	     "the detail names the byte");
	T_OK(mf_render_check("{{#a}}{{/a}}", 12, &err) == 0 && mf_render_check("{{/a}}", 6, &err) < 0, "check alone");
	T_OK(mf_render("a\0{{b}}", 7, scope, &out, NULL) == 0 && memcmp(out, "a\0", 2) == 0, "a NUL byte is text; err may be NULL");
	free(out);

	/* limits */
	big = malloc(MF_RENDER_MAX_TPL + 2);
	memset(big, 'a', MF_RENDER_MAX_TPL + 1);
	big[MF_RENDER_MAX_TPL + 1] = '\0';
	T_OK(E(big, "template_too_large") == -1, "a template over 64 KiB is refused");
	big[MF_RENDER_MAX_TPL] = '\0';
	T_OK(R(big) != NULL && strlen(R(big)) == MF_RENDER_MAX_TPL, "a template of exactly 64 KiB renders");
	{
		char deep[512] = "", closing[512] = "";

		for (int i = 0; i < MF_RENDER_MAX_DEPTH; i++) {
			strcat(deep, "{{#yes}}");
			strcat(closing, "{{/yes}}");
		}
		strcat(deep, "x");
		strcat(deep, closing);
		T_STREQ(R(deep), "x", "16 nested sections render");
		memmove(deep + 8, deep, strlen(deep) + 1);
		memcpy(deep, "{{#yes}}", 8);
		strcat(deep, "{{/yes}}");
		T_OK(E(deep, "invalid_template") == 8 * MF_RENDER_MAX_DEPTH, "a 17th level is refused at its tag");
	}
	/* output: 30 kB of text repeated by a 10-element array */
	json_object_set_new(scope, "ten", json_loads("[1,2,3,4,5,6,7,8,9,10]", 0, NULL));
	n = 30000;
	memcpy(big, "{{#ten}}", 8);
	memset(big + 8, 'b', n);
	strcpy(big + 8 + n, "{{/ten}}");
	T_OK(E(big, "output_too_large") == (long)(8 + 0), "the output stops at 256 KiB");
	strcpy(big, "{{#ten}}{{#ten}}{{#ten}}{{#ten}}{{#ten}}{{#ten}}x{{/ten}}{{/ten}}{{/ten}}{{/ten}}{{/ten}}{{/ten}}");
	T_OK(E(big, "output_too_large") >= 0, "a million expansions are refused");
	strcpy(big, "{{#ten}}{{#ten}}{{#ten}}{{{brand.display_name}}}{{/ten}}{{/ten}}{{/ten}}");
	T_OK(R(big) != NULL && strlen(R(big)) == 1000 * 15, "a thousand expansions render");
	free(big);
	free(R(""));
	json_decref(scope);
	return t_done();
}
