/* rootfs.h - `soci-fuse rootfs`: the image's layers under an overlayfs mount,
 * ready to be a container's root file system; and its undoing by umount. */
#ifndef SF_ROOTFS_H
#define SF_ROOTFS_H

#include <stdbool.h>
#include <stddef.h>

#include "mount.h"

/* Private state of a rootfs at DIR: SF_ROOTFS_RUNDIR/<sha256 hex of the
 * absolute DIR>/ holds mnt/ (the FUSE mount of the layers) and empty/ (a
 * bottom lowerdir for single-layer images mounted read-only). */
#define SF_ROOTFS_RUNDIR "/run/soci-fuse/rootfs"

/* upper and work: both NULL (read-only overlay) or both set (read-write).
 * o->mountpoint is ignored.  Returns a process exit status. */
int sf_rootfs_main(const struct sf_mount_opts *o, const char *upper, const char *work,
		   const char *dir);

/* True when dir is an overlay mounted by sf_rootfs_main. */
bool sf_rootfs_is_rootfs(const char *dir);

/* The layers' FUSE mount of the rootfs at dir, into out (len bytes).
 * Returns 0, or -1 when dir is not a soci-fuse rootfs. */
int sf_rootfs_layers_mount(const char *dir, char *out, size_t len);

/* Unmounts the overlay at dir, then the layers' FUSE mount, then removes the
 * private dir.  Returns a process exit status. */
int sf_rootfs_umount_main(const char *dir);

#endif
