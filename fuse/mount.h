/* mount.h - the mount and umount commands: resolve, mount, daemonize, serve. */
#ifndef SF_MOUNT_H
#define SF_MOUNT_H

#include <stdbool.h>

#include "fetch.h"

struct sf_mount_opts {
	const char *ref;
	const char *mountpoint;
	const char *cache_dir;
	const char *overlay_xattr; /* "trusted" (default) or "user" */
	bool foreground;
	bool insecure;
	bool debug;
	struct sf_fetch_opts fetch;
};

/* Both return a process exit status and print one line on failure. */
int sf_mount_main(const struct sf_mount_opts *o);
int sf_umount_main(const char *mountpoint);

#endif
