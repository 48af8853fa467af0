/* manifest.h - the registry's JSON documents, parsed with no network.
 *
 * Image manifests (OCI and Docker schema 2), indexes / manifest lists and
 * the choice of one platform's manifest among their entries, the image
 * config's rootfs.diff_ids, the WWW-Authenticate challenge of a 401, the
 * token endpoint's answer and the registry's JSON error body.  Everything
 * takes (bytes, length) and fills plain structs, so unit tests and fuzzers
 * drive it directly; registry.c does the HTTP around it.
 *
 * Input is untrusted: types are checked strictly, digests must be valid
 * sha256, sizes non-negative integers, and documents and arrays are bounded
 * by the limits below.  Messages do not name the image (the caller prefixes
 * the ref); they name the field ("layers[3].digest").
 */
#ifndef SF_MANIFEST_H
#define SF_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SF_MANIFEST_MAX_SIZE (4u << 20)	/* manifest, index or config document */
#define SF_MANIFEST_MAX_LAYERS 1000
#define SF_INDEX_MAX_ENTRIES 1000
#define SF_MEDIA_TYPE_MAX 255
#define SF_TOKEN_MAX_LEN 6144		/* "Authorization: Bearer <t>" fits 8 KiB */
#define SF_WWW_AUTH_MAX 8192		/* longest WWW-Authenticate value parsed */

#define SF_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define SF_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define SF_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define SF_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define SF_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define SF_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
/* Accept header value for a manifest GET: all four types we parse. */
#define SF_MANIFEST_ACCEPT                                                               \
	SF_MT_OCI_INDEX ", " SF_MT_DOCKER_LIST ", " SF_MT_OCI_MANIFEST ", "              \
	SF_MT_DOCKER_MANIFEST

enum sf_manifest_kind {
	SF_KIND_IMAGE = 1, /* an image manifest: config + layers */
	SF_KIND_INDEX = 2, /* an index / manifest list: per-platform manifests */
};

struct sf_descriptor {
	char *media_type;
	char *digest; /* "sha256:<hex>", valid */
	uint64_t size;
};

struct sf_index_entry {
	struct sf_descriptor desc;
	bool has_platform;
	char *os, *arch, *variant; /* variant may be NULL; all NULL without platform */
};

struct sf_manifest {
	enum sf_manifest_kind kind;
	char *media_type; /* one of the four SF_MT_* manifest/index types */
	/* SF_KIND_IMAGE */
	struct sf_descriptor config;
	struct sf_descriptor *layers; /* bottom first */
	size_t n_layers;
	/* SF_KIND_INDEX */
	struct sf_index_entry *entries;
	size_t n_entries;
};

/* Parse a manifest or index.  content_type is the response's Content-Type
 * (parameters ignored) or NULL; the document's own mediaType wins, and the
 * two must not disagree about image vs index.  Schema 1 is rejected. */
sf_ret sf_manifest_parse(const char *content_type, const void *data, size_t len,
			 struct sf_manifest *out, struct sf_error *err);
void sf_manifest_clear(struct sf_manifest *m);

/* True for the image manifest media types (OCI, Docker schema 2). */
bool sf_media_type_is_image_manifest(const char *media_type);

struct sf_platform {
	const char *os;	     /* NULL = "linux" */
	const char *arch;    /* NULL = sf_platform_default_arch() */
	const char *variant; /* NULL = any */
};

/* GOARCH spelling of a uname machine ("x86_64" -> "amd64", "aarch64" ->
 * "arm64", "armv7l" -> "arm"...); NULL when unknown. */
const char *sf_platform_goarch(const char *machine);
/* This machine's architecture, GOARCH spelling. */
const char *sf_platform_default_arch(void);

/* Choose the entry for want among an index's image manifests.  Entries with
 * os "unknown" (build attestations) and nested indexes are skipped; arm64's
 * variant "v8" is the same as no variant; the first match wins, and an
 * entry without platform is the fallback when nothing matches.  Otherwise
 * -ENOENT "no manifest for linux/amd64 in the index (available: ...)". */
sf_ret sf_index_select(const struct sf_manifest *index, const struct sf_platform *want,
		       const struct sf_index_entry **out, struct sf_error *err);

struct sf_image_config {
	char **diff_ids; /* rootfs.diff_ids, bottom first, valid digests */
	size_t n_diff_ids;
};

/* Parse an image config; its diff_ids count must equal n_layers. */
sf_ret sf_config_parse(const void *data, size_t len, size_t n_layers,
		       struct sf_image_config *out, struct sf_error *err);
void sf_image_config_clear(struct sf_image_config *c);

struct sf_auth_challenge {
	char *scheme;		      /* "Bearer", "Basic" (as sent) */
	char *realm, *service, *scope; /* NULL when absent */
	char *error;		      /* error="insufficient_scope" etc. */
};

/* Parse a WWW-Authenticate value: one or more challenges, each a scheme
 * and comma-separated name=value / name="quoted \"value\"" parameters.  The
 * first Bearer challenge is returned, else the first one. */
sf_ret sf_parse_www_authenticate(const char *value, struct sf_auth_challenge *out,
				 struct sf_error *err);
void sf_auth_challenge_clear(struct sf_auth_challenge *c);

/* The token endpoint's JSON: "token", else "access_token".  The token must
 * be visible ASCII (it goes into a header) and at most SF_TOKEN_MAX_LEN.
 * Messages never contain the token. */
sf_ret sf_parse_token_response(const void *data, size_t len, char **token,
			       struct sf_error *err);

/* The registry's {"errors":[{"code":..,"message":..}]} body as one printable
 * line ("manifest unknown"; several joined by "; ").  False when the body
 * is not such a document. */
bool sf_parse_registry_error(const void *data, size_t len, char *buf, size_t buflen);

#endif
