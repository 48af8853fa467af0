/* cache_gc.h - what is in a layer cache, and removing what is not needed.
 *
 * In use.  A mount holds a shared flock on locks/<hex>.use for every layer
 * of its image from before it looks the layer up in the cache until it
 * exits (sf_cache_use_layer); taking it also sets the file's mtime, which
 * is the layer's "last use".  gc removes a complete layer only after it
 * took that lock exclusive without waiting, so a layer a live mount serves
 * (or is pulling, or is about to load) is never removed; a mount that
 * starts meanwhile waits the moment gc holds it, then finds the layer gone
 * and pulls it again.
 *
 * Removal.  A complete layer is first renamed out of layers/ (to
 * tmp/gc.<hex>.<pid>) and then deleted, so layers/ never holds a half
 * deleted layer.  The use lock is let go right after the rename: a mount
 * that starts meanwhile finds the layer gone and pulls it again into
 * tmp/<hex>/, it need not wait for the deletion.  gc holds an flock on the
 * layer's directory itself from before the rename until it is deleted, so
 * a tmp/gc.* directory nobody holds was left by a gc that was killed, and
 * the next gc removes it (the pid in the name only keeps names apart: it
 * cannot tell a dead gc from a live one in another pid namespace).  A
 * partial pull (tmp/<hex>/: a spool kept for resume, see resume.h) is
 * removed only while gc holds its locks/<hex>.lock, i.e. no process is
 * pulling it.  Lock files themselves are never removed: another process
 * may have one open, and a fresh file would be a second lock.
 */
#ifndef SF_CACHE_GC_H
#define SF_CACHE_GC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "cache.h"
#include "error.h"

/* Mark a layer in use by this process (shared flock, waits while a gc
 * removes it) and record the use.  *fd: release with sf_cache_unuse_layer. */
sf_ret sf_cache_use_layer(const struct sf_cache *c, const char *digest, int *fd,
			  struct sf_error *err);
void sf_cache_unuse_layer(int fd);

enum sf_cache_state {
	SF_CACHE_COMPLETE, /* layers/<hex>/ */
	SF_CACHE_PARTIAL,  /* tmp/<hex>/: a pull in progress or stopped */
	SF_CACHE_REMOVING, /* tmp/gc.<hex>.<pid>/: being deleted, or left by a killed gc */
};

struct sf_cache_entry {
	char hex[65];
	char name[96];	    /* its directory's name under layers/ or tmp/ */
	enum sf_cache_state state;
	uint64_t disk;	    /* bytes allocated on disk */
	uint64_t persisted; /* partial: blob bytes its chunk map covers */
	time_t last_use;    /* 0 when unknown */
	bool in_use;	    /* complete: a mount holds it; partial: being pulled;
			       removing: a live gc is deleting it */
};

/* Every layer of the cache, least recently used first.  New array. */
sf_ret sf_cache_list(const struct sf_cache *c, struct sf_cache_entry **out, size_t *n,
		     struct sf_error *err);

/* Remove what a killed gc left and partial pulls nobody pulls (and stale
 * temporary files under images/), then complete layers no mount uses,
 * least recently used first, until the cache holds at most max_size bytes.
 * Each removal is reported on `log` (may be NULL).  *freed: bytes. */
sf_ret sf_cache_gc(const struct sf_cache *c, uint64_t max_size, FILE *log, uint64_t *freed,
		   struct sf_error *err);

/* `soci-fuse cache ls` and `cache gc`: print, return an exit status. */
int sf_cache_ls_main(const char *dir);
int sf_cache_gc_main(const char *dir, uint64_t max_size);

#endif
