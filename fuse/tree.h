/* tree.h - serving layer trees over FUSE: the operations on the entries of
 * struct sf_layer indexes, shared by the image mount (fs.c) and the
 * additional layer store (store.c).
 *
 * Inode numbers of layer entries: entry `id` of the layer whose `number`
 * is n (index.h's dense local id; SF_INDEX_ROOT is the layer's root) is
 * ((n + 1) << 32) | id.  A front-end keeps the numbers it uses for its own
 * entries outside that range: below 1 << 32 (the mount's fixed entries) or
 * with one of the top four bits set (the store's dynamic entries), so a
 * layer's number must stay below SF_TREE_MAX_LAYERS.
 *
 * Every reply is made here, including the deferred ones: a lookup of a name
 * not arrived yet, or a readdir of an incomplete layer, is parked on the
 * tree's waiters and answered from the layer's pull thread (sf_tree_notify)
 * or with EINTR when its process is signalled.
 */
#ifndef SF_TREE_H
#define SF_TREE_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

#include "layer.h"

#define SF_TREE_MAX_LAYERS (1u << 27)
#define SF_TREE_FINAL_TIMEOUT 86400.0
#define SF_TREE_STREAMING_TIMEOUT 1.0

struct sf_waiter;

/* Which layer has number n: NULL when none.  Called with no lock held; the
 * layer must stay valid as long as the tree does. */
typedef struct sf_layer *(*sf_tree_layer_fn)(void *arg, unsigned n);

struct sf_tree {
	const char *opaque_xattr; /* "trusted.overlay.opaque" or "user.overlay.opaque" */
	sf_tree_layer_fn layer;
	void *layer_arg;

	pthread_mutex_t wait_lock; /* guards waiters */
	struct sf_waiter *waiters; /* requests parked until a layer has more */
};

void sf_tree_init(struct sf_tree *t, const char *opaque_xattr, sf_tree_layer_fn layer,
		  void *layer_arg);
/* Answers every parked request with EIO. */
void sf_tree_destroy(struct sf_tree *t);

/* Layer callback (layer.h notify, arg = the tree): answer the parked
 * requests it can now answer; logs a layer's failure once. */
void sf_tree_notify(struct sf_layer *l, void *tree);
/* Answer every parked request with errno `error` (at shutdown). */
void sf_tree_fail_waiters(struct sf_tree *t, int error);

fuse_ino_t sf_tree_ino(const struct sf_layer *l, uint32_t id);
/* The layer of a layer-entry inode number, and the entry id; NULL when ino
 * is not one. */
struct sf_layer *sf_tree_decode(struct sf_tree *t, fuse_ino_t ino, uint32_t *id);
/* Entry timeout for a layer's entries: long once complete. */
double sf_tree_timeout(struct sf_layer *l);
/* Fill e (or st) for entry id of l; takes l->lock. */
void sf_tree_entry(struct sf_layer *l, uint32_t id, struct fuse_entry_param *e);
void sf_tree_stat(struct sf_layer *l, uint32_t id, struct stat *st);

/* Operations on layer entries; each replies to req. */
void sf_tree_lookup(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t dir,
		    const char *name);
void sf_tree_getattr(fuse_req_t req, struct sf_layer *l, uint32_t id);
void sf_tree_readlink(fuse_req_t req, struct sf_layer *l, uint32_t id);
/* Call done(req, l, arg, size, off) to reply once l is complete (at once if
 * it is); a failed layer gets EIO and a signalled process EINTR instead.
 * arg is borrowed and must outlive the tree. */
typedef void (*sf_tree_done_fn)(fuse_req_t req, struct sf_layer *l, void *arg, size_t size,
				off_t off);
void sf_tree_when_complete(struct sf_tree *t, fuse_req_t req, struct sf_layer *l,
			   sf_tree_done_fn done, void *arg, size_t size, off_t off);
void sf_tree_opendir(fuse_req_t req, struct sf_layer *l, struct fuse_file_info *fi);
void sf_tree_readdir(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t dir,
		     size_t size, off_t off, bool plus);
void sf_tree_open(fuse_req_t req, struct sf_layer *l, struct fuse_file_info *fi);
void sf_tree_read(fuse_req_t req, struct sf_layer *l, uint32_t id, size_t size, off_t off);
/* SEEK_DATA/SEEK_HOLE within a regular file of the layer (from the data
 * file's holes); other whences get EINVAL. */
void sf_tree_lseek(fuse_req_t req, struct sf_layer *l, uint32_t id, off_t off, int whence);
void sf_tree_getxattr(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t id,
		      const char *name, size_t size);
void sf_tree_listxattr(struct sf_tree *t, fuse_req_t req, struct sf_layer *l, uint32_t id,
		       size_t size);

/* One directory entry into a readdir(plus) buffer (fuse_add_direntry*). */
size_t sf_tree_add_dirent(fuse_req_t req, char *buf, size_t rem, const char *name,
			  const struct stat *st, off_t next, bool plus, double timeout);
/* Reply with the part of text at [off, off + size). */
void sf_tree_reply_text(fuse_req_t req, const char *text, size_t size, off_t off);

#endif
