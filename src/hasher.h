/* hasher.h - SHA-256 on a thread of its own, off a layer's unpack thread.
 *
 * A layer's pull thread used to hash both streams itself: the compressed
 * blob as it read the spool, and the tar as it came out of the
 * decompressor.  For one large layer that made one thread do inflate, two
 * SHA-256s, tar parsing and the data copy, while the machine's other core
 * had little to do.  A hasher moves a digest to its own thread:
 *
 *   follow: hashes a blob's spool file as the fetcher makes it contiguous
 *           (sf_blob_wait), reading the page cache where it just was
 *           written through a read-only mapping (fileview.h), without a
 *           copy: the unpack thread no longer touches those bytes for the
 *           digest.
 *   pipe:   sf_hasher_feed() copies bytes into a bounded ring
 *           (SF_HASHER_RING bytes) that the thread hashes; the feeder
 *           blocks only while the ring is full, so memory stays bounded.
 *
 * Either way sf_hasher_final() waits until every byte was hashed and gives
 * the digest.  Thread-safety: one feeder thread; final and free from the
 * thread that created the hasher.
 */
#ifndef SF_HASHER_H
#define SF_HASHER_H

#include <stddef.h>

#include "digest.h"
#include "error.h"
#include "fetch.h"

#define SF_HASHER_RING (4u << 20)  /* pipe: bytes buffered for the thread */
#define SF_HASHER_BLOCK (1u << 20) /* follow: bytes hashed per wake-up */

struct sf_hasher;

/* Hash blob b (its spool fd, borrowed; b->size bytes) on a new thread as it
 * becomes contiguous.  b must stay alive, and must finish (complete,
 * failed or cancelled) before sf_hasher_free() or the thread waits on. */
sf_ret sf_hasher_follow(struct sf_blob *b, int fd, struct sf_hasher **out,
			struct sf_error *err);
/* A pipe hasher: bytes come from sf_hasher_feed(). */
sf_ret sf_hasher_pipe(struct sf_hasher **out, struct sf_error *err);
/* Copy len bytes into the pipe; blocks while the ring is full. */
void sf_hasher_feed(struct sf_hasher *h, const void *buf, size_t len);
/* Wait until everything was hashed (for a pipe: everything fed so far;
 * no feeding after this) and write "sha256:<hex>" to out.  A followed blob
 * that failed (download error, cancel) or a spool read error returns its
 * negative errno with err filled. */
sf_ret sf_hasher_final(struct sf_hasher *h, char out[SF_DIGEST_STR_LEN + 1], struct sf_error *err);
/* Stop the thread (a followed blob must have finished) and release; NULL ok. */
void sf_hasher_free(struct sf_hasher *h);

#endif
