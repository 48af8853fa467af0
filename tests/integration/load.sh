#!/bin/bash
# load.sh - many mounts of images sharing layers, many readers, one cache.
#
# Three images built with mkimage.py from generated layers (random bytes,
# seeded): a = [l0, l1], b = [l0, l2], c = [l0, l1, l3]; they share l0 (all)
# and l1 (a, c).  LOAD_MOUNTS (default 8) soci-fuse processes mount them
# (a, b, c, a, b, c, ...) at once, all on one cache, through regproxy.py
# (LOAD_RATE bytes/s per connection) so the pulls take a while; the layer
# locks make one process pull each layer while the others wait.
# loadread.py runs LOAD_THREADS (default 32) threads that read random files
# of random mounts (whole files, random ranges, status, directory listings)
# while the layers stream in and a few seconds after, checking every byte
# against the staged files.  Checked: no error (ENOENT included), no wrong
# byte, no operation stuck (LOAD_HANG s) and completion within LOAD_TIMEOUT
# (generous: no timed assertion, a hang must end as a failure); every mount
# complete; each shared layer pulled once (downloaded by one process);
# every daemon exits after umount.  Meanwhile another process mounts and
# unmounts image c in a loop and `cache ls` / `cache gc` run in a loop, and
# must not disturb anything.  The figures (time to complete, reads,
# bytes verified, slowest operation) are printed.
#
# Knobs: LOAD_MIB (MiB per layer set, default 16), LOAD_MOUNTS, LOAD_THREADS,
# LOAD_RATE (default 250000), LOAD_TIMEOUT (default 600), LOAD_HANG (180).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"
LOAD_MIB=${LOAD_MIB:-16}
LOAD_MOUNTS=${LOAD_MOUNTS:-8}
LOAD_THREADS=${LOAD_THREADS:-32}
LOAD_RATE=${LOAD_RATE:-250000}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-600}
LOAD_HANG=${LOAD_HANG:-180}

start_registry
S=$T/stage
# gen DIR NFILES MIB SEED: NFILES files of random bytes in 8 directories,
# sizes skewed small, about MIB MiB in all
gen() {
	python3 - "$@" <<'EOF'
import os, random, sys
d, n, mib, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
r = random.Random(seed)
w = [r.random() ** 3 for _ in range(n)]
scale = mib * 1024 * 1024 / sum(w)
for i in range(n):
    sub = os.path.join(d, "d%d" % (i % 8))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%04d" % i), "wb") as f:
        f.write(r.randbytes(int(w[i] * scale)))
EOF
}
gen "$S/l0" 400 "$(awk -v m="$LOAD_MIB" 'BEGIN { print m * 0.4 }')" 10
gen "$S/l1" 200 "$(awk -v m="$LOAD_MIB" 'BEGIN { print m * 0.25 }')" 11
gen "$S/l2" 200 "$(awk -v m="$LOAD_MIB" 'BEGIN { print m * 0.25 }')" 12
gen "$S/l3" 100 "$(awk -v m="$LOAD_MIB" 'BEGIN { print m * 0.1 }')" 13
declare -A LAYERS=([a]="l0 l1" [b]="l0 l2" [c]="l0 l1 l3")
for img in a b c; do
	dirs=()
	for l in ${LAYERS[$img]}; do dirs+=("$S/$l"); done
	python3 "$INTEG_DIR/mkimage.py" --no-index --no-zstd "$T/img-$img" "${dirs[@]}" >/dev/null ||
		die "mkimage.py $img failed"
	skopeo copy -q --dest-tls-verify=false --preserve-digests "oci:$T/img-$img/layout:gzip" \
		"docker://$REGISTRY/test/load:$img" || die "skopeo could not push $img"
done

start_regproxy slow --rate "$LOAD_RATE"

CACHE=$T/cache
IMGS=(a b c)
ARGS=()
MNTS=()
MPIDS=()
t0=$(date +%s.%N)
for ((m = 0; m < LOAD_MOUNTS; m++)); do
	img=${IMGS[m % 3]}
	mnt=$T/mnt-$m
	MNTS+=("$mnt")
	stages=
	for l in ${LAYERS[$img]}; do stages+=${stages:+:}$S/$l; done
	ARGS+=("$mnt=$stages")
	( sf_mount --cache "$CACHE" --chunk-size 1M --connections 4 "$PROXY/test/load:$img" "$mnt" \
		>"$T/mount-$m.log" 2>&1 || echo "mount $m failed: $(cat "$T/mount-$m.log")" >"$T/mount-$m.failed" ) &
	MPIDS+=($!)
done
wait "${MPIDS[@]}" # not a bare wait: registry and proxy are children too
for ((m = 0; m < LOAD_MOUNTS; m++)); do
	[ ! -e "$T/mount-$m.failed" ] || die "$(cat "$T/mount-$m.failed")"
done
log "$LOAD_MOUNTS mounts up after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s"

# Churn while the readers run: another process mounts and unmounts image c
# over and over on a mountpoint of its own, and `cache ls` / `cache gc`
# (with a size limit nothing in use can meet) run in a loop: neither may
# disturb the mounts being read (gc must not remove a layer in use).
churn() {
	local n=0
	while [ ! -e "$T/stop-churn" ]; do
		if sf_mount --cache "$CACHE" "$PROXY/test/load:c" "$T/mnt-churn" >>"$T/churn.log" 2>&1; then
			cat "$T/mnt-churn/status" >/dev/null 2>>"$T/churn.log" || echo "status of mnt-churn unreadable" >>"$T/churn.errors"
			sf_umount "$T/mnt-churn" >>"$T/churn.log" 2>&1 || echo "umount mnt-churn failed" >>"$T/churn.errors"
		else
			echo "mount mnt-churn failed" >>"$T/churn.errors"
		fi
		"$SOCI_FUSE" cache ls --cache "$CACHE" >/dev/null 2>>"$T/churn.log" || echo "cache ls failed" >>"$T/churn.errors"
		"$SOCI_FUSE" cache gc --max-size 1 --cache "$CACHE" >>"$T/churn.log" 2>&1 || echo "cache gc failed" >>"$T/churn.errors"
		n=$((n + 1))
	done
	echo "$n" >"$T/churn.rounds"
}
churn &
CHURN=$!
BG_PIDS+=($CHURN)
out=$(python3 "$INTEG_DIR/loadread.py" --threads "$LOAD_THREADS" --timeout "$LOAD_TIMEOUT" \
	--hang "$LOAD_HANG" "${ARGS[@]}") && rc=0 || rc=$?
echo "$out" | sed 's/^/# /'
touch "$T/stop-churn"
wait "$CHURN" || true
log "churn: $(cat "$T/churn.rounds" 2>/dev/null || echo '?') rounds of mount/umount + cache ls + cache gc"
check "churn: mounts, umounts, cache ls and gc all worked" test ! -s "$T/churn.errors"
[ ! -s "$T/churn.errors" ] || sort "$T/churn.errors" | uniq -c | head
check "$LOAD_THREADS readers on $LOAD_MOUNTS mounts: no error, no wrong byte, no hang (exit $rc)" test "$rc" = 0
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$out" "$1" 2>/dev/null || true; }
check "readers verified whole files ($(field reads)) and ranges ($(field ranges))" \
	test "$(field reads)" -gt 0 -a "$(field ranges)" -gt 0

# each layer was downloaded by one process only (the others waited for its
# lock and loaded the result)
once() {
	python3 - "${MNTS[@]}" <<'EOF'
import json, sys, collections
down = collections.Counter()
for m in sys.argv[1:]:
    for l in json.load(open(m + "/status"))["layers"]:
        if l.get("downloaded", 0) > 0:
            down[l["digest"]] += 1
bad = {d: n for d, n in down.items() if n > 1}
if bad:
    print("downloaded by several mounts: %s" % bad, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}
check "every layer downloaded by one mount only" once
for mnt in "${MNTS[@]}"; do
	check "$(basename "$mnt"): complete" wait_complete "$mnt" 10
done
pids=$(soci_fuse_pids)
for mnt in "${MNTS[@]}"; do sf_umount "$mnt" || fail "umount $mnt"; done
# shellcheck disable=SC2086
check "every daemon exits after umount" wait_gone 60 $pids
summary
