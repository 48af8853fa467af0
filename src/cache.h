/* cache.h - the persistent layer cache.
 *
 * Layout under the cache root (default /var/lib/soci-fuse):
 *
 *   layers/<hex>/        a complete, verified layer (hex = blob sha256)
 *       meta.json        digest, diff_id, sizes, compression, entry count
 *       index            the layer tree (index.h's on-disk form)
 *       data             regular-file contents, each at its index offset,
 *                        4 KiB aligned; sparse holes stay holes
 *   tmp/<hex>/           a layer being pulled: blob (the compressed bytes,
 *                        written at their offsets as chunks arrive), data,
 *                        and later index and meta.json
 *   locks/<hex>.lock     flock()ed by the process pulling that layer
 *   images/<hex>.json    the last resolve of a reference (hex = sha256 of
 *                        the normalised reference): manifest and config
 *                        documents, used when the registry cannot be reached
 *
 * Invariant: a directory appears under layers/ only by rename() of a tmp/
 * directory whose blob digest and diff_id were both verified and whose
 * index and meta.json were written and fsync()ed first.  So anything under
 * layers/ is complete; anything under tmp/ is not, and is thrown away (by
 * the lock holder) before a new pull of that layer starts.  The compressed
 * blob is not kept once the layer is complete.
 *
 * Several processes may share a cache: the one holding locks/<hex>.lock
 * pulls; the others wait for the lock and then find the layer complete.
 */
#ifndef SF_CACHE_H
#define SF_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "error.h"
#include "index.h"
#include "registry.h"

#define SF_CACHE_DEFAULT_DIR "/var/lib/soci-fuse"

struct sf_cache {
	char *root; /* absolute path */
};

/* Create the layout if needed.  dir is made absolute. */
sf_ret sf_cache_open(const char *dir, struct sf_cache **out, struct sf_error *err);
void sf_cache_free(struct sf_cache *c);

/* New strings: root/layers/<hex>, root/tmp/<hex>. */
char *sf_cache_layer_dir(const struct sf_cache *c, const char *digest);
char *sf_cache_work_dir(const struct sf_cache *c, const char *digest);

/* Take the cross-process lock of a layer, waiting while another process
 * holds it; gives up with -ECANCELED when *cancel becomes true. */
sf_ret sf_cache_lock_layer(const struct sf_cache *c, const char *digest, int *lock_fd,
			   volatile bool *cancel, struct sf_error *err);
void sf_cache_unlock_layer(int lock_fd);

/* Load a complete layer: its index and an open data fd.  -ENOENT when the
 * layer is not (completely) in the cache. */
sf_ret sf_cache_load_layer(const struct sf_cache *c, const struct sf_layer_desc *desc,
			   struct sf_index **idx, int *data_fd, struct sf_error *err);

/* The uncompressed size recorded in a complete layer's meta.json (0 when
 * unknown), for progress reports of layers served from the cache. */
uint64_t sf_cache_layer_unpacked_size(const struct sf_cache *c, const char *digest);

/* Start a fresh work dir for a layer (removing any leftover). New string. */
sf_ret sf_cache_begin_layer(const struct sf_cache *c, const char *digest, char **work_dir,
			    struct sf_error *err);

/* Write index + meta.json into work_dir, fsync, drop the blob, and rename
 * work_dir into layers/.  Only call after both digests were verified. */
sf_ret sf_cache_commit_layer(const struct sf_cache *c, const struct sf_layer_desc *desc,
			     const char *work_dir, const struct sf_index *idx,
			     uint64_t diff_size, struct sf_error *err);

/* Remember / recall the documents of a resolved reference (img->ref). */
sf_ret sf_cache_save_image(const struct sf_cache *c, const struct sf_image *img,
			   struct sf_error *err);
/* -ENOENT when the reference was never resolved with this cache. */
sf_ret sf_cache_load_image(const struct sf_cache *c, const char *ref, struct sf_image *img,
			   time_t *saved_at, struct sf_error *err);

/* Remove a directory tree (best effort); used for failed work dirs. */
void sf_cache_remove_tree(const char *path);

#endif
