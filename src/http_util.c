/* http_util.c - HTTP header values shared by registry.c and fetch_http.c.
 *
 * Retry-After: servers send delay-seconds mostly, but the HTTP-date form is
 * as valid, and a client that took a date for garbage would retry at once,
 * which is what a 429 asked it not to do.  curl_getdate() parses all three
 * date forms HTTP allows (and ignores the user's locale, unlike strptime).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "http_util.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Strict delay-seconds: digits only, clamped. */
static bool parse_seconds(const char *s, long *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v <= (uint64_t)SF_HTTP_RETRY_AFTER_CLAMP_S)
			v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v > (uint64_t)SF_HTTP_RETRY_AFTER_CLAMP_S ? SF_HTTP_RETRY_AFTER_CLAMP_S : (long)v;
	return true;
}

long sf_http_retry_after(const char *value, time_t now)
{
	long s;
	time_t when;

	if (parse_seconds(value, &s))
		return s;
	/* a date has a letter for the weekday; curl_getdate would take "12" */
	if (!((*value >= 'A' && *value <= 'Z') || (*value >= 'a' && *value <= 'z')))
		return -1;
	when = curl_getdate(value, NULL);
	if (when == (time_t)-1)
		return -1;
	if (when <= now)
		return 0;
	if (when - now > SF_HTTP_RETRY_AFTER_CLAMP_S)
		return SF_HTTP_RETRY_AFTER_CLAMP_S;
	return (long)(when - now);
}
