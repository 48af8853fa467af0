/* registry.c - the OCI distribution API client's handle and transport:
 * where an image is pulled from (endpoints), how every request is made,
 * and what the fetcher gets (blob URLs, curl settings, auth headers).
 * Resolving is in registry_resolve.c, authentication in registry_auth.c.
 *
 * Endpoints.  A reference is pulled from a list of endpoints: the mirrors
 * registries.conf gives for it (regconf.h), in order, then the registry
 * itself (or the location registries.conf rewrites it to).  docker.io is
 * served by registry-1.docker.io.  Each endpoint has its own credentials
 * (auth.h: looked up once, here), its own token state and its own CA
 * certificates (every .crt in certs.d/<host>, plus --tls-ca).
 *
 * Transport.  https://<host> always, except plain http for a loopback
 * host (127.0.0.0/8, ::1, localhost: nobody can sit between us and it)
 * for which no CA certificate is configured, when the user said --insecure, or for an endpoint registries.conf marks
 * insecure.  Every handle gets the same settings (sf_registry_setup_curl):
 * TLS verification on with the system store plus the endpoint's CAs,
 * http/https only, a connect timeout and a stall detector instead of an
 * overall deadline for blob transfers.  Redirects are followed by curl
 * for small documents (manifests, configs: curl drops our Authorization
 * header on a host change); the fetcher follows blob redirects itself
 * (fetch_http.c).  Documents read into memory (manifests, configs, tokens,
 * error bodies) are capped at SF_RESPONSE_MAX.
 *
 * Messages name the reference and, for HTTP errors, carry the registry's
 * own error message: "127.0.0.1:5000/library/nope:latest: manifest unknown
 * (HTTP 404)"; transport failures name the host:
 * "cannot reach registry 127.0.0.1:1: Couldn't connect to server".
 * Secrets (passwords, tokens, Authorization lines) never reach a message;
 * the optional request trace ($SOCI_FUSE_DEBUG_HTTP=1) redacts them.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "registry-private.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "http_util.h"
#include "regconf.h"

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
#define SF_REGISTRY_MSG_MAX 300			/* registry's error text we quote */
#define SF_BUF_MIN 4096
#define SF_MAX_ENDPOINTS 16			/* mirrors + the registry */
#define SF_TRANSIENT_RETRIES 4			/* 429, 5xx, resets of one document GET */
#define SF_BACKOFF_BASE_MS 250
#define SF_RETRY_AFTER_MAX_S 10			/* longer waits: give up instead */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

char *sf_reg_xfmt(const char *fmt, ...)
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
#define xfmt sf_reg_xfmt

sf_ret sf_reg_oom(struct sf_error *err)
{
	return sf_fail(err, ENOMEM, "out of memory");
}
#define oom sf_reg_oom

int64_t sf_reg_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ---- HTTP ---- */

void sf_reg_resp_clear(struct http_resp *r)
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
		r->retry_after_s = -1;
	} else if ((v = header_value(p, len, "Content-Type"))) {
		free(r->content_type);
		r->content_type = v;
	} else if ((v = header_value(p, len, "Retry-After"))) {
		r->retry_after_s = sf_http_retry_after(v, time(NULL));
		free(v);
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

/* A loopback registry without a configured CA, and any with --insecure, is
 * spoken to in plain HTTP; one that serves TLS then resets or answers 400,
 * which alone would leave the user guessing. */
#define PLAIN_HTTP_HINT "; plain HTTP was used (loopback registry without a CA, or --insecure): " \
	"if it serves HTTPS, give its CA with --tls-ca or certs.d"

static sf_ret transport_error(struct sf_registry *r, struct sf_endpoint *ep, CURLcode rc,
			      const char *errbuf, const char *peer, const struct http_resp *resp,
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
			       rc == CURLE_SSL_CONNECT_ERROR && !ep->plain_http
				       ? " (a plain-HTTP registry needs --insecure)"
				       : rc == CURLE_PEER_FAILED_VERIFICATION
				       ? " (a private CA: --tls-ca FILE or certs.d)" : "");
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
	    rc == CURLE_COULDNT_RESOLVE_PROXY)
		return sf_fail(err, curl_errno(rc), "cannot reach %s: %s", peer, what);
	return sf_fail(err, curl_errno(rc), "request to %s failed: %s%s", peer,
		       *errbuf ? errbuf : what,
		       ep->plain_http && (rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING)
			       ? PLAIN_HTTP_HINT : "");
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

static void trace(const char *method, const char *url, const char *auth, long status)
{
	char red[128];
	const char *q;

	if (!getenv("SOCI_FUSE_DEBUG_HTTP"))
		return;
	sf_reg_redact(auth ? auth : "", red, sizeof(red));
	q = strchr(url, '?'); /* token requests carry no secret there, but signed URLs do */
	fprintf(stderr, "soci-fuse: http: %s %.*s%s [%s] -> %ld\n", method,
		(int)(q ? q - url : (ptrdiff_t)strlen(url)), url, q ? "?<query>" : "",
		*red ? red : "anonymous", status);
}

sf_ret sf_reg_http(struct sf_registry *r, struct sf_endpoint *ep, const char *url,
		   const char *accept, const char *auth, const char *form, const char *peer,
		   struct http_resp *resp, struct sf_error *err)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = request_headers(accept, auth);
	CURL *c = curl_easy_init();
	CURLcode rc;
	sf_ret ret = 0;

	sf_reg_resp_clear(resp);
	if (!c || (!hdrs && (accept || (auth && *auth)))) {
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(c);
		return oom(err);
	}
	sf_registry_setup_curl_ep(r, ep, c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)SF_REQUEST_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
	if (form)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
	rc = curl_easy_perform(c);
	resp->broken = rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
		       rc == CURLE_PARTIAL_FILE || rc == CURLE_GOT_NOTHING || rc == CURLE_HTTP2 ||
		       rc == CURLE_HTTP2_STREAM;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	else
		ret = transport_error(r, ep, rc, errbuf, peer, resp, err);
	trace(form ? "POST" : "GET", url, auth, resp->status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return ret;
}

static bool transient(sf_ret ret, const struct http_resp *resp)
{
	if (ret < 0) /* a reset; not TLS, not "unreachable" (offline fallback) */
		return resp->broken;
	return resp->status == 429 || resp->status == 500 || resp->status == 502 ||
	       resp->status == 503 || resp->status == 504;
}

/* Wait before retry number `tries` (1-based) of a transient failure; false
 * when the server asks for longer than we are willing to wait. */
static bool transient_wait(const struct http_resp *resp, int tries)
{
	long ms = (long)SF_BACKOFF_BASE_MS << (tries - 1);

	if (resp->status == 429 && resp->retry_after_s > SF_RETRY_AFTER_MAX_S)
		return false;
	if (resp->status == 429 && resp->retry_after_s >= 0)
		ms = resp->retry_after_s * 1000;
	usleep((useconds_t)ms * 1000);
	return true;
}

/* GET from endpoint ep, answering one 401 challenge (or an ECR-style 403
 * without one, to a request that carried a token) with fresh credentials,
 * and retrying 429 (Retry-After), 5xx and resets a few times. */
sf_ret sf_reg_get(struct sf_registry *r, struct sf_endpoint *ep, const char *url,
		  const char *accept, struct http_resp *resp, struct sf_error *err)
{
	char auth[SF_AUTH_LINE_MAX];
	int tries = 0;
	sf_ret ret;

	for (int attempt = 0;; attempt++) {
		bool challenged, forbidden;

		sf_reg_auth_header(r, ep, auth, sizeof(auth));
		ret = sf_reg_http(r, ep, url, accept, auth, NULL, ep->peer, resp, err);
		if (transient(ret, resp) && tries < SF_TRANSIENT_RETRIES &&
		    transient_wait(resp, ++tries)) {
			attempt--; /* not an auth round */
			continue;
		}
		if (ret < 0 || attempt > 0)
			return ret;
		challenged = resp->status == 401 && resp->www_auth;
		forbidden = resp->status == 403 && !resp->www_auth && auth[0];
		if (!challenged && !forbidden)
			return 0;
		ret = sf_reg_reauth(r, ep, challenged ? resp->www_auth : NULL, auth, err);
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

sf_ret sf_reg_check_status(struct sf_registry *r, struct sf_endpoint *ep,
			   const struct http_resp *resp, const char *what, struct sf_error *err)
{
	char msg[SF_REGISTRY_MSG_MAX];
	bool denied = resp->status == 401 || resp->status == 403;
	const char *hint = "";

	if (resp->status == 200)
		return 0;
	if (!sf_parse_registry_error(resp->body, resp->len, msg, sizeof(msg)))
		snprintf(msg, sizeof(msg), "%s", denied ? "access denied" : "request failed");
	if (denied && !sf_creds_present(&ep->creds))
		hint = "; the repository may not exist, or it needs credentials (none found for "
		       "this registry: podman login, --authfile)";
	else if (denied)
		hint = "; the credentials may lack access";
	else if (resp->status == 400 && ep->plain_http && resp->body &&
		 memmem(resp->body, resp->len, "HTTPS", 5))
		/* Go's and nginx's answer to plain HTTP on a TLS port */
		hint = PLAIN_HTTP_HINT;
	return sf_fail(err, status_errno(resp->status), "%s: %s%s%s (HTTP %ld)%s", r->ref_str,
		       ep->mirror ? "mirror: " : "", what, msg, resp->status, hint);
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
	const char *stall = getenv("SOCI_FUSE_STALL_TIMEOUT"); /* a knob for tests */
	long v = stall ? strtol(stall, NULL, 10) : 0;

	r->stall_s = v > 0 && v <= 3600 ? v : SF_LOW_SPEED_TIME_S;
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

/* Fill endpoint ep for name (a registry name as written: "docker.io",
 * "m:5000") and repository (stolen). */
static sf_ret endpoint_init(struct sf_endpoint *ep, const char *name, char *repository,
			    bool mirror, bool insecure, const struct sf_registry_opts *o,
			    struct sf_error *err)
{
	struct sf_ref tmp = { .registry = (char *)name };
	struct sf_auth_opts ao = { .authfile = o ? o->authfile : NULL, .creds = o ? o->creds : NULL };
	size_t ca_len;
	sf_ret ret;

	pthread_mutex_init(&ep->lock, NULL);
	pthread_mutex_init(&ep->refresh_lock, NULL);
	ep->repository = repository;
	ep->mirror = mirror;
	ep->host = sf_ref_api_host(&tmp);
	ep->peer = xfmt("%s %s", mirror ? "mirror" : "registry", ep->host ? ep->host : name);
	if (!ep->host || !ep->repository || !ep->peer)
		return oom(err);
	ret = sf_auth_lookup(&ao, name, repository, &ep->creds, err);
	if (ret == 0)
		ret = sf_certs_for_host(ep->host, o ? o->certs_dirs : NULL, o ? o->tls_ca : NULL,
					&ep->ca_pem, &ca_len, err);
	if (ret < 0) {
		sf_error_prefix(err, "%s", ep->peer);
		return ret;
	}
	ep->ca_len = ca_len;
	/* A loopback registry speaks plain HTTP unless a CA was configured for
	 * it (certs.d or --tls-ca): then the user evidently serves TLS there. */
	ep->plain_http = insecure || (sf_ref_is_loopback(&tmp) && !ep->ca_pem);
	ep->base = xfmt("%s://%s", ep->plain_http ? "http" : "https", ep->host);
	return ep->base ? 0 : oom(err);
}

static void endpoint_clear(struct sf_endpoint *ep)
{
	free(ep->host);
	free(ep->base);
	free(ep->repository);
	free(ep->peer);
	free(ep->ca_pem);
	sf_creds_clear(&ep->creds);
	if (ep->auth)
		explicit_bzero(ep->auth, strlen(ep->auth));
	free(ep->auth);
	free(ep->challenge);
	pthread_mutex_destroy(&ep->lock);
	pthread_mutex_destroy(&ep->refresh_lock);
}

/* As ssh-agent does: a process that holds a password leaves no core dump
 * (and cannot be ptraced by its user).  PR_SET_DUMPABLE alone is not
 * enough: with fs.suid_dumpable=2 the kernel dumps non-dumpable processes
 * too, so the core size limit goes to 0 as well (the kernel then writes no
 * core file, and handlers such as systemd-coredump honour the limit they
 * are given).  Not PR_SET_DUMPABLE under AddressSanitizer, whose leak
 * checker must ptrace the process at exit. */
static void no_core_dumps(void)
{
	struct rlimit none = { 0, 0 };

	setrlimit(RLIMIT_CORE, &none);
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SF_ASAN 1
#endif
#endif
#if !defined(__SANITIZE_ADDRESS__) && !defined(SF_ASAN)
	prctl(PR_SET_DUMPABLE, 0L, 0L, 0L, 0L);
#endif
}

static bool use_mirror(const struct sf_regconf_entry *e, const struct sf_mirror *m,
		       const struct sf_ref *ref)
{
	const char *pf = m->pull_from ? m->pull_from : "all";

	if (!ref->digest && e->mirror_by_digest_only)
		return false;
	if (!strcmp(pf, "digest-only"))
		return ref->digest != NULL;
	if (!strcmp(pf, "tag-only"))
		return ref->digest == NULL;
	return true;
}

static sf_ret add_endpoint(struct sf_registry *r, const struct sf_regconf_entry *e,
			   const char *loc, bool mirror, bool insecure,
			   const struct sf_registry_opts *o, struct sf_error *err)
{
	char *host = NULL, *repo = NULL;
	sf_ret ret;

	if (r->n_eps == SF_MAX_ENDPOINTS)
		return sf_fail(err, E2BIG, "%s: more than %d mirrors", r->ref_str,
			       SF_MAX_ENDPOINTS - 1);
	if (e) {
		ret = sf_regconf_rewrite(e, loc, r->ref.registry, r->ref.repository, &host, &repo,
					 err);
		if (ret < 0)
			return ret;
	} else if (!(host = strdup(r->ref.registry)) || !(repo = strdup(r->ref.repository))) {
		free(host);
		return oom(err);
	}
	r->eps[r->n_eps].reg = r;
	ret = endpoint_init(&r->eps[r->n_eps++], host, repo, mirror, insecure, o, err);
	free(host);
	return ret;
}

/* Mirrors from registries.conf, then the registry. */
static sf_ret init_endpoints(struct sf_registry *r, const struct sf_registry_opts *o,
			     struct sf_error *err)
{
	const char *path = o && o->registries_conf ? o->registries_conf : SF_REGCONF_DEFAULT;
	bool insecure = o && o->insecure;
	const struct sf_regconf_entry *e;
	struct sf_regconf conf;
	sf_ret ret = sf_regconf_load_all(path, o && o->registries_conf, &conf, err);

	if (ret < 0)
		return ret;
	r->eps = calloc(SF_MAX_ENDPOINTS, sizeof(*r->eps));
	if (!r->eps) {
		sf_regconf_clear(&conf);
		return oom(err);
	}
	e = sf_regconf_find(&conf, r->ref.registry, r->ref.repository);
	if (e && e->blocked)
		ret = sf_fail(err, EACCES, "%s: blocked by %s", r->ref_str, path);
	for (size_t i = 0; e && ret == 0 && i < e->n_mirrors; i++)
		if (use_mirror(e, &e->mirrors[i], &r->ref))
			ret = add_endpoint(r, e, e->mirrors[i].location, true,
					   insecure || e->mirrors[i].insecure, o, err);
	if (ret == 0)
		ret = add_endpoint(r, e, e && e->location ? e->location : e ? e->prefix : NULL,
				   false, insecure || (e && e->insecure), o, err);
	sf_regconf_clear(&conf);
	__atomic_store_n(&r->ep, &r->eps[r->n_eps - 1], __ATOMIC_RELEASE); /* until a resolve */
	for (size_t i = 0; ret == 0 && i < r->n_eps; i++)
		if (sf_creds_present(&r->eps[i].creds))
			no_core_dumps();
	return ret;
}

sf_ret sf_registry_new(const struct sf_ref *ref, const struct sf_registry_opts *opts,
		       struct sf_registry **out, struct sf_error *err)
{
	struct sf_registry *r = calloc(1, sizeof(*r));
	sf_ret ret;

	*out = NULL;
	if (!r)
		return oom(err);
	pthread_once(&curl_once, curl_init_once);
	ret = copy_ref(ref, &r->ref, err);
	if (ret == 0)
		ret = copy_opts(r, opts, err);
	if (ret == 0 && !(r->ref_str = sf_ref_format(&r->ref)))
		ret = oom(err);
	if (ret == 0)
		ret = init_endpoints(r, opts, err);
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
	free(r->os);
	free(r->arch);
	free(r->variant);
	for (size_t i = 0; i < r->n_eps; i++)
		endpoint_clear(&r->eps[i]);
	free(r->eps);
	free(r);
}

struct sf_endpoint *sf_registry_endpoint(struct sf_registry *r)
{
	return __atomic_load_n(&r->ep, __ATOMIC_ACQUIRE);
}

char *sf_endpoint_blob_url(struct sf_endpoint *ep, const char *digest)
{
	return xfmt("%s/v2/%s/blobs/%s", ep->base, ep->repository, digest);
}

void sf_registry_setup_curl_ep(struct sf_registry *r, struct sf_endpoint *ep, void *curl_easy)
{
	CURL *c = curl_easy;

	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s);
	curl_easy_setopt(c, CURLOPT_USERAGENT, SF_USER_AGENT);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, SF_LOW_SPEED_BYTES);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->stall_s);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the _STR forms */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, SF_MAX_REDIRECTS);
	/* never resend our Authorization header to another host on a redirect */
	curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ep->ca_pem) {
		/* added to the default store, which curl still loads */
		struct curl_blob blob = { ep->ca_pem, ep->ca_len, CURL_BLOB_NOCOPY };
		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
	}
}

void sf_endpoint_setup_curl(struct sf_endpoint *ep, void *curl_easy)
{
	sf_registry_setup_curl_ep(ep->reg, ep, curl_easy);
}

const char *sf_registry_name(const struct sf_registry *r)
{
	return r->ref.registry;
}

void sf_endpoint_auth_header(struct sf_endpoint *ep, char *buf, size_t len)
{
	sf_reg_auth_header(ep->reg, ep, buf, len);
}

sf_ret sf_endpoint_reauth(struct sf_endpoint *ep, const char *www_authenticate,
			  const char *failed_header, struct sf_error *err)
{
	return sf_reg_reauth(ep->reg, ep, www_authenticate, failed_header, err);
}
