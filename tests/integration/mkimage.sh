#!/bin/bash
# mkimage.sh - build the soci-fuse test image from this machine's files.
#
#   mkimage.sh [--minimal] [--repo NAME] [--push REGISTRY] OUTDIR
#
# Stages two layers in overlayfs upper-dir form (whiteout = char 0/0,
# opaque dir = xattr trusted.overlay.opaque=y):
#   OUTDIR/stage/l0   base tree: static busybox + applet symlinks, bash with
#                     its shared libraries (chroot-able), /etc/os-release,
#                     empty /proc, /sys and /dev (for OCI runtimes), a
#                     few thousand real files (/usr/include/linux, the
#                     multiarch include dir, /usr/share/perl5) plus 2000
#                     generated files in one directory, and /special/ with
#                     every kind of entry a tar can hold (see stage_l0).
#   OUTDIR/stage/l1   changes: whiteouts, an opaque dir, file->dir,
#                     dir->file, modified content/mode/owner/xattr, a
#                     modified hard-link member, new files.
# These are exactly what <mnt>/layers/0 and /1 must show, and
# `mount -t overlay -o lowerdir=l1:l0` of them is the expected merged tree.
#
# mkimage.py then writes deterministic tars and an OCI layout in
# OUTDIR/layout with tags gzip, zstd and index (see mkimage.py).  With
# --push, the variants go to docker://REGISTRY/REPO (REPO default test/img):
#   :gzip   OCI manifest, tar+gzip layers           (skopeo copy --preserve-digests)
#   :zstd   OCI manifest, tar+zstd layers           (made with the zstd CLI)
#   :v2s2   Docker schema 2 manifest + rootfs.diff.tar.gzip (skopeo --format v2s2)
#   :index  OCI index, decoy arm64 (or amd64) manifest first, then native
#           (skopeo copy --all --preserve-digests)
# and the pushed media types are verified with skopeo inspect --raw.
#
# --minimal: one small layer (busybox, os-release), tag gzip only, for tests
# that need some image but not the full one (errors.sh).
#
# Reproducible: fixed mtimes, a seeded PRNG for the large file, sorted tar
# entries, gzip mtime 0; digests are stable for a given machine's files.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
minimal=0
repo=test/img
push=
while [ $# -gt 1 ]; do
	case $1 in
	--minimal) minimal=1; shift ;;
	--repo) repo=$2; shift 2 ;;
	--push) push=$2; shift 2 ;;
	*) break ;;
	esac
done
[ $# = 1 ] || { echo "usage: $0 [--minimal] [--repo NAME] [--push REGISTRY] OUTDIR" >&2; exit 2; }
OUT=$1
[ "$(id -u)" = 0 ] || { echo "mkimage.sh: must run as root (mknod, chown)" >&2; exit 1; }

# Whole-second base times (most real images carry whole seconds); special
# entries below get nanoseconds, pre-1970 and post-2038 times.
EPOCH0=@1672628645 # 2023-01-02T03:04:05Z, layer 0
EPOCH1=@1704164645 # 2024-01-02T03:04:05Z, layer 1

rm -rf "$OUT/stage" "$OUT/layout"
mkdir -p "$OUT/stage"
L0=$OUT/stage/l0
L1=$OUT/stage/l1
mkdir "$L0" "$L1"
chmod 755 "$L0" "$L1"
umask 022
stamp=$OUT/stage/.stamp
touch "$stamp"
sleep 0.01 # entries made from here on are -newer than the stamp

# normalize_times DIR EPOCH: everything created by this script (not the
# copied system files, which keep their own times) gets EPOCH.
normalize_times() {
	find "$1" -newer "$stamp" -exec touch -h -d "$2" {} +
	touch -h -d "$2" "$1"
}

# ------------------------------------------------------------ base system
stage_base() {
	local r=$1 bb lib a
	mkdir -p "$r"/{bin,etc,usr/bin,tmp,root}
	chmod 1777 "$r/tmp"
	chmod 700 "$r/root"
	bb=$(command -v busybox) || { echo "mkimage.sh: busybox (busybox-static) missing" >&2; exit 1; }
	cp -L "$bb" "$r/bin/busybox"
	if ldd "$r/bin/busybox" >/dev/null 2>&1; then
		echo "mkimage.sh: $bb is not static; install busybox-static" >&2
		exit 1
	fi
	for a in sh ls cat echo head tail grep wc stat readlink mkdir rm test true false \
		env id sed sort uname find md5sum sha256sum; do
		ln -s busybox "$r/bin/$a"
	done
	cp -L /etc/os-release "$r/etc/os-release"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
		>"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
}

stage_bash() {
	local r=$1 lib
	cp -L /usr/bin/bash "$r/usr/bin/bash"
	# ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
	# "/lib64/ld-linux-x86-64.so.2 (0x...)"
	for lib in $(ldd /usr/bin/bash | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		mkdir -p "$r$(dirname "$lib")"
		cp -L "$lib" "$r$lib"
	done
}

# ------------------------------------------------------------ layer 0
stage_l0() {
	local r=$L0 S d long1 long2 longtarget
	stage_base "$r"
	stage_bash "$r"
	# what an OCI runtime mounts on: a read-only rootfs cannot get them later
	mkdir -m 555 "$r/proc" "$r/sys"
	mkdir -m 755 "$r/dev"

	# A few thousand real files (whatever of these the machine has).
	for d in /usr/include/linux /usr/include/*-linux-gnu /usr/share/perl5; do
		[ -d "$d" ] || continue
		mkdir -p "$r$(dirname "$d")"
		cp -a "$d" "$r$d"
	done

	S=$r/special
	mkdir -p "$S"/{hl,hl2,sym,dev,perm,xattr,time,long,names,owner,del,opq/sub,d2f/sub,mod,big,many,sym2}

	# hard links: same dir (a, b), across dirs (c); group d/e is split by
	# layer 1 (d is replaced, e keeps the old content)
	echo 'hard link group A' >"$S/hl/a"
	ln "$S/hl/a" "$S/hl/b"
	ln "$S/hl/a" "$S/hl2/c"
	echo 'hard link group D' >"$S/hl/d"
	ln "$S/hl/d" "$S/hl2/e"

	# symlinks: relative, absolute, dangling, to a dir, a loop, long target
	ln -s ../hl/a "$S/sym/rel"
	ln -s /etc/os-release "$S/sym/abs"
	ln -s /nonexistent/dangling/target "$S/sym/dangling"
	ln -s ../hl "$S/sym/dirlink"
	ln -s loop "$S/sym/loop"
	longtarget=/$(printf 'long-symlink-target-%03d/' $(seq 1 14))end # ~300 chars
	ln -s "$longtarget" "$S/sym/longtarget"

	# fifo, devices (incl. a 12-bit major / 20-bit minor)
	mkfifo "$S/fifo"
	mknod "$S/dev/null" c 1 3
	mknod "$S/dev/loop7" b 7 7
	mknod "$S/dev/bigminor" c 511 1048575
	mknod -m 600 "$S/dev/nvme" b 259 65536

	# permission bits
	echo suid >"$S/perm/suid" && chmod 4755 "$S/perm/suid"
	echo sgid >"$S/perm/sgid" && chmod 2755 "$S/perm/sgid"
	echo 'suid, no x' >"$S/perm/suid-nox" && chmod 4644 "$S/perm/suid-nox"
	echo 'all of them' >"$S/perm/all" && chmod 7777 "$S/perm/all"
	mkdir "$S/perm/sticky" && echo x >"$S/perm/sticky/f" && chmod 1777 "$S/perm/sticky"
	mkdir "$S/perm/sgiddir" && chmod 2775 "$S/perm/sgiddir"
	echo 'secret, mode 000' >"$S/perm/mode000" && chmod 000 "$S/perm/mode000"
	mkdir "$S/perm/dir000" && echo 'inside a 000 dir' >"$S/perm/dir000/f" && chmod 000 "$S/perm/dir000"
	echo private >"$S/perm/mode600" && chmod 600 "$S/perm/mode600"

	# xattrs: user.* (text, binary, large), trusted.*, a file capability
	# (security.capability), an xattr on a directory.  No empty value: a PAX
	# record with an empty value means "delete this keyword", so an empty
	# xattr cannot travel in a tar (podman drops it, as POSIX says).
	echo 'has xattrs' >"$S/xattr/user"
	setfattr -n user.test -v hello "$S/xattr/user"
	setfattr -n user.binary -v 0x0001feff "$S/xattr/user"
	setfattr -n user.big -v "$(head -c 2000 /dev/zero | tr '\0' x)" "$S/xattr/user"
	echo 'trusted xattr' >"$S/xattr/trusted"
	setfattr -n trusted.soci-fuse-test -v trusted-value "$S/xattr/trusted"
	cp "$r/bin/busybox" "$S/xattr/cap"
	setcap cap_net_raw,cap_net_bind_service+ep "$S/xattr/cap"
	setfattr -n user.dirattr -v 'on a dir' "$S/xattr"

	# mtimes: the interesting ones are set at the end (normalize_times
	# would overwrite them)
	echo ns >"$S/time/ns"
	ln -s ns "$S/time/nslink"
	mkfifo "$S/time/nsfifo"
	echo pre-1970 >"$S/time/pre1970"
	echo y2100 >"$S/time/y2100"
	echo epoch0 >"$S/time/epoch0"

	# long names in three tar dialects: PAX path (default), GNU
	# ././@LongLink (gnu-*), USTAR 155-byte prefix split (ustar-*); a path
	# over 255 bytes; a hard link with a long link name; a GNU long symlink
	long1=$(printf 'd%02d-long-directory-name-' $(seq 1 3))
	long2=$(printf 'e%02d-another-long-dir-name-' $(seq 1 3))
	mkdir -p "$S/long/$long1/$long2"
	echo pax-long >"$S/long/$long1/$long2/pax-file-with-a-long-path"
	echo gnu-long >"$S/long/$long1/$long2/gnu-file-with-a-long-path"
	# (USTAR: prefix <= 155 bytes + name <= 100 bytes)
	echo ustar-long >"$S/long/$long1/ustar-file-with-a-long-path-that-needs-the-prefix"
	mkdir -p "$S/long/$long1/$long2/$long1/$long2/$long1"
	echo very-long >"$S/long/$long1/$long2/$long1/$long2/$long1/over-255-bytes"
	ln "$S/long/$long1/$long2/pax-file-with-a-long-path" "$S/long/hardlink-to-long-path"
	ln -s "../$long1/$long2/$long1/$long2/target" "$S/long/gnu-symlink-long-target"
	mkdir -p "$S/long/exact"
	# paths of exactly 100 and 101 bytes relative to the layer root
	d="special/long/exact/"
	echo 100 >"$S/long/exact/$(printf '%*s' $((100 - ${#d})) '' | tr ' ' a)"
	echo 101 >"$S/long/exact/$(printf '%*s' $((101 - ${#d})) '' | tr ' ' b)"

	# odd names
	echo space >"$S/names/with space"
	echo utf8 >"$S/names/ünïcödé-名前"
	echo dash >"$S/names/-dash"
	echo backslash >"$S/names/back\\slash"
	echo quote >"$S/names/quote'\""
	echo newline >"$S/names/new
line"
	echo dots >"$S/names/..dots"

	# owners: small ids, a dir, a symlink (lchown), ids beyond 8^7 (PAX
	# uid/gid records; GNU base-256 for the gnu-* entry)
	echo owned >"$S/owner/1234-5678" && chown 1234:5678 "$S/owner/1234-5678"
	mkdir "$S/owner/dir1000" && chown 1000:1000 "$S/owner/dir1000"
	ln -s 1234-5678 "$S/owner/link42" && chown -h 42:43 "$S/owner/link42"
	echo big-ids >"$S/owner/pax-bigid" && chown 3000000:3000001 "$S/owner/pax-bigid"
	echo big-ids >"$S/owner/gnu-bigid" && chown 2500000:2500001 "$S/owner/gnu-bigid"
	echo nobody >"$S/owner/nobody" && chown 65534:65534 "$S/owner/nobody"

	# to be deleted by layer 1
	echo 'deleted in layer 1' >"$S/del/file1"
	echo 'kept' >"$S/del/kept"
	mkdir -p "$S/del/deldir/sub" && echo x >"$S/del/deldir/x" && echo y >"$S/del/deldir/sub/y"
	ln -s file1 "$S/del/dsym"
	mkfifo "$S/del/dfifo"
	# opaque in layer 1: all of this disappears
	echo x >"$S/opq/x" && echo y >"$S/opq/y" && echo z >"$S/opq/sub/z"
	setfattr -n user.opq -v layer0 "$S/opq"
	# replaced by a dir / a file in layer 1
	echo 'a file in layer 0' >"$S/f2d"
	echo child >"$S/d2f/child" && echo deep >"$S/d2f/sub/deep"
	ln -s nothing-here "$S/sym2/becomes-file"
	# modified in layer 1
	echo 'layer 0 content' >"$S/mod/content"
	echo 'chmod only' >"$S/mod/chmod"
	echo 'chown only' >"$S/mod/chown"
	echo 'xattr only' >"$S/mod/xattr" && setfattr -n user.test -v layer0 "$S/mod/xattr"
	echo 'mtime only' >"$S/mod/mtime"

	# sizes: empty, exactly 1 MiB, 3 MiB of zeros, 20 MiB incompressible
	: >"$S/big/empty"
	head -c 1048576 /dev/zero | tr '\0' 'A' >"$S/big/one-mib"
	head -c 3145728 /dev/zero >"$S/big/zeros-3mib"
	python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(20240101).randbytes(20 << 20))' \
		>"$S/big/random-20mib"

	# one directory with 2000 entries (readdir paging)
	python3 - "$S/many" <<'EOF'
import os, sys
for i in range(2000):
    with open(os.path.join(sys.argv[1], "file-%04d%s" % (i, "-x" * (i % 7))), "w") as f:
        f.write("generated file %d\n" % i)
EOF

	normalize_times "$r" "$EPOCH0"
	touch -d '2020-02-29 12:34:56.123456789 UTC' "$S/time/ns"
	touch -h -d '2021-03-04 05:06:07.000000001 UTC' "$S/time/nslink"
	touch -d '2019-01-01 00:00:00.999999999 UTC' "$S/time/nsfifo"
	touch -d '1960-06-15 10:00:00.5 UTC' "$S/time/pre1970"
	touch -d '2100-01-01 00:00:00.000000001 UTC' "$S/time/y2100"
	touch -d @0 "$S/time/epoch0"
	touch -d '2022-02-22 22:22:22.222222222 UTC' "$S/mod/content" "$S/big/random-20mib"
}

# ------------------------------------------------------------ layer 1
stage_l1() {
	local r=$L1 S=$L1/special O=$L0/special d
	mkdir -p "$S"/{del,hl,opq,mod,sym2,many,l1links} "$r/etc"

	# deletions => whiteouts (char 0/0)
	for d in del/file1 del/deldir del/dsym del/dfifo hl/b; do
		mknod "$S/$d" c 0 0
	done
	for d in $(seq -f 'file-%04g' 0 99); do
		for f in "$O/many/$d"*; do mknod "$S/many/$(basename "$f")" c 0 0; done
	done

	# opaque dir: layer 0's x, y, sub/ vanish, only the new entries show
	setfattr -n trusted.overlay.opaque -v y "$S/opq"
	setfattr -n user.opq -v layer1 "$S/opq"
	echo n1 >"$S/opq/n1"
	mkdir "$S/opq/sub" && echo 'new sub' >"$S/opq/sub/n2"

	# file -> dir (a plain dir above a lower file), dir -> file
	mkdir "$S/f2d" && echo 'now a dir' >"$S/f2d/child"
	echo 'now a file' >"$S/d2f"
	echo 'was a symlink' >"$S/sym2/becomes-file"

	# modifications (full copies, as a copy-up would make them)
	echo 'layer 1 content, longer than before' >"$S/mod/content"
	cp -a "$O/mod/chmod" "$S/mod/chmod" && chmod 604 "$S/mod/chmod"
	cp -a "$O/mod/chown" "$S/mod/chown" && chown 2000:2001 "$S/mod/chown"
	cp -a "$O/mod/xattr" "$S/mod/xattr" && setfattr -n user.test -v layer1 "$S/mod/xattr" &&
		setfattr -n user.added -v yes "$S/mod/xattr"
	cp -a "$O/mod/mtime" "$S/mod/mtime"
	echo 'hard link group D, d rewritten in layer 1' >"$S/hl/d"
	cp -L "$L0/etc/os-release" "$r/etc/os-release" && echo 'SOCI_FUSE_TEST_LAYER=1' >>"$r/etc/os-release"

	# new in layer 1: a marker, a hard-link pair
	echo 'layer 1 was here' >"$r/layer1-marker"
	echo 'layer 1 hard link' >"$S/l1links/p"
	ln "$S/l1links/p" "$S/l1links/q"

	# directories that exist below keep their owner and mode (copy-up)
	(cd "$r" && find . -mindepth 1 -type d) | while read -r d; do
		if [ -d "$L0/$d" ]; then
			chown --reference="$L0/$d" "$r/$d"
			chmod --reference="$L0/$d" "$r/$d"
		fi
	done

	normalize_times "$r" "$EPOCH1"
	touch -d '2024-06-01 01:02:03.456789012 UTC' "$S/mod/mtime"
}

small_l0() {
	stage_base "$L0"
	normalize_times "$L0" "$EPOCH0"
}

# ------------------------------------------------------------ build + push
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t0=$(date +%s.%N)
if [ $minimal = 1 ]; then
	small_l0
	rmdir "$L1"
	python3 "$here/mkimage.py" --no-index --no-zstd "$OUT" "$L0"
	tags=(gzip)
else
	stage_l0
	touch "$stamp" && sleep 0.01
	stage_l1
	python3 "$here/mkimage.py" --tar-format '(^|/)gnu-[^/]*$=gnu' \
		--tar-format '(^|/)ustar-[^/]*$=ustar' "$OUT" "$L0" "$L1"
	tags=(gzip zstd v2s2 index)
fi
rm -f "$stamp"
t1=$(date +%s.%N)
echo "mkimage.sh: built $OUT/layout in $(elapsed "$t0" "$t1")s" >&2

[ -n "$push" ] || exit 0

# ------------------------------------------------------------ push
# --preserve-digests wherever the manifest stays as built: skopeo 1.9 would
# otherwise swap the zstd layers for the gzip blobs it just pushed with the
# same diff_ids (its blob-info cache "reuses" them even with
# --dest-compress-format zstd), silently turning :zstd into a gzip image.
sk() { skopeo copy -q --dest-tls-verify=false "$@"; }
for tag in "${tags[@]}"; do
	dst=docker://$push/$repo:$tag
	case $tag in
	gzip | zstd) sk --preserve-digests "oci:$OUT/layout:$tag" "$dst" ;;
	v2s2) sk --format v2s2 "oci:$OUT/layout:gzip" "$dst" ;;
	index) sk --all --preserve-digests "oci:$OUT/layout:index" "$dst" ;;
	esac
done

# Verify what the registry serves really has the intended media types.
verify() {
	local tag=$1 expect=$2 raw
	raw=$(skopeo inspect --raw --tls-verify=false "docker://$push/$repo:$tag")
	python3 - "$tag" "$expect" "$raw" <<'EOF' || exit 1
import json, sys
tag, expect, raw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
mt = raw.get("mediaType")
if expect == "index":
    ok = mt == "application/vnd.oci.image.index.v1+json" and len(raw["manifests"]) == 2
    got = "%s with %s" % (mt, [m.get("platform", {}).get("architecture") for m in raw["manifests"]])
else:
    want = {"gzip": ("application/vnd.oci.image.manifest.v1+json",
                     "application/vnd.oci.image.layer.v1.tar+gzip"),
            "zstd": ("application/vnd.oci.image.manifest.v1+json",
                     "application/vnd.oci.image.layer.v1.tar+zstd"),
            "v2s2": ("application/vnd.docker.distribution.manifest.v2+json",
                     "application/vnd.docker.image.rootfs.diff.tar.gzip")}[expect]
    layers = {l["mediaType"] for l in raw["layers"]}
    ok = mt == want[0] and layers == {want[1]}
    got = "%s, layers %s" % (mt, sorted(layers))
if not ok:
    print("mkimage.sh: %s has unexpected media types: %s" % (tag, got), file=sys.stderr)
    sys.exit(1)
EOF
}
for tag in "${tags[@]}"; do
	verify "$tag" "$tag"
done
t2=$(date +%s.%N)
echo "mkimage.sh: pushed ${tags[*]} to $push/$repo in $(elapsed "$t1" "$t2")s" >&2
