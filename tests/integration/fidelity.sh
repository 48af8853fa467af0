#!/bin/bash
# fidelity.sh - every byte of every layer of the fidelity corpus as podman
# (or, where podman refuses the input, GNU tar) unpacks it.
#
# mkcorpus.py builds and pushes the corpus (see its header for what the six
# layers hold): test/fidelity:{oci,docker,index} and test/fidelity-sparse:oci.
# For each of the three fidelity images: soci-fuse mount (own cache), wait
# until complete, stack an overlay on <mnt>/lowerdir and compare the merged
# tree entry by entry with podman's unpack of the same ref (path, type,
# mode, owner, size, content hash, link target, device numbers, xattrs but
# overlay's own, mtime of non-directories with nanoseconds, hard-link
# groups).  test/fidelity-sparse holds names given twice in a layer and GNU
# old sparse ('S'), both of which podman refuses, and files over 8 GiB: its layer dir is compared with GNU tar's
# extraction of the same tar; the huge files are hashed through
# SEEK_DATA/SEEK_HOLE (treediff --sparse-above), never read whole.
#
# Before that, the harness checks itself: podman must accept the main image
# and refuse the sparse one (else the oracle choice is stale), and the
# expected entries (whiteouts applied, later duplicate winning...) must be
# in podman's tree, so a FAIL below points at soci-fuse.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

start_registry
python3 "$INTEG_DIR/mkcorpus.py" --push "$REGISTRY" "$T/corpus" || die "mkcorpus.py failed"
HUGE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["huge_size"])' \
	"$T/corpus/corpus.json")

# mtimes with nanoseconds; treediff ignores trusted.overlay.* (bookkeeping)
CMP=(--quiet)

# ---------------------------------------------------------------- harness
REF_OCI=$(podman_reference "$REGISTRY/test/fidelity:oci")
harness() {
	local r=$REF_OCI
	[ "$(cat "$r/dup/file")" = "L1 overrides L0" ] && [ "$(cat "$r/gnu/mode000")" = "" ] &&
		[ ! -e "$r/etc/hostname" ] && [ ! -e "$r/whdir" ] &&
		[ "$(ls "$r/opq")" = new ] &&
		[ "$(cat "$r/swap/x")" = "a file again, written by tar --format=v7" ] &&
		[ -f "$r/swap/y/z" ] &&
		[ -f "$r/implicit/a/b/c.txt" ] && [ -c "$r/dev/null" ] &&
		[ "$(stat -c %s "$r/sparse-v01/v01")" = 3145828 ] &&
		[ "$(getfattr --absolute-names --only-values -n user.foo "$r/xattr/user")" = bar ]
}
check "harness: podman's tree of :oci has the corpus's expected entries" harness
if PODMAN_DIR=$T/podman-sparse podman_cmd pull -q --tls-verify=false \
	"$REGISTRY/test/fidelity-sparse:oci" >"$T/podman-sparse.log" 2>&1; then
	fail "harness: podman accepts GNU old sparse now; make it the oracle of fidelity-sparse"
else
	pass "harness: podman refuses fidelity-sparse: $(grep -o 'processing tar file.*' \
		"$T/podman-sparse.log" | head -n 1 || true)"
fi

# ---------------------------------------------------------------- podman oracle
# compare_image TAG: mount, overlay, compare with podman.
compare_image() {
	local tag=$1 ref=$REGISTRY/test/fidelity:$1 mnt=$T/mnt-$1 podman merged n
	if [ "$tag" = oci ]; then podman=$REF_OCI; else podman=$(podman_reference "$ref"); fi
	if ! sf_mount --cache "$T/cache-$tag" "$ref" "$mnt"; then
		fail "$tag: soci-fuse mount"
		return
	fi
	check "$tag: all layers complete" wait_complete "$mnt" 120
	n=$(ls "$mnt/layers" | wc -l)
	check "$tag: 6 layers (empty layers included), got $n" test "$n" = 6
	if merged=$(overlay_mount "$(cat "$mnt/lowerdir")" "$T/ov-$tag"); then
		check "$tag: overlay of soci-fuse layers == podman unpack" \
			tree_compare "${CMP[@]}" "$merged" "$podman"
		umount "$merged"
	else
		fail "$tag: overlay mount of $(cat "$mnt/lowerdir")"
	fi
	[ "$tag" != oci ] || check "$tag: SEEK_DATA/SEEK_HOLE on a file, an empty file, lowerdir" \
		python3 - "$mnt" <<'EOF'
import errno, os, sys
m = sys.argv[1]
def seek(p, off, whence):
    fd = os.open(p, os.O_RDONLY)
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        return -e.errno
    finally:
        os.close(fd)
f, lower = m + "/layers/0/etc/passwd", m + "/lowerdir"
size, lsize = os.stat(f).st_size, os.stat(lower).st_size
ok = (seek(f, 0, os.SEEK_DATA) == 0 and seek(f, 3, os.SEEK_HOLE) == size and
      seek(f, size, os.SEEK_DATA) == -errno.ENXIO and
      seek(m + "/layers/1/gnu/mode000", 0, os.SEEK_DATA) == -errno.ENXIO and
      seek(lower, 1, os.SEEK_DATA) == 1 and seek(lower, 0, os.SEEK_HOLE) == lsize)
sys.exit(0 if ok else 1)
EOF
	check "$tag: soci-fuse umount" sf_umount "$mnt"
}
for tag in oci docker index; do
	compare_image "$tag"
done

# ---------------------------------------------------------------- GNU tar oracle
mkdir -p "$T/gnutar"
tar -xpf "$T/corpus/layers/SPARSE.tar" --numeric-owner -C "$T/gnutar" ||
	die "GNU tar cannot extract SPARSE.tar"
check "harness: GNU tar made a sparse $HUGE-byte file" \
	test "$(stat -c %s "$T/gnutar/sparse/pax10-huge")" = "$HUGE" -a \
	"$(du -k "$T/gnutar/sparse/pax10-huge" | cut -f1)" -lt 10240
MNT=$T/mnt-sparse
if sf_mount --cache "$T/cache-sparse" "$REGISTRY/test/fidelity-sparse:oci" "$MNT"; then
	check "sparse: layer complete" wait_complete "$MNT" 120
	check "sparse: layers/0 == GNU tar's extraction (huge files via SEEK_DATA)" \
		tree_compare "${CMP[@]}" --sparse-above $((64 << 20)) "$MNT/layers/0" "$T/gnutar"
	check "sparse: the later of two entries wins" \
		test "$(cat "$MNT/layers/0/dup/file")" = "second, the one that counts"
	check "sparse: the tail of a huge file reads back" \
		test "$(tail -c 10 "$MNT/layers/0/sparse/oldgnu-huge")" = "last bytes"
	check "sparse: SEEK_HOLE through FUSE finds the hole after the first data" python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
sys.exit(0 if 0 < os.lseek(fd, 0, os.SEEK_HOLE) < (1 << 20) else 1)' "$MNT/layers/0/sparse/pax10-huge"
	# four files of 9 GiB in the layer: the cache's data file stays sparse
	check "sparse: the cache holds the layer in under 64 MiB" \
		test "$(du -sk "$T/cache-sparse/layers" | cut -f1)" -lt 65536
	check "sparse: soci-fuse umount" sf_umount "$MNT"
else
	fail "sparse: soci-fuse mount"
fi

summary
