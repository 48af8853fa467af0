#!/bin/bash
# hostile.sh - hostile and broken images fail cleanly, one case per image
# pushed to the real registry (mkhostile.py builds them; see its header).
#
# A hostile LAYER (traversal, bad hard links, overflowing fields, PAX
# records claiming huge lengths, 10,000-deep paths, huge xattrs,
# decompression bombs, entry/size limits, sparse files whose sizes would
# wrap the data file's offsets, truncated gzip/zstd, digest and diff_id
# mismatches) must:
#   - turn "failed" in <mnt>/status with a one-line error that names the
#     layer digest and the entry (or what is wrong), while the good layer
#     below it is still served;
#   - give EIO for every request on the failed layer, also (case
#     late-failure) readlink, getxattr, listxattr, fstat and read on
#     entries opened while it streamed in, before it failed;
#   - never reach the cache's layers/ dir, and leave in tmp/ at most a
#     resumable spool (blob, blob.map) of a download that failed;
#   - leave nothing in its cache dir but the cache's own files, and write
#     nothing outside it: not in /, not in the daemon's or the commands'
#     working directory, not near $T (checked at the end);
#   - leave the daemon working: umount succeeds, the daemon exits.
# A hostile DOCUMENT (config/manifest disagreeing, wrong types, deep or huge
# JSON, too many layers) fails the mount with one line on stderr.
# Absolute names and a directory of HOSTILE_HUGE_DIR (default 100000)
# entries must just work; HOSTILE_HUGE_DIR=1000000 for the real thing.
# HOSTILE_CASES=name,name... runs only those cases (when debugging one).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
# shellcheck source=lib.sh
. "${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/integration/lib.sh"

[ -x "$SOCI_FUSE" ] || die "$SOCI_FUSE: no such executable (set SOCI_FUSE)"

start_registry
t0=$(date +%s.%N)
python3 "$INTEG_DIR/mkhostile.py" --push "$REGISTRY" --huge-dir "${HOSTILE_HUGE_DIR:-100000}" \
	"$T/hostile" || die "mkhostile.py failed"
rm -rf "$T/hostile/blobs"
log "images built and pushed in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
PASSWD_SUM=$(sha256sum /etc/passwd)
touch "$T/stamp"

# cases.json as shell: case-<i>.sh sets kind name expect ref layer entry
# opts layer0_fails entries cache_fs probe (empty when absent).
N=$(python3 - "$T/hostile" <<'EOF'
import json, shlex, sys
d = sys.argv[1]
cases = json.load(open(d + "/cases.json"))
keys = ("kind", "name", "expect", "ref", "layer", "entry", "opts", "layer0_fails", "entries",
        "cache_fs", "probe")
for i, c in enumerate(cases):
    with open("%s/case-%d.sh" % (d, i), "w") as f:
        for k in keys:
            v = c.get(k)
            v = " ".join(v) if isinstance(v, list) else ("" if v in (None, False) else str(v))
            f.write("%s=%s\n" % (k, shlex.quote(v)))
print(len(cases))
EOF
)

# wait_layer_failed MNT LAYER: status JSON of the mount once layer LAYER is
# failed (exit 1 if it completes or nothing happens in 120 s).
wait_layer_failed() {
	python3 - "$1/status" "$2" <<'EOF'
import json, sys, time
path, n = sys.argv[1], int(sys.argv[2])
end = time.time() + 120
while time.time() < end:
    try:
        doc = json.load(open(path))
    except (OSError, ValueError):
        doc = {}
    layers = doc.get("layers", [])
    if len(layers) > n and layers[n].get("state") in ("failed", "complete"):
        print(json.dumps(doc))
        sys.exit(0 if layers[n]["state"] == "failed" else 1)
    time.sleep(0.1)
sys.exit(1)
EOF
}

# is_eio CMD...: CMD fails with "Input/output error".
is_eio() { ! "$@" >/dev/null 2>"$T/eio.err" && grep -q 'Input/output error' "$T/eio.err"; }

# probe_open_files MNT: for a layer 1 that fails only at its end (the
# "probe" case: lnk -> target, xf with user.k=v, opaque dir xd), open them
# while it streams in and see them answered, then, once it failed, every
# request on them must get EIO: they were served from an index that was
# never verified.  Prints what is wrong; exit 1 then.
probe_open_files() {
	python3 - "$1" <<'EOF'
import errno, json, os, sys, time
mnt = sys.argv[1]
root = mnt + "/layers/1"
def state():
    return json.load(open(mnt + "/status"))["layers"][1]["state"]
lnk = os.open(root + "/lnk", os.O_PATH | os.O_NOFOLLOW)  # waits for it to arrive
xf = os.open(root + "/xf", os.O_RDONLY)
xd = os.open(root + "/xd", os.O_RDONLY | os.O_DIRECTORY)
ops = {
    "readlink": lambda: os.readlink("", dir_fd=lnk),
    "getxattr": lambda: os.getxattr(xf, "user.k"),
    "listxattr": lambda: sorted(os.listxattr(xf)),
    "getxattr of the opaque marker": lambda: os.getxattr(xd, "trusted.overlay.opaque"),
    "fstat": lambda: os.fstat(xf).st_size,
    "read": lambda: os.pread(xf, 100, 0),
}
want = {"readlink": "target", "getxattr": b"v", "listxattr": ["user.k"],
        "getxattr of the opaque marker": b"y", "fstat": 11, "read": b"xattr file\n"}
problems = []
# the premise: answered from the index while the layer still streams in
for what, op in ops.items():
    got = op()
    if got != want[what]:
        problems.append("%s before the failure: %r, want %r" % (what, got, want[what]))
if state() != "fetching":
    problems.append("premise: layer 1 is %s once the probes were answered, want fetching"
                    % state())
end = time.time() + 120
while state() == "fetching" and time.time() < end:
    time.sleep(0.1)
time.sleep(1.1)  # attributes cached by the kernel while streaming expire
for what, op in ops.items():
    try:
        problems.append("%s after the failure: %r, want EIO" % (what, op()))
    except OSError as e:
        if e.errno != errno.EIO:
            problems.append("%s after the failure: %s, want EIO" % (what, e))
print("; ".join(problems))
sys.exit(1 if problems else 0)
EOF
}

# cache_layout_ok CACHE: everything under CACHE is a file of the cache's
# own layout (doc/cache.md): a layer's tree lives in its data and index
# files only, so a name from a hostile layer can never appear there, not
# even inside the cache.  Prints the first strangers; exit 1 then.
cache_layout_ok() {
	python3 - "$1" <<'EOF'
import os, re, sys
root = sys.argv[1]
H = "[0-9a-f]{64}"
ok = re.compile("(?:%s)$" % "|".join((
    "layers|tmp|locks|images",
    "layers/%s(?:/(?:meta\\.json|index|data))?" % H,
    "tmp/%s(?:/(?:blob|blob\\.map|data|index|meta\\.json))?" % H,
    "locks/%s\\.(?:lock|use)" % H,
    "locks/(?:conn|fetcher)\\.[0-9]+",  # connection slots (connslots.h)
    "images/%s\\.json" % H)))
bad = []
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        rel = os.path.relpath(os.path.join(d, n), root)
        if not ok.match(rel):
            bad.append(rel)
if bad:
    print("not the cache's own: " + " ".join(sorted(bad)[:5]))
    sys.exit(1)
EOF
}

# note_daemon_cwd MNT: remember the working directory of MNT's daemon (a
# relative name that escaped would land there).
note_daemon_cwd() {
	local p
	for p in $(soci_fuse_pids "$1"); do
		readlink "/proc/$p/cwd" >>"$T/daemon-cwds" 2>/dev/null || true
	done
}

# The cases below run with the variables of case-<i>.sh set.
kind='' name='' expect='' ref='' layer='' entry='' opts='' layer0_fails='' entries='' cache_fs=''
probe=''
layer_case() {
	local mnt=$T/mnt-$name cache=$T/cache-$name st err r=$ref out
	local problems=()
	if [ "$cache_fs" = tmpfs ]; then
		mkdir -p "$cache"
		mount -t tmpfs -o size=64m,mode=755 tmpfs "$cache" || die "$name: cannot mount a tmpfs"
	fi
	if [ -n "$probe" ]; then # ~5 s for its 2 MiB
		[ -n "${PROXY:-}" ] || start_regproxy slow --rate 400000
		r=${ref/#$REGISTRY/$PROXY}
	fi
	# shellcheck disable=SC2086 # opts are words
	if ! sf_mount --cache "$cache" $opts "$r" "$mnt" 2>"$T/err"; then
		fail "$name: mount failed: $(head -n 2 "$T/err" | tr '\n' ' ')"
		return
	fi
	note_daemon_cwd "$mnt"
	if [ -n "$probe" ] && ! out=$(probe_open_files "$mnt" 2>&1); then
		problems+=("files opened before the failure: $out")
	fi
	if ! st=$(wait_layer_failed "$mnt" 1); then
		fail "$name: layer 1 did not fail: $st"
		sf_umount "$mnt" || true
		return
	fi
	err=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["layers"][1].get("error", ""))' "$st")
	grep -qiF -- "$expect" <<<"$err" || problems+=("error lacks '$expect'")
	grep -qF -- "$layer" <<<"$err" || problems+=("error lacks the layer digest")
	[ -z "$entry" ] || grep -qF -- "$entry" <<<"$err" || problems+=("error lacks entry '$entry'")
	[ "$(wc -l <<<"$err")" = 1 ] || problems+=("error is not one line")
	is_eio ls "$mnt/layers/1" || problems+=("ls of the failed layer: $(cat "$T/eio.err") (want EIO)")
	is_eio stat "$mnt/layers/1/anything" || problems+=("stat in the failed layer: not EIO")
	if [ -z "$layer0_fails" ]; then
		wait_complete_layer0 "$mnt" && [ "$(cat "$mnt/layers/0/good/file")" = "layer 0 is fine" ] ||
			problems+=("the good layer 0 is not served")
	fi
	[ ! -e "$cache/layers/${layer#sha256:}" ] || problems+=("failed layer is in the cache's layers/")
	# a download that failed keeps its spool for a later pull to resume
	# (doc/cache.md), but nothing unpacked from it
	local wd=$cache/tmp/${layer#sha256:}
	[ ! -d "$wd" ] || [ -z "$(ls -A "$wd" | grep -vx -e blob -e blob.map)" ] ||
		problems+=("work dir in the cache's tmp/ holds more than a resumable spool: $(ls -A "$wd" | tr '\n' ' ')")
	sf_umount "$mnt" || problems+=("umount failed")
	out=$(cache_layout_ok "$cache") || problems+=("$out")
	[ "$cache_fs" != tmpfs ] || umount "$cache" || problems+=("cannot unmount the cache's tmpfs")
	if [ ${#problems[@]} = 0 ]; then
		pass "$name: $err"
	else
		fail "$name: $(IFS=';'; echo "${problems[*]}") [error: $err]"
	fi
}

wait_complete_layer0() {
	python3 - "$1/status" <<'EOF'
import json, sys, time
end = time.time() + 60
while time.time() < end:
    try:
        if json.load(open(sys.argv[1]))["layers"][0]["state"] == "complete":
            sys.exit(0)
    except (OSError, ValueError, KeyError, IndexError):
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

mount_case() {
	local mnt=$T/mnt-$name rc lines
	mkdir -p "$mnt"
	timeout 60 "$SOCI_FUSE" mount --cache "$T/cache-$name" "$ref" "$mnt" >"$T/out" 2>"$T/err" &&
		rc=0 || rc=$?
	lines=$(grep -c . "$T/err" || true)
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 124 ] && [ "$lines" = 1 ] && grep -qiF -- "$expect" "$T/err" &&
		! is_mounted "$mnt"; then
		pass "$name: $(cat "$T/err")"
	else
		fail "$name: exit $rc, $lines stderr lines, want one mentioning '$expect': $(head -c 300 "$T/err")"
		is_mounted "$mnt" && sf_umount "$mnt"
	fi
}

ok_case() {
	local mnt=$T/mnt-$name n
	if ! sf_mount --cache "$T/cache-$name" "$ref" "$mnt" 2>"$T/err"; then
		fail "$name: mount failed: $(head -n 2 "$T/err" | tr '\n' ' ')"
		return
	fi
	note_daemon_cwd "$mnt"
	check "$name: complete" wait_complete "$mnt" 300
	case $name in
	absolute)
		check "$name: /abs/file is served as layers/1/abs/file" \
			test "$(cat "$mnt/layers/1/abs/file")" = "absolute names stay inside"
		;;
	huge-dir)
		n=$entries
		check "$name: all $n entries listed" test "$(ls -f "$mnt/layers/1/big" | wc -l)" = $((n + 2))
		check "$name: the last entry is there" test -f "$mnt/layers/1/big/$(printf %07d $((n - 1)))"
		;;
	esac
	check "$name: umount" sf_umount "$mnt"
	check "$name: the cache holds only its own files" cache_layout_ok "$T/cache-$name"
}

# Every soci-fuse command runs in an empty directory of its own: a daemon
# that kept it as its working directory would write relative names there.
# (Daemons chdir to / as they detach; note_daemon_cwd records where each
# really was.)  What / and it hold now is compared at the end.
CWD=$T/cwd
mkdir -p "$CWD"
LC_ALL=C ls -A / >"$T/root-before"
cd "$CWD"
for ((i = 0; i < N; i++)); do
	t0=$(date +%s.%N)
	# shellcheck disable=SC1090
	. "$T/hostile/case-$i.sh"
	[ -z "${HOSTILE_CASES:-}" ] || [[ ",$HOSTILE_CASES," == *",$name,"* ]] || continue
	case $kind in
	layer) layer_case ;;
	mount) mount_case ;;
	ok) ok_case ;;
	esac
	log "$name: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
done

# The limit options refuse nonsense with one line and exit 2.
for bad in "--max-entries 0" "--max-expansion-ratio 5K" "--max-layer-size -1" "--max-layer-size 1Q"; do
	# shellcheck disable=SC2086 # option and value
	"$SOCI_FUSE" mount $bad "$REGISTRY/test/hostile-absolute:t" "$T/mnt-absolute" 2>"$T/err" &&
		rc=0 || rc=$?
	check "bad value: $bad: exit 2, one line naming the option" \
		test "$rc" = 2 -a "$(grep -c . "$T/err")" = 1 -a -n "$(grep -F -- "${bad% *}" "$T/err")"
done

# Nothing written outside the cache dirs (inside them, cache_layout_ok
# checked each case): the daemons' working directories were / or $CWD;
# nothing appeared in / (where absolute names and relative ones from a
# daemon's cwd would go) or in $CWD; no file named like a traversal
# target anywhere under $T or /tmp (where ../ from a cache dir leads);
# /etc/passwd untouched.
cd /
cwds_known() {
	local bad
	bad=$(sort -u "$T/daemon-cwds" | grep -vx -e / -e "$CWD" || true)
	if [ ! -s "$T/daemon-cwds" ] || [ -n "$bad" ]; then
		echo "daemon cwds: $(sort -u "$T/daemon-cwds" 2>/dev/null)" >&2
		return 1
	fi
}
check "nothing escaped: every daemon ran in / or $CWD" cwds_known
nothing_new_in_root() {
	local new
	new=$(LC_ALL=C ls -A / | LC_ALL=C comm -13 "$T/root-before" -)
	[ -z "$new" ] || { echo "new in /: $new" >&2; return 1; }
}
check "nothing escaped: nothing new in /" nothing_new_in_root
check "nothing escaped: the commands' working directory $CWD is still empty" \
	test -z "$(ls -A "$CWD")"
check "nothing escaped: no 'escape'/'evil'/'OUTSIDE'/'abs' file created since the start" \
	test -z "$(find "$T" /tmp -xdev \( -name escape -o -name evil -o -name OUTSIDE -o -name abs \) \
		-newer "$T/stamp" 2>/dev/null | head -n 5)"
check "nothing escaped: /etc/passwd unchanged" test "$(sha256sum /etc/passwd)" = "$PASSWD_SUM"
pids=$(soci_fuse_pids)
# shellcheck disable=SC2086 # one PID per word
check "no soci-fuse daemon left running" wait_gone 10 $pids

summary
