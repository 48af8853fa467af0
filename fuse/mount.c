/* mount.c - `soci-fuse mount` and `soci-fuse umount`.
 *
 * Everything that can fail because of what the user typed (reference,
 * registry, mountpoint, cache dir) is checked before the mount, while the
 * command still has a terminal to print one line to.  Once the kernel mount
 * is live the process daemonizes (the parent exits 0), and only then are
 * the fetcher and layer threads started: threads do not survive fork().
 */
#include "mount.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cache_gc.h"
#include "dirops.h"
#include "fs.h"
#include "layer.h"
#include "ref.h"
#include "registry.h"

#define MOUNT_OPTIONS "ro,default_permissions,allow_other,fsname=soci-fuse,subtype=soci-fuse"

int sf_cmd_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("soci-fuse: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}
#define fail sf_cmd_fail

void sf_unescape_mountinfo(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] && r[3]) {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

bool sf_is_mountpoint(const char *abs)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char mnt[4096];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1) {
			sf_unescape_mountinfo(mnt);
			found = strcmp(mnt, abs) == 0;
		}
	}
	fclose(f);
	return found;
}

/* A FUSE mount whose daemon died answers ENOTCONN; statfs always asks the
 * file system (stat may be answered from the kernel's attribute cache). */
static bool is_dead_mount(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) < 0 && errno == ENOTCONN;
}

/* fusermount3 -u [-z] path: the setuid helper unmounts for a user who may
 * not call umount2.  Returns 0 when it succeeded. */
static int fusermount_u(const char *path, bool lazy)
{
	pid_t pid = fork();
	int status = 1;

	if (pid == 0) {
		execlp("fusermount3", "fusermount3", lazy ? "-uz" : "-u", path, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int sf_clean_dead_mount(const char *path, bool *cleaned)
{
	*cleaned = false;
	if (!is_dead_mount(path))
		return 0;
	/* detach: files still open on a dead mount can only fail anyway */
	if (umount2(path, MNT_DETACH) < 0) {
		int e = errno;

		if (e != EPERM || fusermount_u(path, true) < 0)
			return fail("%s: dead mount left by a killed daemon, and it cannot be "
				    "unmounted: %s",
				    path, strerror(e));
	}
	fprintf(stderr, "soci-fuse: cleaned up a dead mount left at %s\n", path);
	*cleaned = true;
	return 0;
}

/* Resolve and check the mountpoint, after cleaning a dead FUSE mount there
 * (realpath and stat of it would fail with ENOTCONN). */
int sf_check_mountpoint(const char *path, char *abs)
{
	struct stat st;
	bool cleaned;

	if (sf_clean_dead_mount(path, &cleaned) != 0)
		return 1;
	if (!realpath(path, abs))
		return fail("mountpoint %s: %s", path, strerror(errno));
	if (stat(abs, &st) < 0)
		return fail("mountpoint %s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail("mountpoint %s: not a directory", path);
	if (sf_is_mountpoint(abs))
		return fail("mountpoint %s is busy: something is already mounted there", path);
	return 0;
}

char *sf_default_cache_dir(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	char *s = NULL;

	if (geteuid() == 0)
		return strdup(SF_CACHE_DEFAULT_DIR);
	if (xdg && *xdg)
		return asprintf(&s, "%s/soci-fuse", xdg) < 0 ? NULL : s;
	if (!home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/tmp";
	}
	return asprintf(&s, "%s/.cache/soci-fuse", home) < 0 ? NULL : s;
}

void sf_mount_state_free(struct mount_state *m)
{
	if (m->fs_ready)
		sf_fs_fail_waiters(&m->fs, EIO);
	for (unsigned i = 0; i < m->n_layers_ready; i++)
		m->layers[i].cancel = true;
	sf_fetcher_stop(m->fetcher); /* cancels blobs, so layer threads finish */
	for (unsigned i = 0; i < m->n_layers_ready; i++)
		sf_layer_destroy(&m->layers[i]);
	sf_fetcher_free(m->fetcher);
	if (m->se) {
		fuse_remove_signal_handlers(m->se);
		if (m->mounted)
			fuse_session_unmount(m->se);
		fuse_session_destroy(m->se);
	}
	if (m->fs_ready)
		sf_fs_destroy(&m->fs);
	free(m->layers);
	for (unsigned i = 0; m->use_fds && i < m->img.n_layers; i++)
		sf_cache_unuse_layer(m->use_fds[i]);
	free(m->use_fds);
	sf_cache_free(m->cache);
	sf_image_clear(&m->img);
	sf_registry_free(m->reg);
	sf_ref_clear(&m->ref);
}

/* Without the registry, a reference resolved before with this cache is
 * served from the saved documents, as podman runs an image it already has. */
static int resolve_offline(struct mount_state *m, const struct sf_error *online, sf_ret why)
{
	_cleanup_free_ char *ref = sf_ref_format(&m->ref);
	struct sf_error err = { 0 };
	time_t saved_at = 0;
	char when[64];
	sf_ret r;

	if (!ref)
		return fail("out of memory");
	r = sf_cache_load_image(m->cache, ref, &m->img, &saved_at, &err);
	if (r < 0)
		return fail("%s", sf_error_text(online, why));
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&saved_at));
	fprintf(stderr, "soci-fuse: %s; using %s as resolved at %s\n",
		sf_error_text(online, why), ref, when);
	return 0;
}

static int resolve_image(struct mount_state *m, const struct sf_mount_opts *o)
{
	struct sf_registry_opts ropts = o->registry;
	struct sf_error err = { 0 };
	sf_ret r;

	ropts.insecure = o->insecure;
	r = sf_ref_parse(o->ref, &m->ref, &err);
	if (r == 0)
		r = sf_registry_new(&m->ref, &ropts, &m->reg, &err);
	if (r < 0)
		return fail("%s", sf_error_text(&err, r));
	r = sf_registry_resolve(m->reg, &m->img, &err);
	if (r < 0 && sf_registry_unreachable(r))
		return resolve_offline(m, &err, r);
	if (r < 0)
		return fail("%s", sf_error_text(&err, r));
	if (sf_cache_save_image(m->cache, &m->img, &err) < 0)
		fprintf(stderr, "soci-fuse: warning: %s\n", err.msg);
	return 0;
}

static int open_cache(struct mount_state *m, const struct sf_mount_opts *o)
{
	_cleanup_free_ char *dir = o->cache_dir ? strdup(o->cache_dir) : sf_default_cache_dir();
	struct sf_error err = { 0 };
	sf_ret r;

	if (!dir)
		return fail("out of memory");
	r = sf_cache_open(dir, &m->cache, &err);
	return r < 0 ? fail("%s", sf_error_text(&err, r)) : 0;
}

static int open_layers(struct mount_state *m, const struct sf_mount_opts *o)
{
	struct sf_error err = { 0 };
	sf_ret r;

	m->layers = calloc(m->img.n_layers ? m->img.n_layers : 1, sizeof(*m->layers));
	m->use_fds = malloc((m->img.n_layers ? m->img.n_layers : 1) * sizeof(*m->use_fds));
	if (!m->layers || !m->use_fds)
		return fail("out of memory");
	for (unsigned i = 0; i < m->img.n_layers; i++)
		m->use_fds[i] = -1;
	for (unsigned i = 0; i < m->img.n_layers; i++) {
		/* before the layer is looked up: gc must not remove it under us */
		r = sf_cache_use_layer(m->cache, m->img.layers[i].digest, &m->use_fds[i], &err);
		if (r < 0)
			return fail("layer %u (%s): %s", i, m->img.layers[i].digest,
				    sf_error_text(&err, r));
		r = sf_layer_init(&m->layers[i], i, &m->img.layers[i], m->cache, &err);
		if (r < 0) {
			sf_layer_destroy(&m->layers[i]);
			return fail("layer %u (%s): %s", i, m->img.layers[i].digest,
				    sf_error_text(&err, r));
		}
		m->layers[i].limits = o->limits;
		m->n_layers_ready = i + 1;
	}
	return 0;
}

/* Readahead of the FUSE mount's bdi, in KiB.  The kernel gives a FUSE
 * mount 128 KiB, so a sequential read turns into one 128 KiB request per
 * round trip; with 4 MiB (reads up to max_pages = 1 MiB each, several in
 * flight) the bench's cold sequential read of a 1.2 GB file took 5.5 s
 * instead of 10.9 s.  The window only grows for sequential readers. */
#define FUSE_READ_AHEAD_KB (SF_FS_READ_AHEAD >> 10)

/* Best effort (needs root): set the read_ahead_kb of the bdi of the FUSE
 * mount at abs.  Its major:minor comes from mountinfo, as a stat() of the
 * mount would wait for this very daemon, which is not serving yet. */
static void tune_readahead(const char *abs)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[8192], dev[64] = "";

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char mnt[4096], d[64];
		if (sscanf(line, "%*s %*s %63s %*s %4095s", d, mnt) == 2) {
			sf_unescape_mountinfo(mnt);
			if (strcmp(mnt, abs) == 0)
				snprintf(dev, sizeof(dev), "%s", d); /* the last (topmost) one */
		}
	}
	fclose(f);
	if (dev[0]) {
		char path[128];
		snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
		f = fopen(path, "w");
		if (f) {
			fprintf(f, "%u\n", FUSE_READ_AHEAD_KB);
			fclose(f);
		}
	}
}

static int mount_fuse(struct mount_state *m, const struct sf_mount_opts *o, const char *abs)
{
	const char *xattr = o->overlay_xattr && strcmp(o->overlay_xattr, "user") == 0
				    ? "user.overlay.opaque"
				    : "trusted.overlay.opaque";
	char *argv[] = { "soci-fuse", "-o", MOUNT_OPTIONS, o->debug ? "-d" : NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(o->debug ? 4 : 3, argv);

	if (sf_fs_init(&m->fs, m->layers, (unsigned)m->img.n_layers, &m->img, abs, xattr) < 0)
		return fail("out of memory");
	m->fs_ready = true;
	m->se = fuse_session_new(&args, &sf_fs_ops, sizeof(sf_fs_ops), &m->fs);
	fuse_opt_free_args(&args);
	if (!m->se)
		return fail("cannot create FUSE session (is /dev/fuse available?)");
	if (fuse_session_mount(m->se, abs) != 0)
		return fail("cannot mount at %s (is /dev/fuse available, are you root?)", abs);
	m->mounted = true;
	if (sf_dirops_install(m->se) != 0)
		return fail("cannot set up FUSE I/O at %s", abs);
	tune_readahead(abs);
	return 0;
}

sf_ret sf_new_fetcher(const struct sf_mount_opts *o, const struct sf_cache *c,
		      struct sf_fetcher **out, struct sf_error *err)
{
	struct sf_fetch_opts fo = o->fetch;
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/locks", c->root); /* connslots.h */
	fo.slots_dir = dir;
	return sf_fetcher_new(&fo, out, err);
}

sf_ret sf_mount_start_pull(struct mount_state *m, const struct sf_mount_opts *o,
			   struct sf_error *err)
{
	sf_ret r = sf_new_fetcher(o, m->cache, &m->fetcher, err);

	for (unsigned i = 0; r == 0 && i < m->img.n_layers; i++)
		r = sf_layer_start(&m->layers[i], m->reg, m->fetcher, err);
	return r;
}

int sf_mount_prepare(struct mount_state *m, const struct sf_mount_opts *o)
{
	int rc = open_cache(m, o);

	if (rc == 0)
		rc = resolve_image(m, o);
	if (rc == 0)
		rc = open_layers(m, o);
	return rc;
}

static int serve(struct mount_state *m, const struct sf_mount_opts *o)
{
	struct fuse_loop_config *cfg;
	struct sf_error err = { 0 };
	sf_ret r;
	int rc;

	if (fuse_set_signal_handlers(m->se) != 0)
		return fail("cannot set signal handlers");
	r = sf_mount_start_pull(m, o, &err);
	if (r < 0) {
		syslog(LOG_ERR, "%s", sf_error_text(&err, r));
		return fail("%s", sf_error_text(&err, r));
	}
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		return fail("out of memory");
	fuse_loop_cfg_set_max_threads(cfg, 16);
	rc = fuse_session_loop_mt(m->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return rc < 0 ? 1 : 0;
}

int sf_mount_main(const struct sf_mount_opts *o)
{
	struct mount_state m = { 0 };
	char abs[PATH_MAX];
	int rc;

	/* with --debug, log messages go to stderr too: see what the daemon says */
	openlog("soci-fuse", LOG_PID | (o->debug ? LOG_PERROR : 0), LOG_DAEMON);
	rc = sf_check_mountpoint(o->mountpoint, abs);
	if (rc == 0)
		rc = sf_mount_prepare(&m, o);
	if (rc == 0)
		rc = mount_fuse(&m, o, abs);
	if (rc == 0 && fuse_daemonize(o->foreground) != 0)
		rc = fail("cannot daemonize");
	if (rc == 0)
		rc = serve(&m, o);
	sf_mount_state_free(&m);
	return rc;
}

int sf_umount_main(const char *mountpoint)
{
	bool cleaned;

	if (sf_clean_dead_mount(mountpoint, &cleaned) != 0)
		return 1;
	if (cleaned || umount2(mountpoint, 0) == 0)
		return 0;
	switch (errno) {
	case EINVAL:
		return fail("%s is not mounted", mountpoint);
	case EBUSY:
		return fail("%s is busy: unmount the overlay stacked on it and stop processes "
			    "using it first",
			    mountpoint);
	case EPERM: /* not root: let the setuid helper do it */
		return fusermount_u(mountpoint, false) == 0 ? 0 : 1;
	default:
		return fail("cannot unmount %s: %s", mountpoint, strerror(errno));
	}
}
