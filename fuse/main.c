/* main.c - the soci-fuse command line: parses arguments, calls mount.c. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_gc.h"
#include "conffile.h"
#include "mount.h"
#include "pull.h"
#include "rootfs.h"
#include "store.h"

static const char usage_text[] =
	"Usage: soci-fuse mount [OPTIONS] REF MOUNTPOINT\n"
	"       soci-fuse rootfs [OPTIONS] [--upper DIR --work DIR] REF DIR\n"
	"       soci-fuse store [OPTIONS] MOUNTPOINT\n"
	"       soci-fuse umount MOUNTPOINT|DIR\n"
	"       soci-fuse pull [OPTIONS] REF\n"
	"       soci-fuse status MOUNTPOINT|DIR\n"
	"       soci-fuse cache ls [--cache DIR]\n"
	"       soci-fuse cache gc [--max-size SIZE] [--cache DIR]\n"
	"       soci-fuse --help | --version\n"
	"\n"
	"Mount a container image from an OCI registry: each layer appears at once as a\n"
	"read-only tree under MOUNTPOINT/layers/<i> (0 = bottom) and is filled in as\n"
	"it is downloaded; MOUNTPOINT/lowerdir holds the overlayfs lowerdir= value and\n"
	"MOUNTPOINT/status the progress as JSON.\n"
	"\n"
	"rootfs mounts the layers the same way at a private mount point\n"
	"(" SF_ROOTFS_RUNDIR "/<sha256 of DIR>/mnt) and stacks overlayfs at DIR:\n"
	"read-only, or read-write with --upper and --work; DIR can then be the\n"
	"root.path of an OCI bundle (runc, crun).  umount DIR undoes both mounts.\n"
	"\n"
	"store serves any image's layers as a podman/CRI-O Additional Layer Store:\n"
	"storage.conf [storage.options] additionallayerstores=[\"MOUNTPOINT:ref\"].\n"
	"It takes the mount options.\n"
	"pull fills the cache with every layer of REF (verified) without mounting,\n"
	"showing per-layer progress; a later mount of REF is served from the cache.\n"
	"status prints the per-layer progress of a mount as JSON.\n"
	"\n"
	"Mount options:\n"
	"  --cache DIR          layer cache (default /var/lib/soci-fuse as root,\n"
	"                       else $XDG_CACHE_HOME/soci-fuse)\n"
	"  -f, --foreground     do not daemonize\n"
	"  --insecure           allow plain HTTP to a non-loopback registry\n"
	"                       (loopback registries may always use HTTP)\n"
	"  --authfile FILE      registry credentials (auth.json format; default:\n"
	"                       $REGISTRY_AUTH_FILE, podman's and docker's files)\n"
	"  --creds USER:PASS    registry credentials on the command line\n"
	"  --tls-ca FILE        also trust the CA certificates in FILE\n"
	"  --registries-conf FILE  mirrors (default /etc/containers/registries.conf)\n"
	"  --chunk-size SIZE    bytes per range request (K/M/G suffixes; default 8M)\n"
	"  --connections N      parallel HTTP connections (default 16)\n"
	"  --cache-connections N  connections of all soci-fuse processes using the\n"
	"                       cache dir together (default 64)\n"
	"  --overlay-xattr NS   serve opaque dirs as NS.overlay.opaque: trusted\n"
	"                       (default) or user (for overlay's userxattr option)\n"
	"  -d, --debug          FUSE debug output, and log messages on stderr too\n"
	"                       (implies --foreground)\n"
	"  --max-layer-size SIZE       largest layer blob accepted (default 64G)\n"
	"  --max-expansion-ratio N     uncompressed bytes per blob byte before a layer\n"
	"                              counts as a decompression bomb (default 1000)\n"
	"  --max-entries N             tar entries per layer (default 4194304)\n"
	"\n"
	"pull takes the mount options but -f, -d and --overlay-xattr.\n"
	"Defaults for the mount options come from " SF_CONFIG_PATH "\n"
	"(or $SOCI_FUSE_CONFIG): \"name = value\" lines with the option names\n"
	"(connections = 32); the command line overrides them.\n"
	"cache ls lists the layers of the cache: digest, bytes on disk, complete or\n"
	"partial (a pull that stopped; FETCHED bytes of it are kept for resuming),\n"
	"last use and whether a mount uses it now.  cache gc removes partial pulls\n"
	"nobody is pulling, then layers no mount uses, least recently used first,\n"
	"until the cache holds at most SIZE bytes (K/M/G suffixes; default 0).\n"
	"\n"
	"rootfs options (besides the mount options but -f and -d):\n"
	"  --upper DIR          overlayfs upperdir: the rootfs is writable\n"
	"  --work DIR           overlayfs workdir (same file system as --upper)\n";

static int usage(FILE *f, int rc)
{
	fputs(usage_text, f);
	return rc;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end || v == 0)
		return -1;
	*out = v;
	return 0;
}

static int parse_count(const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v < 1 || v > 1024)
		return -1;
	*out = (int)v;
	return 0;
}

/* Wipe a secret from the heap when it goes out of scope. */
static void free_secretp(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
}

/* --creds USER:PASS: a copy for us, and the argument overwritten in place
 * (as mysql and curl do), so the password is not left readable in
 * /proc/PID/cmdline, for ps and anyone else, for the daemon's whole life.
 * It was visible from exec until here; --authfile avoids even that. */
static char *take_secret_arg(char *arg)
{
	char *copy = strdup(arg);

	memset(arg, 'x', strlen(arg));
	return copy;
}

/* where: NULL for the command line, else "FILE:LINE: " of the config file */
static int bad_option(const char *where, const char *opt, const char *val)
{
	fprintf(stderr, "soci-fuse: %sinvalid value for %s: '%s'\n", where ? where : "", opt, val);
	return 2;
}

enum cmd { CMD_MOUNT, CMD_ROOTFS, CMD_STORE, CMD_PULL };

static const struct option mount_longopts[] = {
	{ "cache", required_argument, NULL, 'c' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "insecure", no_argument, NULL, 'k' },
	{ "authfile", required_argument, NULL, 'A' },
	{ "creds", required_argument, NULL, 'C' },
	{ "tls-ca", required_argument, NULL, 'T' },
	{ "registries-conf", required_argument, NULL, 'R' },
	{ "chunk-size", required_argument, NULL, 's' },
	{ "connections", required_argument, NULL, 'n' },
	{ "cache-connections", required_argument, NULL, 'N' },
	{ "overlay-xattr", required_argument, NULL, 'x' },
	{ "debug", no_argument, NULL, 'd' },
	{ "help", no_argument, NULL, 'h' },
	{ "upper", required_argument, NULL, 'U' },
	{ "work", required_argument, NULL, 'W' },
	{ "max-layer-size", required_argument, NULL, 'L' },
	{ "max-expansion-ratio", required_argument, NULL, 'L' },
	{ "max-entries", required_argument, NULL, 'L' },
	{ 0 },
};

/* What the options of mount, rootfs, store and pull set. */
struct mount_args {
	struct sf_mount_opts o;
	const char *upper, *work;
	char *creds; /* our copy of --creds (take_secret_arg) */
};

/* Apply option `opt` (an entry of mount_longopts) with value val (NULL for
 * a flag).  Returns 0, or an exit status after one line; where as for
 * bad_option. */
static int set_option(struct mount_args *a, const struct option *opt, char *val,
		      const char *where)
{
	char name[32];

	snprintf(name, sizeof(name), "--%s", opt->name);
	switch (opt->val) {
	case 'c': a->o.cache_dir = val; break;
	case 'f': a->o.foreground = true; break;
	case 'k': a->o.insecure = true; break;
	case 'A': a->o.registry.authfile = val; break;
	case 'C':
		free_secretp(&a->creds);
		a->o.registry.creds = a->creds = take_secret_arg(val);
		if (!a->creds) {
			fprintf(stderr, "soci-fuse: out of memory\n");
			return 1;
		}
		break;
	case 'T': a->o.registry.tls_ca = val; break;
	case 'R': a->o.registry.registries_conf = val; break;
	case 'd': a->o.debug = a->o.foreground = true; break;
	case 's':
		if (parse_size(val, &a->o.fetch.chunk_size) < 0)
			return bad_option(where, name, val);
		break;
	case 'n':
		if (parse_count(val, &a->o.fetch.connections) < 0)
			return bad_option(where, name, val);
		break;
	case 'N':
		if (parse_count(val, &a->o.fetch.cache_connections) < 0)
			return bad_option(where, name, val);
		break;
	case 'x':
		if (strcmp(val, "trusted") && strcmp(val, "user"))
			return bad_option(where, name, val);
		a->o.overlay_xattr = val;
		break;
	case 'L':
		if (sf_limits_set(&a->o.limits, opt->name, val) < 0)
			return bad_option(where, name, val);
		break;
	case 'U': a->upper = val; break;
	case 'W': a->work = val; break;
	}
	return 0;
}

/* Options a config file may set: node-wide defaults.  Not creds (a
 * password belongs in an authfile), nor what only makes sense per command
 * (foreground, debug, upper, work, help). */
static bool config_may_set(const char *name)
{
	static const char *const allowed[] = {
		"cache", "insecure", "authfile", "tls-ca", "registries-conf", "chunk-size",
		"connections", "cache-connections", "overlay-xattr", "max-layer-size",
		"max-expansion-ratio", "max-entries",
	};

	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (!strcmp(name, allowed[i]))
			return true;
	return false;
}

static void free_args(struct mount_args *a)
{
	free_secretp(&a->creds);
}

/* The config file's options (conffile.h), before the command line's. */
static int apply_config(struct mount_args *a, struct sf_config *cfg, enum cmd which)
{
	int rc = sf_config_load(cfg);

	for (size_t i = 0; rc == 0 && i < cfg->n; i++) {
		const struct sf_config_item *it = &cfg->items[i];
		const struct option *opt = mount_longopts;
		char where[4200];

		snprintf(where, sizeof(where), "%s:%u: ", cfg->path, it->line);
		while (opt->name && strcmp(opt->name, it->name))
			opt++;
		if (!opt->name || !config_may_set(it->name)) {
			fprintf(stderr, "soci-fuse: %s%s is not an option a config file sets\n", where,
				it->name);
			return 2;
		}
		if ((opt->has_arg == required_argument) != (it->value != NULL)) {
			fprintf(stderr, "soci-fuse: %s%s %s\n", where, it->name,
				it->value ? "takes no value" : "needs a value (name = value)");
			return 2;
		}
		/* a mount default that pull has no use for */
		if (which == CMD_PULL && opt->val == 'x')
			continue;
		rc = set_option(a, opt, (char *)it->value, where);
	}
	return rc;
}

/* mount, rootfs, store and pull: rootfs also takes --upper/--work; store
 * takes no REF; pull takes neither --upper/--work nor -f/-d/--overlay-xattr. */
static int cmd_mount(int argc, char **argv, enum cmd which)
{
	int rootfs = which == CMD_ROOTFS, pull = which == CMD_PULL;
	__attribute__((cleanup(sf_config_free))) struct sf_config cfg = { 0 };
	__attribute__((cleanup(free_args))) struct mount_args a = {
		.o = { .limits = SF_LIMITS_DEFAULTS },
	};
	struct sf_mount_opts o;
	const char *upper, *work;
	const char *cmd = rootfs ? "rootfs" : pull ? "pull" : which == CMD_STORE ? "store" : "mount";
	int c, li, rc;

	rc = apply_config(&a, &cfg, which);
	if (rc)
		return rc;
	while ((li = -1, c = getopt_long(argc, argv, "fdh", mount_longopts, &li)) != -1) {
		const struct option *opt = li >= 0 ? &mount_longopts[li] : mount_longopts;

		if (c == 'h')
			return usage(stdout, 0);
		if (c == '?' || c == ':')
			return usage(stderr, 2);
		while (li < 0 && opt->name && opt->val != c) /* -f, -d: find their entry */
			opt++;
		rc = set_option(&a, opt, optarg, NULL);
		if (rc)
			return rc;
	}
	o = a.o;
	upper = a.upper;
	work = a.work;
	if (pull && (upper || work || o.foreground || o.overlay_xattr)) {
		fprintf(stderr, "soci-fuse: pull does not take --upper, --work, --foreground, "
				"--debug or --overlay-xattr\n");
		return 2;
	}
	if (pull) {
		if (argc - optind != 1) {
			fprintf(stderr, "soci-fuse: pull needs REF\n");
			return usage(stderr, 2);
		}
		o.ref = argv[optind];
		return sf_pull_main(&o);
	}
	if (!rootfs && (upper || work)) {
		fprintf(stderr, "soci-fuse: --upper and --work are rootfs options\n");
		return 2;
	}
	if (rootfs && o.foreground) {
		fprintf(stderr, "soci-fuse: rootfs does not take --foreground or --debug\n");
		return 2;
	}
	if (which == CMD_STORE) {
		if (argc - optind != 1) {
			fprintf(stderr, "soci-fuse: store needs MOUNTPOINT\n");
			return usage(stderr, 2);
		}
		o.mountpoint = argv[optind];
		return sf_store_main(&o);
	}
	if (argc - optind != 2) {
		fprintf(stderr, "soci-fuse: %s needs REF and %s\n", cmd,
			rootfs ? "DIR" : "MOUNTPOINT");
		return usage(stderr, 2);
	}
	o.ref = argv[optind];
	if (rootfs)
		return sf_rootfs_main(&o, upper, work, argv[optind + 1]);
	o.mountpoint = argv[optind + 1];
	return sf_mount_main(&o);
}

/* cache ls|gc: argument parsing only; the work is in src/cache_gc.c. */
static int cmd_cache(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "cache", required_argument, NULL, 'c' },
		{ "max-size", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	_cleanup_free_ char *dflt = NULL;
	const char *dir = NULL, *sub;
	uint64_t max_size = 0;
	bool have_max = false;
	int c;

	if (argc < 2 || (strcmp(argv[1], "ls") && strcmp(argv[1], "gc"))) {
		fprintf(stderr, "soci-fuse: cache needs ls or gc\n");
		return usage(stderr, 2);
	}
	sub = argv[1];
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': dir = optarg; break;
		case 'm':
			/* 0 is allowed here: remove everything not in use */
			if (strcmp(optarg, "0") && parse_size(optarg, &max_size) < 0)
				return bad_option(NULL, "--max-size", optarg);
			have_max = true;
			break;
		case 'h': return usage(stdout, 0);
		default: return usage(stderr, 2);
		}
	}
	if (optind != argc || (have_max && strcmp(sub, "gc"))) {
		fprintf(stderr, "soci-fuse: cache %s: unexpected arguments\n", sub);
		return usage(stderr, 2);
	}
	if (!dir) {
		dflt = sf_default_cache_dir();
		if (!dflt)
			return 1;
		dir = dflt;
	}
	return strcmp(sub, "ls") == 0 ? sf_cache_ls_main(dir) : sf_cache_gc_main(dir, max_size);
}

static int cmd_umount(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "soci-fuse: umount needs MOUNTPOINT\n");
		return usage(stderr, 2);
	}
	if (sf_rootfs_is_rootfs(argv[1]))
		return sf_rootfs_umount_main(argv[1]);
	return sf_umount_main(argv[1]);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr, 2);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		return usage(stdout, 0);
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("soci-fuse %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "mount"))
		return cmd_mount(argc - 1, argv + 1, CMD_MOUNT);
	if (!strcmp(argv[1], "rootfs"))
		return cmd_mount(argc - 1, argv + 1, CMD_ROOTFS);
	if (!strcmp(argv[1], "store"))
		return cmd_mount(argc - 1, argv + 1, CMD_STORE);
	if (!strcmp(argv[1], "pull"))
		return cmd_mount(argc - 1, argv + 1, CMD_PULL);
	if (!strcmp(argv[1], "status")) {
		if (argc != 3) {
			fprintf(stderr, "soci-fuse: status needs MOUNTPOINT\n");
			return usage(stderr, 2);
		}
		return sf_status_main(argv[2]);
	}
	if (!strcmp(argv[1], "cache"))
		return cmd_cache(argc - 1, argv + 1);
	if (!strcmp(argv[1], "umount") || !strcmp(argv[1], "unmount"))
		return cmd_umount(argc - 1, argv + 1);
	fprintf(stderr, "soci-fuse: unknown command '%s'\n", argv[1]);
	return usage(stderr, 2);
}
