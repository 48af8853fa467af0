/* fetch_http.c - reading and judging HTTP answers for the fetcher.
 *
 * Header lines arrive through fetch_on_header() while a transfer runs; the
 * final response is judged by fetch_judge() before its first body byte is
 * stored (see "Answers are judged" in fetch.c): a chunk needs 206 with
 * exactly the Content-Range it asked for, a streamed GET needs 200 with the
 * manifest's size.  Everything here runs on the fetcher thread, inside
 * libcurl callbacks, and only touches the xfer it is given.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fetch-private.h"
#include "http_util.h"

#define LOCATION_MAX 8192

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Strict decimal: digits only, no sign, no overflow. */
static bool parse_u64(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0;

	if (s == end)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

/* "bytes a-b/total", nothing else. */
static bool parse_content_range(const char *s, uint64_t *a, uint64_t *b, uint64_t *total)
{
	const char *dash, *slash, *end = s + strlen(s);

	if (strncmp(s, "bytes ", 6) != 0)
		return false;
	s += 6;
	dash = memchr(s, '-', (size_t)(end - s));
	slash = dash ? memchr(dash, '/', (size_t)(end - dash)) : NULL;
	if (!slash)
		return false;
	return parse_u64(s, dash, a) && parse_u64(dash + 1, slash, b) &&
	       parse_u64(slash + 1, end, total);
}

/* "Name: value\r\n" -> value, trimmed.  False when the name differs. */
static bool header_value(const char *buf, size_t len, const char *name, char *out,
			 size_t outlen)
{
	size_t nl = strlen(name), vl;

	if (len <= nl || strncasecmp(buf, name, nl) != 0 || buf[nl] != ':')
		return false;
	buf += nl + 1;
	len -= nl + 1;
	while (len > 0 && (*buf == ' ' || *buf == '\t'))
		buf++, len--;
	while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n' ||
			   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	vl = len < outlen - 1 ? len : outlen - 1;
	memcpy(out, buf, vl);
	out[vl] = '\0';
	return true;
}

void fetch_response_reset(struct xfer *x)
{
	x->crange[0] = '\0';
	x->www_auth[0] = '\0';
	x->retry_after_s = -1;
}

size_t fetch_on_header(char *buf, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;
	char tmp[64];

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0)
		fetch_response_reset(x); /* a new response (redirect, 100, final) */
	else if (header_value(buf, len, "Content-Range", x->crange, sizeof(x->crange)))
		;
	else if (!x->www_auth[0] &&
		 header_value(buf, len, "WWW-Authenticate", x->www_auth, sizeof(x->www_auth)))
		;
	else if (header_value(buf, len, "Retry-After", tmp, sizeof(tmp)))
		x->retry_after_s = sf_http_retry_after(tmp, time(NULL));
	return len;
}

static enum verdict judge_stream(struct xfer *x, long code)
{
	curl_off_t cl = -1;

	if (code == 206) {
		snprintf(x->why, sizeof(x->why), "HTTP 206 to a request without Range");
		return V_BAD;
	}
	if (code != 200)
		return V_DISCARD;
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl >= 0 && (uint64_t)cl != x->bs->b->size) {
		snprintf(x->why, sizeof(x->why), "Content-Length %" PRId64 ", expected %" PRIu64,
			 (int64_t)cl, x->bs->b->size);
		return V_BAD;
	}
	return V_OK;
}

static enum verdict judge_chunk(struct xfer *x, long code)
{
	uint64_t a, b, total, size = x->bs->b->size;

	if (code == 200) /* no range support, unless we asked for all of it */
		return x->from == 0 && x->to == size ? V_OK : V_NORANGE;
	if (code != 206)
		return V_DISCARD;
	if (parse_content_range(x->crange, &a, &b, &total) && a == x->from &&
	    b == x->to - 1 && total == size)
		return V_OK;
	snprintf(x->why, sizeof(x->why),
		 "bad Content-Range \"%s\" for bytes=%" PRIu64 "-%" PRIu64 " of %" PRIu64,
		 x->crange, x->from, x->to - 1, size);
	return V_BAD;
}

enum verdict fetch_judge(struct xfer *x)
{
	long code = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	x->status = code;
	if (code == 0)
		return V_UNSET;
	return is_stream_xfer(x) ? judge_stream(x, code) : judge_chunk(x, code);
}

int fetch_http_errno(long status)
{
	if (status == 404)
		return ENOENT;
	if (status == 401 || status == 403)
		return EACCES;
	return EIO;
}

bool fetch_is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Length of "scheme://authority" of url, or 0. */
static size_t origin_len(const char *url)
{
	const char *p = strstr(url, "://");

	if (!p)
		return 0;
	p += 3;
	return (size_t)(p - url) + strcspn(p, "/?#");
}

bool fetch_same_origin(const char *a, const char *b)
{
	size_t la = origin_len(a), lb = origin_len(b);

	return la && la == lb && strncasecmp(a, b, la) == 0;
}

int fetch_follow(struct xfer *x)
{
	char *target = NULL, *copy;

	curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &target);
	if (!target || !*target) {
		snprintf(x->why, sizeof(x->why), "HTTP %ld without a usable Location", x->status);
		return -EIO;
	}
	if (strncasecmp(target, "https://", 8) && strncasecmp(target, "http://", 7)) {
		snprintf(x->why, sizeof(x->why), "HTTP %ld to a URL that is not http(s)", x->status);
		return -EIO;
	}
	if (strlen(target) > LOCATION_MAX) {
		snprintf(x->why, sizeof(x->why), "HTTP %ld to a URL longer than %d bytes",
			 x->status, LOCATION_MAX);
		return -EIO;
	}
	copy = strdup(target);
	if (!copy)
		return -ENOMEM;
	free(x->bs->loc);
	x->bs->loc = copy;
	return 0;
}
