/* store-private.h - what the modules of the additional layer store share:
 * store.c (the FUSE operations and the command), store_table.c (base64
 * path nodes, references and their resolves, layer slots) and
 * store_files.c (info, blob and .status).  See store.c for the design.
 * Nothing outside fuse/store*.c includes this.
 */
#ifndef SF_STORE_PRIVATE_H
#define SF_STORE_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "cache.h"
#include "fetch.h"
#include "layer.h"
#include "ref.h"
#include "registry.h"
#include "store.h"
#include "tree.h"

#define SF_STORE_MAX_NODES 65536   /* base64 path directories ever looked up */
#define SF_STORE_MAX_TEXT 1024	   /* base64 text of one reference (~760 bytes) */
#define SF_STORE_MAX_REFS 4096	   /* distinct references */
#define SF_STORE_RETRY_S 10	   /* a failed resolve is retried after this */
#define SF_STORE_REFRESH_S 10	   /* a digest missing from an older resolve re-resolves */
#define SF_STORE_READAHEAD (4u << 20) /* bytes per blob range GET */
#define SF_STORE_MAX_LOOKUP_THREADS 64 /* layer dir lookups in flight off the FUSE threads */
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
	int use_fd;		   /* cache_gc.h: in use while the store runs */
	bool retired;		   /* failed and reported: the next lookup pulls afresh */
};

struct counters {
	uint64_t hits, misses, uses, releases, blob_bytes, blob_errors;
};

struct store {
	struct sf_tree tree;
	struct sf_limits limits; /* per layer, from the options */
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
	unsigned lookup_threads;	  /* lookup_layer_dir threads running (lock) */
	pthread_cond_t lookups_done;	  /* signalled when lookup_threads drops to 0 */
};

struct blob_fh {
	pthread_mutex_t lock;
	uint64_t off;
	size_t len;
	unsigned char *buf;
};

static inline struct store *st_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline enum kind kind_of(fuse_ino_t ino)
{
	return (enum kind)(ino >> KIND_SHIFT);
}

static inline fuse_ino_t make_ino(enum kind k, unsigned node, unsigned slot)
{
	return ((fuse_ino_t)k << KIND_SHIFT) | ((fuse_ino_t)node << NODE_SHIFT) | slot;
}

/* ---- store_table.c ---- */

/* The layer of slot n (tree.c's layer callback, arg = the store). */
struct sf_layer *store_layer_by_number(void *arg, unsigned n);
/* Node n and slot s of a K_LDIR/K_INFO/K_BLOB inode; false when unknown. */
bool store_decode_ldir(struct store *s, fuse_ino_t ino, unsigned *n, struct slot **sl);
/* A path component of base64 text. */
bool store_b64_component(const char *name);
/* The node for text below parent, interned; 0 when the table is full. */
unsigned store_intern_node(struct store *s, fuse_ino_t parent, const char *text);
/* The reference record of node n; NULL when its text is not a reference. */
struct ref_rec *store_node_ref(struct store *s, unsigned n);
/* With rec->lock held: the descriptor of digest in rec's image (borrowed,
 * valid while rec->lock is held), resolving as needed. */
bool store_find_layer(struct store *s, struct ref_rec *rec, const char *digest,
		      const struct sf_layer_desc **desc);
/* The newest slot of digest, or -1 (s->lock held). */
int store_find_slot(struct store *s, const char *digest);
/* The slot serving desc (copied), created and started when needed; reg
 * NULL accepts only a layer complete in the cache.  -1 when none. */
int store_get_slot(struct store *s, const struct sf_layer_desc *desc, struct sf_registry *reg);
/* A layer served before or complete in the cache, by digest; -1 if not. */
int store_known_layer(struct store *s, const char *digest, struct sf_registry *reg);
void store_free_desc(struct sf_layer_desc *d);

/* ---- store.c ---- */

void store_file_stat(fuse_ino_t ino, uint64_t size, struct stat *st);

/* ---- store_files.c: FUSE open/read/release of every store inode ---- */

void store_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void store_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void store_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);

#endif
