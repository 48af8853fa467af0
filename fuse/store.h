/* store.h - `soci-fuse store`: an Additional Layer Store for podman/CRI-O
 * (containers/storage's overlay driver, `additionallayerstores` in
 * storage.conf).  See store.c for the protocol and the design. */
#ifndef SF_STORE_H
#define SF_STORE_H

#include "mount.h"

/* Name of the store's JSON counters file in its root (not base64, so it
 * can never be a reference). */
#define SF_STORE_STATUS_NAME ".status"

/* o->ref is ignored; o->mountpoint is the store's mountpoint.  Returns a
 * process exit status. */
int sf_store_main(const struct sf_mount_opts *o);

#endif
