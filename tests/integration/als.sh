#!/bin/bash
# als.sh - `soci-fuse store` as podman's Additional Layer Store, proved with
# podman itself (4.3.1 on Debian 12: containers/storage 1.43).
#
#   1. Fallback, while the store's cache is empty: a reference the store
#      cannot resolve (registry port closed; podman reaches it through a
#      registries.conf mirror) and a digest that is not a layer of what the
#      store resolves for the name (a second registry with another image
#      under that name): podman pulls normally.
#   2. The store is mounted; a podman whose storage.conf has
#      additionallayerstores = ["<store>:ref"] pulls the two-layer test
#      image and `podman run`s busybox from it.  Evidence that the layers
#      came through the store: podman's layer diffs are symlinks into the
#      store, and the store's .status counts the lookups and users.
#   3. `podman image mount` of it equals a normal pull of the same image in
#      separate storage (treediff: every attribute, xattrs, whiteouts).
#   4. The store's files: info matches the manifest and config (diff-size:
#      the size of the decompressed blob), blob is the registry's exact
#      bytes, garbage and unknown refs answer ENOENT, a reference by digest
#      is served, so is a cached layer by its digest.
#   5. rmi releases: every layer's user count returns to 0.
#   5b. The zstd variant: pulled and run through the store, compression 4.
#   5c. SIGTERM while a container runs on the store: the daemon serves on,
#      and exits once the container is gone.
#   6. A served layer's path keeps working after its tag moved on, and
#      after a restart of the store with the registry down.
#   6b. A store on a cache filled by `soci-fuse mount`, registry down.
#   7. The daemon: SIGTERM, a second SIGTERM while in use, SIGKILL and the
#      next store.
#   8. info of a streaming layer waits, interruptibly.
#   9. A layer whose pull failed: refused once, then pulled afresh.
#  10. Lookups in a registry that never answers do not hold up the store.
#  11. User errors: one line, non-zero, nothing mounted.
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"
# crun refuses this host's hybrid cgroups (see rootfs.sh); podman's default
# rlimits (nofile, nproc) are above what a container here may set.
RUN_OPTS=(--rm --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
command -v runc >/dev/null || die "runc is not installed (contrib/quickstart.sh installs it)"

start_registry
build_test_image
REF=$REGISTRY/test/img:gzip
STORE=$T/store
mkdir -p "$STORE"

# A second registry with another image under test/img:gzip (for 5.).
R1=$REGISTRY R1_PID=$REGISTRY_PID
start_registry "$T/registry2/storage"
R2=$REGISTRY
BG_PIDS+=("$REGISTRY_PID")
REGISTRY=$R1 REGISTRY_PID=$R1_PID
bash "$INTEG_DIR/mkimage.sh" --minimal --repo test/img --push "$R2" "$T/other" >/dev/null
CLOSED=127.0.0.1:$(free_port)

# Both fake names are mirrored to the real registry for podman; the store
# only ever sees the names.
export CONTAINERS_REGISTRIES_CONF=$T/registries.conf
cat >"$CONTAINERS_REGISTRIES_CONF" <<EOF
[[registry]]
location = "$CLOSED"
insecure = true
[[registry.mirror]]
location = "$R1"
insecure = true

[[registry]]
location = "$R2"
insecure = true
[[registry.mirror]]
location = "$R1"
insecure = true
EOF

# podman_als NAME ARGS...: podman (bounded by a timeout) with its own storage
# $T/NAME whose storage.conf has the store.  Not podman_cmd: podman drops storage.conf's
# driver options when --storage-driver is given.
podman_als() {
	local p=$T/$1 rr
	shift
	if [ ! -f "$p/storage.conf" ]; then
		mkdir -p "$p/root" "$p/tmp"
		rr=$(mktemp -d "$PODMAN_RR/XXXXXX")
		ln -s "$rr" "$p/runroot"
		cat >"$p/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$p/root"
runroot = "$rr"

[storage.options]
additionallayerstores = ["$STORE:ref"]
EOF
	fi
	CONTAINERS_STORAGE_CONF=$p/storage.conf timeout 300 podman --tmpdir "$p/tmp" \
		--events-backend file --cgroup-manager cgroupfs "$@"
}

status_field() { # status_field PYTHON-EXPR (doc = the store's .status)
	python3 -c 'import json, sys; doc = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$STORE/.status" "$1"
}

# diffs_into_store NAME N: podman storage NAME has N layers whose diff is a
# symlink into the store (how containers/storage takes an ALS layer).
diffs_into_store() {
	local n=0 target
	for d in "$T/$1"/root/overlay/*/diff; do
		[ -L "$d" ] || continue
		target=$(readlink "$d")
		case $target in "$STORE"/*) n=$((n + 1)) ;; *) echo "$d -> $target" >&2 ;; esac
	done
	[ "$n" = "$2" ] || { echo "$n layer diffs link into the store, want $2" >&2; return 1; }
}

no_diffs_into_store() {
	! find "$T/$1/root/overlay" -maxdepth 2 -name diff -type l | grep -q .
}

output_is() {
	local want=$1 got
	shift
	got=$("$@" 2>&1) || { echo "exit $?: $got" >&2; return 1; }
	[ "$got" = "$want" ] || { printf 'got:  %q\nwant: %q\n' "$got" "$want" >&2; return 1; }
}

enoent() { # enoent PATH: stat fails with ENOENT
	local err
	if err=$(stat "$1" 2>&1); then
		echo "$1 exists" >&2
		return 1
	fi
	grep -q 'No such file' <<<"$err" || { echo "$err" >&2; return 1; }
}

b64() { printf '%s' "$1" | base64 -w0; }

# daemon_alive PID / wait_daemon_gone PID SECONDS: an exited daemon may
# stay a zombie for a while (orphans are reaped by whoever is init here).
daemon_alive() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}
wait_daemon_gone() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		daemon_alive "$1" || return 0
		sleep 0.1
	done
	return 1
}
manifest_digest() {
	echo "sha256:$(skopeo inspect --tls-verify=false --raw "docker://$1" | sha256sum | cut -d' ' -f1)"
}

# expect_infos REF FILE COMPRESSION: what info must say for every layer of
# REF (a tag in a plain-HTTP registry), into FILE as JSON: digests and sizes
# from the manifest, diff_id from the config, diff-size the bytes of the
# decompressed blob (what podman's own pull records), compression 2 (gzip)
# or 4 (zstd).  Fails when the manifest's media types disagree with it.
expect_infos() {
	local manifest config
	manifest=$(skopeo inspect --tls-verify=false --raw "docker://$1") || return 1
	config=$(skopeo inspect --tls-verify=false --config --raw "docker://$1") || return 1
	python3 - "$1" "$3" "$manifest" "$config" >"$2" <<'EOF'
import json, subprocess, sys
ref, compression = sys.argv[1], int(sys.argv[2])
manifest, config = json.loads(sys.argv[3]), json.loads(sys.argv[4])
host, _, path = ref.partition("/")
repo = path.rsplit(":", 1)[0]
tool = {2: ("+gzip", ["zcat"]), 4: ("+zstd", ["zstd", "-dc"])}[compression]
out = []
for i, layer in enumerate(manifest["layers"]):
    if not layer["mediaType"].endswith(tool[0]):
        sys.exit("%s: layer %d is %s" % (ref, i, layer["mediaType"]))
    url = "http://%s/v2/%s/blobs/%s" % (host, repo, layer["digest"])
    blob = subprocess.run(["curl", "-fsS", url], check=True, capture_output=True).stdout
    tar = subprocess.run(tool[1], input=blob, check=True, capture_output=True).stdout
    out.append({"compressed-diff-digest": layer["digest"], "compressed-size": layer["size"],
                "diff-digest": config["rootfs"]["diff_ids"][i], "diff-size": len(tar),
                "compression": compression})
json.dump(out, sys.stdout)
EOF
}

# infos_match STORE REF FILE: the info of every layer of REF in STORE is
# what expect_infos wrote to FILE.
infos_match() {
	python3 - "$1/$(b64 "$2")" "$3" <<'EOF'
import json, os, sys
base, want = sys.argv[1], json.load(open(sys.argv[2]))
bad = []
for w in want:
    got = json.load(open(os.path.join(base, w["compressed-diff-digest"], "info")))
    diff = {k: (got.get(k), v) for k, v in w.items() if got.get(k) != v}
    if diff:
        bad.append("%s (got, want): %s" % (w["compressed-diff-digest"], diff))
sys.exit("\n".join(bad) or None)
EOF
}

# ---------------------------------------------------------------- store
timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE" ||
	die "soci-fuse store did not start"
check "store is mounted" is_mounted "$STORE"
mapfile -t LAYERS < <(manifest_layers "$REF")
check "the test image has two layers" test "${#LAYERS[@]}" = 2

# ---------------------------------------------------------------- 1. fallback
# (first: the store's cache is empty; a layer it has is served by digest)
misses=0
check "unknown ref: podman falls back and pulls" \
	podman_als podman-fb1 pull -q --tls-verify=false "$CLOSED/test/img:gzip"
check "unknown ref: the store said no" test "$(status_field "doc['misses'] > $misses")" = True
check "unknown ref: podman unpacked the layers itself" no_diffs_into_store podman-fb1

misses=$(status_field 'doc["misses"]')
check "unknown digest: podman falls back and pulls" \
	podman_als podman-fb2 pull -q --tls-verify=false "$R2/test/img:gzip"
check "unknown digest: the store resolved the name but had no such layer" \
	test "$(status_field "doc['misses'] >= $misses + 2 and any(r['ref'] == '$R2/test/img:gzip' and r['manifest'] and 'error' not in r for r in doc['refs'])")" = True
check "unknown digest: podman unpacked the layers itself" no_diffs_into_store podman-fb2

# ---------------------------------------------------------------- 2. run

check "podman pull through the store" \
	podman_als podman-als pull -q --tls-verify=false "$REF"
check "podman run prints from the image" output_is "hello from the store" \
	podman_als podman-als run "${RUN_OPTS[@]}" "$REF" \
	/bin/busybox echo "hello from the store"
check "both layer diffs are symlinks into the store" diffs_into_store podman-als 2
check "the store served both layers" test "$(status_field 'doc["lookups"] >= 2')" = True
check "the store counts users of both layers" \
	test "$(status_field 'len(doc["layers"]) == 2 and all(l["users"] >= 1 for l in doc["layers"])')" = True
check "podman images knows the size" test -n "$(podman_als podman-als images --format '{{.Size}}' "$REF")"

# ---------------------------------------------------------------- 3. compare
if merged=$(podman_als podman-als image mount "$REF") && [ -d "$merged" ]; then
	reference=$(podman_reference "$REF")
	# podman's own unpack clamps pre-1970 mtimes to 0 (mount-compare.sh)
	check "podman image mount via the store equals a normal pull" \
		tree_compare --dir-mtime --negative-mtime-as-epoch "$reference" "$merged"
	podman_als podman-als image unmount "$REF" >/dev/null || true
else
	fail "podman image mount: $merged"
fi

# ---------------------------------------------------------------- 4. files
LDIR=$STORE/$(b64 "$REF")/${LAYERS[1]}
LDIR0=$STORE/$(b64 "$REF")/${LAYERS[0]}
check "info of both layers matches manifest, config and the unpacked blobs" \
	expect_infos "$REF" "$T/infos.gzip" 2
check "... and the store's info says so" infos_match "$STORE" "$REF" "$T/infos.gzip"
INFO0=$(cat "$LDIR0/info")
info_unchanged() { [ "$(cat "$LDIR0/info")" = "$INFO0" ]; }
curl -fsS -o "$T/blob.ref" "http://$REGISTRY/v2/test/img/blobs/${LAYERS[1]}"
check "blob is the registry's exact bytes" cmp "$T/blob.ref" "$LDIR/blob"
check "blob reads were counted" test "$(status_field 'doc["blob_bytes"] > 0')" = True
check "other users cannot look into the store" \
	bash -c "! runuser -u nobody -- stat '$LDIR0/info' >/dev/null 2>&1"
check "a name that is not base64: ENOENT" enoent "$STORE/not-base64!"
check "an unknown digest of a known ref: ENOENT" \
	enoent "$STORE/$(b64 "$REF")/sha256:$(printf '0%.0s' {1..64})/diff"
check "a ref at a closed port, a layer not in the cache: ENOENT" \
	enoent "$STORE/$(b64 "$CLOSED/test/img:gzip")/sha256:$(printf '1%.0s' {1..64})/diff"
check "a ref at a closed port, a layer in the cache: served by digest" \
	test -x "$STORE/$(b64 "$CLOSED/test/img:gzip")/${LAYERS[0]}/diff/bin/busybox"
MDIGEST=$(manifest_digest "$REF")
check "a reference by digest" \
	test -x "$STORE/$(b64 "$REGISTRY/test/img@$MDIGEST")/${LAYERS[0]}/diff/bin/busybox"
check "layer 0's diff has busybox" test -x "$STORE/$(b64 "$REF")/${LAYERS[0]}/diff/bin/busybox"
# layers the store serves are in use: a gc that may remove everything else
# keeps them (podman's diff symlinks point into them)
check "cache gc keeps the layers the store serves" "$SOCI_FUSE" cache gc --cache "$T/cache"
check "... both are still complete in the cache" \
	test -d "$T/cache/layers/${LAYERS[0]#sha256:}" -a -d "$T/cache/layers/${LAYERS[1]#sha256:}"
check "... and still served" test -x "$STORE/$(b64 "$REF")/${LAYERS[0]}/diff/bin/busybox"

# ---------------------------------------------------------------- 5. release
check "podman rmi" podman_als podman-als rmi -f "$REF"
check "rmi released every layer" \
	test "$(status_field 'len(doc["layers"]) >= 2 and all(l["users"] == 0 for l in doc["layers"])')" = True

# ---------------------------------------------------------------- 5b. zstd
# The zstd variant (other blobs, the same diff_ids) in a storage of its own.
ZREF=$REGISTRY/test/img:zstd
check "zstd: podman pull through the store" \
	podman_als podman-zstd pull -q --tls-verify=false "$ZREF"
check "zstd: podman run reads the file layer 1 added" output_is "layer 1 was here" \
	podman_als podman-zstd run "${RUN_OPTS[@]}" "$ZREF" /bin/busybox cat /layer1-marker
check "zstd: both layer diffs are symlinks into the store" diffs_into_store podman-zstd 2
check "zstd: info of both layers matches manifest, config and the unpacked blobs" \
	expect_infos "$ZREF" "$T/infos.zstd" 4
check "zstd: ... and the store's info says so (compression 4)" \
	infos_match "$STORE" "$ZREF" "$T/infos.zstd"
check "zstd: podman rmi" podman_als podman-zstd rmi -f "$ZREF"
check "zstd: rmi released its layers too" \
	test "$(status_field 'len(doc["layers"]) >= 4 and all(l["users"] == 0 for l in doc["layers"])')" = True

# ---------------------------------------------------------------- 5c. stop in use
# systemd stops the unit with SIGTERM.  The daemon unmounts the store at
# once (new lookups fail, so podman would pull by itself), but while a
# container runs on its layers the kernel keeps the connection (overlayfs
# holds clones of the lower mounts) and the daemon serves on; it exits by
# itself once the container is gone.  The container never sees ENOTCONN.
# (A second SIGTERM forces: 7.)
BIG=special/big/random-20mib
BIG_SUM=$(sha256sum <"$T/image/stage/l0/$BIG" | cut -d' ' -f1)
run_busy() { # a container that runs until removed (busybox ignores TERM as pid 1)
	podman_als podman-als run -d -q --tls-verify=false --name sf-busy --runtime runc \
		--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$REF" /bin/busybox sleep 600 >/dev/null
}
check "in use: a container runs from the store" run_busy
pid=$(soci_fuse_pids "$STORE")
kill -TERM "$pid"
sleep 3
check "in use: SIGTERM leaves the daemon running" daemon_alive "$pid"
check "in use: ... and takes the store out of the namespace" bash -c "! mountpoint -q '$STORE'"
check "in use: ... so lookups fail (podman falls back)" enoent "$LDIR0/diff"
check "in use: the container reads a 20 MiB file of layer 0" output_is "$BIG_SUM  -" \
	podman_als podman-als exec sf-busy /bin/busybox sh -c "sha256sum </$BIG"
check "in use: ... and a file of layer 1" output_is "layer 1 was here" \
	podman_als podman-als exec sf-busy /bin/busybox cat /layer1-marker
check "in use: the container is removed" podman_als podman-als rm -f -t 0 sf-busy
check "in use: then the daemon exits" wait_daemon_gone "$pid" 30
check "in use: the store starts again" timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE"
check "in use: podman rmi" podman_als podman-als rmi -f "$REF"

# (for 6b: a soci-fuse mount of the image fills a cache of its own)
mount_complete() { # REF CACHE MNT
	sf_mount --cache "$2" "$1" "$3" && wait_complete "$3" && sf_umount "$3"
}
check "shared: a soci-fuse mount of the image completes" \
	mount_complete "$REF" "$T/cache-shared" "$T/mnt-shared"

# ---------------------------------------------------------------- 6. later
# podman's layers symlink the path they were served under: it must keep
# working when the tag has moved on (the store now resolves REF to another
# image) and after a restart with the registry down.
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false --preserve-digests \
	"docker://$R2/test/img:gzip" "docker://$REF"
check "soci-fuse umount of the store" sf_umount "$STORE"
check "the store restarts" timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE"
check "the tag moved: a layer served before is still served" test -x "$LDIR0/diff/bin/busybox"
check "the tag moved: its info is unchanged" info_unchanged
check "the tag moved: REF now resolves to the other image" \
	test "$(status_field "[r['manifest'] for r in doc['refs'] if r['ref'] == '$REF'] == ['$(manifest_digest "$R2/test/img:gzip")']")" = True
check "soci-fuse umount of the store again" sf_umount "$STORE"
stop_registry
check "the store restarts without the registry" \
	timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE"
check "offline: the cached layer is served" test -x "$LDIR0/diff/bin/busybox"
check "offline: its info is unchanged" info_unchanged
check "soci-fuse umount of the store at last" sf_umount "$STORE"

# ---------------------------------------------------------------- 6b. shared cache
# A store on the cache that `soci-fuse mount` filled (before 6.), with the
# registry down: it resolves REF from the saved resolve and serves both
# layers from the cache, nothing to download.
SHARED=$T/store-shared
mkdir -p "$SHARED"
check "shared: a store on the mount's cache starts without the registry" \
	timeout 60 "$SOCI_FUSE" store --cache "$T/cache-shared" "$SHARED"
for i in 0 1; do
	check "shared: layer $i's diff equals the staged layer" \
		tree_compare --quiet --dir-mtime --overlay-xattrs --loose-whiteouts \
		"$T/image/stage/l$i" "$SHARED/$(b64 "$REF")/${LAYERS[$i]}/diff"
done
check "shared: info of both layers" infos_match "$SHARED" "$REF" "$T/infos.gzip"
check "shared: the layers are complete, none pulled" \
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(not (len(d["layers"]) == 2 and all(l["state"] == "complete" for l in d["layers"])))' \
	"$SHARED/.status"
check "shared: umount" sf_umount "$SHARED"
# ---------------------------------------------------------------- 7. daemon
# SIGTERM unmounts; SIGKILL leaves a dead mount the next store cleans up.
timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE"
pid=$(soci_fuse_pids "$STORE")
check "term: a daemon serves the store" test -n "$pid"
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
check "term: the daemon exited" bash -c "! kill -0 $pid 2>/dev/null"
check "term: nothing mounted any more" bash -c "! mountpoint -q '$STORE'"

# A second SIGTERM forces, as before: the daemon exits although something
# (here a process's cwd) still uses the store.
timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE"
pid=$(soci_fuse_pids "$STORE")
(cd "$STORE" && exec sleep 600) &
holder=$!
BG_PIDS+=("$holder")
sleep 0.5
kill -TERM "$pid"
sleep 2
check "force: the first SIGTERM while in use leaves the daemon running" daemon_alive "$pid"
check "force: ... the store detached from the namespace" bash -c "! mountpoint -q '$STORE'"
check "force: ... and serving who still uses it" test -f "/proc/$holder/cwd/.status"
kill -TERM "$pid"
check "force: the second SIGTERM ends it" wait_daemon_gone "$pid" 10
kill "$holder"
wait "$holder" 2>/dev/null || true

timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE"
pid=$(soci_fuse_pids "$STORE")
stat "$STORE/.status" >/dev/null
kill -KILL "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if timeout 60 "$SOCI_FUSE" store --cache "$T/cache" "$STORE" 2>"$T/err"; then
	check "kill: the next store cleaned the dead mount" grep -q "cleaned up a dead mount" "$T/err"
	check "kill: the store serves again" test -f "$STORE/.status"
	check "kill: a second store on the same mountpoint is refused" \
		bash -c "! timeout 60 '$SOCI_FUSE' store --cache '$T/cache' '$STORE' 2>'$T/err2' && grep -q busy '$T/err2'"
	check "kill: umount" sf_umount "$STORE"
else
	fail "kill: the next store: $(cat "$T/err")"
fi

# ---------------------------------------------------------------- 8. waiting
# info answers once the layer is complete; until then the read waits and is
# interruptible.  Through regproxy.py at 1 KB/s the ~1 MB layer of the
# other image cannot complete during the test.
start_regproxy slow --upstream "$R2" --rate 1000
SLOW_REF=$PROXY/test/img:gzip
SLOW_DIR=$T/store-slow/$(b64 "$SLOW_REF")/$(manifest_layers "$SLOW_REF" | head -n 1)
mkdir -p "$T/store-slow"
timeout 60 "$SOCI_FUSE" store --cache "$T/cache-slow" "$T/store-slow" ||
	die "soci-fuse store (slow) did not start"
check "slow: the layer dir of a streaming layer appears at once" test -d "$SLOW_DIR/diff"
rc=0
timeout 2 cat "$SLOW_DIR/info" >/dev/null 2>&1 || rc=$?
check "slow: info waits for the layer, and the wait is interruptible (rc $rc)" test "$rc" = 124
check "slow: the store still answers" \
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(d["layers"][0]["state"] != "fetching")' \
	"$T/store-slow/.status"
check "slow: umount while the layer streams" sf_umount "$T/store-slow"

# ---------------------------------------------------------------- 9. retry
# A layer whose pull failed (a byte of its blob flipped in the registry's
# storage) is refused at its next lookup, so podman falls back, and pulled
# afresh at the one after.  Each lookup uses another name of the same image
# so that no kernel-cached entry answers in the store's place.
R2_LAYER=$(manifest_layers "$R2/test/img:gzip" | head -n 1)
R2_MDIGEST=$(manifest_digest "$R2/test/img:gzip")
hex=${R2_LAYER#sha256:}
R2_BLOB=$T/registry2/storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
cp "$R2_BLOB" "$T/blob.orig"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(5000); b = f.read(1); f.seek(5000); f.write(bytes([b[0] ^ 0xff]))' \
	"$R2_BLOB"
mkdir -p "$T/store-retry"
timeout 60 "$SOCI_FUSE" store --cache "$T/cache-retry" "$T/store-retry" ||
	die "soci-fuse store (retry) did not start"
retry_dir() { echo "$T/store-retry/$(b64 "$1")/$R2_LAYER"; }
layer_failed() {
	python3 - "$T/store-retry/.status" <<'EOF'
import json, sys, time
for _ in range(600):
    d = json.load(open(sys.argv[1]))
    if d["layers"] and d["layers"][-1]["state"] == "failed":
        sys.exit(0)
    time.sleep(0.1)
sys.exit("layer never failed: %s" % d)
EOF
}
check "retry: a corrupt layer is served at first" test -d "$(retry_dir "$R2/test/img:gzip")/diff"
check "retry: its pull fails" layer_failed
check "retry: the next lookup is refused (podman would fall back)" \
	enoent "$(retry_dir "$R2/test/img@$R2_MDIGEST")/diff"
cp "$T/blob.orig" "$R2_BLOB"
check "retry: the one after pulls afresh and serves it" \
	test -x "$(retry_dir "$R2/test/img:gzip@$R2_MDIGEST")/diff/bin/busybox"
check "retry: umount" sf_umount "$T/store-retry"

# ---------------------------------------------------------------- 10. a hung registry
# A registry that accepts connections and never answers keeps a lookup
# resolving until the stall timeout (here far beyond the test).  More such
# lookups than the daemon has FUSE threads (16) must not hold up anything
# else: another reference resolves and its layer is served meanwhile.
# (The registry R1 is stopped since 6.; R2 serves.)
HANG_PORT=$(free_port)
python3 - "$HANG_PORT" "$T/hang" <<'EOF' &
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
open(sys.argv[2] + ".ready", "w").close()
conns = []
while True:
    conns.append(s.accept()[0])
    with open(sys.argv[2] + ".n", "w") as f:
        f.write(str(len(conns)))
EOF
HANG_PID=$!
BG_PIDS+=("$HANG_PID")
for ((i = 0; i < 100; i++)); do [ -e "$T/hang.ready" ] && break; sleep 0.1; done
mkdir -p "$T/store-hang"
SOCI_FUSE_STALL_TIMEOUT=3600 timeout 60 "$SOCI_FUSE" store --cache "$T/cache-hang" "$T/store-hang" ||
	die "soci-fuse store (hang) did not start"
HANGERS=()
for i in $(seq 24); do
	# not R2_LAYER: once served, that one is served under any name
	stat "$T/store-hang/$(b64 "127.0.0.1:$HANG_PORT/hang/r$i:1")/sha256:$(printf '2%.0s' {1..64})" \
		>/dev/null 2>&1 &
	HANGERS+=($!)
done
hang_accepted() { # at least 12 resolves sit in the hung registry
	for ((i = 0; i < 600; i++)); do
		[ "$(cat "$T/hang.n" 2>/dev/null || echo 0)" -ge 12 ] && return 0
		sleep 0.1
	done
	return 1
}
check "hang: lookups of references in a registry that never answers wait" hang_accepted
check "hang: meanwhile another reference resolves and its layer is served" \
	timeout 120 test -x "$T/store-hang/$(b64 "$R2/test/img:gzip")/$R2_LAYER/diff/bin/busybox"
alive=0
for p in "${HANGERS[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=$((alive + 1)); fi; done
check "hang: ... before any of the 24 waiting lookups returned ($alive still wait)" test "$alive" = 24
kill "$HANG_PID"
hangers_enoent() { # the registry closed: every waiting lookup fails
	local p rc=0
	for p in "${HANGERS[@]}"; do if wait "$p"; then rc=1; fi; done
	return $rc
}
check "hang: once the registry closes, they all answer no such file" hangers_enoent
check "hang: umount" sf_umount "$T/store-hang"

# ---------------------------------------------------------------- 11. errors
one_line_error() { # one_line_error WANT-RC MENTION CMD...
	local want=$1 mention=$2 rc=0 n
	shift 2
	"$@" 2>"$T/err" >/dev/null || rc=$?
	n=$(grep -c . "$T/err" || true)
	if [ "$rc" = "$want" ] && grep -qF -- "$mention" "$T/err" && { [ "$n" = 1 ] || [ "$want" = 2 ]; }; then
		return 0
	fi
	echo "rc $rc, stderr: $(cat "$T/err")" >&2
	return 1
}
check "error: store without a mountpoint (usage, 2)" \
	one_line_error 2 "store needs MOUNTPOINT" "$SOCI_FUSE" store
check "error: a mountpoint that does not exist" \
	one_line_error 1 "$T/nope" "$SOCI_FUSE" store --cache "$T/cache" "$T/nope"
touch "$T/file"
check "error: a cache dir that is a file" \
	one_line_error 1 "$T/file" "$SOCI_FUSE" store --cache "$T/file" "$STORE"
check "errors leave nothing mounted" bash -c "! mountpoint -q '$STORE'"
summary
