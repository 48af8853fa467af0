/* layer.c - the pull of one layer, on its own thread.
 *
 * The stream is a stack of pull readers (reader.h):
 *   spool: waits for the fetcher to make blob bytes contiguous, preads them
 *          from the spool file;
 *   decompressor: gzip / zstd / none;
 *   counted: counts the uncompressed bytes and feeds them to the diff_id
 *          hasher;
 *   tar: entries, whose file data is copied into the layer's data file.
 * Both digests are computed on threads of their own (hasher.h): the blob
 * digest follows the spool as it becomes contiguous, the diff_id hashes
 * what the counted reader feeds it; so this thread only inflates, parses
 * and copies, and a single large layer keeps two cores busy.  After the
 * tar end the decompressor is drained so the diff_id covers every byte,
 * and both digests are checked; only then is the layer committed.
 */
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "decompress.h"
#include "digest.h"
#include "fileview.h"
#include "hasher.h"
#include "resume.h"
#include "tar.h"
#include "writer.h"

#define COPY_BUF_SIZE (256 * 1024)
/* Files at least this large are written by the data writer thread
 * (writer.h); smaller ones directly, as the hand-over would cost more
 * than the write. */
#define ASYNC_WRITE_MIN (1u << 20)

/* The blob as the decompressor's source: its bytes are lent in place from
 * the spool's page cache (fileview.h) as the fetcher makes them contiguous;
 * read() is the copying form, for the rare short remainder. */
struct spool_reader {
	struct sf_blob *blob;
	int fd;
	uint64_t pos;
	struct sf_fileview view;
};

/* Wait until the byte at s->pos is contiguous; how far the spool is (> pos),
 * 0 at the end of the blob, or the download's negative errno. */
static int64_t spool_wait(struct spool_reader *s, struct sf_error *err)
{
	int64_t avail;

	if (s->pos >= s->blob->size)
		return 0;
	avail = sf_blob_wait(s->blob, s->pos + 1);
	if (avail < 0) {
		pthread_mutex_lock(&s->blob->lock);
		*err = s->blob->err;
		pthread_mutex_unlock(&s->blob->lock);
		if (!err->msg[0])
			sf_fail(err, (int)-avail, "download failed: %s", strerror((int)-avail));
	}
	return avail;
}

static ssize_t spool_borrow(void *ctx, const void **data, size_t max, struct sf_error *err)
{
	struct spool_reader *s = ctx;
	int64_t avail = spool_wait(s, err);
	const unsigned char *p;
	ssize_t n;

	if (avail <= 0)
		return (ssize_t)avail;
	if ((uint64_t)avail - s->pos > max)
		avail = (int64_t)(s->pos + max);
	n = sf_fileview_get(&s->view, s->pos, (uint64_t)avail, &p, err);
	if (n > 0) {
		*data = p;
		s->pos += (uint64_t)n;
	}
	return n;
}

static ssize_t spool_read(void *ctx, void *buf, size_t len, struct sf_error *err)
{
	struct spool_reader *s = ctx;
	int64_t avail = spool_wait(s, err);
	ssize_t n;

	if (avail <= 0)
		return (ssize_t)avail;
	if ((uint64_t)avail - s->pos < len)
		len = (size_t)((uint64_t)avail - s->pos);
	n = pread(s->fd, buf, len, (off_t)s->pos);
	if (n <= 0)
		return sf_fail(err, n < 0 ? errno : EIO, "cannot read spool: %s",
			       n < 0 ? strerror(errno) : "short read");
	s->pos += (uint64_t)n;
	return n;
}

struct counted_reader {
	struct sf_reader src;
	struct sf_hasher *hash; /* the diff_id, on its own thread */
	_Atomic uint64_t *count;
	uint64_t max; /* most uncompressed bytes allowed (decompression bomb) */
	const struct sf_limits *limits;
};

static ssize_t counted_read(void *ctx, void *buf, size_t len, struct sf_error *err)
{
	struct counted_reader *c = ctx;
	ssize_t n = sf_read(c->src, buf, len, err);

	if (n > 0) {
		uint64_t total = atomic_fetch_add(c->count, (uint64_t)n) + (uint64_t)n;
		if (total > c->max)
			return sf_fail(err, EFBIG,
				       "decompression bomb: expands to over %" PRIu64
				       " bytes (%" PRIu64 " times the blob, --max-expansion-ratio)",
				       c->max, c->limits->max_expansion_ratio);
		sf_hasher_feed(c->hash, buf, (size_t)n);
	}
	return n;
}

/* Everything one pull needs; released by pull_cleanup on every path. */
struct pull {
	struct sf_layer *l;
	struct sf_fetcher *fetcher; /* cancelling a finished blob never touches it */
	struct sf_spool files;	    /* work dir, blob spool and its chunk map */
	int lock_fd;
	struct spool_reader spool;
	struct counted_reader counted;
	struct sf_decompressor *dec;
	struct sf_tar *tar;
	struct sf_hasher *blob_hash; /* follows the spool (blob digest) */
	struct sf_writer *writer;    /* large files' data; made on first use */
	unsigned char *buf;
	uint64_t data_end;
	bool blob_added;
	bool blob_checked; /* the blob digest was computed over every byte */
	bool discard;	   /* the spool is worthless: do not resume from it */
	bool blob_bad;	   /* ... because the blob digest did not match */
};

const char *sf_layer_state_name(enum sf_layer_state s)
{
	static const char *names[] = { "pending", "waiting", "fetching", "complete", "failed" };

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static void set_state(struct sf_layer *l, enum sf_layer_state s)
{
	atomic_store(&l->state, s);
	if (l->notify)
		l->notify(l, l->notify_arg);
}

sf_ret sf_layer_init(struct sf_layer *l, unsigned number, const struct sf_layer_desc *desc,
		     const struct sf_cache *cache, struct sf_error *err)
{
	sf_ret r;

	memset(l, 0, sizeof(*l));
	l->number = number;
	l->desc = desc;
	l->cache = cache;
	l->data_fd = -1;
	l->limits = SF_LIMITS_DEFAULTS;
	pthread_rwlock_init(&l->lock, NULL);
	sf_blob_init(&l->blob);
	r = sf_cache_load_layer(cache, desc, &l->idx, &l->data_fd, err);
	if (r == 0) {
		/* progress reports show a cached layer as fully unpacked */
		atomic_store(&l->unpacked, sf_cache_layer_unpacked_size(cache, desc->digest));
		atomic_store(&l->state, SF_LAYER_COMPLETE);
		return 0;
	}
	if (r != -ENOENT)
		return r;
	memset(err, 0, sizeof(*err));
	l->idx = sf_index_new();
	if (!l->idx)
		return sf_fail(err, ENOMEM, "out of memory");
	atomic_store(&l->state, SF_LAYER_PENDING);
	return 0;
}

/* The data of a large file: read into the writer's buffers, written by its
 * thread; returns once all of it is in the data file. */
static sf_ret copy_file_data_async(struct pull *p, const struct sf_tar_entry *e, uint64_t base,
				   struct sf_error *err)
{
	uint64_t off;
	ssize_t n;
	sf_ret r;

	if (!p->writer) {
		r = sf_writer_new(p->l->data_fd, &p->writer, err);
		if (r < 0)
			return r;
	}
	for (;;) {
		void *buf = sf_writer_buf(p->writer);

		if (!buf)
			return sf_fail(err, ENOMEM, "out of memory");
		n = sf_tar_read_data(p->tar, &off, buf, SF_WRITER_BUF, err);
		if (n <= 0)
			break;
		if (off + (uint64_t)n > e->size)
			return sf_fail(err, EIO, "tar entry %s: data beyond its size", e->path);
		sf_writer_queue(p->writer, (size_t)n, base + off);
	}
	r = sf_writer_flush(p->writer);
	if (r < 0)
		return sf_fail(err, -r, "cache dir %s: cannot write data: %s", p->l->cache->root,
			       strerror(-r));
	return n < 0 ? (sf_ret)n : 0;
}

/* Copy the current regular file's data into the data file at its offset. */
static sf_ret copy_file_data(struct pull *p, const struct sf_tar_entry *e, uint64_t *off_out,
			     struct sf_error *err)
{
	uint64_t base, off, end = p->data_end;
	ssize_t n;

	/* before any arithmetic on the declared size (index.h) */
	if (sf_index_place_data(&end, e->size, &base) < 0)
		return sf_fail(err, EFBIG,
			       "tar entry %s: %" PRIu64 " bytes would take the layer's files past "
			       "%llu bytes in all (holes of sparse files count)",
			       e->path, e->size, SF_INDEX_MAX_DATA_SIZE);
	*off_out = base;
	n = 0;
	if (e->size >= ASYNC_WRITE_MIN) {
		sf_ret r = copy_file_data_async(p, e, base, err);
		if (r < 0)
			return r;
	} else {
		n = sf_tar_read_data(p->tar, &off, p->buf, COPY_BUF_SIZE, err);
	}
	for (; n > 0; n = sf_tar_read_data(p->tar, &off, p->buf, COPY_BUF_SIZE, err)) {
		if (off + (uint64_t)n > e->size)
			return sf_fail(err, EIO, "tar entry %s: data beyond its size", e->path);
		for (ssize_t done = 0; done < n;) {
			ssize_t w = pwrite(p->l->data_fd, p->buf + done, (size_t)(n - done),
					   (off_t)(base + off + (uint64_t)done));
			if (w < 0)
				return sf_fail(err, errno, "cache dir %s: cannot write data: %s",
					       p->l->cache->root, strerror(errno));
			done += w;
		}
	}
	if (n < 0)
		return (sf_ret)n;
	if (e->size == 0)
		return 0;
	/* A sparse file may end in a hole: the data file must reach its end.
	 * The length is positive and capped far below off_t's limit, so any
	 * error is real (EFBIG: a file system with smaller files; EIO...). */
	if (ftruncate(p->l->data_fd, (off_t)end) < 0)
		return sf_fail(err, errno, "tar entry %s: cache dir %s: cannot extend data: %s",
			       e->path, p->l->cache->root, strerror(errno));
	p->data_end = end;
	return 0;
}

static sf_ret add_entry(struct pull *p, const struct sf_tar_entry *e, struct sf_error *err)
{
	struct sf_layer *l = p->l;
	uint64_t off = 0;
	sf_ret r;

	if (e->type == SF_TAR_REG) {
		r = copy_file_data(p, e, &off, err);
		if (r < 0)
			return r;
	}
	pthread_rwlock_wrlock(&l->lock);
	r = sf_index_add(l->idx, e, off, err);
	pthread_rwlock_unlock(&l->lock);
	if (r == 0 && l->notify)
		l->notify(l, l->notify_arg);
	return r;
}

/* Read to the end of a stream, so its digest covers every byte. */
static sf_ret drain(struct sf_reader r, unsigned char *buf, struct sf_error *err)
{
	ssize_t n;

	while ((n = sf_read(r, buf, COPY_BUF_SIZE, err)) > 0)
		;
	return (sf_ret)n;
}

/* Wait for a hasher to have seen every byte, then compare. */
static sf_ret check_digest(struct sf_hasher *h, const char *want, const char *what,
			   struct sf_error *err)
{
	char got[SF_DIGEST_STR_LEN + 1];
	sf_ret r = sf_hasher_final(h, got, err);

	if (r < 0)
		return r;
	if (want && strcmp(got, want) != 0)
		return sf_fail(err, EIO, "%s mismatch: expected %s, got %s", what, want, got);
	return 0;
}

static sf_ret open_data_file(struct pull *p, struct sf_error *err)
{
	struct sf_layer *l = p->l;
	char path[4096];

	snprintf(path, sizeof(path), "%s/data", p->files.work_dir);
	l->data_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (l->data_fd < 0)
		return sf_fail(err, errno, "cache dir %s: cannot create %s: %s",
			       l->cache->root, path, strerror(errno));
	return 0;
}

/* Decompress and untar the whole stream, then check both digests. */
static sf_ret unpack_stream(struct pull *p, struct sf_error *err)
{
	struct sf_layer *l = p->l;
	const struct sf_tar_entry *e;
	uint64_t entries = 0;
	sf_ret r;
	int more;

	r = sf_decompressor_new(l->desc->compression,
				(struct sf_reader){ .read = spool_read, .borrow = spool_borrow,
						    .ctx = &p->spool },
				&p->dec, err);
	if (r < 0)
		return r;
	p->counted.src = sf_decompressor_reader(p->dec);
	r = sf_tar_new((struct sf_reader){ .read = counted_read, .ctx = &p->counted }, &p->tar);
	if (r < 0)
		return sf_fail(err, -r, "out of memory");
	while ((more = sf_tar_next(p->tar, &e, err)) == 1) {
		if (++entries > l->limits.max_entries)
			return sf_fail(err, EFBIG, "tar entry %s: more than %" PRIu64
				       " entries in the layer (--max-entries)", e->path,
				       l->limits.max_entries);
		r = add_entry(p, e, err);
		if (r < 0)
			return r;
	}
	if (more < 0)
		return more;
	r = drain((struct sf_reader){ .read = counted_read, .ctx = &p->counted }, p->buf, err);
	if (r < 0)
		return r;
	/* the blob hasher reads any bytes after the compressed stream too */
	p->blob_checked = true;
	p->discard = true; /* unless all is well, nothing here is worth resuming */
	r = check_digest(p->blob_hash, l->desc->digest, "blob digest", err);
	p->blob_bad = r < 0;
	if (r == 0)
		r = check_digest(p->counted.hash, l->desc->diff_id, "diff_id", err);
	return r;
}

/* The stream failed before its end (bad gzip, bad tar...).  If the blob
 * itself does not match its digest, that is the cause to report: the
 * registry or the network corrupted it, not the image.  Finding out means
 * reading the rest of the blob; a failed download ends that at once. */
static void blame_blob_if_corrupt(struct pull *p, struct sf_error *err)
{
	struct sf_error drain_err = { 0 };
	bool downloaded;
	sf_ret r;

	/* the hasher waits for the rest of the blob */
	r = check_digest(p->blob_hash, p->l->desc->digest, "blob digest", &drain_err);
	pthread_mutex_lock(&p->l->blob.lock);
	downloaded = p->l->blob.error == 0;
	pthread_mutex_unlock(&p->l->blob.lock);
	if (r < 0 && !downloaded)
		return; /* download failed too: the first error stands */
	p->discard = true; /* every byte was read: the spool or the layer is bad */
	if (r < 0) {
		*err = drain_err;
		p->blob_bad = true;
	} else
		sf_error_prefix(err, "blob digest verified, the layer itself is corrupt");
}

static sf_ret unpack(struct pull *p, struct sf_error *err)
{
	sf_ret r = unpack_stream(p, err);

	if (r < 0 && r != -ECANCELED && !p->blob_checked)
		blame_blob_if_corrupt(p, err);
	return r;
}

static sf_ret fetch_and_unpack(struct pull *p, struct sf_registry *reg, struct sf_fetcher *f,
			       struct sf_error *err)
{
	struct sf_layer *l = p->l;
	sf_ret r;

	/* before anything is written for it */
	if (l->desc->size > l->limits.max_layer_size)
		return sf_fail(err, EFBIG, "blob of %" PRIu64 " bytes is over --max-layer-size %" PRIu64,
			       l->desc->size, l->limits.max_layer_size);
	r = sf_spool_open(l->cache, l->desc, &p->files, err);
	if (r == 0)
		r = open_data_file(p, err);
	if (r < 0)
		return r;
	p->buf = malloc(COPY_BUF_SIZE);
	p->spool = (struct spool_reader){ .blob = &l->blob, .fd = p->files.blob_fd };
	sf_fileview_init(&p->spool.view, p->files.blob_fd);
	p->counted.count = &l->unpacked;
	p->counted.limits = &l->limits;
	p->counted.max = sf_limits_max_expanded(&l->limits, l->desc->size);
	if (!p->buf)
		return sf_fail(err, ENOMEM, "out of memory");
	r = sf_hasher_pipe(&p->counted.hash, err);
	if (r < 0)
		return r;
	l->blob.reg = reg;
	l->blob.digest = l->desc->digest;
	l->blob.size = l->desc->size;
	sf_spool_attach(&p->files, &l->blob);
	set_state(l, SF_LAYER_FETCHING);
	sf_fetcher_add(f, &l->blob);
	p->blob_added = true;
	r = sf_hasher_follow(&l->blob, p->files.blob_fd, &p->blob_hash, err);
	if (r < 0)
		return r;
	r = unpack(p, err);
	if (r < 0)
		return r;
	return sf_cache_commit_layer(l->cache, l->desc, p->files.work_dir, l->idx,
				     atomic_load(&l->unpacked), err);
}

/* Another process finished the layer while we waited for its lock. */
static bool adopt_cached(struct sf_layer *l)
{
	struct sf_index *idx = NULL;
	struct sf_error ignored = { 0 };
	int fd = -1;

	if (sf_cache_load_layer(l->cache, l->desc, &idx, &fd, &ignored) < 0)
		return false;
	pthread_rwlock_wrlock(&l->lock);
	sf_index_free(l->idx);
	l->idx = idx;
	l->data_fd = fd;
	pthread_rwlock_unlock(&l->lock);
	atomic_store(&l->unpacked, sf_cache_layer_unpacked_size(l->cache, l->desc->digest));
	return true;
}

/* Release everything of a pull but the layer lock. */
static void pull_release(struct pull *p, bool failed)
{
	sf_writer_free(p->writer);
	sf_tar_free(p->tar);
	sf_decompressor_free(p->dec);
	sf_fileview_release(&p->spool.view);
	sf_hasher_free(p->counted.hash);
	free(p->buf);
	if (p->blob_added) {
		/* the fetcher may still be writing to blob_fd until it finishes;
		 * after a failure there is no point in waiting for the rest */
		if (failed)
			sf_fetcher_cancel(p->fetcher, &p->l->blob);
		else
			sf_blob_wait(&p->l->blob, UINT64_MAX);
	}
	sf_hasher_free(p->blob_hash); /* the blob finished: its thread ends */
	p->blob_hash = NULL;
	/* kept for the next pull unless condemned (see resume.h) */
	sf_spool_close(&p->files, !failed ? SF_SPOOL_COMMITTED
				  : p->discard ? SF_SPOOL_DISCARD
					       : SF_SPOOL_KEEP);
}

static void pull_cleanup(struct pull *p, bool failed)
{
	pull_release(p, failed);
	sf_cache_unlock_layer(p->lock_fd);
}

/* A pull that resumed from an earlier spool failed the blob digest: the
 * kept bytes were wrong (a damaged disk, or other bytes served back then).
 * Throw the spool away and get ready to fetch everything once more -
 * unless an entry of the layer was already handed to the kernel: the new
 * index could give its inode number to another entry, so then the layer
 * fails (EIO) and the next mount fetches afresh.  Returns true when the
 * pull may be run again. */
static bool restart_from_scratch(struct pull *p)
{
	struct sf_layer *l = p->l;
	struct sf_index *fresh, *old;
	int lock_fd = p->lock_fd;

	if (!p->blob_bad || !p->files.resumed)
		return false;
	fresh = sf_index_new();
	if (!fresh)
		return false;
	pthread_rwlock_wrlock(&l->lock);
	if (atomic_load(&l->exposed)) {
		pthread_rwlock_unlock(&l->lock);
		sf_index_free(fresh);
		return false;
	}
	old = l->idx;
	l->idx = fresh;
	pthread_rwlock_unlock(&l->lock);
	sf_index_free(old);
	if (l->data_fd >= 0) /* nothing was exposed, so no file of it is open */
		close(l->data_fd);
	l->data_fd = -1;
	pull_release(p, true); /* p->discard is set: the work dir goes */
	*p = (struct pull){ .l = l, .fetcher = p->fetcher, .lock_fd = lock_fd,
			    .files.blob_fd = -1 };
	pthread_mutex_lock(&l->blob.lock); /* the fetcher is done with it */
	l->blob.contiguous = l->blob.fetched = l->blob.reused = l->blob.downloaded = 0;
	l->blob.finished = false;
	l->blob.error = 0;
	memset(&l->blob.err, 0, sizeof(l->blob.err));
	l->blob.priv = NULL;
	pthread_mutex_unlock(&l->blob.lock);
	atomic_store(&l->unpacked, 0);
	return true;
}

struct start_args {
	struct sf_layer *l;
	struct sf_registry *reg;
	struct sf_fetcher *fetcher;
};

static void *pull_thread(void *arg)
{
	struct start_args a = *(struct start_args *)arg;
	struct sf_layer *l = a.l;
	struct pull p = { .l = l, .fetcher = a.fetcher, .lock_fd = -1, .files.blob_fd = -1 };
	struct sf_error err = { 0 };
	sf_ret r;

	free(arg);
	set_state(l, SF_LAYER_WAITING);
	r = sf_cache_lock_layer(l->cache, l->desc->digest, &p.lock_fd, &l->cancel, &err);
	if (r == 0 && !adopt_cached(l)) {
		r = fetch_and_unpack(&p, a.reg, a.fetcher, &err);
		if (r < 0 && !l->cancel && restart_from_scratch(&p)) {
			syslog(LOG_WARNING, "layer %u (%s): %s; fetching all of it again", l->number,
			       l->desc->digest, err.msg);
			memset(&err, 0, sizeof(err));
			r = fetch_and_unpack(&p, a.reg, a.fetcher, &err);
		}
	}
	pull_cleanup(&p, r < 0);
	if (r < 0 && p.blob_bad && p.files.resumed)
		sf_error_prefix(&err, "spool resumed with %llu bytes from an earlier pull is wrong "
				"and was thrown away; the next pull fetches it all",
				(unsigned long long)p.files.resumed);
	if ((r == -ENOSPC || r == -EDQUOT || r == -EROFS) && !strstr(err.msg, l->cache->root))
		sf_error_prefix(&err, "cache dir %s", l->cache->root); /* e.g. the spool write */
	if (r < 0) {
		l->err = err;
		sf_error_prefix(&l->err, "layer %u (%s)", l->number, l->desc->digest);
		set_state(l, SF_LAYER_FAILED);
	} else {
		set_state(l, SF_LAYER_COMPLETE);
	}
	return NULL;
}

sf_ret sf_layer_start(struct sf_layer *l, struct sf_registry *reg, struct sf_fetcher *fetcher,
		      struct sf_error *err)
{
	struct start_args *a;
	char name[16]; /* a thread name's limit, with the NUL */
	int rc;

	if (sf_layer_state(l) != SF_LAYER_PENDING)
		return 0;
	a = malloc(sizeof(*a));
	if (!a)
		return sf_fail(err, ENOMEM, "out of memory");
	*a = (struct start_args){ .l = l, .reg = reg, .fetcher = fetcher };
	rc = pthread_create(&l->thread, NULL, pull_thread, a);
	if (rc) {
		free(a);
		return sf_fail(err, rc, "cannot start layer thread: %s", strerror(rc));
	}
	snprintf(name, sizeof(name), "sf-layer-%u", l->number); /* for top -H, perf */
	pthread_setname_np(l->thread, name);
	l->thread_started = true;
	return 0;
}

void sf_layer_stop(struct sf_layer *l)
{
	l->cancel = true;
	if (l->thread_started) {
		pthread_join(l->thread, NULL);
		l->thread_started = false;
	}
}

void sf_layer_destroy(struct sf_layer *l)
{
	sf_layer_stop(l);
	sf_index_free(l->idx);
	l->idx = NULL;
	if (l->data_fd >= 0)
		close(l->data_fd);
	sf_blob_destroy(&l->blob);
	pthread_rwlock_destroy(&l->lock);
}
