/* digest.h - SHA-256 content digests ("sha256:<64 hex>") via OpenSSL EVP,
 * which uses SHA-NI on these CPUs (3.7x coreutils, see FIELD-NOTES). */
#ifndef SF_DIGEST_H
#define SF_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define SF_DIGEST_STR_LEN 71 /* "sha256:" + 64 hex */

struct sf_sha256; /* opaque */

struct sf_sha256 *sf_sha256_new(void); /* NULL on ENOMEM */
void sf_sha256_update(struct sf_sha256 *h, const void *data, size_t len);
/* Writes "sha256:<hex>" (SF_DIGEST_STR_LEN + 1 bytes with NUL) to out. */
void sf_sha256_final(struct sf_sha256 *h, char out[SF_DIGEST_STR_LEN + 1]);
void sf_sha256_free(struct sf_sha256 *h);

/* One-shot digest of a buffer. */
void sf_sha256_buf(const void *data, size_t len, char out[SF_DIGEST_STR_LEN + 1]);

/* True when s is "sha256:" followed by exactly 64 lowercase hex digits. */
bool sf_digest_valid(const char *s);

/* Pointer to the hex part of a valid digest (after "sha256:"). */
const char *sf_digest_hex(const char *digest);

#endif
