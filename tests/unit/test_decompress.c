/* test_decompress.c - gzip/zstd/none decompressor and media-type mapping.
 *
 * Inputs are generated here with zlib (gzip via deflateInit2(16+MAX_WBITS))
 * and libzstd, so the expected output is always known exactly.  Runs the
 * same way against the ISA-L and the zlib gzip backend.
 */
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
#include <errno.h>
#include <zlib.h>
#include <zstd.h>

#include "decompress.h"
#include "error.h"
#include "reader.h"

/* ---- growable byte buffer ---- */

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	b->p = realloc(b->p, cap);
	assert_non_null(b->p);
	b->cap = cap;
}

static void buf_add(struct buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (len)
		memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void buf_add_byte(struct buf *b, unsigned char c, size_t count)
{
	buf_reserve(b, count);
	memset(b->p + b->len, c, count);
	b->len += count;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- deterministic data ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void add_random(struct buf *b, size_t len)
{
	buf_reserve(b, len);
	for (size_t i = 0; i < len; i++)
		b->p[b->len + i] = (unsigned char)(rng() >> 56);
	b->len += len;
}

/* A mix of incompressible, text-like, zero runs and long-distance repeats,
 * so deflate emits stored, fixed and dynamic blocks and far back-references. */
static void make_mixed(struct buf *b, size_t target)
{
	static const char text[] = "usr/lib/x86_64-linux-gnu/libfoo.so.1 -> libfoo.so.1.2.3\n";

	while (b->len < target) {
		size_t seg = 1 + (size_t)(rng() % 70000);
		switch (rng() % 4) {
		case 0:
			add_random(b, seg);
			break;
		case 1:
			for (size_t i = 0; i < seg; i++)
				buf_add_byte(b, (unsigned char)text[(i + b->len) % (sizeof(text) - 1)], 1);
			break;
		case 2:
			buf_add_byte(b, 0, seg);
			break;
		default:
			if (b->len > seg) {
				size_t from = (size_t)(rng() % (b->len - seg));
				buf_reserve(b, seg);
				memmove(b->p + b->len, b->p + from, seg);
				b->len += seg;
			}
			break;
		}
	}
	b->len = target;
}

/* ---- compressors ---- */

enum gz_hdr_kind { HDR_PLAIN, HDR_FANCY };

/* One gzip member of data[0..len) appended to out. */
static void gz_member(struct buf *out, const void *data, size_t len, int level,
		      enum gz_hdr_kind kind)
{
	z_stream z;
	gz_header h;
	static unsigned char extra[] = "sf\x04\x00" "abcd-extra-field";
	int ret;

	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
			 Z_OK);
	if (kind == HDR_FANCY) {
		memset(&h, 0, sizeof(h));
		h.text = 1;
		h.time = 1700000000;
		h.os = 3;
		h.extra = extra;
		h.extra_len = sizeof(extra) - 1;
		h.name = (Bytef *)"layer.tar";
		h.comment = (Bytef *)"made by test_decompress";
		h.hcrc = 1;
		assert_int_equal(deflateSetHeader(&z, &h), Z_OK);
	}
	buf_reserve(out, deflateBound(&z, len) + 256);
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	z.next_out = out->p + out->len;
	z.avail_out = (uInt)(out->cap - out->len);
	ret = deflate(&z, Z_FINISH);
	assert_int_equal(ret, Z_STREAM_END);
	out->len += z.total_out;
	deflateEnd(&z);
}

static void zstd_frame(struct buf *out, const void *data, size_t len, int level, int checksum)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t n;

	assert_non_null(c);
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)));
	assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum)));
	buf_reserve(out, ZSTD_compressBound(len));
	n = ZSTD_compress2(c, out->p + out->len, out->cap - out->len, data, len);
	assert_false(ZSTD_isError(n));
	out->len += n;
	ZSTD_freeCCtx(c);
}

static void put_le32(struct buf *b, uint32_t v)
{
	unsigned char le[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
				(unsigned char)(v >> 24) };
	buf_add(b, le, 4);
}

static void zstd_skippable(struct buf *out, unsigned variant, const void *payload, size_t len)
{
	put_le32(out, 0x184D2A50u + (variant & 0xf));
	put_le32(out, (uint32_t)len);
	buf_add(out, payload, len);
}

/* ---- running a decompressor to the end ---- */

struct result {
	ssize_t ret; /* 0 = clean end of stream, else the -errno */
	struct buf out;
	struct sf_error err;
};

/* The second run of every test: the source lends its bytes (the spool's way,
 * reader.h) instead of copying them.  Each loan is a fresh heap copy of
 * exactly the lent bytes, freed at the next call, so under ASan a decoder
 * that reads past a loan or keeps using it after the next call fails. */
static bool lend_input;

struct lender {
	struct sf_mem_reader *m;
	void *loan;
};

static ssize_t lender_borrow(void *ctx, const void **data, size_t max, struct sf_error *err)
{
	struct lender *l = ctx;
	size_t len = l->m->len - l->m->pos;

	(void)err;
	free(l->loan);
	l->loan = NULL;
	if (len > max)
		len = max;
	if (l->m->max_step && len > l->m->max_step)
		len = l->m->max_step;
	if (len == 0)
		return 0;
	l->loan = malloc(len);
	assert_non_null(l->loan);
	memcpy(l->loan, l->m->data + l->m->pos, len);
	l->m->pos += len;
	*data = l->loan;
	return (ssize_t)len;
}

/* A lender copies too, when asked to (the decompressor's short remainder). */
static ssize_t lender_read(void *ctx, void *buf, size_t len, struct sf_error *err)
{
	struct lender *l = ctx;
	const void *data;
	ssize_t n = lender_borrow(l, &data, len, err);

	if (n > 0)
		memcpy(buf, data, (size_t)n);
	return n;
}

/* Decompress everything with the source giving at most `step` bytes per call
 * (0 = unlimited) and the caller asking for `chunk` bytes per read, straight
 * into the result buffer.  Also checks that end of stream and errors are
 * sticky. */
static struct result run_opts(enum sf_compression c, const void *in, size_t inlen, size_t step,
			      size_t chunk)
{
	struct sf_mem_reader m;
	struct sf_reader src = sf_mem_reader_init(&m, in, inlen);
	struct lender lender = { .m = &m };
	struct sf_decompressor *d = NULL;
	struct result r;
	ssize_t n;

	memset(&r, 0, sizeof(r));
	m.max_step = step;
	if (lend_input)
		src = (struct sf_reader){ .read = lender_read, .ctx = &lender,
					  .borrow = lender_borrow };
	assert_int_equal(sf_decompressor_new(c, src, &d, &r.err), 0);
	for (;;) {
		buf_reserve(&r.out, chunk);
		n = sf_decompressor_read(d, r.out.p + r.out.len, chunk, &r.err);
		if (n <= 0)
			break;
		assert_true((size_t)n <= chunk);
		r.out.len += (size_t)n;
		assert_true(r.out.len < ((size_t)256 << 20)); /* runaway guard */
	}
	r.ret = n;
	if (n == 0) {
		/* EOF is sticky and the whole input was consumed. */
		char one;
		assert_int_equal(sf_decompressor_read(d, &one, 1, &r.err), 0);
		assert_int_equal(m.pos, inlen);
	} else {
		/* so is an error, with the same message */
		struct sf_error again;
		char one;
		memset(&again, 0, sizeof(again));
		assert_int_equal(sf_decompressor_read(d, &one, 1, &again), n);
		assert_string_equal(again.msg, r.err.msg);
		assert_int_equal(again.code, -n);
	}
	sf_decompressor_free(d);
	free(lender.loan);
	return r;
}

static struct result run(enum sf_compression c, const struct buf *in)
{
	return run_opts(c, in->p, in->len, 0, 64 * 1024);
}

static void expect_ok(struct result *r, const void *want, size_t want_len)
{
	if (r->ret != 0)
		fail_msg("unexpected error %zd: %s", r->ret, r->err.msg);
	assert_int_equal(r->out.len, want_len);
	if (want_len)
		assert_memory_equal(r->out.p, want, want_len);
	buf_free(&r->out);
}

static void expect_err(struct result *r, int code, const char *msg_part)
{
	if (r->ret == 0)
		fail_msg("expected error \"%s\", got success with %zu bytes", msg_part, r->out.len);
	assert_int_equal(r->ret, -code);
	if (!strstr(r->err.msg, msg_part))
		fail_msg("error \"%s\" does not contain \"%s\"", r->err.msg, msg_part);
	assert_int_equal(r->err.code, code);
	assert_null(strchr(r->err.msg, '\n'));
	buf_free(&r->out);
}

/* ---- media types ---- */

static void test_media_types(void **state)
{
	static const struct {
		const char *mt;
		enum sf_compression c;
	} ok[] = {
		{ "application/vnd.oci.image.layer.v1.tar", SF_COMP_NONE },
		{ "application/vnd.oci.image.layer.v1.tar+gzip", SF_COMP_GZIP },
		{ "application/vnd.oci.image.layer.v1.tar+zstd", SF_COMP_ZSTD },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar", SF_COMP_NONE },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", SF_COMP_GZIP },
		{ "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", SF_COMP_ZSTD },
		{ "application/vnd.docker.image.rootfs.diff.tar.gzip", SF_COMP_GZIP },
		{ "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", SF_COMP_GZIP },
		{ "application/vnd.docker.image.rootfs.diff.tar", SF_COMP_NONE },
	};
	static const char *bad[] = {
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.oci.image.layer.v1.tar+bzip2",
		"application/vnd.oci.image.layer.v1.tar+gzip ",
		"APPLICATION/VND.OCI.IMAGE.LAYER.V1.TAR+GZIP",
		"application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
		"application/vnd.docker.image.rootfs.diff.tar.gzi",
		"application/vnd.oci.image.config.v1+json",
		"application/octet-stream",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		enum sf_compression c = (enum sf_compression)99;
		struct sf_error err = { 0 };
		assert_int_equal(sf_compression_from_media_type(ok[i].mt, &c, &err), 0);
		assert_int_equal(c, ok[i].c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum sf_compression c = (enum sf_compression)99;
		struct sf_error err = { 0 };
		char want[512];
		assert_int_equal(sf_compression_from_media_type(bad[i], &c, &err), -EINVAL);
		assert_int_equal(c, 99); /* untouched */
		snprintf(want, sizeof(want), "unsupported layer media type %s", bad[i]);
		assert_string_equal(err.msg, want);
		assert_int_equal(err.code, EINVAL);
	}
	{
		enum sf_compression c;
		struct sf_error err = { 0 };
		assert_int_equal(sf_compression_from_media_type("", &c, &err), -EINVAL);
		assert_int_equal(sf_compression_from_media_type(NULL, &c, &err), -EINVAL);
		assert_int_equal(sf_compression_from_media_type("nope", &c, NULL), -EINVAL);
	}
	assert_string_equal(sf_compression_name(SF_COMP_NONE), "none");
	assert_string_equal(sf_compression_name(SF_COMP_GZIP), "gzip");
	assert_string_equal(sf_compression_name(SF_COMP_ZSTD), "zstd");
	assert_int_equal(SF_COMP_GZIP, 2);
	assert_int_equal(SF_COMP_ZSTD, 4);
}

static void test_new_rejects_unknown(void **state)
{
	struct sf_mem_reader m;
	struct sf_reader src = sf_mem_reader_init(&m, "", 0);
	struct sf_decompressor *d = NULL;
	struct sf_error err = { 0 };
	(void)state;

	assert_int_equal(sf_decompressor_new((enum sf_compression)3, src, &d, &err), -EINVAL);
	assert_null(d);
	assert_non_null(strstr(err.msg, "unknown compression"));
	sf_decompressor_free(NULL);
}

/* ---- none ---- */

static void test_none_passthrough(void **state)
{
	struct buf data = { 0 };
	struct result r;
	(void)state;

	make_mixed(&data, 300000);
	r = run(SF_COMP_NONE, &data);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_NONE, data.p, 5000, 1, 1);
	expect_ok(&r, data.p, 5000);
	r = run_opts(SF_COMP_NONE, data.p, data.len, 777, 4096);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_NONE, "", 0, 0, 100); /* an empty tar stream is not our call */
	expect_ok(&r, "", 0);
	buf_free(&data);
}

/* ---- gzip ---- */

static void test_gzip_single_member(void **state)
{
	static const char text[] = "hello, layer\n";
	struct buf gz = { 0 };
	struct result r;
	(void)state;

	gz_member(&gz, text, strlen(text), 6, HDR_PLAIN);
	r = run(SF_COMP_GZIP, &gz);
	expect_ok(&r, text, strlen(text));
	r = run_opts(SF_COMP_GZIP, gz.p, gz.len, 1, 1);
	expect_ok(&r, text, strlen(text));
	buf_free(&gz);
}

static void test_gzip_empty_content_member(void **state)
{
	struct buf gz = { 0 };
	struct result r;
	(void)state;

	gz_member(&gz, "", 0, 6, HDR_PLAIN); /* `gzip </dev/null`: valid, 0 bytes out */
	r = run(SF_COMP_GZIP, &gz);
	expect_ok(&r, "", 0);
	buf_free(&gz);
}

static void test_gzip_empty_input(void **state)
{
	struct result r;
	(void)state;

	r = run_opts(SF_COMP_GZIP, "", 0, 0, 100);
	expect_err(&r, EIO, "empty gzip stream");
}

static void test_gzip_not_gzip(void **state)
{
	static const char tar_start[] = "etc/passwd\0\0\0\0\0\0\0\0\0\0";
	struct result r;
	(void)state;

	r = run_opts(SF_COMP_GZIP, tar_start, sizeof(tar_start), 0, 100);
	expect_err(&r, EIO, "not a gzip stream");
	r = run_opts(SF_COMP_GZIP, "\0\0\0\0", 4, 0, 100); /* zero "padding" with no member */
	expect_err(&r, EIO, "not a gzip stream");
	r = run_opts(SF_COMP_GZIP, "\x1f", 1, 0, 100);
	expect_err(&r, EIO, "truncated gzip stream");
	/* right magic, wrong method byte */
	r = run_opts(SF_COMP_GZIP, "\x1f\x8b\x07\x00\x00\x00\x00\x00\x00\x03xxxxxxxxxx", 20, 0, 100);
	expect_err(&r, EIO, "invalid gzip header");
}

static void test_gzip_three_members(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	size_t cut1 = 10000, cut2 = 10000; /* second member is empty */
	struct result r;
	(void)state;

	make_mixed(&data, 50000);
	gz_member(&gz, data.p, cut1, 6, HDR_PLAIN);
	gz_member(&gz, data.p + cut1, cut2 - cut1, 9, HDR_FANCY);
	gz_member(&gz, data.p + cut2, data.len - cut2, 1, HDR_PLAIN);

	r = run(SF_COMP_GZIP, &gz);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_GZIP, gz.p, gz.len, 1, 1);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_GZIP, gz.p, gz.len, 13, 1000);
	expect_ok(&r, data.p, data.len);
	buf_free(&data);
	buf_free(&gz);
}

/* ISA-L 2.30's built-in header parsing (crc_flag=ISAL_GZIP) breaks when a
 * header with optional fields is split across calls; every split must work. */
static void test_gzip_fancy_header_every_split(void **state)
{
	static const char text[] = "fancy header member: extra, name, comment, header crc";
	struct buf gz = { 0 };
	struct result r;
	(void)state;

	gz_member(&gz, text, strlen(text), 6, HDR_FANCY);
	gz_member(&gz, text, strlen(text), 0, HDR_FANCY); /* stored block */
	for (size_t step = 0; step <= 64; step++) {
		r = run_opts(SF_COMP_GZIP, gz.p, gz.len, step, step % 3 == 0 ? 1 : 4096);
		if (r.ret)
			fail_msg("step %zu: %s", step, r.err.msg);
		assert_int_equal(r.out.len, 2 * strlen(text));
		assert_memory_equal(r.out.p, text, strlen(text));
		assert_memory_equal(r.out.p + strlen(text), text, strlen(text));
		buf_free(&r.out);
	}
	buf_free(&gz);
}

static void test_gzip_header_crc_corrupt(void **state)
{
	static const char text[] = "payload";
	struct buf gz = { 0 };
	struct result r;
	size_t hdr_end;
	(void)state;

	gz_member(&gz, text, strlen(text), 6, HDR_FANCY);
	/* FHCRC is the 2 bytes just before the deflate data; locate it via the
	 * comment's terminating NUL. */
	{
		const char *cm = "made by test_decompress";
		size_t cl = strlen(cm) + 1, at = 0;
		while (at + cl <= gz.len && memcmp(gz.p + at, cm, cl) != 0)
			at++;
		assert_true(at + cl <= gz.len);
		hdr_end = at + cl + 2;
	}
	gz.p[hdr_end - 1] ^= 0x01;
	for (size_t step = 0; step < 4; step++) {
		r = run_opts(SF_COMP_GZIP, gz.p, gz.len, step, 100);
		expect_err(&r, EIO, "gzip header CRC mismatch");
	}
	buf_free(&gz);
}

static void test_gzip_zero_padding(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	static const size_t pads[] = { 1, 2, 511, 4096, 300000 }; /* last spans refills */
	struct result r;
	(void)state;

	make_mixed(&data, 20000);
	gz_member(&gz, data.p, 12345, 6, HDR_PLAIN);
	gz_member(&gz, data.p + 12345, data.len - 12345, 6, HDR_PLAIN);
	for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
		struct buf padded = { 0 };
		buf_add(&padded, gz.p, gz.len);
		buf_add_byte(&padded, 0, pads[i]);
		r = run(SF_COMP_GZIP, &padded);
		expect_ok(&r, data.p, data.len);
		if (pads[i] < 5000) {
			r = run_opts(SF_COMP_GZIP, padded.p, padded.len, 1, 1);
			expect_ok(&r, data.p, data.len);
		}
		buf_free(&padded);
	}
	buf_free(&data);
	buf_free(&gz);
}

static void test_gzip_trailing_garbage(void **state)
{
	static const char text[] = "member contents";
	struct buf gz = { 0 };
	struct {
		const char *tail;
		size_t len;
		const char *msg;
	} cases[] = {
		{ "garbage", 7, "trailing garbage after gzip member" },
		{ "\x01", 1, "trailing garbage after gzip member" },
		{ "\x8b\x1f", 2, "trailing garbage after gzip member" },
		{ "\x1f\x00", 2, "trailing garbage after gzip member" },
		{ "\0\0\0\0x", 5, "trailing garbage after gzip member" },
		/* padding must run to EOF: a member after zeros is not accepted */
		{ "\0\0\x1f\x8b", 4, "trailing garbage after gzip member" },
		{ "\x1f", 1, "truncated gzip stream" },
		{ "\x1f\x8b\x08\x00", 4, "truncated gzip stream" },
		{ "\x1f\x8b\x09\x00\x00\x00\x00\x00\x00\x03zzzzzzzz", 18, "invalid gzip header" },
	};
	(void)state;

	gz_member(&gz, text, strlen(text), 6, HDR_PLAIN);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf in = { 0 };
		buf_add(&in, gz.p, gz.len);
		buf_add(&in, cases[i].tail, cases[i].len);
		for (size_t step = 0; step <= 2; step++) {
			struct result r = run_opts(SF_COMP_GZIP, in.p, in.len, step, step ? 1 : 4096);
			/* the member's own bytes come out before the error */
			assert_true(r.out.len <= strlen(text));
			assert_memory_equal(r.out.p, text, r.out.len);
			expect_err(&r, EIO, cases[i].msg);
		}
		buf_free(&in);
	}
	buf_free(&gz);
}

/* Every prefix of a 3-member stream: at a member boundary it is a valid
 * stream of the members so far; anywhere else it is truncated. */
static void test_gzip_truncated_every_cut(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	size_t bounds[4], ends[4];
	(void)state;

	make_mixed(&data, 3000);
	bounds[0] = 0;
	ends[0] = 0;
	gz_member(&gz, data.p, 1000, 6, HDR_PLAIN);
	bounds[1] = gz.len;
	ends[1] = 1000;
	gz_member(&gz, data.p + 1000, 1000, 6, HDR_FANCY);
	bounds[2] = gz.len;
	ends[2] = 2000;
	gz_member(&gz, data.p + 2000, 1000, 0, HDR_PLAIN);
	bounds[3] = gz.len;
	ends[3] = 3000;

	for (size_t cut = 0; cut <= gz.len; cut++) {
		int boundary = -1;
		for (int b = 0; b < 4; b++)
			if (bounds[b] == cut)
				boundary = b;
		for (int mode = 0; mode < 2; mode++) {
			struct result r = mode ? run_opts(SF_COMP_GZIP, gz.p, cut, 1, 1)
					       : run_opts(SF_COMP_GZIP, gz.p, cut, 0, 65536);
			if (cut == 0) {
				expect_err(&r, EIO, "empty gzip stream");
			} else if (boundary > 0) {
				expect_ok(&r, data.p, ends[boundary]);
			} else {
				/* whatever came out is a correct prefix */
				assert_true(r.out.len <= data.len);
				if (r.out.len)
					assert_memory_equal(r.out.p, data.p, r.out.len);
				if (r.ret == 0 || !strstr(r.err.msg, "truncated gzip stream"))
					fail_msg("cut %zu mode %d: ret %zd \"%s\"", cut, mode, r.ret,
						 r.err.msg);
				expect_err(&r, EIO, "truncated gzip stream");
			}
		}
	}
	buf_free(&data);
	buf_free(&gz);
}

/* Cuts in a multi-megabyte stream, around input-buffer-sized offsets too. */
static void test_gzip_truncated_large(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	(void)state;

	make_mixed(&data, 2u << 20);
	gz_member(&gz, data.p, data.len, 6, HDR_PLAIN);
	for (int i = 0; i < 40; i++) {
		size_t cut;
		struct result r;
		if (i < 8)
			cut = (size_t)(i / 2 + 1) * 256 * 1024 + (size_t)(i % 2) - 1;
		else if (i < 16)
			cut = gz.len - (size_t)(i - 7); /* inside the trailer */
		else
			cut = 1 + (size_t)(rng() % (gz.len - 1));
		if (cut >= gz.len)
			continue;
		r = run_opts(SF_COMP_GZIP, gz.p, cut, 0, 100000);
		assert_memory_equal(r.out.p, data.p, r.out.len);
		expect_err(&r, EIO, "truncated gzip stream");
	}
	buf_free(&data);
	buf_free(&gz);
}

static void test_gzip_corrupt_crc(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	size_t m1;
	(void)state;

	make_mixed(&data, 40000);
	gz_member(&gz, data.p, 20000, 6, HDR_PLAIN);
	m1 = gz.len;
	gz_member(&gz, data.p + 20000, 20000, 6, HDR_PLAIN);

	/* each byte of each trailer (CRC32 then ISIZE) */
	for (int member = 0; member < 2; member++) {
		size_t trailer = (member ? gz.len : m1) - 8;
		for (size_t k = 0; k < 8; k++) {
			for (size_t step = 0; step <= 1; step++) {
				struct result r;
				gz.p[trailer + k] ^= 0x20;
				r = run_opts(SF_COMP_GZIP, gz.p, gz.len, step ? 3 : 0, step ? 1 : 8192);
				gz.p[trailer + k] ^= 0x20;
				expect_err(&r, EIO, "gzip CRC mismatch");
			}
		}
	}
	/* corrupt deflate body: must fail (CRC or a deflate error), never pass */
	for (size_t off = 20; off < m1 - 8; off += 97) {
		struct result r;
		gz.p[off] ^= 0xff;
		r = run_opts(SF_COMP_GZIP, gz.p, gz.len, 0, 65536);
		gz.p[off] ^= 0xff;
		if (r.ret == 0)
			fail_msg("corruption at %zu not detected", off);
		assert_int_equal(r.ret, -EIO);
		assert_true(strstr(r.err.msg, "gzip CRC mismatch") ||
			    strstr(r.err.msg, "corrupt gzip data"));
		buf_free(&r.out);
	}
	/* and intact it still works */
	{
		struct result r = run(SF_COMP_GZIP, &gz);
		expect_ok(&r, data.p, data.len);
	}
	buf_free(&data);
	buf_free(&gz);
}

static void test_gzip_large_roundtrip(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	static const struct {
		size_t step, chunk;
	} modes[] = { { 0, 65536 }, { 0, 1 << 20 }, { 0, 4099 }, { 7777, 300000 }, { 0, 8u << 20 } };
	(void)state;

	make_mixed(&data, 6u << 20);
	gz_member(&gz, data.p, 3u << 20, 1, HDR_PLAIN);
	gz_member(&gz, data.p + (3u << 20), 1u << 20, 9, HDR_FANCY);
	gz_member(&gz, data.p + (4u << 20), 2u << 20, 0, HDR_PLAIN);
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct result r = run_opts(SF_COMP_GZIP, gz.p, gz.len, modes[i].step, modes[i].chunk);
		expect_ok(&r, data.p, data.len);
	}
	buf_free(&data);
	buf_free(&gz);
}

/* Byte-at-a-time source and caller buffer over real deflate blocks. */
static void test_gzip_one_byte_io(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	struct result r;
	(void)state;

	make_mixed(&data, 150000);
	gz_member(&gz, data.p, 100000, 6, HDR_PLAIN);
	gz_member(&gz, data.p + 100000, 50000, 9, HDR_FANCY);
	buf_add_byte(&gz, 0, 3);
	r = run_opts(SF_COMP_GZIP, gz.p, gz.len, 1, 1);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_GZIP, gz.p, gz.len, 1, 65536);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_GZIP, gz.p, gz.len, 0, 1);
	expect_ok(&r, data.p, data.len);
	buf_free(&data);
	buf_free(&gz);
}

/* ---- source errors and the reader adapter ---- */

struct failing_src {
	struct sf_mem_reader mem;
	size_t fail_at;
};

static ssize_t failing_read(void *ctx, void *buf, size_t len, struct sf_error *err)
{
	struct failing_src *f = ctx;
	size_t left;

	if (f->mem.pos >= f->fail_at)
		return sf_fail(err, ECONNRESET, "registry connection reset at byte %zu", f->mem.pos);
	left = f->fail_at - f->mem.pos;
	if (len > left)
		len = left;
	if (len > 4096)
		len = 4096;
	memcpy(buf, f->mem.data + f->mem.pos, len);
	f->mem.pos += len;
	return (ssize_t)len;
}

static void test_source_error_propagates(void **state)
{
	struct buf data = { 0 }, gz = { 0 }, zs = { 0 };
	(void)state;

	make_mixed(&data, 500000);
	gz_member(&gz, data.p, data.len, 6, HDR_PLAIN);
	zstd_frame(&zs, data.p, data.len, 3, 1);
	for (int which = 0; which < 3; which++) {
		struct buf *in = which == 0 ? &gz : which == 1 ? &zs : &data;
		enum sf_compression c = which == 0 ? SF_COMP_GZIP : which == 1 ? SF_COMP_ZSTD : SF_COMP_NONE;
		struct failing_src f = { 0 };
		struct sf_decompressor *d;
		struct sf_error err = { 0 };
		unsigned char *out = malloc(data.len);
		size_t got = 0;
		ssize_t n;

		f.mem.data = in->p;
		f.mem.len = in->len;
		f.fail_at = in->len / 2;
		assert_int_equal(sf_decompressor_new(c, (struct sf_reader){ .read = failing_read, .ctx = &f }, &d, &err),
				 0);
		while ((n = sf_decompressor_read(d, out + got, 10000, &err)) > 0)
			got += (size_t)n;
		assert_int_equal(n, -ECONNRESET);
		assert_int_equal(err.code, ECONNRESET);
		assert_non_null(strstr(err.msg, "registry connection reset"));
		assert_memory_equal(out, data.p, got);
		/* sticky, message preserved even for a caller that passes no err first */
		assert_int_equal(sf_decompressor_read(d, out, 1, NULL), -ECONNRESET);
		memset(&err, 0, sizeof(err));
		assert_int_equal(sf_decompressor_read(d, out, 1, &err), -ECONNRESET);
		assert_non_null(strstr(err.msg, "registry connection reset"));
		sf_decompressor_free(d);
		free(out);
	}
	buf_free(&data);
	buf_free(&gz);
	buf_free(&zs);
}

static void test_reader_adapter(void **state)
{
	struct buf data = { 0 }, gz = { 0 };
	struct sf_mem_reader m;
	struct sf_decompressor *d;
	struct sf_error err = { 0 };
	struct sf_reader rd;
	unsigned char *out;
	(void)state;

	make_mixed(&data, 100000);
	gz_member(&gz, data.p, data.len, 6, HDR_PLAIN);
	assert_int_equal(sf_decompressor_new(SF_COMP_GZIP, sf_mem_reader_init(&m, gz.p, gz.len), &d,
					     &err),
			 0);
	m.max_step = 1000;
	rd = sf_decompressor_reader(d);
	out = malloc(data.len + 1);
	assert_int_equal(sf_read_full(rd, out, data.len, &err), (ssize_t)data.len);
	assert_memory_equal(out, data.p, data.len);
	assert_int_equal(sf_read(rd, out, 1, &err), 0);
	sf_decompressor_free(d);
	free(out);
	buf_free(&data);
	buf_free(&gz);
}

/* ---- zstd ---- */

static void test_zstd_frames(void **state)
{
	struct buf data = { 0 }, zs = { 0 };
	struct result r;
	(void)state;

	make_mixed(&data, 200000);
	zstd_frame(&zs, data.p, 70000, 3, 0);
	zstd_frame(&zs, data.p + 70000, 0, 3, 1); /* empty frame */
	zstd_frame(&zs, data.p + 70000, 80000, 19, 1);
	zstd_frame(&zs, data.p + 150000, 50000, 1, 0);
	r = run(SF_COMP_ZSTD, &zs);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_ZSTD, zs.p, zs.len, 1, 1);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_ZSTD, zs.p, zs.len, 333, 7);
	expect_ok(&r, data.p, data.len);
	buf_free(&data);
	buf_free(&zs);
}

static void test_zstd_skippable(void **state)
{
	static const char a[] = "first frame data ", b[] = "second frame data";
	static const char pay[] = "skippable payload, not output";
	struct buf zs = { 0 }, want = { 0 };
	struct result r;
	(void)state;

	zstd_skippable(&zs, 0, pay, sizeof(pay)); /* before */
	zstd_frame(&zs, a, strlen(a), 3, 1);
	zstd_skippable(&zs, 0xf, pay, 5); /* between */
	zstd_skippable(&zs, 7, "", 0);	   /* empty, between */
	zstd_frame(&zs, b, strlen(b), 3, 0);
	zstd_skippable(&zs, 3, pay, sizeof(pay)); /* after */
	buf_add(&want, a, strlen(a));
	buf_add(&want, b, strlen(b));
	for (size_t step = 0; step <= 9; step++) {
		r = run_opts(SF_COMP_ZSTD, zs.p, zs.len, step, step ? step : 4096);
		expect_ok(&r, want.p, want.len);
	}
	/* a stream that is only skippable frames decodes to nothing */
	{
		struct buf only = { 0 };
		zstd_skippable(&only, 1, pay, sizeof(pay));
		r = run(SF_COMP_ZSTD, &only);
		expect_ok(&r, "", 0);
		buf_free(&only);
	}
	buf_free(&zs);
	buf_free(&want);
}

static void test_zstd_truncated_every_cut(void **state)
{
	static const char pay[] = "skip";
	struct buf data = { 0 }, zs = { 0 };
	size_t bounds[8], ends[8];
	int nb = 0;
	(void)state;

	make_mixed(&data, 4000);
	bounds[nb] = 0, ends[nb++] = 0;
	zstd_frame(&zs, data.p, 2000, 3, 1);
	bounds[nb] = zs.len, ends[nb++] = 2000;
	zstd_skippable(&zs, 0, pay, sizeof(pay));
	bounds[nb] = zs.len, ends[nb++] = 2000;
	zstd_frame(&zs, data.p + 2000, 2000, 3, 0);
	bounds[nb] = zs.len, ends[nb++] = 4000;

	for (size_t cut = 0; cut <= zs.len; cut++) {
		int boundary = -1;
		for (int b = 0; b < nb; b++)
			if (bounds[b] == cut)
				boundary = b;
		for (int mode = 0; mode < 2; mode++) {
			struct result r = mode ? run_opts(SF_COMP_ZSTD, zs.p, cut, 1, 1)
					       : run_opts(SF_COMP_ZSTD, zs.p, cut, 0, 65536);
			if (cut == 0) {
				expect_err(&r, EIO, "empty zstd stream");
			} else if (boundary > 0) {
				expect_ok(&r, data.p, ends[boundary]);
			} else {
				assert_memory_equal(r.out.p, data.p, r.out.len);
				if (r.ret == 0 || !strstr(r.err.msg, "truncated zstd stream"))
					fail_msg("cut %zu mode %d: ret %zd \"%s\"", cut, mode, r.ret,
						 r.err.msg);
				expect_err(&r, EIO, "truncated zstd stream");
			}
		}
	}
	buf_free(&data);
	buf_free(&zs);
}

static void test_zstd_corrupt(void **state)
{
	struct buf data = { 0 }, zs = { 0 };
	struct result r;
	(void)state;

	make_mixed(&data, 100000);
	zstd_frame(&zs, data.p, data.len, 3, 1);
	/* content checksum is the last 4 bytes */
	zs.p[zs.len - 2] ^= 0x10;
	r = run(SF_COMP_ZSTD, &zs);
	expect_err(&r, EIO, "zstd checksum mismatch");
	zs.p[zs.len - 2] ^= 0x10;

	/* garbage after a frame */
	buf_add(&zs, "garbage!", 8);
	r = run(SF_COMP_ZSTD, &zs);
	assert_memory_equal(r.out.p, data.p, r.out.len);
	expect_err(&r, EIO, "corrupt zstd data");

	/* gzip fed to the zstd decoder */
	{
		struct buf gz = { 0 };
		gz_member(&gz, "x", 1, 6, HDR_PLAIN);
		r = run(SF_COMP_ZSTD, &gz);
		expect_err(&r, EIO, "corrupt zstd data");
		buf_free(&gz);
	}
	r = run_opts(SF_COMP_ZSTD, "", 0, 0, 10);
	expect_err(&r, EIO, "empty zstd stream");
	buf_free(&data);
	buf_free(&zs);
}

/* Hand-made frame header with a given window log and one empty last raw
 * block: 2^27 (the cap) decodes, 2^28 is refused with a clear message. */
static void test_zstd_window_limit(void **state)
{
	(void)state;
	for (unsigned wlog = 26; wlog <= 30; wlog++) {
		struct buf zs = { 0 };
		unsigned char hdr[] = { 0x28, 0xb5, 0x2f, 0xfd, 0x00 /* FHD: no FCS, no checksum */,
					(unsigned char)((wlog - 10) << 3), 0x01, 0x00, 0x00 };
		struct result r;

		buf_add(&zs, hdr, sizeof(hdr));
		r = run(SF_COMP_ZSTD, &zs);
		if (wlog <= 27)
			expect_ok(&r, "", 0);
		else
			expect_err(&r, EIO, "zstd frame window exceeds the 128 MiB decoder limit");
		buf_free(&zs);
	}
}

static void test_zstd_large_roundtrip(void **state)
{
	struct buf data = { 0 }, zs = { 0 };
	struct result r;
	(void)state;

	make_mixed(&data, 5u << 20);
	zstd_frame(&zs, data.p, 4u << 20, 3, 1);
	zstd_frame(&zs, data.p + (4u << 20), 1u << 20, 12, 0);
	r = run(SF_COMP_ZSTD, &zs);
	expect_ok(&r, data.p, data.len);
	r = run_opts(SF_COMP_ZSTD, zs.p, zs.len, 5000, 1u << 20);
	expect_ok(&r, data.p, data.len);
	buf_free(&data);
	buf_free(&zs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_media_types),
		cmocka_unit_test(test_new_rejects_unknown),
		cmocka_unit_test(test_none_passthrough),
		cmocka_unit_test(test_gzip_single_member),
		cmocka_unit_test(test_gzip_empty_content_member),
		cmocka_unit_test(test_gzip_empty_input),
		cmocka_unit_test(test_gzip_not_gzip),
		cmocka_unit_test(test_gzip_three_members),
		cmocka_unit_test(test_gzip_fancy_header_every_split),
		cmocka_unit_test(test_gzip_header_crc_corrupt),
		cmocka_unit_test(test_gzip_zero_padding),
		cmocka_unit_test(test_gzip_trailing_garbage),
		cmocka_unit_test(test_gzip_truncated_every_cut),
		cmocka_unit_test(test_gzip_truncated_large),
		cmocka_unit_test(test_gzip_corrupt_crc),
		cmocka_unit_test(test_gzip_large_roundtrip),
		cmocka_unit_test(test_gzip_one_byte_io),
		cmocka_unit_test(test_source_error_propagates),
		cmocka_unit_test(test_reader_adapter),
		cmocka_unit_test(test_zstd_frames),
		cmocka_unit_test(test_zstd_skippable),
		cmocka_unit_test(test_zstd_truncated_every_cut),
		cmocka_unit_test(test_zstd_corrupt),
		cmocka_unit_test(test_zstd_window_limit),
		cmocka_unit_test(test_zstd_large_roundtrip),
	};

	/* A decoder stuck in a loop must fail the run, not hang `make check`
	 * (the whole suite takes a few seconds even under ASan). */
	alarm(600);
	if (cmocka_run_group_tests_name("copied input", tests, NULL, NULL))
		return 1;
	lend_input = true;
	return cmocka_run_group_tests_name("lent input", tests, NULL, NULL);
}
