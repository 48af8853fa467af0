/* cache_gc.c - cache listing and garbage collection; see cache_gc.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cache_gc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunkmap.h"
#include "digest.h"

#define HEX_LEN 64
#define GRAVE_PREFIX "gc."

static char *lock_path(const struct sf_cache *c, const char *hex, const char *suffix)
{
	char *s = NULL;

	return asprintf(&s, "%s/locks/%s.%s", c->root, hex, suffix) < 0 ? NULL : s;
}

sf_ret sf_cache_use_layer(const struct sf_cache *c, const char *digest, int *fd,
			  struct sf_error *err)
{
	_cleanup_free_ char *path = lock_path(c, sf_digest_hex(digest), "use");
	int f;

	if (!path)
		return sf_fail(err, ENOMEM, "out of memory");
	f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0 && errno == EROFS) {
		/* a read-only cache: nothing can remove the layer, complete layers
		 * are still served; a pull will fail naming the cache dir */
		*fd = -1;
		return 0;
	}
	if (f < 0)
		return sf_fail(err, errno, "cache dir %s: cannot open %s: %s", c->root, path,
			       strerror(errno));
	while (flock(f, LOCK_SH) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(f);
			return sf_fail(err, e, "cache dir %s: cannot lock %s: %s", c->root, path,
				       strerror(e));
		}
	}
	futimens(f, NULL); /* last use: now (best effort: a read-only cache still mounts) */
	*fd = f;
	return 0;
}

void sf_cache_unuse_layer(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ---- listing ---- */

static uint64_t du_total;

static int du_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	du_total += (uint64_t)st->st_blocks * 512;
	return 0;
}

/* Bytes allocated below path.  nftw has no user pointer: du_total is a
 * static, fine for a command-line tool that lists one tree at a time. */
static uint64_t disk_usage(const char *path)
{
	du_total = 0;
	nftw(path, du_entry, 16, FTW_PHYS);
	return du_total;
}

static bool is_hex_name(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return n == HEX_LEN && s[n] == '\0';
}

/* gc.<hex>.<digits>: a layer gc renamed out of layers/ to delete it. */
static bool is_grave_name(const char *s)
{
	size_t n, d;

	if (strncmp(s, GRAVE_PREFIX, strlen(GRAVE_PREFIX)) != 0)
		return false;
	s += strlen(GRAVE_PREFIX);
	n = strspn(s, "0123456789abcdef");
	if (n != HEX_LEN || s[n] != '.')
		return false;
	d = strspn(s + n + 1, "0123456789");
	return d > 0 && d <= 10 && s[n + 1 + d] == '\0';
}

/* Is directory path flock()ed by someone (a gc deleting it)? */
static bool dir_lock_held(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool held;

	if (fd < 0)
		return false;
	held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

/* Is someone holding a lock on locks/<hex>.<suffix>?  Probed by taking it
 * exclusive without waiting, and letting go at once. */
static bool lock_held(const struct sf_cache *c, const char *hex, const char *suffix)
{
	_cleanup_free_ char *path = lock_path(c, hex, suffix);
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	bool held;

	if (fd < 0)
		return false; /* never locked by anyone */
	held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

static time_t mtime_of(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? st.st_mtime : 0;
}

static sf_ret add_entry(struct sf_cache_entry **v, size_t *n, size_t *cap,
			const struct sf_cache_entry *e)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 16;
		struct sf_cache_entry *a = realloc(*v, nc * sizeof(*a));
		if (!a)
			return -ENOMEM;
		*v = a;
		*cap = nc;
	}
	(*v)[(*n)++] = *e;
	return 0;
}

static sf_ret scan(const struct sf_cache *c, bool complete, struct sf_cache_entry **v,
		   size_t *n, size_t *cap, struct sf_error *err)
{
	_cleanup_free_ char *dir = NULL;
	struct dirent *d;
	DIR *dp;
	sf_ret r = 0;

	if (asprintf(&dir, "%s/%s", c->root, complete ? "layers" : "tmp") < 0)
		return sf_fail(err, ENOMEM, "out of memory");
	dp = opendir(dir);
	if (!dp)
		return sf_fail(err, errno, "cache dir %s: cannot read %s: %s", c->root, dir,
			       strerror(errno));
	while (r == 0 && (d = readdir(dp))) {
		struct sf_cache_entry e = { .state = complete ? SF_CACHE_COMPLETE
							      : SF_CACHE_PARTIAL };
		_cleanup_free_ char *path = NULL, *use = NULL, *map = NULL;
		bool grave = !complete && is_grave_name(d->d_name);
		if (!grave && !is_hex_name(d->d_name))
			continue; /* ".", "..", whatever is not ours */
		if (asprintf(&path, "%s/%s", dir, d->d_name) < 0) {
			closedir(dp);
			return sf_fail(err, ENOMEM, "out of memory");
		}
		memcpy(e.hex, d->d_name + (grave ? strlen(GRAVE_PREFIX) : 0), HEX_LEN);
		e.hex[HEX_LEN] = '\0';
		memcpy(e.name, d->d_name, strlen(d->d_name) + 1); /* checked: < 80 bytes */
		e.disk = disk_usage(path);
		if (grave) {
			e.state = SF_CACHE_REMOVING;
			e.last_use = mtime_of(path);
			e.in_use = dir_lock_held(path);
		} else if (complete) {
			use = lock_path(c, e.hex, "use");
			e.last_use = mtime_of(use);
			if (!e.last_use && asprintf(&map, "%s/meta.json", path) >= 0)
				e.last_use = mtime_of(map);
			e.in_use = lock_held(c, e.hex, "use");
		} else {
			int64_t p = -1;
			if (asprintf(&map, "%s/blob.map", path) >= 0)
				p = sf_chunkmap_peek(map);
			e.persisted = p > 0 ? (uint64_t)p : 0;
			e.last_use = mtime_of(map);
			e.in_use = lock_held(c, e.hex, "lock");
		}
		r = add_entry(v, n, cap, &e);
	}
	closedir(dp);
	return r < 0 ? sf_fail(err, -r, "out of memory") : 0;
}

static int by_last_use(const void *a, const void *b)
{
	const struct sf_cache_entry *x = a, *y = b;

	if (x->last_use != y->last_use)
		return x->last_use < y->last_use ? -1 : 1;
	return strcmp(x->hex, y->hex);
}

sf_ret sf_cache_list(const struct sf_cache *c, struct sf_cache_entry **out, size_t *n,
		     struct sf_error *err)
{
	struct sf_cache_entry *v = NULL;
	size_t cap = 0;
	sf_ret r;

	*n = 0;
	r = scan(c, true, &v, n, &cap, err);
	if (r == 0)
		r = scan(c, false, &v, n, &cap, err);
	if (r < 0) {
		free(v);
		return r;
	}
	if (*n)
		qsort(v, *n, sizeof(*v), by_last_use);
	*out = v;
	return 0;
}

/* ---- gc ---- */

/* Remove tmp/gc.<hex>.<pid>/ if no gc is deleting it (we get its lock):
 * the gc that renamed it there was killed. */
static bool remove_grave(const struct sf_cache *c, const struct sf_cache_entry *e)
{
	_cleanup_free_ char *dir = NULL;
	int fd = -1;
	bool done = false;

	if (asprintf(&dir, "%s/tmp/%s", c->root, e->name) >= 0)
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		sf_cache_remove_tree(dir);
		done = access(dir, F_OK) < 0;
	}
	close(fd);
	return done;
}

/* Remove tmp/<hex>/ if nobody pulls it (we get its lock). */
static bool remove_partial(const struct sf_cache *c, const struct sf_cache_entry *e)
{
	_cleanup_free_ char *lpath = lock_path(c, e->hex, "lock");
	_cleanup_free_ char *dir = NULL;
	int fd = lpath ? open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
	bool done = false;

	if (fd < 0)
		return false;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && asprintf(&dir, "%s/tmp/%s", c->root, e->hex) >= 0) {
		sf_cache_remove_tree(dir);
		done = access(dir, F_OK) < 0;
	}
	close(fd);
	return done;
}

/* Remove layers/<hex>/ if no mount uses it (we get its use lock): rename
 * it to tmp/gc.<hex>.<pid>/, holding a lock on the directory itself until
 * it is deleted (cache_gc.h), and let go of the use lock at once. */
static bool remove_complete(const struct sf_cache *c, const struct sf_cache_entry *e)
{
	_cleanup_free_ char *upath = lock_path(c, e->hex, "use");
	_cleanup_free_ char *dir = NULL, *grave = NULL;
	int use = upath ? open(upath, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
	int dfd = -1;
	bool done = false;

	if (use < 0)
		return false;
	if (flock(use, LOCK_EX | LOCK_NB) == 0 &&
	    asprintf(&dir, "%s/layers/%s", c->root, e->hex) >= 0 &&
	    asprintf(&grave, "%s/tmp/" GRAVE_PREFIX "%s.%d", c->root, e->hex, (int)getpid()) >= 0)
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* nobody else locks a layer's directory while we hold its use lock */
	if (dfd >= 0 && flock(dfd, LOCK_EX | LOCK_NB) == 0 && rename(dir, grave) == 0)
		done = true;
	close(use); /* a new mount of the layer need not wait for the deletion */
	if (done)
		sf_cache_remove_tree(grave);
	if (dfd >= 0)
		close(dfd);
	return done;
}

static void report(FILE *log, const char *what, const struct sf_cache_entry *e)
{
	if (log)
		fprintf(log, "removed %s sha256:%s (%llu bytes)\n", what, e->hex,
			(unsigned long long)e->disk);
}

sf_ret sf_cache_gc(const struct sf_cache *c, uint64_t max_size, FILE *log, uint64_t *freed,
		   struct sf_error *err)
{
	struct sf_cache_entry *v = NULL;
	uint64_t total = 0;
	size_t n = 0;
	sf_ret r;

	*freed = 0;
	sf_cache_clean_image_tmp(c, log);
	r = sf_cache_list(c, &v, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (v[i].state == SF_CACHE_REMOVING) {
			/* a live gc's is going away too: not counted either way */
			if (remove_grave(c, &v[i])) {
				*freed += v[i].disk;
				report(log, "what a killed gc left of", &v[i]);
			}
			continue;
		}
		if (v[i].state == SF_CACHE_PARTIAL && remove_partial(c, &v[i])) {
			*freed += v[i].disk;
			report(log, "partial pull", &v[i]);
			continue;
		}
		total += v[i].disk;
	}
	/* v is least recently used first */
	for (size_t i = 0; i < n && total > max_size; i++) {
		if (v[i].state != SF_CACHE_COMPLETE || !remove_complete(c, &v[i]))
			continue;
		*freed += v[i].disk;
		total -= v[i].disk;
		report(log, "layer", &v[i]);
	}
	free(v);
	return 0;
}

/* ---- commands ---- */

static int open_for_cmd(const char *dir, struct sf_cache **c)
{
	struct sf_error err = { 0 };
	sf_ret r = sf_cache_open(dir, c, &err);

	if (r < 0) {
		fprintf(stderr, "soci-fuse: %s\n", sf_error_text(&err, r));
		return 1;
	}
	return 0;
}

int sf_cache_ls_main(const char *dir)
{
	struct sf_cache_entry *v = NULL;
	struct sf_error err = { 0 };
	struct sf_cache *c;
	size_t n = 0;
	sf_ret r;

	if (open_for_cmd(dir, &c))
		return 1;
	r = sf_cache_list(c, &v, &n, &err);
	if (r < 0) {
		fprintf(stderr, "soci-fuse: %s\n", sf_error_text(&err, r));
		sf_cache_free(c);
		return 1;
	}
	printf("%-71s %12s %-8s %12s %-20s %s\n", "DIGEST", "DISK", "STATE", "FETCHED",
	       "LAST USE", "IN USE");
	for (size_t i = 0; i < n; i++) {
		char when[32] = "-";
		char state[32], fetched[32] = "-";
		if (v[i].last_use)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&v[i].last_use));
		static const char *states[] = { "complete", "partial", "removing" };
		snprintf(state, sizeof(state), "%s", states[v[i].state]);
		if (v[i].state ==
		    SF_CACHE_PARTIAL) /* blob bytes a resumed pull will not fetch again */
			snprintf(fetched, sizeof(fetched), "%llu", (unsigned long long)v[i].persisted);
		printf("sha256:%s %12llu %-8s %12s %-20s %s\n", v[i].hex,
		       (unsigned long long)v[i].disk, state, fetched, when, v[i].in_use ? "yes" : "no");
	}
	free(v);
	sf_cache_free(c);
	return 0;
}

int sf_cache_gc_main(const char *dir, uint64_t max_size)
{
	struct sf_error err = { 0 };
	struct sf_cache *c;
	uint64_t freed = 0;
	sf_ret r;

	if (open_for_cmd(dir, &c))
		return 1;
	r = sf_cache_gc(c, max_size, stdout, &freed, &err);
	sf_cache_free(c);
	if (r < 0) {
		fprintf(stderr, "soci-fuse: %s\n", sf_error_text(&err, r));
		return 1;
	}
	printf("freed %llu bytes\n", (unsigned long long)freed);
	return 0;
}
