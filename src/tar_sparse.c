/* tar_sparse.c - GNU sparse files for the tar reader (see tar.c).
 *
 * Every dialect ends up as one sorted list of (offset, length) segments in
 * t->segs, checked against the real size and the stored bytes: old GNU 'S'
 * (map in the header and extension blocks), PAX 0.0 (GNU.sparse.offset and
 * numbytes pairs), 0.1 (GNU.sparse.map) and 1.0 (decimal lines at the start
 * of the data).  The data is then handed out segment by segment.
 */
#include "tar-private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GNU_SPARSE_VERSION 1000000
#define MAX_GNU_SPARSE_EXT_BLOCKS (SF_TAR_MAX_SPARSE_SEGMENTS / GNU_SPARSE_IN_EXT + 1)

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
			return tar_no_memory(t);
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
		if (!tar_parse_dec(p, n, INT64_MAX, &num[k]) || (c && c + 1 == end))
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

	if (!tar_parse_dec(r->val, r->vlen, max, out))
		return tar_fail(t, EIO, "invalid PAX %.*s '%s'", (int)r->klen, r->key,
				tar_quote(q, r->val, r->vlen));
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

sf_ret tar_pax_sparse(struct sf_tar *t, const struct pax_rec *r)
{
	struct pax_info *x = &t->pax;

	if (tar_pax_key_is(r, "GNU.sparse.size") || tar_pax_key_is(r, "GNU.sparse.realsize")) {
		x->has_realsize = true;
		return pax_sparse_num(t, r, INT64_MAX, &x->realsize);
	}
	if (tar_pax_key_is(r, "GNU.sparse.numblocks")) {
		x->has_numblocks = x->sparse_0x = true;
		return pax_sparse_num(t, r, SF_TAR_MAX_SPARSE_SEGMENTS, &x->numblocks);
	}
	if (tar_pax_key_is(r, "GNU.sparse.offset"))
		return pax_sparse_pair(t, r, true);
	if (tar_pax_key_is(r, "GNU.sparse.numbytes"))
		return pax_sparse_pair(t, r, false);
	if (tar_pax_key_is(r, "GNU.sparse.map"))
		return pax_sparse_map(t, r);
	if (tar_pax_key_is(r, "GNU.sparse.name"))
		return tar_pax_string(t, r, &x->sparse_name);
	if (tar_pax_key_is(r, "GNU.sparse.major")) {
		x->has_major = true;
		return pax_sparse_num(t, r, MAX_GNU_SPARSE_VERSION, &x->major);
	}
	if (tar_pax_key_is(r, "GNU.sparse.minor")) {
		x->has_minor = true;
		return pax_sparse_num(t, r, MAX_GNU_SPARSE_VERSION, &x->minor);
	}
	return 0;
}

/* ---- sparse entries ---- */

/* Entries of an old GNU sparse list; an empty offset ends the block's list. */
static sf_ret gnu_sparse_list(struct sf_tar *t, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n && p[0] != '\0'; i++, p += GNU_SPARSE_ENTRY_LEN) {
		int64_t off, len;
		sf_ret r = tar_field_num(t, p, GNU_SPARSE_NUM_LEN, "sparse offset", false, &off);
		if (r == 0)
			r = tar_field_num(t, p + GNU_SPARSE_NUM_LEN, GNU_SPARSE_NUM_LEN,
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
	sf_ret r = tar_hdr_num(t, H_GNU_REALSIZE, GNU_SPARSE_NUM_LEN, "sparse real size", false,
			       &rs);

	if (r < 0)
		return r;
	*realsize = (uint64_t)rs;
	r = gnu_sparse_list(t, t->hdr + H_GNU_SPARSE, GNU_SPARSE_IN_HEADER);
	for (size_t blocks = 0; r == 0 && extended; blocks++) {
		if (blocks >= MAX_GNU_SPARSE_EXT_BLOCKS)
			return tar_fail(t, EIO, "too many sparse extension blocks");
		r = tar_read_block(t, blk);
		if (r == 0)
			return tar_truncated(t);
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
		r = tar_read_block(t, blk);
		if (r == 0)
			return tar_truncated(t);
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
sf_ret tar_setup_regular(struct sf_tar *t, uint64_t stored, bool old_gnu_sparse)
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

/* ---- sparse data ---- */

ssize_t tar_read_sparse(struct sf_tar *t, uint64_t *offset, void *buf, size_t len)
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
	n = tar_src_some(t, buf, len);
	if (n == 0)
		return tar_truncated(t);
	if (n > 0) {
		*offset = s->offset + t->seg_done;
		t->seg_done += (uint64_t)n;
		t->body_left -= (uint64_t)n;
	}
	return n;
}
