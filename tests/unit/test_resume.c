/* test_resume.c - keeping or restarting a pull's spool (resume.h): which
 * leftovers of an earlier pull are resumed from and which are thrown away,
 * and what the fetcher's `present` hook reports. */
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	assert_int_equal(st.st_size, 0); /* the old bytes are gone with the map */
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
	assert_int_equal(st.st_size, 0);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
