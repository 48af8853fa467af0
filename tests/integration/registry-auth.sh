#!/bin/bash
# registry-auth.sh - mount through registries that demand a login, the way
# Docker Hub, Harbor, ECR and friends do (regproxy.py in front of the real
# docker-registry), and compare the tree with podman's.
#
#   bearer-anon   anonymous Bearer tokens that live 2 s, blobs throttled so
#                 the pull outlives several of them: tokens are refreshed,
#                 the tree is exact
#   coalesce      all tokens revoked every 32nd blob request under 16
#                 connections: an upper bound on token requests proves the
#                 401s of chunks in flight together share one new token
#   authfile      Bearer with credentials from --authfile (Basic to /token)
#   nocreds       the same server without credentials: one clean error
#   wrongcreds    wrong credentials: one clean error naming their source
#   helper        credentials from a credHelpers helper script on PATH,
#                 found through $REGISTRY_AUTH_FILE
#   idtoken       an identity token ("<token>" from the helper): OAuth2
#                 refresh_token POST to /token
#   basic         a Basic-auth registry, --creds
#   ipv6          a registry at [::1]:PORT (skipped without IPv6 loopback)
#   ecr           tokens good for 3 requests, 403 without a challenge when
#                 spent (ECR): refreshed, the tree is exact
#   secrets       no password or token in the output (trace on), status,
#                 a foreground -d mount's debug output and log, or the
#                 daemons' command lines (--creds is wiped); core limit 0
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

PASSWORD=pw-$RANDOM$RANDOM-secret
start_registry
build_test_image
REFTREE=$(podman_reference "$REGISTRY/test/img:gzip")
# the uncompressed size of what is pulled, for the throttle
BLOB_BYTES=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/test/img:gzip" |
	python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
log "test image: $BLOB_BYTES bytes of layers"

# mount_cmp NAME PROXY_ADDR [soci-fuse options]: mount test/img:gzip from
# PROXY_ADDR, wait for completion, compare the overlay of the layers with
# podman's tree, unmount.
mount_cmp() {
	local name=$1 addr=$2 mnt=$T/mnt-$1 merged
	shift 2
	sf_mount --cache "$T/cache-$name" "$@" "$addr/test/img:gzip" "$mnt" 2>"$T/$name.err" ||
		{ cat "$T/$name.err" >&2; return 1; }
	wait_complete "$mnt" 120 || return 1
	merged=$(overlay_mount "$(cat "$mnt/lowerdir")" "$T/ovl-$name") || return 1
	tree_compare --quiet --dir-mtime --negative-mtime-as-epoch "$merged" "$REFTREE" || return 1
	cp "$mnt/status" "$T/$name.status"
	umount "$merged" && sf_umount "$mnt"
}

# fails_with NAME MENTION CMD...: CMD fails with one stderr line containing MENTION.
fails_with() {
	local name=$1 mention=$2 rc
	shift 2
	mkdir -p "$T/mnt-$name"
	timeout 60 "$@" >/dev/null 2>"$T/$name.err" && rc=0 || rc=$?
	[ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] || { echo "exit status $rc" >&2; return 1; }
	[ "$(wc -l <"$T/$name.err")" = 1 ] || { cat "$T/$name.err" >&2; return 1; }
	grep -qi -- "$mention" "$T/$name.err" || { cat "$T/$name.err" >&2; return 1; }
	log "$name: $(cat "$T/$name.err")"
}

count() { regproxy_count "$@"; }

# in_env VAR=VALUE... -- CMD...: CMD (a shell function too) in a subshell
# with the variables exported.
in_env() (
	while [ "$1" != -- ]; do export "${1?}"; shift; done
	shift
	"$@"
)

# ---------------------------------------------------------------- bearer-anon
# ~4 MB/s in all: the pull takes a few seconds, tokens last 2 s.
start_regproxy anon --auth bearer --token-lifetime 2 --rate 1000000
check "bearer-anon: mount through 2 s tokens equals podman's tree" \
	mount_cmp anon "$PROXY" --connections 4 --chunk-size 1M
tokens=$(count anon 'get("kind") == "token"')
log "bearer-anon: $tokens token requests, $(count anon 'get("status") == 401') answers 401"
check "bearer-anon: tokens were refreshed during the pull ($tokens token requests)" test "$tokens" -ge 3
check "bearer-anon: anonymous token requests" test "$(count anon 'get("grant") != "anonymous" and get("kind") == "token"')" = 0
stop_regproxy anon

# ---------------------------------------------------------------- coalesce
# Every 32nd blob request revokes all tokens server-side while 16
# connections of 128 KiB chunks are in flight: the chunks that meet the 401
# together must share one new token (sf_reg_reauth), not fetch one each.
# Tokens live 60 s, so none is refreshed for its age meanwhile.  (Revoking
# more often than once per round of 16 requests starves retries by design.)
start_regproxy burst --auth bearer --revoke-every 32
check "coalesce: tokens revoked under 16 connections: tree equals podman's" \
	mount_cmp coalesce "$PROXY" --connections 16 --chunk-size 128K
revoked=$(count burst 'get("revoked")')
tokens=$(count burst 'get("kind") == "token"')
n401=$(count burst 'get("status") == 401 and "/blobs/" in r["path"]')
log "coalesce: $revoked revocations, $n401 blob requests refused 401, $tokens token requests"
check "coalesce: tokens were revoked mid-pull ($revoked times)" test "$revoked" -ge 3
check "coalesce: one token per revocation at most ($tokens tokens, $revoked revocations + the first + 1)" \
	test "$tokens" -le $((revoked + 2))
stop_regproxy burst

# ---------------------------------------------------------------- authfile
start_regproxy login --auth bearer --users "alice:$PASSWORD" --token-lifetime 30
AUTHFILE=$T/auth.json
python3 - "$AUTHFILE" "$PROXY" "$PASSWORD" <<'EOF'
import base64, json, sys
path, host, pw = sys.argv[1:]
json.dump({"auths": {host: {"auth": base64.b64encode(("alice:" + pw).encode()).decode()}}},
          open(path, "w"))
EOF
check "authfile: mount with --authfile equals podman's tree" \
	mount_cmp authfile "$PROXY" --authfile "$AUTHFILE"
check "authfile: token requests carried Basic credentials" \
	test "$(count login 'get("kind") == "token" and get("grant") != "basic"')" = 0
check "nocreds: no credentials -> one line saying credentials are needed" \
	fails_with nocreds "credentials" env -u REGISTRY_AUTH_FILE HOME="$T/nohome" \
	XDG_RUNTIME_DIR="$T/nohome" "$SOCI_FUSE" mount --cache "$T/cache-nc" \
	"$PROXY/test/img:gzip" "$T/mnt-nocreds"
python3 - "$T/wrong.json" "$PROXY" <<'EOF'
import base64, json, sys
json.dump({"auths": {sys.argv[2]: {"auth": base64.b64encode(b"alice:badpass-xyzzy").decode()}}},
          open(sys.argv[1], "w"))
EOF
check "wrongcreds: refused credentials -> one line naming the auth file" \
	fails_with wrongcreds "$T/wrong.json" "$SOCI_FUSE" mount --cache "$T/cache-wc" \
	--authfile "$T/wrong.json" "$PROXY/test/img:gzip" "$T/mnt-wrongcreds"
check "wrongcreds: the message does not contain the password" \
	bash -c "! grep -q xyzzy '$T/wrongcreds.err'"

# ---------------------------------------------------------------- helper
mkdir -p "$T/bin"
cat >"$T/bin/docker-credential-sftest" <<EOF
#!/bin/sh
[ "\$1" = get ] || exit 2
read -r host
echo "\$host" >>"$T/helper.calls"
case \$host in
$PROXY) echo '{"ServerURL":"'"\$host"'","Username":"alice","Secret":"$PASSWORD"}' ;;
*) echo 'credentials not found in native keychain'; exit 1 ;;
esac
EOF
chmod +x "$T/bin/docker-credential-sftest"
echo "{\"credHelpers\": {\"$PROXY\": \"sftest\"}}" >"$T/helpers.json"
check "helper: mount with a credential helper on PATH equals podman's tree" \
	in_env PATH="$T/bin:$PATH" REGISTRY_AUTH_FILE="$T/helpers.json" -- mount_cmp helper "$PROXY"
check "helper: asked once, for $PROXY" test "$(cat "$T/helper.calls" 2>/dev/null)" = "$PROXY"
stop_regproxy login

# ---------------------------------------------------------------- idtoken
start_regproxy idtok --auth bearer --identity-token "rt-$PASSWORD"
cat >"$T/bin/docker-credential-sftok" <<EOF
#!/bin/sh
read -r host
echo '{"Username":"<token>","Secret":"rt-$PASSWORD"}'
EOF
chmod +x "$T/bin/docker-credential-sftok"
echo "{\"credsStore\": \"sftok\"}" >"$T/store.json"
check "idtoken: identity token from credsStore: mount equals podman's tree" \
	in_env PATH="$T/bin:$PATH" -- mount_cmp idtoken "$PROXY" --authfile "$T/store.json"
check "idtoken: tokens came from the OAuth2 refresh_token POST" \
	test "$(count idtok 'get("kind") == "token" and not (get("method") == "POST" and get("grant") == "refresh_token")')" = 0
stop_regproxy idtok

# ---------------------------------------------------------------- basic
start_regproxy basic --auth basic --users "bob:$PASSWORD"
check "basic: Basic-auth registry with --creds equals podman's tree" \
	mount_cmp basic "$PROXY" --creds "bob:$PASSWORD"
check "basic: no token endpoint involved" test "$(count basic 'get("kind") == "token"')" = 0
check "basic: no credentials -> one clean line" \
	fails_with basicnone "login" env -u REGISTRY_AUTH_FILE HOME="$T/nohome" \
	XDG_RUNTIME_DIR="$T/nohome" "$SOCI_FUSE" mount --cache "$T/cache-bn" \
	"$PROXY/test/img:gzip" "$T/mnt-basicnone"
stop_regproxy basic

# ---------------------------------------------------------------- ipv6
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
	start_regproxy v6 --host ::1 --auth bearer --redirect 307
	check "ipv6: a registry at $PROXY (token realm and store on ::1 too): tree equals podman's" \
		mount_cmp ipv6 "$PROXY" --connections 4 --chunk-size 1M
	check "ipv6: tokens and the store were used" \
		test "$(count v6 'get("kind") == "token"')" -ge 1 -a "$(count v6 'r["listener"] == "store"')" -ge 1
	stop_regproxy v6
else
	log "ipv6: no ::1 on this machine, not tested"
fi

# ---------------------------------------------------------------- ecr
start_regproxy ecr --auth bearer --ecr-403 --token-uses 3 --users "alice:$PASSWORD"
check "ecr: tokens spent after 3 requests, 403 without challenge: tree equals podman's" \
	mount_cmp ecr "$PROXY" --creds "alice:$PASSWORD" --connections 2 --chunk-size 1M
n403=$(count ecr 'get("status") == 403')
log "ecr: $n403 answers 403, $(count ecr 'get("kind") == "token"') token requests"
check "ecr: the 403 path was exercised ($n403 times)" test "$n403" -ge 1

# ---------------------------------------------------------------- secrets
mkdir -p "$T/mnt-sec"
check "secrets: traced mount succeeds" \
	env SOCI_FUSE_DEBUG_HTTP=1 "$SOCI_FUSE" mount --cache "$T/cache-sec" \
	--creds "alice:$PASSWORD" "$PROXY/test/img:gzip" "$T/mnt-sec" 2>"$T/secrets.err"
check "secrets: the trace shows redacted headers" grep -q 'Bearer <redacted>' "$T/secrets.err"
is_mounted "$T/mnt-sec" && { wait_complete "$T/mnt-sec" 120 || true; }
# daemon_clean PID: --creds is wiped from PID's command line (ps,
# /proc/PID/cmdline), and PID can leave no core file (limit 0)
daemon_clean() {
	local pid=$1 argv
	[ -n "$pid" ] && argv=$(tr '\0' ' ' <"/proc/$pid/cmdline") || { echo "no process '$pid'" >&2; return 1; }
	[[ $argv == *--creds* ]] || { echo "pid $pid is not ours: $argv" >&2; return 1; }
	[[ $argv != *"$PASSWORD"* ]] || { echo "password in the command line of $pid" >&2; return 1; }
	grep -Eq '^Max core file size +0 +0 ' "/proc/$pid/limits" ||
		{ grep core "/proc/$pid/limits" >&2; return 1; }
}
check "secrets: the daemon's command line has no password, its core limit is 0" \
	daemon_clean "$(soci_fuse_pids "$T/mnt-sec" | head -n 1)"
# A foreground mount with FUSE debug output, log messages on stderr (-d)
# and the HTTP trace: everything it says ends up in fg.err / fg.out.
fg_debug_mount() {
	local i
	mkdir -p "$T/mnt-fg"
	SOCI_FUSE_DEBUG_HTTP=1 "$SOCI_FUSE" mount -f -d --cache "$T/cache-fg" \
		--creds "alice:$PASSWORD" "$PROXY/test/img:gzip" "$T/mnt-fg" >"$T/fg.out" 2>"$T/fg.err" &
	FG_PID=$!
	BG_PIDS+=("$FG_PID")
	for ((i = 0; i < 600; i++)); do
		is_mounted "$T/mnt-fg" && break
		kill -0 "$FG_PID" 2>/dev/null || { tail -n 5 "$T/fg.err" >&2; return 1; }
		sleep 0.1
	done
	is_mounted "$T/mnt-fg" || { echo "mnt-fg: not mounted after 60 s" >&2; return 1; }
	daemon_clean "$FG_PID" || return 1
	wait_complete "$T/mnt-fg" 120 || return 1
	find "$T/mnt-fg/layers" -type f -size -64k -exec cat {} + >/dev/null
	sf_umount "$T/mnt-fg" && wait_gone 30 "$FG_PID" || return 1
	# the output the check below reads is really there
	grep -q 'unique: ' "$T/fg.err" && grep -q 'soci-fuse: http: .*Bearer <redacted>' "$T/fg.err"
}
check "secrets: mount -f -d --creds: serves, its command line is clean, it talks" fg_debug_mount
log "secrets: the foreground daemon wrote $(wc -l <"$T/fg.err") lines of debug output"
python3 - "$T/ecr.jsonl" >"$T/tokens.txt" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r.get("token"):
        print(r["token"])
EOF
leaks() {
	local f
	for f in "$T/secrets.err" "$T/mnt-sec/status" "$T"/*.err "$T"/*.status "$T/fg.out"; do
		[ -e "$f" ] || continue
		grep -qF -- "$PASSWORD" "$f" && { echo "password in $f" >&2; return 0; }
		grep -qFf "$T/tokens.txt" "$f" && { echo "token in $f" >&2; return 0; }
		grep -qi 'authorization: \(basic\|bearer\) [a-z0-9]' "$f" && { echo "header in $f" >&2; return 0; }
	done
	return 1
}
check "secrets: no password, token or auth header in any output, debug output or status" eval '! leaks' 
sf_umount "$T/mnt-sec" || true
stop_regproxy ecr

summary
