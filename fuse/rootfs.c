/* rootfs.c - `soci-fuse rootfs` and its undoing by `soci-fuse umount`.
 *
 * The layers are mounted exactly as `soci-fuse mount` does, at a private
 * mount point SF_ROOTFS_RUNDIR/<sha256 of the absolute DIR>/mnt: a forked
 * child runs sf_mount_main there, and returns (through fuse_daemonize) once
 * the FUSE mount is live.  Then this process stacks overlayfs at DIR:
 * lowerdir only (read-only), or with --upper/--work (read-write).  Kernel
 * overlayfs needs two lowerdirs without an upperdir, so a single-layer image
 * mounted read-only gets the private, empty dir <private>/empty below it.
 * Whatever fails, nothing stays mounted and the private dir is removed.
 */
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "digest.h"
#include "error.h"

struct priv {
	char dir[PATH_MAX];   /* SF_ROOTFS_RUNDIR/<hex> */
	char mnt[PATH_MAX];   /* dir/mnt: the layers' FUSE mount */
	char empty[PATH_MAX]; /* dir/empty */
};

static int priv_paths(struct priv *p, const char *hex)
{
	if (snprintf(p->dir, sizeof(p->dir), "%s/%s", SF_ROOTFS_RUNDIR, hex) >= (int)sizeof(p->dir) ||
	    snprintf(p->mnt, sizeof(p->mnt), "%s/mnt", p->dir) >= (int)sizeof(p->mnt) ||
	    snprintf(p->empty, sizeof(p->empty), "%s/empty", p->dir) >= (int)sizeof(p->empty))
		return -1;
	return 0;
}

static void priv_remove(const struct priv *p)
{
	rmdir(p->mnt);
	rmdir(p->empty);
	rmdir(p->dir);
}

/* Unmount the layers' FUSE mount; the daemon may still be answering a
 * request for a moment after the overlay went away (EBUSY). */
static int umount_layers(const struct priv *p)
{
	for (int i = 0; i < 50; i++) {
		if (umount2(p->mnt, 0) == 0 || errno == EINVAL || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			break;
		usleep(100 * 1000);
	}
	return -1;
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -1;
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return mkdir(buf, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Characters that overlayfs' option parser would take for separators. */
static bool overlay_safe(const char *path)
{
	return !strpbrk(path, ",:\\");
}

static int resolve_dir(const char *what, const char *path, char abs[PATH_MAX])
{
	struct stat st;

	if (!realpath(path, abs) || stat(abs, &st) < 0)
		return sf_cmd_fail("rootfs: %s %s: %s", what, path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return sf_cmd_fail("rootfs: %s %s: not a directory", what, path);
	if (!overlay_safe(abs))
		return sf_cmd_fail("rootfs: %s %s: overlayfs cannot take a path with ',', ':' or '\\'",
			       what, abs);
	return 0;
}

/* Run sf_mount_main at p->mnt in a child; it returns once the mount is live
 * (the daemon it forks keeps serving).  Returns its exit status. */
static int mount_layers(const struct sf_mount_opts *o, const struct priv *p)
{
	struct sf_mount_opts co = *o;
	int status;
	pid_t pid;

	co.mountpoint = p->mnt;
	co.foreground = false;
	co.debug = false;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return sf_cmd_fail("rootfs: fork: %s", strerror(errno));
	if (pid == 0) {
		int rc = sf_mount_main(&co);
		fflush(NULL);
		_exit(rc);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return sf_cmd_fail("rootfs: waitpid: %s", strerror(errno));
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return sf_cmd_fail("rootfs: mounting the layers at %s: killed by signal %d", p->mnt,
		       WTERMSIG(status));
}

static char *read_lowerdir(const struct priv *p)
{
	char path[PATH_MAX + 16];
	char *s = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/lowerdir", p->mnt);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	n = getline(&s, &cap, f);
	fclose(f);
	if (n <= 0) {
		free(s);
		return NULL;
	}
	s[strcspn(s, "\n")] = '\0';
	return s;
}

/* Overlayfs takes its options as mount(2) data, which the kernel cuts at
 * one page: with absolute layer paths of ~100 bytes, images of more than
 * ~40 layers would not fit (and the cut path fails with ENOENT).  So all
 * layers but the top one are named relative to <mnt>/layers (by their
 * number, a few bytes each; OVL_MAX_STACK is 500), and the mount runs
 * with the working directory there.  The top one stays absolute: umount
 * and status recognize a rootfs by it in /proc/self/mountinfo (find_rootfs).
 * (The new mount API does not help on Debian 12's 6.1: fsconfig string
 * values are limited to 256 bytes, and overlayfs has "lowerdir+" only since
 * 6.8.)  Shortens lower, `:`-separated absolute paths top first, in place. */
static void shorten_lowerdir(char *lower, const struct priv *p)
{
	char prefix[PATH_MAX + 16];
	size_t plen = (size_t)snprintf(prefix, sizeof(prefix), "%s/layers/", p->mnt);
	char *out = strchr(lower, ':'), *in = out;

	while (in && *in == ':') {
		char *next = strchr(in + 1, ':');
		size_t len = next ? (size_t)(next - in - 1) : strlen(in + 1);
		const char *name = in + 1;

		if (len > plen && strncmp(name, prefix, plen) == 0) {
			name += plen;
			len -= plen;
		}
		*out++ = ':';
		memmove(out, name, len);
		out += len;
		in = next;
	}
	if (out)
		*out = '\0';
}

/* mount(2) the overlay with opts, resolving relative lowerdirs in cwd. */
static int mount_overlay_in(const char *cwd, const char *target, const char *opts)
{
	int here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC), r = -1, e;

	if (here < 0)
		return -1;
	if (chdir(cwd) == 0)
		r = mount("overlay", target, "overlay", 0, opts);
	e = errno;
	if (fchdir(here) < 0 && r == 0)
		e = 0; /* mounted; only our own cwd is lost */
	close(here);
	errno = e;
	return r;
}

static int stack_overlay(const struct sf_mount_opts *o, const struct priv *p, const char *upper,
			 const char *work, const char *abs)
{
	_cleanup_free_ char *lower = read_lowerdir(p);
	_cleanup_free_ char *opts = NULL;
	bool user = o->overlay_xattr && strcmp(o->overlay_xattr, "user") == 0;
	char layers[PATH_MAX + 8];
	long page = sysconf(_SC_PAGESIZE);
	int r;

	if (!lower || !*lower)
		return sf_cmd_fail("rootfs: cannot read %s/lowerdir", p->mnt);
	shorten_lowerdir(lower, p);
	if (upper)
		r = asprintf(&opts, "lowerdir=%s,upperdir=%s,workdir=%s%s", lower, upper, work,
			     user ? ",userxattr" : "");
	else if (!strchr(lower, ':')) /* one layer: overlay wants two lowerdirs */
		r = asprintf(&opts, "lowerdir=%s:%s%s", lower, p->empty, user ? ",userxattr" : "");
	else
		r = asprintf(&opts, "lowerdir=%s%s", lower, user ? ",userxattr" : "");
	if (r < 0)
		return sf_cmd_fail("out of memory");
	if (page > 0 && (size_t)r >= (size_t)page)
		return sf_cmd_fail("rootfs: too many layers: %d bytes of overlay options", r);
	snprintf(layers, sizeof(layers), "%s/layers", p->mnt);
	if (mount_overlay_in(layers, abs, opts) < 0)
		return sf_cmd_fail("rootfs: cannot mount overlay at %s: %s", abs, strerror(errno));
	return 0;
}

int sf_rootfs_main(const struct sf_mount_opts *o, const char *upper, const char *work,
		   const char *dir)
{
	char abs[PATH_MAX], uabs[PATH_MAX], wabs[PATH_MAX], digest[SF_DIGEST_STR_LEN + 1];
	struct priv p;
	int rc;

	if (!upper != !work)
		return sf_cmd_fail("rootfs: --upper and --work go together");
	if (resolve_dir("directory", dir, abs) != 0)
		return 1;
	if (sf_is_mountpoint(abs))
		return sf_cmd_fail("rootfs: %s is busy: something is already mounted there", dir);
	if (upper && (resolve_dir("--upper", upper, uabs) != 0 ||
		      resolve_dir("--work", work, wabs) != 0))
		return 1;
	sf_sha256_buf(abs, strlen(abs), digest);
	if (priv_paths(&p, sf_digest_hex(digest)) < 0)
		return sf_cmd_fail("rootfs: path too long");
	if (sf_is_mountpoint(p.mnt))
		return sf_cmd_fail("rootfs: %s is still mounted from an earlier rootfs at %s; "
			       "unmount it first", p.mnt, dir);
	if (mkdir_p(p.dir) < 0 || (mkdir(p.mnt, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(p.empty, 0755) < 0 && errno != EEXIST)) {
		rc = sf_cmd_fail("rootfs: cannot create %s: %s", p.mnt, strerror(errno));
		priv_remove(&p);
		return rc;
	}
	rc = mount_layers(o, &p);
	if (rc != 0) {
		priv_remove(&p);
		return rc;
	}
	rc = stack_overlay(o, &p, upper ? uabs : NULL, upper ? wabs : NULL, abs);
	if (rc != 0) {
		umount_layers(&p);
		priv_remove(&p);
	}
	return rc;
}

/* Finds the topmost overlay mounted at abs whose lowerdir lies in
 * SF_ROOTFS_RUNDIR; fills p.  Returns 0 when found. */
static int find_rootfs(const char *abs, struct priv *p)
{
	static const char key[] = "lowerdir=" SF_ROOTFS_RUNDIR "/";
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char *line = NULL, hex[65];
	size_t cap = 0;
	int found = -1;

	if (!f)
		return -1;
	while (getline(&line, &cap, f) > 0) {
		char mnt[PATH_MAX], fstype[64];
		const char *sep = strstr(line, " - "), *opt;
		size_t n;

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep, " - %63s", fstype) != 1)
			continue;
		sf_unescape_mountinfo(mnt);
		if (strcmp(mnt, abs) || strcmp(fstype, "overlay"))
			continue;
		found = -1; /* a later mount on top hides an earlier one */
		opt = strstr(sep, key);
		if (!opt)
			continue;
		opt += sizeof(key) - 1;
		n = strspn(opt, "0123456789abcdef");
		if (n != 64 || opt[n] != '/')
			continue;
		memcpy(hex, opt, 64);
		hex[64] = '\0';
		found = priv_paths(p, hex);
	}
	free(line);
	fclose(f);
	return found;
}

bool sf_rootfs_is_rootfs(const char *dir)
{
	char abs[PATH_MAX];
	struct priv p;

	return realpath(dir, abs) && find_rootfs(abs, &p) == 0;
}

int sf_rootfs_layers_mount(const char *dir, char *out, size_t len)
{
	char abs[PATH_MAX];
	struct priv p;

	if (!realpath(dir, abs) || find_rootfs(abs, &p) != 0)
		return -1;
	return snprintf(out, len, "%s", p.mnt) < (int)len ? 0 : -1;
}

int sf_rootfs_umount_main(const char *dir)
{
	char abs[PATH_MAX];
	struct priv p;
	bool cleaned;

	if (!realpath(dir, abs) || find_rootfs(abs, &p) != 0)
		return sf_cmd_fail("%s is not a soci-fuse rootfs", dir);
	if (umount2(abs, 0) < 0) {
		if (errno == EBUSY)
			return sf_cmd_fail("%s is busy: stop the processes (containers) using it first", dir);
		return sf_cmd_fail("cannot unmount %s: %s", dir, strerror(errno));
	}
	/* a killed layers' daemon leaves the overlay over a dead mount */
	if (sf_clean_dead_mount(p.mnt, &cleaned) != 0)
		return 1;
	if (!cleaned && umount_layers(&p) < 0)
		return sf_cmd_fail("unmounted %s, but not the layers at %s: %s", dir, p.mnt,
			       strerror(errno));
	priv_remove(&p);
	return 0;
}
