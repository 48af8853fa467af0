/* tar-private.h - internals shared by the modules of the tar reader.
 *
 * tar.c is the core (blocks, headers, numbers, entries, data, the public
 * API), tar_pax.c parses PAX records and xattrs, tar_sparse.c handles every
 * GNU sparse dialect.  Nothing outside those three files includes this.
 */
#ifndef SF_TAR_PRIVATE_H
#define SF_TAR_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "reader.h"
#include "tar.h"

#define BLOCK 512
#define ENAME_MAX 512 /* longest entry name quoted in a message */
#define QUOTE_MAX 48  /* longest value quoted in a message */
#define SKIP_BUF (16 * 1024)

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

enum tar_state { ST_HEADER, ST_END, ST_FAILED };

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
	char prev_ename[ENAME_MAX]; /* the entry before, "" at the start: locates
				       a header that cannot name itself */
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

/* ---- tar.c ---- */

/* Errors: set t->fail (naming the entry, else the header's offset and the
 * entry before it). */
sf_ret tar_fail(struct sf_tar *t, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
sf_ret tar_truncated(struct sf_tar *t);
sf_ret tar_no_memory(struct sf_tar *t);
/* Entry name for messages, from len bytes of s (made printable, cut short). */
void tar_set_ename(struct sf_tar *t, const char *s, size_t len);
/* A short printable copy of an archive value, for messages. */
const char *tar_quote(char out[QUOTE_MAX], const char *s, size_t n);

/* One read from the source (the peeked block first): count, 0 at the end,
 * < 0 on error. */
ssize_t tar_src_some(struct sf_tar *t, void *buf, size_t len);
/* 1: a full block, 0: end of stream at the block boundary, < 0: error. */
sf_ret tar_read_block(struct sf_tar *t, unsigned char *buf);

/* Octal or base-256 field f[0..n) (negative only if neg_ok); what names it
 * in messages.  tar_hdr_num reads the field at off in t->hdr. */
sf_ret tar_field_num(struct sf_tar *t, const unsigned char *f, size_t n, const char *what,
		     bool neg_ok, int64_t *out);
sf_ret tar_hdr_num(struct sf_tar *t, size_t off, size_t n, const char *what, bool neg_ok,
		   int64_t *out);
/* Unsigned decimal, the whole of s, at most max. */
bool tar_parse_dec(const char *s, size_t n, uint64_t max, uint64_t *out);
/* s[0..n) as a malloc'ed string, NULL when out of memory. */
char *tar_memdup_str(const char *s, size_t n);

/* ---- tar_pax.c ---- */

/* Apply the pending PAX records (t->pax_buf) to t->pax and t->entry. */
sf_ret tar_parse_pax(struct sf_tar *t);
bool tar_pax_key_is(const struct pax_rec *r, const char *key);
/* A path-like value into *out; empty means "use the header's" (NULL). */
sf_ret tar_pax_string(struct sf_tar *t, const struct pax_rec *r, char **out);

/* ---- tar_sparse.c ---- */

/* A GNU.sparse.* record. */
sf_ret tar_pax_sparse(struct sf_tar *t, const struct pax_rec *r);
/* Set up the data of a regular entry of stored body bytes (t->body_left):
 * plain, or sparse of some dialect (old GNU 'S' when old_gnu_sparse). */
sf_ret tar_setup_regular(struct sf_tar *t, uint64_t stored, bool old_gnu_sparse);
/* sf_tar_read_data() for a sparse entry. */
ssize_t tar_read_sparse(struct sf_tar *t, uint64_t *offset, void *buf, size_t len);

#endif
