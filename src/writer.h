/* writer.h - file data written to the layer's data file on a thread of its
 * own, so the unpack thread of a large file only inflates and parses.
 *
 * Writing a file's contents to the data file costs the kernel a copy into
 * the page cache plus page allocation (copy_folio_from_iter_atomic was a
 * quarter of a 1.2 GB layer's unpack thread in perf); here that runs on
 * another core, overlapped with inflating the next bytes.  No extra copy:
 * the tar reader reads a file's data straight into one of the writer's
 * SF_WRITER_SLOTS buffers, which is then queued with its data file offset;
 * the thread pwrite()s queued buffers in order and hands them back.
 * Memory is bounded: a producer that finds every buffer queued waits.
 *
 * sf_writer_flush() waits until everything queued is written: the caller
 * flushes before it adds the file's entry to the index, which keeps
 * layer.h's rule that an entry is added only once its data is in place.
 * One producer thread; buffers are allocated on first use, so a layer
 * without large files costs nothing.
 */
#ifndef SF_WRITER_H
#define SF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SF_WRITER_SLOTS 4
#define SF_WRITER_BUF (1u << 20)

struct sf_writer;

/* fd is borrowed and must stay open until sf_writer_free(). */
sf_ret sf_writer_new(int fd, struct sf_writer **out, struct sf_error *err);
/* A free buffer of SF_WRITER_BUF bytes (waits while all are queued);
 * NULL when out of memory.  Fill it, then sf_writer_queue() it. */
void *sf_writer_buf(struct sf_writer *w);
/* Queue the buffer last returned by sf_writer_buf: len bytes at off. */
void sf_writer_queue(struct sf_writer *w, size_t len, uint64_t off);
/* Wait until every queued buffer is written; 0, or the first write's
 * negative errno (the writer stays failed). */
sf_ret sf_writer_flush(struct sf_writer *w);
/* Stop the thread (queued writes are finished first) and release; NULL ok. */
void sf_writer_free(struct sf_writer *w);

#endif
