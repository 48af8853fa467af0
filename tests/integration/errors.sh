#!/bin/bash
# errors.sh - soci-fuse must fail cleanly on bad input.
#
# Every case must: exit non-zero (not by a signal, not by timing out after
# 60 s), print exactly ONE non-empty line on stderr that names the culprit
# (the ref, the digest, the path ...), leave no new mount below this test's
# temp dir and no soci-fuse daemon behind.
# automake runs this as $(SHELL) script; make sure that is bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

start_registry
bash "$INTEG_DIR/mkimage.sh" --minimal --repo test/small --push "$REGISTRY" "$T/small"
LAYER=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tags"]["gzip"]["layers"][0])' \
	"$T/small/image.json")
MANIFEST=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tags"]["gzip"]["manifest"])' \
	"$T/small/image.json")

# A manifest whose layer has a media type no client can unpack, pushed
# straight through the registry API (the blobs it names exist).
python3 - "$T/small/layout/blobs/sha256/${MANIFEST#sha256:}" >"$T/badmedia.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["layers"][0]["mediaType"] = "application/vnd.example.unknown.layer"
sys.stdout.write(json.dumps(m))
EOF
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
	--data-binary "@$T/badmedia.json" "http://$REGISTRY/v2/test/small/manifests/badmedia" >/dev/null ||
	die "could not push the badmedia manifest"

MNT=$T/mnt
mkdir -p "$MNT"

# expect_error DESC MENTION CMD...: run CMD, which must fail cleanly.
# MENTION: what the stderr line must contain (case-insensitive); several
# alternatives separated by '|'.
expect_error() {
	local desc=$1 mention=$2 rc lines before after pids problems=() alt found=0
	shift 2
	before=$(mounts_below "$T" | sort)
	timeout 60 "$@" >"$T/out" 2>"$T/err" && rc=0 || rc=$?
	after=$(mounts_below "$T" | sort)

	[ "$rc" -ne 0 ] || problems+=("exit status 0")
	[ "$rc" -ne 124 ] || problems+=("timed out after 60s")
	[ "$rc" -lt 125 ] || [ "$rc" -eq 124 ] || problems+=("exit status $rc (crash/signal?)")
	lines=$(grep -c . "$T/err" || true)
	[ "$lines" -eq 1 ] || problems+=("$lines non-empty lines on stderr, want 1")
	IFS='|' read -r -a alts <<<"$mention"
	for alt in "${alts[@]}"; do
		grep -qiF -- "$alt" "$T/err" && found=1
	done
	[ $found = 1 ] || problems+=("stderr does not mention '$mention'")
	[ "$before" = "$after" ] ||
		problems+=("mounts changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ' || true)")
	# a daemon that was started must be gone (give it a moment)
	pids=$(soci_fuse_pids)
	# shellcheck disable=SC2086
	if [ -n "$pids" ] && ! wait_gone 5 $pids; then
		problems+=("soci-fuse process(es) left running: $(tr "\n" " " <<<"$pids")")
	fi

	if [ ${#problems[@]} = 0 ]; then
		pass "$desc: $(head -n 1 "$T/err")"
	else
		fail "$desc: $(IFS=';'; echo "${problems[*]}")"
		sed 's/^/    stderr: /' "$T/err"
		# undo new mounts so later cases start clean
		comm -13 <(echo "$before") <(echo "$after") | while read -r fstype mp; do
			[ -n "$mp" ] && umount_one "$fstype" "$mp"
		done
		mkdir -p "$MNT"
	fi
}

M=(--cache "$T/cache")
R=$REGISTRY/test/small

expect_error "unknown tag" "nosuchtag" \
	"$SOCI_FUSE" mount "${M[@]}" "$R:nosuchtag" "$MNT"
expect_error "unknown repository" "nosuch/repo" \
	"$SOCI_FUSE" mount "${M[@]}" "$REGISTRY/nosuch/repo:latest" "$MNT"
expect_error "unreachable registry" "127.0.0.1:1" \
	"$SOCI_FUSE" mount "${M[@]}" "127.0.0.1:1/test/small:latest" "$MNT"
expect_error "malformed ref (upper case)" "UPPER/case" \
	"$SOCI_FUSE" mount "${M[@]}" "UPPER/case" "$MNT"
expect_error "malformed ref (bad digest)" "sha256:xyz" \
	"$SOCI_FUSE" mount "${M[@]}" "a@sha256:xyz" "$MNT"
expect_error "blob digest used as a manifest" "${LAYER:7:12}" \
	"$SOCI_FUSE" mount "${M[@]}" "$R@$LAYER" "$MNT"
expect_error "unknown manifest digest" "sha256:0000000000" \
	"$SOCI_FUSE" mount "${M[@]}" "$R@sha256:$(printf '0%.0s' $(seq 64))" "$MNT"
expect_error "unsupported layer media type" "vnd.example.unknown|media type|mediatype" \
	"$SOCI_FUSE" mount "${M[@]}" "$R:badmedia" "$MNT"
expect_error "missing mountpoint" "$T/does/not/exist" \
	"$SOCI_FUSE" mount "${M[@]}" "$R:gzip" "$T/does/not/exist"
: >"$T/afile"
expect_error "mountpoint is a file" "$T/afile" \
	"$SOCI_FUSE" mount "${M[@]}" "$R:gzip" "$T/afile"
mkdir -p "$T/busy"
mount -t tmpfs tmpfs "$T/busy"
expect_error "busy mountpoint (already a mount there)" "$T/busy" \
	"$SOCI_FUSE" mount "${M[@]}" "$R:gzip" "$T/busy"
umount "$T/busy" || umount -l "$T/busy"
mkdir -p "$T/notmounted"
expect_error "umount of a non-mount" "$T/notmounted" \
	"$SOCI_FUSE" umount "$T/notmounted"
expect_error "umount of a missing path" "$T/does/not/exist" \
	"$SOCI_FUSE" umount "$T/does/not/exist"
expect_error "bad --chunk-size" "chunk-size" \
	"$SOCI_FUSE" mount "${M[@]}" --chunk-size notanumber "$R:gzip" "$MNT"
expect_error "bad --connections" "connections" \
	"$SOCI_FUSE" mount "${M[@]}" --connections -3 "$R:gzip" "$MNT"

# Sanity: the same image does mount, so the failures above are about the
# input (and a failed mount left the mount point usable).
if timeout 120 "$SOCI_FUSE" mount "${M[@]}" "$R:gzip" "$MNT" 2>"$T/err"; then
	pass "control: $R:gzip mounts at the same mount point"
	check "control: soci-fuse umount" timeout 60 "$SOCI_FUSE" umount "$MNT"
else
	fail "control: $R:gzip does not mount: $(head -n 3 "$T/err" | tr '\n' ' ')"
fi

summary
