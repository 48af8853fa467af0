/* dirops.c - let the kernel send lookups in one directory in parallel.
 *
 * Unless the INIT reply carries FUSE_PARALLEL_DIROPS, the kernel holds a
 * per-directory mutex around every LOOKUP and READDIR it sends.  soci-fuse
 * parks a lookup of an entry that has not arrived yet (fs.c); with that
 * mutex held, every other lookup in the same directory would wait behind
 * it, and a parked readdir would freeze the directory until the whole layer
 * is in.  libfuse 3.14 (Debian 12) never puts the flag in its INIT reply,
 * whatever conn->want says (fixed upstream after 3.14).
 *
 * So the session's /dev/fuse fd gets libfuse's custom I/O hooks: reads pass
 * through and remember the INIT request (its unique id and the flags the
 * kernel offers); writes pass through, and the one reply to that INIT gets
 * FUSE_PARALLEL_DIROPS added when the kernel offered it.  Nothing else is
 * looked at or changed.  Splice writes (file data) pass through as splice.
 */
#include "dirops.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static _Atomic uint64_t init_unique;   /* 0: INIT not seen (or answered) */
static _Atomic uint32_t offered_flags; /* fuse_init_in.flags */

static ssize_t dirops_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	const struct fuse_in_header *in = buf;

	(void)userdata;
	if (n >= (ssize_t)(sizeof(*in) + offsetof(struct fuse_init_in, flags2)) &&
	    in->opcode == FUSE_INIT) {
		const struct fuse_init_in *arg = (const void *)(in + 1);
		atomic_store(&offered_flags, arg->flags);
		atomic_store(&init_unique, in->unique);
	}
	return n;
}

/* iov[0] is the reply header, iov[1] the fuse_init_out libfuse built. */
static ssize_t dirops_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	uint64_t unique = atomic_load(&init_unique);
	struct fuse_init_out patched;
	struct iovec copy[2];

	(void)userdata;
	if (!unique || count != 2 || iov[0].iov_len < sizeof(*out) || out->unique != unique ||
	    out->error != 0 || iov[1].iov_len < offsetof(struct fuse_init_out, max_background) ||
	    iov[1].iov_len > sizeof(patched) ||
	    !(atomic_load(&offered_flags) & FUSE_PARALLEL_DIROPS))
		return writev(fd, iov, count);
	atomic_store(&init_unique, 0);
	memset(&patched, 0, sizeof(patched));
	memcpy(&patched, iov[1].iov_base, iov[1].iov_len);
	patched.flags |= FUSE_PARALLEL_DIROPS;
	copy[0] = iov[0];
	copy[1] = (struct iovec){ .iov_base = &patched, .iov_len = iov[1].iov_len };
	return writev(fd, copy, 2);
}

static ssize_t dirops_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				  unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int sf_dirops_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = dirops_read,
		.writev = dirops_writev,
		.splice_send = dirops_splice_send,
	};

	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
