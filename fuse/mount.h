/* mount.h - the mount and umount commands: resolve, mount, daemonize, serve. */
#ifndef SF_MOUNT_H
#define SF_MOUNT_H

#include <stdbool.h>

#include "fetch.h"
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
};

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
/* The default cache dir for this user.  New string; NULL on ENOMEM. */
char *sf_default_cache_dir(void);
/* True when the absolute path abs is a mount point. */
bool sf_is_mountpoint(const char *abs);

#endif
