/* dirops.h - negotiate FUSE_PARALLEL_DIROPS, which libfuse 3.14 does not. */
#ifndef SF_DIROPS_H
#define SF_DIROPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

/* Call right after fuse_session_mount().  Returns 0 or -errno. */
int sf_dirops_install(struct fuse_session *se);

#endif
