/* fs.c - the FUSE file system of a mounted image (`soci-fuse mount`).
 *
 * Inode numbers.  The mount's own entries have fixed numbers: 1 the root,
 * 2 "layers", 3 "lowerdir", 4 "status".  Layer i is tree.c's layer number
 * i, so entry `id` of layer i is ((i + 1) << 32) | id (tree.h).  Numbers
 * are stable for the life of the mount and across remounts, never reused,
 * and need no table: FORGET is a no-op.
 *
 * Everything inside layers/<i> is served by tree.c (waiting for entries that
 * have not arrived, overlay whiteouts and opaque xattrs, caching); this file
 * has the mount's own entries and dispatches the rest.
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "digest.h"

#define INO_ROOT FUSE_ROOT_ID
#define INO_LAYERS 2
#define INO_LOWERDIR 3
#define INO_STATUS 4
#define FINAL_TIMEOUT SF_TREE_FINAL_TIMEOUT

static struct sf_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct sf_layer *layer_by_number(void *arg, unsigned n)
{
	struct sf_fs *fs = arg;

	return n < fs->n_layers ? &fs->layers[n] : NULL;
}

static struct sf_layer *decode_ino(struct sf_fs *fs, fuse_ino_t ino, uint32_t *id)
{
	return sf_tree_decode(&fs->tree, ino, id);
}

/* ---- attributes ---- */

static void static_stat(struct sf_fs *fs, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_blksize = 4096;
	switch (ino) {
	case INO_ROOT:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 3;
		break;
	case INO_LAYERS:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2 + fs->n_layers;
		break;
	case INO_LOWERDIR:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)strlen(fs->lowerdir);
		break;
	default: /* status: generated at open, read with direct_io */
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		break;
	}
}

static void reply_static_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e = { .ino = ino };

	static_stat(fs_of(req), ino, &e.attr);
	e.attr_timeout = ino == INO_STATUS ? 0 : FINAL_TIMEOUT;
	e.entry_timeout = FINAL_TIMEOUT;
	fuse_reply_entry(req, &e);
}

/* ---- operations ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO; /* always plus */
	/* the kernel keeps the smaller of this and the bdi's read_ahead_kb,
	 * which mount.c raised before this INIT was answered */
	conn->max_readahead = SF_FS_READ_AHEAD;
}

static void lookup_layers_dir(fuse_req_t req, const char *name)
{
	struct sf_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	char *end;
	unsigned long i = strtoul(name, &end, 10);

	if (!*name || *end || (name[0] == '0' && name[1]) || i >= fs->n_layers) {
		e = (struct fuse_entry_param){ .entry_timeout = FINAL_TIMEOUT };
		fuse_reply_entry(req, &e);
		return;
	}
	sf_tree_entry(&fs->layers[i], SF_INDEX_ROOT, &e);
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	uint32_t dir;

	if (parent == INO_ROOT) {
		fuse_ino_t ino = strcmp(name, "layers") == 0	  ? INO_LAYERS
				 : strcmp(name, "lowerdir") == 0 ? INO_LOWERDIR
				 : strcmp(name, "status") == 0	  ? INO_STATUS
								  : 0;
		if (ino)
			reply_static_entry(req, ino);
		else
			fuse_reply_entry(req, &(struct fuse_entry_param){ .entry_timeout = FINAL_TIMEOUT });
		return;
	}
	if (parent == INO_LAYERS) {
		lookup_layers_dir(req, name);
		return;
	}
	l = decode_ino(fs, parent, &dir);
	if (!l) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	sf_tree_lookup(&fs->tree, req, l, dir, name);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	struct stat st;
	uint32_t id;

	(void)fi;
	if (ino <= INO_STATUS) {
		static_stat(fs, ino, &st);
		fuse_reply_attr(req, &st, ino == INO_STATUS ? 0 : FINAL_TIMEOUT);
		return;
	}
	l = decode_ino(fs, ino, &id);
	if (!l)
		fuse_reply_err(req, ENOENT);
	else
		sf_tree_getattr(req, l, id);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	uint32_t id;
	struct sf_layer *l = decode_ino(fs_of(req), ino, &id);

	if (!l)
		fuse_reply_err(req, EINVAL);
	else
		sf_tree_readlink(req, l, id);
}

/* ---- directories ---- */

static void static_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct sf_fs *fs = fs_of(req);
	char *buf = malloc(size);
	size_t used = 0;
	unsigned count = ino == INO_ROOT ? 5 : 2 + fs->n_layers;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (unsigned i = (unsigned)off; i < count; i++) {
		static const char *root_names[] = { ".", "..", "layers", "lowerdir", "status" };
		static const fuse_ino_t root_inos[] = { INO_ROOT, INO_ROOT, INO_LAYERS,
							INO_LOWERDIR, INO_STATUS };
		char name[16];
		struct stat st;
		size_t n;

		if (ino == INO_ROOT) {
			static_stat(fs, root_inos[i], &st);
			snprintf(name, sizeof(name), "%s", root_names[i]);
		} else if (i < 2) {
			static_stat(fs, i ? INO_ROOT : INO_LAYERS, &st);
			snprintf(name, sizeof(name), "%s", i ? ".." : ".");
		} else {
			sf_tree_stat(&fs->layers[i - 2], SF_INDEX_ROOT, &st);
			snprintf(name, sizeof(name), "%u", i - 2);
		}
		n = sf_tree_add_dirent(req, buf + used, size - used, name, &st, (off_t)i + 1, plus,
				       SF_TREE_STREAMING_TIMEOUT);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	uint32_t dir;

	if (ino == INO_ROOT || ino == INO_LAYERS) {
		static_readdir(req, ino, size, off, plus);
		return;
	}
	l = decode_ino(fs, ino, &dir);
	if (!l)
		fuse_reply_err(req, ENOTDIR);
	else
		sf_tree_readdir(&fs->tree, req, l, dir, size, off, plus);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	readdir_common(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	readdir_common(req, ino, size, off, true);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint32_t id;
	struct sf_layer *l = decode_ino(fs_of(req), ino, &id);

	if (l)
		sf_tree_opendir(req, l, fi);
	else
		fuse_reply_open(req, fi);
}

/* ---- files ---- */

/* The status document of one open of <mnt>/status, on fs->snaps. */
struct status_snap {
	struct status_snap *prev, *next;
	char *text;
};

static struct status_snap *snap_new(struct sf_fs *fs)
{
	struct status_snap *snap = calloc(1, sizeof(*snap));

	if (!snap || !(snap->text = sf_fs_status_json(fs))) {
		free(snap);
		return NULL;
	}
	pthread_mutex_lock(&fs->snap_lock);
	snap->next = fs->snaps;
	if (fs->snaps)
		fs->snaps->prev = snap;
	fs->snaps = snap;
	pthread_mutex_unlock(&fs->snap_lock);
	return snap;
}

static void snap_free(struct sf_fs *fs, struct status_snap *snap)
{
	pthread_mutex_lock(&fs->snap_lock);
	if (snap->prev)
		snap->prev->next = snap->next;
	else
		fs->snaps = snap->next;
	if (snap->next)
		snap->next->prev = snap->prev;
	pthread_mutex_unlock(&fs->snap_lock);
	free(snap->text);
	free(snap);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	uint32_t id;

	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (ino == INO_LOWERDIR) {
		fi->keep_cache = 1;
		fuse_reply_open(req, fi);
		return;
	}
	if (ino == INO_STATUS) {
		/* a snapshot per open, so a reader that needs several read()s
		 * gets one consistent document (not pieces of two), and a new
		 * open sees new progress; direct_io: the size is not known */
		struct status_snap *snap = snap_new(fs);
		if (!snap) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		fi->fh = (uint64_t)(uintptr_t)snap;
		fi->direct_io = 1;
		if (fuse_reply_open(req, fi) != 0)
			snap_free(fs, snap); /* the open was interrupted: no release follows */
		return;
	}
	l = decode_ino(fs, ino, &id);
	if (!l)
		fuse_reply_err(req, ENOENT);
	else
		sf_tree_open(req, l, fi);
}

/* Reply with a piece of the snapshot made at open, from a copy.  The kernel
 * takes the bytes during the reply's writev and wakes the reader, which may
 * close the file at once; the release (which frees the snapshot) can then
 * run on another worker before writev has returned here.  The kernel has
 * its copy by then, but ASan's writev interceptor reads the buffer after
 * the call, so the reply must not point into the snapshot. */
static void reply_status(fuse_req_t req, const char *text, size_t size, off_t off)
{
	size_t len = strlen(text);
	char *piece;

	if (off < 0 || (size_t)off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > len - (size_t)off)
		size = len - (size_t)off;
	piece = malloc(size);
	if (!piece) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(piece, text + off, size);
	fuse_reply_buf(req, piece, size);
	free(piece);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	uint32_t id;

	if (ino == INO_LOWERDIR) {
		sf_tree_reply_text(req, fs->lowerdir, size, off);
		return;
	}
	if (ino == INO_STATUS) {
		reply_status(req, ((struct status_snap *)(uintptr_t)fi->fh)->text, size, off);
		return;
	}
	l = decode_ino(fs, ino, &id);
	if (!l)
		fuse_reply_err(req, EIO);
	else
		sf_tree_read(req, l, id, size, off);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == INO_STATUS)
		snap_free(fs_of(req), (struct status_snap *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* SEEK_DATA / SEEK_HOLE; layer files are answered by tree.c. */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct sf_layer *l;
	uint32_t id;

	(void)fi;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (ino == INO_LOWERDIR || ino == INO_STATUS) {
		/* all data, no holes; status has size 0 (read with direct_io) */
		uint64_t size = ino == INO_LOWERDIR ? strlen(fs_of(req)->lowerdir) : 0;
		if (off < 0 || (uint64_t)off >= size)
			fuse_reply_err(req, ENXIO);
		else
			fuse_reply_lseek(req, whence == SEEK_DATA ? off : (off_t)size);
		return;
	}
	l = decode_ino(fs_of(req), ino, &id);
	if (!l)
		fuse_reply_err(req, EINVAL);
	else
		sf_tree_lseek(req, l, id, off, whence);
}

/* ---- xattrs ---- */

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct sf_fs *fs = fs_of(req);
	uint32_t id;
	struct sf_layer *l = decode_ino(fs, ino, &id);

	if (!l)
		fuse_reply_err(req, ENODATA);
	else
		sf_tree_getxattr(&fs->tree, req, l, id, name, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct sf_fs *fs = fs_of(req);
	uint32_t id;
	struct sf_layer *l = decode_ino(fs, ino, &id);

	if (l)
		sf_tree_listxattr(&fs->tree, req, l, id, size);
	else if (size)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_xattr(req, 0);
}
static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct sf_fs *fs = fs_of(req);
	struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255 };

	(void)ino;
	for (unsigned i = 0; i < fs->n_layers; i++) {
		struct sf_layer *l = &fs->layers[i];
		pthread_rwlock_rdlock(&l->lock);
		sv.f_blocks += (l->idx->data_size + 4095) / 4096;
		sv.f_files += l->idx->n_inodes - 1;
		pthread_rwlock_unlock(&l->lock);
	}
	sv.f_files += 4;
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops sf_fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.open = op_open,
	.release = op_release,
	.read = op_read,
	.lseek = op_lseek,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.statfs = op_statfs,
};

/* ---- set-up and status ---- */

int sf_fs_init(struct sf_fs *fs, struct sf_layer *layers, unsigned n_layers,
	       const struct sf_image *img, const char *mountpoint, const char *opaque_xattr)
{
	size_t cap = (strlen(mountpoint) + 32) * (n_layers + 1);
	size_t used = 0;

	memset(fs, 0, sizeof(*fs));
	fs->layers = layers;
	fs->n_layers = n_layers;
	fs->img = img;
	sf_tree_init(&fs->tree, opaque_xattr, layer_by_number, fs);
	pthread_mutex_init(&fs->rate_lock, NULL);
	pthread_mutex_init(&fs->snap_lock, NULL);
	fs->lowerdir = malloc(cap);
	fs->rates = calloc(n_layers ? n_layers : 1, sizeof(*fs->rates));
	if (!fs->lowerdir || !fs->rates)
		return -ENOMEM;
	fs->lowerdir[0] = '\0';
	for (unsigned i = n_layers; i-- > 0;)
		used += (size_t)snprintf(fs->lowerdir + used, cap - used, "%s%s/layers/%u",
					 used ? ":" : "", mountpoint, i);
	snprintf(fs->lowerdir + used, cap - used, "\n");
	for (unsigned i = 0; i < n_layers; i++) {
		layers[i].notify = sf_tree_notify;
		layers[i].notify_arg = &fs->tree;
	}
	return 0;
}

void sf_fs_fail_waiters(struct sf_fs *fs, int error)
{
	sf_tree_fail_waiters(&fs->tree, error);
}

void sf_fs_destroy(struct sf_fs *fs)
{
	/* files still open when the session ended: no release came */
	while (fs->snaps)
		snap_free(fs, fs->snaps);
	pthread_mutex_destroy(&fs->snap_lock);
	sf_tree_destroy(&fs->tree);
	free(fs->lowerdir);
	free(fs->rates);
	pthread_mutex_destroy(&fs->rate_lock);
}

char *sf_fs_status_json(struct sf_fs *fs)
{
	json_t *layers = json_array();
	json_t *root;
	bool complete = true;
	char *text;

	for (unsigned i = 0; i < fs->n_layers; i++) {
		struct sf_layer *l = &fs->layers[i];
		enum sf_layer_state st = sf_layer_state(l);
		uint64_t fetched, downloaded, reused;
		double rate;
		json_t *o;

		pthread_mutex_lock(&l->blob.lock);
		fetched = st == SF_LAYER_COMPLETE ? l->desc->size : l->blob.fetched;
		downloaded = l->blob.downloaded;
		reused = l->blob.reused;
		pthread_mutex_unlock(&l->blob.lock);
		/* rate: bytes/s fetched, averaged over the reads of this file */
		pthread_mutex_lock(&fs->rate_lock);
		rate = sf_rate_update(&fs->rates[i], fetched, sf_now());
		pthread_mutex_unlock(&fs->rate_lock);
		if (st == SF_LAYER_COMPLETE || st == SF_LAYER_FAILED)
			rate = 0;
		o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:I}", "index", i, "digest",
				      l->desc->digest, "state", sf_layer_state_name(st), "size",
				      (json_int_t)l->desc->size, "fetched",
				      (json_int_t)fetched,
				      "unpacked", (json_int_t)atomic_load(&l->unpacked),
				      "rate", (json_int_t)rate);
		/* by this mount: bytes downloaded, and bytes of an earlier pull's
		 * spool it resumed from (resume.h) */
		if (o) {
			json_object_set_new(o, "downloaded", json_integer((json_int_t)downloaded));
			json_object_set_new(o, "reused", json_integer((json_int_t)reused));
		}
		if (o && st == SF_LAYER_FAILED)
			json_object_set_new(o, "error", json_string(l->err.msg));
		json_array_append_new(layers, o);
		complete = complete && st == SF_LAYER_COMPLETE;
	}
	root = json_pack("{s:s, s:s, s:o, s:b}", "ref", fs->img->ref ? fs->img->ref : "",
			 "manifest", fs->img->manifest_digest ? fs->img->manifest_digest : "",
			 "layers", layers, "complete", complete);
	text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
	json_decref(root);
	if (text) {
		size_t n = strlen(text);
		char *t = realloc(text, n + 2);
		if (t) {
			t[n] = '\n';
			t[n + 1] = '\0';
			text = t;
		}
	}
	return text;
}
