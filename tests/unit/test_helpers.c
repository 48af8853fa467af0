/* Unit tests for a layer's helper threads: hasher.c (SHA-256 following a
 * growing blob, or fed through a bounded ring), fileview.c (reading the
 * spool in place) and writer.c (data writes handed to a thread).  A fake "fetcher" thread grows the blob here. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "digest.h"
#include "fetch.h"
#include "fileview.h"
#include "hasher.h"
#include "writer.h"

#define DATA_SIZE ((size_t)11 << 20) /* more than the ring, not a multiple of blocks */

static unsigned char *make_data(size_t n)
{
	unsigned char *d = malloc(n);
	uint64_t x = 0x9E3779B97F4A7C15ull;

	assert_non_null(d);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		d[i] = (unsigned char)x;
	}
	return d;
}

static int temp_file(char path[64])
{
	int fd;

	snprintf(path, 64, "/tmp/sf-test-helpers.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	return fd;
}

/* ---- pipe hasher ---- */

static void test_pipe_digest_matches_one_shot(void **state)
{
	unsigned char *d = make_data(DATA_SIZE);
	char want[SF_DIGEST_STR_LEN + 1], got[SF_DIGEST_STR_LEN + 1];
	struct sf_error err = { 0 };
	struct sf_hasher *h;
	size_t pos = 0, step = 1;

	(void)state;
	sf_sha256_buf(d, DATA_SIZE, want);
	assert_int_equal(sf_hasher_pipe(&h, &err), 0);
	/* pieces of many sizes, up to more than the whole ring at once */
	while (pos < DATA_SIZE) {
		size_t n = step < DATA_SIZE - pos ? step : DATA_SIZE - pos;
		sf_hasher_feed(h, d + pos, n);
		pos += n;
		step = step * 3 + 7;
		if (step > 2 * SF_HASHER_RING)
			step = 511;
	}
	assert_int_equal(sf_hasher_final(h, got, &err), 0);
	assert_string_equal(got, want);
	sf_hasher_free(h);
	free(d);
}

static void test_pipe_free_without_final(void **state)
{
	struct sf_error err = { 0 };
	struct sf_hasher *h;
	unsigned char b[4096] = { 0 };

	(void)state;
	assert_int_equal(sf_hasher_pipe(&h, &err), 0);
	sf_hasher_feed(h, b, sizeof(b));
	sf_hasher_free(h); /* must not hang or leak */
	sf_hasher_free(NULL);
}

/* ---- following a blob ---- */

struct grower {
	struct sf_blob *b;
	const unsigned char *d;
	size_t fail_at; /* 0: never */
};

/* The fetcher's part: write pieces in order, publish contiguous. */
static void *grow(void *arg)
{
	struct grower *g = arg;
	size_t pos = 0, step = 100000;

	while (pos < g->b->size) {
		size_t n = step < g->b->size - pos ? step : g->b->size - pos;
		if (g->fail_at && pos + n > g->fail_at) {
			pthread_mutex_lock(&g->b->lock);
			g->b->error = -ECONNRESET;
			sf_fail(&g->b->err, ECONNRESET, "blob %s: connection reset", g->b->digest);
			g->b->finished = true;
			pthread_cond_broadcast(&g->b->cond);
			pthread_mutex_unlock(&g->b->lock);
			return NULL;
		}
		assert_int_equal(pwrite(g->b->fd, g->d + pos, n, (off_t)pos), (ssize_t)n);
		pos += n;
		pthread_mutex_lock(&g->b->lock);
		g->b->contiguous = pos;
		g->b->finished = pos == g->b->size;
		pthread_cond_broadcast(&g->b->cond);
		pthread_mutex_unlock(&g->b->lock);
		step = step * 2 + 1;
	}
	return NULL;
}

static void follow(size_t fail_at)
{
	unsigned char *d = make_data(DATA_SIZE);
	char want[SF_DIGEST_STR_LEN + 1], got[SF_DIGEST_STR_LEN + 1], path[64];
	struct sf_error err = { 0 };
	struct sf_blob b;
	struct sf_hasher *h;
	struct grower g = { .b = &b, .d = d, .fail_at = fail_at };
	pthread_t t;
	sf_ret r;

	sf_sha256_buf(d, DATA_SIZE, want);
	sf_blob_init(&b);
	b.fd = temp_file(path);
	b.size = DATA_SIZE;
	b.digest = "sha256:test";
	/* the hasher starts before any byte is there, as in layer.c */
	assert_int_equal(sf_hasher_follow(&b, b.fd, &h, &err), 0);
	assert_int_equal(pthread_create(&t, NULL, grow, &g), 0);
	r = sf_hasher_final(h, got, &err);
	pthread_join(t, NULL);
	if (fail_at) {
		assert_int_equal(r, -ECONNRESET);
		assert_non_null(strstr(err.msg, "connection reset"));
	} else {
		assert_int_equal(r, 0);
		assert_string_equal(got, want);
	}
	sf_hasher_free(h);
	close(b.fd);
	unlink(path);
	sf_blob_destroy(&b);
	free(d);
}

static void test_follow_digest_matches_one_shot(void **state)
{
	(void)state;
	follow(0);
}

static void test_follow_reports_download_failure(void **state)
{
	(void)state;
	follow(DATA_SIZE / 2);
}

/* ---- fileview ---- */

/* Read the whole file through a view in pieces that start anywhere and
 * cross window boundaries; with `no_mmap`, through its pread fallback. */
static void view_whole_file(bool no_mmap)
{
	size_t size = (size_t)3 * SF_FILEVIEW_WINDOW + 12345;
	unsigned char *d = make_data(size), *back = malloc(size);
	struct sf_error err = { 0 };
	struct sf_fileview v;
	char path[64];
	int fd = temp_file(path);
	uint64_t pos = 0, step = 1;

	assert_non_null(back);
	assert_int_equal(pwrite(fd, d, size, 0), (ssize_t)size);
	sf_fileview_init(&v, fd);
	v.mmap_failed = no_mmap;
	while (pos < size) {
		/* end: how far "the fetcher" has got, never the file's end */
		uint64_t end = pos + step < size ? pos + step : size;
		const unsigned char *p;
		ssize_t n = sf_fileview_get(&v, pos, end, &p, &err);

		assert_true(n > 0 && (uint64_t)n <= end - pos);
		assert_true(n <= SF_FILEVIEW_WINDOW);
		memcpy(back + pos, p, (size_t)n);
		pos += (uint64_t)n;
		step = step * 3 + 7;
	}
	assert_memory_equal(back, d, size);
	/* going back to an earlier window works too */
	{
		const unsigned char *p;
		assert_true(sf_fileview_get(&v, 5, 9, &p, &err) == 4);
		assert_memory_equal(p, d + 5, 4);
	}
	sf_fileview_release(&v);
	close(fd);
	unlink(path);
	free(back);
	free(d);
}

static void test_fileview_reads_across_windows(void **state)
{
	(void)state;
	view_whole_file(false);
}

static void test_fileview_pread_fallback(void **state)
{
	(void)state;
	view_whole_file(true);
}

/* ---- writer ---- */

static void test_writer_writes_everything_at_its_offset(void **state)
{
	unsigned char *d = make_data(DATA_SIZE), *back = malloc(DATA_SIZE);
	struct sf_error err = { 0 };
	struct sf_writer *w;
	char path[64];
	int fd = temp_file(path);

	(void)state;
	assert_non_null(back);
	assert_int_equal(sf_writer_new(fd, &w, &err), 0);
	/* pieces from the end backwards: each lands at its own offset */
	for (size_t end = DATA_SIZE; end > 0;) {
		size_t n = end < 300000 ? end : 300000;
		void *buf = sf_writer_buf(w);
		assert_non_null(buf);
		memcpy(buf, d + end - n, n);
		sf_writer_queue(w, n, end - n);
		end -= n;
	}
	assert_int_equal(sf_writer_flush(w), 0);
	assert_int_equal(pread(fd, back, DATA_SIZE, 0), (ssize_t)DATA_SIZE);
	assert_memory_equal(back, d, DATA_SIZE);
	sf_writer_free(w);
	close(fd);
	unlink(path);
	free(back);
	free(d);
}

static void test_writer_reports_write_error(void **state)
{
	struct sf_error err = { 0 };
	struct sf_writer *w;
	char path[64];
	int fd = temp_file(path), ro;

	(void)state;
	ro = open(path, O_RDONLY);
	assert_true(ro >= 0);
	assert_int_equal(sf_writer_new(ro, &w, &err), 0);
	for (int i = 0; i < 2 * SF_WRITER_SLOTS; i++) {
		void *buf = sf_writer_buf(w);
		memset(buf, 'x', 4096);
		sf_writer_queue(w, 4096, (uint64_t)i * 4096);
	}
	assert_int_equal(sf_writer_flush(w), -EBADF);
	assert_int_equal(sf_writer_flush(w), -EBADF); /* stays failed */
	sf_writer_free(w);
	sf_writer_free(NULL);
	close(ro);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_digest_matches_one_shot),
		cmocka_unit_test(test_pipe_free_without_final),
		cmocka_unit_test(test_follow_digest_matches_one_shot),
		cmocka_unit_test(test_follow_reports_download_failure),
		cmocka_unit_test(test_fileview_reads_across_windows),
		cmocka_unit_test(test_fileview_pread_fallback),
		cmocka_unit_test(test_writer_writes_everything_at_its_offset),
		cmocka_unit_test(test_writer_reports_write_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
