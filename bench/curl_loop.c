/*
 * curl_loop.c - the reference for bench/connectors.sh: libcurl's own
 * fastest loop (curl_multi_perform + curl_multi_poll, easy handles reused,
 * nothing else), so the report can say how much of libcurl's ceiling the
 * connector transport and the connector layer keep.
 *
 *   mspflow-curlloop URL CALLS CONCURRENCY
 *
 * Prints one JSON line: calls, errors, seconds, calls_per_s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <curl/curl.h>

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	return size * n;
}

static CURL *easy_new(const char *url)
{
	CURL *e = curl_easy_init();

	if (e) {
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	}
	return e;
}

int main(int argc, char **argv)
{
	long total, conc, started = 0, done = 0, errors = 0;
	struct timespec t0, t1;
	CURLM *m;

	if (argc != 4) {
		fprintf(stderr, "usage: %s URL CALLS CONCURRENCY\n", argv[0]);
		return 2;
	}
	total = atol(argv[2]);
	conc = atol(argv[3]);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (m = curl_multi_init()) == NULL)
		return 1;
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, conc);
	for (; started < conc && started < total; started++)
		curl_multi_add_handle(m, easy_new(argv[1]));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (done < total) {
		CURLMsg *msg;
		int running, left;

		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			CURL *e = msg->easy_handle;
			long status = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
			if (msg->data.result != CURLE_OK || status != 200)
				errors++;
			curl_multi_remove_handle(m, e);
			done++;
			if (started < total) {
				curl_multi_add_handle(m, e);
				started++;
			} else {
				curl_easy_cleanup(e);
			}
		}
		if (done < total)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	printf("{\"calls\": %ld, \"errors\": %ld, \"seconds\": %.3f, \"calls_per_s\": %.0f}\n", total, errors, secs,
	       (double)total / secs);
	curl_multi_cleanup(m);
	curl_global_cleanup();
	return errors ? 1 : 0;
}
