#!/bin/bash
# registry-faults.sh - mount through registries and networks that misbehave
# (regproxy.py in front of the real docker-registry) and compare the tree
# with podman's; or, when the retry budget runs out, fail cleanly.
#
#   redirect      blob GETs answered 307 to a second listener (the "store"):
#                 no Authorization ever arrives there, the redirect target is
#                 reused for the other chunks
#   expiry        302 to store URLs that work 3 times: re-resolved through
#                 the registry when the store answers 403
#   ignore-range  200 + the whole blob to every Range request
#   throttle      429 with Retry-After: 1 on the config GET and on chunks:
#                 each retried no sooner than 0.9 s later (regproxy's
#                 request times)
#   faults        500, 503, connection resets mid-body, truncated bodies,
#                 wrong Content-Range (a fixed plan)
#   dice          resets and 503s at random (probability 0.06 each) with
#                 three seeds: each pull is exact
#   stall         bodies that stop half way: the stall detector (shortened
#                 with SOCI_FUSE_STALL_TIMEOUT) aborts and resumes them
#   budget        503 forever, or resets forever: the layer fails with the
#                 blob, registry and what failed in its error
#   tls           HTTPS with a CA made here: --tls-ca, a certs.d dir, a
#                 wrong CA (clean TLS error), none (plain HTTP: says so)
#   mirrors       a mirror without the image and a dead one before a good
#                 one (from a registries.conf.d drop-in); a mirror without
#                 the image before the registry; a malformed file
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

start_registry
build_test_image
REFTREE=$(podman_reference "$REGISTRY/test/img:gzip")
BIG=$(manifest_layers "$REGISTRY/test/img:gzip" | sed -n 1p)
FAST=(--chunk-size 1M --connections 4)
# no host-wide registries.conf or certs.d in these tests
EMPTY_CONF=$T/empty-registries.conf
: >"$EMPTY_CONF"
export SOCI_FUSE_CERTS_DIRS=$T/no-certs.d

# mount_cmp NAME ADDR [soci-fuse options]: mount ADDR/test/img:gzip, wait for
# completion, compare the overlay of its layers with podman's tree, unmount.
mount_cmp() {
	local name=$1 addr=$2 mnt=$T/mnt-$1 merged
	shift 2
	sf_mount --cache "$T/cache-$name" --registries-conf "$EMPTY_CONF" "$@" \
		"$addr/test/img:gzip" "$mnt" 2>"$T/$name.err" || { cat "$T/$name.err" >&2; return 1; }
	wait_complete "$mnt" 120 || return 1
	merged=$(overlay_mount "$(cat "$mnt/lowerdir")" "$T/ovl-$name") || return 1
	tree_compare --quiet --dir-mtime --negative-mtime-as-epoch "$merged" "$REFTREE" || return 1
	umount "$merged" && sf_umount "$mnt"
}
count() { regproxy_count "$@"; }
# in_env VAR=VALUE... -- CMD...: CMD (a shell function too) in a subshell
# with the variables exported.
in_env() (
	while [ "$1" != -- ]; do export "${1?}"; shift; done
	shift
	"$@"
)

# ---------------------------------------------------------------- redirect
start_regproxy redir --auth bearer --redirect 307
check "redirect: 307 to the store: tree equals podman's" mount_cmp redirect "$PROXY" "${FAST[@]}"
n_redir=$(count redir 'get("status") == 307')
n_store=$(count redir 'r["listener"] == "store" and r["status"] in (200, 206)')
log "redirect: $n_redir redirects, $n_store store answers"
check "redirect: no Authorization header reached the store" \
	test "$(count redir 'get("leak")')" = 0
check "redirect: the store served the blobs ($n_store ranges)" test "$n_store" -gt 8
check "redirect: the target was reused ($n_redir redirects < $n_store store requests)" \
	test "$n_redir" -lt "$n_store"
check "redirect: the registry itself served no blob bytes" \
	test "$(count redir 'r["listener"] == "registry" and "/blobs/" in r["path"] and r["status"] in (200, 206)')" = 0
stop_regproxy redir

start_regproxy expiry --redirect 302 --url-uses 3
check "expiry: store URLs good for 3 uses: tree equals podman's" mount_cmp expiry "$PROXY" "${FAST[@]}"
n_exp=$(count expiry 'get("expired")')
check "expiry: expired URLs were re-resolved ($n_exp times)" test "$n_exp" -ge 1
stop_regproxy expiry

# ---------------------------------------------------------------- ranges, 429
cat >"$T/norange.json" <<EOF
{"faults": [{"fault": "ignore-range", "kind": "blob", "match": "$BIG"}]}
EOF
start_regproxy norange --plan "$T/norange.json"
check "ignore-range: 200 + whole body to Range requests: tree equals podman's" \
	mount_cmp norange "$PROXY" "${FAST[@]}"
check "ignore-range: the server did ignore a Range" \
	test "$(count norange 'get("fault") == "ignore-range" and r["status"] == 200')" -ge 1
stop_regproxy norange

cat >"$T/429.json" <<EOF
{"faults": [{"fault": "429", "kind": "blob", "retry_after": 1, "count": 1},
            {"fault": "429", "kind": "blob", "match": "$BIG", "retry_after": 1, "count": 2}]}
EOF
start_regproxy throttle --plan "$T/429.json"
check "throttle: 429 with Retry-After: tree equals podman's" mount_cmp throttle "$PROXY" "${FAST[@]}"
check "throttle: three 429s were answered" test "$(count throttle 'r["status"] == 429')" = 3
# retried_after NAME MIN_S: every 429 in NAME's log was retried (the same
# path and range asked again), and not sooner than MIN_S s after it came
retried_after() {
	python3 - "$T/$1.jsonl" "$2" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
least = float(sys.argv[2])
n = 0
for r in (r for r in recs if r["status"] == 429):
    gaps = [q["t"] - r["t"] for q in recs if q["t"] > r["t"] and q["path"] == r["path"]
            and q.get("range") == r.get("range")]
    if not gaps:
        sys.exit("the 429 to %s (range %s) was never retried" % (r["path"], r.get("range")))
    print("registry-faults: throttle: 429 to ...%s (range %s) retried %.2f s later"
          % (r["path"][-16:], r.get("range"), min(gaps)), file=sys.stderr)
    if min(gaps) < least:
        sys.exit("retried %.2f s after a 429 with Retry-After: 1" % min(gaps))
    n += 1
sys.exit(0 if n else "no 429 in the log")
EOF
}
check "throttle: each 429 (Retry-After: 1) was retried 0.9 s or more later" \
	retried_after throttle 0.9
stop_regproxy throttle

# ---------------------------------------------------------------- faults
cat >"$T/faults.json" <<EOF
{"faults": [
  {"fault": "500", "kind": "blob", "after": 1, "count": 2},
  {"fault": "503", "kind": "blob", "after": 4, "count": 2},
  {"fault": "reset", "kind": "blob", "after": 2, "every": 3, "count": 3},
  {"fault": "truncate", "kind": "blob", "after": 5, "every": 4, "count": 2},
  {"fault": "bad-range", "kind": "blob", "match": "$BIG", "after": 3, "every": 5, "count": 2}
]}
EOF
start_regproxy faults --plan "$T/faults.json"
check "faults: 5xx, resets, truncation, wrong Content-Range: tree equals podman's" \
	mount_cmp faults "$PROXY" "${FAST[@]}"
for f in 500 503 reset truncate bad-range; do
	check "faults: $f was injected" test "$(count faults "get('fault') == '$f'")" -ge 1
done
stop_regproxy faults

cat >"$T/stall.json" <<EOF
{"faults": [{"fault": "stall", "kind": "blob", "match": "$BIG", "after": 2, "count": 2, "stall_s": 30}]}
EOF
start_regproxy stall --plan "$T/stall.json"
check "stall: bodies that stop half way (stall timeout 2 s): tree equals podman's" \
	in_env SOCI_FUSE_STALL_TIMEOUT=2 -- mount_cmp stall "$PROXY" "${FAST[@]}"
check "stall: two transfers stalled" test "$(count stall 'get("fault") == "stall"')" = 2
stop_regproxy stall

# ---------------------------------------------------------------- dice
# The same kinds of fault, but at random: each blob request is reset
# mid-body or answered 503 with probability 0.06 each, the dice seeded.
# Three seeds give three different patterns of failures.
dice() {
	local seed=$1 resets n503
	cat >"$T/dice$seed.json" <<EOF
{"seed": $seed, "faults": [
  {"fault": "reset", "kind": "blob", "prob": 0.06},
  {"fault": "503", "kind": "blob", "prob": 0.06}
]}
EOF
	start_regproxy "dice$seed" --plan "$T/dice$seed.json"
	mount_cmp "dice$seed" "$PROXY" --chunk-size 256K --connections 4 || return 1
	resets=$(count "dice$seed" 'get("fault") == "reset"')
	n503=$(count "dice$seed" 'get("fault") == "503"')
	log "dice: seed $seed: $resets resets, $n503 503s in $(count "dice$seed" '"/blobs/" in r["path"]') blob requests"
	stop_regproxy "dice$seed"
	[ $((resets + n503)) -ge 1 ]
}
for seed in 1 2 3; do
	check "dice: seed $seed: random resets and 503s: tree equals podman's" dice "$seed"
done
check "dice: the seeds injected both kinds of fault" \
	test "$(cat "$T"/dice?.jsonl | grep -c '"fault": "reset"')" -ge 1 -a \
	"$(cat "$T"/dice?.jsonl | grep -c '"fault": "503"')" -ge 1

# ---------------------------------------------------------------- budget
# budget NAME FAULT WHAT: FAULT on every request for BIG's blob: once the
# retry budget is spent the layer fails, and its error names the blob, the
# registry and WHAT failed (a regular expression).
budget() {
	local name=$1 fault=$2 what=$3 rc=0
	echo "{\"faults\": [{\"fault\": \"$fault\", \"kind\": \"blob\", \"match\": \"$BIG\"}]}" \
		>"$T/$name.json"
	start_regproxy "$name" --plan "$T/$name.json"
	mkdir -p "$T/mnt-$name"
	sf_mount --cache "$T/cache-$name" --registries-conf "$EMPTY_CONF" "${FAST[@]}" \
		"$PROXY/test/img:gzip" "$T/mnt-$name" || return 1
	! wait_complete "$T/mnt-$name" 120 2>/dev/null &&
		python3 - "$T/mnt-$name/status" "$BIG" "$PROXY" "$what" "$name" <<'EOF' || rc=1
import json, re, sys
doc = json.load(open(sys.argv[1]))
bad = [l for l in doc["layers"] if l["state"] == "failed"]
assert len(bad) == 1 and bad[0]["digest"] == sys.argv[2], doc
msg = bad[0]["error"]
print("registry-faults: %s: %s" % (sys.argv[5], msg), file=sys.stderr)
for want in (sys.argv[2], sys.argv[3], "retries"):
    assert want in msg, (want, msg)
assert re.search(sys.argv[4], msg, re.I), (sys.argv[4], msg)
EOF
	sf_umount "$T/mnt-$name" || true
	stop_regproxy "$name"
	return $rc
}
check "budget: 503 forever: the layer fails naming blob, registry and status" \
	budget budget 503 'HTTP 503'
check "budget: connection resets forever: the layer fails naming blob, registry and the reset" \
	budget budget-reset reset 'reset'

# ---------------------------------------------------------------- tls
mk_ca() { # mk_ca DIR: a CA and a server certificate for 127.0.0.1 in DIR
	local d=$1
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=soci-fuse-test-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-subj /CN=127.0.0.1 -keyout "$d/srv.key" -out "$d/srv.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$d/ext"
	openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
		-days 2 -extfile "$d/ext" -out "$d/srv.pem" 2>/dev/null
}
mk_ca "$T/pki"
mk_ca "$T/otherpki"
start_regproxy tls --tls-cert "$T/pki/srv.pem" --tls-key "$T/pki/srv.key" --auth bearer --redirect 307
check "tls: HTTPS with --tls-ca (tokens and a redirect over TLS too): tree equals podman's" \
	mount_cmp tls-ca "$PROXY" "${FAST[@]}" --tls-ca "$T/pki/ca.pem"
mkdir -p "$T/certs.d/$PROXY"
cp "$T/pki/ca.pem" "$T/certs.d/$PROXY/ca.crt"
tls_certsd() { SOCI_FUSE_CERTS_DIRS=$T/none:$T/certs.d mount_cmp tls-certsd "$PROXY" "${FAST[@]}"; }
check "tls: HTTPS with a certs.d/$PROXY/ca.crt: tree equals podman's" tls_certsd
mkdir -p "$T/mnt-tls-bad"
tls_wrong_ca() {
	local rc
	timeout 60 "$SOCI_FUSE" mount --cache "$T/cache-tls-bad" --registries-conf "$EMPTY_CONF" \
		--tls-ca "$T/otherpki/ca.pem" "$PROXY/test/img:gzip" "$T/mnt-tls-bad" \
		>/dev/null 2>"$T/tls-bad.err" && rc=0 || rc=$?
	log "tls: wrong CA: rc $rc: $(cat "$T/tls-bad.err")"
	[ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ "$(wc -l <"$T/tls-bad.err")" = 1 ] &&
		grep -q "TLS error talking to registry $PROXY" "$T/tls-bad.err"
}
check "tls: a CA that did not sign the server: one clean TLS error naming the registry" tls_wrong_ca
tls_no_ca() { # loopback without a CA means plain HTTP: the error must say so
	local rc
	timeout 60 "$SOCI_FUSE" mount --cache "$T/cache-tls-bad" --registries-conf "$EMPTY_CONF" \
		"$PROXY/test/img:gzip" "$T/mnt-tls-bad" >/dev/null 2>"$T/tls-noca.err" && rc=0 || rc=$?
	log "tls: no CA: rc $rc: $(cat "$T/tls-noca.err")"
	[ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ "$(wc -l <"$T/tls-noca.err")" = 1 ] &&
		grep -q "registry $PROXY.*plain HTTP was used.*--tls-ca" "$T/tls-noca.err"
}
check "tls: no CA given for a loopback HTTPS registry: one line saying plain HTTP was used" tls_no_ca
stop_regproxy tls

# ---------------------------------------------------------------- mirrors
cat >"$T/nothing.json" <<EOF
{"faults": [{"fault": "404", "kind": "manifest"}]}
EOF
start_regproxy up
UP=$PROXY
start_regproxy empty --plan "$T/nothing.json"
EMPTY=$PROXY
start_regproxy good
GOOD=$PROXY
DEAD=127.0.0.1:$(free_port)
# the mirrors come from a drop-in (mirrors.conf.d/), as CRI-O setups ship them
cat >"$T/mirrors.conf" <<EOF
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "$UP/test"
location = "$UP/test"
[[registry.mirror]]
location = "127.0.0.1:1/replaced-by-the-drop-in"
EOF
mkdir -p "$T/mirrors.conf.d"
cat >"$T/mirrors.conf.d/50-mirrors.conf" <<EOF
# mirrors in front of $UP: one without the image, a dead one, a good one
[[registry]]
prefix = "$UP/test"
location = "$UP/test"

[[registry.mirror]]
location = "$EMPTY/test"

[[registry.mirror]]
location = "$DEAD/test"
insecure = true

[[registry.mirror]]
location = "$GOOD/test"
EOF
check "mirrors: (drop-in) empty and dead mirrors skipped, the good one used: tree equals podman's" \
	mount_cmp mirror "$UP" "${FAST[@]}" --registries-conf "$T/mirrors.conf"
check "mirrors: the empty mirror was asked" test "$(count empty 'r["status"] == 404')" -ge 1
check "mirrors: the good mirror served the blobs" \
	test "$(count good '"/blobs/" in r["path"] and r["status"] == 206')" -ge 1
check "mirrors: the registry was not asked" test "$(count up 'True')" = 0
cat >"$T/fallback.conf" <<EOF
[[registry]]
location = "$UP"
[[registry.mirror]]
location = "$EMPTY"
EOF
check "mirrors: only a mirror without the image: falls back to the registry" \
	mount_cmp fallback "$UP" "${FAST[@]}" --registries-conf "$T/fallback.conf"
check "mirrors: the registry served the blobs" \
	test "$(count up '"/blobs/" in r["path"] and r["status"] == 206')" -ge 1
printf '[[registry]]\nlocation = "%s"\nbogus = [1, \n' "$UP" >"$T/broken.conf"
mkdir -p "$T/mnt-broken"
broken_conf() {
	! timeout 60 "$SOCI_FUSE" mount --cache "$T/cache-broken" --registries-conf "$T/broken.conf" \
		"$UP/test/img:gzip" "$T/mnt-broken" 2>"$T/broken.err" &&
		[ "$(wc -l <"$T/broken.err")" = 1 ] && grep -q "broken.conf: line" "$T/broken.err"
}
check "mirrors: a malformed registries.conf: one line naming file and line" broken_conf
log "broken.conf: $(cat "$T/broken.err")"

summary
