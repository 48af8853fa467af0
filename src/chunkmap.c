/* chunkmap.c - the persisted map of a spool's final byte ranges; the file
 * format and its crash rules are in chunkmap.h.
 *
 * On-disk integers are little-endian.  Header (96 bytes):
 *   0  "SFCHMAP1"   8  u64 blob size   16  64 hex chars of the digest
 *   80 u32 CRC-32 of bytes [0, 80)   84  12 zero bytes
 * Record (32 bytes):
 *   0  u32 RECORD_MAGIC   4 u32 0   8 u64 off   16 u64 len
 *   24 u32 CRC-32 of bytes [0, 24)   28 u32 0
 * CRC-32 is zlib's (a well-kept library already linked for gzip).
 */
#include "chunkmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "digest.h"

#define HEADER_MAGIC "SFCHMAP1"
#define RECORD_MAGIC 0x52434653u /* "SFCR" */
#define HEX_LEN 64

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t crc(const unsigned char *p, size_t len)
{
	return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)len);
}

static void make_header(unsigned char *h, const char *hex, uint64_t size)
{
	memset(h, 0, SF_CHUNKMAP_HEADER_SIZE);
	memcpy(h, HEADER_MAGIC, 8);
	put_u64(h + 8, size);
	memcpy(h + 16, hex, HEX_LEN);
	put_u32(h + 80, crc(h, 80));
}

static bool header_valid(const unsigned char *h)
{
	return memcmp(h, HEADER_MAGIC, 8) == 0 && get_u32(h + 80) == crc(h, 80);
}

static void make_record(unsigned char *r, uint64_t off, uint64_t len)
{
	memset(r, 0, SF_CHUNKMAP_RECORD_SIZE);
	put_u32(r, RECORD_MAGIC);
	put_u64(r + 8, off);
	put_u64(r + 16, len);
	put_u32(r + 24, crc(r, 24));
}

/* A record is usable when intact and inside a blob of `size` bytes. */
static bool record_valid(const unsigned char *r, uint64_t size, uint64_t *off, uint64_t *len)
{
	if (get_u32(r) != RECORD_MAGIC || get_u32(r + 24) != crc(r, 24))
		return false;
	*off = get_u64(r + 8);
	*len = get_u64(r + 16);
	return *len > 0 && *off <= size && *len <= size - *off;
}

/* ---- the range set (caller holds m->lock) ---- */

static int ranges_insert(struct sf_chunkmap *m, uint64_t off, uint64_t end)
{
	size_t i = 0, j;

	while (i < m->n && m->ranges[i].end < off)
		i++; /* ranges[i] is the first that touches or follows [off, end) */
	j = i;
	while (j < m->n && m->ranges[j].off <= end) {
		if (m->ranges[j].off < off)
			off = m->ranges[j].off;
		if (m->ranges[j].end > end)
			end = m->ranges[j].end;
		m->bytes -= m->ranges[j].end - m->ranges[j].off;
		j++;
	}
	/* ranges [i, j) merge into one */
	if (i == j) {
		if (m->n == m->cap) {
			size_t cap = m->cap ? 2 * m->cap : 16;
			struct sf_range *a;
			if (m->n >= SF_CHUNKMAP_MAX_RECORDS)
				return -E2BIG;
			a = realloc(m->ranges, cap * sizeof(*a));
			if (!a)
				return -ENOMEM;
			m->ranges = a;
			m->cap = cap;
		}
		memmove(&m->ranges[i + 1], &m->ranges[i], (m->n - i) * sizeof(*m->ranges));
		m->n++;
	} else if (j - i > 1) {
		memmove(&m->ranges[i + 1], &m->ranges[j], (m->n - j) * sizeof(*m->ranges));
		m->n -= j - i - 1;
	}
	m->ranges[i] = (struct sf_range){ off, end };
	m->bytes += end - off;
	return 0;
}

/* ---- files ---- */

static ssize_t read_full(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static sf_ret write_full(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Read the records after a valid header into m; returns the file offset
 * just past the last valid one. */
static off_t load_records(struct sf_chunkmap *m)
{
	unsigned char r[SF_CHUNKMAP_RECORD_SIZE];
	off_t pos = SF_CHUNKMAP_HEADER_SIZE;
	uint64_t off, len;

	while (read_full(m->fd, r, sizeof(r), pos) == (ssize_t)sizeof(r) &&
	       record_valid(r, m->size, &off, &len)) {
		if (ranges_insert(m, off, off + len) < 0)
			break; /* too many: the rest is refetched */
		pos += (off_t)sizeof(r);
	}
	return pos;
}

static sf_ret reset_file(struct sf_chunkmap *m, const char *hex)
{
	unsigned char h[SF_CHUNKMAP_HEADER_SIZE];
	sf_ret r;

	if (ftruncate(m->fd, 0) < 0)
		return -errno;
	make_header(h, hex, m->size);
	r = write_full(m->fd, h, sizeof(h), 0);
	if (r == 0 && fdatasync(m->fd) < 0)
		r = -errno;
	return r;
}

sf_ret sf_chunkmap_open(const char *path, const char *digest, uint64_t size,
			struct sf_chunkmap **out, bool *loaded, struct sf_error *err)
{
	unsigned char h[SF_CHUNKMAP_HEADER_SIZE], want[SF_CHUNKMAP_HEADER_SIZE];
	const char *hex = sf_digest_hex(digest);
	struct sf_chunkmap *m;
	off_t end;
	sf_ret r;

	if (strlen(hex) != HEX_LEN)
		return sf_fail(err, EINVAL, "chunk map %s: bad digest %s", path, digest);
	m = calloc(1, sizeof(*m));
	if (!m)
		return sf_fail(err, ENOMEM, "out of memory");
	pthread_mutex_init(&m->lock, NULL);
	m->size = size;
	m->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (m->fd < 0) {
		r = sf_fail(err, errno, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	make_header(want, hex, size);
	*loaded = read_full(m->fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) && header_valid(h) &&
		  memcmp(h, want, sizeof(h)) == 0;
	if (*loaded) {
		end = load_records(m);
		/* cut a torn or garbage tail, so appends follow the valid part */
		if (ftruncate(m->fd, end) < 0) {
			r = sf_fail(err, errno, "cannot truncate %s: %s", path, strerror(errno));
			goto fail;
		}
	} else {
		r = reset_file(m, hex);
		if (r < 0) {
			sf_fail(err, -r, "cannot write %s: %s", path, strerror(-r));
			goto fail;
		}
	}
	*out = m;
	return 0;
fail:
	sf_chunkmap_free(m);
	return r;
}

void sf_chunkmap_free(struct sf_chunkmap *m)
{
	if (!m)
		return;
	if (m->fd >= 0)
		close(m->fd);
	free(m->ranges);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

sf_ret sf_chunkmap_add_many(struct sf_chunkmap *m, const struct sf_range *rs, size_t n)
{
	_cleanup_free_ unsigned char *buf = NULL;
	struct stat st;
	sf_ret ret = 0;

	if (n == 0)
		return 0;
	if (n > SF_CHUNKMAP_MAX_BATCH)
		return -E2BIG;
	for (size_t i = 0; i < n; i++)
		if (rs[i].end <= rs[i].off || rs[i].end > m->size)
			return -EINVAL;
	buf = malloc(n * SF_CHUNKMAP_RECORD_SIZE);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		make_record(buf + i * SF_CHUNKMAP_RECORD_SIZE, rs[i].off, rs[i].end - rs[i].off);
	/* appended at the end in one write; only one thread appends (the
	 * spool's persister, resume.c) */
	if (fstat(m->fd, &st) < 0)
		return -errno;
	ret = write_full(m->fd, buf, n * SF_CHUNKMAP_RECORD_SIZE, st.st_size);
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = ranges_insert(m, rs[i].off, rs[i].end);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

sf_ret sf_chunkmap_add(struct sf_chunkmap *m, uint64_t off, uint64_t len)
{
	struct sf_range r = { off, off + len };

	if (len == 0 || off > m->size || len > m->size - off)
		return -EINVAL;
	return sf_chunkmap_add_many(m, &r, 1);
}

uint64_t sf_chunkmap_present(struct sf_chunkmap *m, uint64_t off, uint64_t len)
{
	uint64_t got = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n; i++) {
		if (m->ranges[i].off <= off && off < m->ranges[i].end) {
			uint64_t avail = m->ranges[i].end - off;
			got = avail < len ? avail : len;
			break;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return got;
}

uint64_t sf_chunkmap_bytes(struct sf_chunkmap *m)
{
	uint64_t b;

	pthread_mutex_lock(&m->lock);
	b = m->bytes;
	pthread_mutex_unlock(&m->lock);
	return b;
}

int64_t sf_chunkmap_peek(const char *path)
{
	unsigned char h[SF_CHUNKMAP_HEADER_SIZE];
	struct sf_chunkmap m = { .fd = -1 };
	int64_t ret = -EINVAL;

	m.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m.fd < 0)
		return -errno;
	pthread_mutex_init(&m.lock, NULL);
	if (read_full(m.fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) && header_valid(h)) {
		m.size = get_u64(h + 8);
		load_records(&m);
		ret = (int64_t)m.bytes;
	}
	close(m.fd);
	free(m.ranges);
	pthread_mutex_destroy(&m.lock);
	return ret;
}
