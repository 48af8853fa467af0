/* chunkmap.h - which byte ranges of a blob spool are on disk, persisted so
 * that a pull killed at any instant can resume.
 *
 * The map lives next to the spool (tmp/<hex>/blob.map) and is an
 * append-only log: a 96-byte header naming the blob (digest hex, size),
 * then 32-byte records "bytes [off, off + len) of the spool are final".
 * Header and every record carry a CRC-32 of their own bytes.
 *
 * Why a log and why these rules:
 *   - A record is appended only after the bytes it names were written and
 *     fdatasync()ed, so a record never describes bytes that could be lost
 *     (kill -9 loses no written byte at all; a power cut loses no synced
 *     one).  A lost record only costs a refetch.  Records come in batches
 *     (resume.h: one blob sync, then the batch's records, then one map
 *     sync), written by one pwrite() at the end of the file.
 *   - A record is one 32-byte write(); a kill or power cut can tear it (or
 *     leave zeros / garbage at the tail).  Loading stops at the first record
 *     that fails its magic, CRC or bounds, and truncates the file there, so
 *     later appends are never hidden behind a torn one.
 *   - Records are byte ranges, not chunk numbers: a new pull whose chunk
 *     size differs from the old one uses them as they are (fetch.h's
 *     `present` hook asks "how much of [off, off+len) is here?").
 *   - A header that does not name this blob (another digest or size, a torn
 *     header, garbage) makes the whole map worthless: it is recreated empty
 *     and the caller must treat the spool as empty too.
 * The map is a hint for skipping downloads, never a proof: the blob digest
 * is still checked over every byte of the spool before anything is
 * committed.
 *
 * Thread-safety: one thread appends (the spool's persister, resume.c)
 * while others ask `present` or read the totals; a mutex guards the range
 * set.
 */
#ifndef SF_CHUNKMAP_H
#define SF_CHUNKMAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SF_CHUNKMAP_HEADER_SIZE 96
#define SF_CHUNKMAP_RECORD_SIZE 32
/* Ranges kept in memory; records beyond are still valid on disk but
 * merged.  Bounds memory for a map file written by something hostile. */
#define SF_CHUNKMAP_MAX_RECORDS (1u << 20)
/* Records one sf_chunkmap_add_many call writes at most. */
#define SF_CHUNKMAP_MAX_BATCH 4096

struct sf_range {
	uint64_t off, end; /* [off, end) */
};

struct sf_chunkmap {
	int fd;
	uint64_t size;		 /* blob size */
	pthread_mutex_t lock;	 /* guards ranges, n, cap, bytes */
	struct sf_range *ranges; /* sorted, disjoint, non-adjacent */
	size_t n, cap;
	uint64_t bytes; /* sum of the range lengths */
};

/* Open (creating if absent) the map at path for blob `digest` of `size`
 * bytes.  *loaded tells whether the existing file was kept (its header
 * named this blob); false means it was recreated empty.  New object. */
sf_ret sf_chunkmap_open(const char *path, const char *digest, uint64_t size,
			struct sf_chunkmap **out, bool *loaded, struct sf_error *err);
void sf_chunkmap_free(struct sf_chunkmap *m);

/* Record [off, off + len) as final.  The caller has made the bytes
 * durable first (fdatasync of the spool). */
sf_ret sf_chunkmap_add(struct sf_chunkmap *m, uint64_t off, uint64_t len);
/* The same for n (<= SF_CHUNKMAP_MAX_BATCH) ranges [off, end), appended in
 * one write; the map is not synced (the caller does, if it wants).  rs is
 * borrowed. */
sf_ret sf_chunkmap_add_many(struct sf_chunkmap *m, const struct sf_range *rs, size_t n);

/* Length of the prefix of [off, off + len) that the map covers. */
uint64_t sf_chunkmap_present(struct sf_chunkmap *m, uint64_t off, uint64_t len);

/* Total bytes covered. */
uint64_t sf_chunkmap_bytes(struct sf_chunkmap *m);

/* Read-only look at a map file without a blob to check it against (cache
 * ls): the covered bytes of the valid prefix, -ENOENT/-EINVAL otherwise. */
int64_t sf_chunkmap_peek(const char *path);

#endif
