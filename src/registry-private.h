/* registry-private.h - internals shared by the registry client's modules:
 * registry.c (the handle, HTTP, resolve) and registry_auth.c (tokens,
 * Basic auth, credentials).  Nothing else includes this.
 */
#ifndef SF_REGISTRY_PRIVATE_H
#define SF_REGISTRY_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "manifest.h"
#include "registry.h"

#define SF_AUTH_LINE_MAX 8192 /* "Authorization: Bearer <token>" */
#define SF_RESPONSE_MAX SF_MANIFEST_MAX_SIZE /* any response read into memory */
#define ACCEPT_JSON "Accept: application/json"
#define ACCEPT_MANIFEST "Accept: " SF_MANIFEST_ACCEPT

/* One place an image can be pulled from: a mirror or the registry itself.
 * Auth state is per endpoint: a token of one host means nothing to another.
 * Everything but the auth state below `lock` is set by sf_registry_new and
 * never changes (registry.h, sf_registry_endpoint). */
struct sf_endpoint {
	struct sf_registry *reg; /* the handle it belongs to */
	char *host;	  /* host[:port] we talk to */
	char *base;	  /* "https://host[:port]" */
	char *repository; /* the repository on this endpoint (a mirror may add a prefix) */
	char *peer;	  /* "registry host[:port]" / "mirror host[:port]", for messages */
	bool plain_http;
	bool mirror;
	char *ca_pem;  /* extra CA certificates (certs.d, --tls-ca), PEM, or NULL */
	size_t ca_len;
	struct sf_creds creds;

	pthread_mutex_t lock;	      /* guards auth, expires_ms, challenge */
	pthread_mutex_t refresh_lock; /* one token request at a time */
	char *auth;		      /* "Authorization: ..." line, or NULL */
	int64_t expires_ms;	      /* monotonic; 0: does not expire (Basic, none) */
	int64_t lifetime_ms;	      /* of the current token */
	char *challenge;	      /* the Bearer challenge that gave the token */
};

struct sf_registry {
	struct sf_ref ref;
	char *ref_str; /* normalised reference, for messages */
	char *os, *arch, *variant;
	long connect_timeout_s;
	long stall_s; /* abort a transfer slower than 1 byte/s for this long */
	struct sf_endpoint *eps; /* mirrors in order, the registry last */
	size_t n_eps;
	/* The endpoint the last good resolve chose, for transfers to take.
	 * Read and written with __atomic (acquire/release) only: a resolve
	 * publishes it while transfers of earlier blobs run. */
	struct sf_endpoint *ep;
};

struct http_resp {
	long status;
	char *body; /* NUL-terminated, NULL when empty */
	size_t len, cap;
	bool too_big, nomem;
	char *content_type;
	char *www_auth;
	long retry_after_s; /* Retry-After in seconds, -1 when absent */
	bool broken;	    /* the connection broke mid-way (reset, empty reply) */
};

/* ---- registry.c ---- */
char *sf_reg_xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
sf_ret sf_reg_oom(struct sf_error *err);
void sf_reg_resp_clear(struct http_resp *r);
int64_t sf_reg_now_ms(void);
/* One request to url (GET, or POST of form when form != NULL) into resp,
 * with ep's transport settings.  Non-2xx statuses are not errors here.
 * auth is a whole header line or NULL; userpwd "user:pass" for Basic. */
sf_ret sf_reg_http(struct sf_registry *r, struct sf_endpoint *ep, const char *url,
		   const char *accept, const char *auth, const char *form, const char *peer,
		   struct http_resp *resp, struct sf_error *err);
/* GET with ep's credentials, answering one challenge (see registry.c). */
sf_ret sf_reg_get(struct sf_registry *r, struct sf_endpoint *ep, const char *url,
		  const char *accept, struct http_resp *resp, struct sf_error *err);
/* sf_registry_setup_curl for a given endpoint. */
void sf_registry_setup_curl_ep(struct sf_registry *r, struct sf_endpoint *ep, void *curl_easy);
/* 200, or a one-line error with the registry's own message. */
sf_ret sf_reg_check_status(struct sf_registry *r, struct sf_endpoint *ep,
			   const struct http_resp *resp, const char *what,
			   struct sf_error *err);

/* ---- registry_auth.c ---- */
/* Answer a challenge from ep (www_authenticate; NULL for a 403 without one:
 * repeat the last challenge) and install the new header.  failed_header:
 * see sf_registry_reauth. */
sf_ret sf_reg_reauth(struct sf_registry *r, struct sf_endpoint *ep, const char *www_authenticate,
		     const char *failed_header, struct sf_error *err);
/* The current header line for ep, refreshed first when its token is about
 * to expire.  Copied into buf. */
void sf_reg_auth_header(struct sf_registry *r, struct sf_endpoint *ep, char *buf, size_t len);
/* Milliseconds the token in a token response (JSON) is good for from now:
 * expires_in (default 60 s, capped at a day) minus a plausible age from
 * issued_at. */
int64_t sf_reg_token_lifetime_ms(const char *body, size_t len);
/* A copy of header with its secret replaced by "<redacted>", for logs. */
void sf_reg_redact(const char *header, char *out, size_t len);

#endif
