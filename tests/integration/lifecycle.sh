#!/bin/bash
# lifecycle.sh - the daemon's end: SIGTERM unmounts cleanly; a mountpoint
# left dead by SIGKILL ("Transport endpoint is not connected") is cleaned by
# the next `soci-fuse mount` on it, which then serves the image.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

start_registry
bash "$INTEG_DIR/mkimage.sh" --minimal --repo test/small --push "$REGISTRY" "$T/small"
REF=$REGISTRY/test/small:gzip
MNT=$T/mnt

daemon_pid() { soci_fuse_pids "$MNT" | head -n 1; }
stat_errno_is() { # stat_errno_is PATH TEXT
	local out
	out=$(stat -- "$1" 2>&1 >/dev/null) && return 1
	grep -qF -- "$2" <<<"$out"
}

# ---- SIGTERM: unmount and exit
sf_mount --cache "$T/cache" "$REF" "$MNT"
wait_complete "$MNT" 120
pid=$(daemon_pid)
check "term: a daemon serves the mount" test -n "$pid"
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
check "term: the daemon exited" bash -c "! kill -0 $pid 2>/dev/null"
check "term: nothing mounted any more" bash -c "! mountpoint -q '$MNT'"

# ---- SIGKILL: a dead mount, cleaned by the next mount
sf_mount --cache "$T/cache" "$REF" "$MNT"
pid=$(daemon_pid)
ls "$MNT/layers" >/dev/null # let the kernel cache the root's attributes
kill -KILL "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
check "kill: the mount is dead (ENOTCONN)" stat_errno_is "$MNT/layers" "not connected"
if sf_mount --cache "$T/cache" "$REF" "$MNT" 2>"$T/err"; then
	pass "kill: the next mount succeeds"
	check "kill: it says it cleaned the dead mount ($(tr '\n' ' ' <"$T/err"))" \
		grep -q "cleaned up a dead mount" "$T/err"
	check "kill: the image is served again" test "$(ls "$MNT/layers")" = 0
	check "kill: umount" sf_umount "$MNT"
else
	fail "kill: the next mount failed: $(cat "$T/err")"
fi

summary
