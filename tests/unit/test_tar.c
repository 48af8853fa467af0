/* test_tar.c - unit tests for the streaming tar reader (src/tar.c).
 *
 * Two kinds of input: archives built here block by block (precise cases,
 * malformed headers), and fixtures made by GNU tar and python's tarfile
 * (tests/fixtures/tar/make-fixtures.sh documents their contents).  Every
 * archive is parsed twice more with readers that return 1 and 13 bytes per
 * call, and the results must be identical.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tar.h"

#define BLK 512
#define MAX_GOT 64
#define MAX_DATA (1u << 20)
#define MTIME 1700000000

/* ---- building archives ---- */

struct ar {
	unsigned char *p;
	size_t len, cap;
};

static void ar_put(struct ar *a, const void *d, size_t n)
{
	if (a->len + n > a->cap) {
		a->cap = (a->len + n) * 2 + 1024;
		a->p = realloc(a->p, a->cap);
		assert_non_null(a->p);
	}
	if (n)
		memcpy(a->p + a->len, d, n);
	a->len += n;
}

static void ar_zero(struct ar *a, size_t n)
{
	static const unsigned char z[BLK];

	while (n) {
		size_t k = n < BLK ? n : BLK;
		ar_put(a, z, k);
		n -= k;
	}
}

static void ar_pad(struct ar *a)
{
	ar_zero(a, (BLK - a->len % BLK) % BLK);
}

static void ar_end(struct ar *a)
{
	ar_zero(a, 2 * BLK);
}

static void octal(unsigned char *f, size_t n, uint64_t v)
{
	char tmp[32];

	snprintf(tmp, sizeof(tmp), "%0*" PRIo64, (int)(n - 1), v);
	memcpy(f, tmp, n - 1);
	f[n - 1] = '\0';
}

/* A ustar header with defaults: 0644, 1000/1000, MTIME. */
static void hdr_init(unsigned char *h, const char *name, char type, uint64_t size)
{
	memset(h, 0, BLK);
	memcpy(h, name, strnlen(name, 100));
	octal(h + 100, 8, 0644);
	octal(h + 108, 8, 1000);
	octal(h + 116, 8, 1000);
	octal(h + 124, 12, size);
	octal(h + 136, 12, MTIME);
	h[156] = (unsigned char)type;
	memcpy(h + 257, "ustar", 6); /* with its NUL */
	memcpy(h + 263, "00", 2);
}

static void hdr_gnu_magic(unsigned char *h)
{
	memcpy(h + 257, "ustar  \0", 8);
}

static void hdr_checksum(unsigned char *h, bool is_signed)
{
	long sum = 0;
	char tmp[16];

	memset(h + 148, ' ', 8);
	for (int i = 0; i < BLK; i++)
		sum += is_signed ? (signed char)h[i] : h[i];
	snprintf(tmp, sizeof(tmp), "%06lo", sum);
	memcpy(h + 148, tmp, 6);
	h[154] = '\0';
	h[155] = ' ';
}

static void ar_hdr(struct ar *a, unsigned char *h)
{
	hdr_checksum(h, false);
	ar_put(a, h, BLK);
}

static void ar_entry(struct ar *a, const char *name, char type, const void *data, size_t n)
{
	unsigned char h[BLK];

	hdr_init(h, name, type, n);
	ar_hdr(a, h);
	ar_put(a, data, n);
	ar_pad(a);
}

/* "<len> key=value\n" with the right length. */
static void rec_add(struct ar *r, const char *key, const void *val, size_t vlen)
{
	size_t base = strlen(key) + vlen + 3, len = base + 1;
	char num[32];

	for (;;) {
		int d = snprintf(num, sizeof(num), "%zu", len);
		if (base + (size_t)d == len)
			break;
		len = base + (size_t)d;
	}
	ar_put(r, num, strlen(num));
	ar_put(r, " ", 1);
	ar_put(r, key, strlen(key));
	ar_put(r, "=", 1);
	ar_put(r, val, vlen);
	ar_put(r, "\n", 1);
}

static void rec_str(struct ar *r, const char *key, const char *val)
{
	rec_add(r, key, val, strlen(val));
}

static void ar_pax(struct ar *a, char type, struct ar *recs)
{
	ar_entry(a, "PaxHeaders/x", type, recs->p, recs->len);
	free(recs->p);
	*recs = (struct ar){ 0 };
}

/* ---- parsing archives ---- */

struct got_xattr {
	char *name;
	unsigned char *value;
	size_t len;
};

struct got_entry {
	char *path, *linkname;
	enum sf_tar_type type;
	uint32_t mode, devmajor, devminor, mtime_nsec;
	uint64_t uid, gid, size;
	int64_t mtime_sec;
	size_t n_xattrs;
	struct got_xattr *xattrs;
	unsigned char *data; /* size bytes, holes zero; NULL when too big */
	uint64_t data_bytes; /* bytes handed out by sf_tar_read_data */
	size_t pieces;
};

struct got {
	struct got_entry e[MAX_GOT];
	size_t n;
	int ret;
	char msg[SF_ERROR_MSG_MAX];
	size_t end_pos; /* reader position when parsing stopped */
};

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n && i < MAX_GOT; i++) {
		struct got_entry *e = &g->e[i];
		free(e->path);
		free(e->linkname);
		free(e->data);
		for (size_t k = 0; k < e->n_xattrs; k++) {
			free(e->xattrs[k].name);
			free(e->xattrs[k].value);
		}
		free(e->xattrs);
	}
	memset(g, 0, sizeof(*g));
}

static void copy_entry(struct got_entry *d, const struct sf_tar_entry *e)
{
	d->path = strdup(e->path);
	d->linkname = strdup(e->linkname);
	assert_non_null(d->path);
	assert_non_null(d->linkname);
	d->type = e->type;
	d->mode = e->mode;
	d->uid = e->uid;
	d->gid = e->gid;
	d->size = e->size;
	d->mtime_sec = e->mtime_sec;
	d->mtime_nsec = e->mtime_nsec;
	d->devmajor = e->devmajor;
	d->devminor = e->devminor;
	d->n_xattrs = e->n_xattrs;
	d->xattrs = calloc(e->n_xattrs + 1, sizeof(*d->xattrs));
	assert_non_null(d->xattrs);
	for (size_t k = 0; k < e->n_xattrs; k++) {
		d->xattrs[k].name = strdup(e->xattrs[k].name);
		d->xattrs[k].value = malloc(e->xattrs[k].len + 1);
		assert_non_null(d->xattrs[k].value);
		memcpy(d->xattrs[k].value, e->xattrs[k].value, e->xattrs[k].len);
		d->xattrs[k].len = e->xattrs[k].len;
	}
}

/* Read all data pieces: offsets must increase and stay inside size. */
static int read_all_data(struct sf_tar *t, struct got_entry *d, uint64_t size, struct sf_error *err)
{
	unsigned char buf[4096];
	uint64_t next_min = 0, off = 0;
	ssize_t n;

	if (size <= MAX_DATA) {
		d->data = calloc(1, (size_t)size + 1);
		assert_non_null(d->data);
	}
	while ((n = sf_tar_read_data(t, &off, buf, sizeof(buf), err)) > 0) {
		assert_true((size_t)n <= sizeof(buf));
		assert_true(off >= next_min);
		assert_true(off <= size && (uint64_t)n <= size - off);
		next_min = off + (uint64_t)n;
		if (d->data)
			memcpy(d->data + off, buf, (size_t)n);
		d->data_bytes += (uint64_t)n;
		d->pieces++;
	}
	return (int)n;
}

static void parse(const void *data, size_t len, size_t step, bool read_data, struct got *g)
{
	struct sf_mem_reader m;
	struct sf_reader r = sf_mem_reader_init(&m, data, len);
	struct sf_tar *t = NULL;
	struct sf_error err = { 0 };
	const struct sf_tar_entry *e;
	struct got_entry scratch;
	int ret;

	memset(g, 0, sizeof(*g));
	m.max_step = step;
	assert_int_equal(sf_tar_new(r, &t), 0);
	while ((ret = sf_tar_next(t, &e, &err)) == 1) {
		struct got_entry *d = g->n < MAX_GOT ? &g->e[g->n] : &scratch;
		memset(d, 0, sizeof(*d));
		if (e->type != SF_TAR_REG)
			assert_int_equal(e->size, 0);
		if (d != &scratch)
			copy_entry(d, e);
		g->n++;
		if (read_data) {
			ret = read_all_data(t, d, e->size, &err);
			if (d == &scratch)
				free(d->data);
			if (ret < 0)
				break;
			if (e->type != SF_TAR_REG)
				assert_int_equal(d->data_bytes, 0);
		}
	}
	g->ret = ret;
	g->end_pos = m.pos;
	if (ret < 0) {
		assert_true(err.msg[0] != '\0');
		assert_int_equal(err.code, -ret);
		memcpy(g->msg, err.msg, sizeof(g->msg));
		/* Sticky: the same error again. */
		memset(&err, 0, sizeof(err));
		assert_int_equal(sf_tar_next(t, &e, &err), ret);
		assert_string_equal(err.msg, g->msg);
	} else {
		/* After the end nothing more is read. */
		uint64_t off;
		char b[16];
		assert_int_equal(ret, 0);
		assert_int_equal(sf_tar_next(t, &e, &err), 0);
		assert_int_equal(sf_tar_read_data(t, &off, b, sizeof(b), &err), 0);
		assert_int_equal(m.pos, g->end_pos);
	}
	sf_tar_free(t);
}

static void assert_same(const struct got *a, const struct got *b)
{
	assert_int_equal(a->ret, b->ret);
	assert_string_equal(a->msg, b->msg);
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->end_pos, b->end_pos);
	for (size_t i = 0; i < a->n && i < MAX_GOT; i++) {
		const struct got_entry *x = &a->e[i], *y = &b->e[i];
		assert_string_equal(x->path, y->path);
		assert_string_equal(x->linkname, y->linkname);
		assert_int_equal(x->type, y->type);
		assert_int_equal(x->mode, y->mode);
		assert_int_equal(x->uid, y->uid);
		assert_int_equal(x->gid, y->gid);
		assert_int_equal(x->size, y->size);
		assert_int_equal(x->mtime_sec, y->mtime_sec);
		assert_int_equal(x->mtime_nsec, y->mtime_nsec);
		assert_int_equal(x->devmajor, y->devmajor);
		assert_int_equal(x->devminor, y->devminor);
		assert_int_equal(x->n_xattrs, y->n_xattrs);
		for (size_t k = 0; k < x->n_xattrs; k++) {
			assert_string_equal(x->xattrs[k].name, y->xattrs[k].name);
			assert_int_equal(x->xattrs[k].len, y->xattrs[k].len);
			assert_memory_equal(x->xattrs[k].value, y->xattrs[k].value,
					    x->xattrs[k].len);
		}
		assert_int_equal(x->data_bytes, y->data_bytes);
		assert_int_equal(x->data != NULL, y->data != NULL);
		if (x->data)
			assert_memory_equal(x->data, y->data, x->size);
	}
}

/* Parse with unlimited, 1-byte and 13-byte reads; all must agree. */
static void parse_all(const void *data, size_t len, struct got *g)
{
	static const size_t steps[] = { 1, 13 };
	struct got other;

	parse(data, len, 0, true, g);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		parse(data, len, steps[i], true, &other);
		assert_same(g, &other);
		got_free(&other);
	}
}

static void parse_ar(struct ar *a, struct got *g)
{
	parse_all(a->p, a->len, g);
	free(a->p);
	*a = (struct ar){ 0 };
}

static const struct got_entry *find(const struct got *g, const char *path)
{
	for (size_t i = 0; i < g->n && i < MAX_GOT; i++)
		if (strcmp(g->e[i].path, path) == 0)
			return &g->e[i];
	fail_msg("no entry %s", path);
	return NULL;
}

static const struct got_xattr *find_xattr(const struct got_entry *e, const char *name)
{
	for (size_t k = 0; k < e->n_xattrs; k++)
		if (strcmp(e->xattrs[k].name, name) == 0)
			return &e->xattrs[k];
	fail_msg("no xattr %s", name);
	return NULL;
}

static void assert_data(const struct got_entry *e, const char *want)
{
	size_t n = strlen(want);

	assert_int_equal(e->type, SF_TAR_REG);
	assert_int_equal(e->size, n);
	assert_int_equal(e->data_bytes, n);
	assert_non_null(e->data);
	assert_memory_equal(e->data, want, n);
}

static void assert_fails(struct got *g, const char *msg_part)
{
	assert_true(g->ret < 0);
	if (!strstr(g->msg, msg_part))
		fail_msg("message \"%s\" lacks \"%s\"", g->msg, msg_part);
}

static unsigned char *load_fixture(const char *name, size_t *len)
{
	const char *top = getenv("TOP_SRCDIR");
	char path[4096];
	unsigned char *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/tests/fixtures/tar/%s", top && *top ? top : ".", name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s (set TOP_SRCDIR)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void parse_fixture(const char *name, struct got *g)
{
	size_t len;
	unsigned char *buf = load_fixture(name, &len);

	parse_all(buf, len, g);
	free(buf);
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- fixtures from GNU tar ---- */

static void check_common(const struct got_entry *e, enum sf_tar_type type, uint32_t mode,
			 uint32_t nsec)
{
	assert_int_equal(e->type, type);
	assert_int_equal(e->mode, mode);
	assert_int_equal(e->uid, 1000);
	assert_int_equal(e->gid, 1000);
	assert_int_equal(e->mtime_sec, MTIME);
	assert_int_equal(e->mtime_nsec, nsec);
	assert_int_equal(e->n_xattrs, 0);
}

static void check_tree(const char *fixture, bool full, uint32_t nsec)
{
	struct got g;
	const struct got_entry *e;
	char *lng = repeat('n', 150), *target = repeat('t', 120), path[200];
	size_t len;

	parse_fixture(fixture, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, full ? 9 : 6);
	e = find(&g, "dir/");
	check_common(e, SF_TAR_DIR, 0755, nsec);
	assert_string_equal(e->linkname, "");
	e = find(&g, "dir/file.txt");
	check_common(e, SF_TAR_REG, 0644, nsec);
	assert_data(e, "hello, tar\n");
	e = find(&g, "dir/hard");
	check_common(e, SF_TAR_HARDLINK, 0644, nsec);
	assert_string_equal(e->linkname, "dir/file.txt");
	e = find(&g, "dir/link");
	check_common(e, SF_TAR_SYMLINK, 0777, nsec);
	assert_string_equal(e->linkname, "file.txt");
	e = find(&g, "dir/suid");
	check_common(e, SF_TAR_REG, 04755, nsec);
	assert_data(e, "#!/bin/sh\n");
	e = find(&g, "dir/empty");
	check_common(e, SF_TAR_REG, 0600, nsec);
	assert_data(e, "");
	if (full) {
		check_common(find(&g, "dir/fifo"), SF_TAR_FIFO, 0644, nsec);
		snprintf(path, sizeof(path), "dir/%s", lng);
		e = find(&g, path);
		check_common(e, SF_TAR_REG, 0644, nsec);
		assert_data(e, "long\n");
		e = find(&g, "dir/longlink");
		check_common(e, SF_TAR_SYMLINK, 0777, nsec);
		assert_string_equal(e->linkname, target);
	}
	/* GNU tar pads to a 10240-byte record: we stop after the end marker. */
	free(load_fixture(fixture, &len));
	assert_int_equal(len % 10240, 0);
	assert_true(g.end_pos + 2 * BLK <= len);
	assert_int_equal(g.end_pos % BLK, 0);
	got_free(&g);
	free(lng);
	free(target);
}

static void test_fixture_gnu(void **state)
{
	(void)state;
	check_tree("gnu.tar", true, 0);
}

static void test_fixture_oldgnu(void **state)
{
	(void)state;
	check_tree("oldgnu.tar", true, 0);
}

static void test_fixture_pax(void **state)
{
	(void)state;
	check_tree("pax.tar", true, 123456789);
}

static void test_fixture_v7(void **state)
{
	(void)state;
	check_tree("v7.tar", false, 0);
}

static void test_fixture_ustar_prefix(void **state)
{
	char *p = repeat('p', 60), *q = repeat('q', 60), path[200];
	unsigned char *raw;
	size_t len;
	struct got g;
	const struct got_entry *e;

	(void)state;
	raw = load_fixture("ustar.tar", &len);
	/* The file's header (third block) really uses the prefix field. */
	assert_memory_equal(raw + 2 * BLK + 345, p, 60);
	free(raw);
	parse_fixture("ustar.tar", &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 3);
	snprintf(path, sizeof(path), "%s/%s/file", p, q);
	e = find(&g, path);
	check_common(e, SF_TAR_REG, 0644, 0);
	assert_data(e, "prefix\n");
	snprintf(path, sizeof(path), "%s/%s/", p, q);
	check_common(find(&g, path), SF_TAR_DIR, 0755, 0);
	got_free(&g);
	free(p);
	free(q);
}

/* ---- sparse fixtures ---- */

struct range {
	uint64_t off, len;
};

static void sparse_expect(unsigned char *buf, uint64_t size, const struct range *r, size_t n)
{
	memset(buf, 0, size);
	for (size_t i = 0; i < n; i++)
		for (uint64_t o = r[i].off; o < r[i].off + r[i].len; o++)
			buf[o] = (unsigned char)((o * 7 + 3) % 251 + 1);
}

static void check_sparse_file(const struct got *g, const char *path, uint64_t size,
			      const struct range *r, size_t n)
{
	const struct got_entry *e = find(g, path);
	unsigned char *want = malloc(size);
	uint64_t stored = 0;

	assert_non_null(want);
	for (size_t i = 0; i < n; i++)
		stored += r[i].len;
	sparse_expect(want, size, r, n);
	check_common(e, SF_TAR_REG, 0644, 0);
	assert_int_equal(e->size, size);
	assert_non_null(e->data);
	assert_memory_equal(e->data, want, size);
	/* Only the data segments were handed out, not the holes. */
	assert_int_equal(e->data_bytes, stored);
	free(want);
}

static void check_sparse(const char *fixture)
{
	static const struct range sp1[] = { { 0, 4096 },     { 16384, 4096 },  { 40960, 4096 },
					    { 81920, 4096 }, { 122880, 4096 }, { 163840, 4096 } };
	static const struct range sp2[] = { { 20480, 4096 }, { 49152, 848 } };
	struct got g;

	parse_fixture(fixture, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	check_sparse_file(&g, "sp1", 200000, sp1, 6);
	check_sparse_file(&g, "sp2", 50000, sp2, 2);
	got_free(&g);
}

static void test_sparse_gnu(void **state)
{
	size_t len;
	unsigned char *raw = load_fixture("sparse-gnu.tar", &len);

	(void)state;
	/* Old GNU sparse with an extension block (sp1 has > 4 segments). */
	assert_int_equal(raw[156], 'S');
	assert_int_not_equal(raw[482], 0);
	free(raw);
	check_sparse("sparse-gnu.tar");
}

static void test_sparse_pax_00(void **state)
{
	(void)state;
	check_sparse("sparse-pax-0.0.tar");
}

static void test_sparse_pax_01(void **state)
{
	(void)state;
	check_sparse("sparse-pax-0.1.tar");
}

static void test_sparse_pax_10(void **state)
{
	(void)state;
	check_sparse("sparse-pax-1.0.tar");
}

/* ---- fixtures from python tarfile ---- */

static void test_fixture_py_pax(void **state)
{
	static const unsigned char cap[20] = { 1, 0, 0, 2, 0, 0x20 };
	char *d = repeat('d', 200), *s = repeat('s', 300), path[256];
	const struct got_entry *e;
	const struct got_xattr *x;
	struct got g;

	(void)state;
	parse_fixture("py-pax.tar", &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 10);
	check_common(find(&g, "x/"), SF_TAR_DIR, 0755, 0);
	e = find(&g, "x/cap");
	assert_data(e, "cap\n");
	assert_int_equal(e->n_xattrs, 2);
	x = find_xattr(e, "user.comment");
	assert_int_equal(x->len, 5);
	assert_memory_equal(x->value, "hello", 5);
	x = find_xattr(e, "security.capability");
	assert_int_equal(x->len, sizeof(cap));
	assert_memory_equal(x->value, cap, sizeof(cap));
	e = find(&g, "x/big");
	assert_int_equal(e->uid, 3000000);
	assert_int_equal(e->gid, 4000000);
	assert_int_equal(e->mtime_sec, MTIME);
	assert_int_equal(e->mtime_nsec, 250000000);
	assert_data(e, "big\n");
	e = find(&g, "x/old");
	assert_int_equal(e->mtime_sec, -2);
	assert_int_equal(e->mtime_nsec, 500000000);
	snprintf(path, sizeof(path), "x/%s", d);
	assert_data(find(&g, path), "deep\n");
	e = find(&g, "x/sym");
	check_common(e, SF_TAR_SYMLINK, 0777, 0);
	assert_string_equal(e->linkname, s);
	e = find(&g, "x/chr");
	check_common(e, SF_TAR_CHR, 0666, 0);
	assert_int_equal(e->devmajor, 1);
	assert_int_equal(e->devminor, 3);
	e = find(&g, "x/blk");
	check_common(e, SF_TAR_BLK, 0660, 0);
	assert_int_equal(e->devmajor, 8);
	assert_int_equal(e->devminor, 0);
	check_common(find(&g, "x/fifo"), SF_TAR_FIFO, 0644, 0);
	assert_data(find(&g, "x/h\xc3\xa9llo"), "utf8\n");
	got_free(&g);
	free(d);
	free(s);
}

static void test_fixture_py_gnu(void **state)
{
	char *l = repeat('l', 120), *k = repeat('k', 110), path[200];
	const struct got_entry *e;
	unsigned char *raw;
	size_t len;
	struct got g;

	(void)state;
	raw = load_fixture("py-gnu.tar", &len);
	/* g/big (second header) has base-256 uid and negative mtime. */
	assert_int_equal(raw[BLK + 108], 0x80);
	assert_int_equal(raw[BLK + 136], 0xff);
	free(raw);
	parse_fixture("py-gnu.tar", &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 5);
	e = find(&g, "g/big");
	assert_int_equal(e->uid, 3000000);
	assert_int_equal(e->gid, 4000000);
	assert_int_equal(e->mtime_sec, -100);
	assert_data(e, "big\n");
	snprintf(path, sizeof(path), "g/%s", l);
	assert_data(find(&g, path), "L\n");
	e = find(&g, "g/hl");
	assert_int_equal(e->type, SF_TAR_HARDLINK);
	assert_string_equal(e->linkname, "g/big");
	e = find(&g, "g/sym");
	assert_int_equal(e->type, SF_TAR_SYMLINK);
	assert_string_equal(e->linkname, k);
	got_free(&g);
	free(l);
	free(k);
}

/* ---- built archives: types and fields ---- */

static void test_all_types(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;
	const struct got_entry *e;

	(void)state;
	ar_entry(&a, "reg0", '0', "zero", 4);
	ar_entry(&a, "regnul", '\0', "nul", 3);
	ar_entry(&a, "contig", '7', "seven", 5);
	ar_entry(&a, "unknown", 'Z', "zed", 3);
	hdr_init(h, "hard", '1', 0);
	memcpy(h + 157, "reg0", 4);
	ar_hdr(&a, h);
	hdr_init(h, "sym", '2', 0);
	memcpy(h + 157, "../target", 9);
	octal(h + 100, 8, 0777);
	ar_hdr(&a, h);
	hdr_init(h, "chr", '3', 0);
	octal(h + 329, 8, 4);
	octal(h + 337, 8, 5);
	ar_hdr(&a, h);
	hdr_init(h, "blk", '4', 0);
	octal(h + 329, 8, 259);
	octal(h + 337, 8, 65536);
	ar_hdr(&a, h);
	hdr_init(h, "dir/", '5', 0);
	octal(h + 100, 8, 040755); /* type bits are masked off */
	ar_hdr(&a, h);
	ar_entry(&a, "fifo", '6', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 10);
	assert_data(find(&g, "reg0"), "zero");
	assert_data(find(&g, "regnul"), "nul");
	assert_data(find(&g, "contig"), "seven");
	assert_data(find(&g, "unknown"), "zed");
	e = find(&g, "hard");
	check_common(e, SF_TAR_HARDLINK, 0644, 0);
	assert_string_equal(e->linkname, "reg0");
	e = find(&g, "sym");
	check_common(e, SF_TAR_SYMLINK, 0777, 0);
	assert_string_equal(e->linkname, "../target");
	e = find(&g, "chr");
	assert_int_equal(e->type, SF_TAR_CHR);
	assert_int_equal(e->devmajor, 4);
	assert_int_equal(e->devminor, 5);
	assert_string_equal(e->linkname, "");
	e = find(&g, "blk");
	assert_int_equal(e->type, SF_TAR_BLK);
	assert_int_equal(e->devmajor, 259);
	assert_int_equal(e->devminor, 65536);
	check_common(find(&g, "dir/"), SF_TAR_DIR, 0755, 0);
	check_common(find(&g, "fifo"), SF_TAR_FIFO, 0644, 0);
	got_free(&g);
}

static void test_prefix_only_in_ustar(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;

	(void)state;
	hdr_init(h, "name", '0', 0);
	memcpy(h + 345, "some/prefix", 11);
	ar_hdr(&a, h);
	/* In a GNU header the prefix area holds atime/ctime, not a prefix. */
	hdr_init(h, "gnuname", '0', 0);
	hdr_gnu_magic(h);
	memcpy(h + 345, "00000000001", 11);
	ar_hdr(&a, h);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.e[0].path, "some/prefix/name");
	assert_string_equal(g.e[1].path, "gnuname");
	got_free(&g);
}

static void test_v7_dirs_and_fields(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;

	(void)state;
	/* v7: no magic, "regular" entries whose name ends in '/' are dirs;
	 * the devmajor area is not read. */
	hdr_init(h, "old/", '\0', 0);
	memset(h + 257, 0, 8);
	octal(h + 100, 8, 0755);
	memcpy(h + 329, "garbage!", 8);
	ar_hdr(&a, h);
	hdr_init(h, "old2/", '0', 7);
	memset(h + 257, 0, 8);
	ar_hdr(&a, h);
	ar_put(&a, "ignored", 7);
	ar_pad(&a);
	hdr_init(h, "old/f", '\0', 2);
	memset(h + 257, 0, 8);
	memcpy(h + 108, "   1750 ", 8); /* leading spaces, space terminated */
	ar_hdr(&a, h);
	ar_put(&a, "hi", 2);
	ar_pad(&a);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 3);
	check_common(&g.e[0], SF_TAR_DIR, 0755, 0);
	assert_string_equal(g.e[0].path, "old/");
	assert_int_equal(g.e[1].type, SF_TAR_DIR);
	assert_int_equal(g.e[1].size, 0);
	assert_string_equal(g.e[2].path, "old/f");
	assert_int_equal(g.e[2].uid, 01750);
	assert_data(&g.e[2], "hi");
	got_free(&g);
}

static void test_base256(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;

	(void)state;
	hdr_init(h, "b256", '0', 0);
	memset(h + 108, 0, 8);
	h[108] = 0x80;
	h[112] = 0x01; /* 0x01000000 << 0 over 7 bytes: 2^24 */
	memset(h + 116, 0, 8);
	h[116] = 0x80;
	h[123] = 0x2a;
	memset(h + 136, 0xff, 12); /* -1 */
	h[147] = 0xfe;             /* -2 */
	memset(h + 124, 0, 12);
	h[124] = 0x80;
	h[135] = 3;
	ar_hdr(&a, h);
	ar_put(&a, "abc", 3);
	ar_pad(&a);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.e[0].uid, 1u << 24);
	assert_int_equal(g.e[0].gid, 42);
	assert_int_equal(g.e[0].mtime_sec, -2);
	assert_data(&g.e[0], "abc");
	got_free(&g);
}

static void one_bad_header(void (*mutate)(unsigned char *h), const char *msg)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;

	hdr_init(h, "usr/bin/foo", '0', 0);
	mutate(h);
	ar_hdr(&a, h);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(g.msg, msg);
	assert_int_equal(g.n, 0);
	got_free(&g);
}

static void neg_size(unsigned char *h)
{
	memset(h + 124, 0xff, 12);
}

static void neg_uid(unsigned char *h)
{
	memset(h + 108, 0xff, 8);
}

static void huge_size(unsigned char *h)
{
	memset(h + 124, 0, 12);
	h[124] = 0x80;
	h[127] = 0x01; /* 2^64: does not fit */
}

static void bad_octal(unsigned char *h)
{
	memcpy(h + 100, "06x4\0\0\0\0", 8);
}

static void embedded_space(unsigned char *h)
{
	memcpy(h + 136, "1234 567\0\0\0\0", 12);
}

static void octal_eight(unsigned char *h)
{
	memcpy(h + 108, "0000718\0", 8);
}

static void big_dev(unsigned char *h)
{
	h[156] = '3';
	memset(h + 329, 0, 8);
	h[329] = 0x80;
	h[332] = 0x01; /* 2^32 */
}

static void test_bad_numbers(void **state)
{
	(void)state;
	one_bad_header(neg_size, "tar entry usr/bin/foo: negative size field");
	one_bad_header(neg_uid, "tar entry usr/bin/foo: negative uid field");
	one_bad_header(huge_size, "tar entry usr/bin/foo: size field out of range");
	one_bad_header(bad_octal, "tar entry usr/bin/foo: invalid mode field");
	one_bad_header(embedded_space, "tar entry usr/bin/foo: invalid mtime field");
	one_bad_header(octal_eight, "tar entry usr/bin/foo: invalid uid field");
	one_bad_header(big_dev, "tar entry usr/bin/foo: device number out of range");
}

static void test_checksums(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;

	(void)state;
	/* High-bit bytes make the signed and unsigned sums differ. */
	hdr_init(h, "caf\xc3\xa9-signed", '0', 0);
	hdr_checksum(h, true);
	ar_put(&a, h, BLK);
	hdr_init(h, "caf\xc3\xa9-unsigned", '0', 0);
	hdr_checksum(h, false);
	ar_put(&a, h, BLK);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.e[0].path, "caf\xc3\xa9-signed");
	got_free(&g);

	ar_entry(&a, "good", '0', "x", 1);
	hdr_init(h, "bad", '0', 0);
	hdr_checksum(h, false);
	h[0] = 'B';
	ar_put(&a, h, BLK);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(g.msg,
			    "tar archive offset 1024 (after entry good): bad header checksum");
	got_free(&g);
}

/* ---- end of archive and truncation ---- */

static void test_end_variants(void **state)
{
	struct ar a = { 0 };
	struct got g;

	(void)state;
	/* No end blocks at all. */
	ar_entry(&a, "f", '0', "data", 4);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 1);
	assert_data(&g.e[0], "data");
	got_free(&g);

	/* One zero block, then the end of the stream. */
	ar_entry(&a, "f", '0', "data", 4);
	ar_zero(&a, BLK);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.end_pos, 3 * BLK);
	got_free(&g);

	/* One zero block, then a short run of zeros. */
	ar_entry(&a, "f", '0', "data", 4);
	ar_zero(&a, BLK + 100);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.end_pos, 3 * BLK + 100);
	got_free(&g);

	/* One zero block, then a short non-zero block. */
	ar_entry(&a, "f", '0', "data", 4);
	ar_zero(&a, BLK);
	ar_put(&a, "junk", 4);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_int_equal(g.n, 1);
	assert_string_equal(
		g.msg,
		"tar archive offset 1536 (after entry f): zero block followed by a non-zero block");
	got_free(&g);

	/* Empty stream. */
	parse_all("", 0, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 0);
	got_free(&g);

	/* A zero block followed by a header. */
	ar_zero(&a, BLK);
	ar_entry(&a, "hidden", '0', "x", 1);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_int_equal(g.n, 0);
	assert_string_equal(g.msg,
			    "tar archive offset 512: zero block followed by a non-zero block");
	got_free(&g);
}

static void test_stops_after_end(void **state)
{
	struct ar a = { 0 };
	struct got g;

	(void)state;
	ar_entry(&a, "f", '0', "data", 4);
	ar_end(&a);
	ar_put(&a, "trailing garbage, left for the caller to drain", 46);
	ar_zero(&a, 4096);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 1);
	/* parse() checked that further calls read nothing more. */
	assert_int_equal(g.end_pos, 4 * BLK);
	got_free(&g);
}

static void test_truncated(void **state)
{
	struct ar a = { 0 };
	unsigned char big[1000];
	struct got g;

	(void)state;
	memset(big, 'x', sizeof(big));
	/* Inside the data. */
	ar_entry(&a, "usr/lib/big", '0', big, sizeof(big));
	a.len = BLK + 600;
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.msg, "truncated tar archive in entry usr/lib/big");
	assert_int_equal(g.e[0].data_bytes, 600);
	got_free(&g);

	/* Inside the padding, skipped by sf_tar_next. */
	ar_entry(&a, "usr/lib/big", '0', big, sizeof(big));
	a.len = BLK + 1010;
	parse(a.p, a.len, 0, false, &g);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(g.msg, "truncated tar archive in entry usr/lib/big");
	got_free(&g);
	free(a.p);
	a = (struct ar){ 0 };

	/* Inside a header. */
	ar_entry(&a, "a", '0', "1", 1);
	ar_entry(&a, "b", '0', "2", 1);
	a.len = 3 * BLK - 100;
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.msg, "truncated tar archive at offset 1436 (after entry a)");
	got_free(&g);
}

static void test_truncated_after_extension(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	struct got g;

	(void)state;
	rec_str(&r, "path", "the/real/name");
	ar_pax(&a, 'x', &r);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(g.msg, "truncated tar archive in entry PaxHeaders/x");
	got_free(&g);

	ar_entry(&a, "././@LongLink", 'L', "long/name", 10);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(g.msg,
			    "tar entry ././@LongLink: extended header not followed by an entry");
	got_free(&g);
}

/* ---- PAX ---- */

static void test_pax_overrides(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	unsigned char h[BLK];
	struct got g;
	char *lp = repeat('P', 5000);

	(void)state;
	rec_str(&r, "path", lp);
	rec_str(&r, "uid", "4294967296");
	rec_str(&r, "gid", "77");
	rec_str(&r, "mtime", "1700000000.5");
	rec_str(&r, "size", "5");
	rec_str(&r, "uname", "ignored");
	rec_str(&r, "atime", "1.5");
	rec_str(&r, "some.vendor.key", "whatever");
	ar_pax(&a, 'x', &r);
	hdr_init(h, "short", '0', 0); /* the header says 0 bytes */
	ar_hdr(&a, h);
	ar_put(&a, "12345", 5);
	ar_pad(&a);
	rec_str(&r, "linkpath", "/pax/target");
	rec_str(&r, "path", ""); /* empty: use the header's name */
	ar_pax(&a, 'x', &r);
	hdr_init(h, "sym", '2', 0);
	memcpy(h + 157, "header-target", 13);
	ar_hdr(&a, h);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.e[0].path, lp);
	assert_int_equal(g.e[0].uid, 4294967296ull);
	assert_int_equal(g.e[0].gid, 77);
	assert_int_equal(g.e[0].mtime_sec, MTIME);
	assert_int_equal(g.e[0].mtime_nsec, 500000000);
	assert_data(&g.e[0], "12345");
	assert_string_equal(g.e[1].path, "sym");
	assert_string_equal(g.e[1].linkname, "/pax/target");
	assert_int_equal(g.e[1].mtime_sec, MTIME);
	got_free(&g);
	free(lp);
}

static void pax_mtime_case(const char *val, int64_t sec, uint32_t nsec)
{
	struct ar a = { 0 }, r = { 0 };
	struct got g;

	rec_str(&r, "mtime", val);
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "t", '0', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.e[0].mtime_sec, sec);
	assert_int_equal(g.e[0].mtime_nsec, nsec);
	got_free(&g);
}

static void pax_bad_case(const char *key, const char *val, const char *msg)
{
	struct ar a = { 0 }, r = { 0 };
	struct got g;

	rec_str(&r, key, val);
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "usr/bin/foo", '0', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.n, 0);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(g.msg, msg);
	got_free(&g);
}

static void test_pax_mtime(void **state)
{
	(void)state;
	pax_mtime_case("5", 5, 0);
	pax_mtime_case("-3", -3, 0);
	pax_mtime_case("-1.5", -2, 500000000);
	pax_mtime_case("-0.25", -1, 750000000);
	pax_mtime_case("12.000000001", 12, 1);
	pax_mtime_case("1.1234567899", 1, 123456789);
	pax_mtime_case("7.", 7, 0);
	pax_mtime_case("9223372036854775807", INT64_MAX, 0);
	pax_bad_case("mtime", "1.x", "tar entry usr/bin/foo: invalid PAX mtime '1.x'");
	pax_bad_case("mtime", "99999999999999999999",
		     "tar entry usr/bin/foo: invalid PAX mtime '99999999999999999999'");
	pax_bad_case("mtime", "-", "tar entry usr/bin/foo: invalid PAX mtime '-'");
	pax_bad_case("uid", "-1", "tar entry usr/bin/foo: invalid PAX uid '-1'");
	pax_bad_case("size", "12a", "tar entry usr/bin/foo: invalid PAX size '12a'");
	pax_bad_case("gid", "1\n2", "tar entry usr/bin/foo: invalid PAX gid '1?2'");
}

static void pax_raw_case(const char *body, const char *msg)
{
	struct ar a = { 0 };
	struct got g;

	ar_entry(&a, "PaxHeaders/foo", 'x', body, strlen(body));
	ar_entry(&a, "usr/bin/foo", '0', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_int_equal(g.n, 0);
	assert_string_equal(g.msg, msg);
	got_free(&g);
}

static void test_pax_framing(void **state)
{
	(void)state;
	pax_raw_case("99999999 path=foo\n",
		     "tar entry usr/bin/foo: PAX record length 99999999 exceeds limit");
	pax_raw_case("50 path=foo\n",
		     "tar entry usr/bin/foo: PAX record length 50 exceeds header size");
	pax_raw_case("11 path=foo\n", /* should be 12 */
		     "tar entry usr/bin/foo: PAX record length 11 does not match its record");
	pax_raw_case("13 path=foo\nX",
		     "tar entry usr/bin/foo: PAX record length 13 does not match its record");
	pax_raw_case("x path=foo\n", "tar entry usr/bin/foo: malformed PAX record length");
	pax_raw_case("11 pathfoo\n", "tar entry usr/bin/foo: malformed PAX record key");
	pax_raw_case("7 =foo\n", "tar entry usr/bin/foo: malformed PAX record key");
	pax_raw_case("3 \n",
		     "tar entry usr/bin/foo: PAX record length 3 does not match its record");
	pax_raw_case("12 path=foo\ngarbage", "tar entry usr/bin/foo: malformed PAX record length");
	/* A bad record after a good path record names the PAX path. */
	pax_raw_case("17 path=pax/name\n8 uid=x\n", "tar entry pax/name: invalid PAX uid 'x'");
}

static void test_pax_trailing_nuls_and_merge(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	struct got g;

	(void)state;
	/* Two consecutive 'x' headers merge; trailing NULs are not records. */
	rec_str(&r, "path", "first");
	rec_str(&r, "uid", "5");
	ar_put(&r, "\0\0\0", 3);
	ar_pax(&a, 'x', &r);
	rec_str(&r, "path", "second");
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "hdr", '0', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.e[0].path, "second");
	assert_int_equal(g.e[0].uid, 5);
	got_free(&g);
}

static void test_pax_limits(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	unsigned char h[BLK];
	struct got g;
	char *p;

	(void)state;
	/* A header size over the limit fails before its body is read. */
	hdr_init(h, "PaxHeaders/foo", 'x', 9u << 20);
	ar_hdr(&a, h);
	ar_zero(&a, 4 * BLK);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(
		g.msg, "tar entry PaxHeaders/foo: PAX header size 9437184 exceeds limit 8388608");
	assert_int_equal(g.end_pos, BLK);
	got_free(&g);

	/* A path over SF_TAR_MAX_PATH. */
	p = repeat('a', SF_TAR_MAX_PATH + 1);
	rec_str(&r, "path", p);
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "usr/bin/foo", '0', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_non_null(strstr(g.msg, ": PAX path longer than 65536 bytes"));
	assert_true(strlen(g.msg) < 600); /* the name is shortened */
	got_free(&g);
	free(p);

	/* NUL inside a path. */
	rec_add(&r, "path", "a\0b", 3);
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "usr/bin/foo", '0', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_fails(&g, "NUL byte in PAX path");
	got_free(&g);
}

static void test_pax_global_ignored(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	struct got g;

	(void)state;
	rec_str(&r, "path", "evil");
	rec_str(&r, "uid", "0");
	rec_str(&r, "comment", "git commit id");
	ar_pax(&a, 'g', &r);
	ar_entry(&a, "f", '0', "ok", 2);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.e[0].path, "f");
	assert_int_equal(g.e[0].uid, 1000);
	assert_data(&g.e[0], "ok");
	got_free(&g);
}

static void test_precedence(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	unsigned char h[BLK];
	struct got g;

	(void)state;
	/* PAX > GNU L/K > header. */
	ar_entry(&a, "././@LongLink", 'L', "gnu/long/name", 14);
	ar_entry(&a, "././@LongLink", 'K', "gnu/long/link", 14);
	rec_str(&r, "path", "pax/name");
	ar_pax(&a, 'x', &r);
	hdr_init(h, "hdr/name", '2', 0);
	memcpy(h + 157, "hdr/link", 8);
	ar_hdr(&a, h);
	/* GNU L/K > header. */
	ar_entry(&a, "././@LongLink", 'L', "gnu/second", 11);
	ar_entry(&a, "././@LongLink", 'K', "gnu/target", 11);
	ar_hdr(&a, h);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.e[0].path, "pax/name");
	assert_string_equal(g.e[0].linkname, "gnu/long/link");
	assert_string_equal(g.e[1].path, "gnu/second");
	assert_string_equal(g.e[1].linkname, "gnu/target");
	got_free(&g);
}

static void test_gnu_long_limits(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;
	char *p;

	(void)state;
	hdr_init(h, "././@LongLink", 'L', SF_TAR_MAX_PATH + 2);
	ar_hdr(&a, h);
	ar_zero(&a, 8 * BLK);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, -EIO);
	assert_string_equal(
		g.msg, "tar entry ././@LongLink: GNU long name size 65538 exceeds limit 65537");
	assert_int_equal(g.end_pos, BLK);
	got_free(&g);

	/* The body may be SF_TAR_MAX_PATH + 1 with a NUL, but not longer. */
	p = repeat('q', SF_TAR_MAX_PATH + 1);
	ar_entry(&a, "././@LongLink", 'K', p, SF_TAR_MAX_PATH + 1);
	ar_entry(&a, "l", '2', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_string_equal(g.msg,
			    "tar entry ././@LongLink: GNU long link name longer than 65536 bytes");
	got_free(&g);
	p[SF_TAR_MAX_PATH] = '\0';
	ar_entry(&a, "././@LongLink", 'K', p, SF_TAR_MAX_PATH + 1);
	ar_entry(&a, "l", '2', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(strlen(g.e[0].linkname), SF_TAR_MAX_PATH);
	got_free(&g);
	free(p);
}

/* ---- xattrs ---- */

static void test_xattrs(void **state)
{
	static const unsigned char bin[] = { 0, 1, 0xff, 0, '=', '\n' };
	struct ar a = { 0 }, r = { 0 };
	const struct got_xattr *x;
	struct got g;

	(void)state;
	rec_add(&r, "SCHILY.xattr.security.capability", bin, sizeof(bin));
	rec_str(&r, "SCHILY.xattr.user.empty", "");
	rec_str(&r, "SCHILY.xattr.user.dup", "first");
	rec_str(&r, "SCHILY.xattr.user.dup", "second");
	/* "user.a b=c" url-encoded, value "hello!" in base64 without padding */
	rec_str(&r, "LIBARCHIVE.xattr.user.a%20b%3Dc", "aGVsbG8h");
	rec_str(&r, "LIBARCHIVE.xattr.user.pad", "aGk=");
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "f", '0', NULL, 0);
	ar_entry(&a, "nox", '0', NULL, 0);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.e[0].n_xattrs, 5);
	x = find_xattr(&g.e[0], "security.capability");
	assert_int_equal(x->len, sizeof(bin));
	assert_memory_equal(x->value, bin, sizeof(bin));
	assert_int_equal(find_xattr(&g.e[0], "user.empty")->len, 0);
	x = find_xattr(&g.e[0], "user.dup");
	assert_int_equal(x->len, 6);
	assert_memory_equal(x->value, "second", 6);
	x = find_xattr(&g.e[0], "user.a b=c");
	assert_int_equal(x->len, 6);
	assert_memory_equal(x->value, "hello!", 6);
	x = find_xattr(&g.e[0], "user.pad");
	assert_int_equal(x->len, 2);
	assert_memory_equal(x->value, "hi", 2);
	/* xattrs belong to one entry only. */
	assert_int_equal(g.e[1].n_xattrs, 0);
	got_free(&g);
}

static void test_xattr_limits(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	struct got g;
	char *v = repeat('v', SF_TAR_MAX_XATTR_VALUE + 1), key[64];

	(void)state;
	rec_str(&r, "SCHILY.xattr.user.big", v);
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "f", '0', NULL, 0);
	parse_ar(&a, &g);
	assert_string_equal(g.msg,
			    "tar entry f: xattr user.big value of 65537 bytes exceeds limit 65536");
	got_free(&g);
	free(v);

	for (int i = 0; i <= SF_TAR_MAX_XATTRS; i++) {
		snprintf(key, sizeof(key), "SCHILY.xattr.user.%d", i);
		rec_str(&r, key, "v");
	}
	ar_pax(&a, 'x', &r);
	ar_entry(&a, "f", '0', NULL, 0);
	parse_ar(&a, &g);
	assert_string_equal(g.msg, "tar entry f: more than 1024 xattrs");
	got_free(&g);

	pax_bad_case("SCHILY.xattr.", "x", "tar entry usr/bin/foo: invalid xattr name");
	pax_bad_case("LIBARCHIVE.xattr.user.x", "a",
		     "tar entry usr/bin/foo: malformed LIBARCHIVE.xattr value");
	pax_bad_case("LIBARCHIVE.xattr.user.x",
		     "a*==", "tar entry usr/bin/foo: malformed LIBARCHIVE.xattr value");
	pax_bad_case("LIBARCHIVE.xattr.user%4", "aGk",
		     "tar entry usr/bin/foo: malformed LIBARCHIVE.xattr name");
	pax_bad_case("LIBARCHIVE.xattr.user%00", "aGk",
		     "tar entry usr/bin/foo: invalid xattr name");
}

/* ---- hard links and bodies of non-regular entries ---- */

static void test_hardlink_size_rules(void **state)
{
	struct ar a = { 0 }, r = { 0 };
	unsigned char h[BLK];
	struct got g;

	(void)state;
	/* ustar, size 5 but a valid header follows: no body. */
	hdr_init(h, "hl1", '1', 5);
	memcpy(h + 157, "target", 6);
	ar_hdr(&a, h);
	ar_entry(&a, "after1", '0', "a1", 2);
	/* ustar, size 5 and a body that is not a header: skipped. */
	ar_hdr(&a, h);
	ar_put(&a, "BODY!", 5);
	ar_pad(&a);
	ar_entry(&a, "after2", '0', "a2", 2);
	/* GNU: the size is always ignored. */
	hdr_init(h, "hl3", '1', 700);
	hdr_gnu_magic(h);
	ar_hdr(&a, h);
	ar_entry(&a, "after3", '0', "a3", 2);
	/* PAX: the size is obeyed, even when a header-like body follows. */
	rec_str(&r, "path", "hl4");
	ar_pax(&a, 'x', &r);
	hdr_init(h, "hl4", '1', BLK);
	ar_hdr(&a, h);
	hdr_init(h, "fake", '0', 0);
	ar_hdr(&a, h);
	ar_entry(&a, "after4", '0', "a4", 2);
	/* ustar, size 5 at the end of the archive. */
	hdr_init(h, "hl5", '1', 5);
	ar_hdr(&a, h);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 9);
	for (size_t i = 0; i < 9; i += 2) {
		assert_int_equal(g.e[i].type, SF_TAR_HARDLINK);
		assert_int_equal(g.e[i].size, 0);
		assert_int_equal(g.e[i].data_bytes, 0);
	}
	assert_string_equal(g.e[0].linkname, "target");
	assert_data(&g.e[1], "a1");
	assert_data(&g.e[3], "a2");
	assert_data(&g.e[5], "a3");
	assert_data(&g.e[7], "a4");
	assert_string_equal(g.e[8].path, "hl5");
	got_free(&g);
}

static void test_bodies_of_other_types(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK];
	struct got g;

	(void)state;
	/* Directories (and GNU dump directories) have their body skipped. */
	ar_entry(&a, "d", '5', "dir body", 8);
	ar_entry(&a, "dump", 'D', "Yfile\0\0", 7);
	/* Symlinks, devices and FIFOs never have a body. */
	hdr_init(h, "s", '2', 100);
	memcpy(h + 157, "t", 1);
	ar_hdr(&a, h);
	hdr_init(h, "c", '3', 100);
	ar_hdr(&a, h);
	hdr_init(h, "p", '6', 100);
	ar_hdr(&a, h);
	ar_entry(&a, "last", '0', "end", 3);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 6);
	assert_int_equal(g.e[0].type, SF_TAR_DIR);
	assert_int_equal(g.e[1].type, SF_TAR_DIR);
	assert_int_equal(g.e[2].type, SF_TAR_SYMLINK);
	assert_int_equal(g.e[3].type, SF_TAR_CHR);
	assert_int_equal(g.e[4].type, SF_TAR_FIFO);
	assert_data(&g.e[5], "end");
	got_free(&g);
}

static void test_skipped_types(void **state)
{
	struct ar a = { 0 };
	struct got g;

	(void)state;
	ar_entry(&a, "label", 'V', NULL, 0);
	ar_entry(&a, "cont", 'M', "continued data", 14);
	ar_entry(&a, "names", 'N', "old long names", 14);
	ar_entry(&a, "f", '0', "x", 1);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 1);
	assert_data(&g.e[0], "x");
	got_free(&g);
}

/* ---- reading data ---- */

static void test_partial_reads_and_skips(void **state)
{
	struct ar a = { 0 };
	struct sf_mem_reader m;
	struct sf_tar *t;
	const struct sf_tar_entry *e;
	struct sf_error err = { 0 };
	unsigned char data[1500], buf[64];
	uint64_t off = 99, want = 0;
	ssize_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 13);
	ar_entry(&a, "one", '0', data, sizeof(data));
	ar_entry(&a, "two", '0', data, 700);
	ar_entry(&a, "three", '0', "3", 1);
	ar_end(&a);
	assert_int_equal(sf_tar_new(sf_mem_reader_init(&m, a.p, a.len), &t), 0);
	assert_int_equal(sf_tar_next(t, &e, &err), 1);
	assert_string_equal(e->path, "one");
	assert_int_equal(e->size, sizeof(data));
	/* Small reads return consecutive offsets. */
	for (int i = 0; i < 5; i++) {
		n = sf_tar_read_data(t, &off, buf, 7, &err);
		assert_int_equal(n, 7);
		assert_int_equal(off, want);
		assert_memory_equal(buf, data + want, 7);
		want += 7;
	}
	/* A zero-length read is not the end. */
	assert_int_equal(sf_tar_read_data(t, &off, buf, 0, &err), 0);
	assert_int_equal(sf_tar_read_data(t, &off, buf, 7, &err), 7);
	assert_int_equal(off, want);
	/* Skip the rest of "one" and all of "two". */
	assert_int_equal(sf_tar_next(t, &e, &err), 1);
	assert_string_equal(e->path, "two");
	assert_int_equal(sf_tar_next(t, &e, &err), 1);
	assert_string_equal(e->path, "three");
	assert_int_equal(sf_tar_read_data(t, &off, buf, sizeof(buf), &err), 1);
	assert_int_equal(off, 0);
	assert_int_equal(buf[0], '3');
	assert_int_equal(sf_tar_read_data(t, &off, buf, sizeof(buf), &err), 0);
	assert_int_equal(sf_tar_read_data(t, &off, buf, sizeof(buf), &err), 0);
	assert_int_equal(sf_tar_next(t, &e, &err), 0);
	assert_int_equal(m.pos, a.len);
	sf_tar_free(t);
	free(a.p);
	sf_tar_free(NULL);
}

/* Zeros, or the bytes of `data`, then a failure after `left` bytes. */
struct failing_reader {
	size_t left;
	const unsigned char *data;
};

static ssize_t failing_read(void *ctx, void *buf, size_t len, struct sf_error *err)
{
	struct failing_reader *f = ctx;

	if (f->left == 0)
		return sf_fail(err, EPROTO, "gzip: corrupt stream");
	if (len > f->left)
		len = f->left;
	if (f->data) {
		memcpy(buf, f->data, len);
		f->data += len;
	} else {
		memset(buf, 0, len);
	}
	f->left -= len;
	return (ssize_t)len;
}

/* A source failing at `at` bytes into archive a: the first error. */
static sf_ret fail_at(const struct ar *a, size_t at, struct sf_error *err)
{
	struct failing_reader f = { at, a->p };
	struct sf_reader r = { .read = failing_read, .ctx = &f };
	const struct sf_tar_entry *e;
	struct sf_tar *t;
	unsigned char b[64];
	uint64_t off;
	ssize_t n;
	int more;

	assert_int_equal(sf_tar_new(r, &t), 0);
	while ((more = sf_tar_next(t, &e, err)) == 1) {
		while ((n = sf_tar_read_data(t, &off, b, sizeof(b), err)) > 0)
			;
		if (n < 0) {
			more = (int)n;
			break;
		}
	}
	sf_tar_free(t);
	return more;
}

/* The source's message says what failed, the tar reader's prefix where:
 * the entry whose data (or headers) it was reading, else the offset and
 * the entry before. */
static void test_source_errors_name_the_entry(void **state)
{
	struct ar a = { 0 };
	unsigned char big[1000];
	struct sf_error err = { 0 };

	(void)state;
	memset(big, 'x', sizeof(big));
	ar_entry(&a, "usr/bin/x", '0', big, sizeof(big));
	ar_entry(&a, "usr/bin/y", '0', "y", 1);
	ar_end(&a);
	assert_int_equal(fail_at(&a, BLK + 100, &err), -EPROTO);
	assert_string_equal(err.msg, "tar entry usr/bin/x: gzip: corrupt stream");
	assert_int_equal(fail_at(&a, 3 * BLK + 10, &err), -EPROTO);
	assert_string_equal(
		err.msg, "tar archive offset 1546 (after entry usr/bin/x): gzip: corrupt stream");
	free(a.p);
}

static void test_source_errors(void **state)
{
	struct failing_reader f = { 10, NULL };
	struct sf_reader r = { .read = failing_read, .ctx = &f };
	struct sf_tar *t;
	const struct sf_tar_entry *e;
	struct sf_error err = { 0 };
	uint64_t off;
	char b[4];

	(void)state;
	assert_int_equal(sf_tar_new(r, &t), 0);
	assert_int_equal(sf_tar_next(t, &e, &err), -EPROTO);
	assert_string_equal(err.msg, "gzip: corrupt stream");
	memset(&err, 0, sizeof(err));
	assert_int_equal(sf_tar_read_data(t, &off, b, sizeof(b), &err), -EPROTO);
	assert_string_equal(err.msg, "gzip: corrupt stream");
	assert_int_equal(sf_tar_next(t, &e, NULL), -EPROTO);
	sf_tar_free(t);
}

/* ---- sparse, built here ---- */

static void build_sparse01(struct ar *a, const char *map, const char *realsize, const char *data)
{
	struct ar r = { 0 };
	unsigned char h[BLK];
	size_t n = strlen(data);

	if (realsize)
		rec_str(&r, "GNU.sparse.size", realsize);
	rec_str(&r, "GNU.sparse.map", map);
	rec_str(&r, "path", "usr/share/sparse");
	ar_pax(a, 'x', &r);
	hdr_init(h, "GNUSparseFile.0/sparse", '0', n);
	ar_hdr(a, h);
	ar_put(a, data, n);
	ar_pad(a);
	ar_end(a);
}

static void sparse01_case(const char *map, const char *realsize, const char *data, const char *msg)
{
	struct ar a = { 0 };
	struct got g;

	build_sparse01(&a, map, realsize, data);
	parse_ar(&a, &g);
	if (msg) {
		assert_int_equal(g.n, 0);
		assert_string_equal(g.msg, msg);
	} else {
		assert_int_equal(g.ret, 0);
	}
	got_free(&g);
}

static void test_sparse_built(void **state)
{
	struct ar a = { 0 };
	struct got g;
	const struct got_entry *e;

	(void)state;
	build_sparse01(&a, "2,3,10,0,20,4", "30", "abcdefg");
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	e = &g.e[0];
	assert_string_equal(e->path, "usr/share/sparse");
	assert_int_equal(e->size, 30);
	assert_int_equal(e->data_bytes, 7);
	{
		unsigned char want[30] = { 0 };
		memcpy(want + 2, "abc", 3);
		memcpy(want + 20, "defg", 4);
		assert_memory_equal(e->data, want, 30);
	}
	got_free(&g);

	sparse01_case("", "0", "", NULL);
	sparse01_case(
		"0,5,3,2", "10", "abcdefg",
		"tar entry usr/share/sparse: sparse segment at 3 overlaps or is out of order");
	sparse01_case(
		"5,2,0,5", "10", "abcdefg",
		"tar entry usr/share/sparse: sparse segment at 0 overlaps or is out of order");
	sparse01_case("0,5,8,3", "10", "abcdefgh",
		      "tar entry usr/share/sparse: sparse segment 8+3 beyond real size 10");
	sparse01_case("0,5,18446744073709551615,3", "10", "abcdefgh",
		      "tar entry usr/share/sparse: malformed GNU.sparse.map");
	sparse01_case("0,5,6,1", "10", "abcdefg",
		      "tar entry usr/share/sparse: sparse map covers 6 bytes but 7 are stored");
	sparse01_case("0,5,6", "10", "abcde",
		      "tar entry usr/share/sparse: GNU.sparse.map has an odd number of values");
	sparse01_case("0,5,", "10", "abcde",
		      "tar entry usr/share/sparse: malformed GNU.sparse.map");
	sparse01_case("0,5", NULL, "abcde",
		      "tar entry usr/share/sparse: GNU sparse entry without a real size");
}

static void sparse_pax_case(const char *recs[], size_t nrecs, const char *data, size_t n,
			    const char *msg)
{
	struct ar a = { 0 }, r = { 0 };
	unsigned char h[BLK];
	struct got g;

	for (size_t i = 0; i + 1 < nrecs; i += 2)
		rec_str(&r, recs[i], recs[i + 1]);
	ar_pax(&a, 'x', &r);
	hdr_init(h, "sp", '0', n);
	ar_hdr(&a, h);
	ar_put(&a, data, n);
	ar_pad(&a);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.n, 0);
	assert_int_equal(g.ret != 0, 1);
	assert_string_equal(g.msg, msg);
	got_free(&g);
}

static void test_sparse_pax_errors(void **state)
{
	const char *unpaired[] = { "GNU.sparse.size", "9", "GNU.sparse.offset", "1" };
	const char *twice[] = { "GNU.sparse.size",   "9", "GNU.sparse.offset", "1",
				"GNU.sparse.offset", "2" };
	const char *count[] = { "GNU.sparse.size",   "9", "GNU.sparse.numblocks", "2",
				"GNU.sparse.offset", "1", "GNU.sparse.numbytes",  "2" };
	const char *v2[] = { "GNU.sparse.major",    "2", "GNU.sparse.minor", "0",
			     "GNU.sparse.realsize", "9" };
	const char *mixed[] = { "GNU.sparse.major",    "1", "GNU.sparse.minor", "0",
				"GNU.sparse.realsize", "9", "GNU.sparse.map",   "0,1" };

	(void)state;
	sparse_pax_case(unpaired, 4, "x", 1,
			"tar entry sp: GNU.sparse.offset without GNU.sparse.numbytes");
	sparse_pax_case(twice, 6, "x", 1,
			"tar entry sp: GNU.sparse.offset and GNU.sparse.numbytes do not alternate");
	sparse_pax_case(count, 8, "xy", 2,
			"tar entry sp: GNU.sparse.numblocks is 2 but the map has 1");
	sparse_pax_case(v2, 6, "", 0, "tar entry sp: unsupported GNU sparse format 2.0");
	sparse_pax_case(mixed, 8, "x", 1, "tar entry sp: GNU sparse 1.0 entry also has a 0.x map");
}

static void build_sparse10(struct ar *a, const char *map, const char *data, const char *realsize)
{
	struct ar r = { 0 };
	unsigned char h[BLK];
	size_t mlen = strlen(map), mblocks = (mlen + BLK - 1) / BLK * BLK, n = strlen(data);

	rec_str(&r, "GNU.sparse.major", "1");
	rec_str(&r, "GNU.sparse.minor", "0");
	rec_str(&r, "GNU.sparse.name", "opt/sparse10");
	rec_str(&r, "GNU.sparse.realsize", realsize);
	ar_pax(a, 'x', &r);
	hdr_init(h, "GNUSparseFile.0/sparse10", '0', mblocks + n);
	ar_hdr(a, h);
	ar_put(a, map, mlen);
	ar_pad(a);
	ar_put(a, data, n);
	ar_pad(a);
	ar_entry(a, "after", '0', "ok", 2);
	ar_end(a);
}

static void test_sparse10_built(void **state)
{
	struct ar a = { 0 };
	struct got g;
	char map[2048];
	size_t len = 0;

	(void)state;
	build_sparse10(&a, "2\n1\n2\n6\n3\n", "abcde", "9");
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.e[0].path, "opt/sparse10");
	assert_int_equal(g.e[0].size, 9);
	assert_memory_equal(g.e[0].data, "\0ab\0\0\0cde", 9);
	assert_data(&g.e[1], "ok");
	got_free(&g);

	/* A map spanning several blocks. */
	len += (size_t)snprintf(map, sizeof(map), "200\n");
	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(map + len, sizeof(map) - len, "%d\n%d\n", 2 * i, 1);
	assert_true(len > 2 * BLK);
	{
		char data[201];
		memset(data, 'z', 200);
		data[200] = '\0';
		build_sparse10(&a, map, data, "400");
	}
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.e[0].size, 400);
	assert_int_equal(g.e[0].data_bytes, 200);
	assert_int_equal(g.e[0].data[398], 'z');
	assert_int_equal(g.e[0].data[399], 0);
	got_free(&g);

	build_sparse10(&a, "2\n1\n2\nx\n", "ab", "9");
	parse_ar(&a, &g);
	assert_string_equal(g.msg, "tar entry opt/sparse10: malformed GNU sparse map");
	got_free(&g);
	build_sparse10(&a, "2\n1\n\n", "ab", "9");
	parse_ar(&a, &g);
	assert_string_equal(g.msg, "tar entry opt/sparse10: malformed GNU sparse map");
	got_free(&g);
	build_sparse10(&a, "99999999\n", "", "9");
	parse_ar(&a, &g);
	assert_string_equal(
		g.msg,
		"tar entry opt/sparse10: GNU sparse map has 99999999 segments, limit 1048576");
	got_free(&g);
	build_sparse10(&a, "99999999999999999999\n", "", "9");
	parse_ar(&a, &g);
	assert_string_equal(g.msg, "tar entry opt/sparse10: number in GNU sparse map out of range");
	got_free(&g);
	/* The map does not end within the entry's data. */
	len = (size_t)snprintf(map, sizeof(map), "1000\n");
	for (int i = 0; i < 253; i++)
		len += (size_t)snprintf(map + len, sizeof(map) - len, "1\n");
	len += (size_t)snprintf(map + len, sizeof(map) - len, "1");
	assert_int_equal(len, BLK);
	build_sparse10(&a, map, "", "9");
	parse_ar(&a, &g);
	assert_string_equal(g.msg,
			    "tar entry opt/sparse10: GNU sparse map larger than the entry's data");
	got_free(&g);
}

/* Old GNU 'S' header built by hand, with an extension block. */
static void test_old_gnu_sparse_built(void **state)
{
	struct ar a = { 0 };
	unsigned char h[BLK], ext[BLK];
	struct got g;
	char data[7];

	(void)state;
	hdr_init(h, "oldsparse", 'S', 7);
	hdr_gnu_magic(h);
	for (int i = 0; i < 4; i++) {
		octal(h + 386 + 24 * i, 12, (uint64_t)(10 * i));
		octal(h + 386 + 24 * i + 12, 12, 1);
	}
	h[482] = 1;
	octal(h + 483, 12, 100);
	memset(ext, 0, sizeof(ext));
	for (int i = 0; i < 3; i++) {
		octal(ext + 24 * i, 12, (uint64_t)(40 + 10 * i));
		octal(ext + 24 * i + 12, 12, 1);
	}
	ar_hdr(&a, h);
	ar_put(&a, ext, BLK);
	ar_put(&a, "0123456", 7);
	ar_pad(&a);
	ar_entry(&a, "after", '0', "ok", 2);
	ar_end(&a);
	parse_ar(&a, &g);
	assert_int_equal(g.ret, 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.e[0].size, 100);
	assert_int_equal(g.e[0].data_bytes, 7);
	for (int i = 0; i < 7; i++)
		data[i] = (char)g.e[0].data[10 * i];
	assert_memory_equal(data, "0123456", 7);
	assert_int_equal(g.e[0].data[5], 0);
	assert_data(&g.e[1], "ok");
	got_free(&g);

	/* The extension block is missing. */
	ar_hdr(&a, h);
	parse_ar(&a, &g);
	assert_string_equal(g.msg, "truncated tar archive in entry oldsparse");
	got_free(&g);
}

/* ---- robustness ---- */

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* Flip bytes of orig (within its first hot bytes) and parse the result. */
static void mutate_and_parse(const unsigned char *orig, size_t len, size_t hot, int rounds)
{
	unsigned char *buf = malloc(len);
	static const unsigned char interesting[] = { 0,    0xff, 0x80, '0', '7', '9', ' ',
						     '\n', '=',  ',',  'x', 'L', 'S' };

	assert_non_null(buf);
	for (int i = 0; i < rounds; i++) {
		struct got g1, g2;
		size_t n = len, flips = 1 + rnd() % 8;
		memcpy(buf, orig, len);
		for (size_t k = 0; k < flips; k++) {
			size_t at = rnd() % (hot < len ? hot : len);
			if (rnd() % 2)
				buf[at] = interesting[rnd() % sizeof(interesting)];
			else
				buf[at] ^= (unsigned char)(1u << (rnd() % 8));
		}
		if (rnd() % 4 == 0)
			n = rnd() % len;
		/* Whatever happens, no crash, and chunking does not matter. */
		parse(buf, n, 0, true, &g1);
		parse(buf, n, 1 + rnd() % 700, true, &g2);
		assert_same(&g1, &g2);
		got_free(&g1);
		got_free(&g2);
	}
	free(buf);
}

static void test_mutations(void **state)
{
	static const char *fixtures[] = { "gnu.tar",
					  "pax.tar",
					  "py-pax.tar",
					  "py-gnu.tar",
					  "sparse-gnu.tar",
					  "sparse-pax-0.0.tar",
					  "sparse-pax-0.1.tar",
					  "sparse-pax-1.0.tar",
					  "v7.tar" };
	struct ar a = { 0 };
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		unsigned char *raw = load_fixture(fixtures[i], &len);
		/* Mutate mostly the first blocks, where the headers are. */
		mutate_and_parse(raw, len, 6 * BLK, 150);
		free(raw);
	}
	build_sparse10(&a, "2\n1\n2\n6\n3\n", "abcde", "9");
	mutate_and_parse(a.p, a.len, a.len, 300);
	free(a.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_gnu),
		cmocka_unit_test(test_fixture_oldgnu),
		cmocka_unit_test(test_fixture_pax),
		cmocka_unit_test(test_fixture_v7),
		cmocka_unit_test(test_fixture_ustar_prefix),
		cmocka_unit_test(test_fixture_py_pax),
		cmocka_unit_test(test_fixture_py_gnu),
		cmocka_unit_test(test_sparse_gnu),
		cmocka_unit_test(test_sparse_pax_00),
		cmocka_unit_test(test_sparse_pax_01),
		cmocka_unit_test(test_sparse_pax_10),
		cmocka_unit_test(test_all_types),
		cmocka_unit_test(test_prefix_only_in_ustar),
		cmocka_unit_test(test_v7_dirs_and_fields),
		cmocka_unit_test(test_base256),
		cmocka_unit_test(test_bad_numbers),
		cmocka_unit_test(test_checksums),
		cmocka_unit_test(test_end_variants),
		cmocka_unit_test(test_stops_after_end),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_source_errors_name_the_entry),
		cmocka_unit_test(test_truncated_after_extension),
		cmocka_unit_test(test_pax_overrides),
		cmocka_unit_test(test_pax_mtime),
		cmocka_unit_test(test_pax_framing),
		cmocka_unit_test(test_pax_trailing_nuls_and_merge),
		cmocka_unit_test(test_pax_limits),
		cmocka_unit_test(test_pax_global_ignored),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_gnu_long_limits),
		cmocka_unit_test(test_xattrs),
		cmocka_unit_test(test_xattr_limits),
		cmocka_unit_test(test_hardlink_size_rules),
		cmocka_unit_test(test_bodies_of_other_types),
		cmocka_unit_test(test_skipped_types),
		cmocka_unit_test(test_partial_reads_and_skips),
		cmocka_unit_test(test_source_errors),
		cmocka_unit_test(test_sparse_built),
		cmocka_unit_test(test_sparse_pax_errors),
		cmocka_unit_test(test_sparse10_built),
		cmocka_unit_test(test_old_gnu_sparse_built),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
