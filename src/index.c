/* index.c - see index.h for the model.  Storage is three growable arrays
 * (inodes, dentries, hash buckets); ids are array positions, so they stay
 * valid when the arrays move. */
#include "index.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define INDEX_MAGIC "SFIDX001"
#define DIR_SIZE 4096

/* ---- storage ---- */

static uint32_t hash_name(uint32_t parent, const char *name)
{
	uint32_t h = 2166136261u ^ parent;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

static sf_ret grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t ncap;
	void *n;

	if (need <= *cap)
		return 0;
	if (need > SF_INDEX_MAX_INODES + 1)
		return -EFBIG;
	ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	n = realloc(*arr, (size_t)ncap * elem);
	if (!n)
		return -ENOMEM;
	memset((char *)n + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
	*arr = n;
	*cap = ncap;
	return 0;
}

static sf_ret rehash(struct sf_index *idx, uint32_t n_buckets)
{
	uint32_t *b = calloc(n_buckets, sizeof(*b));

	if (!b)
		return -ENOMEM;
	free(idx->buckets);
	idx->buckets = b;
	idx->n_buckets = n_buckets;
	for (uint32_t d = 1; d < idx->n_dentries; d++) {
		struct sf_dentry *de = &idx->dentries[d];
		uint32_t slot = hash_name(de->parent, de->name) & (n_buckets - 1);
		de->hash_next = b[slot];
		b[slot] = d;
	}
	return 0;
}

static uint32_t find_dentry(const struct sf_index *idx, uint32_t dir, const char *name)
{
	uint32_t d;

	if (!idx->n_buckets)
		return 0;
	d = idx->buckets[hash_name(dir, name) & (idx->n_buckets - 1)];
	for (; d; d = idx->dentries[d].hash_next)
		if (idx->dentries[d].parent == dir && strcmp(idx->dentries[d].name, name) == 0)
			return d;
	return 0;
}

static sf_ret new_inode(struct sf_index *idx, uint32_t mode, uint32_t *id)
{
	sf_ret r = grow((void **)&idx->inodes, &idx->cap_inodes, idx->n_inodes + 1,
			sizeof(struct sf_inode));
	if (r < 0)
		return r;
	*id = idx->n_inodes++;
	idx->inodes[*id].mode = mode;
	idx->inodes[*id].nlink = 1;
	return 0;
}

/* Append a dentry (dir, name) -> ino.  name is copied. */
static sf_ret link_dentry(struct sf_index *idx, uint32_t dir, const char *name, uint32_t ino)
{
	struct sf_inode *d;
	struct sf_dentry *de;
	uint32_t id, slot;
	sf_ret r;

	r = grow((void **)&idx->dentries, &idx->cap_dentries, idx->n_dentries + 1,
		 sizeof(struct sf_dentry));
	if (r < 0)
		return r;
	if (idx->n_dentries + 1 > idx->n_buckets / 2) {
		r = rehash(idx, idx->n_buckets ? idx->n_buckets * 2 : 256);
		if (r < 0)
			return r;
	}
	id = idx->n_dentries;
	de = &idx->dentries[id];
	de->name = strdup(name);
	if (!de->name)
		return -ENOMEM;
	idx->n_dentries++;
	de->parent = dir;
	de->ino = ino;
	slot = hash_name(dir, name) & (idx->n_buckets - 1);
	de->hash_next = idx->buckets[slot];
	idx->buckets[slot] = id;

	d = &idx->inodes[dir];
	if (d->last_child)
		idx->dentries[d->last_child].next_sibling = id;
	else
		d->first_child = id;
	d->last_child = id;
	if (S_ISDIR(idx->inodes[ino].mode)) {
		d->n_subdirs++;
		idx->inodes[ino].parent = dir;
	}
	return 0;
}

struct sf_index *sf_index_new(void)
{
	struct sf_index *idx = calloc(1, sizeof(*idx));
	uint32_t root;

	if (!idx)
		return NULL;
	idx->n_inodes = 1; /* id 0 = none */
	idx->n_dentries = 1;
	if (grow((void **)&idx->dentries, &idx->cap_dentries, 1, sizeof(struct sf_dentry)) < 0 ||
	    new_inode(idx, S_IFDIR | 0755, &root) < 0 || rehash(idx, 256) < 0) {
		sf_index_free(idx);
		return NULL;
	}
	idx->inodes[root].parent = root;
	return idx;
}

static void free_xattrs(struct sf_xattr *x, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		free(x[i].name);
		free(x[i].value);
	}
	free(x);
}

void sf_index_free(struct sf_index *idx)
{
	if (!idx)
		return;
	for (uint32_t i = 1; i < idx->n_inodes; i++) {
		free(idx->inodes[i].target);
		free_xattrs(idx->inodes[i].xattrs, idx->inodes[i].n_xattrs);
	}
	for (uint32_t d = 1; d < idx->n_dentries; d++)
		free(idx->dentries[d].name);
	free(idx->inodes);
	free(idx->dentries);
	free(idx->buckets);
	free(idx);
}

uint32_t sf_index_lookup(const struct sf_index *idx, uint32_t dir, const char *name)
{
	uint32_t d = find_dentry(idx, dir, name);

	return d ? idx->dentries[d].ino : 0;
}

/* ---- adding tar entries ---- */

/* Split a tar path into components in place: skips empty and "." parts,
 * refuses "..".  Returns the number of components or -errno. */
static int split_path(char *path, char **parts, int max)
{
	int n = 0;

	for (char *save = NULL, *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0)
			return -EPERM;
		if (n == max)
			return -ENAMETOOLONG;
		parts[n++] = c;
	}
	return n;
}

/* Walk (creating implicit 0755 root:root directories) to the directory that
 * holds the last component. */
static sf_ret walk_parents(struct sf_index *idx, char **parts, int n, uint32_t *dir_out,
			   const char **bad)
{
	uint32_t dir = SF_INDEX_ROOT;

	for (int i = 0; i < n - 1; i++) {
		uint32_t child = sf_index_lookup(idx, dir, parts[i]);
		sf_ret r;

		if (child && !S_ISDIR(idx->inodes[child].mode)) {
			*bad = parts[i];
			return -ENOTDIR;
		}
		if (!child) {
			r = new_inode(idx, S_IFDIR | 0755, &child);
			if (r == 0)
				r = link_dentry(idx, dir, parts[i], child);
			if (r < 0)
				return r;
		}
		dir = child;
	}
	*dir_out = dir;
	return 0;
}

/* Point (dir, name) at ino, replacing what was there (the later entry wins). */
static sf_ret place(struct sf_index *idx, uint32_t dir, const char *name, uint32_t ino)
{
	uint32_t d = find_dentry(idx, dir, name);
	struct sf_inode *old;

	if (!d)
		return link_dentry(idx, dir, name, ino);
	old = &idx->inodes[idx->dentries[d].ino];
	if (idx->dentries[d].ino == ino)
		return 0;
	if (S_ISDIR(old->mode))
		idx->inodes[dir].n_subdirs--;
	old->nlink--;
	idx->dentries[d].ino = ino;
	if (S_ISDIR(idx->inodes[ino].mode)) {
		idx->inodes[dir].n_subdirs++;
		idx->inodes[ino].parent = dir;
	}
	return 0;
}

static uint32_t type_bits(enum sf_tar_type t)
{
	switch (t) {
	case SF_TAR_DIR:
		return S_IFDIR;
	case SF_TAR_SYMLINK:
		return S_IFLNK;
	case SF_TAR_CHR:
		return S_IFCHR;
	case SF_TAR_BLK:
		return S_IFBLK;
	case SF_TAR_FIFO:
		return S_IFIFO;
	default:
		return S_IFREG;
	}
}

static sf_ret copy_xattrs(struct sf_inode *ino, const struct sf_tar_entry *e)
{
	free_xattrs(ino->xattrs, ino->n_xattrs);
	ino->xattrs = NULL;
	ino->n_xattrs = 0;
	if (!e->n_xattrs)
		return 0;
	ino->xattrs = calloc(e->n_xattrs, sizeof(*ino->xattrs));
	if (!ino->xattrs)
		return -ENOMEM;
	for (size_t i = 0; i < e->n_xattrs; i++) {
		struct sf_xattr *x = &ino->xattrs[i];
		x->name = strdup(e->xattrs[i].name);
		x->value = malloc(e->xattrs[i].len ? e->xattrs[i].len : 1);
		if (!x->name || !x->value) {
			ino->n_xattrs = (uint32_t)i + 1;
			return -ENOMEM;
		}
		memcpy(x->value, e->xattrs[i].value, e->xattrs[i].len);
		x->len = (uint32_t)e->xattrs[i].len;
	}
	ino->n_xattrs = (uint32_t)e->n_xattrs;
	return 0;
}

/* Attributes common to every kind of entry. */
static sf_ret set_attrs(struct sf_inode *ino, const struct sf_tar_entry *e, uint32_t type)
{
	ino->mode = type | (e->mode & 07777);
	ino->uid = (uint32_t)e->uid;
	ino->gid = (uint32_t)e->gid;
	ino->mtime_sec = e->mtime_sec;
	ino->mtime_nsec = e->mtime_nsec;
	return copy_xattrs(ino, e);
}

static sf_ret add_whiteout(struct sf_index *idx, uint32_t dir, const char *base,
			   const struct sf_tar_entry *e)
{
	uint32_t id;
	sf_ret r;

	if (strcmp(base, WHITEOUT_OPAQUE) == 0) {
		idx->inodes[dir].opaque = true;
		return 0;
	}
	if (strncmp(base, WHITEOUT_META_PREFIX, strlen(WHITEOUT_META_PREFIX)) == 0)
		return 0; /* aufs bookkeeping (.wh..wh.plnk etc.): not part of the tree */
	base += strlen(WHITEOUT_PREFIX);
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return -EINVAL;
	r = new_inode(idx, S_IFCHR, &id);
	if (r < 0)
		return r;
	idx->inodes[id].uid = (uint32_t)e->uid;
	idx->inodes[id].gid = (uint32_t)e->gid;
	idx->inodes[id].mtime_sec = e->mtime_sec;
	idx->inodes[id].mtime_nsec = e->mtime_nsec;
	return place(idx, dir, base, id);
}

/* A hard link's own header applies to the inode it shares, as Docker's and
 * containers/storage's unpackers do (they lchown, set the xattrs and, unless
 * the target is a symlink, chmod and utime the new name after linking):
 * owner always, xattrs added or replaced, mode and mtime of non-symlinks.
 * Writers normally repeat the target's attributes, so this rarely shows. */
static sf_ret link_attrs(struct sf_inode *ino, const struct sf_tar_entry *e)
{
	ino->uid = (uint32_t)e->uid;
	ino->gid = (uint32_t)e->gid;
	if (!S_ISLNK(ino->mode)) {
		ino->mode = (ino->mode & S_IFMT) | (e->mode & 07777);
		ino->mtime_sec = e->mtime_sec;
		ino->mtime_nsec = e->mtime_nsec;
	}
	for (size_t i = 0; i < e->n_xattrs; i++) {
		const struct sf_tar_xattr *src = &e->xattrs[i];
		struct sf_xattr *x = NULL, *grown;
		unsigned char *v;

		for (uint32_t j = 0; j < ino->n_xattrs && !x; j++)
			if (strcmp(ino->xattrs[j].name, src->name) == 0)
				x = &ino->xattrs[j];
		if (!x) {
			if (ino->n_xattrs >= SF_TAR_MAX_XATTRS)
				return -E2BIG;
			grown = realloc(ino->xattrs, (ino->n_xattrs + 1) * sizeof(*grown));
			if (!grown)
				return -ENOMEM;
			ino->xattrs = grown;
			x = &grown[ino->n_xattrs];
			*x = (struct sf_xattr){ .name = strdup(src->name) };
			if (!x->name)
				return -ENOMEM;
			ino->n_xattrs++;
		}
		v = malloc(src->len ? src->len : 1);
		if (!v)
			return -ENOMEM;
		memcpy(v, src->value, src->len);
		free(x->value);
		x->value = v;
		x->len = (uint32_t)src->len;
	}
	return 0;
}

static sf_ret add_hardlink(struct sf_index *idx, uint32_t dir, const char *base,
			   const struct sf_tar_entry *e)
{
	char *parts[SF_INDEX_MAX_DEPTH];
	_cleanup_free_ char *target = strdup(e->linkname);
	uint32_t at = SF_INDEX_ROOT;
	sf_ret r;
	int n;

	if (!target)
		return -ENOMEM;
	n = split_path(target, parts, SF_INDEX_MAX_DEPTH);
	if (n == -EPERM)
		return -EXDEV; /* the target, not the entry's own path, escapes */
	if (n <= 0)
		return n < 0 ? n : -EINVAL;
	for (int i = 0; i < n && at; i++)
		at = sf_index_lookup(idx, at, parts[i]);
	if (!at)
		return -ENOENT;
	if (S_ISDIR(idx->inodes[at].mode))
		return -EISDIR;
	if (sf_index_lookup(idx, dir, base) == at)
		return 0;
	r = link_attrs(&idx->inodes[at], e);
	if (r < 0)
		return r;
	idx->inodes[at].nlink++;
	return place(idx, dir, base, at);
}

static sf_ret add_node(struct sf_index *idx, uint32_t dir, const char *base,
		       const struct sf_tar_entry *e, uint64_t data_off)
{
	uint32_t type = type_bits(e->type);
	uint32_t existing = sf_index_lookup(idx, dir, base);
	struct sf_inode *ino;
	uint32_t id;
	sf_ret r;

	if (type == S_IFDIR && existing && S_ISDIR(idx->inodes[existing].mode))
		return set_attrs(&idx->inodes[existing], e, type); /* keeps children */
	r = new_inode(idx, type, &id);
	if (r < 0)
		return r;
	ino = &idx->inodes[id];
	r = set_attrs(ino, e, type);
	if (r < 0)
		return r;
	if (type == S_IFREG) {
		ino->size = e->size;
		ino->data_off = data_off;
		idx->data_size += e->size;
	} else if (type == S_IFLNK) {
		ino->target = strdup(e->linkname);
		if (!ino->target)
			return -ENOMEM;
		ino->size = strlen(e->linkname);
	} else if (type == S_IFCHR || type == S_IFBLK) {
		ino->rdev_major = e->devmajor;
		ino->rdev_minor = e->devminor;
	}
	return place(idx, dir, base, id);
}

static sf_ret add_root_entry(struct sf_index *idx, const struct sf_tar_entry *e)
{
	if (e->type != SF_TAR_DIR)
		return -EINVAL;
	return set_attrs(&idx->inodes[SF_INDEX_ROOT], e, S_IFDIR);
}

/* A path for a message: long ones (up to 64 KiB, 4096 components) are cut
 * in the middle, so the reason after them still fits in the message. */
#define SHORT_PATH_MAX 160
static const char *short_path(const char *p, char buf[SHORT_PATH_MAX + 8])
{
	size_t len = strlen(p);

	if (len <= SHORT_PATH_MAX)
		return p;
	snprintf(buf, SHORT_PATH_MAX + 8, "%.100s...%s", p, p + len - (SHORT_PATH_MAX - 100));
	return buf;
}

static sf_ret entry_error(struct sf_error *err, sf_ret r, const struct sf_tar_entry *e,
			  const char *bad)
{
	char buf[SHORT_PATH_MAX + 8], lbuf[SHORT_PATH_MAX + 8];
	const char *path = short_path(e->path, buf), *link = short_path(e->linkname, lbuf);

	switch (r) {
	case -EPERM:
		return sf_fail(err, EPERM, "tar entry %s: path escapes the layer root", path);
	case -ENOTDIR:
		return sf_fail(err, ENOTDIR, "tar entry %s: parent %s is not a directory", path,
			       bad ? bad : "?");
	case -ENOENT:
		return sf_fail(err, ENOENT, "tar entry %s: hard link to missing entry %s", path,
			       link);
	case -EISDIR:
		return sf_fail(err, EISDIR, "tar entry %s: hard link to directory %s", path,
			       link);
	case -EXDEV:
		return sf_fail(err, EPERM, "tar entry %s: hard link target %s escapes the layer root",
			       path, link);
	case -ENAMETOOLONG:
		return sf_fail(err, ENAMETOOLONG, "tar entry %s: more than %d path components",
			       path, SF_INDEX_MAX_DEPTH);
	case -EOVERFLOW:
		return sf_fail(err, EOVERFLOW, "tar entry %s: uid/gid above 2^32-1", path);
	case -EFBIG:
		return sf_fail(err, EFBIG, "tar entry %s: more than %u entries in one layer",
			       path, SF_INDEX_MAX_INODES);
	case -EINVAL:
		return sf_fail(err, EINVAL, "tar entry %s: invalid entry", path);
	default:
		return sf_fail(err, -r, "tar entry %s: %s", path, strerror(-r));
	}
}

/* [off, off + size) lies inside the capped data file. */
static bool extent_ok(uint64_t off, uint64_t size)
{
	return size <= SF_INDEX_MAX_DATA_SIZE && off <= SF_INDEX_MAX_DATA_SIZE - size;
}

sf_ret sf_index_place_data(uint64_t *data_end, uint64_t size, uint64_t *off)
{
	uint64_t base;

	if (size == 0) {
		*off = 0;
		return 0;
	}
	/* *data_end is at most the cap, so aligning it cannot wrap */
	if (*data_end > SF_INDEX_MAX_DATA_SIZE)
		return -EFBIG;
	base = (*data_end + SF_INDEX_DATA_ALIGN - 1) & ~(uint64_t)(SF_INDEX_DATA_ALIGN - 1);
	if (!extent_ok(base, size))
		return -EFBIG;
	*off = base;
	*data_end = base + size;
	return 0;
}

sf_ret sf_index_add(struct sf_index *idx, const struct sf_tar_entry *e, uint64_t data_off,
		    struct sf_error *err)
{
	char *parts[SF_INDEX_MAX_DEPTH];
	_cleanup_free_ char *path = strdup(e->path);
	const char *bad = NULL, *base;
	uint32_t dir;
	sf_ret r;
	int n;

	if (!path)
		return sf_fail(err, ENOMEM, "out of memory");
	if (e->uid > UINT32_MAX || e->gid > UINT32_MAX)
		return entry_error(err, -EOVERFLOW, e, NULL);
	if (e->type == SF_TAR_REG && !extent_ok(data_off, e->size))
		return sf_fail(err, EFBIG, "tar entry %s: data extent past the layer's data limit",
			       e->path);
	n = split_path(path, parts, SF_INDEX_MAX_DEPTH);
	if (n < 0)
		return entry_error(err, n, e, NULL);
	if (n == 0) {
		r = add_root_entry(idx, e);
		return r < 0 ? entry_error(err, r, e, NULL) : 0;
	}
	r = walk_parents(idx, parts, n, &dir, &bad);
	if (r < 0)
		return entry_error(err, r, e, bad);
	base = parts[n - 1];
	if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0)
		r = add_whiteout(idx, dir, base, e);
	else if (e->type == SF_TAR_HARDLINK)
		r = add_hardlink(idx, dir, base, e);
	else
		r = add_node(idx, dir, base, e, data_off);
	return r < 0 ? entry_error(err, r, e, NULL) : 0;
}

/* ---- answering ---- */

void sf_index_stat(const struct sf_index *idx, uint32_t id, struct stat *st)
{
	const struct sf_inode *ino = &idx->inodes[id];

	memset(st, 0, sizeof(*st));
	st->st_mode = ino->mode;
	st->st_nlink = S_ISDIR(ino->mode) ? 2 + ino->n_subdirs : ino->nlink;
	st->st_uid = ino->uid;
	st->st_gid = ino->gid;
	st->st_size = S_ISDIR(ino->mode) ? DIR_SIZE : (off_t)ino->size;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_rdev = makedev(ino->rdev_major, ino->rdev_minor);
	st->st_mtim.tv_sec = ino->mtime_sec;
	st->st_mtim.tv_nsec = ino->mtime_nsec;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

int sf_index_getxattr(const struct sf_index *idx, uint32_t id, const char *name,
		      const char *opaque_name, const void **value)
{
	const struct sf_inode *ino = &idx->inodes[id];

	if (ino->opaque && strcmp(name, opaque_name) == 0) {
		*value = "y";
		return 1;
	}
	for (uint32_t i = 0; i < ino->n_xattrs; i++) {
		if (strcmp(ino->xattrs[i].name, name) == 0) {
			*value = ino->xattrs[i].value;
			return (int)ino->xattrs[i].len;
		}
	}
	return -ENODATA;
}

static size_t put_name(char *buf, size_t size, size_t at, const char *name)
{
	size_t len = strlen(name) + 1;

	if (size && at + len <= size)
		memcpy(buf + at, name, len);
	return at + len;
}

int sf_index_listxattr(const struct sf_index *idx, uint32_t id, const char *opaque_name,
		       char *buf, size_t size)
{
	const struct sf_inode *ino = &idx->inodes[id];
	size_t len = 0;

	if (ino->opaque)
		len = put_name(buf, size, len, opaque_name);
	for (uint32_t i = 0; i < ino->n_xattrs; i++)
		len = put_name(buf, size, len, ino->xattrs[i].name);
	if (size && len > size)
		return -ERANGE;
	return (int)len;
}

/* ---- on-disk form ----
 * "SFIDX001", u32 n_inodes, u32 n_dentries, u64 data_size, then for each
 * inode 1..n-1 its fixed fields, symlink target and xattrs, then for each
 * dentry 1..n-1 parent, ino and name.  Strings are u32 length + bytes.
 * Native byte order: the cache belongs to this machine. */

static int put(FILE *f, const void *p, size_t len)
{
	return fwrite(p, 1, len, f) == len ? 0 : -1;
}

static int put_u32(FILE *f, uint32_t v)
{
	return put(f, &v, sizeof(v));
}

static int put_bytes(FILE *f, const void *p, uint32_t len)
{
	return put_u32(f, len) || put(f, p, len);
}

static int save_inode(FILE *f, const struct sf_inode *ino)
{
	const char *target = ino->target ? ino->target : "";
	int bad = put_u32(f, ino->mode) || put_u32(f, ino->nlink) || put_u32(f, ino->uid) ||
		  put_u32(f, ino->gid) || put(f, &ino->size, 8) || put(f, &ino->data_off, 8) ||
		  put(f, &ino->mtime_sec, 8) || put_u32(f, ino->mtime_nsec) ||
		  put_u32(f, ino->rdev_major) || put_u32(f, ino->rdev_minor) ||
		  put_u32(f, ino->opaque) || put_bytes(f, target, (uint32_t)strlen(target)) ||
		  put_u32(f, ino->n_xattrs);

	for (uint32_t i = 0; !bad && i < ino->n_xattrs; i++)
		bad = put_bytes(f, ino->xattrs[i].name, (uint32_t)strlen(ino->xattrs[i].name)) ||
		      put_bytes(f, ino->xattrs[i].value, ino->xattrs[i].len);
	return bad;
}

sf_ret sf_index_save(const struct sf_index *idx, int fd, struct sf_error *err)
{
	int dupfd = dup(fd);
	FILE *f = dupfd >= 0 ? fdopen(dupfd, "w") : NULL;
	int bad;

	if (!f) {
		if (dupfd >= 0)
			close(dupfd);
		return sf_fail(err, errno, "cannot write layer index: %s", strerror(errno));
	}
	bad = put(f, INDEX_MAGIC, 8) || put_u32(f, idx->n_inodes) ||
	      put_u32(f, idx->n_dentries) || put(f, &idx->data_size, 8);
	for (uint32_t i = 1; !bad && i < idx->n_inodes; i++)
		bad = save_inode(f, &idx->inodes[i]);
	for (uint32_t d = 1; !bad && d < idx->n_dentries; d++) {
		const struct sf_dentry *de = &idx->dentries[d];
		bad = put_u32(f, de->parent) || put_u32(f, de->ino) ||
		      put_bytes(f, de->name, (uint32_t)strlen(de->name));
	}
	if (fclose(f) != 0)
		bad = 1;
	return bad ? sf_fail(err, errno ? errno : EIO, "cannot write layer index: %s",
			     strerror(errno ? errno : EIO))
		   : 0;
}

/* A bounds-checked cursor over the loaded file. */
struct cursor {
	const unsigned char *p, *end;
	bool bad;
};

static void get(struct cursor *c, void *out, size_t len)
{
	if (c->bad || (size_t)(c->end - c->p) < len) {
		c->bad = true;
		memset(out, 0, len);
		return;
	}
	memcpy(out, c->p, len);
	c->p += len;
}

static uint32_t get_u32(struct cursor *c)
{
	uint32_t v;

	get(c, &v, sizeof(v));
	return v;
}

/* New NUL-terminated copy of a length-prefixed string, *len set. */
static char *get_bytes(struct cursor *c, uint32_t *len)
{
	uint32_t n = get_u32(c);
	char *s;

	if (c->bad || (size_t)(c->end - c->p) < n) {
		c->bad = true;
		return NULL;
	}
	s = malloc((size_t)n + 1);
	if (!s) {
		c->bad = true;
		return NULL;
	}
	memcpy(s, c->p, n);
	s[n] = '\0';
	c->p += n;
	if (len)
		*len = n;
	return s;
}

static void load_inode(struct cursor *c, struct sf_inode *ino)
{
	uint32_t n;

	ino->mode = get_u32(c);
	ino->nlink = get_u32(c);
	ino->uid = get_u32(c);
	ino->gid = get_u32(c);
	get(c, &ino->size, 8);
	get(c, &ino->data_off, 8);
	/* reads compute data_off + offset as an off_t */
	if (S_ISREG(ino->mode) && !extent_ok(ino->data_off, ino->size))
		c->bad = true;
	get(c, &ino->mtime_sec, 8);
	ino->mtime_nsec = get_u32(c);
	ino->rdev_major = get_u32(c);
	ino->rdev_minor = get_u32(c);
	ino->opaque = get_u32(c) != 0;
	ino->target = get_bytes(c, NULL);
	if (ino->target && !S_ISLNK(ino->mode)) {
		free(ino->target);
		ino->target = NULL;
	}
	n = get_u32(c);
	if (c->bad || n > SF_TAR_MAX_XATTRS) {
		c->bad = true;
		return;
	}
	ino->xattrs = calloc(n ? n : 1, sizeof(*ino->xattrs));
	if (!ino->xattrs) {
		c->bad = true;
		return;
	}
	ino->n_xattrs = n;
	for (uint32_t i = 0; i < n && !c->bad; i++) {
		ino->xattrs[i].name = get_bytes(c, NULL);
		ino->xattrs[i].value = (unsigned char *)get_bytes(c, &ino->xattrs[i].len);
	}
}

static bool dentry_ok(const struct sf_index *idx, uint32_t parent, uint32_t ino, const char *name)
{
	if (!(parent && parent < idx->n_inodes && ino && ino < idx->n_inodes &&
	      ino != SF_INDEX_ROOT && S_ISDIR(idx->inodes[parent].mode) && name[0] &&
	      !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..") &&
	      !find_dentry(idx, parent, name)))
		return false;
	/* a directory has exactly one name; more would allow cycles */
	return !S_ISDIR(idx->inodes[ino].mode) || idx->inodes[ino].parent == 0;
}

static sf_ret load_dentries(struct cursor *c, struct sf_index *idx, uint32_t n_dentries)
{
	for (uint32_t d = 1; d < n_dentries; d++) {
		uint32_t parent = get_u32(c), ino = get_u32(c);
		_cleanup_free_ char *name = get_bytes(c, NULL);
		sf_ret r;

		if (c->bad || !name || !dentry_ok(idx, parent, ino, name))
			return -EINVAL;
		r = link_dentry(idx, parent, name, ino);
		if (r < 0)
			return r;
	}
	return 0;
}

static sf_ret load_from(struct cursor *c, struct sf_index *idx)
{
	char magic[8];
	uint32_t n_inodes, n_dentries;

	get(c, magic, 8);
	n_inodes = get_u32(c);
	n_dentries = get_u32(c);
	get(c, &idx->data_size, 8);
	if (c->bad || memcmp(magic, INDEX_MAGIC, 8) || n_inodes < 2 ||
	    n_inodes > SF_INDEX_MAX_INODES || n_dentries < 1 || n_dentries > SF_INDEX_MAX_INODES)
		return -EINVAL;
	/* every inode record takes >= 56 bytes and every dentry >= 12: refuse
	 * counts the file cannot hold before allocating for them */
	if ((uint64_t)(n_inodes - 1) * 56 + (uint64_t)(n_dentries - 1) * 12 >
	    (uint64_t)(c->end - c->p))
		return -EINVAL;
	if (grow((void **)&idx->inodes, &idx->cap_inodes, n_inodes, sizeof(struct sf_inode)) < 0)
		return -ENOMEM;
	for (uint32_t i = 1; i < n_inodes && !c->bad; i++) {
		load_inode(c, &idx->inodes[i]);
		idx->n_inodes = i + 1;
	}
	if (c->bad || !S_ISDIR(idx->inodes[SF_INDEX_ROOT].mode))
		return -EINVAL;
	idx->inodes[SF_INDEX_ROOT].parent = SF_INDEX_ROOT;
	if (rehash(idx, 256) < 0)
		return -ENOMEM;
	return load_dentries(c, idx, n_dentries);
}

static struct sf_index *empty_index(void)
{
	struct sf_index *idx = calloc(1, sizeof(*idx));

	if (!idx)
		return NULL;
	idx->n_inodes = 1;
	idx->n_dentries = 1;
	if (grow((void **)&idx->dentries, &idx->cap_dentries, 1, sizeof(struct sf_dentry)) < 0) {
		free(idx);
		return NULL;
	}
	return idx;
}

sf_ret sf_index_load(int fd, struct sf_index **out, struct sf_error *err)
{
	struct sf_index *idx = NULL;
	_cleanup_free_ unsigned char *buf = NULL;
	struct cursor c;
	struct stat st;
	size_t got = 0;
	sf_ret r;

	if (fstat(fd, &st) < 0)
		return sf_fail(err, errno, "cannot read layer index: %s", strerror(errno));
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		return sf_fail(err, ENOMEM, "layer index of %lld bytes: out of memory",
			       (long long)st.st_size);
	while (got < (size_t)st.st_size) {
		ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (n <= 0)
			return sf_fail(err, n < 0 ? errno : EIO, "cannot read layer index: %s",
				       n < 0 ? strerror(errno) : "short read");
		got += (size_t)n;
	}
	c = (struct cursor){ .p = buf, .end = buf + got };
	idx = empty_index();
	if (!idx)
		return sf_fail(err, ENOMEM, "out of memory");
	r = load_from(&c, idx);
	if (r == 0 && c.p != c.end)
		r = -EINVAL;
	if (r < 0) {
		sf_index_free(idx);
		return sf_fail(err, -r, "layer index is corrupt%s",
			       r == -ENOMEM ? " or too large for memory" : "");
	}
	*out = idx;
	return 0;
}
