/* Unit tests for the layer index: tar entries -> tree, overlay whiteouts,
 * hard links, replacement, hostile paths, and the on-disk round trip. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "index.h"

static struct sf_tar_entry entry(const char *path, enum sf_tar_type type)
{
	return (struct sf_tar_entry){ .path = (char *)path, .linkname = "", .type = type,
				      .mode = 0644, .uid = 0, .gid = 0, .mtime_sec = 1000 };
}

static void add_ok(struct sf_index *idx, struct sf_tar_entry e, uint64_t off)
{
	struct sf_error err = { 0 };
	sf_ret r = sf_index_add(idx, &e, off, &err);

	if (r != 0)
		fail_msg("adding %s: %s", e.path, err.msg);
}

/* Inode id at a slash-separated path, or 0. */
static uint32_t resolve(const struct sf_index *idx, const char *path)
{
	char buf[256];
	uint32_t at = SF_INDEX_ROOT;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *save = NULL, *c = strtok_r(buf, "/", &save); c && at;
	     c = strtok_r(NULL, "/", &save))
		at = sf_index_lookup(idx, at, c);
	return at;
}

static void test_files_dirs_and_implicit_parents(void **state)
{
	struct sf_index *idx = sf_index_new();
	struct sf_tar_entry f = entry("./usr/bin/tool", SF_TAR_REG);
	struct stat st;
	uint32_t id;

	(void)state;
	f.size = 42;
	f.mode = 04755;
	f.uid = 1000;
	f.gid = 100;
	f.mtime_nsec = 123456789;
	add_ok(idx, f, 8192);
	id = resolve(idx, "usr/bin/tool");
	assert_int_not_equal(id, 0);
	sf_index_stat(idx, id, &st);
	assert_int_equal(st.st_mode, S_IFREG | 04755);
	assert_int_equal(st.st_size, 42);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 100);
	assert_int_equal(st.st_mtim.tv_nsec, 123456789);
	assert_int_equal(idx->inodes[id].data_off, 8192);
	/* implicit parents are 0755 directories; usr has one subdirectory */
	sf_index_stat(idx, resolve(idx, "usr"), &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0755);
	assert_int_equal(st.st_nlink, 3);
	/* a later explicit entry gives the directory its attributes, keeps children */
	struct sf_tar_entry d = entry("usr/", SF_TAR_DIR);
	d.mode = 0700;
	add_ok(idx, d, 0);
	sf_index_stat(idx, resolve(idx, "usr"), &st);
	assert_int_equal(st.st_mode, S_IFDIR | 0700);
	assert_int_equal(resolve(idx, "usr/bin/tool"), id);
	sf_index_free(idx);
}

static void test_whiteouts_and_opaque(void **state)
{
	struct sf_index *idx = sf_index_new();
	const void *v;
	char list[64];
	struct stat st;
	uint32_t id;

	(void)state;
	add_ok(idx, entry("etc/.wh.passwd", SF_TAR_REG), 0);
	add_ok(idx, entry("var/cache/.wh..wh..opq", SF_TAR_REG), 0);
	add_ok(idx, entry("var/.wh..wh.plnk", SF_TAR_DIR), 0);
	id = resolve(idx, "etc/passwd");
	assert_int_not_equal(id, 0);
	sf_index_stat(idx, id, &st);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(major(st.st_rdev), 0);
	assert_int_equal(minor(st.st_rdev), 0);
	assert_int_equal(resolve(idx, "etc/.wh.passwd"), 0);
	assert_int_equal(resolve(idx, "var/cache/.wh..wh..opq"), 0);
	assert_int_equal(resolve(idx, "var/.wh..wh.plnk"), 0);
	id = resolve(idx, "var/cache");
	assert_int_equal(sf_index_getxattr(idx, id, "trusted.overlay.opaque",
					   "trusted.overlay.opaque", &v), 1);
	assert_memory_equal(v, "y", 1);
	assert_int_equal(sf_index_getxattr(idx, id, "user.overlay.opaque",
					   "trusted.overlay.opaque", &v), -ENODATA);
	assert_int_equal(sf_index_listxattr(idx, id, "trusted.overlay.opaque", list,
					    sizeof(list)), 23);
	assert_string_equal(list, "trusted.overlay.opaque");
	assert_int_equal(sf_index_getxattr(idx, resolve(idx, "var"), "trusted.overlay.opaque",
					   "trusted.overlay.opaque", &v), -ENODATA);
	sf_index_free(idx);
}

static void test_hardlinks_share_inode(void **state)
{
	struct sf_index *idx = sf_index_new();
	struct sf_tar_entry f = entry("a/file", SF_TAR_REG);
	struct sf_tar_entry l = entry("b/link", SF_TAR_HARDLINK);
	struct sf_tar_entry l2 = entry("c/link2", SF_TAR_HARDLINK);
	struct stat st;

	(void)state;
	f.size = 5;
	add_ok(idx, f, 4096);
	l.linkname = "./a/file";
	add_ok(idx, l, 0);
	l2.linkname = "b/link"; /* chain: link to a link */
	add_ok(idx, l2, 0);
	assert_int_equal(resolve(idx, "a/file"), resolve(idx, "b/link"));
	assert_int_equal(resolve(idx, "a/file"), resolve(idx, "c/link2"));
	sf_index_stat(idx, resolve(idx, "a/file"), &st);
	assert_int_equal(st.st_nlink, 3);
	assert_int_equal(st.st_size, 5);
	sf_index_free(idx);
}

/* Regression (fidelity corpus): a hard link's own header sets the shared
 * inode's owner, xattrs and, unless it is a symlink, mode and mtime, as
 * podman's and Docker's unpackers do. */
static void test_hardlink_header_applies_to_inode(void **state)
{
	struct sf_index *idx = sf_index_new();
	struct sf_tar_entry f = entry("file", SF_TAR_REG);
	struct sf_tar_entry s = entry("sym", SF_TAR_SYMLINK);
	struct sf_tar_entry l = entry("link", SF_TAR_HARDLINK);
	struct sf_tar_entry ls = entry("linksym", SF_TAR_HARDLINK);
	struct sf_tar_xattr fx = { "user.a", (unsigned char *)"old", 3 };
	struct sf_tar_xattr lx[] = { { "user.a", (unsigned char *)"new", 3 },
				     { "user.b", (unsigned char *)"b", 1 } };
	const void *v;
	struct stat st;

	(void)state;
	f.mode = 0640, f.uid = 7, f.gid = 8, f.mtime_nsec = 1;
	f.xattrs = &fx, f.n_xattrs = 1;
	add_ok(idx, f, 0);
	l.linkname = "file", l.mode = 04755, l.uid = 1, l.gid = 2, l.mtime_sec = 2000;
	l.xattrs = lx, l.n_xattrs = 2;
	add_ok(idx, l, 0);
	sf_index_stat(idx, resolve(idx, "file"), &st);
	assert_int_equal(st.st_mode, S_IFREG | 04755);
	assert_int_equal(st.st_uid, 1);
	assert_int_equal(st.st_gid, 2);
	assert_int_equal(st.st_mtim.tv_sec, 2000);
	assert_int_equal(st.st_mtim.tv_nsec, 0);
	assert_int_equal(sf_index_getxattr(idx, resolve(idx, "file"), "user.a", "x", &v), 3);
	assert_memory_equal(v, "new", 3);
	assert_int_equal(sf_index_getxattr(idx, resolve(idx, "link"), "user.b", "x", &v), 1);
	/* to a symlink: the owner only */
	s.linkname = "file", s.mode = 0777;
	add_ok(idx, s, 0);
	ls.linkname = "sym", ls.mode = 0600, ls.uid = 5, ls.mtime_sec = 3000;
	add_ok(idx, ls, 0);
	sf_index_stat(idx, resolve(idx, "linksym"), &st);
	assert_int_equal(st.st_mode, S_IFLNK | 0777);
	assert_int_equal(st.st_uid, 5);
	assert_int_equal(st.st_mtim.tv_sec, 1000);
	sf_index_free(idx);
}

static void test_later_entry_wins(void **state)
{
	struct sf_index *idx = sf_index_new();
	struct sf_tar_entry f = entry("x", SF_TAR_REG);
	struct sf_tar_entry s = entry("x", SF_TAR_SYMLINK);
	struct stat st;

	(void)state;
	f.size = 10;
	add_ok(idx, f, 0);
	s.linkname = "target";
	add_ok(idx, s, 0);
	sf_index_stat(idx, resolve(idx, "x"), &st);
	assert_true(S_ISLNK(st.st_mode));
	assert_string_equal(idx->inodes[resolve(idx, "x")].target, "target");
	/* only one name in the directory */
	uint32_t n = 0;
	for (uint32_t d = idx->inodes[SF_INDEX_ROOT].first_child; d; d = idx->dentries[d].next_sibling)
		n++;
	assert_int_equal(n, 1);
	sf_index_free(idx);
}

static void test_hostile_paths_refused(void **state)
{
	struct sf_index *idx = sf_index_new();
	struct sf_error err = { 0 };
	struct sf_tar_entry e = entry("a/../../etc/passwd", SF_TAR_REG);
	struct sf_tar_entry l = entry("link", SF_TAR_HARDLINK);
	struct sf_tar_entry f = entry("file", SF_TAR_REG);
	struct sf_tar_entry under = entry("file/x", SF_TAR_REG);

	(void)state;
	assert_int_equal(sf_index_add(idx, &e, 0, &err), -EPERM);
	assert_non_null(strstr(err.msg, "a/../../etc/passwd"));
	l.linkname = "missing";
	assert_int_equal(sf_index_add(idx, &l, 0, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing"));
	add_ok(idx, f, 0);
	assert_int_equal(sf_index_add(idx, &under, 0, &err), -ENOTDIR);
	e = entry("big", SF_TAR_REG);
	e.uid = 1ull << 40;
	assert_int_equal(sf_index_add(idx, &e, 0, &err), -EOVERFLOW);
	l.linkname = "../../etc/passwd";
	assert_int_equal(sf_index_add(idx, &l, 0, &err), -EPERM);
	assert_non_null(strstr(err.msg, "hard link target ../../etc/passwd escapes"));
	sf_index_free(idx);
	idx = sf_index_new();
	/* Regression (hostile.sh): a 10,000-deep path is refused with a message
	 * that still says why, the path being cut in the middle. */
	{
		static char deep[20002];
		for (int i = 0; i < 10000; i++)
			memcpy(deep + 2 * i, "d/", 2);
		deep[20000] = 'f';
		e = entry(deep, SF_TAR_REG);
		assert_int_equal(sf_index_add(idx, &e, 0, &err), -ENAMETOOLONG);
		assert_non_null(strstr(err.msg, "more than 4096 path components"));
		assert_non_null(strstr(err.msg, "d/d/.../d/d/"));
		assert_non_null(strstr(err.msg, "d/f: more than"));
	}
	sf_index_free(idx);
}

static void test_save_load_round_trip(void **state)
{
	struct sf_index *idx = sf_index_new(), *back = NULL;
	struct sf_error err = { 0 };
	struct sf_tar_xattr x = { .name = "user.k", .value = (unsigned char *)"v\0w", .len = 3 };
	struct sf_tar_entry f = entry("d/f", SF_TAR_REG);
	struct sf_tar_entry s = entry("d/s", SF_TAR_SYMLINK);
	struct sf_tar_entry c = entry("dev/null", SF_TAR_CHR);
	char path[] = "/tmp/sf-index-XXXXXX";
	int fd = mkstemp(path);
	struct stat a, b;
	const void *v;

	(void)state;
	assert_true(fd >= 0);
	f.size = 3;
	f.xattrs = &x;
	f.n_xattrs = 1;
	add_ok(idx, f, 4096);
	s.linkname = "/abs/target";
	add_ok(idx, s, 0);
	c.devmajor = 1;
	c.devminor = 3;
	add_ok(idx, c, 0);
	add_ok(idx, entry("d/sub/.wh..wh..opq", SF_TAR_REG), 0);
	for (int i = 0; i < 1000; i++) { /* enough to rehash */
		char name[32];
		snprintf(name, sizeof(name), "many/%d", i);
		add_ok(idx, entry(name, SF_TAR_REG), 0);
	}
	assert_int_equal(sf_index_save(idx, fd, &err), 0);
	assert_int_equal(sf_index_load(fd, &back, &err), 0);
	assert_int_equal(back->n_inodes, idx->n_inodes);
	assert_int_equal(back->n_dentries, idx->n_dentries);
	for (uint32_t i = 1; i < idx->n_inodes; i++) {
		sf_index_stat(idx, i, &a);
		sf_index_stat(back, i, &b);
		assert_memory_equal(&a, &b, sizeof(a));
	}
	assert_int_equal(resolve(back, "d/f"), resolve(idx, "d/f"));
	assert_int_equal(resolve(back, "many/999"), resolve(idx, "many/999"));
	assert_string_equal(back->inodes[resolve(back, "d/s")].target, "/abs/target");
	assert_int_equal(sf_index_getxattr(back, resolve(back, "d/f"), "user.k", "x", &v), 3);
	assert_memory_equal(v, "v\0w", 3);
	assert_true(back->inodes[resolve(back, "d/sub")].opaque);
	/* the child order survives */
	assert_string_equal(back->dentries[back->inodes[SF_INDEX_ROOT].first_child].name, "d");
	sf_index_free(back);

	/* every truncation of the file is refused, never crashes */
	struct stat fst;
	fstat(fd, &fst);
	for (off_t len = 0; len < fst.st_size; len += 1 + len / 7) {
		assert_int_equal(ftruncate(fd, len), 0);
		back = NULL;
		assert_true(sf_index_load(fd, &back, &err) < 0);
		assert_null(back);
		if (len == 0) { /* restore, then truncate progressively */
			lseek(fd, 0, SEEK_SET);
			assert_int_equal(sf_index_save(idx, fd, &err), 0);
		}
	}
	close(fd);
	unlink(path);
	sf_index_free(idx);
}

/* Files are placed one after the other, aligned, and never past the cap:
 * the sizes a data-less sparse entry may declare (2^63 - 1) used to wrap
 * the next offset back onto an earlier file's. */
static void test_data_placement(void **state)
{
	uint64_t end = 0, off = 1;

	(void)state;
	assert_int_equal(sf_index_place_data(&end, 0, &off), 0);
	assert_true(off == 0 && end == 0); /* an empty file takes no room */
	assert_int_equal(sf_index_place_data(&end, 1, &off), 0);
	assert_true(off == 0 && end == 1);
	assert_int_equal(sf_index_place_data(&end, 1, &off), 0);
	assert_true(off == SF_INDEX_DATA_ALIGN && end == SF_INDEX_DATA_ALIGN + 1);
	assert_int_equal(sf_index_place_data(&end, INT64_MAX, &off), -EFBIG);
	assert_true(end == SF_INDEX_DATA_ALIGN + 1); /* unchanged */
	assert_int_equal(sf_index_place_data(&end, UINT64_MAX, &off), -EFBIG);
	/* exactly up to the cap, then not a byte more */
	assert_int_equal(
		sf_index_place_data(&end, SF_INDEX_MAX_DATA_SIZE - 2 * SF_INDEX_DATA_ALIGN, &off),
		0);
	assert_true(off == 2 * SF_INDEX_DATA_ALIGN && end == SF_INDEX_MAX_DATA_SIZE);
	assert_int_equal(sf_index_place_data(&end, 1, &off), -EFBIG);
	end = UINT64_MAX; /* never produced, but must not wrap either */
	assert_int_equal(sf_index_place_data(&end, 1, &off), -EFBIG);
}

/* An extent past the cap is refused when added and when loaded from a
 * cache file (reads add offsets to data_off as an off_t). */
static void test_extent_past_cap_refused(void **state)
{
	struct sf_index *idx = sf_index_new(), *back = NULL;
	struct sf_error err = { 0 };
	struct sf_tar_entry f = entry("huge", SF_TAR_REG);
	char path[] = "/tmp/sf-index-XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	f.size = INT64_MAX;
	assert_int_equal(sf_index_add(idx, &f, 0, &err), -EFBIG);
	assert_non_null(strstr(err.msg, "tar entry huge: "));
	f.size = 10;
	assert_int_equal(sf_index_add(idx, &f, SF_INDEX_MAX_DATA_SIZE - 9, &err), -EFBIG);
	add_ok(idx, f, SF_INDEX_MAX_DATA_SIZE - 10);
	assert_int_equal(sf_index_save(idx, fd, &err), 0);
	assert_int_equal(sf_index_load(fd, &back, &err), 0); /* right at the cap: fine */
	sf_index_free(back);
	back = NULL;
	assert_int_equal(ftruncate(fd, 0), 0);
	lseek(fd, 0, SEEK_SET);
	/* a damaged (or forged) index file */
	idx->inodes[resolve(idx, "huge")].data_off = UINT64_MAX - 5;
	assert_int_equal(sf_index_save(idx, fd, &err), 0);
	assert_true(sf_index_load(fd, &back, &err) < 0);
	assert_null(back);
	close(fd);
	unlink(path);
	sf_index_free(idx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files_dirs_and_implicit_parents),
		cmocka_unit_test(test_whiteouts_and_opaque),
		cmocka_unit_test(test_hardlinks_share_inode),
		cmocka_unit_test(test_hardlink_header_applies_to_inode),
		cmocka_unit_test(test_later_entry_wins),
		cmocka_unit_test(test_hostile_paths_refused),
		cmocka_unit_test(test_save_load_round_trip),
		cmocka_unit_test(test_data_placement),
		cmocka_unit_test(test_extent_past_cap_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
