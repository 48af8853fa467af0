/* fs.h - the FUSE low-level file system over a mounted image's layers. */
#ifndef SF_FS_H
#define SF_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>

#include "layer.h"
#include "progress.h"
#include "registry.h"
#include "tree.h"

/* Readahead asked of the kernel for a mount, in bytes: it sends a
 * sequential reader's requests up to this far ahead (see mount.c). */
#define SF_FS_READ_AHEAD (4u << 20)

struct sf_fs {
	struct sf_layer *layers; /* borrowed; n_layers of them, 0 = bottom */
	unsigned n_layers;
	const struct sf_image *img; /* borrowed */
	char *lowerdir;		    /* "<mnt>/layers/N:...:<mnt>/layers/0\n" */
	struct sf_tree tree;	    /* serves layers/<i>; layer number = i */

	pthread_mutex_t rate_lock; /* guards rates */
	struct sf_rate *rates;	   /* per layer: fetch rate, sampled by status reads */

	/* The status snapshots of open files (fs.c), so that those still open
	 * when the session ends (no release comes then) are freed too. */
	pthread_mutex_t snap_lock;
	struct status_snap *snaps;
};

extern const struct fuse_lowlevel_ops sf_fs_ops;

/* mountpoint must be absolute. */
int sf_fs_init(struct sf_fs *fs, struct sf_layer *layers, unsigned n_layers,
	       const struct sf_image *img, const char *mountpoint, const char *opaque_xattr);
/* Answer every parked request with errno `error` (at shutdown). */
void sf_fs_fail_waiters(struct sf_fs *fs, int error);
void sf_fs_destroy(struct sf_fs *fs);

/* The JSON text of <mnt>/status.  New string. */
char *sf_fs_status_json(struct sf_fs *fs);

#endif
