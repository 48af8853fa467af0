/* pull.h - `soci-fuse pull` (fill the cache without mounting) and
 * `soci-fuse status` (print a mount's progress). */
#ifndef SF_PULL_H
#define SF_PULL_H

#include "mount.h"

/* o->mountpoint, foreground, debug and overlay_xattr are ignored.  Returns a
 * process exit status: 0 once every layer is complete and verified in the
 * cache, 1 (after one line per failed layer) otherwise, 130 on SIGINT. */
int sf_pull_main(const struct sf_mount_opts *o);

/* Print <mnt>/status (or, for a rootfs DIR, that of its layers' mount). */
int sf_status_main(const char *mnt);

#endif
