/* resume.h - the spool of a layer pull that survives the puller's death.
 *
 * A pull works in tmp/<hex>/ (cache.h).  Its compressed bytes go to
 * tmp/<hex>/blob at their offsets; tmp/<hex>/blob.map (chunkmap.h) lists
 * the byte ranges of blob that are final.  Both are kept when a pull dies
 * or fails for a reason that does not condemn the bytes (kill -9, SIGTERM,
 * network errors, a full disk), so the next pull of the layer - in this
 * process or another, always under the layer's lock - fetches only what
 * the map does not cover.  The unpack always restarts from blob offset 0
 * over the spool: data and index are rebuilt (they are cheap compared to
 * the download), and both digests are checked over every byte as in a
 * fresh pull.  Bytes are never trusted because of the map alone.
 *
 * When a pull has read the whole spool (so its digest was computed) and
 * failed anyway, the spool is worthless (wrong bytes, or a corrupt layer)
 * and is thrown away; the next pull starts empty.
 */
#ifndef SF_RESUME_H
#define SF_RESUME_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "chunkmap.h"
#include "error.h"
#include "fetch.h"

struct sf_spool {
	char *work_dir;		 /* new string: root/tmp/<hex> */
	int blob_fd;		 /* the spool, O_RDWR */
	struct sf_chunkmap *map; /* its final ranges */
	uint64_t resumed;	 /* bytes the map covered at open */
};

/* Open the work dir of a layer for a pull, keeping a usable spool and map
 * from an earlier pull, or starting both empty.  The caller holds the
 * layer's lock.  On failure s is left for sf_spool_close. */
sf_ret sf_spool_open(const struct sf_cache *c, const struct sf_layer_desc *desc,
		     struct sf_spool *s, struct sf_error *err);

/* Point the fetcher's resume hooks of b at s (b->fd too). */
void sf_spool_attach(struct sf_spool *s, struct sf_blob *b);

/* Close fds; remove the whole work dir when `discard`, else only what a
 * later pull rebuilds anyway (data, index, meta.json). */
void sf_spool_close(struct sf_spool *s, bool discard);

#endif
