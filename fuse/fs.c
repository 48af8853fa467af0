/* fs.c - FUSE low-level operations.
 *
 * Inode numbers.  The mount's own entries have fixed numbers: 1 the root,
 * 2 "layers", 3 "lowerdir", 4 "status".  Entry `id` of layer i (index.h's
 * dense local id; 1 is the layer root, shown as layers/<i>) is
 * ((i + 1) << 32) | id.  Numbers are stable for the life of the mount and
 * across remounts, never reused, and need no table: FORGET is a no-op.
 *
 * Waiting without blocking workers.  While a layer is being unpacked, a
 * LOOKUP for a name it does not have yet, or a READDIR of one of its
 * directories, is parked on fs->waiters and the worker returns at once.
 * The layer's pull thread calls sf_fs_layer_notify after every entry it
 * adds and when the layer's state changes; that answers each parked request
 * it can (libfuse allows replies from any thread).  A lookup is checked and
 * parked under wait_lock, and notify takes wait_lock after the entry is
 * visible, so no wake-up is lost.  A parked request whose process gets a
 * signal is answered EINTR (FUSE_INTERRUPT), so waiting never makes a
 * process unkillable.
 *
 * Caching.  A complete layer never changes: entries, attributes and
 * negative lookups are cached by the kernel for a day and file pages are
 * kept (keep_cache).  While a layer streams in, entries and attributes are
 * cached for a second only, because a later tar entry may replace them.
 */
#include "fs.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>

#include "digest.h"

#define INO_ROOT FUSE_ROOT_ID
#define INO_LAYERS 2
#define INO_LOWERDIR 3
#define INO_STATUS 4
#define FINAL_TIMEOUT 86400.0
#define STREAMING_TIMEOUT 1.0

enum waiter_kind { WAIT_LOOKUP, WAIT_READDIR };

struct sf_waiter {
	struct sf_waiter *next;
	enum waiter_kind kind;
	fuse_req_t req;
	unsigned layer;
	uint32_t dir;
	char *name; /* lookup */
	size_t size; /* readdir */
	off_t off;
	bool plus;
};

static struct sf_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static fuse_ino_t layer_ino(unsigned layer, uint32_t id)
{
	return ((fuse_ino_t)(layer + 1) << 32) | id;
}

/* Decode a layer entry's inode number; NULL when ino is not one. */
static struct sf_layer *decode_ino(struct sf_fs *fs, fuse_ino_t ino, uint32_t *id)
{
	uint64_t hi = ino >> 32;

	if (hi == 0 || hi > fs->n_layers)
		return NULL;
	*id = (uint32_t)ino;
	return &fs->layers[hi - 1];
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

static double layer_timeout(struct sf_layer *l)
{
	return sf_layer_state(l) == SF_LAYER_COMPLETE ? FINAL_TIMEOUT : STREAMING_TIMEOUT;
}

/* Fill e for layer entry `id`; caller holds l->lock shared. */
static void layer_entry(struct sf_layer *l, uint32_t id, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	sf_index_stat(l->idx, id, &e->attr);
	e->ino = layer_ino(l->number, id);
	e->attr.st_ino = e->ino;
	e->attr_timeout = e->entry_timeout = layer_timeout(l);
}

static void reply_static_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e = { .ino = ino };

	static_stat(fs_of(req), ino, &e.attr);
	e.attr_timeout = ino == INO_STATUS ? 0 : FINAL_TIMEOUT;
	e.entry_timeout = FINAL_TIMEOUT;
	fuse_reply_entry(req, &e);
}

/* ---- waiting ---- */

static void park(struct sf_fs *fs, struct sf_waiter *w)
{
	w->next = fs->waiters;
	fs->waiters = w;
}

static void free_waiter(struct sf_waiter *w)
{
	free(w->name);
	free(w);
}

static bool try_answer(struct sf_fs *fs, struct sf_waiter *w);

/* The process behind a parked request got a signal (Ctrl-C, timeout,
 * kill -9): answer EINTR now, or the kernel keeps it waiting for the layer.
 * Called by libfuse, possibly before the request was parked. */
static void on_interrupt(fuse_req_t req, void *arg)
{
	struct sf_fs *fs = arg;

	pthread_mutex_lock(&fs->wait_lock);
	for (struct sf_waiter **pp = &fs->waiters; *pp; pp = &(*pp)->next) {
		struct sf_waiter *w = *pp;
		if (w->req == req) {
			*pp = w->next;
			fuse_reply_err(req, EINTR);
			free_waiter(w);
			break;
		}
	}
	pthread_mutex_unlock(&fs->wait_lock);
}

/* Answer w now if possible, else park it until its layer has more.  Takes
 * ownership of w. */
static void answer_or_park(struct sf_fs *fs, struct sf_waiter *w)
{
	/* registered before wait_lock is taken: libfuse may call on_interrupt
	 * at once, and on_interrupt takes wait_lock */
	fuse_req_interrupt_func(w->req, on_interrupt, fs);
	pthread_mutex_lock(&fs->wait_lock);
	if (fuse_req_interrupted(w->req)) {
		fuse_reply_err(w->req, EINTR);
		free_waiter(w);
	} else if (try_answer(fs, w)) {
		free_waiter(w);
	} else {
		park(fs, w);
	}
	pthread_mutex_unlock(&fs->wait_lock);
}

static void do_layer_readdir(fuse_req_t req, struct sf_layer *l, uint32_t dir, size_t size,
			     off_t off, bool plus);

/* Try to answer w now.  Returns true when it was answered. */
static bool try_answer(struct sf_fs *fs, struct sf_waiter *w)
{
	struct sf_layer *l = &fs->layers[w->layer];
	enum sf_layer_state st = sf_layer_state(l);
	struct fuse_entry_param e;
	uint32_t id = 0;

	if (st == SF_LAYER_FAILED) {
		fuse_reply_err(w->req, EIO);
		return true;
	}
	if (w->kind == WAIT_READDIR) {
		if (st != SF_LAYER_COMPLETE)
			return false;
		do_layer_readdir(w->req, l, w->dir, w->size, w->off, w->plus);
		return true;
	}
	pthread_rwlock_rdlock(&l->lock);
	id = sf_index_lookup(l->idx, w->dir, w->name);
	if (id)
		layer_entry(l, id, &e);
	pthread_rwlock_unlock(&l->lock);
	if (id) {
		fuse_reply_entry(w->req, &e);
		return true;
	}
	if (st != SF_LAYER_COMPLETE)
		return false;
	e = (struct fuse_entry_param){ .entry_timeout = FINAL_TIMEOUT }; /* negative entry */
	fuse_reply_entry(w->req, &e);
	return true;
}

void sf_fs_layer_notify(struct sf_layer *l, void *arg)
{
	struct sf_fs *fs = arg;
	struct sf_waiter **pp;

	pthread_mutex_lock(&fs->wait_lock);
	if (sf_layer_state(l) == SF_LAYER_FAILED && !l->failure_reported) {
		l->failure_reported = true;
		syslog(LOG_ERR, "%s", l->err.msg);
		fprintf(stderr, "soci-fuse: %s\n", l->err.msg);
	}
	for (pp = &fs->waiters; *pp;) {
		struct sf_waiter *w = *pp;
		if (w->layer == l->number && try_answer(fs, w)) {
			*pp = w->next;
			free_waiter(w);
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&fs->wait_lock);
}

void sf_fs_fail_waiters(struct sf_fs *fs, int error)
{
	pthread_mutex_lock(&fs->wait_lock);
	while (fs->waiters) {
		struct sf_waiter *w = fs->waiters;
		fs->waiters = w->next;
		fuse_reply_err(w->req, error);
		free_waiter(w);
	}
	pthread_mutex_unlock(&fs->wait_lock);
}

/* ---- operations ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO; /* always plus */
}

static void lookup_layers_dir(fuse_req_t req, const char *name)
{
	struct sf_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	char *end;
	unsigned long i = strtoul(name, &end, 10);
	struct sf_layer *l;

	if (!*name || *end || (name[0] == '0' && name[1]) || i >= fs->n_layers) {
		e = (struct fuse_entry_param){ .entry_timeout = FINAL_TIMEOUT };
		fuse_reply_entry(req, &e);
		return;
	}
	l = &fs->layers[i];
	pthread_rwlock_rdlock(&l->lock);
	layer_entry(l, SF_INDEX_ROOT, &e);
	pthread_rwlock_unlock(&l->lock);
	fuse_reply_entry(req, &e);
}

static void lookup_in_layer(fuse_req_t req, struct sf_layer *l, uint32_t dir, const char *name)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_waiter *w;

	w = calloc(1, sizeof(*w));
	if (w) {
		*w = (struct sf_waiter){ .kind = WAIT_LOOKUP, .req = req, .layer = l->number,
					 .dir = dir, .name = strdup(name) };
	}
	if (!w || !w->name) {
		if (w)
			free_waiter(w);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	answer_or_park(fs, w);
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
	lookup_in_layer(req, l, dir, name);
}

/* Look at a layer entry under the layer's read lock.  Returns 0 and fills
 * st/ino_out, or an errno. */
static int layer_getattr(struct sf_layer *l, uint32_t id, struct stat *st)
{
	int rc = 0;

	if (sf_layer_state(l) == SF_LAYER_FAILED)
		return EIO;
	pthread_rwlock_rdlock(&l->lock);
	if (sf_index_inode(l->idx, id))
		sf_index_stat(l->idx, id, st);
	else
		rc = ENOENT;
	pthread_rwlock_unlock(&l->lock);
	st->st_ino = layer_ino(l->number, id);
	return rc;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	struct stat st;
	uint32_t id;
	int rc;

	(void)fi;
	if (ino <= INO_STATUS) {
		static_stat(fs, ino, &st);
		fuse_reply_attr(req, &st, ino == INO_STATUS ? 0 : FINAL_TIMEOUT);
		return;
	}
	l = decode_ino(fs, ino, &id);
	if (!l) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	rc = layer_getattr(l, id, &st);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, layer_timeout(l));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct sf_layer *l = decode_ino(fs_of(req), ino, &(uint32_t){ 0 });
	uint32_t id = (uint32_t)ino;
	const struct sf_inode *node;
	char *target = NULL;

	if (!l) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_rwlock_rdlock(&l->lock);
	node = sf_index_inode(l->idx, id);
	if (node && S_ISLNK(node->mode) && node->target)
		target = strdup(node->target);
	pthread_rwlock_unlock(&l->lock);
	if (target)
		fuse_reply_readlink(req, target);
	else
		fuse_reply_err(req, node ? EINVAL : ENOENT);
	free(target);
}

/* ---- directories ---- */

static size_t add_dirent(fuse_req_t req, char *buf, size_t rem, const char *name,
			 const struct stat *st, off_t next, bool plus, double timeout)
{
	if (!plus)
		return fuse_add_direntry(req, buf, rem, name, st, next);
	struct fuse_entry_param e = { .attr = *st, .attr_timeout = timeout,
				      .entry_timeout = timeout };
	if (strcmp(name, ".") && strcmp(name, ".."))
		e.ino = st->st_ino;
	return fuse_add_direntry_plus(req, buf, rem, name, &e, next);
}

/* Directory offsets: 1 after ".", 2 after "..", d + 2 after dentry d
 * (resume at its next sibling).  Only used once the layer is complete. */
static void do_layer_readdir(fuse_req_t req, struct sf_layer *l, uint32_t dir, size_t size,
			     off_t off, bool plus)
{
	char *buf = malloc(size);
	size_t used = 0, n;
	const struct sf_inode *node;
	uint32_t d;
	struct stat st;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_rwlock_rdlock(&l->lock);
	node = sf_index_inode(l->idx, dir);
	if (!node || !S_ISDIR(node->mode)) {
		pthread_rwlock_unlock(&l->lock);
		free(buf);
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (int dot = (int)off; dot < 2; dot++) {
		uint32_t target = dot == 0 ? dir : node->parent;
		sf_index_stat(l->idx, target, &st);
		st.st_ino = layer_ino(l->number, target);
		n = add_dirent(req, buf + used, size - used, dot ? ".." : ".", &st, dot + 1, plus,
			       FINAL_TIMEOUT);
		if (n > size - used)
			goto done;
		used += n;
	}
	d = off < 2 ? node->first_child : l->idx->dentries[off - 2].next_sibling;
	for (; d; d = l->idx->dentries[d].next_sibling) {
		const struct sf_dentry *de = &l->idx->dentries[d];
		sf_index_stat(l->idx, de->ino, &st);
		st.st_ino = layer_ino(l->number, de->ino);
		n = add_dirent(req, buf + used, size - used, de->name, &st, (off_t)d + 2, plus,
			       FINAL_TIMEOUT);
		if (n > size - used)
			break;
		used += n;
	}
done:
	pthread_rwlock_unlock(&l->lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

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
			struct sf_layer *l = &fs->layers[i - 2];
			pthread_rwlock_rdlock(&l->lock);
			sf_index_stat(l->idx, SF_INDEX_ROOT, &st);
			pthread_rwlock_unlock(&l->lock);
			st.st_ino = layer_ino(i - 2, SF_INDEX_ROOT);
			snprintf(name, sizeof(name), "%u", i - 2);
		}
		n = add_dirent(req, buf + used, size - used, name, &st, (off_t)i + 1, plus,
			       STREAMING_TIMEOUT);
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
	struct sf_waiter *w;
	struct sf_layer *l;
	uint32_t dir;

	if (ino == INO_ROOT || ino == INO_LAYERS) {
		static_readdir(req, ino, size, off, plus);
		return;
	}
	l = decode_ino(fs, ino, &dir);
	if (!l) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*w = (struct sf_waiter){ .kind = WAIT_READDIR, .req = req, .layer = l->number, .dir = dir,
				 .size = size, .off = off, .plus = plus };
	answer_or_park(fs, w);
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

	if (l && sf_layer_state(l) == SF_LAYER_COMPLETE)
		fi->cache_readdir = 1;
	if (l)
		fi->keep_cache = fi->cache_readdir;
	fuse_reply_open(req, fi);
}

/* ---- files ---- */

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
		/* generated afresh by every read: no per-open state to outlive */
		fi->direct_io = 1;
		fuse_reply_open(req, fi);
		return;
	}
	l = decode_ino(fs, ino, &id);
	if (!l) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (sf_layer_state(l) == SF_LAYER_FAILED) {
		fuse_reply_err(req, EIO);
		return;
	}
	fi->keep_cache = sf_layer_state(l) == SF_LAYER_COMPLETE;
	fuse_reply_open(req, fi);
}

static void reply_text(fuse_req_t req, const char *text, size_t size, off_t off)
{
	size_t len = strlen(text);

	if ((size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, text + off, len - (size_t)off < size ? len - (size_t)off : size);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct sf_fs *fs = fs_of(req);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(0);
	const struct sf_inode *node;
	struct sf_layer *l;
	uint64_t data_off = 0, fsize = 0;
	int fd = -1;
	uint32_t id;

	(void)fi;
	if (ino == INO_LOWERDIR) {
		reply_text(req, fs->lowerdir, size, off);
		return;
	}
	if (ino == INO_STATUS) {
		char *text = sf_fs_status_json(fs);
		if (text)
			reply_text(req, text, size, off);
		else
			fuse_reply_err(req, ENOMEM);
		free(text);
		return;
	}
	l = decode_ino(fs, ino, &id);
	if (!l || sf_layer_state(l) == SF_LAYER_FAILED) {
		fuse_reply_err(req, EIO);
		return;
	}
	pthread_rwlock_rdlock(&l->lock);
	node = sf_index_inode(l->idx, id);
	if (node && S_ISREG(node->mode)) {
		data_off = node->data_off;
		fsize = node->size;
		fd = l->data_fd;
	}
	pthread_rwlock_unlock(&l->lock);
	if (fd < 0 || off < 0) {
		fuse_reply_err(req, EIO);
		return;
	}
	if ((uint64_t)off >= fsize) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (fsize - (uint64_t)off < size)
		size = (size_t)(fsize - (uint64_t)off);
	buf.buf[0].size = size;
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fd;
	buf.buf[0].pos = (off_t)(data_off + (uint64_t)off);
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/* SEEK_DATA / SEEK_HOLE (the kernel handles the other whences itself):
 * answered from the layer's data file, where a file's holes are holes too,
 * so `cp --sparse`, tar -S and checks of huge sparse files need not read
 * gigabytes of zeros.  The answer is clamped to the file's own extent of
 * the data file, which continues with the next file's data. */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	const struct sf_inode *node;
	struct sf_layer *l;
	uint64_t base = 0, fsize = 0;
	uint32_t id;
	off_t r;
	int fd = -1;

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
	if (!l || sf_layer_state(l) == SF_LAYER_FAILED) {
		fuse_reply_err(req, l ? EIO : EINVAL);
		return;
	}
	pthread_rwlock_rdlock(&l->lock);
	node = sf_index_inode(l->idx, id);
	if (node && S_ISREG(node->mode)) {
		base = node->data_off;
		fsize = node->size;
		fd = l->data_fd;
	}
	pthread_rwlock_unlock(&l->lock);
	if (fd < 0 || off < 0) {
		fuse_reply_err(req, fd < 0 ? EINVAL : ENXIO);
		return;
	}
	if ((uint64_t)off >= fsize) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	/* the fd's offset is never used for I/O (pread/pwrite only) */
	r = lseek(fd, (off_t)(base + (uint64_t)off), whence);
	if (r < 0 && errno != ENXIO) {
		fuse_reply_err(req, errno);
		return;
	}
	if (whence == SEEK_DATA) {
		if (r < 0 || (uint64_t)r >= base + fsize)
			fuse_reply_err(req, ENXIO);
		else
			fuse_reply_lseek(req, (off_t)((uint64_t)r - base));
		return;
	}
	if (r < 0 || (uint64_t)r > base + fsize)
		r = (off_t)(base + fsize);
	fuse_reply_lseek(req, (off_t)((uint64_t)r - base));
}

/* ---- xattrs ---- */

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	const void *value = NULL;
	void *copy = NULL;
	uint32_t id;
	int len;

	l = decode_ino(fs, ino, &id);
	if (!l) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	pthread_rwlock_rdlock(&l->lock);
	len = sf_index_inode(l->idx, id)
		      ? sf_index_getxattr(l->idx, id, name, fs->opaque_xattr, &value)
		      : -ENOENT;
	if (len > 0 && size >= (size_t)len) {
		copy = malloc((size_t)len);
		if (copy)
			memcpy(copy, value, (size_t)len);
	}
	pthread_rwlock_unlock(&l->lock);
	if (len < 0)
		fuse_reply_err(req, -len);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else if (size < (size_t)len)
		fuse_reply_err(req, ERANGE);
	else if (len > 0 && !copy)
		fuse_reply_err(req, ENOMEM);
	else
		fuse_reply_buf(req, copy, (size_t)len);
	free(copy);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct sf_fs *fs = fs_of(req);
	struct sf_layer *l;
	char *buf = size ? malloc(size) : NULL;
	uint32_t id;
	int len;

	l = decode_ino(fs, ino, &id);
	if (!l) {
		free(buf);
		if (size)
			fuse_reply_buf(req, NULL, 0);
		else
			fuse_reply_xattr(req, 0);
		return;
	}
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_rwlock_rdlock(&l->lock);
	len = sf_index_inode(l->idx, id)
		      ? sf_index_listxattr(l->idx, id, fs->opaque_xattr, buf, size)
		      : -ENOENT;
	pthread_rwlock_unlock(&l->lock);
	if (len < 0)
		fuse_reply_err(req, -len);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else
		fuse_reply_buf(req, buf, (size_t)len);
	free(buf);
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
	fs->opaque_xattr = opaque_xattr;
	pthread_mutex_init(&fs->wait_lock, NULL);
	fs->lowerdir = malloc(cap);
	if (!fs->lowerdir)
		return -ENOMEM;
	fs->lowerdir[0] = '\0';
	for (unsigned i = n_layers; i-- > 0;)
		used += (size_t)snprintf(fs->lowerdir + used, cap - used, "%s%s/layers/%u",
					 used ? ":" : "", mountpoint, i);
	snprintf(fs->lowerdir + used, cap - used, "\n");
	for (unsigned i = 0; i < n_layers; i++) {
		layers[i].notify = sf_fs_layer_notify;
		layers[i].notify_arg = fs;
	}
	return 0;
}

void sf_fs_destroy(struct sf_fs *fs)
{
	sf_fs_fail_waiters(fs, EIO);
	free(fs->lowerdir);
	pthread_mutex_destroy(&fs->wait_lock);
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
		uint64_t fetched;
		json_t *o;

		pthread_mutex_lock(&l->blob.lock);
		fetched = st == SF_LAYER_COMPLETE ? l->desc->size : l->blob.fetched;
		pthread_mutex_unlock(&l->blob.lock);
		o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I}", "index", i, "digest",
				      l->desc->digest, "state", sf_layer_state_name(st), "size",
				      (json_int_t)l->desc->size, "fetched",
				      (json_int_t)fetched,
				      "unpacked", (json_int_t)atomic_load(&l->unpacked));
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
