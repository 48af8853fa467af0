/* decompress.h - layer decompression as a pull-style reader.
 *
 * gzip: every member of a multi-member stream, via ISA-L igzip when
 * configure found it (2.3-3x zlib through this code, measured), zlib
 * otherwise.  zstd: every frame,
 * skipping skippable frames.  none: pass-through.  A stream that ends in
 * the middle of a member/frame is an error ("truncated gzip stream"), never
 * a silent short read.
 */
#ifndef SF_DECOMPRESS_H
#define SF_DECOMPRESS_H

#include <sys/types.h>

#include "error.h"
#include "reader.h"

enum sf_compression {
	SF_COMP_NONE = 0,
	SF_COMP_GZIP = 2, /* same numbers as containers/storage's info file */
	SF_COMP_ZSTD = 4,
};

/* Map an OCI/Docker layer media type to its compression.  Returns 0 and sets
 * *out, or -EINVAL with err naming the media type when it is not a layer
 * type we can unpack (e.g. foreign/nondistributable is still fine: it is a
 * tar+gzip). */
sf_ret sf_compression_from_media_type(const char *media_type, enum sf_compression *out,
				      struct sf_error *err);
const char *sf_compression_name(enum sf_compression c);

struct sf_decompressor;

/* src is borrowed and must outlive the decompressor. */
sf_ret sf_decompressor_new(enum sf_compression c, struct sf_reader src,
			   struct sf_decompressor **out, struct sf_error *err);
/* Pull uncompressed bytes.  0 = end of the compressed stream (all members /
 * frames done and the source is at EOF). */
ssize_t sf_decompressor_read(struct sf_decompressor *d, void *buf, size_t len,
			     struct sf_error *err);
struct sf_reader sf_decompressor_reader(struct sf_decompressor *d);
void sf_decompressor_free(struct sf_decompressor *d);

#endif
