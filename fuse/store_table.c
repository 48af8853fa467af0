/* store_table.c - the store's tables: base64 path nodes, references and
 * their resolves, layer slots (see store.c for the design and locking). */
#include "store-private.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "cache_gc.h"
#include "digest.h"

struct sf_layer *store_layer_by_number(void *arg, unsigned n)
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
bool store_decode_ldir(struct store *s, fuse_ino_t ino, unsigned *n, struct slot **sl)
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
bool store_b64_component(const char *name)
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
unsigned store_intern_node(struct store *s, fuse_ino_t parent, const char *text)
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
struct ref_rec *store_node_ref(struct store *s, unsigned n)
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
	/* Transfers of this reference's layers and blob reads may be using
	 * rec->reg right now; that is safe: each took its endpoint (URL, TLS,
	 * token) once, and a resolve only changes the one later ones take. */
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
bool store_find_layer(struct store *s, struct ref_rec *rec, const char *digest,
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

void store_free_desc(struct sf_layer_desc *d)
{
	free(d->digest);
	free(d->media_type);
	free(d->diff_id);
}

/* The newest slot of digest, or -1 (s->lock held). */
int store_find_slot(struct store *s, const char *digest)
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
int store_get_slot(struct store *s, const struct sf_layer_desc *desc, struct sf_registry *reg)
{
	struct sf_error err = { 0 };
	struct slot *sl;
	int i;
	sf_ret r;

	pthread_mutex_lock(&s->create_lock);
	pthread_mutex_lock(&s->lock);
	i = store_find_slot(s, desc->digest);
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
			store_free_desc(&sl->desc);
		free(sl);
		goto out;
	}
	sl->reg = reg;
	/* a layer the store has looked at stays in use (so `cache gc` keeps
	 * it) for the store's lifetime: podman may stack it at any time */
	r = sf_cache_use_layer(s->cache, desc->digest, &sl->use_fd, &err);
	if (r < 0) {
		syslog(LOG_ERR, "store: layer %s: %s", desc->digest, sf_error_text(&err, r));
		store_free_desc(&sl->desc);
		free(sl);
		goto out;
	}
	r = sf_layer_init(&sl->layer, s->n_slots, &sl->desc, s->cache, &err);
	if (r == 0 && !reg && sf_layer_state(&sl->layer) != SF_LAYER_COMPLETE)
		r = -ENOENT;
	if (r == 0) {
		sl->layer.limits = s->limits;
		sl->layer.notify = sf_tree_notify;
		sl->layer.notify_arg = &s->tree;
		r = sf_layer_start(&sl->layer, reg, s->fetcher, &err);
	}
	if (r < 0) {
		if (r != -ENOENT)
			syslog(LOG_ERR, "store: layer %s: %s", desc->digest, sf_error_text(&err, r));
		sf_layer_destroy(&sl->layer);
		sf_cache_unuse_layer(sl->use_fd);
		store_free_desc(&sl->desc);
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
int store_known_layer(struct store *s, const char *digest, struct sf_registry *reg)
{
	_cleanup_free_ char *dir = sf_cache_layer_dir(s->cache, digest), *path = NULL;
	struct sf_layer_desc desc = { 0 };
	const char *comp;
	json_t *meta;
	int i;

	pthread_mutex_lock(&s->lock);
	i = store_find_slot(s, digest);
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
		i = store_get_slot(s, &desc, reg); /* copies desc */
	json_decref(meta);
	return i;
}

