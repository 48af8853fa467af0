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
 *
 * Files.  This one is the core: reading blocks from the source, header
 * parsing and checksums, numeric fields, extension headers ('x' bodies are
 * only gathered here), assembling the entry, handing out plain data and the
 * public API.  tar_pax.c parses the PAX records and xattrs; tar_sparse.c has
 * every sparse dialect (old GNU 'S', PAX 0.0/0.1/1.0) and reads sparse data.
 * tar-private.h holds struct sf_tar and what the three share.
 */
#include "tar-private.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODE_MASK 07777

static const char MAGIC_GNU[8] = { 'u', 's', 't', 'a', 'r', ' ', ' ', '\0' };
static const char MAGIC_USTAR[6] = { 'u', 's', 't', 'a', 'r', '\0' };

enum tar_format { FMT_V7, FMT_USTAR, FMT_GNU };
enum num_result { NUM_OK = 0, NUM_BAD = -1, NUM_RANGE = -2 };

/* ---- errors ---- */

void tar_set_ename(struct sf_tar *t, const char *s, size_t len)
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
const char *tar_quote(char out[QUOTE_MAX], const char *s, size_t n)
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

/* Where a failure at archive offset `off` is, for messages: the entry whose
 * headers or data were being read; else (a header that cannot be trusted to
 * name itself, e.g. a bad checksum) the offset, and the entry before it,
 * since tools that list an archive show entries, not offsets. */
static const char *where(const struct sf_tar *t, uint64_t off, char *buf, size_t len)
{
	if (t->ename[0])
		snprintf(buf, len, "tar entry %s", t->ename);
	else if (t->prev_ename[0])
		snprintf(buf, len, "tar archive offset %" PRIu64 " (after entry %s)", off,
			 t->prev_ename);
	else
		snprintf(buf, len, "tar archive offset %" PRIu64, off);
	return buf;
}

sf_ret tar_fail(struct sf_tar *t, int code, const char *fmt, ...)
{
	char what[SF_ERROR_MSG_MAX], at[ENAME_MAX * 2 + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return sf_fail(&t->fail, code, "%s: %s", where(t, t->hdr_pos, at, sizeof(at)), what);
}

sf_ret tar_truncated(struct sf_tar *t)
{
	if (t->ename[0])
		return sf_fail(&t->fail, EIO, "truncated tar archive in entry %s", t->ename);
	if (t->prev_ename[0])
		return sf_fail(&t->fail, EIO,
			       "truncated tar archive at offset %" PRIu64 " (after entry %s)",
			       t->pos, t->prev_ename);
	return sf_fail(&t->fail, EIO, "truncated tar archive at offset %" PRIu64, t->pos);
}

/* The source failed (a corrupt or truncated compressed stream, a
 * decompression bomb, a failed download): its message says what, this
 * says where in the archive.  At the very start there is nothing to add. */
static void source_failed(struct sf_tar *t, ssize_t n)
{
	char at[ENAME_MAX * 2 + 64];

	if (!t->ename[0] && !t->prev_ename[0])
		return;
	if (!t->fail.msg[0])
		sf_fail(&t->fail, (int)-n, "%s", strerror((int)-n));
	sf_error_prefix(&t->fail, "%s", where(t, t->pos, at, sizeof(at)));
}

sf_ret tar_no_memory(struct sf_tar *t)
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
ssize_t tar_src_some(struct sf_tar *t, void *buf, size_t len)
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
	if (n < 0) {
		source_failed(t, n);
		return n;
	}
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
		ssize_t n = tar_src_some(t, p + got, len - got);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* 1: a full block, 0: end of stream at the block boundary, < 0: error. */
sf_ret tar_read_block(struct sf_tar *t, unsigned char *buf)
{
	ssize_t n = src_fill(t, buf, BLOCK);

	if (n < 0)
		return (sf_ret)n;
	if (n == 0)
		return 0;
	if (n < BLOCK)
		return tar_truncated(t);
	return 1;
}

/* Read exactly len bytes; the end of the stream is a truncation. */
static sf_ret read_exact(struct sf_tar *t, void *buf, size_t len)
{
	ssize_t n = src_fill(t, buf, len);

	if (n < 0)
		return (sf_ret)n;
	if ((size_t)n < len)
		return tar_truncated(t);
	return 0;
}

static sf_ret skip_bytes(struct sf_tar *t, uint64_t *left)
{
	while (*left > 0) {
		size_t k = *left < SKIP_BUF ? (size_t)*left : SKIP_BUF;
		ssize_t n = tar_src_some(t, t->scratch, k);
		if (n < 0)
			return (sf_ret)n;
		if (n == 0)
			return tar_truncated(t);
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

sf_ret tar_field_num(struct sf_tar *t, const unsigned char *f, size_t n, const char *what,
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

sf_ret tar_hdr_num(struct sf_tar *t, size_t off, size_t n, const char *what, bool neg_ok,
		   int64_t *out)
{
	return tar_field_num(t, t->hdr + off, n, what, neg_ok, out);
}

/* Unsigned decimal, the whole of s, at most max. */
bool tar_parse_dec(const char *s, size_t n, uint64_t max, uint64_t *out)
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

char *tar_memdup_str(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
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
		tar_set_ename(t, name, strlen(name));
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
	r = tar_read_block(t, t->hdr);
	if (r < 0)
		return r;
	if (r == 0) {
		if (t->pending)
			return tar_truncated(t);
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
	sf_ret r = tar_hdr_num(t, H_SIZE, H_SIZE_LEN, "size", false, &v);

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
	sf_ret r = tar_hdr_num(t, H_SIZE, H_SIZE_LEN, "size", false, &size);

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
		return tar_no_memory(t);
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
		return tar_no_memory(t);
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
		e->linkname = tar_memdup_str((const char *)t->hdr + H_LINK, llen);
	if (!e->path || !e->linkname)
		return tar_no_memory(t);
	tar_set_ename(t, e->path, strlen(e->path));
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
	r = tar_hdr_num(t, off, H_ID_LEN, what, false, &v);
	if (r == 0)
		*out = (uint64_t)v;
	return r;
}

static sf_ret entry_ids(struct sf_tar *t)
{
	struct sf_tar_entry *e = &t->entry;
	int64_t v;
	sf_ret r = tar_hdr_num(t, H_MODE, H_MODE_LEN, "mode", false, &v);

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
	r = tar_hdr_num(t, H_MTIME, H_MTIME_LEN, "mtime", true, &v);
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
	r = tar_hdr_num(t, H_DEVMAJOR, H_DEV_LEN, "devmajor", false, &ma);
	if (r == 0)
		r = tar_hdr_num(t, H_DEVMINOR, H_DEV_LEN, "devminor", false, &mi);
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
	else if ((r = tar_hdr_num(t, H_SIZE, H_SIZE_LEN, "size", false, &v)) == 0)
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
		return tar_setup_regular(t, stored, t->hdr[H_TYPE] == 'S');
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
		tar_set_ename(t, t->gnu_path, strlen(t->gnu_path));
	r = tar_parse_pax(t);
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
	if (t->ename[0])
		memcpy(t->prev_ename, t->ename, sizeof(t->prev_ename));
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
	n = tar_src_some(t, buf, len);
	if (n == 0)
		return tar_truncated(t);
	if (n > 0) {
		*offset = t->lpos;
		t->lpos += (uint64_t)n;
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
	n = t->sparse ? tar_read_sparse(t, offset, buf, len) : read_plain(t, offset, buf, len);
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
