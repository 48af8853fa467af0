/* fileview.h - read a file that is being written, without copying it.
 *
 * A layer's spool is written by the fetcher and read back twice: by the
 * blob hasher and by the decompressor.  pread() would copy every byte from
 * the page cache into a buffer once per reader (perf: a tenth of a pull's
 * kernel time); a view instead maps a window of the file read-only and
 * hands out pointers into the page cache itself.
 *
 * The window (SF_FILEVIEW_WINDOW bytes, aligned) slides forward as the
 * reader asks for later bytes, so the mapping, and the resident set it
 * counts for, stays bounded however large the file is.  The caller only
 * ever asks for bytes that are already written (below the blob's
 * `contiguous`, which never exceeds the file size), so no page beyond the
 * end of the file is touched (that would be SIGBUS).  Where mmap fails (a
 * file system without it), a view falls back to pread() into a buffer of
 * its own: slower, same answers.
 *
 * One view per reading thread; not thread-safe.
 */
#ifndef SF_FILEVIEW_H
#define SF_FILEVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SF_FILEVIEW_WINDOW (2u << 20)

struct sf_fileview {
	int fd;			  /* borrowed */
	unsigned char *map;	  /* the mapped window, or NULL */
	uint64_t map_off;	  /* file offset of map[0] */
	size_t map_len;		  /* bytes mapped */
	unsigned char *fallback;  /* pread buffer once mmap failed, or NULL */
	int mmap_failed;	  /* stop trying mmap */
};

void sf_fileview_init(struct sf_fileview *v, int fd);

/* Point *data at the file's bytes [pos, pos + n), 0 < n <= end - pos, where
 * end (> pos) is how far the file is known to be written.  Valid until the
 * next call or sf_fileview_release().  Returns n, or -errno with err set
 * (a read error of the fallback). */
ssize_t sf_fileview_get(struct sf_fileview *v, uint64_t pos, uint64_t end,
			const unsigned char **data, struct sf_error *err);

/* Unmap and free; the view can be used again afterwards. */
void sf_fileview_release(struct sf_fileview *v);

#endif
