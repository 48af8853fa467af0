#!/bin/bash
# pull.sh - `soci-fuse pull` fills the cache without mounting; `soci-fuse
# status` prints a mount's progress.
#
#   1. pull of the test image (gzip and zstd variants) with plain output
#      (not a terminal): exit 0; a "complete" line per layer and a final
#      "pulled" line; every layer dir under CACHE/layers, nothing left in
#      CACHE/tmp; a second pull says "already in the cache".
#   2. the same pull in a pseudo-terminal (script(1)) draws one bar per layer
#      ending in "done", with ANSI cursor-up redraws.
#   3. offline: the registry is stopped, REF is mounted with the pulled cache:
#      the overlay of its lowerdir equals podman's tree of the same image;
#      `soci-fuse status MNT` prints JSON with complete: true and, per layer,
#      state "complete", fetched = size, unpacked > 0, a rate field; status
#      of a rootfs DIR prints the status of its layers' mount; status of a
#      directory that is no mount fails with one line.
#   5. one connection limit per cache dir: three pulls of three images in
#      one cache, at once, through a throttling proxy, with --connections 4
#      each and --cache-connections 5: at no moment more than 5 blob GETs
#      are in flight at the proxy (its log: arrival and last byte of each),
#      though the three would open 12; with --cache-connections 64 they do
#      go above 5 (so the check can fail).
#   6. the config file ($SOCI_FUSE_CONFIG): its `cache = DIR` is where a
#      pull without --cache puts the layers, --cache on the command line
#      wins over it, its `chunk-size` sets the Range requests' size (proxy
#      log); an unknown name, `creds`, a bad value: exit 2, one line naming
#      file:line; a SOCI_FUSE_CONFIG that does not exist is an error too.
#   4. failures: pull of an unknown tag exits non-zero naming the reference;
#      pull of an image whose config has a wrong diff_id (mkstream.py's
#      diffid tag) exits 1 with "diff_id mismatch" and the layer digest, and
#      leaves that layer neither in CACHE/layers nor in CACHE/tmp.
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

MERGED_CMP=(--dir-mtime --negative-mtime-as-epoch)

start_registry
build_test_image
python3 "$INTEG_DIR/mkstream.py" --filler-mib 1 "$T/stream" >/dev/null || die "mkstream.py failed"
skopeo copy -q --dest-tls-verify=false --preserve-digests \
	"oci:$T/stream/layout:diffid" "docker://$REGISTRY/test/stream:diffid" ||
	die "skopeo could not push diffid"

declare -A PODMAN
for v in gzip zstd; do
	PODMAN[$v]=$(podman_reference "$REGISTRY/test/img:$v")
done

# layers_in_cache CACHE REF: every layer of REF is a dir under CACHE/layers
# and CACHE/tmp is empty.
layers_in_cache() {
	local d
	for d in $(manifest_layers "$2"); do
		[ -d "$1/layers/${d#sha256:}" ] || { echo "missing $d" >&2; return 1; }
	done
	[ -z "$(ls -A "$1/tmp" 2>/dev/null)" ] || { ls -A "$1/tmp" >&2; return 1; }
}

# ------------------------------------------------------------ 1. plain pull
for v in gzip zstd; do
	ref=$REGISTRY/test/img:$v
	cache=$T/cache-$v
	out=$(timeout 300 "$SOCI_FUSE" pull --cache "$cache" "$ref" 2>&1 </dev/null) && rc=0 || rc=$?
	printf '%s\n' "$out" >&2
	check "$v: pull exits 0" test "$rc" = 0
	check "$v: a 'complete' line per layer" \
		test "$(grep -c '^layer [0-9] sha256:[0-9a-f]*: complete, ' <<<"$out")" = 2
	check "$v: a final 'pulled' line" grep -q "^pulled .*: .* fetched, .* unpacked in " <<<"$out"
	check "$v: no terminal escapes in plain output" bash -c '! grep -q $'"'"'\e'"'"' <<<"$1"' _ "$out"
	check "$v: every layer in CACHE/layers, CACHE/tmp empty" layers_in_cache "$cache" "$ref"
	out=$(timeout 60 "$SOCI_FUSE" pull --cache "$cache" "$ref" 2>&1 </dev/null) && rc=0 || rc=$?
	check "$v: second pull exits 0" test "$rc" = 0
	check "$v: second pull finds both layers in the cache" \
		test "$(grep -c 'already in the cache' <<<"$out")" = 2
done

# ------------------------------------------------------------ 2. terminal
ref=$REGISTRY/test/img:gzip
TERM=xterm timeout 300 script -qefc "'$SOCI_FUSE' pull --cache '$T/cache-tty' '$ref'" \
	"$T/tty.log" >/dev/null </dev/null && rc=0 || rc=$?
check "tty: pull exits 0" test "$rc" = 0
check "tty: two bars ending in 'done'" \
	test "$(tr '\r' '\n' <"$T/tty.log" | grep -c '^.\[K [01] sha256:[0-9a-f]\{12\} \[#*\] .* done')" -ge 2
check "tty: bars are redrawn in place (cursor up)" grep -q $'\e\\[2A' "$T/tty.log"
check "tty: cache filled" layers_in_cache "$T/cache-tty" "$ref"

# ------------------------------------------------------------ 3. offline mount + status
stop_registry
for v in gzip zstd; do
	ref=$REGISTRY/test/img:$v
	mnt=$T/mnt-$v
	if ! sf_mount --cache "$T/cache-$v" "$ref" "$mnt" 2>"$T/mount-$v.err"; then
		cat "$T/mount-$v.err" >&2
		fail "$v: offline mount of the pulled image"
		continue
	fi
	pass "$v: offline mount of the pulled image"
	check "$v: status complete at once (served from the cache)" \
		python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["complete"] else 1)' \
		"$mnt/status"
	if merged=$(overlay_mount "$(cat "$mnt/lowerdir")" "$T/ov-$v"); then
		check "$v: overlay of the pulled layers == podman" \
			tree_compare --quiet "${MERGED_CMP[@]}" "${PODMAN[$v]}" "$merged"
		umount "$merged"
	else
		fail "$v: overlay on the pulled layers"
	fi
	st=$("$SOCI_FUSE" status "$mnt") && rc=0 || rc=$?
	check "$v: soci-fuse status exits 0" test "$rc" = 0
	check "$v: status JSON: complete, per layer state/size/fetched/unpacked/rate" python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["complete"] is True, d
assert len(d["layers"]) == 2, d
for l in d["layers"]:
    assert l["state"] == "complete", l
    assert l["fetched"] == l["size"] > 0, l
    assert l["unpacked"] > 0 and "rate" in l, l
' "$st"
	sf_umount "$mnt" || fail "$v: umount"
done

# status of a rootfs DIR (read-only overlay over the pulled cache)
mkdir -p "$T/rootfs"
if timeout 120 "$SOCI_FUSE" rootfs --cache "$T/cache-gzip" "$REGISTRY/test/img:gzip" "$T/rootfs" \
	2>"$T/rootfs.err"; then
	st=$("$SOCI_FUSE" status "$T/rootfs") && rc=0 || rc=$?
	check "rootfs: status DIR exits 0" test "$rc" = 0
	check "rootfs: status DIR is the layers' status" python3 -c '
import json, sys; d = json.loads(sys.argv[1]); assert d["complete"] and len(d["layers"]) == 2' "$st"
	timeout 60 "$SOCI_FUSE" umount "$T/rootfs" || fail "rootfs: umount"
else
	cat "$T/rootfs.err" >&2
	fail "rootfs: mount of the pulled image"
fi

mkdir -p "$T/notmnt"
out=$("$SOCI_FUSE" status "$T/notmnt" 2>&1) && rc=0 || rc=$?
check "status of a plain dir fails" test "$rc" != 0
check "status of a plain dir: one line naming it" \
	bash -c '[ "$(wc -l <<<"$1")" = 1 ] && grep -q "not a soci-fuse mount" <<<"$1"' _ "$out"

# ------------------------------------------------------------ 4. failures
start_registry "$T/registry/storage"
out=$(timeout 60 "$SOCI_FUSE" pull --cache "$T/cache-bad" "$REGISTRY/test/img:nosuchtag" 2>&1 </dev/null) &&
	rc=0 || rc=$?
printf '%s\n' "$out" >&2
check "unknown tag: pull fails" test "$rc" != 0
check "unknown tag: error names the reference" grep -q "nosuchtag" <<<"$out"

# the registry restarted on another port: the diffid image is still stored
ref=$REGISTRY/test/stream:diffid
out=$(timeout 120 "$SOCI_FUSE" pull --cache "$T/cache-bad" "$ref" 2>&1 </dev/null) && rc=0 || rc=$?
printf '%s\n' "$out" >&2
check "wrong diff_id: pull exits 1" test "$rc" = 1
bad=$(manifest_layers "$ref" | sed -n 2p)
check "wrong diff_id: error names the layer digest and diff_id mismatch" \
	grep -q "^soci-fuse: layer 1 ($bad).*diff_id mismatch" <<<"$out"
check "wrong diff_id: layer not in CACHE/layers" test ! -e "$T/cache-bad/layers/${bad#sha256:}"
check "wrong diff_id: nothing left in CACHE/tmp" test -z "$(ls -A "$T/cache-bad/tmp")"

# ------------------------------------------------------------ 5. connection limit
# three images, one random 3 MiB layer each (distinct blobs: no layer lock)
for i in 1 2 3; do
	mkdir -p "$T/conn/l$i"
	head -c $((3 << 20)) /dev/urandom >"$T/conn/l$i/data"
	python3 "$INTEG_DIR/mkimage.py" --no-index --no-zstd "$T/conn/img$i" "$T/conn/l$i" >/dev/null
	skopeo copy -q --dest-tls-verify=false --preserve-digests \
		"oci:$T/conn/img$i/layout:gzip" "docker://$REGISTRY/test/conn$i:t" ||
		die "skopeo could not push conn$i"
done
# max_in_flight NAME: most blob GETs in flight at once in regproxy NAME's log
max_in_flight() {
	python3 - "$T/$1.jsonl" <<'PYEOF2'
import json, sys
ev = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["method"] == "GET" and "/blobs/" in r["path"] and r.get("range"):
        # the client is done once the last byte is out, not when the
        # throttled handler has slept off its last piece
        ev += [(r["t"], 1), (r.get("t_last", r["t"] + r.get("secs", 0)), -1)]
n = best = 0
for _t, d in sorted(ev, key=lambda e: (e[0], e[1])):  # ends before starts
    n += d
    best = max(best, n)
print(best)
PYEOF2
}
# pulls_at_once NAME LIMIT: the three pulls through regproxy NAME, at once
pulls_at_once() {
	local name=$1 limit=$2 i pids=() rc=0
	rm -rf "$T/cache-conn-$name"
	for i in 1 2 3; do
		timeout 300 "$SOCI_FUSE" pull --cache "$T/cache-conn-$name" --chunk-size 256K \
			--connections 4 --cache-connections "$limit" "$PROXY/test/conn$i:t" \
			>"$T/conn-$name-$i.log" 2>&1 </dev/null &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	return $rc
}
start_regproxy limited --rate 1000000
check "limit: three pulls at once with --cache-connections 5 succeed" pulls_at_once limited 5
n=$(max_in_flight limited)
log "limit: at most $n blob GETs in flight at once (limit 5, asked for 3 x 4)"
check "limit: at most 5 blob GETs in flight ($n)" test "$n" -le 5
stop_regproxy limited
start_regproxy unlimited --rate 1000000
check "no limit: the same pulls with --cache-connections 64 succeed" pulls_at_once unlimited 64
n=$(max_in_flight unlimited)
log "no limit: at most $n blob GETs in flight at once"
check "no limit: more than 5 blob GETs were in flight ($n): the check above can fail" \
	test "$n" -gt 5
stop_regproxy unlimited

# ------------------------------------------------------------ 6. config file
start_regproxy cfg
cat >"$T/soci-fuse.conf" <<CONF
# defaults for every command
cache = $T/cache-cfg   # the cache
chunk-size = 64K
connections = 2
CONF
export SOCI_FUSE_CONFIG=$T/soci-fuse.conf
check "config: pull without --cache succeeds" \
	timeout 120 "$SOCI_FUSE" pull "$PROXY/test/conn1:t" </dev/null
check "config: its cache = DIR got the layers" layers_in_cache "$T/cache-cfg" "$PROXY/test/conn1:t"
n=$(regproxy_count cfg 'get("method") == "GET" and "/blobs/" in r["path"] and (r.get("range") or "").startswith("bytes=") and r["status"] == 206')
check "config: chunk-size = 64K: the 3 MiB layer came in >= 48 range GETs ($n)" test "$n" -ge 48
check "config: --cache on the command line wins" \
	timeout 120 "$SOCI_FUSE" pull --cache "$T/cache-cfg2" "$PROXY/test/conn2:t" </dev/null
check "config: ... so the layers are in that cache" layers_in_cache "$T/cache-cfg2" "$PROXY/test/conn2:t"
check "config: ... and not in the file's" test ! -e "$T/cache-cfg/layers/$(manifest_layers "$PROXY/test/conn2:t" | sed -n 1p | cut -d: -f2)"
# bad_config LINE EXPECT: a config with LINE (as line 2) fails: exit 2, one line naming file:2
bad_config() {
	local out rc
	printf '# x\n%s\n' "$1" >"$T/bad.conf"
	out=$(SOCI_FUSE_CONFIG=$T/bad.conf "$SOCI_FUSE" pull "$PROXY/test/conn1:t" 2>&1 </dev/null) && rc=0 || rc=$?
	[ "$rc" = 2 ] && [ "$(wc -l <<<"$out")" = 1 ] && grep -qF "$T/bad.conf:2: " <<<"$out" &&
		grep -qF -- "$2" <<<"$out" || { echo "rc=$rc: $out" >&2; return 1; }
}
check "config: unknown name" bad_config "colour = blue" "colour is not an option a config file sets"
check "config: creds" bad_config "creds = a:b" "creds is not an option a config file sets"
check "config: bad value" bad_config "connections = lots" "invalid value for --connections: 'lots'"
check "config: a flag with a value" bad_config "insecure = yes" "insecure takes no value"
out=$(SOCI_FUSE_CONFIG=$T/nonexistent.conf "$SOCI_FUSE" pull x 2>&1) && rc=0 || rc=$?
check "config: a SOCI_FUSE_CONFIG that does not exist: exit 2 naming it" \
	bash -c '[ "$1" = 2 ] && grep -q "nonexistent.conf: No such file" <<<"$2"' _ "$rc" "$out"
unset SOCI_FUSE_CONFIG
stop_regproxy cfg

summary
