/* registry.c - the OCI distribution API, as much of it as a read-only
 * mount needs: resolve a reference to an image manifest and its config,
 * and hand the fetcher blob URLs, transport settings and auth headers.
 *
 * Transport.  https://<host> always, except plain http for a loopback
 * registry (127.0.0.0/8, ::1, localhost: nobody can sit between us and it)
 * or when the user said --insecure.  docker.io is served by
 * registry-1.docker.io.  Every handle gets the same settings
 * (sf_registry_setup_curl): TLS verification on, http/https only, also
 * for redirects (blob GETs are redirected to CDNs; curl keeps our
 * Authorization header to the original host), a connect timeout and a
 * stall detector instead of an overall deadline for blob transfers.
 * Documents read into memory (manifests, configs, tokens, error bodies)
 * are capped at SF_RESPONSE_MAX.
 *
 * Resolve.  GET /v2/<repo>/manifests/<tag or digest> accepting the four
 * manifest/index types; an index is narrowed to this platform's manifest
 * (manifest.c chooses), which is fetched by digest.  Whatever was fetched
 * by digest is checked against it; a manifest fetched by tag is recorded
 * under the sha256 of its bytes.  The config blob is checked against its
 * digest and size, and its diff_ids are paired with the layers.
 *
 * Auth.  Anonymous only.  A 401 carries "WWW-Authenticate: Bearer
 * realm=..,service=..,scope=.."; we GET realm?service=..&scope=.. for an
 * anonymous token and retry once with "Authorization: Bearer <token>".
 * The header lives under `lock`; refreshes are serialised by
 * `refresh_lock`, and a refresh asked for with a header that is no longer
 * current returns at once, so a burst of 401s from the fetcher costs one
 * token request.  Tokens never appear in messages.
 *
 * Messages name the reference and, for HTTP errors, carry the registry's
 * own error message: "127.0.0.1:5000/library/nope:latest: manifest unknown
 * (HTTP 404)"; transport failures name the host:
 * "cannot reach registry 127.0.0.1:1: Couldn't connect to server".
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "digest.h"
#include "manifest.h"

#ifdef PACKAGE_VERSION
#define SF_VERSION PACKAGE_VERSION
#else
#define SF_VERSION "0.1.0"
#endif

#define SF_USER_AGENT "soci-fuse/" SF_VERSION
#define SF_CONNECT_TIMEOUT_S 10		/* default for opts->connect_timeout_s */
#define SF_REQUEST_TIMEOUT_S 120		/* whole manifest/config/token request */
#define SF_LOW_SPEED_BYTES 1L			/* slower than this many bytes/s ... */
#define SF_LOW_SPEED_TIME_S 30L			/* ... for this long: stalled, abort */
#define SF_MAX_REDIRECTS 10L
#define SF_RESPONSE_MAX SF_MANIFEST_MAX_SIZE	/* any response read into memory */
#define SF_AUTH_LINE_MAX 8192			/* "Authorization: Bearer <token>" */
#define SF_REGISTRY_MSG_MAX 300			/* registry's error text we quote */
#define SF_BUF_MIN 4096

#define ACCEPT_MANIFEST "Accept: " SF_MANIFEST_ACCEPT
#define ACCEPT_JSON "Accept: application/json"
#define BEARER_PREFIX "Authorization: Bearer "

struct sf_registry {
	struct sf_ref ref;
	char *ref_str;	/* normalised reference, for messages */
	char *api_host; /* host[:port] we talk to */
	char *base;	/* "https://host[:port]" */
	char *peer;	/* "registry host[:port]", for messages */
	bool plain_http;
	char *os, *arch, *variant;
	long connect_timeout_s;
	pthread_mutex_t lock;	      /* guards auth */
	pthread_mutex_t refresh_lock; /* one token request at a time */
	char *auth;		      /* "Authorization: Bearer ..." or NULL */
};

struct http_resp {
	long status;
	char *body; /* NUL-terminated, NULL when empty */
	size_t len, cap;
	bool too_big, nomem;
	char *content_type;
	char *www_auth;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

__attribute__((format(printf, 1, 2)))
static char *xfmt(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(s = malloc((size_t)n + 1)))
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static sf_ret oom(struct sf_error *err)
{
	return sf_fail(err, ENOMEM, "out of memory");
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ---- HTTP ---- */

static void resp_clear(struct http_resp *r)
{
	free(r->body);
	free(r->content_type);
	free(r->www_auth);
	memset(r, 0, sizeof(*r));
}

static bool resp_grow(struct http_resp *r, size_t need)
{
	size_t cap = r->cap ? r->cap : SF_BUF_MIN;
	char *b;

	while (cap < need)
		cap *= 2;
	b = realloc(r->body, cap);
	if (!b)
		return false;
	r->body = b;
	r->cap = cap;
	return true;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct http_resp *r = ud;
	size_t add = size * n;

	if (add > SF_RESPONSE_MAX - r->len) {
		r->too_big = true;
		return 0;
	}
	if (r->len + add + 1 > r->cap && !resp_grow(r, r->len + add + 1)) {
		r->nomem = true;
		return 0;
	}
	memcpy(r->body + r->len, p, add);
	r->len += add;
	r->body[r->len] = '\0';
	return add;
}

/* The value of header line p if it is `name`, trimmed; else NULL. */
static char *header_value(const char *p, size_t len, const char *name)
{
	size_t n = strlen(name);

	if (len <= n || strncasecmp(p, name, n) != 0 || p[n] != ':')
		return NULL;
	p += n + 1;
	len -= n + 1;
	while (len && (*p == ' ' || *p == '\t'))
		p++, len--;
	while (len && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
		len--;
	return strndup(p, len);
}

static bool starts_bearer(const char *v)
{
	return v && strncasecmp(v, "Bearer", 6) == 0;
}

/* Keep Content-Type and WWW-Authenticate (a Bearer one over others) of the
 * last response; a status line starts a new response (redirects). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct http_resp *r = ud;
	size_t len = size * n;
	char *v;

	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		free(r->content_type);
		free(r->www_auth);
		r->content_type = r->www_auth = NULL;
		r->len = 0;
	} else if ((v = header_value(p, len, "Content-Type"))) {
		free(r->content_type);
		r->content_type = v;
	} else if ((v = header_value(p, len, "WWW-Authenticate"))) {
		if (!r->www_auth || (!starts_bearer(r->www_auth) && starts_bearer(v))) {
			free(r->www_auth);
			r->www_auth = v;
		} else {
			free(v);
		}
	}
	return len;
}

static bool is_tls_error(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
	       rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CIPHER ||
	       rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_ISSUER_ERROR;
}

static int curl_errno(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		return ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	default:
		return EIO;
	}
}

bool sf_registry_unreachable(sf_ret r)
{
	return r == -ECONNREFUSED || r == -EHOSTUNREACH || r == -ETIMEDOUT;
}

static sf_ret transport_error(struct sf_registry *r, CURLcode rc, const char *errbuf,
			      const char *peer, const struct http_resp *resp,
			      struct sf_error *err)
{
	const char *what = curl_easy_strerror(rc);

	if (resp->too_big)
		return sf_fail(err, EFBIG, "%s: response from %s is larger than %u bytes",
			       r->ref_str, peer, SF_RESPONSE_MAX);
	if (resp->nomem)
		return oom(err);
	if (is_tls_error(rc))
		return sf_fail(err, EIO, "TLS error talking to %s: %s%s", peer,
			       *errbuf ? errbuf : what,
			       rc == CURLE_SSL_CONNECT_ERROR && !r->plain_http
				       ? " (a plain-HTTP registry needs --insecure)" : "");
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
	    rc == CURLE_COULDNT_RESOLVE_PROXY)
		return sf_fail(err, curl_errno(rc), "cannot reach %s: %s", peer, what);
	return sf_fail(err, curl_errno(rc), "request to %s failed: %s", peer,
		       *errbuf ? errbuf : what);
}

static struct curl_slist *request_headers(const char *accept, const char *auth)
{
	struct curl_slist *h = NULL, *t;

	if (accept && !(h = curl_slist_append(h, accept)))
		return NULL;
	if (auth && *auth) {
		t = curl_slist_append(h, auth);
		if (!t)
			curl_slist_free_all(h);
		h = t;
	}
	return h;
}

/* One GET of url into resp.  Non-2xx statuses are not errors here. */
static sf_ret http_do(struct sf_registry *r, const char *url, const char *accept,
		      const char *auth, const char *peer, struct http_resp *resp,
		      struct sf_error *err)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = request_headers(accept, auth);
	CURL *c = curl_easy_init();
	CURLcode rc;
	sf_ret ret = 0;

	resp_clear(resp);
	if (!c || (!hdrs && (accept || (auth && *auth)))) {
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(c);
		return oom(err);
	}
	sf_registry_setup_curl(r, c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)SF_REQUEST_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	else
		ret = transport_error(r, rc, errbuf, peer, resp, err);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return ret;
}

/* GET from the registry, answering one 401 challenge with a token. */
static sf_ret registry_get(struct sf_registry *r, const char *url, const char *accept,
			   struct http_resp *resp, struct sf_error *err)
{
	char auth[SF_AUTH_LINE_MAX];
	sf_ret ret;

	for (int attempt = 0;; attempt++) {
		sf_registry_auth_header(r, auth, sizeof(auth));
		ret = http_do(r, url, accept, auth, r->peer, resp, err);
		if (ret < 0 || resp->status != 401 || !resp->www_auth || attempt > 0)
			return ret;
		ret = sf_registry_reauth(r, resp->www_auth, auth, err);
		if (ret < 0)
			return ret;
	}
}

static int status_errno(long status)
{
	if (status == 404)
		return ENOENT;
	if (status == 401 || status == 403)
		return EACCES;
	if (status == 429)
		return EAGAIN;
	return EIO;
}

/* 200, or a one-line error with the registry's own message. */
static sf_ret check_status(struct sf_registry *r, const struct http_resp *resp,
			   const char *what, struct sf_error *err)
{
	char msg[SF_REGISTRY_MSG_MAX];
	bool denied = resp->status == 401 || resp->status == 403;

	if (resp->status == 200)
		return 0;
	if (!sf_parse_registry_error(resp->body, resp->len, msg, sizeof(msg)))
		snprintf(msg, sizeof(msg), "%s", denied ? "access denied" : "request failed");
	return sf_fail(err, status_errno(resp->status), "%s: %s%s (HTTP %ld)%s", r->ref_str,
		       what, msg, resp->status,
		       denied ? "; the repository may not exist, or it needs credentials "
				"(only anonymous pulls are supported)" : "");
}

/* ---- auth ---- */

static char *url_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(3 * strlen(s) + 1), *w = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr("-._~", c)) {
			*w++ = (char)c;
		} else {
			*w++ = '%';
			*w++ = hex[c >> 4];
			*w++ = hex[c & 15];
		}
	}
	*w = '\0';
	return out;
}

/* "auth server <host>" for messages, from a realm URL. */
static char *realm_peer(const char *realm)
{
	const char *h = strstr(realm, "://");
	size_t n;

	h = h ? h + 3 : realm;
	n = strcspn(h, "/?#");
	for (size_t i = 0; i < n; i++)
		if (h[i] <= 0x20 || h[i] >= 0x7f)
			return strdup("auth server");
	return xfmt("auth server %.*s", (int)(n > 200 ? 200 : n), h);
}

static sf_ret check_realm(struct sf_registry *r, const char *realm, struct sf_error *err)
{
	if (!realm || !*realm)
		return sf_fail(err, EACCES, "%s: Bearer challenge without a realm", r->peer);
	if (strncasecmp(realm, "https://", 8) == 0)
		return 0;
	if (strncasecmp(realm, "http://", 7) == 0 && r->plain_http)
		return 0;
	return sf_fail(err, EACCES, "%s: refusing token realm that is not %s",
		       r->peer, r->plain_http ? "an http(s) URL" : "https");
}

static char *token_url(struct sf_registry *r, const struct sf_auth_challenge *ch)
{
	_cleanup_free_ char *scope_default = xfmt("repository:%s:pull", r->ref.repository);
	const char *scope = ch->scope ? ch->scope : scope_default;
	_cleanup_free_ char *svc = ch->service ? url_escape(ch->service) : NULL;
	_cleanup_free_ char *sc = scope ? url_escape(scope) : NULL;
	char sep = strchr(ch->realm, '?') ? '&' : '?';

	if (!sc || (ch->service && !svc))
		return NULL;
	if (svc)
		return xfmt("%s%cservice=%s&scope=%s", ch->realm, sep, svc, sc);
	return xfmt("%s%cscope=%s", ch->realm, sep, sc);
}

static sf_ret fetch_token(struct sf_registry *r, const struct sf_auth_challenge *ch,
			  char **token, struct sf_error *err)
{
	_cleanup_free_ char *url = NULL, *peer = NULL;
	struct http_resp resp = { 0 };
	sf_ret ret = check_realm(r, ch->realm, err);

	if (ret < 0)
		return ret;
	url = token_url(r, ch);
	peer = realm_peer(ch->realm);
	if (!url || !peer)
		return oom(err);
	ret = http_do(r, url, ACCEPT_JSON, NULL, peer, &resp, err);
	if (ret == 0 && resp.status != 200)
		ret = check_status(r, &resp, "anonymous token request: ", err);
	if (ret == 0) {
		ret = sf_parse_token_response(resp.body, resp.len, token, err);
		if (ret < 0)
			sf_error_prefix(err, "%s: %s", r->ref_str, peer);
	}
	resp_clear(&resp);
	return ret;
}

static sf_ret use_challenge(struct sf_registry *r, const struct sf_auth_challenge *ch,
			    char **header, struct sf_error *err)
{
	_cleanup_free_ char *token = NULL;
	sf_ret ret;

	if (!strcasecmp(ch->scheme, "Basic"))
		return sf_fail(err, EACCES, "%s requires a login (HTTP Basic authentication); "
			       "only anonymous pulls are supported", r->peer);
	if (strcasecmp(ch->scheme, "Bearer"))
		return sf_fail(err, EACCES, "%s: unsupported authentication scheme \"%.40s\"",
			       r->peer, ch->scheme);
	ret = fetch_token(r, ch, &token, err);
	if (ret < 0)
		return ret;
	*header = xfmt(BEARER_PREFIX "%s", token);
	return *header ? 0 : oom(err);
}

static bool auth_is(struct sf_registry *r, const char *header)
{
	bool same;

	pthread_mutex_lock(&r->lock);
	same = strcmp(r->auth ? r->auth : "", header ? header : "") == 0;
	pthread_mutex_unlock(&r->lock);
	return same;
}

sf_ret sf_registry_reauth(struct sf_registry *r, const char *www_authenticate,
			  const char *failed_header, struct sf_error *err)
{
	struct sf_auth_challenge ch = { 0 };
	char *header = NULL;
	sf_ret ret = 0;

	pthread_mutex_lock(&r->refresh_lock);
	if (!auth_is(r, failed_header))
		goto out; /* someone refreshed it since that request */
	ret = sf_parse_www_authenticate(www_authenticate, &ch, err);
	if (ret < 0) {
		sf_error_prefix(err, "%s", r->peer);
		goto out;
	}
	ret = use_challenge(r, &ch, &header, err);
	if (ret == 0) {
		pthread_mutex_lock(&r->lock);
		free(r->auth);
		r->auth = header;
		pthread_mutex_unlock(&r->lock);
	}
out:
	sf_auth_challenge_clear(&ch);
	pthread_mutex_unlock(&r->refresh_lock);
	return ret;
}

void sf_registry_auth_header(struct sf_registry *r, char *buf, size_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&r->lock);
	if (r->auth && strlen(r->auth) < len)
		memcpy(buf, r->auth, strlen(r->auth) + 1);
	else
		buf[0] = '\0';
	pthread_mutex_unlock(&r->lock);
}

/* ---- resolve ---- */

struct fetched {
	char *body;
	size_t len;
	char digest[SF_DIGEST_STR_LEN + 1]; /* sha256 of body */
};

static sf_ret verify_digest(struct sf_registry *r, const char *what, struct fetched *f,
			    const char *expect, struct sf_error *err)
{
	sf_sha256_buf(f->body ? f->body : "", f->len, f->digest);
	if (!expect || strcmp(expect, f->digest) == 0)
		return 0;
	return sf_fail(err, EIO, "%s: %s digest mismatch: expected %s, got %s", r->ref_str, what,
		       expect, f->digest);
}

/* GET a manifest by tag or digest; expect = the digest it must have. */
static sf_ret fetch_manifest(struct sf_registry *r, const char *reference, const char *expect,
			     struct fetched *f, struct sf_manifest *m, struct sf_error *err)
{
	_cleanup_free_ char *url = xfmt("%s/v2/%s/manifests/%s", r->base, r->ref.repository,
					reference);
	_cleanup_free_ char *what = NULL;
	struct http_resp resp = { 0 };
	bool child = expect && (!r->ref.digest || strcmp(expect, r->ref.digest));
	sf_ret ret;

	if (!url || !(what = child ? xfmt("manifest %s: ", expect) : strdup("")))
		return oom(err);
	ret = registry_get(r, url, ACCEPT_MANIFEST, &resp, err);
	if (ret == 0)
		ret = check_status(r, &resp, what, err);
	f->body = steal_pointer(&resp.body);
	f->len = resp.len;
	if (ret == 0)
		ret = verify_digest(r, "manifest", f, expect, err);
	if (ret == 0) {
		ret = sf_manifest_parse(resp.content_type, f->body, f->len, m, err);
		if (ret < 0)
			sf_error_prefix(err, "%s: manifest %s", r->ref_str, f->digest);
	}
	resp_clear(&resp);
	return ret;
}

static sf_ret follow_index(struct sf_registry *r, struct fetched *doc, struct sf_manifest *m,
			   struct sf_error *err)
{
	struct sf_platform want = { r->os, r->arch, r->variant };
	const struct sf_index_entry *e;
	struct sf_manifest child = { 0 };
	struct fetched cf = { 0 };
	_cleanup_free_ char *digest = NULL;
	sf_ret ret = sf_index_select(m, &want, &e, err);

	if (ret < 0) {
		sf_error_prefix(err, "%s", r->ref_str);
		return ret;
	}
	if (e->desc.size > SF_RESPONSE_MAX)
		return sf_fail(err, EFBIG, "%s: manifest %s is %llu bytes, over the limit",
			       r->ref_str, e->desc.digest, (unsigned long long)e->desc.size);
	digest = strdup(e->desc.digest);
	if (!digest)
		return oom(err);
	ret = fetch_manifest(r, digest, digest, &cf, &child, err);
	if (ret == 0 && cf.len != e->desc.size)
		ret = sf_fail(err, EIO, "%s: manifest %s is %zu bytes, the index says %llu",
			      r->ref_str, digest, cf.len, (unsigned long long)e->desc.size);
	if (ret == 0 && child.kind != SF_KIND_IMAGE)
		ret = sf_fail(err, ENOTSUP, "%s: index entry %s is itself an index "
			      "(nested indexes are not supported)", r->ref_str, digest);
	if (ret < 0) {
		free(cf.body);
		sf_manifest_clear(&child);
		return ret;
	}
	sf_manifest_clear(m);
	*m = child;
	free(doc->body);
	*doc = cf;
	return 0;
}

static sf_ret resolve_manifest(struct sf_registry *r, struct sf_image *img,
			       struct sf_manifest *m, struct sf_error *err)
{
	const char *reference = r->ref.digest ? r->ref.digest : r->ref.tag;
	struct fetched f = { 0 };
	sf_ret ret = fetch_manifest(r, reference, r->ref.digest, &f, m, err);

	if (ret == 0 && m->kind == SF_KIND_INDEX)
		ret = follow_index(r, &f, m, err);
	if (ret == 0) {
		img->manifest_digest = strdup(f.digest);
		img->manifest_json = f.body ? steal_pointer(&f.body) : strdup("");
		if (!img->manifest_digest || !img->manifest_json)
			ret = oom(err);
	}
	free(f.body);
	return ret;
}

static sf_ret fetch_config(struct sf_registry *r, struct sf_image *img,
			   const struct sf_manifest *m, struct fetched *f, struct sf_error *err)
{
	const struct sf_descriptor *c = &m->config;
	_cleanup_free_ char *url = sf_registry_blob_url(r, c->digest);
	struct http_resp resp = { 0 };
	sf_ret ret;

	if (c->size > SF_RESPONSE_MAX)
		return sf_fail(err, EFBIG, "%s: config %s is %llu bytes, over the limit of %u",
			       r->ref_str, c->digest, (unsigned long long)c->size, SF_RESPONSE_MAX);
	if (!url)
		return oom(err);
	ret = registry_get(r, url, NULL, &resp, err);
	if (ret == 0)
		ret = check_status(r, &resp, "config blob: ", err);
	f->body = steal_pointer(&resp.body);
	f->len = resp.len;
	resp_clear(&resp);
	if (ret == 0)
		ret = verify_digest(r, "config", f, c->digest, err);
	if (ret == 0 && f->len != c->size)
		ret = sf_fail(err, EIO, "%s: config %s is %zu bytes, the manifest says %llu",
			      r->ref_str, c->digest, f->len, (unsigned long long)c->size);
	if (ret == 0 && !(img->config_digest = strdup(c->digest)))
		ret = oom(err);
	return ret;
}

static sf_ret fill_layer(const char *ref_str, struct sf_layer_desc *l,
			 struct sf_descriptor *d, char **diff_id, struct sf_error *err)
{
	sf_ret ret;

	l->digest = steal_pointer(&d->digest);
	l->media_type = steal_pointer(&d->media_type);
	l->size = d->size;
	l->diff_id = steal_pointer(diff_id);
	ret = sf_compression_from_media_type(l->media_type, &l->compression, err);
	if (ret < 0)
		sf_error_prefix(err, "%s: layer %s", ref_str, l->digest);
	return ret;
}

static sf_ret fill_layers(const char *ref_str, struct sf_image *img, struct sf_manifest *m,
			  struct sf_image_config *cfg, struct sf_error *err)
{
	img->layers = calloc(m->n_layers ? m->n_layers : 1, sizeof(*img->layers));
	if (!img->layers)
		return oom(err);
	for (size_t i = 0; i < m->n_layers; i++) {
		img->n_layers++;
		sf_ret ret =
			fill_layer(ref_str, &img->layers[i], &m->layers[i], &cfg->diff_ids[i], err);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static sf_ret resolve_config(struct sf_registry *r, struct sf_image *img,
			     struct sf_manifest *m, struct sf_error *err)
{
	struct sf_image_config cfg = { 0 };
	struct fetched f = { 0 };
	sf_ret ret = fetch_config(r, img, m, &f, err);

	if (ret == 0) {
		ret = sf_config_parse(f.body, f.len, m->n_layers, &cfg, err);
		if (ret < 0)
			sf_error_prefix(err, "%s: config %s", r->ref_str, m->config.digest);
	}
	if (ret == 0)
		ret = fill_layers(r->ref_str, img, m, &cfg, err);
	if (ret == 0)
		img->config_json = steal_pointer(&f.body);
	sf_image_config_clear(&cfg);
	free(f.body);
	return ret;
}

sf_ret sf_registry_resolve(struct sf_registry *r, struct sf_image *img, struct sf_error *err)
{
	struct sf_manifest m = { 0 };
	sf_ret ret = 0;

	memset(img, 0, sizeof(*img));
	img->ref = strdup(r->ref_str);
	if (!img->ref)
		ret = oom(err);
	if (ret == 0)
		ret = resolve_manifest(r, img, &m, err);
	if (ret == 0)
		ret = resolve_config(r, img, &m, err);
	sf_manifest_clear(&m);
	if (ret < 0)
		sf_image_clear(img);
	return ret;
}

/* The documents were checked when they were first fetched; check their
 * digests again anyway, since they come back from a file. */
static sf_ret image_from_documents(struct sf_image *img, const char *manifest_digest,
				   const char *manifest_json, const char *config_json,
				   struct sf_manifest *m, struct sf_error *err)
{
	struct sf_image_config cfg = { 0 };
	char got[SF_DIGEST_STR_LEN + 1];
	sf_ret ret;

	sf_sha256_buf(manifest_json, strlen(manifest_json), got);
	if (strcmp(got, manifest_digest) != 0)
		return sf_fail(err, EIO, "%s: saved manifest does not match %s", img->ref,
			       manifest_digest);
	ret = sf_manifest_parse(NULL, manifest_json, strlen(manifest_json), m, err);
	if (ret == 0 && m->kind != SF_KIND_IMAGE)
		ret = sf_fail(err, EBADMSG, "%s: saved manifest is not an image manifest", img->ref);
	if (ret < 0)
		return ret;
	sf_sha256_buf(config_json, strlen(config_json), got);
	if (strcmp(got, m->config.digest) != 0)
		return sf_fail(err, EIO, "%s: saved config does not match %s", img->ref,
			       m->config.digest);
	ret = sf_config_parse(config_json, strlen(config_json), m->n_layers, &cfg, err);
	if (ret == 0)
		ret = fill_layers(img->ref, img, m, &cfg, err);
	sf_image_config_clear(&cfg);
	return ret;
}

sf_ret sf_image_from_documents(const char *ref, const char *manifest_digest,
			       const char *manifest_json, const char *config_json,
			       struct sf_image *img, struct sf_error *err)
{
	struct sf_manifest m = { 0 };
	sf_ret ret;

	memset(img, 0, sizeof(*img));
	img->ref = strdup(ref);
	img->manifest_digest = strdup(manifest_digest);
	img->manifest_json = strdup(manifest_json);
	img->config_json = strdup(config_json);
	if (!img->ref || !img->manifest_digest || !img->manifest_json || !img->config_json)
		ret = oom(err);
	else
		ret = image_from_documents(img, manifest_digest, manifest_json, config_json, &m,
					   err);
	if (ret == 0 && !(img->config_digest = strdup(m.config.digest)))
		ret = oom(err);
	sf_manifest_clear(&m);
	if (ret < 0)
		sf_image_clear(img);
	return ret;
}

void sf_image_clear(struct sf_image *img)
{
	if (!img)
		return;
	free(img->ref);
	free(img->manifest_digest);
	free(img->manifest_json);
	free(img->config_digest);
	free(img->config_json);
	for (size_t i = 0; i < img->n_layers; i++) {
		free(img->layers[i].digest);
		free(img->layers[i].media_type);
		free(img->layers[i].diff_id);
	}
	free(img->layers);
	memset(img, 0, sizeof(*img));
}

/* ---- the handle ---- */

static sf_ret copy_ref(const struct sf_ref *src, struct sf_ref *dst, struct sf_error *err)
{
	if (!src || !src->registry || !src->repository || (!src->tag && !src->digest))
		return sf_fail(err, EINVAL, "incomplete image reference");
	dst->registry = strdup(src->registry);
	dst->repository = strdup(src->repository);
	dst->tag = dup_or_null(src->tag);
	dst->digest = dup_or_null(src->digest);
	if (!dst->registry || !dst->repository || (src->tag && !dst->tag) ||
	    (src->digest && !dst->digest))
		return oom(err);
	return 0;
}

static sf_ret copy_opts(struct sf_registry *r, const struct sf_registry_opts *o,
			struct sf_error *err)
{
	r->connect_timeout_s = SF_CONNECT_TIMEOUT_S;
	if (!o)
		return 0;
	if (o->connect_timeout_s > 0)
		r->connect_timeout_s = o->connect_timeout_s;
	r->os = dup_or_null(o->os);
	r->arch = dup_or_null(o->arch);
	r->variant = dup_or_null(o->variant);
	if ((o->os && !r->os) || (o->arch && !r->arch) || (o->variant && !r->variant))
		return oom(err);
	return 0;
}

static sf_ret init_names(struct sf_registry *r, bool insecure, struct sf_error *err)
{
	r->plain_http = insecure || sf_ref_is_loopback(&r->ref);
	r->ref_str = sf_ref_format(&r->ref);
	r->api_host = sf_ref_api_host(&r->ref);
	if (!r->ref_str || !r->api_host)
		return oom(err);
	r->base = xfmt("%s://%s", r->plain_http ? "http" : "https", r->api_host);
	r->peer = xfmt("registry %s", r->api_host);
	return r->base && r->peer ? 0 : oom(err);
}

sf_ret sf_registry_new(const struct sf_ref *ref, const struct sf_registry_opts *opts,
		       struct sf_registry **out, struct sf_error *err)
{
	struct sf_registry *r = calloc(1, sizeof(*r));
	sf_ret ret;

	*out = NULL;
	if (!r)
		return oom(err);
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->refresh_lock, NULL);
	pthread_once(&curl_once, curl_init_once);
	ret = copy_ref(ref, &r->ref, err);
	if (ret == 0)
		ret = copy_opts(r, opts, err);
	if (ret == 0)
		ret = init_names(r, opts && opts->insecure, err);
	if (ret < 0) {
		sf_registry_free(r);
		return ret;
	}
	*out = r;
	return 0;
}

void sf_registry_free(struct sf_registry *r)
{
	if (!r)
		return;
	sf_ref_clear(&r->ref);
	free(r->ref_str);
	free(r->api_host);
	free(r->base);
	free(r->peer);
	free(r->os);
	free(r->arch);
	free(r->variant);
	free(r->auth);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->refresh_lock);
	free(r);
}

char *sf_registry_blob_url(struct sf_registry *r, const char *digest)
{
	return xfmt("%s/v2/%s/blobs/%s", r->base, r->ref.repository, digest);
}

void sf_registry_setup_curl(struct sf_registry *r, void *curl_easy)
{
	CURL *c = curl_easy;

	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s);
	curl_easy_setopt(c, CURLOPT_USERAGENT, SF_USER_AGENT);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, SF_LOW_SPEED_BYTES);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, SF_LOW_SPEED_TIME_S);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the _STR forms */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, SF_MAX_REDIRECTS);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
}

const char *sf_registry_name(const struct sf_registry *r)
{
	return r->ref.registry;
}
