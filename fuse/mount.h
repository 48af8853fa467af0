/* mount.h - the mount and umount commands: resolve, mount, daemonize, serve. */
#ifndef SF_MOUNT_H
#define SF_MOUNT_H

#include <stdbool.h>

#include "cache.h"
#include "fetch.h"
#include "fs.h"
#include "layer.h"
#include "layer_limits.h"
#include "ref.h"
#include "registry.h"

struct sf_mount_opts {
	const char *ref;
	const char *mountpoint;
	const char *cache_dir;
	const char *overlay_xattr; /* "trusted" (default) or "user" */
	bool foreground;
	bool insecure;
	bool debug;
	struct sf_fetch_opts fetch;
	struct sf_registry_opts registry; /* authfile, creds, tls_ca, registries_conf */
	struct sf_limits limits; /* main() sets SF_LIMITS_DEFAULTS, then the options */
};

/* What a mount (or a pull) holds; torn down by sf_mount_state_free on
 * every path.  pull.c uses the same steps without the FUSE parts. */
struct mount_state {
	struct sf_ref ref;
	struct sf_registry *reg;
	struct sf_image img;
	struct sf_cache *cache;
	struct sf_layer *layers;
	int *use_fds; /* cache_gc.h: each layer is in use while mounted */
	unsigned n_layers_ready;
	struct sf_fs fs;
	bool fs_ready;
	struct fuse_session *se;
	bool mounted;
	struct sf_fetcher *fetcher;
};

/* Open the cache, resolve o->ref (from the cache when the registry is
 * unreachable) and set up every layer (complete ones load from the cache).
 * Returns a process exit status, having printed one line on failure. */
int sf_mount_prepare(struct mount_state *m, const struct sf_mount_opts *o);
/* This process's fetcher, with o's options and the connection limit that
 * every process using cache c shares (connslots.h). */
sf_ret sf_new_fetcher(const struct sf_mount_opts *o, const struct sf_cache *c,
		      struct sf_fetcher **out, struct sf_error *err);
/* Start the fetcher and the pull thread of every layer not yet complete. */
sf_ret sf_mount_start_pull(struct mount_state *m, const struct sf_mount_opts *o,
			   struct sf_error *err);
void sf_mount_state_free(struct mount_state *m);

/* Both return a process exit status and print one line on failure. */
int sf_mount_main(const struct sf_mount_opts *o);
int sf_umount_main(const char *mountpoint);

/* Prints "soci-fuse: <message>" on stderr; returns 1. */
int sf_cmd_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Undoes /proc/self/mountinfo's octal escapes (\040 for space) in place. */
void sf_unescape_mountinfo(char *s);
/* Resolve the mountpoint into abs (PATH_MAX bytes), check it is a directory
 * with nothing mounted on it, and detach a dead FUSE mount left there by a
 * killed daemon.  Returns 0, or 1 after printing one line. */
int sf_check_mountpoint(const char *path, char *abs);
/* When path is a dead FUSE mount (its daemon was killed: "Transport
 * endpoint is not connected"), detach it, say so on stderr and set
 * *cleaned.  Asks the file system (statfs), so a live daemon must answer.
 * Returns 0, or 1 after printing one line when it cannot be detached. */
int sf_clean_dead_mount(const char *path, bool *cleaned);
/* The default cache dir for this user.  New string; NULL on ENOMEM. */
char *sf_default_cache_dir(void);
/* True when the absolute path abs is a mount point. */
bool sf_is_mountpoint(const char *abs);

#endif
