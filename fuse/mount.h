/* mount.h - the mount and umount commands: resolve, mount, daemonize, serve. */
#ifndef SF_MOUNT_H
#define SF_MOUNT_H

#include <stdbool.h>

#include "fetch.h"
#include "layer_limits.h"

struct sf_mount_opts {
	const char *ref;
	const char *mountpoint;
	const char *cache_dir;
	const char *overlay_xattr; /* "trusted" (default) or "user" */
	bool foreground;
	bool insecure;
	bool debug;
	struct sf_fetch_opts fetch;
	struct sf_limits limits; /* main() sets SF_LIMITS_DEFAULTS, then the options */
};

/* Both return a process exit status and print one line on failure. */
int sf_mount_main(const struct sf_mount_opts *o);
int sf_umount_main(const char *mountpoint);

/* Prints "soci-fuse: <message>" on stderr; returns 1. */
int sf_cmd_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Undoes /proc/self/mountinfo's octal escapes (\040 for space) in place. */
void sf_unescape_mountinfo(char *s);
/* True when the absolute path abs is a mount point. */
bool sf_is_mountpoint(const char *abs);

#endif
