/* registry_auth.c - answering a registry's challenges, per endpoint.
 *
 * Bearer (the distribution token spec).  A 401 carries
 * "WWW-Authenticate: Bearer realm=..,service=..,scope=..".  With an identity
 * (refresh) token we POST the OAuth2 form grant_type=refresh_token to the
 * realm, as podman does; otherwise we GET realm?service=..&scope=.. (with
 * &account=<user> and HTTP Basic credentials when we have a login, else
 * anonymously).  The token's lifetime is expires_in (60 s when absent, per
 * the spec), counted from when we received it, minus the age issued_at
 * gives it when that is plausible (clocks differ).  The challenge is kept:
 * sf_reg_auth_header() fetches a new token for it shortly before the old
 * one expires (REFRESH_MARGIN), so long pulls do not hit 401 at all, and a
 * 403 without a challenge (ECR's answer to an expired token) repeats it.
 *
 * Basic.  "WWW-Authenticate: Basic" gets "Authorization: Basic
 * base64(user:password)" when we have a login; the same header failing
 * again means the credentials were refused, and that is the error.
 *
 * Concurrency.  The header lives under ep->lock; refreshes are serialised
 * by ep->refresh_lock, and a refresh asked for with a header that is no
 * longer current returns at once, so a burst of 401s from the fetcher's
 * chunks costs one token request.
 *
 * Secrets.  Passwords, identity tokens and tokens are never formatted into
 * messages; sf_reg_redact() is what traces print instead of a header.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "registry-private.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define xfmt sf_reg_xfmt
#define oom sf_reg_oom

#define BEARER_PREFIX "Authorization: Bearer "
#define BASIC_PREFIX "Authorization: Basic "
#define TOKEN_DEFAULT_LIFETIME_S 60  /* the spec's default for expires_in */
#define TOKEN_MAX_LIFETIME_S 86400   /* larger expires_in values are clamped */
#define REFRESH_MARGIN_MAX_MS 10000  /* refresh this long before expiry ... */
#define REFRESH_MARGIN_DIV 5	     /* ... or a fifth of a short lifetime */
#define CLIENT_ID "soci-fuse"
#define CRED_MAX 4096		     /* user:password we put in a header */

/* ---- small helpers ---- */

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

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* "Authorization: Basic base64(user:password)".  New string. */
static char *basic_header(const struct sf_creds *c)
{
	size_t ul = strlen(c->username), pl = strlen(c->password ? c->password : "");
	unsigned char *plain;
	char *out;

	if (ul + pl + 1 > CRED_MAX)
		return NULL;
	plain = malloc(ul + pl + 2);
	out = malloc(strlen(BASIC_PREFIX) + 4 * ((ul + pl + 3) / 3) + 1);
	if (!plain || !out) {
		free(plain);
		free(out);
		return NULL;
	}
	memcpy(plain, c->username, ul);
	plain[ul] = ':';
	memcpy(plain + ul + 1, c->password ? c->password : "", pl);
	strcpy(out, BASIC_PREFIX);
	EVP_EncodeBlock((unsigned char *)out + strlen(BASIC_PREFIX), plain, (int)(ul + pl + 1));
	explicit_bzero(plain, ul + pl + 1);
	free(plain);
	return out;
}

void sf_reg_redact(const char *header, char *out, size_t len)
{
	const char *sp;

	if (!len)
		return;
	if (!strncasecmp(header, "Authorization:", 14) && (sp = strchr(header + 15, ' ')))
		snprintf(out, len, "%.*s <redacted>", (int)(sp - header), header);
	else if (!strncasecmp(header, "Authorization:", 14))
		snprintf(out, len, "Authorization: <redacted>");
	else
		snprintf(out, len, "%s", header);
}

/* "auth server <host>" for messages, from a realm URL. */
static char *realm_peer(const char *realm)
{
	const char *h = strstr(realm, "://");
	size_t n;

	h = h ? h + 3 : realm;
	n = strcspn(h, "/?#@");
	for (size_t i = 0; i < n; i++)
		if (h[i] <= 0x20 || h[i] >= 0x7f)
			return strdup("auth server");
	return xfmt("auth server %.*s", (int)(n > 200 ? 200 : n), h);
}

static sf_ret check_realm(struct sf_endpoint *ep, const char *realm, struct sf_error *err)
{
	if (!realm || !*realm)
		return sf_fail(err, EACCES, "%s: Bearer challenge without a realm", ep->peer);
	if (strncasecmp(realm, "https://", 8) == 0)
		return 0;
	if (strncasecmp(realm, "http://", 7) == 0 && ep->plain_http)
		return 0;
	return sf_fail(err, EACCES, "%s: refusing token realm that is not %s", ep->peer,
		       ep->plain_http ? "an http(s) URL" : "https");
}

/* "service=..&scope=..[&account=..]" (URL-escaped).  New string. */
static char *token_params(struct sf_endpoint *ep, const struct sf_auth_challenge *ch)
{
	_cleanup_free_ char *scope_default = xfmt("repository:%s:pull", ep->repository);
	const char *scope = ch->scope ? ch->scope : scope_default;
	_cleanup_free_ char *svc = ch->service ? url_escape(ch->service) : NULL;
	_cleanup_free_ char *sc = scope ? url_escape(scope) : NULL;
	_cleanup_free_ char *acct = ep->creds.username ? url_escape(ep->creds.username) : NULL;

	if (!sc || (ch->service && !svc) || (ep->creds.username && !acct))
		return NULL;
	return xfmt("%s%s%sscope=%s%s%s", svc ? "service=" : "", svc ? svc : "", svc ? "&" : "",
		    sc, acct ? "&account=" : "", acct ? acct : "");
}

/* ---- token lifetime ---- */

/* Seconds since the epoch of an RFC 3339 UTC time, or -1. */
static int64_t parse_issued_at(const char *s)
{
	struct tm tm = { 0 };
	const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;

	if (!end)
		return -1;
	if (*end == '.')
		for (end++; *end >= '0' && *end <= '9'; end++)
			;
	if (strcmp(end, "Z") && strcmp(end, "+00:00"))
		return -1;
	return (int64_t)timegm(&tm);
}

int64_t sf_reg_token_lifetime_ms(const char *body, size_t len)
{
	json_t *j = json_loadb(body ? body : "", len, 0, NULL);
	json_t *e = j ? json_object_get(j, "expires_in") : NULL;
	int64_t life = TOKEN_DEFAULT_LIFETIME_S, issued, age;

	if (json_is_number(e) && json_number_value(e) >= 1) /* some servers send 300.0 */
		life = json_number_value(e) > TOKEN_MAX_LIFETIME_S ? TOKEN_MAX_LIFETIME_S
								   : (int64_t)json_number_value(e);
	issued = parse_issued_at(j ? json_string_value(json_object_get(j, "issued_at")) : NULL);
	age = issued >= 0 ? (int64_t)time(NULL) - issued : 0;
	json_decref(j);
	if (age > 0 && age < life) /* plausible: the token is already that old */
		return (life - age) * 1000;
	return life * 1000;
}

static int64_t refresh_margin_ms(int64_t lifetime_ms)
{
	int64_t m = lifetime_ms / REFRESH_MARGIN_DIV;

	return m > REFRESH_MARGIN_MAX_MS ? REFRESH_MARGIN_MAX_MS : m;
}

/* ---- token requests ---- */

static sf_ret token_request(struct sf_registry *r, struct sf_endpoint *ep,
			    const struct sf_auth_challenge *ch, const char *peer,
			    struct http_resp *resp, struct sf_error *err)
{
	_cleanup_free_ char *params = token_params(ep, ch), *url = NULL, *form = NULL;
	char *auth = NULL;
	sf_ret ret;

	if (!params)
		return oom(err);
	if (ep->creds.identity_token) {
		_cleanup_free_ char *rt = url_escape(ep->creds.identity_token);
		if (!rt)
			return oom(err);
		form = xfmt("grant_type=refresh_token&client_id=" CLIENT_ID "&%s&refresh_token=%s",
			    params, rt);
		explicit_bzero(rt, strlen(rt));
		url = strdup(ch->realm);
	} else {
		url = xfmt("%s%c%s", ch->realm, strchr(ch->realm, '?') ? '&' : '?', params);
		if (ep->creds.username && !(auth = basic_header(&ep->creds)))
			return oom(err);
	}
	if (!url || (ep->creds.identity_token && !form))
		ret = oom(err);
	else
		ret = sf_reg_http(r, ep, url, ACCEPT_JSON, auth, form, peer, resp, err);
	free_secret(auth);
	free_secret(steal_pointer(&form));
	return ret;
}

static sf_ret fetch_token(struct sf_registry *r, struct sf_endpoint *ep,
			  const struct sf_auth_challenge *ch, char **token, int64_t *life_ms,
			  struct sf_error *err)
{
	_cleanup_free_ char *peer = NULL;
	struct http_resp resp = { 0 };
	sf_ret ret = check_realm(ep, ch->realm, err);
	char what[300];

	if (ret < 0)
		return ret;
	peer = realm_peer(ch->realm);
	if (!peer)
		return oom(err);
	ret = token_request(r, ep, ch, peer, &resp, err);
	if (ret == 0 && resp.status != 200) {
		if (sf_creds_present(&ep->creds))
			snprintf(what, sizeof(what), "%s refused the credentials from %s: ", peer,
				 ep->creds.source ? ep->creds.source : "the auth file");
		else
			snprintf(what, sizeof(what), "anonymous token request to %s: ", peer);
		ret = sf_reg_check_status(r, ep, &resp, what, err);
	}
	if (ret == 0) {
		ret = sf_parse_token_response(resp.body, resp.len, token, err);
		if (ret < 0)
			sf_error_prefix(err, "%s: %s", r->ref_str, peer);
		else
			*life_ms = sf_reg_token_lifetime_ms(resp.body, resp.len);
	}
	if (resp.body)
		explicit_bzero(resp.body, resp.len);
	sf_reg_resp_clear(&resp);
	return ret;
}

/* A new header for challenge ch; *life_ms = 0 when it does not expire. */
static sf_ret use_challenge(struct sf_registry *r, struct sf_endpoint *ep,
			    const struct sf_auth_challenge *ch, const char *failed_header,
			    char **header, int64_t *life_ms, struct sf_error *err)
{
	char *token = NULL;
	sf_ret ret;

	*life_ms = 0;
	if (!strcasecmp(ch->scheme, "Basic")) {
		if (!ep->creds.username)
			return sf_fail(err, EACCES, "%s: %s requires a login (HTTP Basic "
				       "authentication) and no credentials were found for it "
				       "(podman login, --authfile, --creds)", r->ref_str, ep->peer);
		*header = basic_header(&ep->creds);
		if (!*header)
			return oom(err);
		if (failed_header && !strcmp(*header, failed_header)) {
			free_secret(steal_pointer(header));
			return sf_fail(err, EACCES, "%s: %s refused the credentials from %s",
				       r->ref_str, ep->peer, ep->creds.source);
		}
		return 0;
	}
	if (strcasecmp(ch->scheme, "Bearer"))
		return sf_fail(err, EACCES, "%s: unsupported authentication scheme \"%.40s\"",
			       ep->peer, ch->scheme);
	ret = fetch_token(r, ep, ch, &token, life_ms, err);
	if (ret < 0)
		return ret;
	*header = xfmt(BEARER_PREFIX "%s", token);
	free_secret(token);
	return *header ? 0 : oom(err);
}

static bool auth_is(struct sf_endpoint *ep, const char *header)
{
	bool same;

	pthread_mutex_lock(&ep->lock);
	same = strcmp(ep->auth ? ep->auth : "", header ? header : "") == 0;
	pthread_mutex_unlock(&ep->lock);
	return same;
}

sf_ret sf_reg_reauth(struct sf_registry *r, struct sf_endpoint *ep, const char *www_authenticate,
		     const char *failed_header, struct sf_error *err)
{
	struct sf_auth_challenge ch = { 0 };
	_cleanup_free_ char *saved = NULL;
	char *header = NULL;
	int64_t life = 0;
	sf_ret ret = 0;

	pthread_mutex_lock(&ep->refresh_lock);
	if (!auth_is(ep, failed_header))
		goto out; /* someone refreshed it since that request */
	if (!www_authenticate) {
		pthread_mutex_lock(&ep->lock);
		saved = ep->challenge ? strdup(ep->challenge) : NULL;
		pthread_mutex_unlock(&ep->lock);
		if (!saved) {
			ret = sf_fail(err, EACCES, "%s: %s: access denied (HTTP 403)", r->ref_str,
				      ep->peer);
			goto out;
		}
		www_authenticate = saved;
		failed_header = NULL; /* a 403 on a valid-looking token: retry with a new one */
	}
	ret = sf_parse_www_authenticate(www_authenticate, &ch, err);
	if (ret < 0) {
		sf_error_prefix(err, "%s", ep->peer);
		goto out;
	}
	ret = use_challenge(r, ep, &ch, failed_header, &header, &life, err);
	if (ret == 0) {
		char *chal = strdup(www_authenticate);
		pthread_mutex_lock(&ep->lock);
		free_secret(ep->auth);
		ep->auth = header;
		ep->lifetime_ms = life;
		ep->expires_ms = life ? sf_reg_now_ms() + life : 0;
		if (chal) {
			free(ep->challenge);
			ep->challenge = chal;
		}
		pthread_mutex_unlock(&ep->lock);
	}
out:
	sf_auth_challenge_clear(&ch);
	pthread_mutex_unlock(&ep->refresh_lock);
	return ret;
}

/* Copy ep's header into buf; true when its token is due for a refresh. */
static bool copy_header(struct sf_endpoint *ep, char *buf, size_t len)
{
	bool due;

	pthread_mutex_lock(&ep->lock);
	if (ep->auth && strlen(ep->auth) < len)
		memcpy(buf, ep->auth, strlen(ep->auth) + 1);
	else
		buf[0] = '\0';
	due = ep->expires_ms && ep->challenge &&
	      sf_reg_now_ms() >= ep->expires_ms - refresh_margin_ms(ep->lifetime_ms);
	pthread_mutex_unlock(&ep->lock);
	return due;
}

void sf_reg_auth_header(struct sf_registry *r, struct sf_endpoint *ep, char *buf, size_t len)
{
	struct sf_error e = { 0 };

	if (!len)
		return;
	if (!copy_header(ep, buf, len))
		return;
	/* Refresh ahead of expiry.  On failure keep the old header: the request
	 * then fails with 401 and the caller's reauth reports why. */
	if (sf_reg_reauth(r, ep, NULL, buf, &e) == 0)
		copy_header(ep, buf, len);
}
