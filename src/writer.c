/* writer.c - see writer.h.
 *
 * Slots form a ring: [head, head + queued) are queued for the thread in
 * order, the slot at head + queued is the one the producer fills next.
 * The producer owns that slot's buffer until it queues it; the thread owns
 * the queued slots until it drops them from the head.  Both counters are
 * under lock.
 *
 * Writeback is started as data goes in: the commit fsync()s the data file
 * before the layer counts as complete, and with nothing written back yet
 * that fsync wrote a whole large file at the very end of the pull (0.4 s
 * for the bench's 1.2 GiB file).  Every SF_WRITER_KICK bytes of a run of
 * consecutive writes, sync_file_range(SYNC_FILE_RANGE_WRITE) hands them to
 * the disk without waiting, so the fsync finds little left to do.  It is a
 * hint: its errors are ignored, the fsync reports real ones.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sync_file_range */
#endif
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct slot {
	unsigned char *buf;
	size_t len;
	uint64_t off;
};

struct sf_writer {
	int fd;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* any change of queued or stop */
	struct slot slots[SF_WRITER_SLOTS];
	unsigned head, queued;
	bool stop;
	int error; /* first write error (positive errno) */
	/* the thread's: the written run not yet handed to writeback */
	uint64_t run_start, run_end;
};

#define SF_WRITER_KICK (16u << 20)

static void start_writeback(struct sf_writer *w, const struct slot *s)
{
	if (s->off != w->run_end)
		w->run_start = s->off; /* another file, or a sparse jump */
	w->run_end = s->off + s->len;
	if (w->run_end - w->run_start >= SF_WRITER_KICK) {
		sync_file_range(w->fd, (off_t)w->run_start, (off_t)(w->run_end - w->run_start),
				SYNC_FILE_RANGE_WRITE);
		w->run_start = w->run_end;
	}
}

static int write_slot(int fd, const struct slot *s)
{
	size_t done = 0;

	while (done < s->len) {
		ssize_t n = pwrite(fd, s->buf + done, s->len - done, (off_t)(s->off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		done += (size_t)n;
	}
	return 0;
}

static void *writer_main(void *arg)
{
	struct sf_writer *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct slot *s;
		int e;

		while (w->queued == 0 && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->queued == 0)
			break; /* stop, and nothing left */
		s = &w->slots[w->head];
		pthread_mutex_unlock(&w->lock);
		e = w->error ? 0 : write_slot(w->fd, s); /* after an error: drop */
		if (!e && !w->error)
			start_writeback(w, s);
		pthread_mutex_lock(&w->lock);
		if (e && !w->error)
			w->error = e;
		w->head = (w->head + 1) % SF_WRITER_SLOTS;
		w->queued--;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

sf_ret sf_writer_new(int fd, struct sf_writer **out, struct sf_error *err)
{
	struct sf_writer *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (!w)
		return sf_fail(err, ENOMEM, "out of memory");
	w->fd = fd;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	rc = pthread_create(&w->thread, NULL, writer_main, w);
	if (rc == 0)
		pthread_setname_np(w->thread, "sf-write");
	if (rc) {
		sf_writer_free(w);
		return sf_fail(err, rc, "cannot start data writer thread: %s", strerror(rc));
	}
	w->started = true;
	*out = w;
	return 0;
}

void *sf_writer_buf(struct sf_writer *w)
{
	struct slot *s;

	pthread_mutex_lock(&w->lock);
	while (w->queued == SF_WRITER_SLOTS)
		pthread_cond_wait(&w->cond, &w->lock);
	s = &w->slots[(w->head + w->queued) % SF_WRITER_SLOTS];
	pthread_mutex_unlock(&w->lock);
	if (!s->buf)
		s->buf = malloc(SF_WRITER_BUF);
	return s->buf;
}

void sf_writer_queue(struct sf_writer *w, size_t len, uint64_t off)
{
	struct slot *s;

	pthread_mutex_lock(&w->lock);
	s = &w->slots[(w->head + w->queued) % SF_WRITER_SLOTS];
	s->len = len;
	s->off = off;
	w->queued++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

sf_ret sf_writer_flush(struct sf_writer *w)
{
	int e;

	pthread_mutex_lock(&w->lock);
	while (w->queued > 0)
		pthread_cond_wait(&w->cond, &w->lock);
	e = w->error;
	pthread_mutex_unlock(&w->lock);
	return e ? -e : 0;
}

void sf_writer_free(struct sf_writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (w->started)
		pthread_join(w->thread, NULL);
	for (unsigned i = 0; i < SF_WRITER_SLOTS; i++)
		free(w->slots[i].buf);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
