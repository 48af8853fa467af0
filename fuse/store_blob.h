/* store_blob.h - bytes of a layer blob straight from the registry, for the
 * store's `blob` files (see store.c for why they are not kept on disk). */
#ifndef SF_STORE_BLOB_H
#define SF_STORE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "registry.h"

/* GET bytes [off, off + len) of blob `digest` (len >= 1, off + len <= the
 * blob's size) into buf with one Range request, renewing the token once on
 * 401.  Fails unless the registry answers with exactly those bytes (206 with
 * the matching Content-Range, or 200 from offset 0).  reg is borrowed and
 * may be shared with other threads. */
sf_ret sf_store_blob_get(struct sf_registry *reg, const char *digest, uint64_t off, size_t len,
			 unsigned char *buf, struct sf_error *err);

#endif
