/* Unit tests for the layer cache (src/cache.c): errors keep their errno
 * (a full disk says so), and saving references leaves no stale temporary
 * files.  The commit's happy path is covered by every integration test. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache.h"
#include "decompress.h"

#define DIGEST "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DIFF_ID "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fixture {
	char root[32];
	struct sf_cache *c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sf_error err = { 0 };

	assert_non_null(f);
	strcpy(f->root, "/tmp/sf-cache-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	assert_int_equal(sf_cache_open(f->root, &f->c, &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	sf_cache_free(f->c);
	sf_cache_remove_tree(f->root);
	free(f);
	return 0;
}

static char *join(const char *a, const char *b)
{
	char *s = NULL;

	assert_true(asprintf(&s, "%s/%s", a, b) > 0);
	return s;
}

/* A full disk while meta.json is written (here: meta.json is /dev/full)
 * must fail the commit with ENOSPC and its message, not a bare EIO: the
 * pull names the cache dir and keeps the spool for a resume on ENOSPC. */
static void test_commit_keeps_enospc(void **state)
{
	struct fixture *f = *state;
	struct sf_layer_desc desc = { .digest = DIGEST, .diff_id = DIFF_ID, .size = 1,
				      .compression = SF_COMP_GZIP };
	struct sf_error err = { 0 };
	struct sf_index *idx = sf_index_new();
	char *work = sf_cache_work_dir(f->c, DIGEST);
	char *data = join(work, "data"), *meta = join(work, "meta.json");
	char *final = sf_cache_layer_dir(f->c, DIGEST);
	int fd;

	assert_int_equal(mkdir(work, 0755), 0);
	fd = open(data, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(symlink("/dev/full", meta), 0);
	assert_int_equal(sf_cache_commit_layer(f->c, &desc, work, idx, 0, &err), -ENOSPC);
	assert_int_equal(err.code, ENOSPC);
	assert_non_null(strstr(err.msg, strerror(ENOSPC)));
	assert_int_equal(access(final, F_OK), -1); /* nothing reached layers/ */
	sf_index_free(idx);
	free(work);
	free(data);
	free(meta);
	free(final);
}

/* A file under images/, with its mtime `age` seconds ago. */
static char *plant(const struct fixture *f, const char *name, time_t age)
{
	char *dir = join(f->root, "images"), *path = join(dir, name);
	struct timespec t[2] = { { .tv_sec = time(NULL) - age }, { .tv_sec = time(NULL) - age } };
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{", 1), 1);
	close(fd);
	assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
	free(dir);
	return path;
}

/* Saving a reference replaces images/<hex>.json through a temporary file
 * and removes temporary files a crash left: unlocked and over a minute
 * old.  One a live writer holds (flock), or one just created (not locked
 * yet), stays. */
static void test_save_image_cleans_stale_tmp(void **state)
{
	struct fixture *f = *state;
	struct sf_image img = { .ref = "127.0.0.1:5000/x:t",
				.manifest_digest = DIGEST,
				.manifest_json = "{}",
				.config_json = "{}" };
	struct sf_error err = { 0 };
	char *crashed = plant(f, "0123.json.tmp.4242", 3600); /* the old name form too */
	char *crashed2 = plant(f, "0123.json.tmp.Ab12Cd", 3600);
	char *held = plant(f, "4567.json.tmp.Xy34Zw", 3600);
	char *young = plant(f, "89ab.json.tmp.Qr56St", 0);
	char *other = plant(f, "cdef.json", 3600);
	char *dir = join(f->root, "images");
	int hold = open(held, O_RDONLY);
	struct dirent *d;
	DIR *dp;
	int saved = 0, tmps = 0;

	assert_true(hold >= 0);
	assert_int_equal(flock(hold, LOCK_EX), 0);
	assert_int_equal(sf_cache_save_image(f->c, &img, &err), 0);
	assert_int_equal(access(crashed, F_OK), -1);
	assert_int_equal(access(crashed2, F_OK), -1);
	assert_int_equal(access(held, F_OK), 0);
	assert_int_equal(access(young, F_OK), 0);
	assert_int_equal(access(other, F_OK), 0);
	dp = opendir(dir);
	assert_non_null(dp);
	while ((d = readdir(dp))) {
		saved += strlen(d->d_name) == 64 + 5 && strstr(d->d_name, ".json");
		tmps += strstr(d->d_name, ".tmp.") != NULL;
	}
	closedir(dp);
	assert_int_equal(saved, 1);
	assert_int_equal(tmps, 2); /* held and young; none of the save's own */
	close(hold);
	/* once unlocked, gc (or the next save) removes it */
	assert_int_equal(sf_cache_clean_image_tmp(f->c, NULL), 1);
	assert_int_equal(access(held, F_OK), -1);
	free(crashed);
	free(crashed2);
	free(held);
	free(young);
	free(other);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_keeps_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_image_cleans_stale_tmp, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
