/*
 * fuzz_config.c - the config file parser must never crash or leak, whatever
 * the file holds.
 */
#include <stdint.h>
#include <stdlib.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mf_config_t cfg;
	mf_err_t err;

	if (mf_config_init(&cfg) < 0)
		abort();
	if (mf_config_parse(&cfg, (const char *)data, size, "fuzz", &err) == 0 &&
	    mf_config_validate(&cfg, &err) == 0 && cfg.listen == NULL)
		abort();	/* a valid config always has a listen address */
	mf_config_free(&cfg);
	return 0;
}
