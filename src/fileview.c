/* fileview.c - see fileview.h. */
#include "fileview.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void sf_fileview_init(struct sf_fileview *v, int fd)
{
	*v = (struct sf_fileview){ .fd = fd };
}

static void unmap(struct sf_fileview *v)
{
	if (v->map)
		munmap(v->map, v->map_len);
	v->map = NULL;
	v->map_len = 0;
}

/* Map the aligned window that holds pos.  Only bytes below `end` are ever
 * read, so mapping past the end of the file is harmless. */
static int map_window(struct sf_fileview *v, uint64_t pos)
{
	uint64_t off = pos & ~(uint64_t)(SF_FILEVIEW_WINDOW - 1);
	void *p;

	unmap(v);
	p = mmap(NULL, SF_FILEVIEW_WINDOW, PROT_READ, MAP_SHARED, v->fd, (off_t)off);
	if (p == MAP_FAILED)
		return -errno;
	/* read in order, once: readahead of the next pages, no reuse */
	madvise(p, SF_FILEVIEW_WINDOW, MADV_SEQUENTIAL);
	v->map = p;
	v->map_off = off;
	v->map_len = SF_FILEVIEW_WINDOW;
	return 0;
}

static ssize_t get_by_pread(struct sf_fileview *v, uint64_t pos, uint64_t end,
			    const unsigned char **data, struct sf_error *err)
{
	size_t len = end - pos < SF_FILEVIEW_WINDOW ? (size_t)(end - pos) : SF_FILEVIEW_WINDOW;
	ssize_t n;

	if (!v->fallback) {
		v->fallback = malloc(SF_FILEVIEW_WINDOW);
		if (!v->fallback)
			return sf_fail(err, ENOMEM, "out of memory");
	}
	do
		n = pread(v->fd, v->fallback, len, (off_t)pos);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return sf_fail(err, n < 0 ? errno : EIO, "cannot read spool: %s",
			       n < 0 ? strerror(errno) : "short read");
	*data = v->fallback;
	return n;
}

ssize_t sf_fileview_get(struct sf_fileview *v, uint64_t pos, uint64_t end,
			const unsigned char **data, struct sf_error *err)
{
	uint64_t stop;

	if (!v->mmap_failed && (!v->map || pos < v->map_off || pos >= v->map_off + v->map_len) &&
	    map_window(v, pos) < 0)
		v->mmap_failed = 1;
	if (v->mmap_failed)
		return get_by_pread(v, pos, end, data, err);
	stop = v->map_off + v->map_len < end ? v->map_off + v->map_len : end;
	*data = v->map + (pos - v->map_off);
	return (ssize_t)(stop - pos);
}

void sf_fileview_release(struct sf_fileview *v)
{
	unmap(v);
	free(v->fallback);
	v->fallback = NULL;
	v->mmap_failed = 0;
}
