/* test_chunkmap.c - the persisted chunk map of a spool: round trips, and
 * the files a crash or a hostile disk can leave (torn records, garbage,
 * headers of another blob). */
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

#include "chunkmap.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define OTHER "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
#define SIZE 1000000u

static char path[64];

static int setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/test_chunkmap.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path); /* absent: open creates it */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static struct sf_chunkmap *open_map(const char *digest, uint64_t size, bool want_loaded)
{
	struct sf_chunkmap *m = NULL;
	struct sf_error err = { 0 };
	bool loaded = !want_loaded;

	assert_int_equal(sf_chunkmap_open(path, digest, size, &m, &loaded, &err), 0);
	assert_non_null(m);
	assert_int_equal(loaded, want_loaded);
	return m;
}

static off_t file_size(void)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void append_raw(const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static void poke(off_t off, unsigned char byte)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &byte, 1, off), 1);
	close(fd);
}

static void test_new_map_is_empty(void **state)
{
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);

	(void)state;
	assert_int_equal(sf_chunkmap_bytes(m), 0);
	assert_int_equal(sf_chunkmap_present(m, 0, 100), 0);
	assert_int_equal(file_size(), SF_CHUNKMAP_HEADER_SIZE);
	sf_chunkmap_free(m);
	/* an empty but valid map is kept */
	m = open_map(DIGEST, SIZE, true);
	sf_chunkmap_free(m);
	assert_int_equal(sf_chunkmap_peek(path), 0);
}

static void test_round_trip_and_merge(void **state)
{
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);

	(void)state;
	assert_int_equal(sf_chunkmap_add(m, 100, 100), 0);  /* [100, 200) */
	assert_int_equal(sf_chunkmap_add(m, 300, 100), 0);  /* [300, 400) */
	assert_int_equal(sf_chunkmap_add(m, 200, 100), 0);  /* joins both */
	assert_int_equal(sf_chunkmap_add(m, 150, 100), 0);  /* overlap: no change */
	assert_int_equal(sf_chunkmap_add(m, 900000, 100000), 0); /* the tail */
	assert_int_equal(sf_chunkmap_bytes(m), 300 + 100000);
	assert_int_equal(m->n, 2);
	sf_chunkmap_free(m);

	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_bytes(m), 300 + 100000);
	assert_int_equal(sf_chunkmap_present(m, 0, 1000), 0);
	assert_int_equal(sf_chunkmap_present(m, 100, 1000), 300);
	assert_int_equal(sf_chunkmap_present(m, 250, 10), 10);
	assert_int_equal(sf_chunkmap_present(m, 399, 10), 1);
	assert_int_equal(sf_chunkmap_present(m, 400, 10), 0);
	assert_int_equal(sf_chunkmap_present(m, 950000, 1 << 20), 50000);
	/* records appended after a reopen count too */
	assert_int_equal(sf_chunkmap_add(m, 0, 100), 0);
	sf_chunkmap_free(m);
	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_present(m, 0, 1000), 400);
	sf_chunkmap_free(m);
	assert_int_equal(sf_chunkmap_peek(path), 400 + 100000);
}

static void test_bounds(void **state)
{
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);

	(void)state;
	assert_int_equal(sf_chunkmap_add(m, 0, 0), -EINVAL);
	assert_int_equal(sf_chunkmap_add(m, SIZE, 1), -EINVAL);
	assert_int_equal(sf_chunkmap_add(m, SIZE - 10, 11), -EINVAL);
	assert_int_equal(sf_chunkmap_add(m, UINT64_MAX, 2), -EINVAL);
	assert_int_equal(sf_chunkmap_bytes(m), 0);
	sf_chunkmap_free(m);
}

/* kill -9 or a power cut in the middle of an append */
static void test_torn_record(void **state)
{
	static const unsigned char half[SF_CHUNKMAP_RECORD_SIZE / 2] = { 0x53, 0x46, 0x43, 0x52 };
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);
	off_t good;

	(void)state;
	assert_int_equal(sf_chunkmap_add(m, 0, 1000), 0);
	assert_int_equal(sf_chunkmap_add(m, 5000, 1000), 0);
	sf_chunkmap_free(m);
	good = file_size();
	append_raw(half, sizeof(half));

	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_bytes(m), 2000);
	assert_int_equal(file_size(), good); /* the torn tail was cut */
	assert_int_equal(sf_chunkmap_add(m, 1000, 1000), 0);
	sf_chunkmap_free(m);
	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_present(m, 0, 10000), 2000); /* the new record is seen */
	sf_chunkmap_free(m);
}

/* A whole record with a flipped bit (a disk lying) ends the valid part:
 * later records are dropped rather than trusted. */
static void test_corrupt_record(void **state)
{
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);

	(void)state;
	assert_int_equal(sf_chunkmap_add(m, 0, 1000), 0);
	assert_int_equal(sf_chunkmap_add(m, 1000, 1000), 0);
	assert_int_equal(sf_chunkmap_add(m, 2000, 1000), 0);
	sf_chunkmap_free(m);
	poke(SF_CHUNKMAP_HEADER_SIZE + SF_CHUNKMAP_RECORD_SIZE + 17, 0x7f); /* 2nd len */
	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_bytes(m), 1000);
	assert_int_equal(file_size(), SF_CHUNKMAP_HEADER_SIZE + SF_CHUNKMAP_RECORD_SIZE);
	sf_chunkmap_free(m);
}

/* Random garbage after the header, and zeros (a file extended by a crash
 * before its data reached the disk) */
static void test_garbage_tail(void **state)
{
	unsigned char junk[1000];
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);

	(void)state;
	assert_int_equal(sf_chunkmap_add(m, 10, 20), 0);
	sf_chunkmap_free(m);
	srand(7);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)rand();
	append_raw(junk, sizeof(junk));
	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_bytes(m), 20);
	sf_chunkmap_free(m);
	memset(junk, 0, sizeof(junk));
	append_raw(junk, sizeof(junk));
	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_bytes(m), 20);
	sf_chunkmap_free(m);
}

/* The header is what ties the map to a blob: any doubt starts afresh. */
static void test_header_mismatch(void **state)
{
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);

	(void)state;
	assert_int_equal(sf_chunkmap_add(m, 0, 1000), 0);
	sf_chunkmap_free(m);
	m = open_map(OTHER, SIZE, false); /* another blob's map */
	assert_int_equal(sf_chunkmap_bytes(m), 0);
	assert_int_equal(sf_chunkmap_add(m, 0, 1000), 0);
	sf_chunkmap_free(m);
	m = open_map(OTHER, SIZE - 1, false); /* another size */
	assert_int_equal(sf_chunkmap_bytes(m), 0);
	assert_int_equal(sf_chunkmap_add(m, 0, 1000), 0);
	sf_chunkmap_free(m);
	poke(3, 'x'); /* magic */
	m = open_map(OTHER, SIZE - 1, false);
	assert_int_equal(sf_chunkmap_bytes(m), 0);
	sf_chunkmap_free(m);
	poke(40, 'q'); /* a digest byte: the CRC catches it */
	m = open_map(OTHER, SIZE - 1, false);
	sf_chunkmap_free(m);
	assert_int_equal(sf_chunkmap_peek(path), 0);
}

static void test_short_and_empty_files(void **state)
{
	struct sf_chunkmap *m;

	(void)state;
	append_raw("SFCHMAP1", 8); /* torn header */
	m = open_map(DIGEST, SIZE, false);
	sf_chunkmap_free(m);
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(sf_chunkmap_peek(path), -EINVAL);
	m = open_map(DIGEST, SIZE, false);
	sf_chunkmap_free(m);
	assert_int_equal(sf_chunkmap_peek("/nonexistent/blob.map"), -ENOENT);
}

/* A record that is intact but points outside the blob was not written by
 * us for this blob: it and everything after it are ignored. */
static void test_record_out_of_bounds(void **state)
{
	struct sf_chunkmap *m = open_map(DIGEST, SIZE, false);

	(void)state;
	assert_int_equal(sf_chunkmap_add(m, 0, 1000), 0);
	sf_chunkmap_free(m);
	m = open_map(DIGEST, 2 * SIZE, false); /* header for a bigger blob */
	assert_int_equal(sf_chunkmap_add(m, 0, 10), 0);
	assert_int_equal(sf_chunkmap_add(m, SIZE, SIZE), 0);
	sf_chunkmap_free(m);
	/* rewrite the header for the small size, keeping the records */
	{
		struct sf_chunkmap *h;
		unsigned char rec[2 * SF_CHUNKMAP_RECORD_SIZE];
		int fd = open(path, O_RDONLY);
		assert_int_equal(pread(fd, rec, sizeof(rec), SF_CHUNKMAP_HEADER_SIZE),
				 (ssize_t)sizeof(rec));
		close(fd);
		unlink(path);
		h = open_map(DIGEST, SIZE, false);
		sf_chunkmap_free(h);
		append_raw(rec, sizeof(rec));
	}
	m = open_map(DIGEST, SIZE, true);
	assert_int_equal(sf_chunkmap_bytes(m), 10);
	sf_chunkmap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_map_is_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_and_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_and_empty_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_out_of_bounds, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
