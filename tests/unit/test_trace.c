/*
 * test_trace.c - W3C Trace Context traceparent: the spec's valid and
 * invalid shapes (including the ones its test suite sends), generation,
 * child spans and formatting.
 */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/trace.h"
#include "t.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"
#define ZERO32 "00000000000000000000000000000000"
#define ZERO16 "0000000000000000"

static mf_trace_t t;

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int parse(const char *s)
{
	memset(&t, 0, sizeof(t));
	return mf_trace_parse(&t, s, strlen(s), NULL);
}

static void test_valid(void)
{
	mf_err_t err;

	T_OK(parse("00-" TID "-" PID "-01") == 0, "the spec's example parses");
	T_STREQ(t.trace_id, TID, "trace-id");
	T_STREQ(t.parent_id, PID, "parent-id");
	T_OK(t.flags == MF_TRACE_SAMPLED, "sampled flag");
	T_OK(parse("00-" TID "-" PID "-00") == 0 && t.flags == 0, "not sampled");
	T_OK(parse("00-" TID "-" PID "-ff") == 0 && t.flags == 0xff,
	     "version 00 keeps all flag bits (unknown ones are ignored, not refused)");
	T_OK(parse(" \t00-" TID "-" PID "-01\t ") == 0, "surrounding optional whitespace is ignored");
	T_OK(parse("cc-" TID "-" PID "-01-what-the-future-will-be-like") == 0 && t.flags == 1 &&
	     strcmp(t.trace_id, TID) == 0, "a higher version with more fields is read by its first 55 characters");
	T_OK(parse("cc-" TID "-" PID "-01") == 0, "a higher version of exactly 55 characters");
	T_OK(parse("01-" TID "-" PID "-09") == 0 && t.flags == MF_TRACE_SAMPLED,
	     "a higher version keeps only the sampled bit");
	T_OK(parse("fe-" TID "-" PID "-00-") == 0 && t.flags == 0, "version fe is still a version");
	T_OK(mf_trace_parse(&t, "00-" TID "-" PID "-01garbage", 55, &err) == 0,
	     "only len bytes are read (no NUL needed)");
}

static void test_invalid(void)
{
	static const char *const bad[] = {
		"",
		"00",
		"00-" TID "-" PID "-0",					/* 54 characters */
		"00-" TID "-" PID "-01-",				/* 00 must be exactly 55 */
		"00-" TID "-" PID "-01-what-the-future-will-be-like",
		"00-" TID "-" PID "-01.",
		"cc-" TID "-" PID "-01.what-the-future-will-be-like",	/* no dash after the flags */
		"ff-" TID "-" PID "-01",				/* forbidden version */
		"ff-" TID "-" PID "-01-more",
		"0A-" TID "-" PID "-01",				/* upper-case version */
		"0g-" TID "-" PID "-01",
		"-0-" TID "-" PID "-01",
		"000-" TID "-" PID "-0",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01",	/* upper-case trace-id */
		"00-" TID "-00F067AA0BA902B7-01",			/* upper-case parent-id */
		"00-" TID "-" PID "-0A",				/* upper-case flags */
		"00-" ZERO32 "-" PID "-01",				/* all-zero trace-id */
		"00-" TID "-" ZERO16 "-01",				/* all-zero parent-id */
		"cc-" ZERO32 "-" PID "-01-x",
		"00-4bf92f3577b34da6a3ce929d0e0e473-" PID "0-01",	/* 31 + 17 hex */
		"00-4bf92f3577b34da6a3ce929d0e0e47366-" "0f067aa0ba902b7-01",	/* 33 + 15 hex */
		"00-4bf92f3577b34da6a3ce929d0e0e473." "-" PID "-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g" "-" PID "-01",
		"00-" TID "-00f067aa0ba902b.-01",
		"00-" TID "-" PID "-.0",
		"00-" TID "-" PID "-0.",
		"00-" TID "-" PID "-xx",
		"00-" TID "-" PID "-0x",
		"00_" TID "_" PID "_01",
		"00-" TID "-" PID "--1",
		"00 " TID " " PID " 01",
		"00-" TID "-" PID "-01\r",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char what[160];

		snprintf(what, sizeof(what), "invalid: \"%s\"", bad[i]);
		T_OK(parse(bad[i]) == -1, what);
	}
	{
		mf_err_t err;
		mf_trace_t keep = { TID, PID, 1 };

		mf_err_clear(&err);
		t = keep;
		T_OK(mf_trace_parse(&t, "00-" ZERO32 "-" PID "-01", 55, &err) == -1 &&
		     strcmp(err.code, "invalid_traceparent") == 0 && strstr(err.detail, "trace-id"),
		     "the error says which field");
		T_OK(memcmp(&t, &keep, sizeof(t)) == 0, "a failed parse leaves the struct untouched");
		T_OK(mf_trace_parse(&t, NULL, 0, NULL) == -1, "NULL is invalid");
	}
}

static void test_generate(void)
{
	mf_trace_t a, b, c;
	char h[MF_TRACE_HEADER_SIZE], h2[MF_TRACE_HEADER_SIZE];
	static char ids[2000][33];
	int dup = 0;

	mf_trace_new(&a);
	T_OK(mf_trace_valid(&a), "a new trace is valid");
	T_OK(a.flags == 0, "a new trace is not marked sampled");
	T_OK(mf_trace_format(&a, h, sizeof(h)) == 0 && strlen(h) == MF_TRACE_HEADER_LEN && strncmp(h, "00-", 3) == 0,
	     "formats to 55 characters of version 00");
	T_OK(mf_trace_parse(&b, h, strlen(h), NULL) == 0 && memcmp(&a, &b, sizeof(a)) == 0,
	     "format then parse gives the same trace");
	mf_trace_child(&a, &c);
	T_OK(strcmp(c.trace_id, a.trace_id) == 0 && c.flags == a.flags, "a child keeps trace-id and flags");
	T_OK(strcmp(c.parent_id, a.parent_id) != 0 && mf_trace_valid(&c), "and has a new span id");
	b = a;
	b.flags = MF_TRACE_SAMPLED;
	mf_trace_child(&b, &b);
	T_OK(strcmp(b.trace_id, a.trace_id) == 0 && strcmp(b.parent_id, a.parent_id) != 0 && b.flags == 1,
	     "a child in place");
	T_OK(mf_trace_format(&b, h2, sizeof(h2)) == 0 && strcmp(h2 + 53, "01") == 0, "sampled formats as 01");

	/* many ids: crosses several refills of the per-thread pool */
	for (int i = 0; i < 2000; i++) {
		mf_trace_new(&a);
		memcpy(ids[i], a.trace_id, 33);
	}
	qsort(ids, 2000, 33, cmp_id);
	for (int i = 1; i < 2000; i++)
		dup += strcmp(ids[i - 1], ids[i]) == 0;
	T_OK(dup == 0, "2000 new trace-ids are distinct");

	T_OK(parse("cc-" TID "-" PID "-03-future") == 0 && mf_trace_format(&t, h, sizeof(h)) == 0 &&
	     strcmp(h, "00-" TID "-" PID "-01") == 0, "a higher version is passed on as version 00");
	T_OK(mf_trace_format(&t, h, MF_TRACE_HEADER_SIZE - 1) == -1 && h[0] == '\0', "too small a buffer");
	memset(&c, 0, sizeof(c));
	T_OK(mf_trace_format(&c, h, sizeof(h)) == -1 && !mf_trace_valid(&c), "a zeroed trace is not formatted");
	memcpy(c.trace_id, "4BF92F3577B34DA6A3CE929D0E0E4736", 33);
	memcpy(c.parent_id, PID, 17);
	T_OK(!mf_trace_valid(&c), "upper case is not valid in a struct either");
}

/* A forked child must not hand out the ids its parent hands out next. */
static void test_fork(void)
{
	mf_trace_t a, mine;
	int fd[2];
	pid_t pid;
	char theirs[33] = "";

	mf_trace_new(&a);	/* the pool holds unused bytes now */
	if (pipe(fd) != 0)
		return;
	pid = fork();
	if (pid == 0) {
		mf_trace_new(&a);
		if (write(fd[1], a.trace_id, 32) != 32)
			_exit(1);
		_exit(0);
	}
	mf_trace_new(&mine);
	close(fd[1]);
	T_OK(pid > 0 && read(fd[0], theirs, 32) == 32, "the child reports its id");
	close(fd[0]);
	waitpid(pid, NULL, 0);
	T_OK(strcmp(theirs, mine.trace_id) != 0, "parent and forked child draw different ids");
}

int main(void)
{
	test_valid();
	test_invalid();
	test_generate();
	test_fork();
	return t_done();
}
