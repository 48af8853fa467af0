#!/bin/bash
# rootfs.sh - `soci-fuse rootfs`: the layers' FUSE mount at a private mount
# point with overlayfs stacked at DIR, usable by chroot and an OCI runtime;
# `soci-fuse umount DIR` undoes both.
#
#   1. read-only: writes fail with EROFS; chroot bash; an OCI bundle whose
#      root.path is the rootfs (root.readonly) runs with runc, with its own
#      --root state dir (the test image has the /proc, /dev and /sys it
#      mounts on); umount: nothing left mounted below $T or in the private
#      dir, which is gone.
#   2. read-write with --upper/--work: a write lands in upper; the bundle
#      runs there too; umount.
#   3. a single-layer image read-only (the private empty lowerdir).
#   4. an image of 64 layers: their lowerdir paths would not fit the one
#      page of mount data overlayfs takes; the top layer's file wins.
#   5. errors: DIR does not exist; --upper without --work.
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

RUNTIME=$(command -v runc || true) # crun refuses this host's hybrid cgroups

start_registry
build_test_image
bash "$INTEG_DIR/mkimage.sh" --minimal --repo test/small --push "$REGISTRY" "$T/small" >/dev/null
REF=$REGISTRY/test/img:gzip
CACHE=$T/cache

# private DIR: the documented private dir of a rootfs at DIR (which exists)
private() {
	printf '/run/soci-fuse/rootfs/%s' "$(printf '%s' "$(readlink -f "$1")" | sha256sum | cut -d' ' -f1)"
}

fstype_is() {
	local got
	got=$(findmnt -n -o FSTYPE --mountpoint "$2" | tail -n 1) || got=none
	[ "$got" = "$1" ] || { echo "$2: fstype '$got', want '$1'" >&2; return 1; }
}

output_is() {
	local want=$1 got
	shift
	got=$("$@" 2>&1) || { echo "exit $?: $got" >&2; return 1; }
	[ "$got" = "$want" ] || { printf 'got:  %q\nwant: %q\n' "$got" "$want" >&2; return 1; }
}

write_fails_erofs() {
	local err
	if err=$(touch "$1" 2>&1); then
		echo "writing $1 succeeded" >&2
		return 1
	fi
	grep -q 'Read-only file system' <<<"$err" || { echo "$err" >&2; return 1; }
}

nothing_left() {
	local dir=$1 priv=$2 left
	left=$(mounts_below "$dir")
	[ -z "$left" ] || { echo "still mounted below $dir: $left" >&2; return 1; }
	left=$(grep -F " $priv" /proc/mounts || true)
	[ -z "$left" ] || { echo "still mounted: $left" >&2; return 1; }
	[ ! -e "$priv" ] || { echo "$priv still exists" >&2; return 1; }
}

run_bundle() {
	local b=$T/bundle
	rm -rf "$b"
	mkdir -p "$b" "$T/runtime-state"
	(cd "$b" && "$RUNTIME" spec) || return 1
	python3 - "$b/config.json" "$T/rootfs" <<'PY' || return 1
import json, sys
path, root = sys.argv[1], sys.argv[2]
c = json.load(open(path))
c["root"] = {"path": root, "readonly": True}
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/busybox", "echo", "hello from the runtime"]
json.dump(c, open(path, "w"), indent=1)
PY
	timeout 60 "$RUNTIME" --root "$T/runtime-state" run --bundle "$b" "sf-rootfs-$$" </dev/null 2>&1
}

# ---------------------------------------------------------------- read-only
ROOT=$T/rootfs
mkdir -p "$ROOT"
PRIV=$(private "$ROOT")
EXTRA_TMP+=("$PRIV")	# cleanup unmounts and removes it if a check fails
if timeout 120 "$SOCI_FUSE" rootfs --cache "$CACHE" "$REF" "$ROOT" 2>"$T/err"; then
	pass "ro: rootfs returned"
	check "ro: overlay at DIR" fstype_is overlay "$ROOT"
	check "ro: FUSE layers at the private dir" fstype_is fuse.soci-fuse "$PRIV/mnt"
	check "ro: writing fails with EROFS" write_fails_erofs "$ROOT/new-file"
	check "ro: chroot bash runs" output_is hi timeout 60 chroot "$ROOT" /usr/bin/bash -c 'echo hi'
	check "ro: layer 1's view" output_is "layer 1 was here" cat "$ROOT/layer1-marker"
	if [ -n "$RUNTIME" ]; then
		out=$(run_bundle) && rc=0 || rc=$?
		check "ro: runc runs a bundle on the rootfs (exit $rc: $out)" \
			test "$rc:$out" = "0:hello from the runtime"
	else
		fail "ro: runc is not installed (contrib/quickstart.sh installs it)"
	fi
	check "ro: soci-fuse umount DIR" timeout 60 "$SOCI_FUSE" umount "$ROOT"
	check "ro: nothing left mounted, private dir gone" nothing_left "$ROOT" "$PRIV"
else
	fail "ro: soci-fuse rootfs: $(cat "$T/err")"
fi

# ---------------------------------------------------------------- read-write
mkdir -p "$T/upper" "$T/work"
if timeout 120 "$SOCI_FUSE" rootfs --cache "$CACHE" --upper "$T/upper" --work "$T/work" \
	"$REF" "$ROOT" 2>"$T/err"; then
	pass "rw: rootfs returned"
	check "rw: write a file" bash -c "echo written >'$ROOT/etc/new-file'"
	check "rw: it is in upper" output_is written cat "$T/upper/etc/new-file"
	check "rw: chroot sees it" output_is written timeout 60 chroot "$ROOT" /bin/busybox cat /etc/new-file
	if [ -n "$RUNTIME" ]; then
		out=$(run_bundle) && rc=0 || rc=$?
		check "rw: runc runs a bundle on the rootfs (exit $rc: $out)" \
			test "$rc:$out" = "0:hello from the runtime"
	else
		fail "rw: runc is not installed (contrib/quickstart.sh installs it)"
	fi
	check "rw: soci-fuse umount DIR" timeout 60 "$SOCI_FUSE" umount "$ROOT"
	check "rw: nothing left mounted, private dir gone" nothing_left "$ROOT" "$PRIV"
	check "rw: upper kept" test -f "$T/upper/etc/new-file"
else
	fail "rw: soci-fuse rootfs: $(cat "$T/err")"
fi

# ---------------------------------------------------------------- one layer
ONE=$T/rootfs-one
mkdir -p "$ONE"
PRIV1=$(private "$ONE")
EXTRA_TMP+=("$PRIV1")
if timeout 120 "$SOCI_FUSE" rootfs --cache "$CACHE" "$REGISTRY/test/small:gzip" "$ONE" 2>"$T/err"; then
	pass "one layer, ro: rootfs returned"
	check "one layer, ro: overlay at DIR" fstype_is overlay "$ONE"
	check "one layer, ro: has the layer's files" test -n "$(ls -A "$ONE")"
	check "one layer, ro: soci-fuse umount DIR" timeout 60 "$SOCI_FUSE" umount "$ONE"
	check "one layer, ro: nothing left" nothing_left "$ONE" "$PRIV1"
else
	fail "one layer, ro: soci-fuse rootfs: $(cat "$T/err")"
fi

# ---------------------------------------------------------------- many layers
# 64 layers, each adding /layers/<i> and replacing /top.  Absolute lowerdir
# paths (/run/soci-fuse/rootfs/<64 hex>/mnt/layers/<i>, ~100 bytes each)
# would make 6.5 KB of overlay mount data, over the one page (4096 bytes)
# mount(2) passes.
MANY=64
python3 - "$T/many" "$MANY" <<'EOF'
import os, sys
base, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    layer = os.path.join(base, "l%03d" % i)
    os.makedirs(os.path.join(layer, "layers"), mode=0o755)
    os.chmod(layer, 0o755)
    with open(os.path.join(layer, "layers", str(i)), "w") as f:
        f.write("layer %d\n" % i)
    with open(os.path.join(layer, "top"), "w") as f:
        f.write("from layer %d\n" % i)
EOF
python3 "$INTEG_DIR/mkimage.py" --no-index --no-zstd "$T/many/out" "$T/many"/l* >/dev/null
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$T/many/out/layout:gzip" \
	"docker://$REGISTRY/test/many:gzip"
MROOT=$T/rootfs-many
mkdir -p "$MROOT"
PRIVM=$(private "$MROOT")
EXTRA_TMP+=("$PRIVM")
if timeout 120 "$SOCI_FUSE" rootfs --cache "$CACHE" "$REGISTRY/test/many:gzip" "$MROOT" 2>"$T/err"; then
	pass "$MANY layers, ro: rootfs returned"
	check "$MANY layers, ro: overlay at DIR" fstype_is overlay "$MROOT"
	check "$MANY layers, ro: the top layer's file wins" \
		output_is "from layer $((MANY - 1))" cat "$MROOT/top"
	check "$MANY layers, ro: every layer shows" \
		test "$(find "$MROOT/layers" -mindepth 1 -maxdepth 1 | wc -l)" = "$MANY"
	check "$MANY layers, ro: the bottom layer's file reads" output_is "layer 0" cat "$MROOT/layers/0"
	check "$MANY layers, ro: soci-fuse status DIR knows it" \
		bash -c "timeout 60 '$SOCI_FUSE' status '$MROOT' | grep -q '\"complete\"'"
	check "$MANY layers, ro: soci-fuse umount DIR" timeout 60 "$SOCI_FUSE" umount "$MROOT"
	check "$MANY layers, ro: nothing left" nothing_left "$MROOT" "$PRIVM"
else
	fail "$MANY layers, ro: soci-fuse rootfs: $(cat "$T/err")"
fi

# ---------------------------------------------------------------- errors
# expect_error DESC MENTION CMD...: fails, one stderr line naming MENTION,
# no mount left below $T or in /run/soci-fuse/rootfs.
expect_error() {
	local desc=$1 mention=$2 rc lines before after
	shift 2
	before=$(mounts_below /run/soci-fuse; mounts_below "$T")
	timeout 60 "$@" >/dev/null 2>"$T/err" && rc=0 || rc=$?
	after=$(mounts_below /run/soci-fuse; mounts_below "$T")
	lines=$(grep -c . "$T/err" || true)
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ "$lines" = 1 ] &&
		grep -qF -- "$mention" "$T/err" && [ "$before" = "$after" ]; then
		pass "error: $desc"
	else
		fail "error: $desc (exit $rc, $lines lines: $(cat "$T/err"))"
	fi
}
expect_error "DIR does not exist" "$T/no-such-dir" \
	"$SOCI_FUSE" rootfs --cache "$CACHE" "$REF" "$T/no-such-dir"
expect_error "--upper without --work" "--work" \
	"$SOCI_FUSE" rootfs --cache "$CACHE" --upper "$T/upper" "$REF" "$ROOT"
expect_error "unknown image" "nope" \
	"$SOCI_FUSE" rootfs --cache "$CACHE" "$REGISTRY/test/nope:latest" "$ROOT"
check "error: no private dir left for DIR" test ! -e "$PRIV"

summary
