/* reader.h - a pull-style byte stream.
 *
 * The unpack pipeline of a layer is a stack of readers, pulled by the tar
 * parser on the layer's own thread:
 *     spool (blob bytes as they arrive, SHA-256 of the blob)
 *  -> decompressor (gzip/zstd/none, SHA-256 of the uncompressed stream)
 *  -> tar reader.
 * Each stage only ever sees sf_reader, so unit tests and fuzzers feed memory.
 */
#ifndef SF_READER_H
#define SF_READER_H

#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include "error.h"

struct sf_reader {
	/* Read up to len bytes into buf.  Returns the number read (> 0), 0 at
	 * end of stream, or -errno with err filled.  May return fewer bytes
	 * than asked for at any time. */
	ssize_t (*read)(void *ctx, void *buf, size_t len, struct sf_error *err);
	void *ctx;
	/* Optional (NULL: not offered; last, so { read, ctx } initialises a
	 * reader without it).  Consume the next bytes of the stream without
	 * copying them: *data points at up to max of them, valid until the next
	 * call on this reader.  Returns like read.  The decompressor takes its
	 * input this way when it can (a spool read in place). */
	ssize_t (*borrow)(void *ctx, const void **data, size_t max, struct sf_error *err);
};

static inline ssize_t sf_read(struct sf_reader r, void *buf, size_t len, struct sf_error *err)
{
	return r.read(r.ctx, buf, len, err);
}

/* Read exactly len bytes.  Returns len, 0 if the stream ended before the
 * first byte, -EIO "truncated" if it ended in the middle, or -errno. */
ssize_t sf_read_full(struct sf_reader r, void *buf, size_t len, struct sf_error *err);

/* A reader over a memory buffer (borrowed; for tests and fuzzers). */
struct sf_mem_reader {
	const unsigned char *data;
	size_t len, pos;
	size_t max_step; /* 0 = unlimited; else return at most this per call */
};
struct sf_reader sf_mem_reader_init(struct sf_mem_reader *m, const void *data, size_t len);

#endif
