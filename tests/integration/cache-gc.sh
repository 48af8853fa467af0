#!/bin/bash
# cache-gc.sh - `soci-fuse cache ls` and `soci-fuse cache gc`.
#
# Images: mkstream.py's tags slow, blobflip and midflip (not corrupted
# here: three valid images; slow and blobflip share their gzip base layer,
# midflip has an uncompressed base of its own), one cache.
#   - ls lists every layer: complete, its size on disk, last use, and "in
#     use" exactly for the layers of a live mount;
#   - partial pulls (tmp/<hex>/) nobody pulls are removed by gc; one whose
#     lock is held (a pull in progress, here `flock` on locks/<hex>.lock)
#     is kept;
#   - what a killed gc left (tmp/gc.<hex>.<dead pid>/) is listed as
#     "removing" and removed by the next gc; one a live gc holds is kept;
#     a stale temporary file under images/ is removed;
#   - gc lets go of a layer's use lock right after renaming it out of
#     layers/: the lock is free while the layer is still being deleted;
#   - gc --max-size 0 removes every layer not in use and none in use: the
#     live mount still serves its files byte-exact afterwards;
#   - least recently used first: with last-use times set explicitly (the
#     mtime of locks/<hex>.use, which a mount sets), gc --max-size just
#     below the total removes only the oldest layer;
#   - a gc'ed image mounts again and is byte-exact (pulled anew);
#   - bad arguments: a clear error, exit 2.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

start_registry
IMG=$T/img
python3 "$INTEG_DIR/mkstream.py" --filler-mib 2 "$IMG" >/dev/null || die "mkstream.py failed"
for tag in slow blobflip midflip; do
	skopeo copy -q --dest-tls-verify=false --preserve-digests \
		"oci:$IMG/layout:$tag" "docker://$REGISTRY/test/stream:$tag" || die "skopeo could not push $tag"
done
info() { python3 -c 'import json, sys; i = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$IMG/stream.json" "$1"; }
hex() { local d; d=$(info "i['tags']['$1']['layers'][$2]"); echo "${d#sha256:}"; }
BASE=$(hex slow 0)
SLOW1=$(hex slow 1)
FLIP1=$(hex blobflip 1)
MBASE=$(hex midflip 0)
MID1=$(hex midflip 1)
[ "$BASE" = "$(hex blobflip 0)" ] || die "slow and blobflip do not share layer 0"

CACHE=$T/cache
REF_SLOW=$(podman_reference "$REGISTRY/test/stream:slow")

sfc() { timeout 60 "$SOCI_FUSE" cache "$@" --cache "$CACHE"; }
# ls_row HEX: the `cache ls` line of a layer
ls_row() { sfc ls | awk -v d="sha256:$1" '$1 == d'; }
ls_has() { # HEX STATE INUSE
	local row
	row=$(ls_row "$1")
	[ -n "$row" ] || { echo "sha256:$1 not listed: $(sfc ls)" >&2; return 1; }
	[ "$(awk '{ print $3 }' <<<"$row")" = "$2" ] || { echo "state: $row" >&2; return 1; }
	[ "$(awk '{ print $NF }' <<<"$row")" = "$3" ] || { echo "in use: $row" >&2; return 1; }
}
ls_absent() { [ -z "$(ls_row "$1")" ] || { echo "still listed: $(ls_row "$1")" >&2; return 1; }; }
disk_of() { ls_row "$1" | awk '{ print $2 }'; }

merged_ok() { # MNT REF
	local m
	m=$(overlay_mount "$(cat "$1/lowerdir")" "$T/ov-$RANDOM") || return 1
	tree_compare --quiet "$m" "$2" && rc=0 || rc=$?
	umount "$m"
	return $rc
}

# ---- three images, one cache; slow stays mounted
for tag in slow blobflip midflip; do
	sf_mount --cache "$CACHE" "$REGISTRY/test/stream:$tag" "$T/mnt-$tag" || die "mount $tag failed"
	wait_complete "$T/mnt-$tag" 120 || die "$tag did not complete"
done
sf_umount "$T/mnt-blobflip"
sf_umount "$T/mnt-midflip"
check "ls: shared base layer complete, in use (slow is mounted)" ls_has "$BASE" complete yes
check "ls: slow's layer 1 complete, in use" ls_has "$SLOW1" complete yes
check "ls: blobflip's layer 1 complete, not in use" ls_has "$FLIP1" complete no
check "ls: midflip's layers complete, not in use" ls_has "$MID1" complete no
check "ls: 5 layers listed" test "$(sfc ls | grep -c '^sha256:')" = 5
check "ls: size on disk of blobflip's layer 1 is at least its 1 MiB file" \
	test "$(disk_of "$FLIP1")" -ge 1048576
has_time() { [[ "$(ls_row "$1")" =~ [0-9]{4}-[0-9]{2}-[0-9]{2}T ]]; }
check "ls: a last-use time is shown" has_time "$FLIP1"

# ---- partial pulls: one abandoned, one being pulled (its lock held)
P1=$(printf 'a%.0s' {1..64})
P2=$(printf 'b%.0s' {1..64})
mkdir -p "$CACHE/tmp/$P1" "$CACHE/tmp/$P2"
head -c 100000 /dev/urandom >"$CACHE/tmp/$P1/blob"
head -c 100000 /dev/urandom >"$CACHE/tmp/$P2/blob"
# one process holding the lock, like a pulling soci-fuse (flock(1) would
# leave its child holding it after a kill)
python3 -c 'import fcntl, sys, time; f = open(sys.argv[1], "w"); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(600)' \
	"$CACHE/locks/$P2.lock" &
HOLDER=$!
BG_PIDS+=($HOLDER)
for ((i = 0; i < 50; i++)); do ls_has "$P2" partial yes 2>/dev/null && break; sleep 0.1; done
check "ls: abandoned partial pull listed, not in use" ls_has "$P1" partial no
check "ls: partial pull whose lock is held is in use" ls_has "$P2" partial yes
check "gc (max size large): succeeds" sfc gc --max-size 100G
check "gc: abandoned partial pull removed" test ! -e "$CACHE/tmp/$P1"
check "gc: partial pull being pulled kept" test -f "$CACHE/tmp/$P2/blob"
check "gc: complete layers kept under a large max size" test -d "$CACHE/layers/$FLIP1" -a -d "$CACHE/layers/$MID1"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null || true

# ---- what a killed gc left (tmp/gc.<hex>.<pid>/, its pid dead), one a
# live gc is deleting (it holds a flock on the directory), and a stale
# temporary file of a saved reference (images/*.json.tmp.*, unlocked, old)
DEADPID=$(python3 -c '
import os
for p in range(int(open("/proc/sys/kernel/pid_max").read()) - 1, 1, -1):
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        print(p)
        break
    except PermissionError:
        pass')
G1=$(printf 'c%.0s' {1..64})
G2=$(printf 'd%.0s' {1..64})
GRAVE1=$CACHE/tmp/gc.$G1.$DEADPID
GRAVE2=$CACHE/tmp/gc.$G2.$$
mkdir -p "$GRAVE1/sub" "$GRAVE2"
head -c 100000 /dev/urandom >"$GRAVE1/sub/data"
head -c 100000 /dev/urandom >"$GRAVE2/data"
python3 -c 'import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); time.sleep(600)' \
	"$GRAVE2" &
GHOLDER=$!
BG_PIDS+=($GHOLDER)
STALE_IMG=$CACHE/images/$G1.json.tmp.Zz9Yy8
echo '{"ref": "half writ' >"$STALE_IMG"
touch -d '1 hour ago' "$STALE_IMG"
for ((i = 0; i < 50; i++)); do ls_has "$G2" removing yes 2>/dev/null && break; sleep 0.1; done
check "ls: what a killed gc left is listed as removing, not in use" ls_has "$G1" removing no
check "ls: what a live gc is deleting is listed as removing, in use" ls_has "$G2" removing yes
check "gc: succeeds" sfc gc --max-size 100G
check "gc: removed what the killed gc left" test ! -e "$GRAVE1"
check "gc: kept what a live gc is deleting" test -f "$GRAVE2/data"
check "gc: removed the stale temporary file under images/" test ! -e "$STALE_IMG"
check "gc: complete layers still kept under a large max size" test -d "$CACHE/layers/$FLIP1"
kill "$GHOLDER"
wait "$GHOLDER" 2>/dev/null || true
check "gc: ... and once that gc is gone, removes it too" sfc gc --max-size 100G
check "gc: ... (gone)" test ! -e "$GRAVE2"

# ---- max size 0: everything not in use goes, what slow uses stays.
# gc lets go of a layer's use lock right after renaming it out of layers/,
# so a mount of it need not wait for the deletion: with 20000 files in
# blobflip's layer 1 the deletion takes a while, and meanwhile the use
# lock must be free (taken shared while tmp/gc.<hex>.* still exists).
python3 -c 'import os, sys
os.makedirs(sys.argv[1])
for i in range(20000):
    open("%s/%05d" % (sys.argv[1], i), "w").close()' "$CACHE/layers/$FLIP1/junk"
use_free_during_delete() {
	python3 - "$CACHE" "$FLIP1" "$SOCI_FUSE" <<'EOF'
import fcntl, os, subprocess, sys
cache, hexd, exe = sys.argv[1:]
use = open("%s/locks/%s.use" % (cache, hexd))
gc = subprocess.Popen(["timeout", "60", exe, "cache", "gc", "--max-size", "0", "--cache", cache],
                      stdout=subprocess.DEVNULL)
grave = lambda: any(n.startswith("gc.%s." % hexd) for n in os.listdir(cache + "/tmp"))
seen = False
while gc.poll() is None and not seen:
    if not grave():  # (probing earlier would make gc find the layer in use)
        continue
    try:
        fcntl.flock(use, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        continue
    seen = grave()  # holding the use lock, and the layer is still being deleted
    fcntl.flock(use, fcntl.LOCK_UN)
rc = gc.wait()
if rc != 0 or not seen:
    print("gc exit %d; use lock free while the layer was being deleted: %s" % (rc, seen),
          file=sys.stderr)
    sys.exit(1)
EOF
}
check "gc --max-size 0: succeeds, and the use lock is free while the layer is deleted" \
	use_free_during_delete
check "gc: layers not in use removed" ls_absent "$FLIP1"
check "gc: ... midflip's too" test ! -e "$CACHE/layers/$MID1" -a ! -e "$CACHE/layers/$MBASE"
check "gc: partial pull no longer locked is removed now" test ! -e "$CACHE/tmp/$P2"
check "gc: layers in use by the live mount kept" test -d "$CACHE/layers/$BASE" -a -d "$CACHE/layers/$SLOW1"
check "gc: nothing left over under tmp/" test -z "$(ls -A "$CACHE/tmp")"
check "live mount still byte-exact after gc" merged_ok "$T/mnt-slow" "$REF_SLOW"
sf_umount "$T/mnt-slow"

# ---- LRU order: bring all back, then set last-use times explicitly
for tag in blobflip midflip; do
	sf_mount --cache "$CACHE" "$REGISTRY/test/stream:$tag" "$T/mnt-$tag" || die "mount $tag failed"
	wait_complete "$T/mnt-$tag" 120 || die "$tag did not complete"
	sf_umount "$T/mnt-$tag"
done
touch -d 2020-01-01 "$CACHE/locks/$MBASE.use"
touch -d 2021-01-01 "$CACHE/locks/$BASE.use"
touch -d 2022-01-01 "$CACHE/locks/$SLOW1.use"
touch -d 2023-01-01 "$CACHE/locks/$MID1.use"
touch -d 2024-01-01 "$CACHE/locks/$FLIP1.use"
check "ls: least recently used first" test "$(sfc ls | awk 'NR > 1 { print $1 }' | tr '\n' ' ')" = \
	"sha256:$MBASE sha256:$BASE sha256:$SLOW1 sha256:$MID1 sha256:$FLIP1 "
total=$(sfc ls | awk 'NR > 1 { s += $2 } END { print s }')
limit=$((total - $(disk_of "$MBASE") - $(disk_of "$BASE") + 1))
check "gc --max-size (total - two oldest + 1): succeeds" sfc gc --max-size "$limit"
check "gc: the two least recently used layers removed" ls_absent "$MBASE"
check "gc: ... (second oldest)" ls_absent "$BASE"
check "gc: the three newer ones kept" bash -c "[ -d '$CACHE/layers/$SLOW1' ] && [ -d '$CACHE/layers/$MID1' ] && [ -d '$CACHE/layers/$FLIP1' ]"

# ---- a gc'ed image mounts again, byte-exact
check "slow mounts again after gc" sf_mount --cache "$CACHE" "$REGISTRY/test/stream:slow" "$T/mnt-slow"
check "... completes" wait_complete "$T/mnt-slow" 120
check "... byte-exact" merged_ok "$T/mnt-slow" "$REF_SLOW"
sf_umount "$T/mnt-slow"

# ---- bad arguments
errs() { local out rc; out=$("$SOCI_FUSE" "$@" 2>&1) && rc=0 || rc=$?; [ $rc = 2 ] || { echo "exit $rc: $out" >&2; return 1; }; }
check "cache without a subcommand: exit 2" errs cache
check "cache frob: exit 2" errs cache frob
check "cache gc --max-size lots: exit 2" errs cache gc --max-size lots --cache "$CACHE"
check "cache ls --max-size 1: exit 2" errs cache ls --max-size 1 --cache "$CACHE"

summary
