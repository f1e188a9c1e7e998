/*
 * replay_main.c - runs a libFuzzer target without libFuzzer, so every fuzz
 * target also runs in the ordinary test suite (and under ASan/UBSan there).
 *
 * Feeds each file of the seed corpus folder, then a bounded, deterministic
 * mutation loop over those seeds (bit flips, byte edits, truncation,
 * duplication, splicing).  MF_FUZZ_ITERS (default 20000) and MF_FUZZ_SEED
 * change the loop; a crash is the failure signal, as with libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 65536

struct seed { uint8_t *data; size_t len; };

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* splitmix64: small, good enough, reproducible */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static size_t mutate(uint8_t *buf, size_t len, const struct seed *seeds, size_t nseeds)
{
	static const char *const tokens[] = {
		"\r\n", "\r\n\r\n", "{", "}", "[", "]", "\"", "\\", "\\u0000", ":", ",", "=", "#",
		"Content-Length: ", "Transfer-Encoding: chunked", "0\r\n\r\n", "ffffffffffffffff",
		"\xc3\x28", "\xed\xa0\x80", "\\ud800", "-1", "1e999", "null", "true",
	};
	int rounds = 1 + (int)(rng() % 4);

	for (int r = 0; r < rounds; r++) {
		size_t pos = len ? rng() % len : 0;

		switch (rng() % 7) {
		case 0:	/* flip a bit */
			if (len)
				buf[pos] ^= (uint8_t)(1u << (rng() % 8));
			break;
		case 1:	/* random byte */
			if (len)
				buf[pos] = (uint8_t)rng();
			break;
		case 2:	/* delete a run */
			if (len) {
				size_t n = 1 + rng() % (len - pos);

				memmove(buf + pos, buf + pos + n, len - pos - n);
				len -= n;
			}
			break;
		case 3: {	/* insert a token */
			const char *t = tokens[rng() % (sizeof(tokens) / sizeof(tokens[0]))];
			size_t n = strlen(t);

			if (len + n <= FUZZ_MAX_INPUT) {
				memmove(buf + pos + n, buf + pos, len - pos);
				memcpy(buf + pos, t, n);
				len += n;
			}
			break;
		}
		case 4:	/* truncate */
			len = pos;
			break;
		case 5: {	/* duplicate a run */
			size_t n = len ? 1 + rng() % (len - pos) : 0;

			if (len + n <= FUZZ_MAX_INPUT) {
				memmove(buf + pos + n, buf + pos, len - pos);
				memcpy(buf + pos, buf + pos + n, n);
				len += n;
			}
			break;
		}
		case 6: {	/* splice in part of another seed */
			const struct seed *s = &seeds[rng() % nseeds];
			size_t from = s->len ? rng() % s->len : 0;
			size_t n = s->len - from;

			if (pos + n > FUZZ_MAX_INPUT)
				n = FUZZ_MAX_INPUT - pos;
			memcpy(buf + pos, s->data + from, n);
			if (pos + n > len)
				len = pos + n;
			break;
		}
		}
	}
	return len;
}

int main(int argc, char **argv)
{
	struct seed *seeds = NULL;
	size_t nseeds = 0;
	long iters = getenv("MF_FUZZ_ITERS") ? atol(getenv("MF_FUZZ_ITERS")) : 20000;
	uint8_t *buf = malloc(FUZZ_MAX_INPUT);
	DIR *d;
	struct dirent *de;

	rng_state = getenv("MF_FUZZ_SEED") ? strtoull(getenv("MF_FUZZ_SEED"), NULL, 10) : 0x6d7370666c6f77ULL;
	if (argc < 2 || buf == NULL) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	d = opendir(argv[1]);
	if (d == NULL) {
		perror(argv[1]);
		return 2;
	}
	while ((de = readdir(d)) != NULL) {
		char path[4096];
		FILE *f;
		struct seed s;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
		f = fopen(path, "rb");
		if (f == NULL)
			continue;
		s.data = malloc(FUZZ_MAX_INPUT);
		s.len = s.data ? fread(s.data, 1, FUZZ_MAX_INPUT, f) : 0;
		fclose(f);
		if (s.data == NULL)
			continue;
		seeds = realloc(seeds, (nseeds + 1) * sizeof(*seeds));
		seeds[nseeds++] = s;
		LLVMFuzzerTestOneInput(s.data, s.len);
	}
	closedir(d);
	if (nseeds == 0) {
		fprintf(stderr, "%s: empty corpus\n", argv[1]);
		return 1;
	}
	for (long i = 0; i < iters; i++) {
		const struct seed *s = &seeds[rng() % nseeds];
		size_t len;

		memcpy(buf, s->data, s->len);
		len = mutate(buf, s->len, seeds, nseeds);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("ok - %zu seeds, %ld mutated inputs, no crash\n", nseeds, iters);
	for (size_t i = 0; i < nseeds; i++)
		free(seeds[i].data);
	free(seeds);
	free(buf);
	return 0;
}
