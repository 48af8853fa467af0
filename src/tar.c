/* tar.c - streaming tar reader (pull-style) for OCI layers.
 *
 * A layer is a tar stream that we see exactly once, in order, through an
 * sf_reader; there is no seeking and no second pass.  The parser therefore
 * works on 512-byte blocks: it reads a header block, and for the extension
 * headers that modify the next entry (PAX 'x', GNU 'L'/'K') it reads their
 * (bounded) payload into memory and keeps going until it meets the header of
 * a real entry.  That entry is returned to the caller together with the
 * number of body bytes still unread; sf_tar_read_data() hands those bytes out
 * as they come from the source, and sf_tar_next() skips whatever the caller
 * did not want.  An entry's data is never buffered here.
 *
 * Everything in the archive is hostile input (this code is fuzzed): every
 * length read from a header is checked against the SF_TAR_MAX_* limits and
 * against what is left of the enclosing object before anything is allocated
 * or read, numeric fields are overflow-checked, and sparse maps must be
 * sorted, non-overlapping, inside the real size and must account for exactly
 * the stored bytes.  Any error is sticky: once the stream position is
 * unknown, every later call repeats the first error.
 *
 * Dialects.  ustar (with the prefix field), pre-POSIX v7 (no magic; a
 * "regular" entry whose name ends in '/' is a directory), GNU (L/K long
 * names, base-256 numbers, old 'S' sparse files with extension blocks) and
 * PAX ('x' records override the header, an empty value restores the
 * header's field, consecutive 'x' headers merge; xattrs come from
 * SCHILY.xattr.* and LIBARCHIVE.xattr.*; 'g' global headers are skipped, as
 * libarchive mostly does).  GNU sparse files in PAX come in three flavours:
 * 0.0 (repeated GNU.sparse.offset/numbytes records), 0.1 (GNU.sparse.map)
 * and 1.0 (the map is at the start of the data, as decimal lines padded to a
 * block).  Precedence: GNU.sparse.name > PAX path > GNU L > ustar name.
 *
 * Entry bodies.  Regular files have their size of data.  Symlinks, devices
 * and FIFOs never have a body, whatever their size field says; directories
 * (and GNU 'D' dump directories) have their body skipped.  Hard links follow
 * libarchive: a hard link's size field is honoured (the body is skipped)
 * only in a PAX entry; in a GNU entry it is ignored; in ustar/v7 we peek at
 * the next block and treat the size as bogus when a valid header or the end
 * marker follows.  Either way the entry reports size 0 and no data.
 *
 * End of archive.  A zero block ends the archive; the block after it must be
 * zero too, possibly cut short by the end of the stream, or absent (a
 * non-zero block there is an error, as in Go's archive/tar, which is what
 * the container engines use).  The end of the stream at a header boundary is
 * also accepted as the end, unless an extension header is still waiting for
 * its entry.  After the end nothing more is read from the source: the caller
 * drains it.
 *
 * Errors are EIO for anything malformed or over a limit (the message says
 * which), EOPNOTSUPP for an unknown GNU sparse version, ENOMEM, or whatever
 * the source returned.
 */
#include "tar.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 512
#define ENAME_MAX 512          /* longest entry name quoted in a message */
#define QUOTE_MAX 48           /* longest value quoted in a message */
#define XATTR_NAME_MAX_LEN 255 /* Linux XATTR_NAME_MAX */
#define SKIP_BUF (16 * 1024)
#define MAX_GNU_SPARSE_VERSION 1000000
#define NSEC_PER_SEC 1000000000u
#define NSEC_DIGITS 9
#define MODE_MASK 07777

/* Header layout (POSIX ustar; old GNU where noted). */
enum {
	H_NAME = 0,
	H_NAME_LEN = 100,
	H_MODE = 100,
	H_MODE_LEN = 8,
	H_UID = 108,
	H_GID = 116,
	H_ID_LEN = 8,
	H_SIZE = 124,
	H_SIZE_LEN = 12,
	H_MTIME = 136,
	H_MTIME_LEN = 12,
	H_CHKSUM = 148,
	H_CHKSUM_LEN = 8,
	H_TYPE = 156,
	H_LINK = 157,
	H_LINK_LEN = 100,
	H_MAGIC = 257,
	H_DEVMAJOR = 329,
	H_DEVMINOR = 337,
	H_DEV_LEN = 8,
	H_PREFIX = 345,
	H_PREFIX_LEN = 155,
	/* old GNU sparse header */
	H_GNU_SPARSE = 386,
	GNU_SPARSE_IN_HEADER = 4,
	H_GNU_ISEXTENDED = 482,
	H_GNU_REALSIZE = 483,
	GNU_SPARSE_ENTRY_LEN = 24,
	GNU_SPARSE_NUM_LEN = 12,
	/* old GNU sparse extension block */
	GNU_SPARSE_IN_EXT = 21,
	EXT_ISEXTENDED = 504,
};

#define MAX_GNU_SPARSE_EXT_BLOCKS (SF_TAR_MAX_SPARSE_SEGMENTS / GNU_SPARSE_IN_EXT + 1)

static const char MAGIC_GNU[8] = { 'u', 's', 't', 'a', 'r', ' ', ' ', '\0' };
static const char MAGIC_USTAR[6] = { 'u', 's', 't', 'a', 'r', '\0' };

enum tar_format { FMT_V7, FMT_USTAR, FMT_GNU };
enum tar_state { ST_HEADER, ST_END, ST_FAILED };
enum num_result { NUM_OK = 0, NUM_BAD = -1, NUM_RANGE = -2 };

struct sparse_seg {
	uint64_t offset, len;
};

struct seg_list {
	struct sparse_seg *v;
	size_t n, cap;
};

/* What the pending PAX 'x' records say about the next entry. */
struct pax_info {
	char *path, *linkpath, *sparse_name;
	bool has_size, has_uid, has_gid, has_mtime;
	uint64_t size, uid, gid;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	/* GNU.sparse.* */
	bool sparse_0x; /* 0.0 or 0.1 map keys seen */
	bool has_realsize, has_numblocks, has_major, has_minor;
	uint64_t realsize, numblocks, major, minor;
	bool offset_pending; /* 0.0: GNU.sparse.offset awaiting numbytes */
	uint64_t offset;
};

struct pax_rec {
	const char *key, *val;
	size_t klen, vlen;
};

struct sf_tar {
	struct sf_reader src;
	enum tar_state state;
	uint64_t pos;     /* bytes consumed from src */
	uint64_t hdr_pos; /* archive offset of t->hdr */
	unsigned char hdr[BLOCK];
	unsigned char lookahead[BLOCK]; /* one peeked block, see peek_block */
	size_t la_len, la_pos;

	/* Extension headers waiting for their entry. */
	bool pending;
	char *pax_buf;
	size_t pax_len;
	char *gnu_path, *gnu_link;
	struct pax_info pax;

	/* The current entry. */
	struct sf_tar_entry entry;
	size_t xattr_cap;
	char ename[ENAME_MAX]; /* entry name for messages; "" when unknown */
	bool has_data;         /* a regular file whose data is handed out */
	uint64_t body_left;    /* body bytes not consumed yet */
	uint64_t pad_left;     /* padding after the body */
	uint64_t lpos;         /* logical offset of the next byte (not sparse) */
	bool sparse;
	struct seg_list segs;
	size_t seg_idx;
	uint64_t seg_done;

	struct sf_error fail; /* the sticky error */
	unsigned char scratch[SKIP_BUF];
};

/* ---- errors ---- */

static void set_ename(struct sf_tar *t, const char *s, size_t len)
{
	size_t max = sizeof(t->ename) - 4, i;

	for (i = 0; i < len && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		t->ename[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (i < len) {
		memcpy(t->ename + i, "...", 3);
		i += 3;
	}
	t->ename[i] = '\0';
}

/* A short printable copy of an archive value, for messages. */
static const char *quote(char out[QUOTE_MAX], const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < QUOTE_MAX - 4; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (i < n) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
	return out;
}

static sf_ret tar_fail(struct sf_tar *t, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static sf_ret tar_fail(struct sf_tar *t, int code, const char *fmt, ...)
{
	char what[SF_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (t->ename[0])
		return sf_fail(&t->fail, code, "tar entry %s: %s", t->ename, what);
	return sf_fail(&t->fail, code, "tar archive offset %" PRIu64 ": %s", t->hdr_pos, what);
}

static sf_ret truncated(struct sf_tar *t)
{
	if (t->ename[0])
		return sf_fail(&t->fail, EIO, "truncated tar archive in entry %s", t->ename);
	return sf_fail(&t->fail, EIO, "truncated tar archive at offset %" PRIu64, t->pos);
}

static sf_ret no_memory(struct sf_tar *t)
{
	return tar_fail(t, ENOMEM, "out of memory");
}

/* Make the error sticky and hand it to the caller. */
static sf_ret report(struct sf_tar *t, sf_ret ret, struct sf_error *err)
{
	if (t->state != ST_FAILED) {
		t->state = ST_FAILED;
		if (t->fail.code == 0)
			t->fail.code = ret < 0 ? -ret : EIO;
	}
	if (err)
		*err = t->fail;
	return -t->fail.code;
}

/* ---- reading the source ---- */

/* One read: the peeked block first, else one call to the source. */
static ssize_t src_some(struct sf_tar *t, void *buf, size_t len)
{
	ssize_t n;

	if (t->la_pos < t->la_len) {
		size_t k = t->la_len - t->la_pos;
		if (k > len)
			k = len;
		memcpy(buf, t->lookahead + t->la_pos, k);
		t->la_pos += k;
		t->pos += k;
		return (ssize_t)k;
	}
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	n = sf_read(t->src, buf, len, &t->fail);
	if (n < 0)
		return n;
	if ((size_t)n > len)
		return tar_fail(t, EIO, "source returned more bytes than asked for");
	t->pos += (uint64_t)n;
	return n;
}

/* Read len bytes, fewer only when the stream ends.  Returns the count. */
static ssize_t src_fill(struct sf_tar *t, void *buf, size_t len)
{
	unsigned char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = src_some(t, p + got, len - got);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* 1: a full block, 0: end of stream at the block boundary, < 0: error. */
static sf_ret read_block(struct sf_tar *t, unsigned char *buf)
{
	ssize_t n = src_fill(t, buf, BLOCK);

	if (n < 0)
		return (sf_ret)n;
	if (n == 0)
		return 0;
	if (n < BLOCK)
		return truncated(t);
	return 1;
}

/* Read exactly len bytes; the end of the stream is a truncation. */
static sf_ret read_exact(struct sf_tar *t, void *buf, size_t len)
{
	ssize_t n = src_fill(t, buf, len);

	if (n < 0)
		return (sf_ret)n;
	if ((size_t)n < len)
		return truncated(t);
	return 0;
}

static sf_ret skip_bytes(struct sf_tar *t, uint64_t *left)
{
	while (*left > 0) {
		size_t k = *left < SKIP_BUF ? (size_t)*left : SKIP_BUF;
		ssize_t n = src_some(t, t->scratch, k);
		if (n < 0)
			return (sf_ret)n;
		if (n == 0)
			return truncated(t);
		*left -= (uint64_t)n;
	}
	return 0;
}

/* Peek at the next block without consuming it (fewer bytes at the end). */
static sf_ret peek_block(struct sf_tar *t)
{
	uint64_t pos = t->pos;
	ssize_t n;

	if (t->la_pos < t->la_len) /* we only peek right after a full header */
		return tar_fail(t, EIO, "internal error: peeking twice");
	n = src_fill(t, t->lookahead, BLOCK);
	if (n < 0)
		return (sf_ret)n;
	t->pos = pos;
	t->la_len = (size_t)n;
	t->la_pos = 0;
	return 0;
}

static uint64_t padding(uint64_t size)
{
	return (BLOCK - size % BLOCK) % BLOCK;
}

/* ---- numbers ---- */

static enum num_result parse_octal(const unsigned char *f, size_t n, int64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < n && (f[i] == ' ' || f[i] == '\0'))
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v > (uint64_t)INT64_MAX >> 3)
			return NUM_RANGE;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	while (i < n && f[i] == ' ')
		i++;
	if (i < n && f[i] != '\0')
		return NUM_BAD;
	*out = (int64_t)v;
	return NUM_OK;
}

/* GNU base-256: the top bit of the first byte is the marker, the next one
 * the sign; the rest is a big-endian two's complement number. */
static enum num_result parse_base256(const unsigned char *f, size_t n, int64_t *out)
{
	unsigned char inv = (f[0] & 0x40) ? 0xff : 0;
	uint64_t m = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = f[i] ^ inv;
		if (i == 0)
			c &= 0x7f;
		if (m > (uint64_t)INT64_MAX >> 8)
			return NUM_RANGE;
		m = m << 8 | c;
	}
	*out = inv ? -(int64_t)m - 1 : (int64_t)m;
	return NUM_OK;
}

static enum num_result parse_num(const unsigned char *f, size_t n, int64_t *out)
{
	if (f[0] & 0x80)
		return parse_base256(f, n, out);
	return parse_octal(f, n, out);
}

static sf_ret field_num(struct sf_tar *t, const unsigned char *f, size_t n, const char *what,
			bool neg_ok, int64_t *out)
{
	enum num_result r = parse_num(f, n, out);

	if (r == NUM_RANGE)
		return tar_fail(t, EIO, "%s field out of range", what);
	if (r != NUM_OK)
		return tar_fail(t, EIO, "invalid %s field", what);
	if (!neg_ok && *out < 0)
		return tar_fail(t, EIO, "negative %s field", what);
	return 0;
}

static sf_ret hdr_num(struct sf_tar *t, size_t off, size_t n, const char *what, bool neg_ok,
		      int64_t *out)
{
	return field_num(t, t->hdr + off, n, what, neg_ok, out);
}

/* Unsigned decimal, the whole of s, at most max. */
static bool parse_dec(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';
		if (d > 9 || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* ---- header blocks ---- */

static bool is_zero_block(const unsigned char *b)
{
	for (size_t i = 0; i < BLOCK; i++)
		if (b[i])
			return false;
	return true;
}

/* Both the unsigned and the (historical, buggy) signed sum are accepted. */
static bool checksum_ok(const unsigned char *h)
{
	uint64_t usum = 0;
	int64_t ssum = 0, want;

	if (h[H_CHKSUM] & 0x80 || parse_octal(h + H_CHKSUM, H_CHKSUM_LEN, &want) != NUM_OK)
		return false;
	for (size_t i = 0; i < BLOCK; i++) {
		unsigned char c = h[i];
		if (i >= H_CHKSUM && i < H_CHKSUM + H_CHKSUM_LEN)
			c = ' ';
		usum += c;
		ssum += (signed char)c;
	}
	return (uint64_t)want == usum || want == ssum;
}

static enum tar_format header_format(const unsigned char *h)
{
	if (memcmp(h + H_MAGIC, MAGIC_GNU, sizeof(MAGIC_GNU)) == 0)
		return FMT_GNU;
	if (memcmp(h + H_MAGIC, MAGIC_USTAR, sizeof(MAGIC_USTAR)) == 0)
		return FMT_USTAR;
	return FMT_V7;
}

/* prefix "/" name for ustar, name alone otherwise; malloc'ed. */
static char *header_name(const unsigned char *h)
{
	size_t nlen = strnlen((const char *)h + H_NAME, H_NAME_LEN), plen = 0;
	char *s;

	if (header_format(h) == FMT_USTAR)
		plen = strnlen((const char *)h + H_PREFIX, H_PREFIX_LEN);
	s = malloc(plen + 1 + nlen + 1);
	if (!s)
		return NULL;
	if (plen) {
		memcpy(s, h + H_PREFIX, plen);
		s[plen++] = '/';
	}
	memcpy(s + plen, h + H_NAME, nlen);
	s[plen + nlen] = '\0';
	return s;
}

static void ename_from_header(struct sf_tar *t)
{
	char *name = header_name(t->hdr);

	if (name)
		set_ename(t, name, strlen(name));
	else
		t->ename[0] = '\0';
	free(name);
}

/* End marker seen in t->hdr: the next block must be zero, or cut short
 * (zeros up to the end of the stream), or absent. */
static sf_ret end_marker(struct sf_tar *t)
{
	uint64_t second = t->pos;
	ssize_t n;

	if (t->pending)
		return tar_fail(t, EIO, "extended header not followed by an entry");
	memset(t->hdr, 0, BLOCK);
	n = src_fill(t, t->hdr, BLOCK);
	if (n < 0)
		return (sf_ret)n;
	if (!is_zero_block(t->hdr)) {
		t->hdr_pos = second;
		t->ename[0] = '\0';
		return tar_fail(t, EIO, "zero block followed by a non-zero block");
	}
	t->state = ST_END;
	return 0;
}

/* 1: t->hdr holds a valid header; 0: end of archive. */
static sf_ret read_header(struct sf_tar *t)
{
	sf_ret r;

	t->hdr_pos = t->pos;
	r = read_block(t, t->hdr);
	if (r < 0)
		return r;
	if (r == 0) {
		if (t->pending)
			return truncated(t);
		t->state = ST_END;
		return 0;
	}
	if (is_zero_block(t->hdr))
		return end_marker(t);
	if (!checksum_ok(t->hdr)) {
		if (!t->ename[0])
			return tar_fail(t, EIO, "bad header checksum");
		return tar_fail(t, EIO, "bad header checksum at offset %" PRIu64, t->hdr_pos);
	}
	ename_from_header(t);
	return 1;
}

/* Size field of an extension header, checked against limit. */
static sf_ret ext_size(struct sf_tar *t, const char *what, uint64_t limit, uint64_t *size)
{
	int64_t v;
	sf_ret r = hdr_num(t, H_SIZE, H_SIZE_LEN, "size", false, &v);

	if (r < 0)
		return r;
	if ((uint64_t)v > limit)
		return tar_fail(t, EIO, "%s size %" PRId64 " exceeds limit %" PRIu64, what, v,
				limit);
	*size = (uint64_t)v;
	return 0;
}

/* Skip the body (and padding) of the header in t->hdr. */
static sf_ret skip_member(struct sf_tar *t)
{
	int64_t size;
	uint64_t left;
	sf_ret r = hdr_num(t, H_SIZE, H_SIZE_LEN, "size", false, &size);

	if (r < 0)
		return r;
	left = (uint64_t)size;
	r = skip_bytes(t, &left);
	if (r < 0)
		return r;
	left = padding((uint64_t)size);
	return skip_bytes(t, &left);
}

/* Read the body of an extension header into buf[0..size) and its padding. */
static sf_ret read_ext_body(struct sf_tar *t, char *buf, uint64_t size)
{
	uint64_t pad = padding(size);
	sf_ret r = read_exact(t, buf, (size_t)size);

	if (r < 0)
		return r;
	return skip_bytes(t, &pad);
}

/* GNU 'L' / 'K': the name is the body up to its first NUL. */
static sf_ret read_gnu_long(struct sf_tar *t, char **out, const char *what)
{
	uint64_t size;
	char *buf;
	sf_ret r = ext_size(t, what, SF_TAR_MAX_PATH + 1, &size);

	if (r < 0)
		return r;
	buf = malloc((size_t)size + 1);
	if (!buf)
		return no_memory(t);
	r = read_ext_body(t, buf, size);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[size] = '\0';
	if (strlen(buf) > SF_TAR_MAX_PATH) {
		free(buf);
		return tar_fail(t, EIO, "%s longer than %d bytes", what, SF_TAR_MAX_PATH);
	}
	free(*out);
	*out = buf;
	t->pending = true;
	return 0;
}

/* PAX 'x': append the records to the pending ones; parsed with the entry. */
static sf_ret read_pax_header(struct sf_tar *t)
{
	uint64_t size;
	char *buf;
	sf_ret r = ext_size(t, "PAX header", SF_TAR_MAX_PAX, &size);

	if (r < 0)
		return r;
	if (size > SF_TAR_MAX_PAX - t->pax_len)
		return tar_fail(t, EIO, "PAX headers exceed limit %d", SF_TAR_MAX_PAX);
	buf = realloc(t->pax_buf, t->pax_len + (size_t)size + 1);
	if (!buf)
		return no_memory(t);
	t->pax_buf = buf;
	r = read_ext_body(t, buf + t->pax_len, size);
	if (r < 0)
		return r;
	t->pax_len += (size_t)size;
	/* Trailing NULs (padding by some writers) are not records. */
	while (t->pax_len > 0 && buf[t->pax_len - 1] == '\0')
		t->pax_len--;
	t->pending = true;
	return 0;
}

/* ---- PAX records ---- */

static bool key_is(const struct pax_rec *r, const char *key)
{
	return r->klen == strlen(key) && memcmp(r->key, key, r->klen) == 0;
}

static bool key_has_prefix(const struct pax_rec *r, const char *prefix)
{
	size_t n = strlen(prefix);
	return r->klen >= n && memcmp(r->key, prefix, n) == 0;
}

/* Split the next "<len> key=value\n" record off [*p, end).  1: a record,
 * 0: no more records, < 0: malformed. */
static sf_ret pax_next(struct sf_tar *t, const char **p, const char *end, struct pax_rec *rec)
{
	const char *s = *p, *q = s, *body, *eq;
	size_t left = (size_t)(end - s), hlen;
	uint64_t len;

	if (left == 0)
		return 0;
	while (q < end && *q >= '0' && *q <= '9')
		q++;
	if (q == s || q == end || *q != ' ')
		return tar_fail(t, EIO, "malformed PAX record length");
	if (!parse_dec(s, (size_t)(q - s), SF_TAR_MAX_PAX, &len))
		return tar_fail(t, EIO, "PAX record length %.*s exceeds limit",
				(int)(q - s < QUOTE_MAX ? q - s : QUOTE_MAX), s);
	if (len > left)
		return tar_fail(t, EIO, "PAX record length %" PRIu64 " exceeds header size", len);
	hlen = (size_t)(q + 1 - s);
	if (len < hlen + 2 || s[len - 1] != '\n')
		return tar_fail(t, EIO, "PAX record length %" PRIu64 " does not match its record",
				len);
	body = s + hlen;
	eq = memchr(body, '=', (size_t)(s + len - 1 - body));
	if (!eq || eq == body || memchr(body, '\0', (size_t)(eq - body)))
		return tar_fail(t, EIO, "malformed PAX record key");
	rec->key = body;
	rec->klen = (size_t)(eq - body);
	rec->val = eq + 1;
	rec->vlen = (size_t)(s + len - 1 - rec->val);
	*p = s + len;
	return 1;
}

/* First pass: check the framing and learn the entry's name for messages. */
static sf_ret pax_scan_name(struct sf_tar *t)
{
	const char *p = t->pax_buf, *end = t->pax_buf + t->pax_len;
	struct pax_rec path = { 0 }, sname = { 0 }, rec;
	sf_ret r;

	while ((r = pax_next(t, &p, end, &rec)) > 0) {
		if (key_is(&rec, "path"))
			path = rec;
		else if (key_is(&rec, "GNU.sparse.name"))
			sname = rec;
	}
	if (r < 0)
		return r;
	if (sname.vlen)
		set_ename(t, sname.val, sname.vlen);
	else if (path.vlen)
		set_ename(t, path.val, path.vlen);
	return 0;
}

/* A path-like value; empty means "use the header's" (POSIX). */
static sf_ret pax_string(struct sf_tar *t, const struct pax_rec *r, char **out)
{
	char *s;

	free(*out);
	*out = NULL;
	if (r->vlen == 0)
		return 0;
	if (r->vlen > SF_TAR_MAX_PATH)
		return tar_fail(t, EIO, "PAX %.*s longer than %d bytes", (int)r->klen, r->key,
				SF_TAR_MAX_PATH);
	if (memchr(r->val, '\0', r->vlen))
		return tar_fail(t, EIO, "NUL byte in PAX %.*s", (int)r->klen, r->key);
	s = malloc(r->vlen + 1);
	if (!s)
		return no_memory(t);
	memcpy(s, r->val, r->vlen);
	s[r->vlen] = '\0';
	*out = s;
	return 0;
}

static sf_ret pax_number(struct sf_tar *t, const struct pax_rec *r, uint64_t max, bool *has,
			 uint64_t *out)
{
	char q[QUOTE_MAX];

	*has = false;
	if (r->vlen == 0)
		return 0;
	if (!parse_dec(r->val, r->vlen, max, out))
		return tar_fail(t, EIO, "invalid PAX %.*s '%s'", (int)r->klen, r->key,
				quote(q, r->val, r->vlen));
	*has = true;
	return 0;
}

/* "[-]sec[.frac]"; negative times are floored: -1.5 is sec -2 + 0.5e9 ns. */
static bool parse_pax_time(const char *s, size_t n, int64_t *sec, uint32_t *nsec)
{
	bool neg = n > 0 && s[0] == '-';
	const char *dot;
	uint64_t whole, frac = 0;
	size_t i, wlen;

	if (neg) {
		s++;
		n--;
	}
	dot = memchr(s, '.', n);
	wlen = dot ? (size_t)(dot - s) : n;
	if (!parse_dec(s, wlen, INT64_MAX, &whole))
		return false;
	for (i = wlen + (dot ? 1 : 0); i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';
		if (d > 9)
			return false;
		if (i - wlen <= NSEC_DIGITS)
			frac = frac * 10 + d;
	}
	for (i = dot ? n - wlen - 1 : 0; i < NSEC_DIGITS; i++)
		frac *= 10;
	if (neg && frac) {
		*sec = -(int64_t)whole - 1;
		*nsec = (uint32_t)(NSEC_PER_SEC - frac);
	} else {
		*sec = neg ? -(int64_t)whole : (int64_t)whole;
		*nsec = (uint32_t)frac;
	}
	return true;
}

static sf_ret pax_mtime(struct sf_tar *t, const struct pax_rec *r)
{
	char q[QUOTE_MAX];

	t->pax.has_mtime = false;
	if (r->vlen == 0)
		return 0;
	if (!parse_pax_time(r->val, r->vlen, &t->pax.mtime_sec, &t->pax.mtime_nsec))
		return tar_fail(t, EIO, "invalid PAX mtime '%s'", quote(q, r->val, r->vlen));
	t->pax.has_mtime = true;
	return 0;
}

/* ---- xattrs ---- */

static sf_ret xattr_set(struct sf_tar *t, char *name, unsigned char *value, size_t len)
{
	struct sf_tar_entry *e = &t->entry;
	size_t i;

	for (i = 0; i < e->n_xattrs; i++)
		if (strcmp(e->xattrs[i].name, name) == 0)
			break;
	if (i == e->n_xattrs) {
		if (e->n_xattrs >= SF_TAR_MAX_XATTRS) {
			free(name);
			free(value);
			return tar_fail(t, EIO, "more than %d xattrs", SF_TAR_MAX_XATTRS);
		}
		if (e->n_xattrs == t->xattr_cap) {
			size_t cap = t->xattr_cap ? 2 * t->xattr_cap : 8;
			struct sf_tar_xattr *v = realloc(e->xattrs, cap * sizeof(*v));
			if (!v) {
				free(name);
				free(value);
				return no_memory(t);
			}
			e->xattrs = v;
			t->xattr_cap = cap;
		}
		e->n_xattrs++;
	} else {
		free(e->xattrs[i].name);
		free(e->xattrs[i].value);
	}
	e->xattrs[i] = (struct sf_tar_xattr){ .name = name, .value = value, .len = len };
	return 0;
}

static sf_ret xattr_check(struct sf_tar *t, const char *name, size_t nlen, size_t vlen)
{
	char q[QUOTE_MAX];

	if (nlen == 0 || nlen > XATTR_NAME_MAX_LEN || memchr(name, '\0', nlen))
		return tar_fail(t, EIO, "invalid xattr name");
	if (vlen > SF_TAR_MAX_XATTR_VALUE)
		return tar_fail(t, EIO, "xattr %s value of %zu bytes exceeds limit %d",
				quote(q, name, nlen), vlen, SF_TAR_MAX_XATTR_VALUE);
	return 0;
}

static char *memdup_str(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* SCHILY.xattr.<name>=<raw bytes> */
static sf_ret pax_schily_xattr(struct sf_tar *t, const struct pax_rec *r, size_t plen)
{
	const char *name = r->key + plen;
	size_t nlen = r->klen - plen;
	char *n;
	unsigned char *v;
	sf_ret ret = xattr_check(t, name, nlen, r->vlen);

	if (ret < 0)
		return ret;
	n = memdup_str(name, nlen);
	v = malloc(r->vlen ? r->vlen : 1);
	if (!n || !v) {
		free(n);
		free(v);
		return no_memory(t);
	}
	memcpy(v, r->val, r->vlen);
	return xattr_set(t, n, v, r->vlen);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %XX-decode s into out (at least n + 1 bytes).  Returns the length or -1. */
static ssize_t url_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		if (n - i < 3)
			return -1;
		hi = hexval(s[i + 1]);
		lo = hexval(s[i + 2]);
		if (hi < 0 || lo < 0)
			return -1;
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	return (ssize_t)o;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decoded length of base64 s (padding optional), or -1 when invalid. */
static ssize_t b64_len(const char *s, size_t *n)
{
	size_t pad = 0;

	while (*n > 0 && s[*n - 1] == '=' && pad < 2) {
		(*n)--;
		pad++;
	}
	if (*n % 4 == 1)
		return -1;
	for (size_t i = 0; i < *n; i++)
		if (b64val(s[i]) < 0)
			return -1;
	return (ssize_t)(*n / 4 * 3 + (*n % 4 ? *n % 4 - 1 : 0));
}

static void b64_decode(const char *s, size_t n, unsigned char *out)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		acc = acc << 6 | (uint32_t)b64val(s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
}

/* LIBARCHIVE.xattr.<url-encoded name>=<base64 value> */
static sf_ret pax_libarchive_xattr(struct sf_tar *t, const struct pax_rec *r, size_t plen)
{
	size_t enlen = r->klen - plen, vlen = r->vlen;
	ssize_t nlen, dlen = b64_len(r->val, &vlen);
	char *name;
	unsigned char *v;
	sf_ret ret;

	if (dlen < 0)
		return tar_fail(t, EIO, "malformed LIBARCHIVE.xattr value");
	name = malloc(enlen + 1);
	if (!name)
		return no_memory(t);
	nlen = url_decode(r->key + plen, enlen, name);
	ret = nlen < 0 ? tar_fail(t, EIO, "malformed LIBARCHIVE.xattr name")
		       : xattr_check(t, name, (size_t)nlen, (size_t)dlen);
	if (ret < 0) {
		free(name);
		return ret;
	}
	v = malloc(dlen ? (size_t)dlen : 1);
	if (!v) {
		free(name);
		return no_memory(t);
	}
	b64_decode(r->val, vlen, v);
	return xattr_set(t, name, v, (size_t)dlen);
}

/* ---- sparse maps ---- */

static sf_ret seg_add(struct sf_tar *t, uint64_t offset, uint64_t len)
{
	struct seg_list *l = &t->segs;

	if (l->n >= SF_TAR_MAX_SPARSE_SEGMENTS)
		return tar_fail(t, EIO, "more than %d sparse segments", SF_TAR_MAX_SPARSE_SEGMENTS);
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct sparse_seg *v;
		if (cap > SF_TAR_MAX_SPARSE_SEGMENTS)
			cap = SF_TAR_MAX_SPARSE_SEGMENTS;
		v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return no_memory(t);
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct sparse_seg){ offset, len };
	return 0;
}

/* Sorted, non-overlapping, inside realsize, and exactly the stored bytes. */
static sf_ret sparse_check(struct sf_tar *t, uint64_t realsize, uint64_t stored)
{
	uint64_t end = 0, sum = 0;

	for (size_t i = 0; i < t->segs.n; i++) {
		const struct sparse_seg *s = &t->segs.v[i];
		if (s->offset < end)
			return tar_fail(t, EIO,
					"sparse segment at %" PRIu64 " overlaps or is out of order",
					s->offset);
		if (s->len > realsize || s->offset > realsize - s->len)
			return tar_fail(t, EIO,
					"sparse segment %" PRIu64 "+%" PRIu64
					" beyond real size %" PRIu64,
					s->offset, s->len, realsize);
		end = s->offset + s->len;
		sum += s->len;
	}
	if (sum != stored)
		return tar_fail(t, EIO,
				"sparse map covers %" PRIu64 " bytes but %" PRIu64 " are stored",
				sum, stored);
	return 0;
}

/* 0.1: GNU.sparse.map=off,len,off,len,... */
static sf_ret pax_sparse_map(struct sf_tar *t, const struct pax_rec *r)
{
	const char *p = r->val, *end = r->val + r->vlen;
	uint64_t num[2];
	int k = 0;

	if (t->segs.n)
		return tar_fail(t, EIO, "more than one GNU sparse map");
	t->pax.sparse_0x = true;
	while (p < end) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t n = c ? (size_t)(c - p) : (size_t)(end - p);
		if (!parse_dec(p, n, INT64_MAX, &num[k]) || (c && c + 1 == end))
			return tar_fail(t, EIO, "malformed GNU.sparse.map");
		if (++k == 2) {
			sf_ret ret = seg_add(t, num[0], num[1]);
			if (ret < 0)
				return ret;
			k = 0;
		}
		p += n + (c ? 1 : 0);
	}
	if (k)
		return tar_fail(t, EIO, "GNU.sparse.map has an odd number of values");
	return 0;
}

static sf_ret pax_sparse_num(struct sf_tar *t, const struct pax_rec *r, uint64_t max, uint64_t *out)
{
	char q[QUOTE_MAX];

	if (!parse_dec(r->val, r->vlen, max, out))
		return tar_fail(t, EIO, "invalid PAX %.*s '%s'", (int)r->klen, r->key,
				quote(q, r->val, r->vlen));
	return 0;
}

/* 0.0: GNU.sparse.offset and GNU.sparse.numbytes come in pairs. */
static sf_ret pax_sparse_pair(struct sf_tar *t, const struct pax_rec *r, bool is_offset)
{
	uint64_t v;
	sf_ret ret = pax_sparse_num(t, r, INT64_MAX, &v);

	if (ret < 0)
		return ret;
	t->pax.sparse_0x = true;
	if (is_offset == t->pax.offset_pending)
		return tar_fail(t, EIO,
				"GNU.sparse.offset and GNU.sparse.numbytes do not alternate");
	if (is_offset) {
		t->pax.offset = v;
		t->pax.offset_pending = true;
		return 0;
	}
	t->pax.offset_pending = false;
	return seg_add(t, t->pax.offset, v);
}

static sf_ret pax_sparse(struct sf_tar *t, const struct pax_rec *r)
{
	struct pax_info *x = &t->pax;

	if (key_is(r, "GNU.sparse.size") || key_is(r, "GNU.sparse.realsize")) {
		x->has_realsize = true;
		return pax_sparse_num(t, r, INT64_MAX, &x->realsize);
	}
	if (key_is(r, "GNU.sparse.numblocks")) {
		x->has_numblocks = x->sparse_0x = true;
		return pax_sparse_num(t, r, SF_TAR_MAX_SPARSE_SEGMENTS, &x->numblocks);
	}
	if (key_is(r, "GNU.sparse.offset"))
		return pax_sparse_pair(t, r, true);
	if (key_is(r, "GNU.sparse.numbytes"))
		return pax_sparse_pair(t, r, false);
	if (key_is(r, "GNU.sparse.map"))
		return pax_sparse_map(t, r);
	if (key_is(r, "GNU.sparse.name"))
		return pax_string(t, r, &x->sparse_name);
	if (key_is(r, "GNU.sparse.major")) {
		x->has_major = true;
		return pax_sparse_num(t, r, MAX_GNU_SPARSE_VERSION, &x->major);
	}
	if (key_is(r, "GNU.sparse.minor")) {
		x->has_minor = true;
		return pax_sparse_num(t, r, MAX_GNU_SPARSE_VERSION, &x->minor);
	}
	return 0;
}

static sf_ret pax_apply(struct sf_tar *t, const struct pax_rec *r)
{
	static const char schily[] = "SCHILY.xattr.", libarchive[] = "LIBARCHIVE.xattr.";
	struct pax_info *x = &t->pax;

	if (key_is(r, "path"))
		return pax_string(t, r, &x->path);
	if (key_is(r, "linkpath"))
		return pax_string(t, r, &x->linkpath);
	if (key_is(r, "size"))
		return pax_number(t, r, INT64_MAX, &x->has_size, &x->size);
	if (key_is(r, "uid"))
		return pax_number(t, r, INT64_MAX, &x->has_uid, &x->uid);
	if (key_is(r, "gid"))
		return pax_number(t, r, INT64_MAX, &x->has_gid, &x->gid);
	if (key_is(r, "mtime"))
		return pax_mtime(t, r);
	if (key_has_prefix(r, schily))
		return pax_schily_xattr(t, r, sizeof(schily) - 1);
	if (key_has_prefix(r, libarchive))
		return pax_libarchive_xattr(t, r, sizeof(libarchive) - 1);
	if (key_has_prefix(r, "GNU.sparse."))
		return pax_sparse(t, r);
	return 0; /* uname, gname, atime, ctime, comment, charset, ...: ignored */
}

static sf_ret parse_pax(struct sf_tar *t)
{
	const char *p, *end;
	struct pax_rec rec;
	sf_ret r;

	if (!t->pax_buf)
		return 0;
	p = t->pax_buf;
	end = p + t->pax_len;
	r = pax_scan_name(t);
	if (r < 0)
		return r;
	while ((r = pax_next(t, &p, end, &rec)) > 0) {
		r = pax_apply(t, &rec);
		if (r < 0)
			return r;
	}
	return r;
}

/* ---- sparse entries ---- */

/* Entries of an old GNU sparse list; an empty offset ends the block's list. */
static sf_ret gnu_sparse_list(struct sf_tar *t, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n && p[0] != '\0'; i++, p += GNU_SPARSE_ENTRY_LEN) {
		int64_t off, len;
		sf_ret r = field_num(t, p, GNU_SPARSE_NUM_LEN, "sparse offset", false, &off);
		if (r == 0)
			r = field_num(t, p + GNU_SPARSE_NUM_LEN, GNU_SPARSE_NUM_LEN,
				      "sparse numbytes", false, &len);
		if (r == 0)
			r = seg_add(t, (uint64_t)off, (uint64_t)len);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Old GNU 'S': map in the header, continued in extension blocks. */
static sf_ret read_gnu_sparse(struct sf_tar *t, uint64_t *realsize)
{
	unsigned char *blk = t->scratch;
	bool extended = t->hdr[H_GNU_ISEXTENDED] != 0;
	int64_t rs;
	sf_ret r = hdr_num(t, H_GNU_REALSIZE, GNU_SPARSE_NUM_LEN, "sparse real size", false, &rs);

	if (r < 0)
		return r;
	*realsize = (uint64_t)rs;
	r = gnu_sparse_list(t, t->hdr + H_GNU_SPARSE, GNU_SPARSE_IN_HEADER);
	for (size_t blocks = 0; r == 0 && extended; blocks++) {
		if (blocks >= MAX_GNU_SPARSE_EXT_BLOCKS)
			return tar_fail(t, EIO, "too many sparse extension blocks");
		r = read_block(t, blk);
		if (r == 0)
			return truncated(t);
		if (r > 0)
			r = gnu_sparse_list(t, blk, GNU_SPARSE_IN_EXT);
		extended = blk[EXT_ISEXTENDED] != 0;
	}
	return r;
}

struct map_reader {
	uint64_t v, count, offset;
	size_t ndigits;
	bool have_count, have_offset, done;
};

static sf_ret map10_number(struct sf_tar *t, struct map_reader *m)
{
	uint64_t v = m->v;

	m->v = 0;
	m->ndigits = 0;
	if (!m->have_count) {
		if (v > SF_TAR_MAX_SPARSE_SEGMENTS)
			return tar_fail(t, EIO, "GNU sparse map has %" PRIu64 " segments, limit %d",
					v, SF_TAR_MAX_SPARSE_SEGMENTS);
		m->count = v;
		m->have_count = true;
		m->done = v == 0;
		return 0;
	}
	if (!m->have_offset) {
		m->offset = v;
		m->have_offset = true;
		return 0;
	}
	m->have_offset = false;
	m->done = t->segs.n + 1 == m->count;
	return seg_add(t, m->offset, v);
}

static sf_ret map10_feed(struct sf_tar *t, struct map_reader *m, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n && !m->done; i++) {
		unsigned d = b[i] - (unsigned)'0';
		if (d <= 9) {
			if (m->v > ((uint64_t)INT64_MAX - d) / 10)
				return tar_fail(t, EIO, "number in GNU sparse map out of range");
			m->v = m->v * 10 + d;
			m->ndigits++;
		} else if (b[i] == '\n' && m->ndigits) {
			sf_ret r = map10_number(t, m);
			if (r < 0)
				return r;
		} else {
			return tar_fail(t, EIO, "malformed GNU sparse map");
		}
	}
	return 0;
}

/* 1.0: decimal lines at the start of the body, padded to a block. */
static sf_ret read_sparse10_map(struct sf_tar *t)
{
	struct map_reader m = { 0 };
	unsigned char *blk = t->scratch;

	while (!m.done) {
		sf_ret r;
		if (t->body_left < BLOCK)
			return tar_fail(t, EIO, "GNU sparse map larger than the entry's data");
		r = read_block(t, blk);
		if (r == 0)
			return truncated(t);
		if (r < 0)
			return r;
		t->body_left -= BLOCK;
		r = map10_feed(t, &m, blk, BLOCK);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Which sparse dialect, if any, the PAX records describe. */
static sf_ret pax_sparse_setup(struct sf_tar *t, bool *sparse, bool *map_in_data)
{
	struct pax_info *x = &t->pax;
	bool v1 = x->has_major || x->has_minor;

	*sparse = v1 || x->sparse_0x;
	*map_in_data = v1;
	if (!*sparse)
		return 0;
	if (v1 && (x->major != 1 || x->minor != 0 || !x->has_major || !x->has_minor))
		return tar_fail(t, EOPNOTSUPP, "unsupported GNU sparse format %" PRIu64 ".%" PRIu64,
				x->major, x->minor);
	if (v1 && x->sparse_0x)
		return tar_fail(t, EIO, "GNU sparse 1.0 entry also has a 0.x map");
	if (x->offset_pending)
		return tar_fail(t, EIO, "GNU.sparse.offset without GNU.sparse.numbytes");
	if (x->has_numblocks && x->numblocks != t->segs.n)
		return tar_fail(t, EIO, "GNU.sparse.numblocks is %" PRIu64 " but the map has %zu",
				x->numblocks, t->segs.n);
	if (!x->has_realsize)
		return tar_fail(t, EIO, "GNU sparse entry without a real size");
	return 0;
}

/* Set up the data of a regular entry: plain, or sparse of some dialect. */
static sf_ret setup_regular(struct sf_tar *t, uint64_t stored, bool old_gnu_sparse)
{
	struct sf_tar_entry *e = &t->entry;
	bool pax_sparse, map_in_data;
	uint64_t realsize = 0;
	sf_ret r = pax_sparse_setup(t, &pax_sparse, &map_in_data);

	if (r < 0)
		return r;
	t->has_data = true;
	e->size = stored;
	if (!pax_sparse && !old_gnu_sparse)
		return 0;
	if (pax_sparse && old_gnu_sparse)
		return tar_fail(t, EIO, "GNU sparse entry with both PAX and header maps");
	if (old_gnu_sparse)
		r = read_gnu_sparse(t, &realsize);
	else if (map_in_data)
		r = read_sparse10_map(t);
	if (r < 0)
		return r;
	if (pax_sparse)
		realsize = t->pax.realsize;
	r = sparse_check(t, realsize, t->body_left);
	if (r < 0)
		return r;
	t->sparse = true;
	e->size = realsize;
	return 0;
}

/* ---- building the entry ---- */

static enum sf_tar_type map_type(unsigned char flag)
{
	switch (flag) {
	case '1':
		return SF_TAR_HARDLINK;
	case '2':
		return SF_TAR_SYMLINK;
	case '3':
		return SF_TAR_CHR;
	case '4':
		return SF_TAR_BLK;
	case '5':
	case 'D': /* GNU dump directory: the body lists the contents */
		return SF_TAR_DIR;
	case '6':
		return SF_TAR_FIFO;
	default: /* '0', '\0', '7', 'S' and, per POSIX, anything unknown */
		return SF_TAR_REG;
	}
}

static sf_ret entry_strings(struct sf_tar *t)
{
	struct sf_tar_entry *e = &t->entry;
	size_t llen = strnlen((const char *)t->hdr + H_LINK, H_LINK_LEN);

	if (t->pax.sparse_name)
		e->path = steal_pointer(&t->pax.sparse_name);
	else if (t->pax.path)
		e->path = steal_pointer(&t->pax.path);
	else if (t->gnu_path)
		e->path = steal_pointer(&t->gnu_path);
	else
		e->path = header_name(t->hdr);
	if (e->type != SF_TAR_HARDLINK && e->type != SF_TAR_SYMLINK)
		e->linkname = calloc(1, 1);
	else if (t->pax.linkpath)
		e->linkname = steal_pointer(&t->pax.linkpath);
	else if (t->gnu_link)
		e->linkname = steal_pointer(&t->gnu_link);
	else
		e->linkname = memdup_str((const char *)t->hdr + H_LINK, llen);
	if (!e->path || !e->linkname)
		return no_memory(t);
	set_ename(t, e->path, strlen(e->path));
	return 0;
}

/* A numeric header field, unless PAX has overridden it. */
static sf_ret id_field(struct sf_tar *t, bool has_pax, uint64_t pax, size_t off, const char *what,
		       uint64_t *out)
{
	int64_t v;
	sf_ret r;

	if (has_pax) {
		*out = pax;
		return 0;
	}
	r = hdr_num(t, off, H_ID_LEN, what, false, &v);
	if (r == 0)
		*out = (uint64_t)v;
	return r;
}

static sf_ret entry_ids(struct sf_tar *t)
{
	struct sf_tar_entry *e = &t->entry;
	int64_t v;
	sf_ret r = hdr_num(t, H_MODE, H_MODE_LEN, "mode", false, &v);

	if (r < 0)
		return r;
	e->mode = (uint32_t)(v & MODE_MASK);
	r = id_field(t, t->pax.has_uid, t->pax.uid, H_UID, "uid", &e->uid);
	if (r == 0)
		r = id_field(t, t->pax.has_gid, t->pax.gid, H_GID, "gid", &e->gid);
	if (r < 0)
		return r;
	if (t->pax.has_mtime) {
		e->mtime_sec = t->pax.mtime_sec;
		e->mtime_nsec = t->pax.mtime_nsec;
		return 0;
	}
	r = hdr_num(t, H_MTIME, H_MTIME_LEN, "mtime", true, &v);
	e->mtime_sec = v;
	return r;
}

static sf_ret entry_dev(struct sf_tar *t)
{
	struct sf_tar_entry *e = &t->entry;
	int64_t ma, mi;
	sf_ret r;

	if ((e->type != SF_TAR_CHR && e->type != SF_TAR_BLK) || header_format(t->hdr) == FMT_V7)
		return 0;
	r = hdr_num(t, H_DEVMAJOR, H_DEV_LEN, "devmajor", false, &ma);
	if (r == 0)
		r = hdr_num(t, H_DEVMINOR, H_DEV_LEN, "devminor", false, &mi);
	if (r < 0)
		return r;
	if (ma > UINT32_MAX || mi > UINT32_MAX)
		return tar_fail(t, EIO, "device number out of range");
	e->devmajor = (uint32_t)ma;
	e->devminor = (uint32_t)mi;
	return 0;
}

/* libarchive's rule, see the top of the file.  1: the hard link has a body. */
static sf_ret hardlink_has_body(struct sf_tar *t, bool had_pax)
{
	sf_ret r;

	if (had_pax)
		return 1;
	if (header_format(t->hdr) == FMT_GNU)
		return 0;
	r = peek_block(t);
	if (r < 0)
		return r;
	if (t->la_len < BLOCK || is_zero_block(t->lookahead) || checksum_ok(t->lookahead))
		return 0;
	return 1;
}

/* How many body bytes follow the header, and what to do with them. */
static sf_ret entry_body(struct sf_tar *t, bool had_pax)
{
	struct sf_tar_entry *e = &t->entry;
	size_t plen = strlen(e->path);
	uint64_t stored = 0;
	int64_t v;
	sf_ret r = 0;

	if (t->pax.has_size)
		stored = t->pax.size;
	else if ((r = hdr_num(t, H_SIZE, H_SIZE_LEN, "size", false, &v)) == 0)
		stored = (uint64_t)v;
	if (r < 0)
		return r;
	/* Old v7 directory; not for 'S', whose extension blocks must be read. */
	if (e->type == SF_TAR_REG && t->hdr[H_TYPE] != 'S' && plen > 0 && e->path[plen - 1] == '/')
		e->type = SF_TAR_DIR;
	switch (e->type) {
	case SF_TAR_REG:
		t->body_left = stored;
		t->pad_left = padding(stored);
		return setup_regular(t, stored, t->hdr[H_TYPE] == 'S');
	case SF_TAR_SYMLINK:
	case SF_TAR_CHR:
	case SF_TAR_BLK:
	case SF_TAR_FIFO:
		return 0;
	case SF_TAR_HARDLINK:
		r = stored ? hardlink_has_body(t, had_pax) : 0;
		if (r <= 0)
			return r;
		break;
	case SF_TAR_DIR:
		break;
	}
	t->body_left = stored;
	t->pad_left = padding(stored);
	return 0;
}

static sf_ret build_entry(struct sf_tar *t)
{
	bool had_pax = t->pax_buf != NULL;
	sf_ret r;

	if (t->gnu_path)
		set_ename(t, t->gnu_path, strlen(t->gnu_path));
	r = parse_pax(t);
	if (r < 0)
		return r;
	t->entry.type = map_type(t->hdr[H_TYPE]);
	r = entry_strings(t);
	if (r == 0)
		r = entry_ids(t);
	if (r == 0)
		r = entry_dev(t);
	if (r == 0)
		r = entry_body(t, had_pax);
	if (r < 0)
		return r;
	t->pending = false;
	return 1;
}

/* Headers until a real entry: 1 with the entry set up, 0 at the end. */
static sf_ret read_entry(struct sf_tar *t)
{
	for (;;) {
		sf_ret r = read_header(t);
		if (r <= 0)
			return r;
		switch (t->hdr[H_TYPE]) {
		case 'x':
		case 'X': /* old Solaris spelling */
			r = read_pax_header(t);
			break;
		case 'L':
			r = read_gnu_long(t, &t->gnu_path, "GNU long name");
			break;
		case 'K':
			r = read_gnu_long(t, &t->gnu_link, "GNU long link name");
			break;
		case 'g': /* global PAX header: ignored */
		case 'V': /* volume label */
		case 'M': /* multi-volume continuation */
		case 'N': /* old GNU long names */
			r = skip_member(t);
			break;
		default:
			return build_entry(t);
		}
		if (r < 0)
			return r;
	}
}

/* ---- per-entry state ---- */

static void free_pending(struct sf_tar *t)
{
	free(t->pax_buf);
	free(t->gnu_path);
	free(t->gnu_link);
	free(t->pax.path);
	free(t->pax.linkpath);
	free(t->pax.sparse_name);
	t->pax_buf = t->gnu_path = t->gnu_link = NULL;
	t->pax_len = 0;
	t->pending = false;
	memset(&t->pax, 0, sizeof(t->pax));
}

static void free_entry(struct sf_tar *t)
{
	struct sf_tar_entry *e = &t->entry;

	free(e->path);
	free(e->linkname);
	for (size_t i = 0; i < e->n_xattrs; i++) {
		free(e->xattrs[i].name);
		free(e->xattrs[i].value);
	}
	free(e->xattrs);
	memset(e, 0, sizeof(*e));
	t->xattr_cap = 0;
	free(t->segs.v);
	t->segs = (struct seg_list){ 0 };
	t->has_data = t->sparse = false;
	t->body_left = t->pad_left = t->lpos = 0;
	t->seg_idx = 0;
	t->seg_done = 0;
}

/* Consume what is left of the current entry's body and padding. */
static sf_ret finish_body(struct sf_tar *t)
{
	sf_ret r = skip_bytes(t, &t->body_left);

	if (r == 0)
		r = skip_bytes(t, &t->pad_left);
	t->has_data = false;
	return r;
}

/* ---- public ---- */

sf_ret sf_tar_new(struct sf_reader src, struct sf_tar **out)
{
	struct sf_tar *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->src = src;
	t->state = ST_HEADER;
	*out = t;
	return 0;
}

int sf_tar_next(struct sf_tar *t, const struct sf_tar_entry **entry, struct sf_error *err)
{
	sf_ret r;

	if (t->state == ST_FAILED)
		return report(t, -EIO, err);
	if (t->state == ST_END)
		return 0;
	r = finish_body(t);
	if (r < 0)
		return report(t, r, err);
	free_entry(t);
	free_pending(t);
	t->ename[0] = '\0';
	r = read_entry(t);
	free_pending(t);
	if (r < 0)
		return report(t, r, err);
	if (r == 0)
		return 0;
	*entry = &t->entry;
	return 1;
}

static ssize_t read_plain(struct sf_tar *t, uint64_t *offset, void *buf, size_t len)
{
	ssize_t n;

	if (len > t->body_left)
		len = (size_t)t->body_left;
	if (len == 0)
		return 0;
	n = src_some(t, buf, len);
	if (n == 0)
		return truncated(t);
	if (n > 0) {
		*offset = t->lpos;
		t->lpos += (uint64_t)n;
		t->body_left -= (uint64_t)n;
	}
	return n;
}

static ssize_t read_sparse(struct sf_tar *t, uint64_t *offset, void *buf, size_t len)
{
	const struct sparse_seg *s;
	ssize_t n;

	while (t->seg_idx < t->segs.n && t->seg_done == t->segs.v[t->seg_idx].len) {
		t->seg_idx++;
		t->seg_done = 0;
	}
	if (t->seg_idx == t->segs.n)
		return 0;
	s = &t->segs.v[t->seg_idx];
	if (len > s->len - t->seg_done)
		len = (size_t)(s->len - t->seg_done);
	n = src_some(t, buf, len);
	if (n == 0)
		return truncated(t);
	if (n > 0) {
		*offset = s->offset + t->seg_done;
		t->seg_done += (uint64_t)n;
		t->body_left -= (uint64_t)n;
	}
	return n;
}

ssize_t sf_tar_read_data(struct sf_tar *t, uint64_t *offset, void *buf, size_t len,
			 struct sf_error *err)
{
	ssize_t n;

	if (t->state == ST_FAILED)
		return report(t, -EIO, err);
	if (!t->has_data || len == 0)
		return 0;
	n = t->sparse ? read_sparse(t, offset, buf, len) : read_plain(t, offset, buf, len);
	if (n == 0)
		n = finish_body(t);
	if (n < 0)
		return report(t, (sf_ret)n, err);
	return n;
}

void sf_tar_free(struct sf_tar *t)
{
	if (!t)
		return;
	free_entry(t);
	free_pending(t);
	free(t);
}
