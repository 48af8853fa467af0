/* connslots.h - one limit on download connections for every soci-fuse
 * process that shares a cache dir.
 *
 * Each mount, pull and store is a process of its own with a fetcher of its
 * own (fetch.h), which keeps up to --connections range GETs in flight.  Ten
 * mounts starting at once would open ten times as many connections to the
 * registry.  The cache dir they share keeps the count instead:
 *
 *   locks/conn.<i>     (i < total) connection slots: a transfer runs only
 *                      while its process holds one with flock(LOCK_EX);
 *   locks/fetcher.<j>  (j < total) a process that wants slots (has blobs
 *                      to fetch) holds one of these, so the others can
 *                      count the competitors.
 *
 * Fair shares: a process takes slots only while it holds fewer than
 * total / competitors (at least one), recounted at most every
 * SF_CONNSLOTS_RECOUNT_MS; one above its share finishes its transfers and
 * takes no new slot, so a newcomer gets slots as chunks end (a chunk lasts
 * a fraction of a second).  The kernel drops the flocks of a process that
 * dies, so kill -9 never leaks a slot, and nothing needs cleaning up.
 * Lock files are never deleted (cache.h's rule for lock files).
 *
 * Only the fetcher thread uses a connslots object; it takes no lock.
 */
#ifndef SF_CONNSLOTS_H
#define SF_CONNSLOTS_H

#include <stdbool.h>

#include "error.h"

#define SF_CONNSLOTS_DEFAULT_TOTAL 64
#define SF_CONNSLOTS_MAX_TOTAL 1024
#define SF_CONNSLOTS_RECOUNT_MS 1000

struct sf_connslots;

/* Slots in dir (the cache's locks/ directory, which must exist); total in
 * [1, SF_CONNSLOTS_MAX_TOTAL].  New object. */
sf_ret sf_connslots_open(const char *dir, unsigned total, struct sf_connslots **out,
			 struct sf_error *err);
void sf_connslots_free(struct sf_connslots *s);

/* Say whether this process has blobs to fetch (it competes for slots). */
void sf_connslots_want(struct sf_connslots *s, bool want);
/* Take a free slot within this process's share: its index, or -1. */
int sf_connslots_take(struct sf_connslots *s);
/* Give back a slot taken with sf_connslots_take. */
void sf_connslots_give(struct sf_connslots *s, int slot);
/* Slots held now (for tests and status). */
unsigned sf_connslots_held(const struct sf_connslots *s);

#endif
