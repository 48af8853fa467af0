/* stop.h - SIGTERM for a daemon whose mount containers may be running on.
 *
 * libfuse's signal handlers end the session loop at the first SIGTERM,
 * SIGINT or SIGHUP; the daemon exits, the connection aborts and every
 * overlayfs stacked on the mount (a running container) gets ENOTCONN until
 * it is restarted.  A podman or CRI-O operator expects the storage under
 * running containers not to vanish because a service was stopped.  The
 * kernel knows who still uses the mount: overlayfs takes a private clone of
 * each lower layer's mount (so it never makes an unmount fail with EBUSY),
 * open files and working directories hold it too, and the connection ends
 * (reads of /dev/fuse fail with ENODEV) only when the last of them is gone.
 * So with sf_stop the first of those signals unmounts (lazily when EBUSY),
 * which takes the mount out of the namespace at once: nobody new can start
 * using it, and podman falls back to its own pulls.  The daemon serves on
 * until the connection ends, logging why when that takes more than a
 * moment.  A second signal forces, as libfuse's handlers do.
 */
#ifndef SF_STOP_H
#define SF_STOP_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "error.h"

struct sf_stop {
	struct fuse_session *se; /* borrowed */
	const char *mountpoint;	 /* borrowed, absolute */
	pthread_t main;		 /* runs fuse_session_loop_mt: woken to force */
	pthread_t thread;	 /* unmounts */
	int pipe[2];		 /* signal handler -> thread */
	atomic_int requests;	 /* stop signals received */
	atomic_bool quit;	 /* the loop ended: the thread returns */
};

/* Install the handlers (and ignore SIGPIPE, as libfuse's do) and start the
 * thread that unmounts.  Call from the thread that then runs the session loop,
 * after daemonizing.  One per process. */
sf_ret sf_stop_start(struct sf_stop *st, struct fuse_session *se, const char *mountpoint);
/* After the loop: restore the default handlers, end the thread. */
void sf_stop_end(struct sf_stop *st);

#endif
