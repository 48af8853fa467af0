/* ref.h - image references, normalised the way Docker/podman do it:
 * "debian" -> docker.io/library/debian:latest; a first component with '.',
 * ':' or equal to "localhost" is a registry host[:port]; tag and/or
 * @sha256:digest. */
#ifndef SF_REF_H
#define SF_REF_H

#include <stdbool.h>

#include "error.h"

struct sf_ref {
	char *registry;	  /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
	char *repository; /* "library/debian" */
	char *tag;	  /* "bookworm"; "latest" when neither tag nor digest given;
			     NULL when only a digest was given */
	char *digest;	  /* "sha256:<hex>" or NULL */
};

sf_ret sf_ref_parse(const char *s, struct sf_ref *out, struct sf_error *err);
void sf_ref_clear(struct sf_ref *ref);
/* Normalised full reference: "docker.io/library/debian:bookworm",
 * "host/repo@sha256:...", "host/repo:tag@sha256:...".  New string. */
char *sf_ref_format(const struct sf_ref *ref);
/* The host that serves docker.io is registry-1.docker.io. New string. */
char *sf_ref_api_host(const struct sf_ref *ref);
/* Loopback registries (127.0.0.0/8, ::1, localhost) may use plain HTTP. */
bool sf_ref_is_loopback(const struct sf_ref *ref);

#endif
