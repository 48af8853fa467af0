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
 *
 * What is persisted when.  The fetcher's chunk_done hook runs on the one
 * thread that drives every transfer, so it only queues the chunk's range.
 * A persister thread per spool takes the whole queue, fdatasync()s the
 * blob once, then appends one record per queued range to the map and
 * fdatasync()s the map once: a record is never written before the bytes
 * it names were durable.  A round starts when the oldest queued range has
 * waited SF_SPOOL_PERSIST_MS or SF_SPOOL_PERSIST_BATCH ranges are queued,
 * so a kill (or power cut) loses at most the ranges of the last
 * SF_SPOOL_PERSIST_MS (or BATCH chunks) plus those of the round in flight
 * - they are fetched again by the next pull, nothing else is lost.
 * Closing the spool stops the persister deterministically: a kept spool
 * (failure, cancel) gets one last round for what is queued; a committed or
 * discarded one drops the queue (its map is deleted anyway).  The first
 * failed sync or map write (EIO, ENOSPC) stops persisting for this spool:
 * it is logged once and the queue is dropped, never recorded - after a
 * failed fdatasync the page cache may hold bytes that never reach the
 * disk.  The pull itself goes on; only a later resume is smaller.
 */
#ifndef SF_RESUME_H
#define SF_RESUME_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "chunkmap.h"
#include "error.h"
#include "fetch.h"

/* A persister round waits at most this long for more ranges ... */
#define SF_SPOOL_PERSIST_MS 500
/* ... or starts at once when this many are queued. */
#define SF_SPOOL_PERSIST_BATCH 64

struct sf_persister;

struct sf_spool {
	char *work_dir;		      /* new string: root/tmp/<hex> */
	int blob_fd;		      /* the spool, O_RDWR */
	struct sf_chunkmap *map;      /* its final ranges */
	uint64_t resumed;	      /* bytes the map covered at open */
	uint64_t kept_size;	      /* size of the blob file found at open */
	struct sf_persister *persist; /* owned; its thread writes map records */
};

/* How a spool is closed; decides what happens to queued ranges. */
enum sf_spool_end {
	SF_SPOOL_COMMITTED, /* the layer is committed: queued ranges dropped */
	SF_SPOOL_KEEP,	    /* kept for a later pull: queued ranges persisted */
	SF_SPOOL_DISCARD,   /* worthless: queue dropped, work dir removed */
};

/* Open the work dir of a layer for a pull, keeping a usable spool and map
 * from an earlier pull, or starting both empty.  The caller holds the
 * layer's lock.  On failure s is left for sf_spool_close. */
sf_ret sf_spool_open(const struct sf_cache *c, const struct sf_layer_desc *desc,
		     struct sf_spool *s, struct sf_error *err);

/* Point the fetcher's resume hooks of b at s (b->fd too). */
void sf_spool_attach(struct sf_spool *s, struct sf_blob *b);

/* Stop and join the persister (see above for its queue), close fds; remove
 * the whole work dir for SF_SPOOL_DISCARD, else only what a later pull
 * rebuilds anyway (data, index, meta.json).  The fetcher must be done with
 * the blob (no chunk_done call may follow). */
void sf_spool_close(struct sf_spool *s, enum sf_spool_end end);

#endif
