/* index.h - the tree of one layer: inodes, directory entries, and their
 * on-disk form.
 *
 * Inode ids are dense and local to a layer: 1 is the layer's root directory,
 * then one per inode in the order entries arrive in the tar stream; 0 means
 * "none".  A hard link adds a dentry pointing at an existing inode, so the
 * two names share an id and nlink counts them.  Ids never change once given,
 * and the saved index keeps them, so a layer loaded from the cache answers
 * with the same numbers it had while it was being unpacked.  (The FUSE
 * front-end combines the layer number and this id into the kernel's inode
 * number.)
 *
 * Overlay semantics are applied here, as entries arrive:
 *   - ".wh.<name>" becomes a character device 0/0 called <name>;
 *   - ".wh..wh..opq" is not shown: its directory is marked opaque;
 *   - other ".wh..wh.*" names (aufs bookkeeping) are dropped.
 * A name that appears twice: the later entry wins; a directory that appears
 * again keeps its children and takes the new attributes.
 *
 * Locking: the index has no lock of its own.  The layer holds a rwlock:
 * readers (FUSE) take it shared, the unpacker takes it exclusive to add.
 */
#ifndef SF_INDEX_H
#define SF_INDEX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "error.h"
#include "tar.h"

#define SF_INDEX_ROOT 1u
#define SF_INDEX_MAX_INODES (64u * 1024 * 1024) /* per layer; ids are 32-bit */
#define SF_INDEX_MAX_DEPTH 4096			 /* path components */

/* The data file (cache.h) holds every regular file's bytes in its own
 * extent [data_off, data_off + size), 4 KiB aligned, one after the other.
 * Its logical size, holes of sparse files included, is capped, so that no
 * offset + size can wrap and no two extents can overlap whatever sizes a
 * hostile layer declares: a sparse entry without data may claim 2^63 - 1
 * bytes, and two of them used to wrap the next file's offset back onto
 * the first's.  1 EiB is 2^16 times ext4's largest file, far beyond any
 * real sparse file (lastlog of a 2^32 uid: ~1.2 TiB), and well below
 * off_t's 2^63. */
#define SF_INDEX_DATA_ALIGN 4096u
#define SF_INDEX_MAX_DATA_SIZE (1ull << 60)

struct sf_xattr {
	char *name;
	unsigned char *value;
	uint32_t len;
};

struct sf_inode {
	uint32_t mode; /* S_IFMT | 07777 */
	uint32_t nlink;
	uint32_t uid, gid;
	uint64_t size;	   /* regular files: bytes; symlinks: target length */
	uint64_t data_off; /* regular files: offset in the layer's data file */
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint32_t rdev_major, rdev_minor;
	char *target; /* symlink target */
	struct sf_xattr *xattrs;
	uint32_t n_xattrs;
	bool opaque;	      /* directory hides lower layers (.wh..wh..opq) */
	uint32_t parent;      /* directories: parent directory inode id */
	uint32_t first_child; /* directories: dentry ids, in arrival order */
	uint32_t last_child;
	uint32_t n_subdirs; /* directories: for nlink = 2 + n_subdirs */
};

struct sf_dentry {
	uint32_t parent; /* directory inode id */
	uint32_t ino;	 /* inode id */
	uint32_t next_sibling;
	uint32_t hash_next;
	char *name;
};

struct sf_index {
	struct sf_inode *inodes; /* [0] unused */
	uint32_t n_inodes;	 /* including the unused [0] */
	uint32_t cap_inodes;
	struct sf_dentry *dentries; /* [0] unused */
	uint32_t n_dentries;
	uint32_t cap_dentries;
	uint32_t *buckets; /* hash of (parent, name) -> dentry id */
	uint32_t n_buckets;
	uint64_t data_size; /* bytes of regular-file data (logical) */
};

struct sf_index *sf_index_new(void);
void sf_index_free(struct sf_index *idx);

/* Add one tar entry.  For a regular file, data_off is where its content
 * already sits in the data file (sf_index_place_data); an extent past
 * SF_INDEX_MAX_DATA_SIZE is refused.  Errors name the entry. */
sf_ret sf_index_add(struct sf_index *idx, const struct sf_tar_entry *e, uint64_t data_off,
		    struct sf_error *err);

/* Place a regular file of `size` bytes after the files that end at
 * *data_end: *off receives its offset (0 for an empty file, which takes no
 * room) and *data_end the new end.  -EFBIG, with nothing changed, when it
 * would end past SF_INDEX_MAX_DATA_SIZE. */
sf_ret sf_index_place_data(uint64_t *data_end, uint64_t size, uint64_t *off);

/* Child of directory `dir` called `name`; returns the inode id or 0. */
uint32_t sf_index_lookup(const struct sf_index *idx, uint32_t dir, const char *name);

static inline const struct sf_inode *sf_index_inode(const struct sf_index *idx, uint32_t id)
{
	return id && id < idx->n_inodes ? &idx->inodes[id] : NULL;
}

/* Fill a struct stat (st_ino left 0: the caller numbers inodes). */
void sf_index_stat(const struct sf_index *idx, uint32_t id, struct stat *st);

/* Value of xattr `name` on inode id, with overlay's opaque marker under
 * `opaque_name` ("trusted.overlay.opaque" or "user.overlay.opaque").
 * Returns the value length, or -ENODATA. *value is borrowed. */
int sf_index_getxattr(const struct sf_index *idx, uint32_t id, const char *name,
		      const char *opaque_name, const void **value);
/* NUL-separated list of names into buf (size 0: just the length).
 * Returns the length, or -ERANGE. */
int sf_index_listxattr(const struct sf_index *idx, uint32_t id, const char *opaque_name,
		       char *buf, size_t size);

/* On-disk form, written once a layer is complete; loading checks every id
 * and length, since a cache file is not trusted. */
sf_ret sf_index_save(const struct sf_index *idx, int fd, struct sf_error *err);
sf_ret sf_index_load(int fd, struct sf_index **out, struct sf_error *err);

#endif
