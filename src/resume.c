/* resume.c - keeping a pull's spool across crashes; see resume.h.
 *
 * Ordering that makes kill -9 at any instant safe:
 *   fresh start: remove tmp/<hex>/, mkdir, write the map header (synced),
 *   then create blob.  A map can thus only describe bytes of the blob file
 *   that sits next to it: a new blob is never created under an old map.
 *   chunk done (fetcher thread): fdatasync(blob), then append the record.
 * A blob shorter than what the map claims (someone truncated it) is
 * caught by clamping `present` to the file size, and anything else wrong
 * by the blob digest.
 */
#include "resume.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *join(const char *dir, const char *name)
{
	char *s = NULL;

	return asprintf(&s, "%s/%s", dir, name) < 0 ? NULL : s;
}

/* Try to keep what an earlier pull left; false: start afresh. */
static bool open_existing(struct sf_spool *s, const struct sf_layer_desc *desc)
{
	_cleanup_free_ char *mpath = join(s->work_dir, "blob.map");
	_cleanup_free_ char *bpath = join(s->work_dir, "blob");
	struct sf_error ignored = { 0 };
	bool loaded = false;

	if (!mpath || !bpath || access(mpath, F_OK) < 0)
		return false;
	s->blob_fd = open(bpath, O_RDWR | O_CLOEXEC);
	if (s->blob_fd < 0)
		return false;
	if (sf_chunkmap_open(mpath, desc->digest, desc->size, &s->map, &loaded, &ignored) < 0 ||
	    !loaded) {
		sf_chunkmap_free(s->map);
		s->map = NULL;
		close(s->blob_fd);
		s->blob_fd = -1;
		return false;
	}
	s->resumed = sf_chunkmap_bytes(s->map);
	return true;
}

static sf_ret open_fresh(const struct sf_cache *c, struct sf_spool *s,
			 const struct sf_layer_desc *desc, struct sf_error *err)
{
	_cleanup_free_ char *mpath = join(s->work_dir, "blob.map");
	_cleanup_free_ char *bpath = join(s->work_dir, "blob");
	bool loaded;
	sf_ret r;

	if (!mpath || !bpath)
		return sf_fail(err, ENOMEM, "out of memory");
	sf_cache_remove_tree(s->work_dir);
	if (mkdir(s->work_dir, 0700) < 0)
		return sf_fail(err, errno, "cache dir %s: cannot create %s: %s", c->root,
			       s->work_dir, strerror(errno));
	r = sf_chunkmap_open(mpath, desc->digest, desc->size, &s->map, &loaded, err);
	if (r < 0) {
		sf_error_prefix(err, "cache dir %s", c->root);
		return r;
	}
	s->blob_fd = open(bpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s->blob_fd < 0)
		return sf_fail(err, errno, "cache dir %s: cannot create %s: %s", c->root, bpath,
			       strerror(errno));
	s->resumed = 0;
	return 0;
}

sf_ret sf_spool_open(const struct sf_cache *c, const struct sf_layer_desc *desc,
		     struct sf_spool *s, struct sf_error *err)
{
	*s = (struct sf_spool){ .blob_fd = -1 };
	s->work_dir = sf_cache_work_dir(c, desc->digest);
	if (!s->work_dir)
		return sf_fail(err, ENOMEM, "out of memory");
	if (open_existing(s, desc))
		return 0;
	return open_fresh(c, s, desc, err);
}

static uint64_t hook_present(void *arg, uint64_t off, uint64_t len)
{
	struct sf_spool *s = arg;
	uint64_t got = sf_chunkmap_present(s->map, off, len);
	struct stat st;

	if (got == 0 || fstat(s->blob_fd, &st) < 0 || (uint64_t)st.st_size <= off)
		return 0;
	if ((uint64_t)st.st_size - off < got)
		got = (uint64_t)st.st_size - off;
	return got;
}

static void hook_chunk_done(void *arg, uint64_t off, uint64_t len)
{
	struct sf_spool *s = arg;

	/* Durable bytes first, then the record.  Failures only cost a later
	 * refetch, so they are not errors of the pull. */
	if (fdatasync(s->blob_fd) == 0)
		sf_chunkmap_add(s->map, off, len);
}

void sf_spool_attach(struct sf_spool *s, struct sf_blob *b)
{
	b->fd = s->blob_fd;
	b->present = hook_present;
	b->chunk_done = hook_chunk_done;
	b->hook_arg = s;
}

void sf_spool_close(struct sf_spool *s, bool discard)
{
	static const char *rebuilt[] = { "data", "index", "meta.json" };

	if (s->blob_fd >= 0)
		close(s->blob_fd);
	s->blob_fd = -1;
	sf_chunkmap_free(s->map);
	s->map = NULL;
	if (s->work_dir && discard) {
		sf_cache_remove_tree(s->work_dir);
	} else if (s->work_dir) {
		for (size_t i = 0; i < sizeof(rebuilt) / sizeof(rebuilt[0]); i++) {
			_cleanup_free_ char *p = join(s->work_dir, rebuilt[i]);
			if (p)
				unlink(p);
		}
	}
	free(s->work_dir);
	s->work_dir = NULL;
}
