/* fetch.h - parallel chunked blob download (libcurl multi).
 *
 * One fetcher thread owns one CURLM and drives every transfer.  Each blob is
 * cut into fixed-size chunks fetched with single-range GETs ("Range:
 * bytes=a-b"); a chunk's bytes are written with pwrite() at their offset in
 * the blob's spool fd as they arrive, after the answer was checked to be 206
 * with the matching Content-Range.  The consumer (the layer's unpack thread)
 * waits on the blob's condition variable for `contiguous` to grow: bytes
 * [0, contiguous) are on disk and final.  Chunks are issued in blob order,
 * round-robin over blobs, with at most `window` chunks in flight or done
 * beyond `contiguous` per blob, so the unpacker is never starved by chunks
 * far ahead and the spool never runs far ahead of unpacking.
 *
 * A 200 answer to a Range request means "no range support": that blob is
 * fetched with one streamed GET instead.  All requests of a blob go to the
 * endpoint its registry had when the blob was added (sf_registry_endpoint).
 * A 401 triggers sf_endpoint_reauth and a retry; 5xx, 429 and transport
 * errors retry with jittered backoff, resuming only the missing bytes,
 * within a bounded budget; after that the blob fails with a message naming
 * registry, blob and status.
 */
#ifndef SF_FETCH_H
#define SF_FETCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "registry.h"

#define SF_FETCH_DEFAULT_CHUNK_SIZE (8u << 20)
#define SF_FETCH_DEFAULT_CONNECTIONS 16
#define SF_FETCH_DEFAULT_WINDOW 8 /* chunks per blob beyond contiguous; at least connections */
#define SF_FETCH_DEFAULT_RETRIES 5

struct sf_fetch_opts {
	uint64_t chunk_size; /* 0 = default */
	int connections;     /* max transfers in flight over all blobs; 0 = default */
	int window;	     /* 0 = default */
	int retries;	     /* per chunk; 0 = default */
	/* Shared with every process using the same cache (connslots.h):
	 * slots_dir is the cache's locks/ dir (NULL: no shared limit), and
	 * cache_connections the limit there (0 = default). */
	const char *slots_dir;
	int cache_connections;
};

/* One blob to download.  The caller fills the first block, then hands it to
 * sf_fetcher_add(); it must stay alive until `finished` is set (or the
 * fetcher is freed). */
struct sf_blob {
	/* set by the caller */
	struct sf_registry *reg; /* borrowed */
	char *digest;		 /* borrowed; "sha256:..." for URLs and messages */
	uint64_t size;		 /* expected blob size (from the manifest) */
	int fd;			 /* borrowed spool fd, opened O_RDWR; written with pwrite */
	uint64_t start;		 /* bytes [0, start) are already in fd (resume) */
	/* Optional resume hooks (NULL: none), called with hook_arg.  present:
	 * the length of the prefix of [off, off + len) already final in fd,
	 * asked once per chunk by sf_fetcher_add; such bytes are not fetched.
	 * chunk_done: on the fetcher thread, after every byte of a chunk was
	 * written to fd (chunk mode only); it must not block (resume.c only
	 * queues the range for its persister thread). */
	uint64_t (*present)(void *hook_arg, uint64_t off, uint64_t len);
	void (*chunk_done)(void *hook_arg, uint64_t off, uint64_t len);
	void *hook_arg;

	/* progress, under lock; waiters use cond */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t contiguous; /* [0, contiguous) is on disk and final */
	uint64_t fetched;    /* total bytes written so far, for progress */
	uint64_t reused;     /* bytes `present` reported, not fetched */
	uint64_t downloaded; /* body bytes written to fd by this fetcher */
	bool finished;	     /* no more progress will come (done or failed) */
	int error;	     /* 0, or negative errno when failed */
	struct sf_error err; /* message when failed */

	/* private to the fetcher */
	void *priv;
};

/* Initialise lock/cond and progress fields; call before filling the rest. */
void sf_blob_init(struct sf_blob *b);
void sf_blob_destroy(struct sf_blob *b);

/* Block until contiguous >= want or the blob finished.  Returns the current
 * contiguous count, or the blob's negative error when it failed before
 * reaching `want`. */
int64_t sf_blob_wait(struct sf_blob *b, uint64_t want);

struct sf_fetcher;

sf_ret sf_fetcher_new(const struct sf_fetch_opts *opts, struct sf_fetcher **out,
		      struct sf_error *err);
/* Queue a blob; thread-safe; wakes the fetcher thread. */
void sf_fetcher_add(struct sf_fetcher *f, struct sf_blob *b);
/* Stop fetching one blob: its transfers are aborted, it finishes with
 * -ECANCELED ("download cancelled") unless it already finished; returns once
 * the fetcher no longer touches the blob or its fd.  Thread-safe; a no-op
 * for a blob that finished or was never added (which makes it safe even
 * after sf_fetcher_free() for a blob added before it).  Must not be called
 * from the fetcher thread (e.g. a registry callback). */
void sf_fetcher_cancel(struct sf_fetcher *f, struct sf_blob *b);
/* Stop all transfers, fail unfinished blobs with -ECANCELED, join the
 * thread.  The fetcher stays valid: later sf_fetcher_add() calls finish the
 * blob with -ECANCELED at once, so consumers can be joined after this. */
void sf_fetcher_stop(struct sf_fetcher *f);
/* sf_fetcher_stop, then release. */
void sf_fetcher_free(struct sf_fetcher *f);

#endif
