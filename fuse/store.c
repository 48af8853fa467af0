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
 * podman 4.3's pull returns once the layers are unpacked in our cache, with
 * no copy into its own storage, rather than before.  It announces a
 * user by creating `use` in the layer dir and a release by rmdir of the
 * layer dir; a notification-aware store answers both with ENOENT, which
 * here counts users per layer.  There is no garbage collection of the cache
 * yet; the counts are in MNT/.status for one.
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
 * the cache has it complete (known_layer): podman's layer symlinks the path
 * it was first served under, which must outlive a moved tag or a restart.
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
#include "store.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "digest.h"
#include "dirops.h"
#include "layer.h"
#include "ref.h"
#include "registry.h"
#include "store_blob.h"
#include "tree.h"

#define SF_STORE_MAX_NODES 65536   /* base64 path directories ever looked up */
#define SF_STORE_MAX_TEXT 4096	   /* base64 text of one reference */
#define SF_STORE_MAX_REFS 4096	   /* distinct references */
#define SF_STORE_RETRY_S 10	   /* a failed resolve is retried after this */
#define SF_STORE_REFRESH_S 10	   /* a digest missing from an older resolve re-resolves */
#define SF_STORE_READAHEAD (4u << 20) /* bytes per blob range GET */
#define DYN_TIMEOUT 1.0		   /* entries that can change (ref/layer dirs) */
#define MOUNT_OPTIONS "default_permissions,allow_other,fsname=soci-fuse-store,subtype=soci-fuse"

enum kind { K_TREE = 0, K_NODE = 1, K_LDIR = 2, K_INFO = 3, K_BLOB = 4, K_STATUS = 5 };
#define KIND_SHIFT 60
#define NODE_SHIFT 28
#define SLOT_MASK ((1ull << NODE_SHIFT) - 1)
#define INO_STATUS ((fuse_ino_t)K_STATUS << KIND_SHIFT)

struct ref_rec {
	char *key; /* normalised reference */
	pthread_mutex_t lock; /* serializes resolves of this reference */
	struct sf_ref ref;
	struct sf_registry *reg;
	struct sf_image img; /* the last good resolve (img.ref NULL until one) */
	time_t resolved_at, failed_at;
	char error[SF_ERROR_MSG_MAX]; /* why the last resolve failed, or "" */
};

struct node {
	char *text;	   /* base64 path piece(s) below the root */
	fuse_ino_t parent;
	struct ref_rec *rec; /* once the text decoded to a reference */
	bool bad;	   /* the text is not a reference */
};

struct slot {
	struct sf_layer layer; /* number = slot index */
	struct sf_layer_desc desc; /* owned copy */
	struct sf_registry *reg;   /* borrowed from the first ref_rec that wanted it */
	unsigned users;		   /* `use` creates minus releases */
	bool retired;		   /* failed and reported: the next lookup pulls afresh */
};

struct counters {
	uint64_t hits, misses, uses, releases, blob_bytes, blob_errors;
};

struct store {
	struct sf_tree tree;
	struct sf_cache *cache;
	struct sf_registry_opts ropts;
	struct sf_fetcher *fetcher;
	pthread_mutex_t lock, create_lock;
	struct node **nodes; /* [0] unused: node numbers start at 1 */
	unsigned n_nodes, cap_nodes;
	struct ref_rec **refs;
	unsigned n_refs;
	struct slot **slots;
	unsigned n_slots, cap_slots;
	struct counters count;
};

struct blob_fh {
	pthread_mutex_t lock;
	uint64_t off;
	size_t len;
	unsigned char *buf;
};

static struct store *st_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static enum kind kind_of(fuse_ino_t ino)
{
	return (enum kind)(ino >> KIND_SHIFT);
}

static fuse_ino_t make_ino(enum kind k, unsigned node, unsigned slot)
{
	return ((fuse_ino_t)k << KIND_SHIFT) | ((fuse_ino_t)node << NODE_SHIFT) | slot;
}

static struct sf_layer *layer_by_number(void *arg, unsigned n)
{
	struct store *s = arg;
	struct sf_layer *l = NULL;

	pthread_mutex_lock(&s->lock);
	if (n < s->n_slots)
		l = &s->slots[n]->layer;
	pthread_mutex_unlock(&s->lock);
	return l;
}

/* Node n and slot s of a K_LDIR/K_INFO/K_BLOB inode; false when unknown. */
static bool decode_ldir(struct store *s, fuse_ino_t ino, unsigned *n, struct slot **sl)
{
	bool ok;

	*n = (unsigned)((ino >> NODE_SHIFT) & 0xffffffffu);
	pthread_mutex_lock(&s->lock);
	ok = *n > 0 && *n < s->n_nodes && (ino & SLOT_MASK) < s->n_slots;
	*sl = ok ? s->slots[ino & SLOT_MASK] : NULL;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

/* ---- base64 path nodes ---- */

static bool is_b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '=';
}

/* A path component of base64 text: alphabet ('/' separates components),
 * '=' only at the end. */
static bool b64_component(const char *name)
{
	const char *eq = strchr(name, '=');

	if (!*name)
		return false;
	for (const char *p = name; *p; p++)
		if (!is_b64_char(*p) || (eq && p > eq && *p != '='))
			return false;
	return true;
}

/* Decode standard base64 with padding.  New string, NULL when invalid. */
static char *b64_decode(const char *text)
{
	size_t len = strlen(text), pad = 0;
	unsigned char *out;
	int n;

	if (len == 0 || len % 4)
		return NULL;
	pad = text[len - 1] == '=' ? (text[len - 2] == '=' ? 2 : 1) : 0;
	out = malloc(len / 4 * 3 + 1);
	if (!out)
		return NULL;
	n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
	if (n < 0 || (size_t)n < pad || memchr(out, '\0', (size_t)n - pad)) {
		free(out);
		return NULL;
	}
	out[(size_t)n - pad] = '\0';
	return (char *)out;
}

/* The node for text below parent, interned.  0 when the table is full or
 * memory is short. */
static unsigned intern_node(struct store *s, fuse_ino_t parent, const char *text)
{
	unsigned found = 0;
	struct node *nd;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 1; i < s->n_nodes && !found; i++)
		if (strcmp(s->nodes[i]->text, text) == 0)
			found = i;
	if (found || s->n_nodes >= SF_STORE_MAX_NODES)
		goto out;
	if (s->n_nodes == s->cap_nodes) {
		unsigned cap = s->cap_nodes ? s->cap_nodes * 2 : 64;
		struct node **t = realloc(s->nodes, cap * sizeof(*t));
		if (!t)
			goto out;
		s->nodes = t;
		s->cap_nodes = cap;
	}
	nd = calloc(1, sizeof(*nd));
	if (nd && (nd->text = strdup(text))) {
		nd->parent = parent;
		if (s->n_nodes == 0)
			s->nodes[s->n_nodes++] = NULL; /* node 0 does not exist */
		s->nodes[s->n_nodes] = nd;
		found = s->n_nodes++;
	} else {
		free(nd);
	}
out:
	pthread_mutex_unlock(&s->lock);
	return found;
}

/* The reference record for node n; NULL when its text is not a reference. */
static struct ref_rec *node_ref(struct store *s, unsigned n)
{
	struct node *nd;
	struct ref_rec *rec = NULL;
	struct sf_error err = { 0 };
	struct sf_ref ref = { 0 };
	_cleanup_free_ char *text = NULL, *decoded = NULL, *key = NULL;

	pthread_mutex_lock(&s->lock);
	if (n == 0 || n >= s->n_nodes) {
		pthread_mutex_unlock(&s->lock);
		return NULL;
	}
	nd = s->nodes[n];
	rec = nd->rec;
	if (!rec && !nd->bad)
		text = strdup(nd->text);
	pthread_mutex_unlock(&s->lock);
	if (rec || !text)
		return rec;
	decoded = b64_decode(text);
	if (decoded && strlen(decoded) < SF_STORE_MAX_TEXT && sf_ref_parse(decoded, &ref, &err) == 0)
		key = sf_ref_format(&ref);
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; key && i < s->n_refs && !rec; i++)
		if (strcmp(s->refs[i]->key, key) == 0)
			rec = s->refs[i];
	if (!rec && key && s->n_refs < SF_STORE_MAX_REFS) {
		struct ref_rec **t = realloc(s->refs, (s->n_refs + 1) * sizeof(*t));
		if (t) {
			s->refs = t;
			rec = calloc(1, sizeof(*rec));
		}
		if (rec) {
			rec->key = steal_pointer(&key);
			rec->ref = ref;
			ref = (struct sf_ref){ 0 };
			pthread_mutex_init(&rec->lock, NULL);
			s->refs[s->n_refs++] = rec;
		}
	}
	nd->rec = rec;
	nd->bad = !decoded || (!rec && !key);
	pthread_mutex_unlock(&s->lock);
	sf_ref_clear(&ref);
	return rec;
}

/* ---- resolving ---- */

static bool image_has(const struct sf_image *img, const char *digest)
{
	for (size_t i = 0; img->ref && i < img->n_layers; i++)
		if (strcmp(img->layers[i].digest, digest) == 0)
			return true;
	return false;
}

/* Resolve rec now (rec->lock held): online, else from the cache's saved
 * documents when the registry is unreachable.  Keeps the previous good
 * resolve when this one fails. */
static void resolve(struct store *s, struct ref_rec *rec)
{
	struct sf_image img = { 0 };
	struct sf_error err = { 0 };
	time_t saved_at;
	sf_ret r = 0;

	if (!rec->reg)
		r = sf_registry_new(&rec->ref, &s->ropts, &rec->reg, &err);
	if (r == 0)
		r = sf_registry_resolve(rec->reg, &img, &err);
	if (r < 0 && sf_registry_unreachable(r) && !rec->img.ref) {
		struct sf_error cached_err = { 0 };
		sf_image_clear(&img);
		if (sf_cache_load_image(s->cache, rec->key, &img, &saved_at, &cached_err) == 0) {
			syslog(LOG_NOTICE, "%s; using %s as resolved before", err.msg, rec->key);
			r = 0;
		}
	} else if (r == 0 && sf_cache_save_image(s->cache, &img, &err) < 0) {
		syslog(LOG_WARNING, "%s", err.msg);
	}
	if (r < 0) {
		sf_image_clear(&img);
		syslog(LOG_NOTICE, "store: %s", sf_error_text(&err, r));
		pthread_mutex_lock(&s->lock);
		snprintf(rec->error, sizeof(rec->error), "%s", sf_error_text(&err, r));
		rec->failed_at = time(NULL);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	pthread_mutex_lock(&s->lock);
	sf_image_clear(&rec->img); /* slots keep their own copies of descriptors */
	rec->img = img;
	rec->resolved_at = time(NULL);
	rec->error[0] = '\0';
	pthread_mutex_unlock(&s->lock);
}

/* The layer descriptor of digest in rec's image, resolving as needed.
 * Fills *desc with borrowed pointers valid while rec->lock is held: the
 * caller holds rec->lock.  False when rec does not have that layer. */
static bool find_layer(struct store *s, struct ref_rec *rec, const char *digest,
		       const struct sf_layer_desc **desc)
{
	time_t now = time(NULL);

	if (!rec->img.ref && (!rec->failed_at || now - rec->failed_at >= SF_STORE_RETRY_S))
		resolve(s, rec);
	else if (rec->img.ref && !image_has(&rec->img, digest) &&
		 now - rec->resolved_at >= SF_STORE_REFRESH_S)
		resolve(s, rec); /* the tag may have moved */
	for (size_t i = 0; rec->img.ref && i < rec->img.n_layers; i++) {
		if (strcmp(rec->img.layers[i].digest, digest) == 0) {
			*desc = &rec->img.layers[i];
			return true;
		}
	}
	return false;
}

/* ---- layer slots ---- */

static bool copy_desc(struct sf_layer_desc *to, const struct sf_layer_desc *from)
{
	*to = *from;
	to->digest = strdup(from->digest);
	to->media_type = from->media_type ? strdup(from->media_type) : NULL;
	to->diff_id = from->diff_id ? strdup(from->diff_id) : NULL;
	return to->digest && (!from->media_type || to->media_type) &&
	       (!from->diff_id || to->diff_id);
}

static void free_desc(struct sf_layer_desc *d)
{
	free(d->digest);
	free(d->media_type);
	free(d->diff_id);
}

/* The newest slot of digest, or -1 (s->lock held). */
static int find_slot(struct store *s, const char *digest)
{
	for (unsigned i = s->n_slots; i-- > 0;)
		if (strcmp(s->slots[i]->desc.digest, digest) == 0)
			return (int)i;
	return -1;
}

/* The slot serving desc, created (and its pull started) when there is none
 * or the last one failed.  reg NULL: only a layer complete in the cache
 * will do (there is no registry to pull from).  Returns the slot number,
 * or -1. */
static int get_slot(struct store *s, const struct sf_layer_desc *desc, struct sf_registry *reg)
{
	struct sf_error err = { 0 };
	struct slot *sl;
	int i;
	sf_ret r;

	pthread_mutex_lock(&s->create_lock);
	pthread_mutex_lock(&s->lock);
	i = find_slot(s, desc->digest);
	if (i >= 0 && s->slots[i]->retired)
		i = -1;
	if (i < 0 && s->n_slots == s->cap_slots) {
		unsigned cap = s->cap_slots ? s->cap_slots * 2 : 64;
		struct slot **t = cap < SF_TREE_MAX_LAYERS ? realloc(s->slots, cap * sizeof(*t)) : NULL;
		if (t) {
			s->slots = t;
			s->cap_slots = cap;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (i >= 0 || s->n_slots == s->cap_slots)
		goto out;
	sl = calloc(1, sizeof(*sl));
	if (!sl || !copy_desc(&sl->desc, desc)) {
		if (sl)
			free_desc(&sl->desc);
		free(sl);
		goto out;
	}
	sl->reg = reg;
	r = sf_layer_init(&sl->layer, s->n_slots, &sl->desc, s->cache, &err);
	if (r == 0 && !reg && sf_layer_state(&sl->layer) != SF_LAYER_COMPLETE)
		r = -ENOENT;
	if (r == 0) {
		sl->layer.notify = sf_tree_notify;
		sl->layer.notify_arg = &s->tree;
		r = sf_layer_start(&sl->layer, reg, s->fetcher, &err);
	}
	if (r < 0) {
		if (r != -ENOENT)
			syslog(LOG_ERR, "store: layer %s: %s", desc->digest, sf_error_text(&err, r));
		sf_layer_destroy(&sl->layer);
		free_desc(&sl->desc);
		free(sl);
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	i = (int)s->n_slots;
	s->slots[s->n_slots++] = sl;
	pthread_mutex_unlock(&s->lock);
out:
	pthread_mutex_unlock(&s->create_lock);
	return i;
}

/* A layer this store has served, or that is complete in the cache, is
 * served under any reference: the digest names its content, which was
 * verified.  podman's layer keeps a symlink to the path it was first served
 * under, and that path must keep working when the tag has moved on since,
 * or after a restart without the registry.  Returns a slot, or -1. */
static int known_layer(struct store *s, const char *digest, struct sf_registry *reg)
{
	_cleanup_free_ char *dir = sf_cache_layer_dir(s->cache, digest), *path = NULL;
	struct sf_layer_desc desc = { 0 };
	const char *comp;
	json_t *meta;
	int i;

	pthread_mutex_lock(&s->lock);
	i = find_slot(s, digest);
	if (i >= 0 && (s->slots[i]->retired || sf_layer_state(&s->slots[i]->layer) == SF_LAYER_FAILED))
		i = -1;
	pthread_mutex_unlock(&s->lock);
	if (i >= 0 || !dir || asprintf(&path, "%s/meta.json", dir) < 0)
		return i;
	meta = json_load_file(path, 0, NULL);
	desc.digest = (char *)json_string_value(json_object_get(meta, "digest"));
	desc.diff_id = (char *)json_string_value(json_object_get(meta, "diff_id"));
	desc.size = (uint64_t)json_integer_value(json_object_get(meta, "compressed_size"));
	comp = json_string_value(json_object_get(meta, "compression"));
	desc.compression = comp && !strcmp(comp, "gzip")   ? SF_COMP_GZIP
			   : comp && !strcmp(comp, "zstd") ? SF_COMP_ZSTD
							   : SF_COMP_NONE;
	if (desc.digest && desc.diff_id && strcmp(desc.digest, digest) == 0 &&
	    (!comp || !strcmp(comp, sf_compression_name(desc.compression))))
		i = get_slot(s, &desc, reg); /* copies desc */
	json_decref(meta);
	return i;
}

/* ---- attributes ---- */

static void dir_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2;
	st->st_blksize = 4096;
}

static void file_stat(fuse_ino_t ino, uint64_t size, struct stat *st)
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
	struct ref_rec *rec = node_ref(s, n);
	const struct sf_layer_desc *desc;
	struct stat st;
	int slot = -1;

	if (rec) {
		pthread_mutex_lock(&rec->lock);
		if (find_layer(s, rec, digest, &desc))
			slot = get_slot(s, desc, rec->reg);
		else
			slot = known_layer(s, digest, rec->reg);
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

static void lookup_in_ldir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store *s = st_of(req);
	struct fuse_entry_param e;
	struct slot *sl;
	struct stat st;
	unsigned n;

	if (!decode_ldir(s, parent, &n, &sl)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (strcmp(name, "diff") == 0) {
		sf_tree_entry(&sl->layer, SF_INDEX_ROOT, &e);
		fuse_reply_entry(req, &e);
	} else if (strcmp(name, "info") == 0) {
		file_stat(make_ino(K_INFO, n, (unsigned)(parent & SLOT_MASK)), 0, &st);
		reply_dyn_entry(req, &st, 0);
	} else if (strcmp(name, "blob") == 0) {
		file_stat(make_ino(K_BLOB, n, (unsigned)(parent & SLOT_MASK)), sl->desc.size, &st);
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
				file_stat(INO_STATUS, 0, &st);
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
			lookup_layer_dir(req, (unsigned)(parent & 0xffffffffu), name);
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
	if (!b64_component(name)) {
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
	if (!text || strlen(text) > SF_STORE_MAX_TEXT || !(n = intern_node(s, parent, text))) {
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
		file_stat(ino, 0, &st);
		fuse_reply_attr(req, &st, 0);
		return;
	case K_LDIR:
	case K_INFO:
	case K_BLOB:
		if (!decode_ldir(s, ino, &n, &sl)) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		if (kind_of(ino) == K_LDIR)
			dir_stat(ino, &st);
		else
			file_stat(ino, kind_of(ino) == K_BLOB ? sl->desc.size : 0, &st);
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
	if (kind_of(parent) != K_LDIR || strcmp(name, "use") || !decode_ldir(s, parent, &n, &sl)) {
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
	i = find_slot(s, name);
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
	if (kind_of(ino) == K_LDIR && !decode_ldir(s, ino, &n, &sl)) {
		free(buf);
		fuse_reply_err(req, ENOENT);
		return;
	}
	for (unsigned i = off < 0 ? 0 : (unsigned)off; i < count; i++) {
		struct stat st;
		if (i < 2)
			dir_stat(ino, &st);
		else if (!sl)
			file_stat(INO_STATUS, 0, &st);
		else if (i == 2)
			sf_tree_stat(&sl->layer, SF_INDEX_ROOT, &st);
		else
			file_stat((ino & ~((fuse_ino_t)0xf << KIND_SHIFT)) |
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

/* ---- files: info, blob, .status ---- */

/* diff-size: the uncompressed size, known once the layer is complete
 * (-1 before; see read_info for why nobody sees that). */
static json_int_t diff_size(struct store *s, struct slot *sl)
{
	_cleanup_free_ char *dir = NULL, *path = NULL;
	json_int_t size = -1;
	json_t *meta;

	if (sf_layer_state(&sl->layer) != SF_LAYER_COMPLETE)
		return -1;
	if (atomic_load(&sl->layer.unpacked) > 0)
		return (json_int_t)atomic_load(&sl->layer.unpacked);
	dir = sf_cache_layer_dir(s->cache, sl->desc.digest);
	if (!dir || asprintf(&path, "%s/meta.json", dir) < 0)
		return -1;
	meta = json_load_file(path, 0, NULL);
	if (json_is_integer(json_object_get(meta, "uncompressed_size")))
		size = json_integer_value(json_object_get(meta, "uncompressed_size"));
	json_decref(meta);
	return size;
}

static char *dump_json(json_t *doc)
{
	char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
	char *t;

	json_decref(doc);
	if (text && (t = realloc(text, strlen(text) + 2))) {
		strcat(t, "\n");
		text = t;
	}
	return text;
}

static char *info_json(struct store *s, struct slot *sl)
{
	return dump_json(json_pack("{s:s, s:I, s:s, s:I, s:i}", "compressed-diff-digest",
				   sl->desc.digest, "compressed-size", (json_int_t)sl->desc.size,
				   "diff-digest", sl->desc.diff_id ? sl->desc.diff_id : "",
				   "diff-size", diff_size(s, sl), "compression",
				   (int)sl->desc.compression));
}

/* info is answered once the layer is complete: containers/storage 1.43
 * records diff-size in its layer at once, and an unknown size (-1) makes
 * every later use of the image fail ("size for layer ... is unknown,
 * failing getSize()"), while any other value than the real one is wrong.
 * So the first read of info waits (parked, interruptible) for the layer. */
static void reply_info(fuse_req_t req, struct sf_layer *l, void *arg, size_t size, off_t off)
{
	struct store *s = arg;
	struct slot *sl = NULL;
	char *text;

	pthread_mutex_lock(&s->lock);
	sl = s->slots[l->number];
	pthread_mutex_unlock(&s->lock);
	text = info_json(s, sl);
	if (text)
		sf_tree_reply_text(req, text, size, off);
	else
		fuse_reply_err(req, ENOMEM);
	free(text);
}

static char *status_json(struct store *s)
{
	json_t *refs = json_array(), *layers = json_array(), *doc;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->n_refs; i++) {
		struct ref_rec *r = s->refs[i];
		json_t *o = json_pack("{s:s, s:s}", "ref", r->key, "manifest",
				      r->img.manifest_digest ? r->img.manifest_digest : "");
		if (o && r->error[0])
			json_object_set_new(o, "error", json_string(r->error));
		json_array_append_new(refs, o);
	}
	for (unsigned i = 0; i < s->n_slots; i++) {
		struct slot *sl = s->slots[i];
		enum sf_layer_state st = sf_layer_state(&sl->layer);
		json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:I}", "digest", sl->desc.digest,
				      "state", sf_layer_state_name(st), "users", (int)sl->users,
				      "size", (json_int_t)sl->desc.size, "unpacked",
				      (json_int_t)atomic_load(&sl->layer.unpacked));
		if (o && st == SF_LAYER_FAILED)
			json_object_set_new(o, "error", json_string(sl->layer.err.msg));
		json_array_append_new(layers, o);
	}
	doc = json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "refs", refs, "layers", layers,
			"lookups", (json_int_t)s->count.hits, "misses", (json_int_t)s->count.misses,
			"uses", (json_int_t)s->count.uses, "releases",
			(json_int_t)s->count.releases, "blob_bytes",
			(json_int_t)s->count.blob_bytes, "blob_errors",
			(json_int_t)s->count.blob_errors);
	pthread_mutex_unlock(&s->lock);
	return dump_json(doc);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store *s = st_of(req);
	struct sf_layer *l;
	struct blob_fh *fh;
	struct slot *sl;
	uint32_t id;
	unsigned n;

	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	switch (kind_of(ino)) {
	case K_TREE:
		if ((l = sf_tree_decode(&s->tree, ino, &id)))
			sf_tree_open(req, l, fi);
		else
			fuse_reply_err(req, EISDIR);
		return;
	case K_STATUS:
	case K_INFO:
		fi->direct_io = 1; /* generated by every read */
		fuse_reply_open(req, fi);
		return;
	case K_BLOB:
		if (!decode_ldir(s, ino, &n, &sl)) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		fh = calloc(1, sizeof(*fh));
		if (!fh) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		pthread_mutex_init(&fh->lock, NULL);
		fi->fh = (uint64_t)(uintptr_t)fh;
		fi->keep_cache = 1; /* a blob never changes */
		fuse_reply_open(req, fi);
		return;
	default:
		fuse_reply_err(req, EISDIR);
	}
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct blob_fh *fh = (struct blob_fh *)(uintptr_t)fi->fh;

	if (kind_of(ino) == K_BLOB && fh) {
		/* the reply to the last read can reach the kernel, and this
		 * RELEASE us, before read_blob has left fuse_reply_buf */
		pthread_mutex_lock(&fh->lock);
		pthread_mutex_unlock(&fh->lock);
		pthread_mutex_destroy(&fh->lock);
		free(fh->buf);
		free(fh);
	}
	fuse_reply_err(req, 0);
}

/* Serve [off, off + size) of a blob from the open file's window, moving the
 * window (one range GET) when it does not hold off. */
static void read_blob(fuse_req_t req, struct slot *sl, struct blob_fh *fh, size_t size, off_t off)
{
	struct store *s = st_of(req);
	struct sf_error err = { 0 };
	uint64_t total = sl->desc.size, uoff = (uint64_t)off;
	sf_ret r = 0;

	if (off < 0 || uoff >= total) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	pthread_mutex_lock(&fh->lock);
	if (!fh->buf || uoff < fh->off || uoff >= fh->off + fh->len) {
		size_t want = total - uoff < SF_STORE_READAHEAD ? (size_t)(total - uoff)
								: SF_STORE_READAHEAD;
		unsigned char *buf = fh->buf ? fh->buf : malloc(SF_STORE_READAHEAD);
		fh->buf = buf;
		fh->len = 0;
		if (!buf)
			r = sf_fail(&err, ENOMEM, "out of memory");
		else if (!sl->reg)
			r = sf_fail(&err, EIO, "blob %s: no registry to read it from",
				    sl->desc.digest);
		else
			r = sf_store_blob_get(sl->reg, sl->desc.digest, uoff, want, buf, &err);
		if (r == 0) {
			fh->off = uoff;
			fh->len = want;
		}
		pthread_mutex_lock(&s->lock);
		if (r == 0)
			s->count.blob_bytes += want;
		else
			s->count.blob_errors++;
		pthread_mutex_unlock(&s->lock);
	}
	if (r < 0) {
		pthread_mutex_unlock(&fh->lock);
		syslog(LOG_ERR, "store: %s", sf_error_text(&err, r));
		fuse_reply_err(req, EIO);
		return;
	}
	if (size > fh->off + fh->len - uoff)
		size = (size_t)(fh->off + fh->len - uoff);
	fuse_reply_buf(req, (const char *)fh->buf + (uoff - fh->off), size);
	pthread_mutex_unlock(&fh->lock);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct store *s = st_of(req);
	struct sf_layer *l;
	struct slot *sl;
	char *text = NULL;
	uint32_t id;
	unsigned n;

	switch (kind_of(ino)) {
	case K_TREE:
		if ((l = sf_tree_decode(&s->tree, ino, &id)))
			sf_tree_read(req, l, id, size, off);
		else
			fuse_reply_err(req, EIO);
		return;
	case K_STATUS:
		text = status_json(s);
		break;
	case K_INFO:
	case K_BLOB:
		if (!decode_ldir(s, ino, &n, &sl)) {
			fuse_reply_err(req, EIO);
			return;
		}
		if (kind_of(ino) == K_BLOB)
			read_blob(req, sl, (struct blob_fh *)(uintptr_t)fi->fh, size, off);
		else
			sf_tree_when_complete(&s->tree, req, &sl->layer, reply_info, s, size, off);
		return;
	default:
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (text)
		sf_tree_reply_text(req, text, size, off);
	else
		fuse_reply_err(req, ENOMEM);
	free(text);
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
	.open = op_open,
	.read = op_read,
	.release = op_release,
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
	sf_tree_fail_waiters(&s->tree, EIO);
	for (unsigned i = 0; i < s->n_slots; i++)
		s->slots[i]->layer.cancel = true;
	sf_fetcher_stop(s->fetcher); /* cancels blobs, so layer threads finish */
	for (unsigned i = 0; i < s->n_slots; i++) {
		sf_layer_destroy(&s->slots[i]->layer);
		free_desc(&s->slots[i]->desc);
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
	sf_cache_free(s->cache);
}

static int serve(struct store *s, struct fuse_session *se, const struct sf_mount_opts *o)
{
	struct fuse_loop_config *cfg;
	struct sf_error err = { 0 };
	sf_ret r;
	int rc;

	if (fuse_set_signal_handlers(se) != 0)
		return sf_cmd_fail("cannot set signal handlers");
	r = sf_fetcher_new(&o->fetch, &s->fetcher, &err);
	if (r < 0) {
		syslog(LOG_ERR, "%s", sf_error_text(&err, r));
		return sf_cmd_fail("%s", sf_error_text(&err, r));
	}
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		return sf_cmd_fail("out of memory");
	fuse_loop_cfg_set_max_threads(cfg, 16);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	fuse_remove_signal_handlers(se);
	return rc < 0 ? 1 : 0;
}

int sf_store_main(const struct sf_mount_opts *o)
{
	struct store s = { .ropts = { .insecure = o->insecure } };
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

	openlog("soci-fuse", LOG_PID, LOG_DAEMON);
	pthread_mutex_init(&s.lock, NULL);
	pthread_mutex_init(&s.create_lock, NULL);
	sf_tree_init(&s.tree, xattr, layer_by_number, &s);
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
		rc = serve(&s, se, o);
	store_free(&s);
	if (se) {
		if (mounted)
			fuse_session_unmount(se);
		fuse_session_destroy(se);
	}
	fuse_opt_free_args(&args);
	return rc;
}
