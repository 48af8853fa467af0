/* main.c - the soci-fuse command line: parses arguments, calls mount.c. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"
#include "rootfs.h"

static const char usage_text[] =
	"Usage: soci-fuse mount [OPTIONS] REF MOUNTPOINT\n"
	"       soci-fuse rootfs [OPTIONS] [--upper DIR --work DIR] REF DIR\n"
	"       soci-fuse umount MOUNTPOINT|DIR\n"
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
	"Mount options:\n"
	"  --cache DIR          layer cache (default /var/lib/soci-fuse as root,\n"
	"                       else $XDG_CACHE_HOME/soci-fuse)\n"
	"  -f, --foreground     do not daemonize\n"
	"  --insecure           allow plain HTTP to a non-loopback registry\n"
	"                       (loopback registries may always use HTTP)\n"
	"  --chunk-size SIZE    bytes per range request (K/M/G suffixes; default 8M)\n"
	"  --connections N      parallel HTTP connections (default 16)\n"
	"  --overlay-xattr NS   serve opaque dirs as NS.overlay.opaque: trusted\n"
	"                       (default) or user (for overlay's userxattr option)\n"
	"  -d, --debug          FUSE debug output (implies --foreground)\n"
	"  --max-layer-size SIZE       largest layer blob accepted (default 64G)\n"
	"  --max-expansion-ratio N     uncompressed bytes per blob byte before a layer\n"
	"                              counts as a decompression bomb (default 1000)\n"
	"  --max-entries N             tar entries per layer (default 4194304)\n"
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

static int bad_option(const char *opt, const char *val)
{
	fprintf(stderr, "soci-fuse: invalid value for %s: '%s'\n", opt, val);
	return 2;
}

/* mount and rootfs: rootfs != 0 for rootfs, which also takes --upper/--work. */
static int cmd_mount(int argc, char **argv, int rootfs)
{
	static const struct option longopts[] = {
		{ "cache", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "insecure", no_argument, NULL, 'k' },
		{ "chunk-size", required_argument, NULL, 's' },
		{ "connections", required_argument, NULL, 'n' },
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
	struct sf_mount_opts o = { .limits = SF_LIMITS_DEFAULTS };
	int li;
	const char *upper = NULL, *work = NULL;
	const char *cmd = rootfs ? "rootfs" : "mount";
	int c;

	while ((c = getopt_long(argc, argv, "fdh", longopts, &li)) != -1) {
		switch (c) {
		case 'c': o.cache_dir = optarg; break;
		case 'f': o.foreground = true; break;
		case 'k': o.insecure = true; break;
		case 'd': o.debug = o.foreground = true; break;
		case 's':
			if (parse_size(optarg, &o.fetch.chunk_size) < 0)
				return bad_option("--chunk-size", optarg);
			break;
		case 'n':
			if (parse_count(optarg, &o.fetch.connections) < 0)
				return bad_option("--connections", optarg);
			break;
		case 'x':
			if (strcmp(optarg, "trusted") && strcmp(optarg, "user"))
				return bad_option("--overlay-xattr", optarg);
			o.overlay_xattr = optarg;
			break;
		case 'L':
			if (sf_limits_set(&o.limits, longopts[li].name, optarg) < 0) {
				char name[32];
				snprintf(name, sizeof(name), "--%s", longopts[li].name);
				return bad_option(name, optarg);
			}
			break;
		case 'U': upper = optarg; break;
		case 'W': work = optarg; break;
		case 'h': return usage(stdout, 0);
		default: return usage(stderr, 2);
		}
	}
	if (!rootfs && (upper || work)) {
		fprintf(stderr, "soci-fuse: --upper and --work are rootfs options\n");
		return 2;
	}
	if (rootfs && o.foreground) {
		fprintf(stderr, "soci-fuse: rootfs does not take --foreground or --debug\n");
		return 2;
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
		return cmd_mount(argc - 1, argv + 1, 0);
	if (!strcmp(argv[1], "rootfs"))
		return cmd_mount(argc - 1, argv + 1, 1);
	if (!strcmp(argv[1], "umount") || !strcmp(argv[1], "unmount"))
		return cmd_umount(argc - 1, argv + 1);
	fprintf(stderr, "soci-fuse: unknown command '%s'\n", argv[1]);
	return usage(stderr, 2);
}
