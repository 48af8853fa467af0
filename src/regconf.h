/* regconf.h - containers' registries.conf (mirrors) and certs.d (per-host
 * CA certificates), the two host-wide settings podman users already have.
 *
 * registries.conf (containers-registries.conf(5), version 2): we read the
 * [[registry]] tables (prefix, location, insecure, blocked,
 * mirror-by-digest-only) and their [[registry.mirror]] tables (location,
 * insecure, pull-from-mirror); every other table and key is parsed and
 * ignored.  The reader accepts the subset of TOML these files use
 * (comments, [table] and [[array]] headers, bare or quoted dotted keys,
 * basic and literal strings, booleans, integers, arrays of those, possibly
 * over several lines) and rejects anything else with the line number, so
 * a file we do not understand is never half-applied.  Debian 12 has no C
 * TOML library (libcpptoml is C++), hence our own.
 *
 * Matching a reference "host/repo" (containers/image's rules): the entry
 * with the longest prefix that equals the reference or is followed in it
 * by '/'; a prefix "*.example.com" matches any host ending in
 * ".example.com".  The prefix defaults to the location.  The reference's
 * part after the prefix is appended to the location and to each mirror's
 * location: prefix "docker.io", mirror "m:5000/hub" turns
 * docker.io/library/debian into m:5000/hub/library/debian.
 */
#ifndef SF_REGCONF_H
#define SF_REGCONF_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define SF_REGCONF_MAX (1u << 20) /* bytes of registries.conf we read */
#define SF_REGCONF_DEFAULT "/etc/containers/registries.conf"
#define SF_CERTS_DIRS_DEFAULT "/etc/containers/certs.d:/etc/docker/certs.d"
#define SF_CA_PEM_MAX (4u << 20)

struct sf_mirror {
	char *location;
	bool insecure;
	char *pull_from; /* "all" (default), "digest-only", "tag-only" */
};

struct sf_regconf_entry {
	char *prefix;
	char *location;
	bool insecure, blocked, mirror_by_digest_only;
	struct sf_mirror *mirrors;
	size_t n_mirrors;
};

struct sf_regconf {
	struct sf_regconf_entry *regs;
	size_t n;
};

/* Parse path.  A missing file is an empty config unless must_exist. */
sf_ret sf_regconf_load(const char *path, bool must_exist, struct sf_regconf *out,
		       struct sf_error *err);
/* sf_regconf_load, then the drop-ins (every .conf in <path>.d) in name order, as
 * containers/image does: a drop-in's [[registry]] replaces the entry with
 * the same prefix, or is added. */
sf_ret sf_regconf_load_all(const char *path, bool must_exist, struct sf_regconf *out,
			   struct sf_error *err);
/* Parse a document held in memory; name is for messages. */
sf_ret sf_regconf_parse(const char *text, const char *name, struct sf_regconf *out,
			struct sf_error *err);
void sf_regconf_clear(struct sf_regconf *c);

/* The entry for registry/repository, or NULL.  Borrowed from c. */
const struct sf_regconf_entry *sf_regconf_find(const struct sf_regconf *c, const char *registry,
					       const char *repository);

/* Where registry/repository lives under location `loc` of entry e:
 * host (new string) and repository (new string). */
sf_ret sf_regconf_rewrite(const struct sf_regconf_entry *e, const char *loc,
			  const char *registry, const char *repository, char **host,
			  char **repo, struct sf_error *err);

/* CA certificates for host ("h:port"): the concatenation of every *.crt in
 * <root>/<host>/ for each root of dirs (colon-separated; NULL: the
 * SOCI_FUSE_CERTS_DIRS environment variable, else SF_CERTS_DIRS_DEFAULT),
 * then the file extra (--tls-ca) when not NULL.  A *.crt without a PEM
 * certificate is skipped (as podman does); extra without one is -EINVAL,
 * naming it.  *pem is NULL when there is nothing.  New string. */
sf_ret sf_certs_for_host(const char *host, const char *dirs, const char *extra, char **pem,
			 size_t *len, struct sf_error *err);

#endif
