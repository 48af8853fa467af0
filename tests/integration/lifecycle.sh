#!/bin/bash
# lifecycle.sh - the daemon's end.
#   - SIGTERM of an idle, complete mount unmounts it and the daemon exits.
#   - SIGTERM and SIGINT in the middle of a slow pull (regproxy.py at
#     SLOW_RATE bytes/s per connection), with requests parked on entries
#     that have not arrived (a read of d/late-00, a stat of late-dir/f):
#     the parked requests end with EIO (bounded by `timeout`, so a hang
#     fails), the daemon exits and the mount is gone, CACHE/layers/ holds
#     only complete layers (not layer 1), CACHE/tmp/<layer 1> keeps the
#     spool and a chunk map; the next mount resumes from it (status:
#     `reused` == the bytes the map covers, > 0) and the merged tree equals
#     podman's unpack.
#   - A mountpoint left dead by SIGKILL ("Transport endpoint is not
#     connected") is cleaned, with a message saying so, by the next
#     `soci-fuse mount` on it (which then serves the image) and by
#     `soci-fuse umount` (exit 0; nothing mounted after).
#   - `soci-fuse umount DIR` of a rootfs whose layers' daemon was SIGKILLed
#     removes the overlay and the dead layers' mount, says so, and removes
#     the private dir; a new rootfs at DIR works.
# Knobs: SLOW_RATE (default 500000), FILLER_MIB (default 6).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"
SLOW_RATE=${SLOW_RATE:-500000}
FILLER_MIB=${FILLER_MIB:-6}
CHUNK=$((1024 * 1024))

start_registry
bash "$INTEG_DIR/mkimage.sh" --minimal --repo test/small --push "$REGISTRY" "$T/small"
REF=$REGISTRY/test/small:gzip
MNT=$T/mnt

daemon_pid() { soci_fuse_pids "$1" | head -n 1; }
stat_errno_is() { # stat_errno_is PATH TEXT
	local out
	out=$(stat -- "$1" 2>&1 >/dev/null) && return 1
	grep -qF -- "$2" <<<"$out"
}
# kill_wait SIGNAL PID: send it, wait until the process is gone
kill_wait() {
	kill -"$1" "$2"
	wait_gone 30 "$2"
}

# ---- SIGTERM of an idle mount: unmount and exit
sf_mount --cache "$T/cache" "$REF" "$MNT"
wait_complete "$MNT" 120
pid=$(daemon_pid "$MNT")
check "term: a daemon serves the mount" test -n "$pid"
# status held open across the end: the daemon gets no release for it and
# must free its snapshot itself (an ASan leak report fails CI otherwise)
exec 9<"$MNT/status"
check "term: the daemon exited" kill_wait TERM "$pid"
check "term: nothing mounted any more" bash -c "! mountpoint -q '$MNT'"
exec 9<&-

# ---- SIGKILL: a dead mount, cleaned by the next mount
sf_mount --cache "$T/cache" "$REF" "$MNT"
pid=$(daemon_pid "$MNT")
ls "$MNT/layers" >/dev/null # let the kernel cache the root's attributes
kill_wait KILL "$pid"
check "kill: the mount is dead (ENOTCONN)" stat_errno_is "$MNT/layers" "not connected"
if sf_mount --cache "$T/cache" "$REF" "$MNT" 2>"$T/err"; then
	pass "kill: the next mount succeeds"
	check "kill: it says it cleaned the dead mount ($(tr '\n' ' ' <"$T/err"))" \
		grep -q "cleaned up a dead mount" "$T/err"
	check "kill: the image is served again" test "$(ls "$MNT/layers")" = 0
else
	fail "kill: the next mount failed: $(cat "$T/err")"
fi

# ---- SIGKILL: a dead mount, cleaned by umount
pid=$(daemon_pid "$MNT")
ls "$MNT/layers" >/dev/null
kill_wait KILL "$pid"
check "kill, umount: the mount is dead (ENOTCONN)" stat_errno_is "$MNT/layers" "not connected"
if sf_umount "$MNT" 2>"$T/err"; then
	pass "kill, umount: umount of the dead mount exits 0"
	check "kill, umount: it says it cleaned the dead mount ($(tr '\n' ' ' <"$T/err"))" \
		grep -q "cleaned up a dead mount left at $MNT" "$T/err"
	check "kill, umount: one line" test "$(wc -l <"$T/err")" = 1
else
	fail "kill, umount: umount failed: $(cat "$T/err")"
fi
check "kill, umount: nothing mounted any more" bash -c "! mountpoint -q '$MNT'"
check "kill, umount: a second umount fails: not mounted" \
	bash -c "! '$SOCI_FUSE' umount '$MNT' 2>'$T/err' && grep -q 'is not mounted' '$T/err'"

# ---- SIGKILL of a rootfs' layers daemon: umount DIR cleans both mounts
ROOT=$T/rootfs
mkdir -p "$ROOT"
PRIV=/run/soci-fuse/rootfs/$(printf '%s' "$(readlink -f "$ROOT")" | sha256sum | cut -d' ' -f1)
EXTRA_TMP+=("$PRIV") # cleanup unmounts there too if this fails half-way
if timeout 120 "$SOCI_FUSE" rootfs --cache "$T/cache" "$REF" "$ROOT" 2>"$T/err"; then
	pid=$(daemon_pid "$ROOT")
	check "rootfs kill: a daemon serves the layers" test -n "$pid"
	ls "$ROOT" >/dev/null
	kill_wait KILL "$pid"
	check "rootfs kill: the layers' mount is dead (ENOTCONN)" stat_errno_is "$PRIV/mnt/layers" \
		"not connected"
	if sf_umount "$ROOT" 2>"$T/err"; then
		pass "rootfs kill: umount DIR exits 0"
		check "rootfs kill: it says it cleaned the dead mount ($(tr '\n' ' ' <"$T/err"))" \
			grep -q "cleaned up a dead mount left at $PRIV/mnt" "$T/err"
	else
		fail "rootfs kill: umount DIR failed: $(cat "$T/err")"
	fi
	check "rootfs kill: DIR not mounted any more" bash -c "! mountpoint -q '$ROOT'"
	check "rootfs kill: the layers' mount is gone" bash -c "! mountpoint -q '$PRIV/mnt' 2>/dev/null"
	check "rootfs kill: the private dir is removed" test ! -e "$PRIV"
	check "rootfs kill: a new rootfs at DIR" timeout 120 "$SOCI_FUSE" rootfs --cache "$T/cache" "$REF" "$ROOT"
	check "rootfs kill: ... serves the image" test -n "$(ls -A "$ROOT")"
	check "rootfs kill: ... and unmounts" sf_umount "$ROOT"
else
	fail "rootfs kill: soci-fuse rootfs: $(cat "$T/err")"
fi

# ---- SIGTERM / SIGINT in the middle of a pull, with parked requests
python3 "$INTEG_DIR/mkstream.py" --filler-mib "$FILLER_MIB" "$T/stream" >/dev/null ||
	die "mkstream.py failed"
skopeo copy -q --dest-tls-verify=false --preserve-digests "oci:$T/stream/layout:slow" \
	"docker://$REGISTRY/test/stream:slow" || die "skopeo could not push"
STREAM_REF=$(podman_reference "$REGISTRY/test/stream:slow")
HEX=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tags"]["slow"]["layers"][1])' \
	"$T/stream/stream.json")
HEX=${HEX#sha256:}
start_regproxy slow --rate "$SLOW_RATE"
SLOW_IMAGE=$PROXY/test/stream:slow
SF_OPTS=(--chunk-size 1M --connections 2)

# field MNT KEY: layer 1's KEY in MNT/status ("" when unreadable)
field() {
	python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["layers"][1][sys.argv[2]])
except Exception: print("")' "$1/status" "$2"
}

# park NAME OP PATH: OP (read|stat) PATH in the background, bounded by a
# timeout; PARKED[NAME] is the job, $T/NAME.pid gets the python pid,
# $T/NAME.out the errno name or "ok".
declare -A PARKED=()
park() {
	timeout 60 python3 - "$2" "$3" "$T/$1.pid" >"$T/$1.out" 2>&1 <<'EOF' &
import errno, os, sys
op, path, pidfile = sys.argv[1:]
open(pidfile, "w").write("%d\n" % os.getpid())
try:
    if op == "stat":
        os.stat(path)
    else:
        with open(path, "rb") as f:
            f.read()
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
EOF
	PARKED[$1]=$!
}

# parked NAME...: each one sits in a FUSE request soci-fuse got
# (request_wait_answer), within 10 s
parked() {
	python3 - "$T" "$@" <<'EOF'
import os, sys, time
tdir, names = sys.argv[1], sys.argv[2:]
def waiting(n):
    try:
        pid = open(os.path.join(tdir, n + ".pid")).read().strip()
        return "request_wait_answer" in open("/proc/%s/stack" % pid).read()
    except (OSError, ValueError):
        return False
end = time.time() + 10
while time.time() < end:
    if all(waiting(n) for n in names):
        sys.exit(0)
    time.sleep(0.05)
print("not parked: %s" % [n for n in names if not waiting(n)], file=sys.stderr)
sys.exit(1)
EOF
}

# wait_fetched MNT BYTES: until layer 1 fetched >= BYTES (60 s at most)
wait_fetched() {
	python3 - "$1/status" "$2" <<'EOF'
import json, sys, time
path, want = sys.argv[1], int(sys.argv[2])
end = time.time() + 60
while time.time() < end:
    try:
        if json.load(open(path))["layers"][1]["fetched"] >= want:
            sys.exit(0)
    except (OSError, ValueError, KeyError, IndexError):
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

# only_complete_layers CACHE: every dir in layers/ is a whole, committed
# layer (meta.json, index, data; no spool), and layer 1 is not among them
only_complete_layers() {
	local d
	[ ! -e "$1/layers/$HEX" ] || return 1
	for d in "$1"/layers/*/; do
		[ -d "$d" ] || continue
		[ -f "$d/meta.json" ] && [ -f "$d/index" ] && [ -f "$d/data" ] || return 1
		[ ! -e "$d/blob" ] && [ ! -e "$d/blob.map" ] || return 1
	done
}

signal_mid_pull() {
	local sig=$1 cache=$T/cache-$1 mnt=$T/mnt-$1 pid rc persisted size down reused merged
	sf_mount --cache "$cache" "${SF_OPTS[@]}" "$SLOW_IMAGE" "$mnt" || {
		fail "$sig: mount"
		return
	}
	pid=$(daemon_pid "$mnt")
	park "read-$sig" read "$mnt/layers/1/d/late-00"
	park "stat-$sig" stat "$mnt/layers/1/late-dir/f"
	check "$sig: a read and a stat of late entries are parked in the daemon" \
		parked "read-$sig" "stat-$sig"
	# `fetched` counts the chunks in flight too: past 2 chunks (one per
	# connection) at least one chunk is whole, so there is a spool to keep
	check "$sig: layer 1 fetched 3 chunks" wait_fetched "$mnt" $((3 * CHUNK))
	check "$sig: layer 1 still fetching when the signal comes" test "$(field "$mnt" state)" = fetching
	check "$sig: the daemon exited" kill_wait "$sig" "$pid"
	for job in read stat; do
		rc=0
		wait "${PARKED[$job-$sig]}" || rc=$?
		check "$sig: the parked $job ended with EIO (exit $rc, $(cat "$T/$job-$sig.out"))" \
			test "$(cat "$T/$job-$sig.out")" = EIO
	done
	check "$sig: nothing mounted any more" bash -c "! mountpoint -q '$mnt'"
	check "$sig: CACHE/layers/ holds only complete layers, not layer 1" only_complete_layers "$cache"
	persisted=$(chunkmap_bytes "$cache/tmp/$HEX/blob.map")
	check "$sig: CACHE/tmp/ keeps the spool and its map ($persisted bytes)" \
		test -f "$cache/tmp/$HEX/blob" -a "$persisted" -gt 0
	sf_mount --cache "$cache" "${SF_OPTS[@]}" "$SLOW_IMAGE" "$mnt" || {
		fail "$sig: remount"
		return
	}
	check "$sig: the remount completes" wait_complete "$mnt" 300
	size=$(field "$mnt" size) down=$(field "$mnt" downloaded) reused=$(field "$mnt" reused)
	log "$sig: persisted $persisted, then reused $reused and downloaded $down of $size"
	check "$sig: the remount resumed: reused $reused == persisted $persisted" \
		test "$reused" = "$persisted"
	check "$sig: ... downloaded $down <= size - reused + 2 chunks" \
		test "$down" -le $((size - reused + 2 * CHUNK))
	if merged=$(overlay_mount "$(cat "$mnt/lowerdir")" "$T/ov-$sig"); then
		check "$sig: merged tree == podman's" tree_compare --quiet "$merged" "$STREAM_REF"
		umount "$merged" || true
	else
		fail "$sig: overlay mount"
	fi
	check "$sig: umount" sf_umount "$mnt"
}
signal_mid_pull TERM
signal_mid_pull INT

summary
