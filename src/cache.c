/* cache.c - see cache.h for the layout and its invariant. */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"

#define LOCK_POLL_MS 100

static sf_ret mkdir_p(const char *path)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static char *path_join(const char *a, const char *b, const char *c)
{
	char *s = NULL;

	if (asprintf(&s, "%s/%s%s", a, b, c ? c : "") < 0)
		return NULL;
	return s;
}

sf_ret sf_cache_open(const char *dir, struct sf_cache **out, struct sf_error *err)
{
	static const char *subdirs[] = { "layers", "tmp", "locks", "images" };
	struct sf_cache *c;
	char cwd[PATH_MAX];
	sf_ret r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return sf_fail(err, ENOMEM, "out of memory");
	if (dir[0] == '/')
		c->root = strdup(dir);
	else if (getcwd(cwd, sizeof(cwd)))
		c->root = path_join(cwd, dir, NULL);
	if (!c->root) {
		free(c);
		return sf_fail(err, ENOMEM, "cache dir %s: cannot make it absolute", dir);
	}
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		_cleanup_free_ char *p = path_join(c->root, subdirs[i], NULL);
		r = p ? mkdir_p(p) : -ENOMEM;
		if (r < 0) {
			sf_fail(err, -r, "cache dir %s: %s", c->root, strerror(-r));
			sf_cache_free(c);
			return r;
		}
	}
	*out = c;
	return 0;
}

void sf_cache_free(struct sf_cache *c)
{
	if (!c)
		return;
	free(c->root);
	free(c);
}

char *sf_cache_layer_dir(const struct sf_cache *c, const char *digest)
{
	char *s = NULL;

	return asprintf(&s, "%s/layers/%s", c->root, sf_digest_hex(digest)) < 0 ? NULL : s;
}

char *sf_cache_work_dir(const struct sf_cache *c, const char *digest)
{
	char *s = NULL;

	return asprintf(&s, "%s/tmp/%s", c->root, sf_digest_hex(digest)) < 0 ? NULL : s;
}

sf_ret sf_cache_lock_layer(const struct sf_cache *c, const char *digest, int *lock_fd,
			   _Atomic bool *cancel, struct sf_error *err)
{
	_cleanup_free_ char *path = NULL;
	int fd;

	if (asprintf(&path, "%s/locks/%s.lock", c->root, sf_digest_hex(digest)) < 0)
		return sf_fail(err, ENOMEM, "out of memory");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return sf_fail(err, errno, "cache dir %s: cannot open %s: %s", c->root, path,
			       strerror(errno));
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			int e = errno;
			close(fd);
			return sf_fail(err, e, "cache dir %s: cannot lock %s: %s", c->root, path,
				       strerror(e));
		}
		if (cancel && atomic_load(cancel)) {
			close(fd);
			return sf_fail(err, ECANCELED, "stopped while waiting for %s", path);
		}
		usleep(LOCK_POLL_MS * 1000);
	}
	*lock_fd = fd;
	return 0;
}

void sf_cache_unlock_layer(int lock_fd)
{
	if (lock_fd >= 0)
		close(lock_fd); /* releases the flock */
}

/* meta.json must name this very layer: a renamed or mixed-up directory is
 * not served. */
static bool meta_matches(const char *dir, const struct sf_layer_desc *desc)
{
	_cleanup_free_ char *path = path_join(dir, "meta.json", NULL);
	json_t *meta = path ? json_load_file(path, 0, NULL) : NULL;
	const char *digest, *diff_id;
	bool ok;

	if (!meta)
		return false;
	digest = json_string_value(json_object_get(meta, "digest"));
	diff_id = json_string_value(json_object_get(meta, "diff_id"));
	ok = digest && diff_id && strcmp(digest, desc->digest) == 0 &&
	     (!desc->diff_id || strcmp(diff_id, desc->diff_id) == 0);
	json_decref(meta);
	return ok;
}

uint64_t sf_cache_layer_unpacked_size(const struct sf_cache *c, const char *digest)
{
	_cleanup_free_ char *dir = sf_cache_layer_dir(c, digest);
	_cleanup_free_ char *path = dir ? path_join(dir, "meta.json", NULL) : NULL;
	json_t *meta = path ? json_load_file(path, 0, NULL) : NULL;
	json_int_t v = meta ? json_integer_value(json_object_get(meta, "uncompressed_size")) : 0;

	json_decref(meta);
	return v > 0 ? (uint64_t)v : 0;
}

/* Remove the spool of a committed layer (map first: a map never outlives
 * its blob).  Best effort: a read-only cache keeps them. */
static void drop_spool(const char *layer_dir)
{
	_cleanup_free_ char *map = path_join(layer_dir, "blob.map", NULL);
	_cleanup_free_ char *blob = path_join(layer_dir, "blob", NULL);

	if (map)
		unlink(map);
	if (blob)
		unlink(blob);
}

sf_ret sf_cache_load_layer(const struct sf_cache *c, const struct sf_layer_desc *desc,
			   struct sf_index **idx, int *data_fd, struct sf_error *err)
{
	_cleanup_free_ char *dir = sf_cache_layer_dir(c, desc->digest);
	_cleanup_free_ char *ipath = dir ? path_join(dir, "index", NULL) : NULL;
	_cleanup_free_ char *dpath = dir ? path_join(dir, "data", NULL) : NULL;
	int ifd, dfd;
	sf_ret r;

	if (!ipath || !dpath)
		return sf_fail(err, ENOMEM, "out of memory");
	if (access(dir, F_OK) < 0 || !meta_matches(dir, desc))
		return -ENOENT;
	drop_spool(dir); /* left by a commit killed after its rename */
	ifd = open(ipath, O_RDONLY | O_CLOEXEC);
	if (ifd < 0)
		return sf_fail(err, errno, "cached layer %s: %s: %s", desc->digest, ipath,
			       strerror(errno));
	r = sf_index_load(ifd, idx, err);
	close(ifd);
	if (r < 0) {
		sf_error_prefix(err, "cached layer %s", desc->digest);
		return r;
	}
	dfd = open(dpath, O_RDONLY | O_CLOEXEC);
	if (dfd < 0) {
		r = sf_fail(err, errno, "cached layer %s: %s: %s", desc->digest, dpath,
			    strerror(errno));
		sf_index_free(*idx);
		*idx = NULL;
		return r;
	}
	/* FUSE reads of a file come in readahead-sized pieces from several
	 * worker threads; a larger readahead window on the data file keeps
	 * the disk streaming (bench: sequential read through FUSE) */
	posix_fadvise(dfd, 0, 0, POSIX_FADV_SEQUENTIAL);
	*data_fd = dfd;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void sf_cache_remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static sf_ret fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -errno;
	r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static sf_ret write_index(const char *work_dir, const struct sf_index *idx, struct sf_error *err)
{
	_cleanup_free_ char *path = path_join(work_dir, "index", NULL);
	int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
	sf_ret r;

	if (fd < 0)
		return sf_fail(err, errno, "cannot create %s: %s", path ? path : "index",
			       strerror(errno));
	r = sf_index_save(idx, fd, err);
	if (r == 0 && fsync(fd) < 0)
		r = sf_fail(err, errno, "cannot sync %s: %s", path, strerror(errno));
	close(fd);
	return r;
}

/* Write len bytes to an open fd and fsync it: 0 or the real -errno (a full
 * disk must say ENOSPC: the pull keeps its spool for a resume then, and the
 * message tells the user why). */
static sf_ret write_all_sync(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

/* A JSON document into a new file at path, synced.  0 or -errno. */
static sf_ret write_json(const char *path, const json_t *doc, size_t flags)
{
	_cleanup_free_ char *text = json_dumps(doc, flags);
	int fd;
	sf_ret r;

	if (!text)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = write_all_sync(fd, text, strlen(text));
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

static sf_ret write_meta(const char *work_dir, const struct sf_layer_desc *desc,
			 const struct sf_index *idx, uint64_t diff_size, struct sf_error *err)
{
	_cleanup_free_ char *path = path_join(work_dir, "meta.json", NULL);
	json_t *meta;
	sf_ret r;

	if (!path)
		return sf_fail(err, ENOMEM, "out of memory");
	meta = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I, s:I}", "digest", desc->digest,
			 "diff_id", desc->diff_id ? desc->diff_id : "", "compressed_size",
			 (json_int_t)desc->size, "uncompressed_size", (json_int_t)diff_size,
			 "compression", sf_compression_name(desc->compression), "entries",
			 (json_int_t)(idx->n_dentries - 1), "completed_at", (json_int_t)time(NULL));
	if (!meta)
		return sf_fail(err, ENOMEM, "out of memory");
	r = write_json(path, meta, JSON_INDENT(2));
	json_decref(meta);
	if (r < 0)
		return sf_fail(err, -r, "cannot write %s: %s", path, strerror(-r));
	return 0;
}

sf_ret sf_cache_commit_layer(const struct sf_cache *c, const struct sf_layer_desc *desc,
			     const char *work_dir, const struct sf_index *idx,
			     uint64_t diff_size, struct sf_error *err)
{
	_cleanup_free_ char *final = sf_cache_layer_dir(c, desc->digest);
	_cleanup_free_ char *data = path_join(work_dir, "data", NULL);
	_cleanup_free_ char *layers = path_join(c->root, "layers", NULL);
	sf_ret r;

	if (!final || !data || !layers)
		return sf_fail(err, ENOMEM, "out of memory");
	r = write_index(work_dir, idx, err);
	if (r == 0)
		r = write_meta(work_dir, desc, idx, diff_size, err);
	if (r < 0)
		return r;
	r = fsync_path(data);
	if (r == 0)
		r = fsync_path(work_dir);
	if (r < 0)
		return sf_fail(err, -r, "cache dir %s: cannot sync %s: %s", c->root, work_dir,
			       strerror(-r));
	sf_cache_remove_tree(final); /* a leftover that failed meta_matches */
	if (rename(work_dir, final) < 0)
		return sf_fail(err, errno, "cache dir %s: cannot rename %s to %s: %s", c->root,
			       work_dir, final, strerror(errno));
	/* Best effort: the layer is complete and visible now; failing it here
	 * would leave layers/ holding a layer whose pull "failed".  A crash
	 * before the directory reaches the disk only costs a new pull. */
	fsync_path(layers);
	/* Only now: a kill during the syncs above must not lose the verified
	 * download (the next pull resumes from spool + map).  A kill right
	 * here leaves them in the layer dir, removed at its next load. */
	drop_spool(final);
	return 0;
}

/* ---- resolved references ----
 * images/<hex>.json is replaced atomically: written to a temporary file
 * images/<hex>.json.tmp.XXXXXX, fsynced, renamed over it.  The writer
 * holds an flock on the temporary file from right after creating it until
 * after the rename, so one nobody holds is the leftover of a crash (a pid
 * in the name would not tell: processes sharing a cache may live in
 * different pid namespaces, as the store's DaemonSet and the host do).
 * Since the file exists a moment before it is locked, only one at least
 * IMAGE_TMP_STALE_SEC old counts. */
#define IMAGE_TMP_MARK ".json.tmp."
#define IMAGE_TMP_STALE_SEC 60

static char *image_path(const struct sf_cache *c, const char *ref)
{
	char digest[SF_DIGEST_STR_LEN + 1];
	char *s = NULL;

	sf_sha256_buf(ref, strlen(ref), digest);
	return asprintf(&s, "%s/images/%s.json", c->root, sf_digest_hex(digest)) < 0 ? NULL : s;
}

/* Remove temporary file `name` of dirfd if it is a crash's leftover. */
static bool remove_if_stale(int dirfd, const char *name, time_t now)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	bool stale;

	if (fd < 0)
		return false;
	stale = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		st.st_mtime <= now - IMAGE_TMP_STALE_SEC && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
		unlinkat(dirfd, name, 0) == 0;
	close(fd);
	return stale;
}

unsigned sf_cache_clean_image_tmp(const struct sf_cache *c, FILE *log)
{
	_cleanup_free_ char *dir = path_join(c->root, "images", NULL);
	DIR *dp = dir ? opendir(dir) : NULL;
	time_t now = time(NULL);
	struct dirent *d;
	unsigned n = 0;

	if (!dp)
		return 0;
	while ((d = readdir(dp))) {
		if (!strstr(d->d_name, IMAGE_TMP_MARK) ||
		    !remove_if_stale(dirfd(dp), d->d_name, now))
			continue;
		n++;
		if (log)
			fprintf(log, "removed stale images/%s\n", d->d_name);
	}
	closedir(dp);
	return n;
}

/* Write doc to a new locked temporary file next to path, fsync it and
 * rename it over path.  0 or -errno. */
static sf_ret replace_json(const char *path, const json_t *doc)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_free_ char *text = json_dumps(doc, JSON_COMPACT);
	int fd;
	sf_ret r;

	if (!text || asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = flock(fd, LOCK_EX) < 0 || fchmod(fd, 0644) < 0 ? -errno : 0;
	if (r == 0)
		r = write_all_sync(fd, text, strlen(text));
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	close(fd); /* after the rename: the lock marks the file as being written */
	return r;
}

sf_ret sf_cache_save_image(const struct sf_cache *c, const struct sf_image *img,
			   struct sf_error *err)
{
	_cleanup_free_ char *path = image_path(c, img->ref);
	_cleanup_free_ char *dir = path_join(c->root, "images", NULL);
	json_t *doc;
	sf_ret r;

	if (!path || !dir)
		return sf_fail(err, ENOMEM, "out of memory");
	sf_cache_clean_image_tmp(c, NULL);
	doc = json_pack("{s:s, s:s, s:s, s:s, s:I}", "ref", img->ref, "manifest_digest",
			img->manifest_digest, "manifest", img->manifest_json, "config",
			img->config_json, "saved_at", (json_int_t)time(NULL));
	if (!doc)
		return sf_fail(err, ENOMEM, "out of memory");
	r = replace_json(path, doc);
	json_decref(doc);
	if (r < 0)
		return sf_fail(err, -r, "cache dir %s: cannot write %s: %s", c->root, path,
			       strerror(-r));
	fsync_path(dir); /* best effort: a lost rename only costs the offline copy */
	return 0;
}

sf_ret sf_cache_load_image(const struct sf_cache *c, const char *ref, struct sf_image *img,
			   time_t *saved_at, struct sf_error *err)
{
	_cleanup_free_ char *path = image_path(c, ref);
	json_t *doc = path ? json_load_file(path, 0, NULL) : NULL;
	const char *saved_ref, *mdigest, *manifest, *config;
	sf_ret r = -ENOENT;

	if (!doc)
		return -ENOENT;
	saved_ref = json_string_value(json_object_get(doc, "ref"));
	mdigest = json_string_value(json_object_get(doc, "manifest_digest"));
	manifest = json_string_value(json_object_get(doc, "manifest"));
	config = json_string_value(json_object_get(doc, "config"));
	*saved_at = (time_t)json_integer_value(json_object_get(doc, "saved_at"));
	if (saved_ref && mdigest && manifest && config && strcmp(saved_ref, ref) == 0 &&
	    sf_digest_valid(mdigest))
		r = sf_image_from_documents(ref, mdigest, manifest, config, img, err);
	json_decref(doc);
	return r;
}
