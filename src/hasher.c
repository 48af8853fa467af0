/* hasher.c - see hasher.h.
 *
 * Pipe invariants (under lock): the ring holds `fill` unhashed bytes
 * starting at `tail`; the feeder writes only into the free part after
 * them, the thread reads only [tail, tail + span) which it took under the
 * lock, so the copy in and the hashing run concurrently without touching
 * the same bytes.  `eof` is set by final (no more input) and `stop` by
 * free (give up); the thread exits when the ring is empty and eof is set,
 * or at once on stop.
 */
#include "hasher.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileview.h"

struct sf_hasher {
	struct sf_sha256 *sha;
	pthread_t thread;
	bool started;

	/* follow mode */
	struct sf_blob *blob; /* borrowed; NULL in pipe mode */
	struct sf_fileview view; /* of the spool: hashed in place, no copy */

	/* pipe mode */
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	unsigned char *ring; /* SF_HASHER_RING bytes */
	size_t tail, fill;
	bool eof, stop;

	/* result, written by the thread before it exits */
	sf_ret ret;
	struct sf_error err;
};

static void *follow_main(void *arg)
{
	struct sf_hasher *h = arg;
	struct sf_blob *b = h->blob;
	uint64_t pos = 0;

	while (pos < b->size) {
		uint64_t want = b->size - pos > SF_HASHER_BLOCK ? pos + SF_HASHER_BLOCK : b->size;
		int64_t avail = sf_blob_wait(b, want);

		if (avail < 0) {
			pthread_mutex_lock(&b->lock);
			h->err = b->err;
			pthread_mutex_unlock(&b->lock);
			if (!h->err.msg[0])
				sf_fail(&h->err, (int)-avail, "download failed: %s",
					strerror((int)-avail));
			h->ret = (sf_ret)avail;
			return NULL;
		}
		pthread_mutex_lock(&h->lock);
		if (h->stop) {
			pthread_mutex_unlock(&h->lock);
			h->ret = sf_fail(&h->err, ECANCELED, "digest cancelled");
			return NULL;
		}
		pthread_mutex_unlock(&h->lock);
		while (pos < (uint64_t)avail) {
			const unsigned char *data;
			ssize_t n = sf_fileview_get(&h->view, pos, (uint64_t)avail, &data, &h->err);

			if (n < 0) {
				h->ret = (sf_ret)n;
				return NULL;
			}
			sf_sha256_update(h->sha, data, (size_t)n);
			pos += (uint64_t)n;
		}
	}
	return NULL;
}

static void *pipe_main(void *arg)
{
	struct sf_hasher *h = arg;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		size_t span;

		while (h->fill == 0 && !h->eof && !h->stop)
			pthread_cond_wait(&h->not_empty, &h->lock);
		if (h->stop || h->fill == 0)
			break;
		span = h->fill < SF_HASHER_RING - h->tail ? h->fill : SF_HASHER_RING - h->tail;
		pthread_mutex_unlock(&h->lock);
		sf_sha256_update(h->sha, h->ring + h->tail, span);
		pthread_mutex_lock(&h->lock);
		h->tail = (h->tail + span) % SF_HASHER_RING;
		h->fill -= span;
		pthread_cond_signal(&h->not_full);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static sf_ret hasher_new(struct sf_hasher **out, struct sf_error *err)
{
	struct sf_hasher *h = calloc(1, sizeof(*h));

	if (!h)
		return sf_fail(err, ENOMEM, "out of memory");
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->not_empty, NULL);
	pthread_cond_init(&h->not_full, NULL);
	sf_fileview_init(&h->view, -1);
	h->sha = sf_sha256_new();
	*out = h;
	return h->sha ? 0 : sf_fail(err, ENOMEM, "out of memory");
}

static sf_ret hasher_start(struct sf_hasher *h, void *(*fn)(void *), struct sf_error *err)
{
	int rc = pthread_create(&h->thread, NULL, fn, h);

	if (rc == 0) /* named for top -H and perf */
		pthread_setname_np(h->thread, fn == follow_main ? "sf-sha-blob" : "sf-sha-tar");

	if (rc)
		return sf_fail(err, rc, "cannot start digest thread: %s", strerror(rc));
	h->started = true;
	return 0;
}

sf_ret sf_hasher_follow(struct sf_blob *b, int fd, struct sf_hasher **out, struct sf_error *err)
{
	struct sf_hasher *h;
	sf_ret r = hasher_new(&h, err);

	if (r == 0) {
		h->blob = b;
		sf_fileview_init(&h->view, fd);
		r = hasher_start(h, follow_main, err);
	}
	if (r < 0) {
		sf_hasher_free(h);
		h = NULL;
	}
	*out = h;
	return r;
}

sf_ret sf_hasher_pipe(struct sf_hasher **out, struct sf_error *err)
{
	struct sf_hasher *h;
	sf_ret r = hasher_new(&h, err);

	if (r == 0) {
		h->ring = malloc(SF_HASHER_RING);
		r = h->ring ? hasher_start(h, pipe_main, err) : sf_fail(err, ENOMEM, "out of memory");
	}
	if (r < 0) {
		sf_hasher_free(h);
		h = NULL;
	}
	*out = h;
	return r;
}

void sf_hasher_feed(struct sf_hasher *h, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	pthread_mutex_lock(&h->lock);
	while (len > 0 && !h->stop) {
		size_t head, room, k;

		while (h->fill == SF_HASHER_RING && !h->stop)
			pthread_cond_wait(&h->not_full, &h->lock);
		head = (h->tail + h->fill) % SF_HASHER_RING;
		room = head >= h->tail ? SF_HASHER_RING - head : h->tail - head;
		if (room > SF_HASHER_RING - h->fill)
			room = SF_HASHER_RING - h->fill;
		k = len < room ? len : room;
		/* the thread never reads the free part: copy without the lock */
		pthread_mutex_unlock(&h->lock);
		memcpy(h->ring + head, p, k);
		pthread_mutex_lock(&h->lock);
		h->fill += k;
		p += k;
		len -= k;
		pthread_cond_signal(&h->not_empty);
	}
	pthread_mutex_unlock(&h->lock);
}

static void join(struct sf_hasher *h)
{
	if (h->started) {
		pthread_join(h->thread, NULL);
		h->started = false;
	}
}

sf_ret sf_hasher_final(struct sf_hasher *h, char out[SF_DIGEST_STR_LEN + 1], struct sf_error *err)
{
	pthread_mutex_lock(&h->lock);
	h->eof = true;
	pthread_cond_signal(&h->not_empty);
	pthread_mutex_unlock(&h->lock);
	join(h);
	if (h->ret < 0) {
		*err = h->err;
		return h->ret;
	}
	sf_sha256_final(h->sha, out);
	return 0;
}

void sf_hasher_free(struct sf_hasher *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->not_empty);
	pthread_cond_broadcast(&h->not_full);
	pthread_mutex_unlock(&h->lock);
	join(h);
	sf_sha256_free(h->sha);
	sf_fileview_release(&h->view);
	free(h->ring);
	pthread_cond_destroy(&h->not_full);
	pthread_cond_destroy(&h->not_empty);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
