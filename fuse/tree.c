/* tree.c - FUSE operations on layer trees (see tree.h).
 *
 * Waiting without blocking workers.  While a layer is being unpacked, a
 * LOOKUP for a name it does not have yet, or a READDIR of one of its
 * directories, is parked on t->waiters and the worker returns at once.
 * The layer's pull thread calls sf_tree_notify after every entry it adds
 * and when the layer's state changes; that answers each parked request it
 * can (libfuse allows replies from any thread).  A lookup is checked and
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
#include "tree.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

enum waiter_kind { WAIT_LOOKUP, WAIT_READDIR, WAIT_DONE };

struct sf_waiter {
	struct sf_waiter *next;
	enum waiter_kind kind;
	fuse_req_t req;
	struct sf_layer *l; /* borrowed: layers outlive the tree's requests */
	uint32_t dir;
	char *name; /* lookup */
	size_t size; /* readdir, done */
	off_t off;
	bool plus;
	sf_tree_done_fn done; /* done */
	void *arg;
};

void sf_tree_init(struct sf_tree *t, const char *opaque_xattr, sf_tree_layer_fn layer,
		  void *layer_arg)
{
	memset(t, 0, sizeof(*t));
	t->opaque_xattr = opaque_xattr;
	t->layer = layer;
	t->layer_arg = layer_arg;
	pthread_mutex_init(&t->wait_lock, NULL);
}

void sf_tree_destroy(struct sf_tree *t)
{
	sf_tree_fail_waiters(t, EIO);
	pthread_mutex_destroy(&t->wait_lock);
}

fuse_ino_t sf_tree_ino(const struct sf_layer *l, uint32_t id)
{
	return ((fuse_ino_t)(l->number + 1) << 32) | id;
}

struct sf_layer *sf_tree_decode(struct sf_tree *t, fuse_ino_t ino, uint32_t *id)
{
	uint64_t hi = ino >> 32;

	if (hi == 0 || hi > SF_TREE_MAX_LAYERS)
		return NULL;
	*id = (uint32_t)ino;
	return t->layer(t->layer_arg, (unsigned)(hi - 1));
}

/* ---- attributes ---- */

double sf_tree_timeout(struct sf_layer *l)
{
	return sf_layer_state(l) == SF_LAYER_COMPLETE ? SF_TREE_FINAL_TIMEOUT
						      : SF_TREE_STREAMING_TIMEOUT;
}

/* Fill e for layer entry `id`; caller holds l->lock shared. */
static void entry_locked(struct sf_layer *l, uint32_t id, struct fuse_entry_param *e)
{
	/* once the kernel knows an entry, the pull may no longer swap the
	 * index for a fresh one (layer.h, `exposed`) */
	if (id != SF_INDEX_ROOT)
		atomic_store(&l->exposed, true);
	memset(e, 0, sizeof(*e));
	sf_index_stat(l->idx, id, &e->attr);
	e->ino = sf_tree_ino(l, id);
	e->attr.st_ino = e->ino;
	e->attr_timeout = e->entry_timeout = sf_tree_timeout(l);
}

void sf_tree_entry(struct sf_layer *l, uint32_t id, struct fuse_entry_param *e)
{
	pthread_rwlock_rdlock(&l->lock);
	entry_locked(l, id, e);
	pthread_rwlock_unlock(&l->lock);
}

void sf_tree_stat(struct sf_layer *l, uint32_t id, struct stat *st)
{
	pthread_rwlock_rdlock(&l->lock);
	sf_index_stat(l->idx, id, st);
	pthread_rwlock_unlock(&l->lock);
	st->st_ino = sf_tree_ino(l, id);
}

/* ---- waiting ---- */

static void free_waiter(struct sf_waiter *w)
{
	free(w->name);
	free(w);
}

static bool try_answer(struct sf_waiter *w);

/* The process behind a parked request got a signal (Ctrl-C, timeout,
 * kill -9): answer EINTR now, or the kernel keeps it waiting for the layer.
 * Called by libfuse, possibly before the request was parked. */
static void on_interrupt(fuse_req_t req, void *arg)
{
	struct sf_tree *t = arg;

	pthread_mutex_lock(&t->wait_lock);
	for (struct sf_waiter **pp = &t->waiters; *pp; pp = &(*pp)->next) {
		struct sf_waiter *w = *pp;
		if (w->req == req) {
			*pp = w->next;
			fuse_reply_err(req, EINTR);
			free_waiter(w);
			break;
		}
	}
	pthread_mutex_unlock(&t->wait_lock);
}

/* Answer w now if possible, else park it until its layer has more.  Takes
 * ownership of w. */
static void answer_or_park(struct sf_tree *t, struct sf_waiter *w)
{
	/* registered before wait_lock is taken: libfuse may call on_interrupt
	 * at once, and on_interrupt takes wait_lock */
	fuse_req_interrupt_func(w->req, on_interrupt, t);
	pthread_mutex_lock(&t->wait_lock);
	if (fuse_req_interrupted(w->req)) {
		fuse_reply_err(w->req, EINTR);
		free_waiter(w);
	} else if (try_answer(w)) {
		free_waiter(w);
	} else {
		w->next = t->waiters;
		t->waiters = w;
	}
	pthread_mutex_unlock(&t->wait_lock);
}

static void do_readdir(fuse_req_t req, struct sf_layer *l, uint32_t dir, size_t size, off_t off,
		       bool plus);

/* Try to answer w now.  Returns true when it was answered. */
static bool try_answer(struct sf_waiter *w)
{
	struct sf_layer *l = w->l;
	enum sf_layer_state st = sf_layer_state(l);
	struct fuse_entry_param e;
	uint32_t id = 0;

	if (st == SF_LAYER_FAILED) {
		fuse_reply_err(w->req, EIO);
		return true;
	}
	if (w->kind == WAIT_READDIR || w->kind == WAIT_DONE) {
		if (st != SF_LAYER_COMPLETE)
			return false;
		if (w->kind == WAIT_DONE)
			w->done(w->req, l, w->arg, w->size, w->off);
		else
			do_readdir(w->req, l, w->dir, w->size, w->off, w->plus);
		return true;
	}
	pthread_rwlock_rdlock(&l->lock);
	id = sf_index_lookup(l->idx, w->dir, w->name);
	if (id)
		entry_locked(l, id, &e);
	pthread_rwlock_unlock(&l->lock);
	if (id) {
		fuse_reply_entry(w->req, &e);
		return true;
	}
	if (st != SF_LAYER_COMPLETE)
		return false;
	e = (struct fuse_entry_param){ .entry_timeout = SF_TREE_FINAL_TIMEOUT }; /* negative */
	fuse_reply_entry(w->req, &e);
	return true;
}

void sf_tree_notify(struct sf_layer *l, void *arg)
{
	struct sf_tree *t = arg;
	struct sf_waiter **pp;

	pthread_mutex_lock(&t->wait_lock);
	if (sf_layer_state(l) == SF_LAYER_FAILED && !l->failure_reported) {
		l->failure_reported = true;
		syslog(LOG_ERR, "%s", l->err.msg);
		fprintf(stderr, "soci-fuse: %s\n", l->err.msg);
	}
	for (pp = &t->waiters; *pp;) {
		struct sf_waiter *w = *pp;
		if (w->l == l && try_answer(w)) {
			*pp = w->next;
			free_waiter(w);
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&t->wait_lock);
}

void sf_tree_fail_waiters(struct sf_tree *t, int error)
{
	pthread_mutex_lock(&t->wait_lock);
	while (t->waiters) {
		struct sf_waiter *w = t->waiters;
		t->waiters = w->next;
		fuse_reply_err(w->req, error);
		free_waiter(w);
	}
	pthread_mutex_unlock(&t->wait_lock);
}

/* ---- failed layers ----
 * Every request on a failed layer gets EIO (README): its index was never
 * verified (a digest failed, or the stream broke off), so no answer from
 * it may be given, including to a process that still holds one of its
 * files open.  Lookups and readdirs check it in try_answer; every other
 * operation starts here.  Replies EIO and returns true when l failed. */
static bool refuse_failed(fuse_req_t req, struct sf_layer *l)
{
	if (sf_layer_state(l) != SF_LAYER_FAILED)
		return false;
	fuse_reply_err(req, EIO);
	return true;
}

/* ---- lookup, getattr, readlink ---- */

void sf_tree_lookup(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t dir,
		    const char *name)
{
	struct sf_waiter *w = calloc(1, sizeof(*w));

	if (w) {
		*w = (struct sf_waiter){ .kind = WAIT_LOOKUP, .req = req, .l = l, .dir = dir,
					 .name = strdup(name) };
	}
	if (!w || !w->name) {
		if (w)
			free_waiter(w);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	answer_or_park(t, w);
}

void sf_tree_getattr(fuse_req_t req, struct sf_layer *l, uint32_t id)
{
	struct stat st;
	int rc = 0;

	if (refuse_failed(req, l))
		return;
	pthread_rwlock_rdlock(&l->lock);
	if (sf_index_inode(l->idx, id))
		sf_index_stat(l->idx, id, &st);
	else
		rc = ENOENT;
	pthread_rwlock_unlock(&l->lock);
	st.st_ino = sf_tree_ino(l, id);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, sf_tree_timeout(l));
}

void sf_tree_readlink(fuse_req_t req, struct sf_layer *l, uint32_t id)
{
	const struct sf_inode *node;
	char *target = NULL;

	if (refuse_failed(req, l))
		return;
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

size_t sf_tree_add_dirent(fuse_req_t req, char *buf, size_t rem, const char *name,
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
static void do_readdir(fuse_req_t req, struct sf_layer *l, uint32_t dir, size_t size, off_t off,
		       bool plus)
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
		st.st_ino = sf_tree_ino(l, target);
		n = sf_tree_add_dirent(req, buf + used, size - used, dot ? ".." : ".", &st,
				       dot + 1, plus, SF_TREE_FINAL_TIMEOUT);
		if (n > size - used)
			goto done;
		used += n;
	}
	d = off < 2 ? node->first_child : l->idx->dentries[off - 2].next_sibling;
	for (; d; d = l->idx->dentries[d].next_sibling) {
		const struct sf_dentry *de = &l->idx->dentries[d];
		sf_index_stat(l->idx, de->ino, &st);
		st.st_ino = sf_tree_ino(l, de->ino);
		n = sf_tree_add_dirent(req, buf + used, size - used, de->name, &st, (off_t)d + 2,
				       plus, SF_TREE_FINAL_TIMEOUT);
		if (n > size - used)
			break;
		used += n;
	}
done:
	pthread_rwlock_unlock(&l->lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void sf_tree_readdir(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t dir,
		     size_t size, off_t off, bool plus)
{
	struct sf_waiter *w = calloc(1, sizeof(*w));

	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*w = (struct sf_waiter){ .kind = WAIT_READDIR, .req = req, .l = l, .dir = dir,
				 .size = size, .off = off, .plus = plus };
	answer_or_park(t, w);
}

void sf_tree_when_complete(struct sf_tree *t, fuse_req_t req, struct sf_layer *l,
			   sf_tree_done_fn done, void *arg, size_t size, off_t off)
{
	struct sf_waiter *w = calloc(1, sizeof(*w));

	if (!w) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*w = (struct sf_waiter){ .kind = WAIT_DONE, .req = req, .l = l, .done = done, .arg = arg,
				 .size = size, .off = off };
	answer_or_park(t, w);
}

void sf_tree_opendir(fuse_req_t req, struct sf_layer *l, struct fuse_file_info *fi)
{
	if (refuse_failed(req, l))
		return;
	fi->cache_readdir = sf_layer_state(l) == SF_LAYER_COMPLETE;
	fi->keep_cache = fi->cache_readdir;
	fuse_reply_open(req, fi);
}

/* ---- files ---- */

void sf_tree_open(fuse_req_t req, struct sf_layer *l, struct fuse_file_info *fi)
{
	if (refuse_failed(req, l))
		return;
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = sf_layer_state(l) == SF_LAYER_COMPLETE;
	fuse_reply_open(req, fi);
}

void sf_tree_reply_text(fuse_req_t req, const char *text, size_t size, off_t off)
{
	size_t len = strlen(text);

	if (off < 0 || (size_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, text + off, len - (size_t)off < size ? len - (size_t)off : size);
}

/* Where regular file `id`'s bytes are: the layer's data fd (borrowed; -1
 * when id is not a regular file), *base its offset there, *size its size. */
static int file_extent(struct sf_layer *l, uint32_t id, uint64_t *base, uint64_t *size)
{
	const struct sf_inode *node;
	int fd = -1;

	*base = *size = 0;
	pthread_rwlock_rdlock(&l->lock);
	node = sf_index_inode(l->idx, id);
	if (node && S_ISREG(node->mode)) {
		*base = node->data_off;
		*size = node->size;
		fd = l->data_fd;
	}
	pthread_rwlock_unlock(&l->lock);
	return fd;
}

void sf_tree_read(fuse_req_t req, struct sf_layer *l, uint32_t id, size_t size, off_t off)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(0);
	uint64_t data_off, fsize;
	int fd;

	if (refuse_failed(req, l))
		return;
	fd = file_extent(l, id, &data_off, &fsize);
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

/* ---- xattrs ---- */

void sf_tree_getxattr(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t id,
		      const char *name, size_t size)
{
	const void *value = NULL;
	void *copy = NULL;
	int len;

	if (refuse_failed(req, l))
		return;
	pthread_rwlock_rdlock(&l->lock);
	len = sf_index_inode(l->idx, id)
		      ? sf_index_getxattr(l->idx, id, name, t->opaque_xattr, &value)
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

void sf_tree_listxattr(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t id,
		       size_t size)
{
	char *buf = NULL;
	int len;

	if (refuse_failed(req, l))
		return;
	buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_rwlock_rdlock(&l->lock);
	len = sf_index_inode(l->idx, id)
		      ? sf_index_listxattr(l->idx, id, t->opaque_xattr, buf, size)
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

/* SEEK_DATA / SEEK_HOLE (the kernel handles the other whences itself):
 * answered from the layer's data file, where a file's holes are holes too,
 * so `cp --sparse`, tar -S and checks of huge sparse files need not read
 * gigabytes of zeros.  The answer is clamped to the file's own extent of
 * the data file, which continues with the next file's data. */
void sf_tree_lseek(fuse_req_t req, struct sf_layer *l, uint32_t id, off_t off, int whence)
{
	uint64_t base, fsize;
	off_t r;
	int fd;

	if (refuse_failed(req, l))
		return;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fd = file_extent(l, id, &base, &fsize);
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
