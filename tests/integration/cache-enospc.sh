#!/bin/bash
# cache-enospc.sh - a full disk and a read-only cache dir.
#
# The cache lives on a small tmpfs (ENOSPC_MIB, default 6 MiB) and the
# image's layer 1 (mkstream.py "slow", 8 MiB of mostly random bytes, gzip:
# blob spool + data need ~16 MiB) does not fit:
#   - layer 1 fails with an error naming the cache dir and the cause (no
#     space left); the image is not complete; requests on layer 1 get EIO
#     (never partial data); layer 0 (small) is complete and served, or (the
#     pulls run in parallel) failed the same way;
#   - nothing under layers/ is incomplete: every layer dir there has
#     meta.json, index and data, and layer 1 is not there;
#   - after the tmpfs is made bigger, a new mount completes and its merged
#     tree equals podman's unpack.
# Then the tmpfs is remounted read-only:
#   - the complete image still mounts and is byte-exact (served from the
#     read-only cache);
#   - an image whose layers are not in the cache fails them with an error
#     naming the cache dir and "Read-only file system".
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"
ENOSPC_MIB=${ENOSPC_MIB:-6}

start_registry
IMG=$T/img
python3 "$INTEG_DIR/mkstream.py" --filler-mib 8 "$IMG" >/dev/null || die "mkstream.py failed"
for tag in slow midflip; do
	skopeo copy -q --dest-tls-verify=false --preserve-digests \
		"oci:$IMG/layout:$tag" "docker://$REGISTRY/test/stream:$tag" || die "skopeo could not push $tag"
done
REF=$(podman_reference "$REGISTRY/test/stream:slow")
L1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tags"]["slow"]["layers"][1])' "$IMG/stream.json")

FS=$T/cachefs
mkdir -p "$FS"
mount -t tmpfs -o "size=${ENOSPC_MIB}m,mode=755" tmpfs "$FS" || die "cannot mount a tmpfs at $FS"
CACHE=$FS/cache
MNT=$T/mnt

status_of() { # MNT I KEY
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][int(sys.argv[2])].get(sys.argv[3], ""))' "$1/status" "$2" "$3"
}
wait_layer() { # MNT I STATE...
	local i s want
	for ((i = 0; i < 1200; i++)); do
		s=$(status_of "$1" "$2" state 2>/dev/null || true)
		for want in "${@:3}"; do [ "$s" = "$want" ] && return 0; done
		sleep 0.1
	done
	echo "layer $2 is '$s'" >&2
	return 1
}
says() { grep -qiF -- "$1" <<<"$2" || { echo "the error is: $2" >&2; return 1; }; }
eio() { local out; out=$(timeout 30 "$@" 2>&1 >/dev/null) && { echo "succeeded" >&2; return 1; }; says "Input/output error" "$out"; }
layers_sound() { # every dir under layers/ is a whole layer, layer 1 absent
	local d
	for d in "$CACHE"/layers/*/; do
		[ -d "$d" ] || continue
		[ -f "$d/meta.json" ] && [ -f "$d/index" ] && [ -f "$d/data" ] ||
			{ echo "incomplete: $d" >&2; return 1; }
	done
	[ ! -e "$CACHE/layers/${L1#sha256:}" ] || { echo "layer 1 is under layers/" >&2; return 1; }
}
merged_ok() {
	local m rc
	m=$(overlay_mount "$(cat "$1/lowerdir")" "$T/ov-$RANDOM") || return 1
	tree_compare --quiet "$m" "$REF" && rc=0 || rc=$?
	umount "$m"
	return $rc
}

# ---- full disk
check "mount with the cache on a ${ENOSPC_MIB} MiB tmpfs" sf_mount --cache "$CACHE" "$REGISTRY/test/stream:slow" "$MNT"
check "layer 1 fails" wait_layer "$MNT" 1 failed
err=$(status_of "$MNT" 1 error)
log "layer 1 error: $err"
check "the error names the cache dir" says "cache dir $CACHE" "$err"
check "the error says no space is left" says "No space left on device" "$err"
check "the error names the layer" says "$L1" "$err"
check "the image is not complete" python3 -c 'import json,sys; assert not json.load(open(sys.argv[1]))["complete"]' "$MNT/status"
# layer 0 is small, but the pulls run in parallel: it may have hit the full
# disk too.  Either it is complete and served, or it failed the same way.
check "layer 0 complete or failed" wait_layer "$MNT" 0 complete failed
if [ "$(status_of "$MNT" 0 state)" = complete ]; then
	check "layer 0 served" test "$(cat "$MNT/layers/0/base/hello")" = "hello from layer 0"
else
	err0=$(status_of "$MNT" 0 error)
	log "layer 0 failed too: $err0"
	check "layer 0 failed naming the cache dir" says "cache dir $CACHE" "$err0"
	check "layer 0: read gets EIO" eio cat "$MNT/layers/0/base/hello"
fi
check "read of a layer 1 file: EIO" eio cat "$MNT/layers/1/d/early-0"
check "read of a big layer 1 file: EIO, not partial data" eio cat "$MNT/layers/1/d/filler-a"
check "ls of layer 1: EIO" eio ls "$MNT/layers/1"
check "nothing incomplete under layers/, layer 1 not there" layers_sound
check "umount" sf_umount "$MNT"

# ---- space freed
mount -o remount,size=64m "$FS" || die "cannot grow the tmpfs"
check "mount after the disk grew" sf_mount --cache "$CACHE" "$REGISTRY/test/stream:slow" "$MNT"
check "complete" wait_complete "$MNT" 120
log "after the disk grew: layer 1 downloaded $(status_of "$MNT" 1 downloaded), reused $(status_of "$MNT" 1 reused)"
check "merged tree == podman's" merged_ok "$MNT"
check "umount" sf_umount "$MNT"
check "layer 1 now under layers/" test -f "$CACHE/layers/${L1#sha256:}/meta.json"

# ---- read-only cache
mount -o remount,ro "$FS" || die "cannot make the tmpfs read-only"
check "complete image mounts from a read-only cache" sf_mount --cache "$CACHE" "$REGISTRY/test/stream:slow" "$MNT"
check "... complete" wait_complete "$MNT" 60
check "... byte-exact" merged_ok "$MNT"
check "umount" sf_umount "$MNT"
out=$(sf_mount --cache "$CACHE" "$REGISTRY/test/stream:midflip" "$T/mnt-ro" 2>&1) && rc=0 || rc=$?
if [ $rc != 0 ]; then
	check "new image on a read-only cache: mount fails naming the cache dir" says "$CACHE" "$out"
	check "... and read-only" says "Read-only file system" "$out"
else
	check "new image on a read-only cache: a layer fails" wait_layer "$T/mnt-ro" 1 failed
	err=$(status_of "$T/mnt-ro" 1 error)
	check "... the error names the cache dir" says "cache dir $CACHE" "$err"
	check "... and says read-only" says "Read-only file system" "$err"
	check "... reads get EIO" eio ls "$T/mnt-ro/layers/1"
	check "umount" sf_umount "$T/mnt-ro"
fi
umount "$FS" || true
summary
