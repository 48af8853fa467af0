/* http_util.h - HTTP header values that both of our HTTP clients (the
 * registry client for documents and tokens, the fetcher for blobs) must
 * read the same way.
 */
#ifndef SF_HTTP_UTIL_H
#define SF_HTTP_UTIL_H

#include <time.h>

#define SF_HTTP_RETRY_AFTER_CLAMP_S 1000000L /* larger values are clamped; callers cap further */

/* A Retry-After value (RFC 9110 10.2.3): delay-seconds, or an HTTP-date in
 * any of the three forms (IMF-fixdate, RFC 850, asctime) as seconds from
 * `now`, 0 for a date in the past.  -1 when it is neither. */
long sf_http_retry_after(const char *value, time_t now);

#endif
