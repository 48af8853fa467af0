/* store_blob.c - one range GET of a blob (see store_blob.h).
 *
 * The fetcher (src/fetch.c) streams whole blobs into a spool file for the
 * unpacker; this is the opposite case: a few random reads of a blob podman
 * wants verbatim (push, save), answered while the caller waits.  So it is a
 * plain blocking libcurl easy transfer with the registry's TLS, redirect and
 * auth settings.
 */
#include "store_blob.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define AUTH_MAX 8192
#define WWW_AUTH_MAX 8192
#define RANGE_TIMEOUT_S 120L

struct get {
	unsigned char *buf;
	size_t len, got;
	bool overflow; /* the body was longer than asked: stop */
	char crange[128];
	char www_auth[WWW_AUTH_MAX];
};

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	struct get *g = ud;
	size_t len = size * n, take = len;

	if (take > g->len - g->got) {
		take = g->len - g->got;
		g->overflow = true;
	}
	memcpy(g->buf + g->got, data, take);
	g->got += take;
	return g->overflow ? 0 : len; /* 0 aborts the transfer */
}

static void header_copy(const char *buf, size_t len, size_t skip, char *out, size_t outlen)
{
	buf += skip;
	len -= skip;
	while (len && (*buf == ' ' || *buf == '\t'))
		buf++, len--;
	while (len && (buf[len - 1] == '\r' || buf[len - 1] == '\n' || buf[len - 1] == ' '))
		len--;
	if (len >= outlen)
		len = outlen - 1;
	memcpy(out, buf, len);
	out[len] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	struct get *g = ud;
	size_t len = size * n;

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		g->crange[0] = g->www_auth[0] = '\0'; /* a new response (redirect) */
		g->got = 0;
		g->overflow = false;
	} else if (len > 14 && strncasecmp(buf, "Content-Range:", 14) == 0) {
		header_copy(buf, len, 14, g->crange, sizeof(g->crange));
	} else if (len > 17 && strncasecmp(buf, "WWW-Authenticate:", 17) == 0) {
		header_copy(buf, len, 17, g->www_auth, sizeof(g->www_auth));
	}
	return len;
}

/* One attempt.  Returns 0, -EAGAIN after a 401 (g->www_auth set), or an
 * error. */
static sf_ret get_once(struct sf_registry *reg, struct sf_endpoint *ep, const char *url,
		       const char *digest, uint64_t off, const char *auth, struct get *g,
		       struct sf_error *err)
{
	char range[80], errbuf[CURL_ERROR_SIZE] = "", want[128];
	struct curl_slist *hdrs = NULL;
	CURL *c = curl_easy_init();
	long code = 0;
	CURLcode cc;

	if (!c)
		return sf_fail(err, ENOMEM, "out of memory");
	snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, off,
		 off + g->len - 1);
	hdrs = curl_slist_append(hdrs, range);
	if (auth[0])
		hdrs = curl_slist_append(hdrs, auth);
	sf_endpoint_setup_curl(ep, c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, RANGE_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && g->overflow && code == 200))
		return sf_fail(err, EIO, "%s: blob %s: %s", sf_registry_name(reg), digest,
			       errbuf[0] ? errbuf : curl_easy_strerror(cc));
	if (code == 401 && g->www_auth[0])
		return -EAGAIN;
	snprintf(want, sizeof(want), "bytes %" PRIu64 "-%" PRIu64 "/", off, off + g->len - 1);
	if (code == 206 && strncmp(g->crange, want, strlen(want)) == 0 && g->got == g->len)
		return 0;
	if (code == 200 && off == 0 && g->got == g->len)
		return 0; /* no range support; the start of the body is what we want */
	if (code == 200 || code == 206)
		return sf_fail(err, EIO, "%s: blob %s: HTTP %ld with Content-Range \"%s\" "
			       "and %zu bytes for %s", sf_registry_name(reg), digest, code,
			       g->crange, g->got, range);
	return sf_fail(err, code == 404 ? ENOENT : code == 401 || code == 403 ? EACCES : EIO,
		       "%s: blob %s: HTTP %ld", sf_registry_name(reg), digest, code);
}

sf_ret sf_store_blob_get(struct sf_registry *reg, const char *digest, uint64_t off, size_t len,
			 unsigned char *buf, struct sf_error *err)
{
	/* one endpoint for URL, TLS and token, whatever a resolve does meanwhile */
	struct sf_endpoint *ep = sf_registry_endpoint(reg);
	_cleanup_free_ char *url = sf_endpoint_blob_url(ep, digest);
	_cleanup_free_ struct get *g = calloc(1, sizeof(*g));
	char auth[AUTH_MAX];
	sf_ret r;

	if (!url || !g)
		return sf_fail(err, ENOMEM, "out of memory");
	for (int attempt = 0;; attempt++) {
		*g = (struct get){ .buf = buf, .len = len };
		sf_endpoint_auth_header(ep, auth, sizeof(auth));
		r = get_once(reg, ep, url, digest, off, auth, g, err);
		if (r != -EAGAIN)
			return r;
		if (attempt > 0)
			return sf_fail(err, EACCES, "%s: blob %s: HTTP 401 after a new token",
				       sf_registry_name(reg), digest);
		r = sf_endpoint_reauth(ep, g->www_auth, auth, err);
		if (r < 0)
			return r;
	}
}
