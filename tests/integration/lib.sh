# shellcheck shell=bash
# lib.sh - shared helpers for soci-fuse integration tests.  Source it:
#
#   . "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"
#
# automake runs each test as `$(SHELL) script` from the build directory
# (which may be a VPATH dir such as build-asan/) with SOCI_FUSE=<binary> and
# TOP_SRCDIR=<source root> in the environment; helpers are found through
# TOP_SRCDIR, never through the current directory.
#
# What sourcing does:
#   - exits 77 (automake SKIP) when /dev/fuse is absent, the only skip;
#   - fails when not root (mknod, chroot and overlay mounts need root);
#   - creates the per-test temp dir $T and installs a cleanup trap that
#     unmounts everything mounted below $T (overlay first, then FUSE, then
#     the rest; fusermount3 -u / umount -l as fallbacks), stops the
#     registry and any soci-fuse daemon of this test, removes $T.
# Knobs: KEEP_TMP=1 keeps $T (still unmounted) for post-mortems.

set -euo pipefail

: "${TOP_SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${SOCI_FUSE:=$TOP_SRCDIR/soci-fuse}"
INTEG_DIR=$TOP_SRCDIR/tests/integration
TEST_NAME=$(basename "${0%.sh}")
export TOP_SRCDIR SOCI_FUSE

log() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
skip() { log "SKIP: $*"; exit 77; }

[ -c /dev/fuse ] || skip "/dev/fuse is absent"
[ "$(id -u)" = 0 ] || die "must run as root (mknod, chroot, overlay mounts)"

# ---------------------------------------------------------------- results
# check DESC CMD...: run CMD, print PASS/FAIL, count.  Never aborts.
PASSES=0
FAILS=0
pass() { PASSES=$((PASSES + 1)); printf 'PASS: %s\n' "$*"; }
fail() { FAILS=$((FAILS + 1)); printf 'FAIL: %s\n' "$*"; }
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}
# summary: the closing line, then exit 1 if anything failed.
summary() {
	printf '%s: %d passed, %d failed\n' "$TEST_NAME" "$PASSES" "$FAILS"
	[ "$FAILS" -eq 0 ]
}

# ---------------------------------------------------------------- temp dir
T=$(mktemp -d "${TMPDIR:-/tmp}/soci-fuse-$TEST_NAME.XXXXXX")
chmod 755 "$T"
REGISTRY=
REGISTRY_PID=
REGISTRY_DIR=
declare -ga BG_PIDS=()	# PIDs a test started in the background (e.g. a
			# `soci-fuse mount --foreground &`): killed by cleanup
declare -ga EXTRA_TMP=()	# more temp dirs to unmount below and remove

# Mount points below DIR (default $T) from /proc/self/mountinfo, deepest
# first, one per line, with their fs type: "TYPE PATH".
mounts_below() {
	local dir=${1:-$T}
	python3 - "$dir" <<'EOF'
import re, sys
root = sys.argv[1].rstrip("/")
unesc = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
out = []
for line in open("/proc/self/mountinfo"):
    f = line.split()
    mp = unesc(f[4])
    fstype = f[f.index("-") + 1]
    if mp == root or mp.startswith(root + "/"):
        out.append((mp, fstype))
# deepest first; among equals, the later (upper) mount first
for i, (mp, fs) in sorted(enumerate(out), key=lambda x: (-x[1][0].count("/"), -x[0])):
    print(fs, mp)
EOF
}

# True when PATH is a mount point.
is_mounted() { mountpoint -q -- "$1" 2>/dev/null; }

# soci_fuse_pids [PATH]: PIDs of soci-fuse processes (this binary, or an
# argv[0] named soci-fuse*) whose command line has an argument below $T, or
# equal to PATH when given.  Daemons fork from `soci-fuse mount` and keep its
# argv, which names the mount point; parallel tests have their own $T.
# shellcheck disable=SC2120 # (PATH is passed by the test scripts)
soci_fuse_pids() {
	local exe
	exe=$(readlink -f -- "$SOCI_FUSE" 2>/dev/null || true)
	python3 - "$T" "$exe" "${1:-}" <<'EOF'
import os, sys
tdir, exe, want = sys.argv[1].encode(), sys.argv[2], sys.argv[3].encode()
for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) == os.getpid():
        continue
    try:
        argv = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
        pexe = os.readlink("/proc/%s/exe" % p).removesuffix(" (deleted)")
    except OSError:
        continue
    name = os.path.basename(argv[0]) if argv else b""
    if pexe != exe and not name.startswith(b"soci-fuse"):
        continue
    if want:
        hit = any(a.rstrip(b"/") == want.rstrip(b"/") for a in argv)
    else:
        hit = any(a.startswith(tdir + b"/") for a in argv)
    if hit:
        print(p)
EOF
}

# umount_one TYPE PATH: best effort, with fallbacks, never blocking for
# long (a hung FUSE daemon must not hang the cleanup: umount -l detaches,
# and killing the daemon afterwards aborts its connection).
umount_one() {
	local fstype=$1 mp=$2
	case $fstype in
	fuse | fuse.*)
		timeout 30 "$SOCI_FUSE" umount "$mp" >/dev/null 2>&1 ||
			timeout 10 fusermount3 -u "$mp" >/dev/null 2>&1 ||
			timeout 10 umount "$mp" >/dev/null 2>&1 ||
			umount -l "$mp" >/dev/null 2>&1 || true
		;;
	*)
		timeout 30 umount "$mp" >/dev/null 2>&1 || umount -l "$mp" >/dev/null 2>&1 || true
		;;
	esac
}

# Unmount everything below DIR: overlays first (ours sit on the FUSE layer
# dirs; podman's image mounts are overlays too), then FUSE, then anything
# left (e.g. the private bind mount podman makes of its overlay dir).
umount_all_below() {
	local dir=${1:-$T} pass fstype mp
	for pass in overlay fuse rest; do
		while read -r fstype mp; do
			[ -n "$mp" ] || continue
			case $pass:$fstype in
			overlay:overlay | fuse:fuse | fuse:fuse.* | rest:*) umount_one "$fstype" "$mp" ;;
			esac
		done < <(mounts_below "$dir")
	done
}

# wait_gone TIMEOUT PID...: wait for the PIDs to exit; 1 if some remain.
wait_gone() {
	local t=$1 i p alive
	shift
	for ((i = 0; i < t * 10; i++)); do
		alive=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && return 0
		sleep 0.1
	done
	return 1
}

cleanup() {
	local rc=$? pids p
	set +e
	trap - EXIT INT TERM
	for p in "$T"/podman*/; do
		[ -f "$p/storage.conf" ] &&
			PODMAN_DIR=${p%/} podman_cmd image unmount --all >/dev/null 2>&1
	done
	umount_all_below "$T"
	for p in "${EXTRA_TMP[@]}"; do umount_all_below "$p"; done
	# Daemons exit by themselves once unmounted; give them time (ASan/LSan
	# reports are written at exit), then TERM, then KILL.
	pids=$(soci_fuse_pids)
	# shellcheck disable=SC2086
	if [ -n "$pids" ] && ! wait_gone 10 $pids; then
		log "soci-fuse daemon(s) still running after unmount: $pids; killing"
		kill $pids 2>/dev/null
		wait_gone 5 $pids || kill -9 $pids 2>/dev/null
	fi
	stop_registry
	for p in "${BG_PIDS[@]}"; do
		kill "$p" 2>/dev/null && { wait_gone 5 "$p" || kill -9 "$p" 2>/dev/null; }
	done
	if [ -n "$(mounts_below "$T")" ]; then
		log "still mounted below $T, not removing it:"
		mounts_below "$T" >&2
		rc=1
	elif [ "${KEEP_TMP:-0}" = 1 ]; then
		log "keeping $T"
	else
		rm -rf --one-file-system "$T"
		for p in "${EXTRA_TMP[@]}"; do
			[ -z "$(mounts_below "$p")" ] && rm -rf --one-file-system "$p"
		done
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- registry
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry [STORAGE_DIR]: docker-registry on a free 127.0.0.1 port with
# its own storage dir (default $T/registry/storage; pass the old one to
# restart with the same content).  Sets REGISTRY=127.0.0.1:PORT.
start_registry() {
	local storage=${1:-$T/registry/storage} port attempt i
	REGISTRY_DIR=$T/registry
	mkdir -p "$REGISTRY_DIR" "$storage"
	for attempt in 1 2 3; do
		port=$(free_port)
		cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
health:
  storagedriver:
    enabled: false
EOF
		docker-registry serve "$REGISTRY_DIR/config.yml" >>"$REGISTRY_DIR/log" 2>&1 &
		REGISTRY_PID=$!
		REGISTRY=127.0.0.1:$port
		for ((i = 0; i < 100; i++)); do
			if ! kill -0 "$REGISTRY_PID" 2>/dev/null; then
				break
			fi
			if curl -fsS -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null; then
				log "registry up at $REGISTRY (pid $REGISTRY_PID)"
				return 0
			fi
			sleep 0.1
		done
		kill "$REGISTRY_PID" 2>/dev/null
		wait "$REGISTRY_PID" 2>/dev/null || true
		REGISTRY_PID=
		log "registry on port $port did not come up (attempt $attempt)"
	done
	tail -n 20 "$REGISTRY_DIR/log" >&2
	die "could not start docker-registry"
}

# stop_registry: kill it and wait; REGISTRY keeps its value (so refs to it
# now point at a closed port).
stop_registry() {
	if [ -n "$REGISTRY_PID" ]; then
		kill "$REGISTRY_PID" 2>/dev/null
		wait "$REGISTRY_PID" 2>/dev/null || true
		REGISTRY_PID=
	fi
	return 0
}

# ---------------------------------------------------------------- regproxy
# start_regproxy NAME [regproxy.py options]: a regproxy.py (auth, redirects,
# faults, throttling, TLS; see its --help) in front of $REGISTRY (or of
# --upstream when given among the options; --host ::1 listens on IPv6).  Logs: $T/NAME.log (one line per
# request, stderr) and $T/NAME.jsonl (JSON per request).  Sets PROXY to
# 127.0.0.1:PORT and PROXY_STORE_PORT to the port of its blob store; the
# cleanup trap kills it (stop_regproxy NAME stops it earlier).
declare -gA REGPROXY_PIDS=()
start_regproxy() {
	local name=$1 i up=(--upstream "$REGISTRY")
	shift
	[[ " $* " == *" --upstream "* ]] && up=()
	rm -f "$T/$name.port" "$T/$name.store-port"
	python3 "$INTEG_DIR/regproxy.py" "${up[@]}" --port-file "$T/$name.port" \
		--store-port-file "$T/$name.store-port" --log "$T/$name.jsonl" "$@" \
		>/dev/null 2>"$T/$name.log" &
	REGPROXY_PIDS[$name]=$!
	BG_PIDS+=($!)
	for ((i = 0; i < 100; i++)); do
		[ -s "$T/$name.port" ] && break
		kill -0 "${REGPROXY_PIDS[$name]}" 2>/dev/null || break
		sleep 0.1
	done
	[ -s "$T/$name.port" ] || die "regproxy $name did not start: $(cat "$T/$name.log")"
	PROXY=127.0.0.1:$(cat "$T/$name.port")
	[[ " $* " == *" --host ::1 "* ]] && PROXY="[::1]:$(cat "$T/$name.port")"
	PROXY_STORE_PORT=$(cat "$T/$name.store-port")
	log "regproxy $name at $PROXY (store :$PROXY_STORE_PORT) $*"
}

stop_regproxy() {
	local pid=${REGPROXY_PIDS[$1]:-}
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null && { wait_gone 5 "$pid" || kill -9 "$pid" 2>/dev/null; }
	unset "REGPROXY_PIDS[$1]"
	return 0
}

# regproxy_count NAME PYTHON_EXPR: how many requests in NAME's JSON log
# satisfy the expression over `r` (a dict: t, listener, method, path, range,
# status, bytes, auth, fault, kind, grant, leak, expired, redirect, revoked).
regproxy_count() {
	python3 - "$T/$1.jsonl" "$2" <<'PYEOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    get = r.get
    if eval(sys.argv[2], {"r": r, "get": get}):
        n += 1
print(n)
PYEOF
}

# ---------------------------------------------------------------- images
# build_test_image [mkimage.sh options]: stage + build the test image into
# $T/image (see mkimage.sh) and push its variants to $REGISTRY as
# test/img:{gzip,zstd,v2s2,index}.  Staged layers (the expected content of
# <mnt>/layers/<i>) end up in $T/image/stage/l0, l1.
build_test_image() {
	[ -n "$REGISTRY" ] || die "build_test_image: start_registry first"
	bash "$INTEG_DIR/mkimage.sh" --push "$REGISTRY" "$@" "$T/image"
}

# manifest_layers REF: the layer digests of REF's manifest (following an
# index to this machine's platform), one per line, bottom first.
manifest_layers() {
	skopeo inspect --tls-verify=false "docker://$1" | python3 -c \
		'import json,sys; print("\n".join(json.load(sys.stdin)["Layers"]))'
}

# ---------------------------------------------------------------- podman
# podman with its storage isolated below $T (never touches the host's):
# PODMAN_DIR (default $T/podman) holds root, runroot, tmp and storage.conf.
# podman refuses a runroot longer than 50 characters, so runroots live in
# a short dir in /tmp (linked as $p/runroot; removed by cleanup).
PODMAN_RR=$(mktemp -d /tmp/sf-rr.XXXXXX)
EXTRA_TMP+=("$PODMAN_RR")
podman_cmd() {
	local p=${PODMAN_DIR:-$T/podman} rr
	mkdir -p "$p/root" "$p/tmp"
	if [ ! -e "$p/runroot" ]; then
		rr=$(mktemp -d "$PODMAN_RR/XXXXXX")
		ln -s "$rr" "$p/runroot"
	fi
	rr=$(readlink -f "$p/runroot")
	[ -f "$p/storage.conf" ] || cat >"$p/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$p/root"
runroot = "$rr"
EOF
	CONTAINERS_STORAGE_CONF=$p/storage.conf \
		podman --root "$p/root" --runroot "$rr" --storage-driver overlay \
		--tmpdir "$p/tmp" --events-backend file --cgroup-manager cgroupfs "$@"
}

# podman_reference IMAGE: pull IMAGE (--tls-verify=false) into a storage of
# its own and print the merged dir of `podman image mount`.  One storage per
# call: the variants of the test image share config and diff_ids, so in one
# storage podman would unpack the first variant and merely re-tag it for
# the others (the zstd layers would never be decoded).
# (Usually called as $(podman_reference ...), a subshell: no state in
# variables, the next free $T/podman-N is found on disk.)
podman_reference() {
	local image=$1 n=1
	while [ -e "$T/podman-$n" ]; do n=$((n + 1)); done
	PODMAN_DIR=$T/podman-$n podman_cmd pull -q --tls-verify=false "$image" >/dev/null ||
		die "podman pull $image failed"
	PODMAN_DIR=$T/podman-$n podman_cmd image mount "$image"
}

# ---------------------------------------------------------------- compare
# tree_compare [treediff options] DIR_A DIR_B: exit 0 iff identical.
# Bounded by TREEDIFF_TIMEOUT seconds (default 600): reads block until
# soci-fuse has the data, a hang must end as a failure.
tree_compare() {
	timeout "${TREEDIFF_TIMEOUT:-600}" python3 "$INTEG_DIR/treediff.py" "$@"
}

# ---------------------------------------------------------------- soci-fuse
# sf_mount [options] REF MNT: mount with a timeout; the mount command must
# return once the mount is live.
sf_mount() {
	local mnt=${*: -1}
	mkdir -p "$mnt"
	timeout 120 "$SOCI_FUSE" mount "$@"
}

sf_umount() {
	timeout 60 "$SOCI_FUSE" umount "$1"
}

# wait_complete MNT [TIMEOUT_S]: poll MNT/status until "complete": true.
# Fails early when a layer is "failed".
wait_complete() {
	python3 - "$1/status" "${2:-120}" <<'EOF'
import json, sys, time
path, limit = sys.argv[1], float(sys.argv[2])
end = time.time() + limit
doc = None
while time.time() < end:
    try:
        doc = json.load(open(path))
    except (OSError, ValueError) as e:
        doc = {"error": str(e)}
    if doc.get("complete") is True:
        sys.exit(0)
    if any(l.get("state") == "failed" for l in doc.get("layers", [])):
        print("layer failed: %s" % json.dumps(doc), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)
print("not complete after %gs: %s" % (limit, json.dumps(doc)), file=sys.stderr)
sys.exit(1)
EOF
}

# overlay_mount LOWERDIR DIR: overlay with upper+work under DIR, merged at
# DIR/merged (printed).
overlay_mount() {
	local lower=$1 d=$2
	mkdir -p "$d/upper" "$d/work" "$d/merged"
	mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" ||
		return 1
	echo "$d/merged"
}

# ---------------------------------------------------------------- cache
# chunkmap_bytes FILE: bytes of the blob that the chunk map FILE (a
# tmp/<hex>/blob.map) records as final; 0 when there is none or its header
# is bad.  The format is src/chunkmap.c's, parsed here independently of the
# C code.
chunkmap_bytes() {
	python3 - "$1" <<'EOF_PY'
import struct, sys, zlib
try:
    d = open(sys.argv[1], "rb").read()
except OSError:
    print(0); sys.exit()
if len(d) < 96 or d[:8] != b"SFCHMAP1" or struct.unpack("<I", d[80:84])[0] != zlib.crc32(d[:80]):
    print(0); sys.exit()
size = struct.unpack("<Q", d[8:16])[0]
rs, pos = [], 96
while pos + 32 <= len(d):
    r = d[pos:pos + 32]
    magic, _, off, ln, crc = struct.unpack("<IIQQI", r[:28])
    if magic != 0x52434653 or crc != zlib.crc32(r[:24]) or ln == 0 or off + ln > size:
        break
    rs.append((off, off + ln)); pos += 32
rs.sort(); total, end = 0, 0
for a, b in rs:
    a = max(a, end)
    if b > a: total += b - a; end = b
print(total)
EOF_PY
}
