/* test_resume.c - keeping or restarting a pull's spool (resume.h): which
 * leftovers of an earlier pull are resumed from and which are thrown away,
 * what the fetcher's `present` hook reports, and when the persister
 * thread writes records (through a fake fdatasync that checks the order). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resume-private.h"
#include "resume.h"

#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SIZE 100000u

static char root[64];
static struct sf_cache *cache;
static struct sf_layer_desc desc = { .digest = "sha256:" HEX, .size = SIZE };

static int setup(void **state)
{
	struct sf_error err = { 0 };

	(void)state;
	snprintf(root, sizeof(root), "/tmp/test_resume.XXXXXX");
	assert_non_null(mkdtemp(root));
	assert_int_equal(sf_cache_open(root, &cache, &err), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sf_cache_remove_tree(root);
	sf_cache_free(cache);
	return 0;
}

static char *work_path(const char *name)
{
	char *s = NULL;

	assert_true(asprintf(&s, "%s/tmp/%s/%s", root, HEX, name) > 0);
	return s;
}

static void open_spool(struct sf_spool *s)
{
	struct sf_error err = { 0 };

	assert_int_equal(sf_spool_open(cache, &desc, s, &err), 0);
	assert_true(s->blob_fd >= 0);
	assert_non_null(s->map);
}

/* An earlier pull wrote [0, 30000) and recorded it. */
static void earlier_pull(void)
{
	struct sf_spool s;
	char buf[30000];

	open_spool(&s);
	assert_int_equal(s.resumed, 0);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(pwrite(s.blob_fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(sf_chunkmap_add(s.map, 0, sizeof(buf)), 0);
	sf_spool_close(&s, SF_SPOOL_KEEP);
}

static void test_resumes_kept_spool(void **state)
{
	struct sf_blob b;
	struct sf_spool s;
	char c;

	(void)state;
	earlier_pull();
	open_spool(&s);
	assert_int_equal(s.resumed, 30000);
	sf_blob_init(&b);
	sf_spool_attach(&s, &b);
	assert_int_equal(b.fd, s.blob_fd);
	assert_int_equal(b.present(b.hook_arg, 0, 65536), 30000);
	assert_int_equal(b.present(b.hook_arg, 29999, 10), 1);
	assert_int_equal(b.present(b.hook_arg, 30000, 10), 0);
	/* the bytes are still there: the blob was not truncated */
	assert_int_equal(pread(s.blob_fd, &c, 1, 29999), 1);
	assert_int_equal(c, 'x');
	/* chunk_done (the fetcher wrote the chunk): synced, then recorded, and
	 * the next pull resumes from it */
	assert_int_equal(pwrite(s.blob_fd, "yyyyy", 5, 30000), 5);
	b.chunk_done(b.hook_arg, 30000, 5);
	/* queued for the persister; closing a kept spool persists it */
	sf_blob_destroy(&b);
	sf_spool_close(&s, SF_SPOOL_KEEP);
	open_spool(&s);
	assert_int_equal(s.resumed, 30005);
	sf_spool_close(&s, SF_SPOOL_KEEP);
}

/* The map claims more than the blob file holds (truncated by someone): the
 * present hook never reports bytes beyond the file's end. */
static void test_present_clamped_to_file(void **state)
{
	_cleanup_free_ char *blob = work_path("blob");
	struct sf_blob b;
	struct sf_spool s;

	(void)state;
	earlier_pull();
	assert_int_equal(truncate(blob, 1000), 0);
	open_spool(&s);
	sf_blob_init(&b);
	sf_spool_attach(&s, &b);
	assert_int_equal(b.present(b.hook_arg, 0, 65536), 1000);
	assert_int_equal(b.present(b.hook_arg, 5000, 100), 0);
	sf_blob_destroy(&b);
	sf_spool_close(&s, SF_SPOOL_KEEP);
}

static void test_fresh_when_map_is_foreign(void **state)
{
	_cleanup_free_ char *map = work_path("blob.map");
	_cleanup_free_ char *blob = work_path("blob");
	struct sf_layer_desc other = desc;
	struct sf_spool s;
	struct stat st;

	(void)state;
	earlier_pull();
	other.size = SIZE + 1; /* same digest, other size: not this blob's map */
	{
		struct sf_error err = { 0 };
		assert_int_equal(sf_spool_open(cache, &other, &s, &err), 0);
	}
	assert_int_equal(s.resumed, 0);
	assert_int_equal(sf_chunkmap_bytes(s.map), 0);
	assert_int_equal(stat(blob, &st), 0);
	/* the old bytes are gone with the map: a new, sparse file of the size */
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(st.st_size, SIZE + 1);
	sf_spool_close(&s, SF_SPOOL_KEEP);
	(void)map;
}

static void test_fresh_when_blob_missing(void **state)
{
	_cleanup_free_ char *blob = work_path("blob");
	struct sf_spool s;

	(void)state;
	earlier_pull();
	assert_int_equal(unlink(blob), 0);
	open_spool(&s);
	assert_int_equal(s.resumed, 0);
	assert_int_equal(sf_chunkmap_bytes(s.map), 0);
	sf_spool_close(&s, SF_SPOOL_KEEP);
}

static void test_fresh_when_map_missing(void **state)
{
	_cleanup_free_ char *map = work_path("blob.map");
	_cleanup_free_ char *blob = work_path("blob");
	struct sf_spool s;
	struct stat st;

	(void)state;
	earlier_pull();
	assert_int_equal(unlink(map), 0); /* e.g. killed inside commit */
	open_spool(&s);
	assert_int_equal(s.resumed, 0);
	assert_int_equal(stat(blob, &st), 0);
	assert_int_equal(st.st_blocks, 0); /* a new, sparse file */
	assert_int_equal(st.st_size, SIZE);
	sf_spool_close(&s, SF_SPOOL_KEEP);
}

static void test_close_keeps_or_discards(void **state)
{
	_cleanup_free_ char *data = work_path("data");
	_cleanup_free_ char *blob = work_path("blob");
	_cleanup_free_ char *dir = NULL;
	struct sf_spool s;
	int fd;

	(void)state;
	open_spool(&s);
	fd = open(data, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	sf_spool_close(&s, SF_SPOOL_KEEP); /* kept: blob and map stay, data goes */
	assert_int_equal(access(blob, F_OK), 0);
	assert_int_equal(access(data, F_OK), -1);
	open_spool(&s);
	sf_spool_close(&s, SF_SPOOL_DISCARD); /* discarded: the whole work dir goes */
	assert_true(asprintf(&dir, "%s/tmp/%s", root, HEX) > 0);
	assert_int_equal(access(dir, F_OK), -1);
}

/* Commit keeps the spool until the layer is renamed into layers/ (a kill
 * during the syncs must not lose the verified download), then drops it; a
 * spool left in layers/<hex>/ by a kill right after the rename is removed
 * when the layer is loaded. */
static void test_commit_drops_spool_after_rename(void **state)
{
	struct sf_layer_desc d = desc;
	struct sf_error err = { 0 };
	struct sf_index *idx = sf_index_new(), *loaded = NULL;
	_cleanup_free_ char *data = work_path("data");
	_cleanup_free_ char *final = NULL, *fblob = NULL, *fmap = NULL;
	struct sf_spool s;
	int fd, dfd = -1;

	(void)state;
	d.diff_id = "sha256:" HEX;
	earlier_pull();
	open_spool(&s);
	fd = open(data, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_non_null(idx);
	assert_int_equal(sf_cache_commit_layer(cache, &d, s.work_dir, idx, 0, &err), 0);
	sf_spool_close(&s, SF_SPOOL_KEEP);
	assert_true(asprintf(&final, "%s/layers/%s", root, HEX) > 0);
	assert_true(asprintf(&fblob, "%s/blob", final) > 0);
	assert_true(asprintf(&fmap, "%s/blob.map", final) > 0);
	assert_int_equal(access(fblob, F_OK), -1);
	assert_int_equal(access(fmap, F_OK), -1);
	/* as if killed between the rename and the unlinks */
	fd = open(fblob, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = open(fmap, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(sf_cache_load_layer(cache, &d, &loaded, &dfd, &err), 0);
	assert_int_equal(access(fblob, F_OK), -1);
	assert_int_equal(access(fmap, F_OK), -1);
	sf_index_free(loaded);
	sf_index_free(idx);
	close(dfd);
}

/* ---- the persister: a fake fdatasync that checks the crash rule ---- */

#define CHUNK 1000u
#define NCHUNKS (SIZE / CHUNK)

static struct {
	pthread_mutex_t lock;
	int blob_fd, map_fd;
	bool written[NCHUNKS]; /* pwrite of the chunk returned */
	bool durable[NCHUNKS]; /* written before a successful blob sync */
	unsigned blob_syncs, map_syncs;
	bool fail_blob;	    /* blob syncs fail with EIO */
	bool gate;	    /* the next blob sync waits for `release` */
	unsigned bad;	    /* records seen naming bytes not durable */
	sem_t entered, release;
} fk = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Records on disk, parsed independently of chunkmap.c; every one must name
 * a whole chunk that was durable, else *bad grows (no cmocka assert here:
 * it also runs on the persister thread).  Returns how many there are. */
static unsigned scan_map_file(unsigned *bad)
{
	_cleanup_free_ char *path = work_path("blob.map");
	unsigned char r[SF_CHUNKMAP_RECORD_SIZE];
	unsigned n = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		(*bad)++;
		return 0;
	}
	while (pread(fd, r, sizeof(r), SF_CHUNKMAP_HEADER_SIZE + (off_t)n * sizeof(r)) ==
	       (ssize_t)sizeof(r)) {
		uint64_t off = le64(r + 8), len = le64(r + 16);
		if (off % CHUNK != 0 || len != CHUNK || off / CHUNK >= NCHUNKS ||
		    !fk.durable[off / CHUNK])
			(*bad)++;
		n++;
	}
	close(fd);
	return n;
}

/* The same from the test thread, asserting. */
static unsigned check_map_file(void)
{
	unsigned bad = 0, seen, n;

	pthread_mutex_lock(&fk.lock);
	n = scan_map_file(&bad);
	seen = fk.bad;
	pthread_mutex_unlock(&fk.lock);
	assert_int_equal(seen, 0);
	assert_int_equal(bad, 0);
	return n;
}

static int fake_sync(int fd)
{
	bool gate;

	pthread_mutex_lock(&fk.lock);
	gate = fd == fk.blob_fd && fk.gate;
	fk.gate = fk.gate && !gate;
	pthread_mutex_unlock(&fk.lock);
	if (gate) {
		sem_post(&fk.entered);
		sem_wait(&fk.release);
	}
	pthread_mutex_lock(&fk.lock);
	if (fd == fk.blob_fd) {
		fk.blob_syncs++;
		/* nothing of this round was recorded before the blob sync */
		scan_map_file(&fk.bad);
		if (fk.fail_blob) {
			pthread_mutex_unlock(&fk.lock);
			errno = EIO;
			return -1;
		}
		memcpy(fk.durable, fk.written, sizeof(fk.durable));
	} else {
		if (fd != fk.map_fd)
			fk.bad++;
		fk.map_syncs++;
		scan_map_file(&fk.bad);
	}
	pthread_mutex_unlock(&fk.lock);
	return fdatasync(fd);
}

/* Open a fresh spool with the fake sync; rounds run only at
 * SF_SPOOL_PERSIST_BATCH queued ranges or at close. */
static void fake_open(struct sf_spool *s, struct sf_blob *b)
{
	pthread_mutex_lock(&fk.lock);
	memset(fk.written, 0, sizeof(fk.written));
	memset(fk.durable, 0, sizeof(fk.durable));
	fk.blob_syncs = fk.map_syncs = 0;
	fk.fail_blob = fk.gate = false;
	fk.bad = 0;
	pthread_mutex_unlock(&fk.lock);
	assert_int_equal(sem_init(&fk.entered, 0, 0), 0);
	assert_int_equal(sem_init(&fk.release, 0, 0), 0);
	sf_spool_datasync = fake_sync;
	sf_spool_persist_ms = 3600u * 1000u;
	open_spool(s);
	assert_int_equal(s->resumed, 0);
	pthread_mutex_lock(&fk.lock);
	fk.blob_fd = s->blob_fd;
	fk.map_fd = s->map->fd;
	pthread_mutex_unlock(&fk.lock);
	sf_blob_init(b);
	sf_spool_attach(s, b);
}

static void fake_close(struct sf_spool *s, struct sf_blob *b, enum sf_spool_end end)
{
	sf_blob_destroy(b);
	sf_spool_close(s, end);
	sf_spool_datasync = fdatasync;
	sf_spool_persist_ms = SF_SPOOL_PERSIST_MS;
	sem_destroy(&fk.entered);
	sem_destroy(&fk.release);
}

/* What the fetcher does for chunk i: write it, then call chunk_done. */
static void fetch_chunk(struct sf_blob *b, unsigned i)
{
	char buf[CHUNK];

	memset(buf, 'a' + (int)(i % 26), sizeof(buf));
	assert_int_equal(pwrite(b->fd, buf, sizeof(buf), (off_t)i * CHUNK), (ssize_t)CHUNK);
	pthread_mutex_lock(&fk.lock);
	fk.written[i] = true;
	pthread_mutex_unlock(&fk.lock);
	b->chunk_done(b->hook_arg, (uint64_t)i * CHUNK, CHUNK);
}

static uint64_t resumed_after_reopen(void)
{
	struct sf_spool s;
	uint64_t r;

	open_spool(&s);
	r = s.resumed;
	sf_spool_close(&s, SF_SPOOL_KEEP);
	return r;
}

/* chunk_done only queues; a full batch makes one round (one blob sync,
 * then records, then one map sync); closing a kept spool persists the
 * rest in one more round. */
static void test_persister_batches_after_sync(void **state)
{
	struct sf_spool s;
	struct sf_blob b;

	(void)state;
	fake_open(&s, &b);
	fk.gate = true; /* set before any round can run */
	for (unsigned i = 0; i < SF_SPOOL_PERSIST_BATCH; i++)
		fetch_chunk(&b, i);
	sem_wait(&fk.entered); /* round 1 took the 64 ranges, is in its blob sync */
	assert_int_equal(check_map_file(), 0); /* chunk_done recorded nothing */
	for (unsigned i = SF_SPOOL_PERSIST_BATCH; i < NCHUNKS; i++)
		fetch_chunk(&b, i); /* fewer than a batch: queued until close */
	sem_post(&fk.release);
	fake_close(&s, &b, SF_SPOOL_KEEP);
	assert_int_equal(fk.blob_syncs, 2);
	assert_int_equal(fk.map_syncs, 2);
	assert_int_equal(check_map_file(), NCHUNKS);
	assert_int_equal(resumed_after_reopen(), SIZE);
}

/* Closing a kept spool drains the queue; a committed or discarded one
 * drops it without a sync. */
static void test_persister_close_drains_or_drops(void **state)
{
	struct sf_spool s;
	struct sf_blob b;

	(void)state;
	fake_open(&s, &b);
	for (unsigned i = 0; i < 3; i++)
		fetch_chunk(&b, i);
	fake_close(&s, &b, SF_SPOOL_KEEP);
	assert_int_equal(fk.blob_syncs, 1);
	assert_int_equal(fk.map_syncs, 1);
	assert_int_equal(check_map_file(), 3);
	assert_int_equal(resumed_after_reopen(), 3 * CHUNK);

	open_spool(&s); /* start the next ones empty */
	sf_spool_close(&s, SF_SPOOL_DISCARD);
	fake_open(&s, &b);
	for (unsigned i = 0; i < 3; i++)
		fetch_chunk(&b, i);
	fake_close(&s, &b, SF_SPOOL_COMMITTED);
	assert_int_equal(fk.blob_syncs, 0);
	assert_int_equal(resumed_after_reopen(), 0);

	open_spool(&s);
	sf_spool_close(&s, SF_SPOOL_DISCARD);
	fake_open(&s, &b);
	for (unsigned i = 0; i < 3; i++)
		fetch_chunk(&b, i);
	fake_close(&s, &b, SF_SPOOL_DISCARD);
	assert_int_equal(fk.blob_syncs, 0);
}

/* A failed blob sync records nothing, and the spool's persister stops:
 * no further sync, no record, even for ranges queued later. */
static void test_persister_stops_after_failed_sync(void **state)
{
	_cleanup_free_ char *map = work_path("blob.map");
	struct sf_spool s;
	struct sf_blob b;
	struct stat st;

	(void)state;
	fake_open(&s, &b);
	fk.fail_blob = true;
	fk.gate = true;
	for (unsigned i = 0; i < SF_SPOOL_PERSIST_BATCH; i++)
		fetch_chunk(&b, i);
	sem_wait(&fk.entered);
	sem_post(&fk.release); /* the sync fails */
	for (unsigned i = SF_SPOOL_PERSIST_BATCH; i < NCHUNKS; i++)
		fetch_chunk(&b, i);
	fake_close(&s, &b, SF_SPOOL_KEEP);
	assert_int_equal(fk.blob_syncs, 1);
	assert_int_equal(fk.map_syncs, 0);
	assert_int_equal(stat(map, &st), 0);
	assert_int_equal(st.st_size, SF_CHUNKMAP_HEADER_SIZE);
	assert_int_equal(check_map_file(), 0);
	assert_int_equal(resumed_after_reopen(), 0);
}

struct worker {
	struct sf_blob *b;
	unsigned first, step;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (unsigned i = w->first; i < NCHUNKS; i += w->step)
		fetch_chunk(w->b, i);
	return NULL;
}

/* chunk_done from several threads at once (TSan build): every range is
 * recorded once, after a sync that covered it. */
static void test_persister_concurrent_chunk_done(void **state)
{
	struct worker w[4];
	pthread_t t[4];
	struct sf_spool s;
	struct sf_blob b;

	(void)state;
	fake_open(&s, &b);
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){ .b = &b, .first = i, .step = 4 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	fake_close(&s, &b, SF_SPOOL_KEEP);
	assert_true(fk.blob_syncs >= 1);
	assert_int_equal(fk.blob_syncs, fk.map_syncs);
	assert_int_equal(check_map_file(), NCHUNKS);
	assert_int_equal(resumed_after_reopen(), SIZE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_resumes_kept_spool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_present_clamped_to_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fresh_when_map_is_foreign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fresh_when_blob_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fresh_when_map_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_keeps_or_discards, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_drops_spool_after_rename, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_persister_batches_after_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persister_close_drains_or_drops, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_persister_stops_after_failed_sync, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_persister_concurrent_chunk_done, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
