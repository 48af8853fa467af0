/* layer.h - one layer of a mounted image: its tree, its data, and the
 * thread that pulls it (fetch -> verify -> decompress -> untar -> cache).
 *
 * Readers take `lock` shared to look at `idx`; the pull thread takes it
 * exclusive to add entries.  An entry is added only once it is whole: a
 * regular file after all its bytes are in the data file, so a reader that
 * finds an entry can serve it without waiting.  After each addition, and
 * when the state changes, the pull thread calls `notify` so the front-end
 * can answer requests that were waiting.
 *
 * Entries are served while the layer streams in, before its digests can be
 * checked (they cover the whole blob).  If a check fails at the end, the
 * layer turns FAILED and every later request on it gets EIO; nothing of it
 * reaches the cache's layers/ directory.
 */
#ifndef SF_LAYER_H
#define SF_LAYER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "error.h"
#include "fetch.h"
#include "index.h"
#include "layer_limits.h"
#include "registry.h"

enum sf_layer_state {
	SF_LAYER_PENDING,  /* not started */
	SF_LAYER_WAITING,  /* another process is pulling it */
	SF_LAYER_FETCHING, /* downloading and unpacking */
	SF_LAYER_COMPLETE, /* verified and in the cache */
	SF_LAYER_FAILED,
};

struct sf_layer;
typedef void (*sf_layer_notify_fn)(struct sf_layer *l, void *arg);

struct sf_layer {
	unsigned number;		   /* 0 = bottom */
	const struct sf_layer_desc *desc;  /* borrowed from the image */
	const struct sf_cache *cache;	   /* borrowed */
	struct sf_limits limits;	   /* SF_LIMITS_DEFAULTS unless the caller sets them
					      before sf_layer_start */

	pthread_rwlock_t lock; /* guards idx */
	struct sf_index *idx;
	int data_fd;		 /* file contents at idx offsets; -1 until known */
	_Atomic int state;	 /* enum sf_layer_state */
	struct sf_error err;	 /* why it failed (valid once FAILED) */
	_Atomic uint64_t unpacked; /* uncompressed bytes processed so far */

	struct sf_blob blob;
	pthread_t thread;
	bool thread_started;
	_Atomic bool cancel; /* written by the front-end, polled by the pull thread */

	sf_layer_notify_fn notify;
	void *notify_arg;
	bool failure_reported; /* owned by the front-end */
	/* Set by the front-end, under `lock` (shared), when it hands an entry
	 * of idx other than the root to the kernel.  Until then the pull may
	 * replace idx with a fresh one (a resumed spool turned out wrong, see
	 * layer.c) without an inode number ever naming two entries. */
	_Atomic bool exposed;
};

/* Set up and, if the cache has it complete, load it (state COMPLETE). */
sf_ret sf_layer_init(struct sf_layer *l, unsigned number, const struct sf_layer_desc *desc,
		     const struct sf_cache *cache, struct sf_error *err);
/* Start the pull thread for a layer that is not complete. */
sf_ret sf_layer_start(struct sf_layer *l, struct sf_registry *reg, struct sf_fetcher *fetcher,
		      struct sf_error *err);
/* Ask the pull thread to stop (the fetcher must be stopped too) and join. */
void sf_layer_stop(struct sf_layer *l);
void sf_layer_destroy(struct sf_layer *l);

static inline enum sf_layer_state sf_layer_state(struct sf_layer *l)
{
	return (enum sf_layer_state)atomic_load(&l->state);
}
const char *sf_layer_state_name(enum sf_layer_state s);

#endif
