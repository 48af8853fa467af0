/* fuzz_ref.c - libFuzzer target: image references.
 *
 * Input: the reference as typed (cut at the first NUL).  A reference that
 * parses must format to a string that parses again and formats to the same
 * string (the normal form is a fixed point); anything else aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_ref ref, again;
	struct sf_error err = { 0 };
	char *s, *f1, *f2, *host;

	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (sf_ref_parse(s, &ref, &err) < 0) {
		sf_ref_clear(&ref);
		free(s);
		return 0;
	}
	if (!ref.registry || !ref.repository || (!ref.tag && !ref.digest))
		abort();
	f1 = sf_ref_format(&ref);
	if (!f1)
		abort();
	host = sf_ref_api_host(&ref);
	free(host);
	(void)sf_ref_is_loopback(&ref);
	memset(&err, 0, sizeof(err));
	if (sf_ref_parse(f1, &again, &err) < 0) {
		fprintf(stderr, "fuzz_ref: \"%s\" parsed, formats as \"%s\", which does not parse: %s\n",
			s, f1, err.msg);
		abort();
	}
	f2 = sf_ref_format(&again);
	if (!f2 || strcmp(f1, f2) != 0) {
		fprintf(stderr, "fuzz_ref: \"%s\" formats as \"%s\", which formats as \"%s\"\n", s,
			f1, f2 ? f2 : "(null)");
		abort();
	}
	free(f2);
	free(f1);
	sf_ref_clear(&again);
	sf_ref_clear(&ref);
	free(s);
	return 0;
}
