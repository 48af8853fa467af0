/* registry.h - OCI distribution API client: resolve an image (manifest,
 * index -> platform, config) and hand out blob URLs and auth headers for the
 * fetcher.  Bearer tokens (anonymous or with credentials, auth.h) and Basic
 * auth; mirrors from registries.conf and CA certificates from certs.d
 * (regconf.h).
 *
 * Thread safety: everything may be called from any thread.  A resolve may
 * run while transfers of earlier blobs use the handle (the store re-resolves
 * a tag that may have moved): it only changes which endpoint
 * sf_registry_endpoint() hands to transfers that start later.
 */
#ifndef SF_REGISTRY_H
#define SF_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "decompress.h"
#include "error.h"
#include "ref.h"

struct sf_layer_desc {
	char *digest;	  /* compressed blob digest "sha256:..." */
	char *media_type;
	uint64_t size;	  /* compressed size from the manifest */
	char *diff_id;	  /* uncompressed digest from the config */
	enum sf_compression compression;
};

struct sf_image {
	char *ref;		/* normalised reference string */
	char *manifest_digest;	/* digest of the image manifest (not the index) */
	char *manifest_json;	/* raw bytes of the manifest, NUL-terminated */
	char *config_digest;
	char *config_json;	/* raw bytes of the config, NUL-terminated */
	struct sf_layer_desc *layers; /* bottom first */
	size_t n_layers;
};
void sf_image_clear(struct sf_image *img);

/* Rebuild an image from the documents of an earlier resolve (the cache
 * keeps them for offline use).  Both digests are checked again. */
sf_ret sf_image_from_documents(const char *ref, const char *manifest_digest,
			       const char *manifest_json, const char *config_json,
			       struct sf_image *img, struct sf_error *err);

/* True when a resolve failure means "could not talk to the registry" (so a
 * cached resolution may be used) rather than "the registry said no". */
bool sf_registry_unreachable(sf_ret r);

struct sf_registry_opts {
	bool insecure;	       /* allow plain HTTP to a non-loopback registry */
	const char *os;	       /* platform to select from an index; NULL = "linux" */
	const char *arch;      /* NULL = this machine's (GOARCH spelling: amd64, arm64...) */
	const char *variant;   /* NULL = any */
	long connect_timeout_s; /* 0 = default (10 s) */
	const char *authfile;	/* --authfile; NULL: $REGISTRY_AUTH_FILE, defaults (auth.h) */
	const char *creds;	/* --creds USER:PASSWORD; NULL: look up */
	const char *tls_ca;	/* --tls-ca: CA file trusted for this pull, or NULL */
	const char *certs_dirs;	/* certs.d roots, ':'-separated; NULL: regconf.h default */
	const char *registries_conf; /* NULL: /etc/containers/registries.conf if present */
};

struct sf_registry;

/* ref is copied. */
sf_ret sf_registry_new(const struct sf_ref *ref, const struct sf_registry_opts *opts,
		       struct sf_registry **out, struct sf_error *err);
void sf_registry_free(struct sf_registry *r);

/* GET the manifest (following an index to the platform's manifest), the
 * config, check every digest that can be checked, and fill img.  Errors
 * name the ref: "127.0.0.1:5000/library/nope:latest: manifest unknown". */
sf_ret sf_registry_resolve(struct sf_registry *r, struct sf_image *img, struct sf_error *err);

/* One place blobs are pulled from: a mirror or the registry itself, with
 * its own URL, TLS settings and credentials. */
struct sf_endpoint;

/* The endpoint the last successful resolve chose (before any: the registry
 * itself).  Borrowed: endpoints are made by sf_registry_new and live until
 * sf_registry_free, never changed but for their token, which has a lock of
 * its own.  A transfer takes its endpoint here once and uses it for URL,
 * TLS settings and Authorization alike, so all of them belong to one host
 * even when a resolve meanwhile switches r to another mirror: otherwise a
 * chunk for mirror A could go out with mirror B's credentials. */
struct sf_endpoint *sf_registry_endpoint(struct sf_registry *r);

/* "http(s)://host/v2/<repo>/blobs/<digest>" on ep.  New string. */
char *sf_endpoint_blob_url(struct sf_endpoint *ep, const char *digest);

/* Current "Authorization: ..." header line for ep, or "" when anonymous;
 * a token about to expire is refreshed first.  Copied into buf (len >=
 * 8192 recommended).  Only for requests to ep's own origin. */
void sf_endpoint_auth_header(struct sf_endpoint *ep, char *buf, size_t len);

/* A request to ep got 401 with this WWW-Authenticate value (or 403 without
 * a challenge: www_authenticate NULL, repeat the last one): obtain a fresh
 * token.  failed_header is the Authorization line the failing request
 * used; when the token has already been refreshed since, this returns 0 at
 * once, so many chunks failing together fetch one token. */
sf_ret sf_endpoint_reauth(struct sf_endpoint *ep, const char *www_authenticate,
			  const char *failed_header, struct sf_error *err);

/* Apply ep's TLS/transport settings to a curl easy handle (CA, timeouts,
 * user agent).  Takes a CURL * as void * to keep curl.h out. */
void sf_endpoint_setup_curl(struct sf_endpoint *ep, void *curl_easy);

/* Registry name for messages ("127.0.0.1:5000"). Borrowed. */
const char *sf_registry_name(const struct sf_registry *r);

#endif
