/* resume.c - keeping a pull's spool across crashes; see resume.h.
 *
 * Ordering that makes kill -9 at any instant safe:
 *   fresh start: remove tmp/<hex>/, mkdir, write the map header (synced),
 *   then create blob.  A map can thus only describe bytes of the blob file
 *   that sits next to it: a new blob is never created under an old map.
 *   chunk done (fetcher thread): only queue the range for the persister.
 *   persister round: take the queue, fdatasync(blob), append the taken
 *   ranges' records, fdatasync(map).  Taking the queue before the blob
 *   sync is what makes it cover them: every queued range was written
 *   (pwrite returned) before chunk_done queued it.
 * A blob shorter than what the map claims (someone truncated it) is
 * caught by clamping `present` to the file size, and anything else wrong
 * by the blob digest.
 */
#include "resume.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "resume-private.h"

int (*sf_spool_datasync)(int fd) = fdatasync;
unsigned sf_spool_persist_ms = SF_SPOOL_PERSIST_MS;

/* The queue between chunk_done (any thread) and the persister thread. */
struct sf_persister {
	pthread_mutex_t lock;
	pthread_cond_t wake;	  /* queue grew, or stop */
	pthread_t thread;
	struct sf_spool *s;	  /* borrowed; outlives the thread */
	struct sf_range *q;	  /* queued ranges [off, end) */
	size_t n, cap;
	struct timespec first_at; /* CLOCK_MONOTONIC when q became non-empty */
	bool stop;		  /* close: finish (see drain) and exit */
	bool drain;		  /* with stop: persist what is queued first */
	bool broken;		  /* a sync or write failed: persist nothing more */
};

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

static sf_ret persister_start(struct sf_spool *s, struct sf_error *err);

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

/* Make the blob file as long as the blob: readers map it (fileview.h), and
 * a mapped page past the end of a file is SIGBUS.  Sparse, so nothing is
 * reserved on disk for a size the manifest merely claims.  The size found
 * first is kept: map records beyond it name bytes someone cut off. */
static sf_ret size_blob(const struct sf_cache *c, struct sf_spool *s,
			const struct sf_layer_desc *desc, struct sf_error *err)
{
	struct stat st;

	if (fstat(s->blob_fd, &st) < 0)
		return sf_fail(err, errno, "cache dir %s: cannot stat the spool: %s", c->root,
			       strerror(errno));
	s->kept_size = (uint64_t)st.st_size;
	if (s->kept_size < desc->size && ftruncate(s->blob_fd, (off_t)desc->size) < 0)
		return sf_fail(err, errno, "cache dir %s: cannot size the spool: %s", c->root,
			       strerror(errno));
	return 0;
}

sf_ret sf_spool_open(const struct sf_cache *c, const struct sf_layer_desc *desc,
		     struct sf_spool *s, struct sf_error *err)
{
	sf_ret r;

	*s = (struct sf_spool){ .blob_fd = -1 };
	s->work_dir = sf_cache_work_dir(c, desc->digest);
	if (!s->work_dir)
		return sf_fail(err, ENOMEM, "out of memory");
	if (!open_existing(s, desc)) {
		r = open_fresh(c, s, desc, err);
		if (r < 0)
			return r;
	}
	r = size_blob(c, s, desc, err);
	return r < 0 ? r : persister_start(s, err);
}

static uint64_t hook_present(void *arg, uint64_t off, uint64_t len)
{
	struct sf_spool *s = arg;
	uint64_t got = sf_chunkmap_present(s->map, off, len);

	if (got == 0 || s->kept_size <= off)
		return 0;
	if (s->kept_size - off < got)
		got = s->kept_size - off;
	return got;
}

/* ---- the persister ---- */

static void deadline(const struct timespec *from, struct timespec *at)
{
	*at = *from;
	at->tv_sec += sf_spool_persist_ms / 1000;
	at->tv_nsec += (long)(sf_spool_persist_ms % 1000) * 1000000L;
	if (at->tv_nsec >= 1000000000L) {
		at->tv_sec++;
		at->tv_nsec -= 1000000000L;
	}
}

static bool reached(const struct timespec *at)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > at->tv_sec || (now.tv_sec == at->tv_sec && now.tv_nsec >= at->tv_nsec);
}

/* One round over the taken ranges: blob durable first, then the records,
 * then the map durable.  Runs without the lock.  Returns 0 or -errno and
 * what failed. */
static sf_ret persist_round(struct sf_spool *s, const struct sf_range *rs, size_t n,
			    const char **what)
{
	sf_ret r;

	*what = "sync spool";
	if (sf_spool_datasync(s->blob_fd) < 0)
		return -errno;
	for (size_t done = 0; done < n; done += SF_CHUNKMAP_MAX_BATCH) {
		size_t k = n - done < SF_CHUNKMAP_MAX_BATCH ? n - done : SF_CHUNKMAP_MAX_BATCH;
		*what = "write chunk map";
		r = sf_chunkmap_add_many(s->map, rs + done, k);
		if (r < 0)
			return r;
	}
	*what = "sync chunk map";
	if (sf_spool_datasync(s->map->fd) < 0)
		return -errno;
	return 0;
}

static void *persister_main(void *arg)
{
	struct sf_persister *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct sf_range *rs;
		struct timespec at;
		const char *what;
		size_t n;
		sf_ret r;

		if (p->stop && (!p->drain || p->n == 0 || p->broken))
			break;
		if (p->n == 0) {
			pthread_cond_wait(&p->wake, &p->lock);
			continue;
		}
		deadline(&p->first_at, &at);
		if (!p->stop && p->n < SF_SPOOL_PERSIST_BATCH && !reached(&at)) {
			pthread_cond_timedwait(&p->wake, &p->lock, &at);
			continue;
		}
		/* take the whole queue; chunk_done starts a new one */
		rs = p->q;
		n = p->n;
		p->q = NULL;
		p->n = p->cap = 0;
		pthread_mutex_unlock(&p->lock);
		r = persist_round(p->s, rs, n, &what);
		free(rs);
		pthread_mutex_lock(&p->lock);
		if (r < 0) {
			/* once per spool: the thread ends here */
			syslog(LOG_WARNING, "%s: cannot %s: %s; a later pull of this layer "
			       "resumes from fewer bytes", p->s->work_dir, what, strerror(-r));
			p->broken = true;
			break;
		}
	}
	free(p->q); /* dropped: stop without drain, or broken */
	p->q = NULL;
	p->n = p->cap = 0;
	p->broken = true; /* a chunk_done after this (a bug) queues nothing */
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static sf_ret persister_start(struct sf_spool *s, struct sf_error *err)
{
	struct sf_persister *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;
	int e;

	if (!p)
		return sf_fail(err, ENOMEM, "out of memory");
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &ca);
	pthread_condattr_destroy(&ca);
	p->s = s;
	e = pthread_create(&p->thread, NULL, persister_main, p);
	if (e == 0)
		pthread_setname_np(p->thread, "sf-persist");
	if (e) {
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return sf_fail(err, e, "cannot start a thread: %s", strerror(e));
	}
	s->persist = p;
	return 0;
}

/* Stop the thread, persisting what is queued first when `drain`. */
static void persister_stop(struct sf_spool *s, bool drain)
{
	struct sf_persister *p = s->persist;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	p->drain = drain;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
	s->persist = NULL;
}

static void hook_chunk_done(void *arg, uint64_t off, uint64_t len)
{
	struct sf_spool *s = arg;
	struct sf_persister *p = s->persist;

	/* Only queued: the syncs happen on the persister thread (see the
	 * essay).  A range that cannot be queued only costs a later refetch,
	 * so nothing here is an error of the pull. */
	if (!p || len == 0)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->broken || p->stop)
		goto out;
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 16;
		struct sf_range *q = realloc(p->q, cap * sizeof(*q));
		if (!q)
			goto out;
		p->q = q;
		p->cap = cap;
	}
	if (p->n == 0)
		clock_gettime(CLOCK_MONOTONIC, &p->first_at);
	p->q[p->n++] = (struct sf_range){ off, off + len };
	if (p->n == 1 || p->n == SF_SPOOL_PERSIST_BATCH)
		pthread_cond_signal(&p->wake);
out:
	pthread_mutex_unlock(&p->lock);
}

void sf_spool_attach(struct sf_spool *s, struct sf_blob *b)
{
	b->fd = s->blob_fd;
	b->present = hook_present;
	b->chunk_done = hook_chunk_done;
	b->hook_arg = s;
}

void sf_spool_close(struct sf_spool *s, enum sf_spool_end end)
{
	static const char *rebuilt[] = { "data", "index", "meta.json" };
	bool discard = end == SF_SPOOL_DISCARD;

	/* before the fds close: the persister uses both */
	persister_stop(s, end == SF_SPOOL_KEEP);
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
