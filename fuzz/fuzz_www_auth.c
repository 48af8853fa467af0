/* fuzz_www_auth.c - libFuzzer target: what a registry's auth flow sends
 * back.  The input (cut at the first NUL) is a WWW-Authenticate value for
 * sf_parse_www_authenticate; the whole input is also a token endpoint
 * answer for sf_parse_token_response.  A token that is accepted must be
 * visible ASCII of at most SF_TOKEN_MAX_LEN bytes (it goes into
 * a header), else abort().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_auth_challenge c;
	struct sf_error err = { 0 };
	char *s, *token = NULL;

	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (sf_parse_www_authenticate(s, &c, &err) == 0 && !c.scheme)
		abort();
	sf_auth_challenge_clear(&c);
	free(s);

	memset(&err, 0, sizeof(err));
	if (sf_parse_token_response(data, size, &token, &err) == 0) {
		size_t n = token ? strlen(token) : 0;

		if (!token || n > SF_TOKEN_MAX_LEN)
			abort();
		for (size_t i = 0; i < n; i++)
			if (token[i] < 0x21 || token[i] > 0x7e)
				abort();
	}
	free(token);
	return 0;
}
