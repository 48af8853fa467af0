#!/bin/bash
# streaming.sh - requests on a layer that is still streaming in, and layers
# that fail their checks.
#
# The images (mkstream.py) are pushed to a local registry; soci-fuse reaches
# it through regproxy.py, which sends blob bodies at SLOW_RATE bytes/s per
# connection, so layer 1 of test/stream:slow (~40 MiB of random bytes; small
# "early" entries first, d/mid half-way, "late" entries at the end of the
# tar) takes ~15 s to arrive.
#
#   (a) a lookup/open of an entry that has not arrived yet waits until it
#       arrives: d/mid is answered half-way, while the layer is still
#       fetching; p00/late..p23/late, q/late-cat, d/late-*, late-dir/f at the
#       end; a lookup of a name that never arrives gets ENOENT, and only once
#       the layer is complete (status read by the request's own job right
#       when it returns);
#   (b) readdir of a directory of the incomplete layer (d/, the layer root)
#       waits until the layer is complete, then lists everything;
#   (g) a parked request is interruptible (timeout, kill -9);
#   (c) waiting requests do not hold up others: with 27 lookups parked in
#       soci-fuse (more than its 16 FUSE worker threads; each in a directory
#       of its own), lookups/reads of early files of the same layer, a read
#       of layer 0, MNT/status and MNT/lowerdir each answer within
#       PROMPT_LIMIT (1 s).  Also checked: a lookup of an early file in the
#       SAME directory as a parked lookup (d/early-1 while d/mid is awaited)
#       and while a readdir of that directory is parked (d/early-2 while
#       `ls d` waits).  The kernel serializes lookups and readdirs of one
#       directory unless the file system negotiated FUSE_PARALLEL_DIROPS;
#       a failure there names the kernel function the request sleeps in.
#   (d) a blob whose bytes do not match its digest (gzip header byte flipped;
#       a data byte flipped in an uncompressed blob; a data byte flipped in
#       the middle of a gzip stream), (e) a wrong diff_id in the config, and
#       (f) a tar header with a bad checksum in a correctly digested blob:
#       the layer turns "failed" in status with an error naming the problem
#       (digest mismatch / diff_id mismatch / the tar offset) and the layer
#       digest; lookups, reads, readdirs in it (including a lookup parked
#       before the failure and a read of a file opened before it) get EIO;
#       nothing of it is left under CACHE/layers/ or CACHE/tmp/; layer 0 of
#       the same image still works.
#
# The premises are checked too: before the prompt requests, every waiting
# request is verified to sit in a FUSE request that soci-fuse received
# (/proc/PID/stack: request_wait_answer), and only then is status read:
# layer 1 still "fetching", fewer bytes unpacked than the tar offset of the
# awaited entries, so none of them existed yet.
#
# Knobs: SLOW_RATE (bytes/s per connection, default 1500000), FILLER_MIB
# (default 40), PROMPT_LIMIT (seconds, default 1.0), KEEP_TMP=1 (lib.sh).
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

SLOW_RATE=${SLOW_RATE:-1500000}
FILLER_MIB=${FILLER_MIB:-40}
PROMPT_LIMIT=${PROMPT_LIMIT:-1.0}
# Small chunks over 2 connections: the contiguous prefix (what the unpacker
# may read) grows steadily instead of in 8 MiB steps.
SF_OPTS=(--chunk-size 1M --connections 2)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
T_START=$(now)

# ------------------------------------------------------------------ setup
start_registry
IMG=$T/img
python3 "$INTEG_DIR/mkstream.py" --filler-mib "$FILLER_MIB" "$IMG" || die "mkstream.py failed"
INFO=$IMG/stream.json
TAGS=(slow blobflip midflip gzflip diffid badtar)
for tag in "${TAGS[@]}"; do
	skopeo copy -q --dest-tls-verify=false --preserve-digests \
		"oci:$IMG/layout:$tag" "docker://$REGISTRY/test/stream:$tag" ||
		die "skopeo could not push $tag"
done

# info EXPR: evaluate a Python expression on stream.json (as `i`).
info() { python3 -c 'import json, sys; i = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$INFO" "$1"; }

# The registry's own copy of a blob (docker-registry filesystem storage).
blob_path() {
	local hex=${1#sha256:}
	echo "$T/registry/storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
}
# flip_byte FILE OFFSET: invert one byte in place.
flip_byte() {
	python3 - "$1" "$2" <<'EOF'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    assert len(b) == 1, "offset %d beyond %s" % (off, path)
    f.seek(off)
    f.write(bytes([b[0] ^ 0xFF]))
EOF
}
for tag in blobflip midflip gzflip; do
	digest=$(info "i['tags']['$tag']['layers'][1]")
	p=$(blob_path "$digest")
	[ -f "$p" ] || die "no blob $p in the registry storage"
	flip_byte "$p" "$(info "i['tags']['$tag']['flip_offset']")"
	# the registry serves the flipped copy (same size, different bytes)
	[ "sha256:$(curl -fsS "http://$REGISTRY/v2/test/stream/blobs/$digest" | sha256sum | cut -d' ' -f1)" != "$digest" ] ||
		die "$tag: the registry still serves the original bytes of $digest"
done

start_regproxy proxy --rate "$SLOW_RATE"
log "setup (registry, images, proxy at $PROXY, $SLOW_RATE B/s per connection) took $(since "$T_START")s"

# ------------------------------------------------------------------ helpers
# layer_status MNT I [STATUS_FILE]: "state unpacked fetched" of layer I, from
# MNT/status or from a saved copy.
layer_status() {
	python3 - "${3:-$1/status}" "$2" <<'EOF'
import json, sys
try:
    l = json.load(open(sys.argv[1]))["layers"][int(sys.argv[2])]
    print(l["state"], l["unpacked"], l["fetched"])
except (OSError, ValueError, KeyError, IndexError) as e:
    print("unreadable-status 0 0 (%s)" % e)
EOF
}
layer_error() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["layers"][int(sys.argv[2])].get("error", ""))' \
		"$1/status" "$2"
}

# wait_state MNT I STATE... : poll until layer I is in one of the states
# (timeout WAIT_TIMEOUT, default 90 s).
wait_state() {
	local mnt=$1 i=$2 end s want
	shift 2
	end=$(($(date +%s) + ${WAIT_TIMEOUT:-90}))
	while [ "$(date +%s)" -lt "$end" ]; do
		read -r s _ <<<"$(layer_status "$mnt" "$i")"
		for want in "$@"; do [ "$s" = "$want" ] && return 0; done
		sleep 0.1
	done
	echo "layer $i of $mnt still '$s' after ${WAIT_TIMEOUT:-90}s" >&2
	return 1
}

# Background requests.  job MNT NAME CMD...: run CMD in the background; when
# it returns, record its exit status, start/end times and a copy of
# MNT/status taken right then (JOBS/NAME.{out,err,pid,status,done}).
JOBS=$T/jobs
mkdir -p "$JOBS"
job() {
	local mnt=$1 name=$2
	shift 2
	(
		s=$(now)
		"$@" >"$JOBS/$name.out" 2>"$JOBS/$name.err" </dev/null &
		echo $! >"$JOBS/$name.pid"
		wait $! && rc=0 || rc=$?
		e=$(now)
		cat "$mnt/status" >"$JOBS/$name.status" 2>&1 || true
		echo "$rc $s $e" >"$JOBS/$name.done"
	) &
	BG_PIDS+=($!)
}
job_done() { [ -s "$JOBS/$1.done" ]; }
job_rc() { cut -d' ' -f1 "$JOBS/$1.done"; }
job_secs() { awk '{ printf "%.2f", $3 - $2 }' "$JOBS/$1.done"; }
# job_wait TIMEOUT NAME...: until all are done; 1 (naming the rest) if not.
job_wait() {
	local t=$1 i n left
	shift
	for ((i = 0; i < t * 10; i++)); do
		left=()
		for n in "$@"; do job_done "$n" || left+=("$n"); done
		[ ${#left[@]} = 0 ] && return 0
		sleep 0.1
	done
	echo "still running after ${t}s: ${left[*]}" >&2
	return 1
}

# job_wait_secs SECONDS NAME: like job_wait, fractional seconds, one job.
job_wait_secs() {
	local end
	end=$(awk -v a="$(now)" -v s="$1" 'BEGIN { printf "%.3f", a + s }')
	while ! job_done "$2"; do
		awk -v a="$(now)" -v e="$end" 'BEGIN { exit !(a > e) }' && return 1
		sleep 0.05
	done
}

# where_blocked NAME...: where each job's process sleeps in the kernel, from
# /proc/PID/{wchan,stack}, for messages.
where_blocked() {
	python3 - "$JOBS" "$@" <<'PYEOF'
import os, sys
jobs = sys.argv[1]
out = []
for n in sys.argv[2:]:
    try:
        pid = open(os.path.join(jobs, n + ".pid")).read().strip()
        wchan = open("/proc/%s/wchan" % pid).read()
        frames = [l.split()[1].split("+")[0] for l in open("/proc/%s/stack" % pid)]
    except (OSError, IndexError) as e:
        out.append("%s: (%s)" % (n, e))
        continue
    out.append("%s: %s in %s" % (n, wchan, " < ".join(frames[:5])))
print("; ".join(out))
PYEOF
}

# blocked_in_fuse daemon|any NAME...: wait (up to 10 s) until each job's
# process sits in a FUSE request: "daemon": sent to soci-fuse and waiting
# for its answer (request_wait_answer); "any": anywhere in the FUSE client
# (also e.g. waiting for the kernel's per-directory lock).  Names the ones
# that do not.
blocked_in_fuse() {
	python3 - "$JOBS" "$@" <<'PYEOF'
import os, sys, time
jobs, mode, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def state(n):
    if os.path.exists(os.path.join(jobs, n + ".done")):
        return "already returned: " + open(os.path.join(jobs, n + ".done")).read().strip()
    try:
        pid = open(os.path.join(jobs, n + ".pid")).read().strip()
    except OSError:
        return "not started"
    try:
        frames = [l.split()[1].split("+")[0] for l in open("/proc/%s/stack" % pid)]
    except (OSError, IndexError):
        frames = []
    try:
        wchan = open("/proc/%s/wchan" % pid).read()
    except OSError:
        wchan = ""
    in_daemon = wchan == "request_wait_answer" or "request_wait_answer" in frames
    in_fuse = in_daemon or any("fuse" in f for f in frames)
    if in_daemon or (mode == "any" and in_fuse):
        return None
    return "wchan %s, stack %s" % (wchan, " < ".join(frames[:5]))
end = time.time() + 10
while True:
    bad = {n: s for n in names if (s := state(n))}
    if not bad or time.time() > end:
        break
    time.sleep(0.05)
for n, s in bad.items():
    print("%s: %s" % (n, s), file=sys.stderr)
sys.exit(1 if bad else 0)
PYEOF
}

# prompt DESC WANT CMD...: CMD must succeed within PROMPT_LIMIT seconds
# (killed after 10) and, unless WANT is '*', print exactly WANT.
prompt() {
	local desc=$1 want=$2 t0 rc secs out
	shift 2
	t0=$(now)
	out=$(timeout 10 "$@" 2>&1) && rc=0 || rc=$?
	secs=$(since "$t0")
	if [ "$rc" != 0 ]; then
		fail "$desc: exit $rc after ${secs}s: $out"
	elif [ "$want" != '*' ] && [ "$out" != "$want" ]; then
		fail "$desc: got '$out', want '$want' (${secs}s)"
	elif awk -v s="$secs" -v l="$PROMPT_LIMIT" 'BEGIN { exit !(s > l) }'; then
		fail "$desc: took ${secs}s (limit ${PROMPT_LIMIT}s)"
	else
		pass "$desc (${secs}s)"
	fi
}

# errno_is WANT_TEXT CMD...: CMD fails and says WANT_TEXT on stderr.
errno_is() {
	local want=$1 out rc
	shift
	out=$(timeout 30 "$@" 2>&1 >/dev/null) && rc=0 || rc=$?
	[ "$rc" != 0 ] || { echo "succeeded, want '$want'" >&2; return 1; }
	[ "$rc" != 124 ] || { echo "timed out" >&2; return 1; }
	grep -qF -- "$want" <<<"$out" || { echo "exit $rc: $out (want '$want')" >&2; return 1; }
}

# state_in STATUS_FILE I STATE [MIN_UNPACKED [MAX_UNPACKED]]
state_in() {
	local s u
	read -r s u _ <<<"$(layer_status - "$2" "$1")"
	[ "$s" = "$3" ] || { echo "layer $2 was '$s' (unpacked $u), want '$3'" >&2; return 1; }
	[ -z "${4:-}" ] || [ "$u" -ge "$4" ] || { echo "unpacked $u < $4" >&2; return 1; }
	[ -z "${5:-}" ] || [ "$u" -lt "$5" ] || { echo "unpacked $u >= $5" >&2; return 1; }
}

# says WANT TEXT: TEXT contains WANT (case-insensitive).
says() {
	grep -qiF -- "$1" <<<"$2" || { echo "the error is: $2" >&2; return 1; }
}

output_is() {
	local want=$1 got
	shift
	got=$("$@" 2>&1) || { echo "exit $?: $got" >&2; return 1; }
	[ "$got" = "$want" ] || { printf 'got:  %q\nwant: %q\n' "$got" "$want" >&2; return 1; }
}

# ============================================================ (a) (b) (c)
MNT=$T/mnt-slow
CACHE=$T/cache-slow
L1=$MNT/layers/1
OFF_MID=$(info "i['tags']['slow']['offsets']['d/mid']")
OFF_LATE=$(info "i['tags']['slow']['offsets']['p00/late']")
TAR_SIZE=$(info "i['tags']['slow']['tar_size']")
read -r -a LATE <<<"$(info "' '.join(i['tags']['slow']['late'])")"
read -r -a LATE_D <<<"$(info "' '.join(i['tags']['slow']['late_d'])")"
SLOW_DIGEST=$(info "i['tags']['slow']['layers'][1]")
BASE_DIGEST=$(info "i['tags']['slow']['layers'][0]")

t_mount=$(now)
sf_mount --cache "$CACHE" "${SF_OPTS[@]}" "$PROXY/test/stream:slow" "$MNT" ||
	die "soci-fuse mount $PROXY/test/stream:slow failed"
pass "slow: mount returned in $(since "$t_mount")s"

# An early file arrives within a second or so, long before the end.
check "slow: early file d/early-0 is served" output_is "early file 0" timeout 30 cat "$L1/d/early-0"
check "slow: layer 0 complete" wait_state "$MNT" 0 complete
# Opened now, read later (a read, no lookup, while lookups are parked).
exec {FD_EARLY}<"$L1/d/early-3" || FD_EARLY=
log "slow: early file after $(since "$t_mount")s; layer 1: $(layer_status "$MNT" 1)"

# ---- phase 1: park lookups of late entries, each in a directory of its
# own (the kernel sends only one lookup per directory at a time unless the
# file system negotiated FUSE_PARALLEL_DIROPS), more of them than libfuse
# has worker threads (16): 24 late files, an open of a late file, d/mid,
# a name that never arrives.
P1=()
for f in "${LATE[@]}"; do
	job "$MNT" "stat-${f%/late}" stat -c %s "$L1/$f"
	P1+=("stat-${f%/late}")
done
job "$MNT" cat-late cat "$L1/q/late-cat"
job "$MNT" stat-mid stat -c %s "$L1/d/mid"
job "$MNT" stat-never stat "$L1/n/never"
P1+=(cat-late stat-mid stat-never)

# Premise: each of them is inside a FUSE request that soci-fuse received
# and has not answered; only then is status read: layer 1 still fetching,
# d/mid (and so every late entry) not unpacked yet.
check "slow: all ${#P1[@]} lookups reached soci-fuse and wait there (more than its 16 FUSE threads)" \
	blocked_in_fuse daemon "${P1[@]}"
cat "$MNT/status" >"$T/status-parked"
check "slow: ... while layer 1 is 'fetching' and d/mid (tar offset $OFF_MID) is not unpacked yet" \
	state_in "$T/status-parked" 1 fetching 0 "$OFF_MID"
log "slow: ${#P1[@]} lookups parked after $(since "$t_mount")s; layer 1: $(layer_status - 1 "$T/status-parked")"
# status read 7 bytes at a time over a second while layer 1 moves on is
# still one JSON document: each open gets a snapshot (regression: every
# read made a new document, and a reader got pieces of several)
status_in_pieces() {
	python3 - "$MNT/status" <<'EOF'
import json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
data = b""
while True:
    piece = os.read(fd, 7)
    if not piece:
        break
    data += piece
    time.sleep(0.01)
json.loads(data)
EOF
}
check "slow: status read in 7-byte pieces while layer 1 streams is one JSON document" status_in_pieces

# (c) meanwhile, other requests answer at once.
prompt "slow (c): stat of an early file of layer 1 (other directory) while ${#P1[@]} are parked" \
	18 stat -c %s "$L1/e/early-0"
prompt "slow (c): cat of an early file of layer 1 (other directory)" "early file 1 in e" cat "$L1/e/early-1"
if [ -n "$FD_EARLY" ]; then
	prompt "slow (c): read of d/early-3 (opened before), same directory as a parked lookup" \
		"early file 3" bash -c "cat <&$FD_EARLY"
else
	fail "slow (c): could not open d/early-3 before parking"
fi
prompt "slow (c): cat MNT/status" '*' cat "$MNT/status"
prompt "slow (c): cat of a file of layer 0" "hello from layer 0" cat "$MNT/layers/0/base/hello"
prompt "slow (c): ls of a directory of (complete) layer 0" "$(printf 'data\nhello')" ls -1 "$MNT/layers/0/base"
prompt "slow (c): cat MNT/lowerdir" "$MNT/layers/1:$MNT/layers/0" cat "$MNT/lowerdir"
# A lookup of an early file in d/, where the lookup of d/mid is parked.
job "$MNT" samedir-1 stat -c %s "$L1/d/early-1"
if job_wait_secs "$PROMPT_LIMIT" samedir-1 2>/dev/null; then
	check "slow (c): stat of early file d/early-1 while the lookup of d/mid is parked ($(job_secs samedir-1)s)" \
		test "$(job_rc samedir-1):$(cat "$JOBS/samedir-1.out")" = "0:13"
else
	fail "slow (c): stat of early file d/early-1 while the lookup of d/mid is parked: no answer within ${PROMPT_LIMIT}s; $(where_blocked samedir-1)"
fi
prompt "slow (c): cat MNT/status again" '*' cat "$MNT/status"
# ... and the parked ones were parked all along: none returned, and d/mid
# has still not been unpacked.
still=()
for n in "${P1[@]}"; do job_done "$n" || still+=("$n"); done
cat "$MNT/status" >"$T/status-after-prompt"
check "slow (c): all ${#P1[@]} lookups still waiting after the prompt requests (${#still[@]} are)" \
	test "${#still[@]}" = "${#P1[@]}"
check "slow (c): ... and layer 1 still 'fetching' before d/mid" \
	state_in "$T/status-after-prompt" 1 fetching 0 "$OFF_MID"

# (g) a parked request never makes its process unkillable: the lookup of a
# name that will never arrive answers EINTR when the process is signalled
# (without that it would wait for the whole layer, ~10 s from here).
t0=$(now)
timeout 1 stat "$L1/n/interrupted-by-timeout" >/dev/null 2>&1 && rc=0 || rc=$?
check "slow (g): 'timeout 1 stat' of a parked name ends promptly (rc $rc after $(since "$t0")s)" \
	awk -v a="$t0" -v b="$(now)" -v rc="$rc" 'BEGIN { exit !(rc == 124 && b - a < 3) }'
t0=$(now)
stat "$L1/n/killed" >/dev/null 2>&1 &
kpid=$!
sleep 0.5
kill -9 "$kpid" 2>/dev/null || true
wait "$kpid" 2>/dev/null || true
check "slow (g): kill -9 of a process parked in a lookup takes effect ($(since "$t0")s)" \
	awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a < 3) }'
cat "$MNT/status" >"$T/status-after-interrupt"
check "slow (g): ... while layer 1 was still 'fetching'" \
	state_in "$T/status-after-interrupt" 1 fetching 0 "$OFF_MID"

# (a) d/mid is answered when it arrives, half-way, not at the end.
if job_wait 120 stat-mid; then
	check "slow (a): stat d/mid waited $(job_secs stat-mid)s, then succeeded" \
		test "$(job_rc stat-mid):$(cat "$JOBS/stat-mid.out")" = "0:24"
	check "slow (a): ... answered on arrival, while layer 1 was still 'fetching' before the late entries" \
		state_in "$JOBS/stat-mid.status" 1 fetching "$OFF_MID" "$OFF_LATE"
	log "slow: d/mid answered $(awk '{ print $3 }' "$JOBS/stat-mid.done" | awk -v a="$t_mount" '{ printf "%.2f", $1 - a }')s after mount; layer 1 then: $(layer_status - 1 "$JOBS/stat-mid.status")"
else
	fail "slow (a): stat d/mid did not return"
fi
job_wait 30 samedir-1 && log "slow: stat d/early-1 (same directory as the parked d/mid) took $(job_secs samedir-1)s"

# ---- phase 2: readdirs, and lookups that share directories, still long
# before the late entries.
P2=()
job "$MNT" ls-d ls -1 "$L1/d"
job "$MNT" ls-root ls -1 "$L1"
for f in "${LATE_D[@]}"; do
	job "$MNT" "stat-d-${f#d/}" stat -c %s "$L1/$f"
	P2+=("stat-d-${f#d/}")
done
job "$MNT" stat-never-d stat "$L1/d/never"
job "$MNT" stat-neverdir stat "$L1/no-such-dir/x"
job "$MNT" cat-latedir cat "$L1/late-dir/f"
P2+=(ls-d ls-root stat-never-d stat-neverdir cat-latedir)
check "slow: all ${#P2[@]} phase-2 requests (readdirs; lookups sharing directories) are blocked in FUSE" \
	blocked_in_fuse any "${P2[@]}"
cat "$MNT/status" >"$T/status-parked2"
check "slow: ... while layer 1 is 'fetching' and the late entries (tar offset $OFF_LATE) are not unpacked yet" \
	state_in "$T/status-parked2" 1 fetching 0 "$OFF_LATE"
log "slow: phase 2 parked after $(since "$t_mount")s; layer 1: $(layer_status - 1 "$T/status-parked2")"
job "$MNT" samedir-2 stat -c %s "$L1/d/early-2"
if job_wait_secs "$PROMPT_LIMIT" samedir-2 2>/dev/null; then
	check "slow (c): stat of early file d/early-2 while 'ls d' is parked ($(job_secs samedir-2)s)" \
		test "$(job_rc samedir-2):$(cat "$JOBS/samedir-2.out")" = "0:13"
else
	fail "slow (c): stat of early file d/early-2 while 'ls d' is parked: no answer within ${PROMPT_LIMIT}s; $(where_blocked samedir-2)"
fi
prompt "slow (c): cat MNT/status while 'ls d' is parked" '*' cat "$MNT/status"
prompt "slow (c): stat of an early file of layer 1 (other directory) while 'ls d' is parked" \
	18 stat -c %s "$L1/e/early-1"

# Everything returns once layer 1 is complete.
ALL=("${P1[@]}" "${P2[@]}" samedir-1 samedir-2)
job_wait 120 "${ALL[@]}" || true
log "slow: all requests returned after $(since "$t_mount")s"
job_done samedir-2 && log "slow: stat d/early-2 (while 'ls d' was parked) took $(job_secs samedir-2)s"
bad=()
for i in "${!LATE[@]}"; do
	n=stat-${LATE[$i]%/late}
	want=$(info "len(('late file %d\n' % $i).encode() * ($i + 1))")
	job_done "$n" && [ "$(job_rc "$n")" = 0 ] && [ "$(cat "$JOBS/$n.out")" = "$want" ] ||
		bad+=("$n: $(cat "$JOBS/$n.done" "$JOBS/$n.out" "$JOBS/$n.err" 2>/dev/null | tr '\n' ' ')")
done
check "slow (a): the ${#LATE[@]} parked lookups of late files waited, then found them ${bad[*]:-}" \
	test ${#bad[@]} = 0
bad=()
for i in "${!LATE_D[@]}"; do
	n=stat-d-${LATE_D[$i]#d/}
	job_done "$n" && [ "$(job_rc "$n")" = 0 ] && [ "$(cat "$JOBS/$n.out")" = "$(info "len('late file $i in d\n')")" ] ||
		bad+=("$n: $(cat "$JOBS/$n.done" "$JOBS/$n.out" "$JOBS/$n.err" 2>/dev/null | tr '\n' ' ')")
done
check "slow (a): the ${#LATE_D[@]} lookups of late files in d/ waited, then found them ${bad[*]:-}" \
	test ${#bad[@]} = 0
check "slow (a): cat of a late file waited $(job_secs cat-late 2>/dev/null)s, then read it whole" \
	test "$(job_rc cat-late):$(sha256sum <"$JOBS/cat-late.out" | cut -d' ' -f1)" = \
	"0:$(info "i['tags']['slow']['files']['q/late-cat']")"
check "slow (a): cat through a directory that arrives late" \
	output_is "in a directory that arrives late" cat "$JOBS/cat-latedir.out"
for n in stat-never stat-never-d stat-neverdir; do
	check "slow (a): $n: ENOENT after $(job_secs $n 2>/dev/null)s" \
		bash -c "[ \"\$(cut -d' ' -f1 '$JOBS/$n.done')\" != 0 ] && grep -q 'No such file' '$JOBS/$n.err'"
	check "slow (a): $n: ... only once layer 1 was complete" state_in "$JOBS/$n.status" 1 complete
done
check "slow (b): ls of d/ waited $(job_secs ls-d 2>/dev/null)s, then listed all $(info "len(i['tags']['slow']['ls_d'])") entries" \
	output_is "$(info "'\n'.join(i['tags']['slow']['ls_d'])")" cat "$JOBS/ls-d.out"
check "slow (b): ... answered only once layer 1 was complete" state_in "$JOBS/ls-d.status" 1 complete
check "slow (b): ls of the layer root waited $(job_secs ls-root 2>/dev/null)s, then listed all $(info "len(i['tags']['slow']['ls_root'])") entries" \
	output_is "$(info "'\n'.join(i['tags']['slow']['ls_root'])")" cat "$JOBS/ls-root.out"
check "slow (b): ... answered only once layer 1 was complete" state_in "$JOBS/ls-root.status" 1 complete

check "slow: image complete" wait_complete "$MNT" 60
log "slow: layer 1 ($TAR_SIZE tar bytes) complete after $(since "$t_mount")s"
check "slow: every file of layer 1 has its content" python3 - "$INFO" "$L1" <<'PYEOF'
import hashlib, json, sys
files = json.load(open(sys.argv[1]))["tags"]["slow"]["files"]
bad = []
for name, want in files.items():
    h = hashlib.sha256()
    with open(sys.argv[2] + "/" + name, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    if h.hexdigest() != want:
        bad.append(name)
if bad:
    sys.exit("wrong content: %s" % bad)
PYEOF
t0=$(now)
check "slow: once complete, a missing name is ENOENT at once" errno_is "No such file" stat "$L1/d/never2"
check "slow: ... within ${PROMPT_LIMIT}s ($(since "$t0")s)" awk -v s="$(since "$t0")" -v l="$PROMPT_LIMIT" 'BEGIN { exit !(s <= l) }'
check "slow: CACHE/layers has both layers" \
	test -d "$CACHE/layers/${SLOW_DIGEST#sha256:}" -a -d "$CACHE/layers/${BASE_DIGEST#sha256:}"
check "slow: CACHE/tmp is empty" test -z "$(ls -A "$CACHE/tmp")"
# Parallel range GETs went through the proxy.
check "slow: layer 1 came as $(grep -c "blobs/$SLOW_DIGEST range=bytes=.* -> 206" "$T/proxy.log") range GETs, all 206" \
	bash -c "[ \$(grep -c 'blobs/$SLOW_DIGEST range=bytes=.* -> 206' '$T/proxy.log') -gt 10 ] && ! grep 'blobs/$SLOW_DIGEST' '$T/proxy.log' | grep -v ' -> 206'"
[ -z "$FD_EARLY" ] || exec {FD_EARLY}<&-
check "slow: soci-fuse umount" sf_umount "$MNT"

# ============================================================ (d) (e) (f)
# All five images are mounted at once (own cache each), through the proxy.
declare -A WANT_ERR=(
	[blobflip]="digest mismatch"
	[midflip]="digest mismatch"
	[gzflip]="digest mismatch"
	[diffid]="diff_id mismatch"
	[badtar]="offset $(info "i['tags']['badtar']['bad_offset']")"
)
declare -A WHAT=(
	[blobflip]="(d) gzip header byte flipped"
	[midflip]="(d) data byte flipped in an uncompressed blob"
	[gzflip]="(d) byte flipped mid gzip stream"
	[diffid]="(e) wrong diff_id"
	[badtar]="(f) bad tar header checksum"
)
FAILCASES=(blobflip midflip gzflip diffid badtar)
t_fail=$(now)
for c in "${FAILCASES[@]}"; do
	sf_mount --cache "$T/cache-$c" "${SF_OPTS[@]}" "$PROXY/test/stream:$c" "$T/mnt-$c" ||
		fail "$c: soci-fuse mount failed"
done
# (only now: a daemon started later would inherit the open files below and
# keep those mounts busy)
for c in "${FAILCASES[@]}"; do
	m=$T/mnt-$c
	is_mounted "$m" || continue
	# a lookup that will wait for a name that never comes, and a file
	# opened (not read) before the layer fails
	job "$m" "$c-never" stat "$m/layers/1/d/never"
	eval "exec {FD_$c}<'$m/layers/1/d/early-1'" || log "$c: could not open d/early-1 before the failure"
	log "$c: mounted; layer 1: $(layer_status "$m" 1)"
done
for c in "${FAILCASES[@]}"; do
	m=$T/mnt-$c
	p="$c ${WHAT[$c]}"
	is_mounted "$m" || continue
	digest=$(info "i['tags']['$c']['layers'][1]")
	base=$(info "i['tags']['$c']['layers'][0]")
	if ! wait_state "$m" 1 failed complete; then
		fail "$p: layer 1 neither failed nor complete"
		continue
	fi
	err=$(layer_error "$m" 1)
	log "$c: layer 1 $(layer_status "$m" 1 | cut -d' ' -f1) (seen $(since "$t_fail")s after the first of these mounts): $err"
	check "$p: status: layer 1 'failed'" state_in "$m/status" 1 failed
	check "$p: status: the error says '${WANT_ERR[$c]}'" says "${WANT_ERR[$c]}" "$err"
	check "$p: status: the error names the layer digest" grep -qF -- "$digest" <<<"$err"
	if [ "$c" = diffid ]; then
		check "$p: status: the error names the expected diff_id" \
			grep -qF -- "$(info "i['tags']['diffid']['wrong_diff_id']")" <<<"$err"
	fi
	check "$p: status: layer 0 complete, image not" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["layers"][0]["state"] == "complete" and d["complete"] is False, d' "$m/status"
	# entries looked up before the failure may stay in the kernel's cache
	# for up to 1 s (the streaming timeout): let that pass
	sleep 1.1
	check "$p: a lookup parked before the failure got EIO" \
		bash -c "job_ok() { [ -s '$JOBS/$c-never.done' ]; }; for i in \$(seq 100); do job_ok && break; sleep 0.1; done; job_ok && [ \"\$(cut -d' ' -f1 '$JOBS/$c-never.done')\" != 0 ] && grep -q 'Input/output error' '$JOBS/$c-never.err'"
	fdvar=FD_$c
	if [ -n "${!fdvar:-}" ]; then
		check "$p: read of a file opened before the failure: EIO" errno_is "Input/output error" cat "/dev/fd/${!fdvar}"
		eval "exec {$fdvar}<&-"
	else
		fail "$p: d/early-1 could not be opened before the failure (layer failed too early?)"
	fi
	check "$p: cat of an early file: EIO" errno_is "Input/output error" cat "$m/layers/1/d/early-0"
	check "$p: stat of an early file: EIO" errno_is "Input/output error" stat "$m/layers/1/d/early-2"
	check "$p: stat of a missing name: EIO" errno_is "Input/output error" stat "$m/layers/1/d/nothing"
	check "$p: ls of a directory: EIO" errno_is "Input/output error" ls "$m/layers/1/d"
	check "$p: ls of the layer root: EIO" errno_is "Input/output error" ls "$m/layers/1"
	check "$p: nothing of it under CACHE/layers/" test ! -e "$T/cache-$c/layers/${digest#sha256:}"
	check "$p: nothing of it under CACHE/tmp/" test -z "$(ls -A "$T/cache-$c/tmp")"
	check "$p: layer 0 is in CACHE/layers/ (so the cache was written)" \
		test -d "$T/cache-$c/layers/${base#sha256:}"
	check "$p: layer 0 still works (cat)" output_is "hello from layer 0" timeout 10 cat "$m/layers/0/base/hello"
	check "$p: layer 0 still works (ls)" output_is "$(printf 'data\nhello')" timeout 10 ls -1 "$m/layers/0/base"
	check "$p: status still readable" python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$m/status"
done
# The background lookups have inherited the files opened above: all must be
# over before the unmounts.
FJOBS=()
for c in "${FAILCASES[@]}"; do FJOBS+=("$c-never"); done
job_wait 30 "${FJOBS[@]}" || true
for c in "${FAILCASES[@]}"; do
	is_mounted "$T/mnt-$c" && check "$c: soci-fuse umount" sf_umount "$T/mnt-$c"
done

log "total $(since "$T_START")s"
summary
