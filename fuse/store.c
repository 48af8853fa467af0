/* store.c - `soci-fuse store MNT`: an Additional Layer Store (ALS).
 *
 * The protocol, as containers/storage 1.43's overlay driver (podman 4.3,
 * Debian 12) uses a store configured as `additionallayerstores =
 * ["MNT:ref"]`: before pulling a layer, containers/image asks for
 *
 *     MNT/<base64(ref)>/<compressed blob digest>/{diff,info,blob}
 *
 * where ref is the image's full normalised reference ("host/repo:tag" or
 * "host/repo@sha256:...") in standard base64 with padding.  Any stat error
 * there means "not in the store" and podman pulls the layer itself, so a
 * lookup answers at once: ENOENT when the reference cannot be resolved or
 * the digest is not one of its layers.  When all three exist, podman reads
 * `info` (JSON: compressed-diff-digest, compressed-size, diff-digest =
 * the config's diff_id, diff-size, compression 0/2/4), symlinks its layer's
 * diff to our `diff` and stacks it under its own overlayfs.  containers/
 * storage 1.43 stores diff-size in its layer record at once and then fails
 * every use of an image with an unknown (-1) size, so a read of `info`
 * waits until the layer is complete (parked like a lookup, interruptible):
 * podman 4.3's pull returns once the layers are unpacked in our cache (with
 * no copy into its own storage), not before.  podman announces a user by
 * creating `use` in the layer dir and a release by rmdir of the layer dir;
 * a notification-aware store answers both with ENOENT, and this one counts
 * users per layer.  There is no garbage collection of the cache yet; the
 * counts are in MNT/.status for one.
 *
 * Serving.  The store resolves a reference itself (src/registry.c, with the
 * mount's registry options), with the same cache as `mount`: a resolved
 * reference is saved in images/ and used when the registry is unreachable;
 * layers come from layers/ when complete there, else a pull thread
 * (src/layer.c) starts at the first lookup of the layer dir and `diff`
 * serves the tree as it streams in, exactly like <mnt>/layers/N of a mount
 * (tree.c: waits, whiteouts as 0/0 char devices, opaque xattr).  A layer
 * that failed is answered ENOENT once (podman falls back) and pulled afresh
 * at its next lookup.  A digest that is not a layer of what the reference
 * resolves to now is still served when the store has served it before or
 * the cache has it complete (store_known_layer): podman's layer symlinks
 * the path it was first served under, which must outlive a moved tag or a
 * restart.
 *
 * `blob` must be the registry's exact bytes.  The cache drops the
 * compressed blob once a layer is unpacked and verified, and the store keeps
 * it that way: podman reads `blob` only to push or save an image, keeping
 * every blob would double the disk used for a file that is rarely read, and
 * layers cached by `mount` have no blob anyway.  So reads of `blob` are
 * range GETs to the registry (store_blob.c), 4 MiB at a time per open file;
 * they need the registry.
 *
 * Inode numbers.  A dynamic tree of unbounded names needs numbers that can
 * be decoded without a lookup table per request; the top four bits say what
 * an inode is (tree.h leaves them zero for layer entries):
 *
 *   1                          the root
 *   K_STATUS << 60             MNT/.status
 *   K_NODE << 60 | n           node n: a directory whose path below the root
 *                              is a piece of base64 text.  Standard base64
 *                              has '/', so <base64(ref)> may span several
 *                              directories: node "abc" has child "abc/def".
 *                              (For ASCII text only a '?' or DEL byte encodes
 *                              to '/', and references have neither; the
 *                              nodes handle it anyway.)
 *                              A node's text is interned (one node per text)
 *                              and never freed; at most SF_STORE_MAX_NODES.
 *   K_LDIR << 60 | n << 28 | s the layer dir of layer slot s under node n
 *   K_INFO, K_BLOB likewise    its info and blob files
 *   ((s + 1) << 32) | id       entry id of slot s's tree (tree.h): `diff` is
 *                              the root of that tree
 *
 * A layer slot holds one struct sf_layer (number = s) and its descriptor;
 * slots are shared by every reference with that layer (keyed by blob
 * digest), never freed while mounted, so inode numbers stay valid and
 * FORGET is a no-op.  Locks: `lock` guards the tables (nodes, refs, slots)
 * and counters and is never held across I/O; a reference's own mutex
 * serializes its resolves; `create_lock` serializes slot creation (which
 * reads the cache).
 */
#include "store-private.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cache_gc.h"
#include "digest.h"
#include "dirops.h"
#include "layer.h"
#include "ref.h"
#include "registry.h"
#include "stop.h"
#include "tree.h"

/* ---- attributes ---- */

/* The root is root's only (0700): every name looked up in it can make the
 * daemon resolve a reference over the network and keep a node, which other
 * users must not be able to cause.  The runtimes run as root, and overlayfs
 * reaches its lower layers with the mounter's credentials. */
static void dir_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | (ino == FUSE_ROOT_ID ? 0700 : 0755);
	st->st_nlink = 2;
	st->st_blksize = 4096;
}

void store_file_stat(fuse_ino_t ino, uint64_t size, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = (off_t)size;
	st->st_blksize = 4096;
}

static void reply_dyn_entry(fuse_req_t req, const struct stat *st, double timeout)
{
	struct fuse_entry_param e = { .ino = st->st_ino, .attr = *st, .attr_timeout = timeout,
				      .entry_timeout = timeout };

	fuse_reply_entry(req, &e);
}

static void reply_negative(fuse_req_t req, double timeout)
{
	fuse_reply_entry(req, &(struct fuse_entry_param){ .entry_timeout = timeout });
}

/* ---- lookup ---- */

static void lookup_layer_dir(fuse_req_t req, unsigned n, const char *digest)
{
	struct store *s = st_of(req);
	struct ref_rec *rec = store_node_ref(s, n);
	const struct sf_layer_desc *desc;
	struct stat st;
	int slot = -1;

	if (rec) {
		pthread_mutex_lock(&rec->lock);
		if (store_find_layer(s, rec, digest, &desc))
			slot = store_get_slot(s, desc, rec->reg);
		else
			slot = store_known_layer(s, digest, rec->reg);
		pthread_mutex_unlock(&rec->lock);
	}
	pthread_mutex_lock(&s->lock);
	if (slot >= 0 && sf_layer_state(&s->slots[slot]->layer) == SF_LAYER_FAILED) {
		s->slots[slot]->retired = true; /* fall back now, pull afresh next time */
		slot = -1;
	}
	if (slot >= 0)
		s->count.hits++;
	else
		s->count.misses++;
	pthread_mutex_unlock(&s->lock);
	if (slot < 0) {
		fuse_reply_err(req, ENOENT); /* not cached by the kernel: may appear later */
		return;
	}
	dir_stat(make_ino(K_LDIR, n, (unsigned)slot), &st);
	reply_dyn_entry(req, &st, DYN_TIMEOUT);
}

/* A layer dir lookup may resolve the reference over the network, which
 * takes up to the stall timeout with a registry that accepts connections
 * and never answers.  On a FUSE thread, a handful of such lookups (podman
 * asks for every layer of an image) would hold all of them, and every
 * other request, also reads of running containers' layers, would wait.
 * So it runs on a thread of its own (at most SF_STORE_MAX_LOOKUP_THREADS;
 * beyond that, or when none can be made, on the FUSE thread as before)
 * and replies from there; store_free waits for these threads. */
struct lookup_job {
	struct store *s;
	fuse_req_t req;
	unsigned n;
	char digest[]; /* the name looked up */
};

static void *lookup_job_run(void *arg)
{
	struct lookup_job *j = arg;
	struct store *s = j->s;

	lookup_layer_dir(j->req, j->n, j->digest);
	free(j);
	pthread_mutex_lock(&s->lock);
	if (--s->lookup_threads == 0)
		pthread_cond_broadcast(&s->lookups_done);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void lookup_layer_dir_async(fuse_req_t req, unsigned n, const char *digest)
{
	struct store *s = st_of(req);
	struct lookup_job *j = malloc(sizeof(*j) + strlen(digest) + 1);
	pthread_attr_t attr;
	pthread_t t;
	bool started = false;

	pthread_mutex_lock(&s->lock);
	if (j && s->lookup_threads < SF_STORE_MAX_LOOKUP_THREADS && pthread_attr_init(&attr) == 0) {
		*j = (struct lookup_job){ .s = s, .req = req, .n = n };
		strcpy(j->digest, digest);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		started = pthread_create(&t, &attr, lookup_job_run, j) == 0;
		pthread_attr_destroy(&attr);
		if (started)
			s->lookup_threads++; /* under the lock: the job decrements after */
	}
	pthread_mutex_unlock(&s->lock);
	if (!started) {
		free(j);
		lookup_layer_dir(req, n, digest);
	}
}

static void lookup_in_ldir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = st_of(req);
	struct fuse_entry_param e;
	struct slot *sl;
	struct stat st;
	unsigned n;

	if (!store_decode_ldir(s, parent, &n, &sl)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (strcmp(name, "diff") == 0) {
		sf_tree_entry(&sl->layer, SF_INDEX_ROOT, &e);
		fuse_reply_entry(req, &e);
	} else if (strcmp(name, "info") == 0) {
		store_file_stat(make_ino(K_INFO, n, (unsigned)(parent & SLOT_MASK)), 0, &st);
		reply_dyn_entry(req, &st, 0);
	} else if (strcmp(name, "blob") == 0) {
		store_file_stat(make_ino(K_BLOB, n, (unsigned)(parent & SLOT_MASK)), sl->desc.size, &st);
		reply_dyn_entry(req, &st, SF_TREE_FINAL_TIMEOUT);
	} else {
		reply_negative(req, 0); /* `use` must reach create every time */
	}
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = st_of(req);
	struct sf_layer *l;
	_cleanup_free_ char *text = NULL;
	struct stat st;
	uint32_t id;
	unsigned n;

	switch (kind_of(parent)) {
	case K_TREE:
		if (parent == FUSE_ROOT_ID) {
			if (strcmp(name, SF_STORE_STATUS_NAME) == 0) {
				store_file_stat(INO_STATUS, 0, &st);
				reply_dyn_entry(req, &st, 0);
				return;
			}
			break; /* a first piece of base64 text */
		}
		l = sf_tree_decode(&s->tree, parent, &id);
		if (l)
			sf_tree_lookup(&s->tree, req, l, id, name);
		else
			fuse_reply_err(req, ENOENT);
		return;
	case K_NODE:
		if (sf_digest_valid(name)) {
			lookup_layer_dir_async(req, (unsigned)(parent & 0xffffffffu), name);
			return;
		}
		break;
	case K_LDIR:
		lookup_in_ldir(req, parent, name);
		return;
	default:
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* a directory of base64 text (parent: root or a node) */
	if (!store_b64_component(name)) {
		reply_negative(req, SF_TREE_FINAL_TIMEOUT);
		return;
	}
	if (parent == FUSE_ROOT_ID) {
		text = strdup(name);
	} else {
		pthread_mutex_lock(&s->lock);
		n = (unsigned)(parent & 0xffffffffu);
		if (n > 0 && n < s->n_nodes && !strchr(s->nodes[n]->text, '='))
			(void)!asprintf(&text, "%s/%s", s->nodes[n]->text, name);
		pthread_mutex_unlock(&s->lock);
	}
	if (!text || strlen(text) > SF_STORE_MAX_TEXT || !(n = store_intern_node(s, parent, text))) {
		reply_negative(req, 0);
		return;
	}
	dir_stat(make_ino(K_NODE, 0, n), &st);
	reply_dyn_entry(req, &st, SF_TREE_FINAL_TIMEOUT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = st_of(req);
	struct sf_layer *l;
	struct slot *sl;
	struct stat st;
	uint32_t id;
	unsigned n;

	(void)fi;
	switch (kind_of(ino)) {
	case K_TREE:
		if (ino == FUSE_ROOT_ID) {
			dir_stat(ino, &st);
			fuse_reply_attr(req, &st, SF_TREE_FINAL_TIMEOUT);
		} else if ((l = sf_tree_decode(&s->tree, ino, &id))) {
			sf_tree_getattr(req, l, id);
		} else {
			fuse_reply_err(req, ENOENT);
		}
		return;
	case K_NODE:
		dir_stat(ino, &st);
		fuse_reply_attr(req, &st, SF_TREE_FINAL_TIMEOUT);
		return;
	case K_STATUS:
		store_file_stat(ino, 0, &st);
		fuse_reply_attr(req, &st, 0);
		return;
	case K_LDIR:
	case K_INFO:
	case K_BLOB:
		if (!store_decode_ldir(s, ino, &n, &sl)) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		if (kind_of(ino) == K_LDIR)
			dir_stat(ino, &st);
		else
			store_file_stat(ino, kind_of(ino) == K_BLOB ? sl->desc.size : 0, &st);
		fuse_reply_attr(req, &st, kind_of(ino) == K_BLOB ? SF_TREE_FINAL_TIMEOUT : 0);
		return;
	}
	fuse_reply_err(req, ENOENT);
}

/* ---- the use count: create `use`, rmdir the layer dir ---- */

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct store *s = st_of(req);
	struct slot *sl;
	unsigned n;

	(void)mode;
	(void)fi;
	if (kind_of(parent) != K_LDIR || strcmp(name, "use") || !store_decode_ldir(s, parent, &n, &sl)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&s->lock);
	sl->users++;
	s->count.uses++;
	pthread_mutex_unlock(&s->lock);
	fuse_reply_err(req, ENOENT); /* "notification-aware" */
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = st_of(req);
	int i;

	if (kind_of(parent) != K_NODE || !sf_digest_valid(name)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_mutex_lock(&s->lock);
	i = store_find_slot(s, name);
	if (i >= 0 && s->slots[i]->users > 0)
		s->slots[i]->users--;
	s->count.releases++;
	pthread_mutex_unlock(&s->lock);
	fuse_reply_err(req, ENOENT);
}

static void op_erofs_name(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)mode;
	op_erofs_name(req, parent, name);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	(void)mode;
	(void)rdev;
	op_erofs_name(req, parent, name);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	op_erofs_name(req, parent, name);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)newparent;
	(void)newname;
	(void)flags;
	op_erofs_name(req, parent, name);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	op_erofs_name(req, newparent, newname);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)ino;
	(void)attr;
	(void)to_set;
	(void)fi;
	fuse_reply_err(req, EROFS);
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint32_t id;
	struct sf_layer *l = kind_of(ino) == K_TREE ? sf_tree_decode(&st_of(req)->tree, ino, &id)
						    : NULL;

	if (l)
		sf_tree_opendir(req, l, fi);
	else
		fuse_reply_open(req, fi);
}

/* The root lists .status; a layer dir lists diff, info, blob; nodes list
 * nothing (what they hold appears on lookup). */
static void dyn_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct store *s = st_of(req);
	static const char *ldir_names[] = { ".", "..", "diff", "info", "blob" };
	static const char *root_names[] = { ".", "..", SF_STORE_STATUS_NAME };
	const char **names = kind_of(ino) == K_LDIR ? ldir_names : root_names;
	unsigned count = kind_of(ino) == K_LDIR ? 5 : ino == FUSE_ROOT_ID ? 3 : 2;
	char *buf = malloc(size);
	size_t used = 0, len;
	struct slot *sl = NULL;
	unsigned n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (kind_of(ino) == K_LDIR && !store_decode_ldir(s, ino, &n, &sl)) {
		free(buf);
		fuse_reply_err(req, ENOENT);
		return;
	}
	for (unsigned i = off < 0 ? 0 : (unsigned)off; i < count; i++) {
		struct stat st;
		if (i < 2)
			dir_stat(ino, &st);
		else if (!sl)
			store_file_stat(INO_STATUS, 0, &st);
		else if (i == 2)
			sf_tree_stat(&sl->layer, SF_INDEX_ROOT, &st);
		else
			store_file_stat((ino & ~((fuse_ino_t)0xf << KIND_SHIFT)) |
					  ((fuse_ino_t)(i == 3 ? K_INFO : K_BLOB) << KIND_SHIFT),
				  i == 3 ? 0 : sl->desc.size, &st);
		len = sf_tree_add_dirent(req, buf + used, size - used, names[i], &st, (off_t)i + 1,
					 plus, 0);
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct store *s = st_of(req);
	struct sf_layer *l;
	uint32_t id;

	if (kind_of(ino) == K_TREE && ino != FUSE_ROOT_ID) {
		l = sf_tree_decode(&s->tree, ino, &id);
		if (l)
			sf_tree_readdir(&s->tree, req, l, id, size, off, plus);
		else
			fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (kind_of(ino) == K_TREE || kind_of(ino) == K_NODE || kind_of(ino) == K_LDIR)
		dyn_readdir(req, ino, size, off, plus);
	else
		fuse_reply_err(req, ENOTDIR);
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

/* ---- xattrs, statfs ---- */

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct store *s = st_of(req);
	uint32_t id;
	struct sf_layer *l = kind_of(ino) == K_TREE ? sf_tree_decode(&s->tree, ino, &id) : NULL;

	if (l)
		sf_tree_getxattr(&s->tree, req, l, id, name, size);
	else
		fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct store *s = st_of(req);
	uint32_t id;
	struct sf_layer *l = kind_of(ino) == K_TREE ? sf_tree_decode(&s->tree, ino, &id) : NULL;

	if (l)
		sf_tree_listxattr(&s->tree, req, l, id, size);
	else if (size)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_xattr(req, 0);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	uint32_t id;
	struct sf_layer *l =
		kind_of(ino) == K_TREE ? sf_tree_decode(&st_of(req)->tree, ino, &id) : NULL;

	if (l)
		sf_tree_readlink(req, l, id);
	else
		fuse_reply_err(req, EINVAL);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv = { .f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255 };

	(void)ino;
	fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
}

static const struct fuse_lowlevel_ops store_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_erofs_name,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = store_op_open,
	.read = store_op_read,
	.release = store_op_release,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.create = op_create,
};

/* ---- the command ---- */

static void store_free(struct store *s)
{
	pthread_mutex_lock(&s->lock); /* lookups still resolving use everything below */
	while (s->lookup_threads)
		pthread_cond_wait(&s->lookups_done, &s->lock);
	pthread_mutex_unlock(&s->lock);
	sf_tree_fail_waiters(&s->tree, EIO);
	for (unsigned i = 0; i < s->n_slots; i++)
		s->slots[i]->layer.cancel = true;
	sf_fetcher_stop(s->fetcher); /* cancels blobs, so layer threads finish */
	for (unsigned i = 0; i < s->n_slots; i++) {
		sf_layer_destroy(&s->slots[i]->layer);
		sf_cache_unuse_layer(s->slots[i]->use_fd);
		store_free_desc(&s->slots[i]->desc);
		free(s->slots[i]);
	}
	sf_fetcher_free(s->fetcher);
	for (unsigned i = 0; i < s->n_refs; i++) {
		struct ref_rec *r = s->refs[i];
		sf_image_clear(&r->img);
		sf_registry_free(r->reg);
		sf_ref_clear(&r->ref);
		pthread_mutex_destroy(&r->lock);
		free(r->key);
		free(r);
	}
	for (unsigned i = 1; i < s->n_nodes; i++) {
		free(s->nodes[i]->text);
		free(s->nodes[i]);
	}
	free(s->nodes);
	free(s->refs);
	free(s->slots);
	sf_tree_destroy(&s->tree);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->create_lock);
	pthread_cond_destroy(&s->lookups_done);
	sf_cache_free(s->cache);
}

static int run_loop(struct fuse_session *se)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int rc;

	if (!cfg)
		return sf_cmd_fail("out of memory");
	fuse_loop_cfg_set_max_threads(cfg, 16);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc < 0 ? 1 : 0;
}

/* A stop signal unmounts the store, but the daemon serves on while running
 * containers' overlays still use it (stop.h). */
static int serve(struct store *s, struct fuse_session *se, const struct sf_mount_opts *o,
		 const char *abs)
{
	struct sf_error err = { 0 };
	struct sf_stop stop;
	sf_ret r;
	int rc;

	r = sf_new_fetcher(o, s->cache, &s->fetcher, &err);
	if (r < 0) {
		syslog(LOG_ERR, "%s", sf_error_text(&err, r));
		return sf_cmd_fail("%s", sf_error_text(&err, r));
	}
	r = sf_stop_start(&stop, se, abs);
	if (r < 0)
		return sf_cmd_fail("cannot set signal handlers: %s", strerror(-r));
	rc = run_loop(se);
	sf_stop_end(&stop);
	return rc;
}

int sf_store_main(const struct sf_mount_opts *o)
{
	struct store s = { .ropts = o->registry };
	const char *xattr = o->overlay_xattr && strcmp(o->overlay_xattr, "user") == 0
				    ? "user.overlay.opaque"
				    : "trusted.overlay.opaque";
	char *argv[] = { "soci-fuse", "-o", MOUNT_OPTIONS, o->debug ? "-d" : NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(o->debug ? 4 : 3, argv);
	_cleanup_free_ char *dir = o->cache_dir ? strdup(o->cache_dir) : sf_default_cache_dir();
	struct fuse_session *se = NULL;
	struct sf_error err = { 0 };
	char abs[PATH_MAX];
	bool mounted = false;
	int rc;
	sf_ret r;

	s.ropts.insecure = o->insecure; /* credentials, CAs, mirrors: as for mount */
	s.limits = o->limits;
	/* with --debug, log messages go to stderr too: see what the daemon says */
	openlog("soci-fuse", LOG_PID | (o->debug ? LOG_PERROR : 0), LOG_DAEMON);
	pthread_mutex_init(&s.lock, NULL);
	pthread_mutex_init(&s.create_lock, NULL);
	pthread_cond_init(&s.lookups_done, NULL);
	sf_tree_init(&s.tree, xattr, store_layer_by_number, &s);
	rc = sf_check_mountpoint(o->mountpoint, abs);
	if (rc == 0 && !dir)
		rc = sf_cmd_fail("out of memory");
	if (rc == 0 && (r = sf_cache_open(dir, &s.cache, &err)) < 0)
		rc = sf_cmd_fail("%s", sf_error_text(&err, r));
	if (rc == 0 && !(se = fuse_session_new(&args, &store_ops, sizeof(store_ops), &s)))
		rc = sf_cmd_fail("cannot create FUSE session (is /dev/fuse available?)");
	if (rc == 0 && fuse_session_mount(se, abs) != 0)
		rc = sf_cmd_fail("cannot mount at %s (is /dev/fuse available, are you root?)", abs);
	mounted = rc == 0;
	if (rc == 0 && sf_dirops_install(se) != 0)
		rc = sf_cmd_fail("cannot set up FUSE I/O at %s", abs);
	if (rc == 0 && fuse_daemonize(o->foreground) != 0)
		rc = sf_cmd_fail("cannot daemonize");
	if (rc == 0)
		rc = serve(&s, se, o, abs);
	store_free(&s);
	if (se) {
		if (mounted)
			fuse_session_unmount(se);
		fuse_session_destroy(se);
	}
	fuse_opt_free_args(&args);
	return rc;
}
