/* decompress.c - layer decompression as a pull-style reader.
 *
 * Every codec pulls compressed bytes from the source into one input buffer
 * and inflates straight into the caller's buffer (no intermediate output
 * copy; ISA-L only stages output internally when the caller's buffer is
 * smaller than its history window).
 *
 * gzip framing is handled here, identically for both backends: at each member
 * boundary we look at the next bytes ourselves.  1f 8b starts another member;
 * all-zero bytes up to EOF are tolerated padding; anything else is
 * "trailing garbage after gzip member".  EOF inside a member is "truncated
 * gzip stream".
 *
 * ISA-L: the member header is parsed with isal_read_gzip_header() using a
 * header struct that lives in the decompressor, then the body is inflated
 * with crc_flag = ISAL_GZIP_NO_HDR_VER, which verifies the CRC32 + ISIZE
 * trailer.  We deliberately do NOT use crc_flag = ISAL_GZIP: in ISA-L 2.30
 * isal_inflate() parses the header with a fresh on-stack header struct on
 * every call, so a header with optional fields (FEXTRA/FNAME/FCOMMENT/FHCRC)
 * split across two calls loses its flags and fails with
 * ISAL_INCORRECT_CHECKSUM (reproduced with 1..7-byte input steps; the unit
 * tests cover it).
 *
 * zlib (no ISA-L): inflateInit2(16 + MAX_WBITS), inflateReset() per member.
 *
 * zstd: ZSTD_decompressStream() over every frame; it skips skippable frames
 * itself (verified: it returns 0 at the end of each skippable frame too).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "decompress.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#ifdef HAVE_ISAL
#include <isa-l/igzip_lib.h>
#else
#include <zlib.h>
#endif

/* Compressed input buffer.  Large enough that one inflate call amortises its
 * setup over a lot of data; small enough to be irrelevant next to the zstd
 * window or ISA-L's state. */
#define SF_DECOMP_INBUF_SIZE (256 * 1024)

/* Upper bound on one output chunk: the ISA-L and zlib output counters are
 * 32-bit, and the return value must fit ssize_t. */
#define SF_DECOMP_MAX_CHUNK ((size_t)1 << 30)

/* zstd decoder window cap: 2^27 = 128 MiB.  This is libzstd's own default
 * limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT) and what `zstd -d` accepts without
 * --memory, so every layer produced without --long (level 22 uses at most
 * 2^27; the Go encoder that podman/buildah/containerd use defaults to 8 MiB)
 * decodes, while a hostile or --long=31 layer cannot make each concurrently
 * unpacking layer allocate up to 2 GiB.  Set explicitly so the limit does not
 * silently move with the library version. */
#define SF_ZSTD_WINDOW_LOG_MAX 27

enum gz_phase {
	GZ_MEMBER_START, /* between members: decide member / padding / garbage */
	GZ_HEADER,	 /* ISA-L only: parsing the member header */
	GZ_BODY,	 /* inflating the member body (+ trailer) */
	GZ_PADDING,	 /* all-zero bytes after the last member */
};

struct sf_decompressor {
	enum sf_compression comp;
	struct sf_reader src;

	const unsigned char *in; /* own, or bytes borrowed from src */
	unsigned char *own;	 /* SF_DECOMP_INBUF_SIZE bytes (NULL for none) */
	size_t in_pos, in_len;	 /* unconsumed input is in[in_pos, in_len) */
	uint64_t total_in;     /* bytes pulled from src so far */
	bool src_eof;

	bool done;	  /* returned end of stream */
	sf_ret failed;	  /* sticky error, 0 = none */
	struct sf_error saved; /* its message, replayed on later calls */

	/* gzip */
	enum gz_phase gz_phase;
	uint64_t gz_members; /* completed members */
#ifdef HAVE_ISAL
	struct isal_gzip_header gz_hdr; /* must persist across header calls */
	struct inflate_state isal;
#else
	z_stream z;
	bool z_ready;
#endif

	/* zstd */
	ZSTD_DCtx *zd;
	bool zstd_frame_open; /* inside a frame (or its output not yet flushed) */
};

/* ---- media types ---- */

static const struct {
	const char *media_type;
	enum sf_compression comp;
} media_types[] = {
	{ "application/vnd.oci.image.layer.v1.tar", SF_COMP_NONE },
	{ "application/vnd.oci.image.layer.v1.tar+gzip", SF_COMP_GZIP },
	{ "application/vnd.oci.image.layer.v1.tar+zstd", SF_COMP_ZSTD },
	{ "application/vnd.oci.image.layer.nondistributable.v1.tar", SF_COMP_NONE },
	{ "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", SF_COMP_GZIP },
	{ "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", SF_COMP_ZSTD },
	{ "application/vnd.docker.image.rootfs.diff.tar.gzip", SF_COMP_GZIP },
	{ "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", SF_COMP_GZIP },
	{ "application/vnd.docker.image.rootfs.diff.tar", SF_COMP_NONE },
	/* containerd writes this for zstd layers in Docker-typed manifests */
	{ "application/vnd.docker.image.rootfs.diff.tar.zstd", SF_COMP_ZSTD },
};

sf_ret sf_compression_from_media_type(const char *media_type, enum sf_compression *out,
				      struct sf_error *err)
{
	if (!media_type || !*media_type)
		return sf_fail(err, EINVAL, "missing layer media type");
	for (size_t i = 0; i < sizeof(media_types) / sizeof(media_types[0]); i++) {
		if (strcmp(media_type, media_types[i].media_type) == 0) {
			*out = media_types[i].comp;
			return 0;
		}
	}
	return sf_fail(err, EINVAL, "unsupported layer media type %s", media_type);
}

const char *sf_compression_name(enum sf_compression c)
{
	switch (c) {
	case SF_COMP_NONE:
		return "none";
	case SF_COMP_GZIP:
		return "gzip";
	case SF_COMP_ZSTD:
		return "zstd";
	}
	return "unknown";
}

/* ---- input buffer ---- */

/* Offset in the compressed stream of the next unconsumed byte. */
static uint64_t in_offset(const struct sf_decompressor *d)
{
	return d->total_in - (d->in_len - d->in_pos);
}

/* Input is taken in place when the source lends it (see borrow_input). */
static sf_ret borrow_input(struct sf_decompressor *d, struct sf_error *err)
{
	const void *data;
	ssize_t n = d->src.borrow(d->src.ctx, &data, SF_DECOMP_MAX_CHUNK, err);

	if (n < 0)
		return (sf_ret)n;
	d->in = n > 0 ? data : d->own;
	d->in_pos = 0;
	d->in_len = (size_t)n;
	d->total_in += (uint64_t)n;
	d->src_eof = n == 0;
	return 0;
}

/* Make at least `want` (<= buffer size) unconsumed bytes available, or fewer
 * only when the source is at EOF.  Reads only while short, so a source that
 * blocks for network data is never asked for more than needed.  When all
 * input is used up and the source lends its bytes, they are inflated where
 * they lie (no copy); a borrowed remainder shorter than `want` (a gzip
 * magic split across two loans) is moved into our own buffer first, and the
 * rest read after it. */
static sf_ret fill_at_least(struct sf_decompressor *d, size_t want, struct sf_error *err)
{
	while (d->in_len - d->in_pos < want && !d->src_eof) {
		size_t room;
		ssize_t n;

		if (d->in_pos == d->in_len && d->src.borrow) {
			sf_ret r = borrow_input(d, err);
			if (r < 0)
				return r;
			continue;
		}
		if (d->in != d->own) {
			memmove(d->own, d->in + d->in_pos, d->in_len - d->in_pos);
			d->in_len -= d->in_pos;
			d->in_pos = 0;
			d->in = d->own;
		} else if (d->in_pos == d->in_len) {
			d->in_pos = d->in_len = 0;
		} else if (d->in_len == SF_DECOMP_INBUF_SIZE) {
			memmove(d->own, d->in + d->in_pos, d->in_len - d->in_pos);
			d->in_len -= d->in_pos;
			d->in_pos = 0;
		}
		room = SF_DECOMP_INBUF_SIZE - d->in_len;
		n = sf_read(d->src, d->own + d->in_len, room, err);
		if (n < 0)
			return (sf_ret)n;
		if ((size_t)n > room)
			return sf_fail(err, EIO, "source reader returned %zd bytes for a %zu-byte read",
				       n, room);
		if (n == 0)
			d->src_eof = true;
		d->in_len += (size_t)n;
		d->total_in += (uint64_t)n;
	}
	return 0;
}

static bool in_empty(const struct sf_decompressor *d)
{
	return d->in_pos == d->in_len;
}

/* Error reporting: every failure is recorded in d->saved so that later calls
 * return the same error (a decompressor does not resume after corruption). */
__attribute__((format(printf, 4, 5))) static ssize_t dfail(struct sf_decompressor *d,
							    struct sf_error *err, int code,
							    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->saved.msg, sizeof(d->saved.msg), fmt, ap);
	va_end(ap);
	d->saved.code = code;
	d->failed = -code;
	if (err)
		*err = d->saved;
	return -code;
}

/* Record an error some callee (the source) already put into err. */
static ssize_t dfail_from(struct sf_decompressor *d, struct sf_error *err, sf_ret ret)
{
	if (err) {
		d->saved = *err;
	} else {
		d->saved.code = -ret;
		d->saved.msg[0] = '\0';
	}
	d->failed = ret;
	return ret;
}

static ssize_t truncated(struct sf_decompressor *d, struct sf_error *err, const char *what)
{
	return dfail(d, err, EIO, "truncated %s stream (compressed input ended at byte %llu)",
		     what, (unsigned long long)d->total_in);
}

/* The gzip backend produced nothing although there was room: the input
 * ended inside a member, or the decoder is stuck on what it has. */
static ssize_t gzip_starved(struct sf_decompressor *d, size_t before, struct sf_error *err)
{
	if (in_empty(d) && d->src_eof)
		return truncated(d, err, "gzip");
	if (d->in_pos == before && !in_empty(d))
		return dfail(d, err, EIO, "gzip decoder made no progress at byte %llu",
			     (unsigned long long)in_offset(d));
	return 0;
}

/* ---- gzip backends: start a member, inflate some of it ---- */

#ifdef HAVE_ISAL

static sf_ret gz_backend_init(struct sf_decompressor *d, struct sf_error *err)
{
	(void)err;
	isal_inflate_init(&d->isal);
	d->isal.crc_flag = ISAL_GZIP_NO_HDR_VER;
	return 0;
}

static void gz_backend_end(struct sf_decompressor *d)
{
	(void)d;
}

static void gz_backend_start_member(struct sf_decompressor *d)
{
	isal_inflate_reset(&d->isal); /* keeps crc_flag */
	isal_gzip_header_init(&d->gz_hdr);
	d->gz_phase = GZ_HEADER;
}

static const char *isal_strerror(int ret)
{
	switch (ret) {
	case ISAL_INVALID_BLOCK:
		return "invalid deflate block";
	case ISAL_INVALID_SYMBOL:
		return "invalid deflate symbol";
	case ISAL_INVALID_LOOKBACK:
		return "invalid deflate distance";
	case ISAL_INVALID_WRAPPER:
		return "invalid wrapper";
	case ISAL_UNSUPPORTED_METHOD:
		return "unsupported compression method";
	case ISAL_NEED_DICT:
		return "preset dictionary required";
	}
	return "unknown ISA-L error";
}

/* One step of the member state machine.  Returns bytes produced (> 0), 0 when
 * progress was made without output (caller loops; gz_phase may have
 * changed), or -errno. */
static ssize_t gz_backend_step(struct sf_decompressor *d, unsigned char *buf, size_t len,
			       struct sf_error *err)
{
	struct inflate_state *s = &d->isal;
	size_t before = d->in_pos, produced;
	int ret;

	s->next_in = (uint8_t *)d->in + d->in_pos; /* ISA-L never writes input */
	s->avail_in = (uint32_t)(d->in_len - d->in_pos);

	if (d->gz_phase == GZ_HEADER) {
		ret = isal_read_gzip_header(s, &d->gz_hdr);
		d->in_pos = (size_t)(s->next_in - d->in);
		if (ret == ISAL_DECOMP_OK) {
			d->gz_phase = GZ_BODY;
			return 0;
		}
		if (ret == ISAL_END_INPUT) { /* whole input taken, need more */
			if (d->src_eof)
				return truncated(d, err, "gzip");
			return 0;
		}
		if (ret == ISAL_INCORRECT_CHECKSUM)
			return dfail(d, err, EIO, "gzip header CRC mismatch (member %llu)",
				     (unsigned long long)d->gz_members + 1);
		return dfail(d, err, EIO, "invalid gzip header (member %llu): %s",
			     (unsigned long long)d->gz_members + 1, isal_strerror(ret));
	}

	s->next_out = buf;
	s->avail_out = (uint32_t)len;
	ret = isal_inflate(s);
	d->in_pos = (size_t)(s->next_in - d->in);
	produced = (size_t)(s->next_out - buf);

	if (ret == ISAL_INCORRECT_CHECKSUM)
		return dfail(d, err, EIO, "gzip CRC mismatch (member %llu)",
			     (unsigned long long)d->gz_members + 1);
	if (ret < 0)
		return dfail(d, err, EIO, "corrupt gzip data (member %llu): %s",
			     (unsigned long long)d->gz_members + 1, isal_strerror(ret));

	if (s->block_state == ISAL_BLOCK_FINISH) {
		d->gz_members++;
		d->gz_phase = GZ_MEMBER_START;
	} else if (produced == 0) {
		/* avail_out > 0 and nothing came out: starved of input. */
		return gzip_starved(d, before, err);
	}
	return (ssize_t)produced;
}

#else /* zlib */

static sf_ret gz_backend_init(struct sf_decompressor *d, struct sf_error *err)
{
	int ret = inflateInit2(&d->z, 16 + MAX_WBITS);

	if (ret != Z_OK)
		return sf_fail(err, ret == Z_MEM_ERROR ? ENOMEM : EIO, "inflateInit2: %s",
			       d->z.msg ? d->z.msg : zError(ret));
	d->z_ready = true;
	return 0;
}

static void gz_backend_end(struct sf_decompressor *d)
{
	if (d->z_ready)
		inflateEnd(&d->z);
	d->z_ready = false;
}

static void gz_backend_start_member(struct sf_decompressor *d)
{
	/* zlib parses the header itself; it was reset at the previous
	 * member's end (or is fresh). */
	d->gz_phase = GZ_BODY;
}

static ssize_t gz_backend_step(struct sf_decompressor *d, unsigned char *buf, size_t len,
			       struct sf_error *err)
{
	z_stream *z = &d->z;
	size_t before = d->in_pos, produced;
	int ret;

	z->next_in = (Bytef *)d->in + d->in_pos; /* zlib never writes input */
	z->avail_in = (uInt)(d->in_len - d->in_pos);
	z->next_out = buf;
	z->avail_out = (uInt)len;
	ret = inflate(z, Z_NO_FLUSH);
	d->in_pos = (size_t)(z->next_in - d->in);
	produced = (size_t)(z->next_out - buf);

	switch (ret) {
	case Z_STREAM_END:
		d->gz_members++;
		d->gz_phase = GZ_MEMBER_START;
		inflateReset(z);
		return (ssize_t)produced;
	case Z_OK:
	case Z_BUF_ERROR: /* no progress possible: starved of input */
		break;
	case Z_MEM_ERROR:
		return dfail(d, err, ENOMEM, "out of memory inflating gzip stream");
	case Z_DATA_ERROR: {
		const char *m = z->msg ? z->msg : "invalid data";
		unsigned long long member = (unsigned long long)d->gz_members + 1;

		if (!strcmp(m, "incorrect data check") || !strcmp(m, "incorrect length check"))
			return dfail(d, err, EIO, "gzip CRC mismatch (member %llu)", member);
		if (!strcmp(m, "header crc mismatch"))
			return dfail(d, err, EIO, "gzip header CRC mismatch (member %llu)", member);
		if (!strcmp(m, "incorrect header check") || !strcmp(m, "unknown compression method") ||
		    !strcmp(m, "unknown header flags set"))
			return dfail(d, err, EIO, "invalid gzip header (member %llu): %s", member, m);
		return dfail(d, err, EIO, "corrupt gzip data (member %llu): %s", member, m);
	}
	default: /* Z_NEED_DICT (impossible for gzip), Z_STREAM_ERROR */
		return dfail(d, err, EIO, "corrupt gzip data (member %llu): %s",
			     (unsigned long long)d->gz_members + 1, z->msg ? z->msg : zError(ret));
	}

	if (produced == 0)
		return gzip_starved(d, before, err);
	return (ssize_t)produced;
}

#endif

/* ---- gzip framing (shared) ---- */

static ssize_t gzip_read(struct sf_decompressor *d, unsigned char *buf, size_t len,
			 struct sf_error *err)
{
	for (;;) {
		sf_ret r;

		switch (d->gz_phase) {
		case GZ_MEMBER_START: {
			const unsigned char *p;
			size_t avail;

			r = fill_at_least(d, 2, err);
			if (r < 0)
				return dfail_from(d, err, r);
			avail = d->in_len - d->in_pos;
			p = d->in + d->in_pos;
			if (avail == 0) { /* EOF exactly at a member boundary */
				if (d->gz_members == 0)
					return dfail(d, err, EIO, "empty gzip stream");
				return 0;
			}
			if (p[0] == 0x1f && (avail < 2 || p[1] == 0x8b)) {
				if (avail < 2) /* EOF after one magic byte */
					return truncated(d, err, "gzip");
				gz_backend_start_member(d);
				continue;
			}
			if (d->gz_members == 0)
				return dfail(d, err, EIO,
					     "not a gzip stream (starts with %02x %02x, expected 1f 8b)",
					     p[0], avail > 1 ? p[1] : 0);
			if (p[0] == 0) {
				d->gz_phase = GZ_PADDING;
				continue;
			}
			return dfail(d, err, EIO,
				     "trailing garbage after gzip member (at compressed byte %llu)",
				     (unsigned long long)in_offset(d));
		}
		case GZ_PADDING:
			for (size_t i = d->in_pos; i < d->in_len; i++) {
				if (d->in[i]) {
					d->in_pos = i;
					return dfail(d, err, EIO,
						     "trailing garbage after gzip member (at compressed byte %llu)",
						     (unsigned long long)in_offset(d));
				}
			}
			d->in_pos = d->in_len;
			if (d->src_eof)
				return 0;
			r = fill_at_least(d, 1, err);
			if (r < 0)
				return dfail_from(d, err, r);
			continue;
		case GZ_HEADER:
		case GZ_BODY: {
			ssize_t n;

			if (in_empty(d)) {
				r = fill_at_least(d, 1, err);
				if (r < 0)
					return dfail_from(d, err, r);
			}
			n = gz_backend_step(d, buf, len, err);
			if (n != 0)
				return n;
			continue;
		}
		}
	}
}

/* ---- zstd ---- */

static ssize_t zstd_read(struct sf_decompressor *d, unsigned char *buf, size_t len,
			 struct sf_error *err)
{
	for (;;) {
		ZSTD_inBuffer zin;
		ZSTD_outBuffer zout = { .dst = buf, .size = len, .pos = 0 };
		size_t ret, before;

		if (in_empty(d)) {
			sf_ret r = fill_at_least(d, 1, err);
			if (r < 0)
				return dfail_from(d, err, r);
			if (in_empty(d) && !d->zstd_frame_open) {
				/* EOF at a frame boundary.  (Calling the decoder
				 * here would only return a "need a header" hint.) */
				if (d->total_in == 0)
					return dfail(d, err, EIO, "empty zstd stream");
				return 0;
			}
			/* else: EOF inside a frame; one more call flushes any
			 * output the decoder still holds. */
		}

		before = d->in_pos;
		zin = (ZSTD_inBuffer){ .src = d->in, .size = d->in_len, .pos = d->in_pos };
		ret = ZSTD_decompressStream(d->zd, &zout, &zin);
		d->in_pos = zin.pos;
		if (ZSTD_isError(ret)) {
			unsigned long long off = (unsigned long long)in_offset(d);

			switch (ZSTD_getErrorCode(ret)) {
			case ZSTD_error_frameParameter_windowTooLarge:
				return dfail(d, err, EIO,
					     "zstd frame window exceeds the %u MiB decoder limit (at compressed byte %llu)",
					     1u << (SF_ZSTD_WINDOW_LOG_MAX - 20), off);
			case ZSTD_error_checksum_wrong:
				return dfail(d, err, EIO, "zstd checksum mismatch (at compressed byte %llu)",
					     off);
			case ZSTD_error_memory_allocation:
				return dfail(d, err, ENOMEM, "out of memory decoding zstd stream");
			default:
				return dfail(d, err, EIO, "corrupt zstd data (at compressed byte %llu): %s",
					     off, ZSTD_getErrorName(ret));
			}
		}
		/* 0 = a frame (skippable ones included) ended and is flushed. */
		d->zstd_frame_open = ret != 0;
		if (zout.pos > 0)
			return (ssize_t)zout.pos;
		if (in_empty(d) && d->src_eof && d->zstd_frame_open)
			return truncated(d, err, "zstd");
		if (d->in_pos == before && !in_empty(d))
			return dfail(d, err, EIO, "zstd decoder made no progress at byte %llu",
				     (unsigned long long)in_offset(d));
	}
}

/* ---- public ---- */

sf_ret sf_decompressor_new(enum sf_compression c, struct sf_reader src,
			   struct sf_decompressor **out, struct sf_error *err)
{
	struct sf_decompressor *d;
	sf_ret r;

	if (c != SF_COMP_NONE && c != SF_COMP_GZIP && c != SF_COMP_ZSTD)
		return sf_fail(err, EINVAL, "unknown compression %d", (int)c);
	if (!src.read)
		return sf_fail(err, EINVAL, "decompressor needs a source reader");

	d = calloc(1, sizeof(*d));
	if (!d)
		return sf_fail(err, ENOMEM, "out of memory allocating decompressor");
	d->comp = c;
	d->src = src;

	if (c != SF_COMP_NONE) {
		d->in = d->own = malloc(SF_DECOMP_INBUF_SIZE);
		if (!d->own) {
			r = sf_fail(err, ENOMEM, "out of memory allocating decompressor buffer");
			goto fail;
		}
	}

	if (c == SF_COMP_GZIP) {
		r = gz_backend_init(d, err);
		if (r < 0)
			goto fail;
		d->gz_phase = GZ_MEMBER_START;
	} else if (c == SF_COMP_ZSTD) {
		size_t zr;

		d->zd = ZSTD_createDCtx();
		if (!d->zd) {
			r = sf_fail(err, ENOMEM, "out of memory allocating zstd decoder");
			goto fail;
		}
		zr = ZSTD_DCtx_setParameter(d->zd, ZSTD_d_windowLogMax, SF_ZSTD_WINDOW_LOG_MAX);
		if (ZSTD_isError(zr)) {
			r = sf_fail(err, EIO, "zstd: cannot set windowLogMax: %s",
				    ZSTD_getErrorName(zr));
			goto fail;
		}
	}

	*out = d;
	return 0;

fail:
	sf_decompressor_free(d);
	return r;
}

ssize_t sf_decompressor_read(struct sf_decompressor *d, void *buf, size_t len,
			     struct sf_error *err)
{
	ssize_t n;

	if (d->failed) {
		if (err)
			*err = d->saved;
		return d->failed;
	}
	if (d->done || len == 0)
		return 0;
	if (len > SF_DECOMP_MAX_CHUNK)
		len = SF_DECOMP_MAX_CHUNK;

	switch (d->comp) {
	case SF_COMP_GZIP:
		n = gzip_read(d, buf, len, err);
		break;
	case SF_COMP_ZSTD:
		n = zstd_read(d, buf, len, err);
		break;
	case SF_COMP_NONE:
	default:
		n = sf_read(d->src, buf, len, err);
		if (n < 0)
			return dfail_from(d, err, (sf_ret)n);
		if ((size_t)n > len)
			return dfail(d, err, EIO, "source reader returned %zd bytes for a %zu-byte read",
				     n, len);
		d->total_in += (uint64_t)n;
		break;
	}
	if (n == 0)
		d->done = true;
	return n;
}

static ssize_t decompressor_reader_read(void *ctx, void *buf, size_t len, struct sf_error *err)
{
	return sf_decompressor_read(ctx, buf, len, err);
}

struct sf_reader sf_decompressor_reader(struct sf_decompressor *d)
{
	return (struct sf_reader){ .read = decompressor_reader_read, .ctx = d };
}

void sf_decompressor_free(struct sf_decompressor *d)
{
	if (!d)
		return;
	if (d->comp == SF_COMP_GZIP)
		gz_backend_end(d);
	ZSTD_freeDCtx(d->zd); /* NULL-safe */
	free(d->own);
	free(d);
}
