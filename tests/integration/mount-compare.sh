#!/bin/bash
# mount-compare.sh - mount the test image with soci-fuse and compare it with
# what podman makes of the same image.
#
# For each variant (OCI gzip, OCI zstd, Docker schema 2, OCI index with a
# decoy platform first):
#   1. online:  soci-fuse mount --cache DIR; check <mnt>/layers = {0,1},
#      <mnt>/lowerdir, <mnt>/status; each layer dir against the staged layer
#      (whiteouts as char 0/0, opaque dir xattr); stack an overlay
#      (upper+work) on lowerdir and compare the merged tree with podman's
#      `podman image mount` of the same ref; run bash and busybox in it with
#      chroot; umount; nothing left mounted, the daemon exits.
#   2. cached:  the registry is stopped, the same image is mounted again with
#      the same cache (must work without network) and checked the same way.
#
# Before any of that the harness checks itself: podman's tree must equal the
# overlay of the staged layers (mkimage.sh), so a FAIL below points at
# soci-fuse, not at the test image or podman.
#
#   mount-compare.sh             the test (automake: SOCI_FUSE, TOP_SRCDIR)
#   mount-compare.sh --selftest  only the harness part; needs no soci-fuse
#   VARIANTS="gzip zstd" mount-compare.sh   a subset
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

SELFTEST=0
[ "${1:-}" = --selftest ] && SELFTEST=1
read -r -a VARIANTS <<<"${VARIANTS:-gzip zstd v2s2 index}"
if [ $SELFTEST = 0 ] && [ ! -x "$SOCI_FUSE" ]; then
	die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"
fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Options for the merged comparison with podman: directory mtimes too;
# pre-1970 mtimes as 0 because containers/storage clamps them (the exact
# value is checked per layer against the staged tree instead).
MERGED_CMP=(--dir-mtime --negative-mtime-as-epoch)
# Per-layer comparison with the staged layers: trusted.overlay.opaque is
# part of the contract there; whiteouts only need to be char 0/0.
LAYER_CMP=(--dir-mtime --overlay-xattrs --loose-whiteouts)

# ------------------------------------------------------------------ setup
t0=$(now)
start_registry
build_test_image
log "image built and pushed in $(since "$t0")s"
STAGE=$T/image/stage

EXPECTED=$(overlay_mount "$STAGE/l1:$STAGE/l0" "$T/expected") ||
	die "cannot mount overlay of the staged layers"

declare -A REF LAYERS
for v in "${VARIANTS[@]}"; do
	t0=$(now)
	REF[$v]=$(podman_reference "$REGISTRY/test/img:$v")
	log "podman reference for $v in $(since "$t0")s: ${REF[$v]}"
	LAYERS[$v]=$(manifest_layers "$REGISTRY/test/img:$v")
	check "harness: podman($v) == overlay of the staged layers" \
		tree_compare --quiet "${MERGED_CMP[@]}" "$EXPECTED" "${REF[$v]}"
done

if [ $SELFTEST = 1 ]; then
	# treediff must notice a perturbation: copy the expected tree, change
	# one byte of one file and one mode bit.
	cp -a "$EXPECTED" "$T/perturbed"
	printf 'X' | dd of="$T/perturbed/special/big/random-20mib" bs=1 seek=12345 conv=notrunc status=none
	touch -d '2022-02-22 22:22:22.222222222 UTC' "$T/perturbed/special/big/random-20mib"
	chmod u-s "$T/perturbed/special/perm/suid"
	out=$(tree_compare "${MERGED_CMP[@]}" "$EXPECTED" "$T/perturbed") && rc=0 || rc=$?
	check "selftest: treediff exits 1 on a perturbed copy" test "$rc" = 1
	check "selftest: treediff reports exactly the 2 changes" \
		grep -q '^treediff: .* 2 differences$' <<<"$out"
	printf '%s\n' "$out"
	check "selftest: layer dirs: staged l1 equals itself with layer options" \
		tree_compare --quiet "${LAYER_CMP[@]}" "$STAGE/l1" "$STAGE/l1"
	summary
	exit
fi

# ------------------------------------------------------------------ checks
# status_ok MNT VARIANT: status is JSON, one entry per manifest layer, same
# digests bottom first, no layer failed.
status_ok() {
	python3 - "$1/status" "${LAYERS[$2]}" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
want = sys.argv[2].split()
got = [l.get("digest") for l in doc.get("layers", [])]
assert got == want, "layer digests %s != manifest %s" % (got, want)
for l in doc["layers"]:
    assert l.get("state") in ("pending", "fetching", "complete", "failed"), l
    assert l["state"] != "failed", "layer failed: %s" % l
assert isinstance(doc.get("complete"), bool), "complete is not a bool"
EOF
}

status_complete() {
	python3 - "$1/status" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["complete"] is True and all(l["state"] == "complete" for l in doc["layers"]), doc
EOF
}

is_fuse_mount() {
	local fstype
	fstype=$(findmnt -n -o FSTYPE --mountpoint "$1") || return 1
	case $fstype in fuse | fuse.*) return 0 ;; *) echo "fstype is $fstype" >&2; return 1 ;; esac
}

lowerdir_ok() {
	local want=$1/layers/1:$1/layers/0 got
	got=$(cat "$1/lowerdir")
	[ "$got" = "$want" ] || { echo "lowerdir is '$got', want '$want'" >&2; return 1; }
}

whiteout_ok() {
	local got
	got=$(stat -c '%F %t,%T' "$1")
	[ "$got" = "character special file 0,0" ] || { echo "$1: $got" >&2; return 1; }
}

opaque_is() {
	local got
	got=$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$2" 2>/dev/null) || got=
	[ "$got" = "$1" ] || { echo "$2: trusted.overlay.opaque='$got', want '$1'" >&2; return 1; }
}

no_wh_names() {
	local found
	found=$(find "$1" -name '.wh.*' | head -n 5)
	[ -z "$found" ] || { echo "tar whiteout names visible: $found" >&2; return 1; }
}

output_is() {
	local want=$1 got
	shift
	got=$("$@" 2>&1) || { echo "exit $?: $got" >&2; return 1; }
	[ "$got" = "$want" ] || { printf 'got:  %q\nwant: %q\n' "$got" "$want" >&2; return 1; }
}

# ------------------------------------------------------------------ one run
# exercise VARIANT PHASE(online|cached)
exercise() {
	local v=$1 phase=$2
	local ref=$REGISTRY/test/img:$v mnt=$T/mnt-$v cache=$T/cache-$v
	local p="$v/$phase" err=$T/mount-$v-$phase.err t0 merged pids
	mkdir -p "$mnt"

	t0=$(now)
	if ! sf_mount --cache "$cache" "$ref" "$mnt" 2>"$err"; then
		fail "$p: soci-fuse mount $ref: $(tr '\n' ' ' <"$err")"
		return 0
	fi
	pass "$p: mount returned in $(since "$t0")s"
	pids=$(soci_fuse_pids "$mnt" | tr '\n' ' ')
	[ -n "$pids" ] || log "$p: no soci-fuse process with $mnt in its argv (cannot watch the daemon)"
	check "$p: a FUSE mount is live at the mount point" is_fuse_mount "$mnt"
	check "$p: ls layers = 0 1" output_is "0 1" bash -c "ls '$mnt/layers' | sort -n | xargs"
	log "$p: mount -> ls layers: $(since "$t0")s"
	check "$p: lowerdir = layers/1:layers/0 (absolute)" lowerdir_ok "$mnt"
	check "$p: status: valid, manifest's layer digests" status_ok "$mnt" "$v"

	# each layer on its own
	check "$p: layer 1: deleted file is a char 0/0 whiteout" whiteout_ok "$mnt/layers/1/special/del/file1"
	check "$p: layer 1: deleted dir is a char 0/0 whiteout" whiteout_ok "$mnt/layers/1/special/del/deldir"
	check "$p: layer 1: opaque dir has trusted.overlay.opaque=y" opaque_is y "$mnt/layers/1/special/opq"
	check "$p: layer 0: same dir is not opaque" opaque_is "" "$mnt/layers/0/special/opq"
	check "$p: no .wh.* names in the layer dirs" no_wh_names "$mnt/layers"
	if [ "$v" = index ]; then
		check "$p: index: the native platform was picked, not the decoy" \
			test ! -e "$mnt/layers/0/WRONG-PLATFORM"
	fi
	t0=$(now)
	check "$p: layer 0 == staged l0" tree_compare --quiet "${LAYER_CMP[@]}" "$STAGE/l0" "$mnt/layers/0"
	check "$p: layer 1 == staged l1" tree_compare --quiet "${LAYER_CMP[@]}" "$STAGE/l1" "$mnt/layers/1"
	log "$p: layer comparisons took $(since "$t0")s"

	# the overlay
	if merged=$(overlay_mount "$(cat "$mnt/lowerdir")" "$T/ov-$v-$phase"); then
		pass "$p: overlay mounted on lowerdir"
		check "$p: merged tree == podman's" tree_compare --quiet "${MERGED_CMP[@]}" "$merged" "${REF[$v]}"
		check "$p: chroot bash runs" output_is "hello from image" \
			timeout 60 chroot "$merged" /usr/bin/bash -c 'echo hello from image'
		check "$p: chroot busybox sees layer 1's view" \
			output_is "$(printf 'layer 1 was here\nn1 sub\ngone\nSOCI_FUSE_TEST_LAYER=1')" \
			timeout 60 chroot "$merged" /bin/busybox sh -c \
			'cat /layer1-marker; ls /special/opq | xargs; test -e /special/del/file1 || echo gone; grep ^SOCI_FUSE /etc/os-release'
		check "$p: umount overlay" umount "$merged"
	else
		fail "$p: mount -t overlay -o lowerdir=$(cat "$mnt/lowerdir")"
	fi

	# everything has been read: the status must say so
	check "$p: status complete" status_complete "$mnt"

	t0=$(now)
	check "$p: soci-fuse umount" sf_umount "$mnt"
	check "$p: nothing mounted at $mnt" bash -c "! mountpoint -q '$mnt'"
	# shellcheck disable=SC2086
	check "$p: daemon exited after umount" wait_gone 20 $pids
	log "$p: umount took $(since "$t0")s"
}

for v in "${VARIANTS[@]}"; do
	exercise "$v" online
done

# The registry goes away: everything must come from the cache.
stop_registry
check "registry is down" bash -c "! curl -fs -o /dev/null --max-time 2 http://$REGISTRY/v2/"
for v in "${VARIANTS[@]}"; do
	exercise "$v" cached
done

summary
