/* cache.h - the persistent layer cache.  doc/cache.md is the user-level
 * description of all of it (layout, locks, resume, gc).
 *
 * Layout under the cache root (default /var/lib/soci-fuse):
 *
 *   layers/<hex>/        a complete, verified layer (hex = blob sha256)
 *       meta.json        digest, diff_id, sizes, compression, entry count
 *       index            the layer tree (index.h's on-disk form)
 *       data             regular-file contents, each at its index offset,
 *                        4 KiB aligned; sparse holes stay holes
 *   tmp/<hex>/           a layer being pulled, or a pull that stopped: blob
 *                        (the compressed bytes, written at their offsets as
 *                        chunks arrive), blob.map (which ranges of blob are
 *                        final, chunkmap.h), data, later index and meta.json
 *   tmp/gc.<hex>.<pid>/  a complete layer being deleted by gc (cache_gc.h)
 *   locks/<hex>.lock     flock()ed by the process pulling that layer
 *   locks/<hex>.use      flock()ed shared by each mount using the layer;
 *                        its mtime is the last use (cache_gc.h)
 *   images/<hex>.json    the last resolve of a reference (hex = sha256 of
 *                        the normalised reference): manifest and config
 *                        documents, used when the registry cannot be reached;
 *                        replaced through images/<hex>.json.tmp.XXXXXX
 *
 * Invariant: a directory appears under layers/ only by rename() of a tmp/
 * directory whose blob digest and diff_id were both verified and whose
 * index and meta.json were written and fsync()ed first; its blob.map and
 * blob are removed only after the rename (a kill during the syncs keeps the
 * download for a resume; a leftover in layers/ is removed when the layer is
 * loaded).  So anything under layers/ is complete; anything under
 * tmp/ is not.  The lock holder of a layer keeps tmp/<hex>/blob and
 * blob.map of an earlier pull and resumes from them (resume.h); it throws
 * them away when they do not name this blob, or when a pull read the whole
 * spool and failed anyway.  The compressed blob is not kept once the layer
 * is complete.
 *
 * Several processes may share a cache: the one holding locks/<hex>.lock
 * pulls; the others wait for the lock and then find the layer complete (or
 * resume a pull that died).
 */
#ifndef SF_CACHE_H
#define SF_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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
			   _Atomic bool *cancel, struct sf_error *err);
void sf_cache_unlock_layer(int lock_fd);

/* Load a complete layer: its index and an open data fd.  -ENOENT when the
 * layer is not (completely) in the cache. */
sf_ret sf_cache_load_layer(const struct sf_cache *c, const struct sf_layer_desc *desc,
			   struct sf_index **idx, int *data_fd, struct sf_error *err);

/* The uncompressed size recorded in a complete layer's meta.json (0 when
 * unknown), for progress reports of layers served from the cache. */
uint64_t sf_cache_layer_unpacked_size(const struct sf_cache *c, const char *digest);

/* Write index + meta.json into work_dir, fsync, drop the blob, and rename
 * work_dir into layers/.  Only call after both digests were verified. */
sf_ret sf_cache_commit_layer(const struct sf_cache *c, const struct sf_layer_desc *desc,
			     const char *work_dir, const struct sf_index *idx,
			     uint64_t diff_size, struct sf_error *err);

/* Remember / recall the documents of a resolved reference (img->ref). */
sf_ret sf_cache_save_image(const struct sf_cache *c, const struct sf_image *img,
			   struct sf_error *err);
/* Remove images/ temporary files left by a crash while saving (see
 * cache.c); each is reported on `log` (may be NULL).  Returns how many. */
unsigned sf_cache_clean_image_tmp(const struct sf_cache *c, FILE *log);
/* -ENOENT when the reference was never resolved with this cache. */
sf_ret sf_cache_load_image(const struct sf_cache *c, const char *ref, struct sf_image *img,
			   time_t *saved_at, struct sf_error *err);

/* Remove a directory tree (best effort); used for failed work dirs. */
void sf_cache_remove_tree(const char *path);

#endif
