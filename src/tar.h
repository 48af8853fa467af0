/* tar.h - streaming tar reader (pull-style) for OCI layers.
 *
 * Understands ustar, PAX (path, linkpath, size, uid, gid, mtime with
 * fractions, SCHILY.xattr.*, GNU.sparse.* 0.0/0.1/1.0), GNU long names and
 * link names (L/K), GNU old sparse ('S'), base-256 numeric fields, old v7
 * headers.  Precedence: PAX over GNU L/K over the ustar header.  All lengths
 * read from the archive are checked against the SF_TAR_MAX_* limits before
 * anything is allocated.  An archive that ends without the two zero blocks
 * is accepted as ended; one that ends inside a header or data is an error.
 */
#ifndef SF_TAR_H
#define SF_TAR_H

#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "reader.h"

#define SF_TAR_MAX_PATH (64 * 1024)	       /* longest path / link name */
#define SF_TAR_MAX_PAX (8 * 1024 * 1024)      /* total PAX extended header */
#define SF_TAR_MAX_XATTR_VALUE (64 * 1024)     /* Linux XATTR_SIZE_MAX */
#define SF_TAR_MAX_XATTRS 1024		       /* per entry */
#define SF_TAR_MAX_SPARSE_SEGMENTS (1024 * 1024) /* per entry */

enum sf_tar_type {
	SF_TAR_REG,
	SF_TAR_HARDLINK, /* linkname = path of an earlier entry */
	SF_TAR_SYMLINK,
	SF_TAR_CHR,
	SF_TAR_BLK,
	SF_TAR_DIR,
	SF_TAR_FIFO,
};

struct sf_tar_xattr {
	char *name; /* e.g. "security.capability", "user.foo" */
	unsigned char *value;
	size_t len;
};

struct sf_tar_entry {
	char *path;	/* as in the archive (after PAX/GNU overrides), NUL-terminated;
			   may have leading "./" or "/" or a trailing '/':
			   the index normalises and checks it */
	char *linkname; /* symlink target or hard-link source; "" otherwise */
	enum sf_tar_type type;
	uint32_t mode; /* permission bits only: 07777 */
	uint64_t uid, gid;
	uint64_t size; /* logical size of a regular file (real size for sparse);
			  0 for everything else */
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint32_t devmajor, devminor;
	struct sf_tar_xattr *xattrs;
	size_t n_xattrs;
};

struct sf_tar;

/* src is borrowed. */
sf_ret sf_tar_new(struct sf_reader src, struct sf_tar **out);
/* Advance to the next entry, skipping any unread data of the current one.
 * Returns 1 with *entry set (valid until the next call), 0 at the end of the
 * archive, -errno with err naming the entry on error. */
int sf_tar_next(struct sf_tar *t, const struct sf_tar_entry **entry, struct sf_error *err);
/* Read the next piece of the current regular file's data.  *offset receives
 * the logical file offset the bytes belong at (sparse files skip holes, so
 * offsets may jump).  Returns bytes read (> 0), 0 when the entry's data is
 * done, -errno on error. */
ssize_t sf_tar_read_data(struct sf_tar *t, uint64_t *offset, void *buf, size_t len,
			 struct sf_error *err);
void sf_tar_free(struct sf_tar *t);

#endif
