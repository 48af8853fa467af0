/* auth.h - registry credentials, found where podman and docker keep them.
 *
 * Lookup order (containers/image's, pkg/docker/config):
 *   1. --creds USER:PASS (opts->creds), used as is;
 *   2. a user-specified file: --authfile (opts->authfile), else
 *      $REGISTRY_AUTH_FILE; when one is given, no other file is read;
 *   3. otherwise, in order: $XDG_RUNTIME_DIR/containers/auth.json (or
 *      /run/containers/<uid>/auth.json), $XDG_CONFIG_HOME/containers/auth.json
 *      (~/.config/...), $DOCKER_CONFIG/config.json (else ~/.docker/config.json),
 *      ~/.dockercfg (the legacy format without "auths").
 * In each file: credHelpers[host] (that helper decides alone), then the
 * "auths" entries, most specific key first ("host/ns/repo", "host/ns",
 * "host"), then keys in the legacy URL forms ("https://host/v1/",
 * "index.docker.io" for docker.io), then credsStore.  The first file with
 * an answer wins.  A missing file is not an error (except --authfile's); a
 * malformed one is.
 *
 * Helpers follow the Docker credential-helper protocol:
 * `docker-credential-<name> get`, the server (registry host) on stdin, a
 * JSON {"Username","Secret"} on stdout; a "<token>" username means the
 * secret is an identity (refresh) token.  A helper that says "credentials
 * not found" means none; one that fails otherwise or runs longer than
 * SF_AUTH_HELPER_TIMEOUT_S is an error.  Secrets never appear in messages.
 */
#ifndef SF_AUTH_H
#define SF_AUTH_H

#include "error.h"

#define SF_AUTH_HELPER_TIMEOUT_S 30
#define SF_AUTH_FILE_MAX (4u << 20)	/* auth.json we are willing to read */
#define SF_AUTH_HELPER_OUT_MAX (64u << 10)

struct sf_creds {
	char *username;	      /* NULL: no credentials */
	char *password;	      /* with username */
	char *identity_token; /* refresh token for the token server, or NULL */
	char *source;	      /* where they came from, for messages (no secret) */
};
void sf_creds_clear(struct sf_creds *c);
/* True when c holds anything to log in with. */
static inline int sf_creds_present(const struct sf_creds *c)
{
	return c->username || c->identity_token;
}

struct sf_auth_opts {
	const char *authfile; /* borrowed; NULL: $REGISTRY_AUTH_FILE or defaults */
	const char *creds;    /* "USER:PASS", borrowed; NULL: look up */
	int helper_timeout_ms; /* 0: SF_AUTH_HELPER_TIMEOUT_S */
};

/* Credentials for repository on registry (as in a parsed ref: "docker.io",
 * "127.0.0.1:5000"; "library/debian").  0 with out all NULL when there are
 * none; -errno with a message naming the file or helper when a source is
 * broken.  out's strings are new. */
sf_ret sf_auth_lookup(const struct sf_auth_opts *opts, const char *registry,
		      const char *repository, struct sf_creds *out, struct sf_error *err);

/* Decode a base64 "user:password" (auth.json's "auth").  New strings. */
sf_ret sf_auth_decode_basic(const char *b64, char **user, char **pass, struct sf_error *err);

#endif
