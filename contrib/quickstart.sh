#!/bin/bash
# quickstart.sh - install what soci-fuse needs on Debian 12, build it, then
# either show it working or run its test suite.  Run as root from anywhere.
#
#   contrib/quickstart.sh demo   debootstrap a minimal bookworm, turn it into
#                                a 2-layer image in a loopback registry,
#                                soci-fuse mount it, stack an overlay and
#                                chroot into it
#   contrib/quickstart.sh test   `make check` in build/, then
#                                `make install` and `make uninstall` into a
#                                DESTDIR, then `make check` again with
#                                --enable-sanitizers (ASan+UBSan) in
#                                build-asan/, then the unit tests and a
#                                short load.sh under ThreadSanitizer in
#                                build-tsan/, then the libFuzzer targets
#                                (fuzz/run.sh, FUZZ_SECONDS each, default
#                                45) in build-fuzz/; exits non-zero on any
#                                failure, on any skipped test (only a
#                                missing /dev/fuse skips, and CI must not
#                                pass without running the tests) and when
#                                the unit tests are not built (no cmocka)
#   contrib/quickstart.sh build  only install the packages and build in
#                                build/ (bench/run.sh uses it)
#
# All builds are VPATH builds (build/, build-asan/...): configure refuses a
# VPATH build once the source dir itself has been configured, so an
# in-tree configuration is removed with `make distclean` first.
#
# Knobs: QUICKSTART_SKIP_INSTALL=1 (no apt-get), QUICKSTART_SKIP_BUILD=1
# with SOCI_FUSE=/path/to/soci-fuse (demo with an existing binary),
# DEBIAN_MIRROR=http://... (debootstrap mirror; default: the one apt uses).
set -euo pipefail

MODE=${1:-}
case $MODE in
demo | test | build) ;;
*)
	echo "usage: $0 demo|test|build" >&2
	exit 2
	;;
esac
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${JOBS:-2}

if [ -t 1 ]; then
	say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
	say() { printf '\n==> %s\n' "$*"; }
fi
die() { echo "quickstart: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, FUSE and overlay mounts, chroot)"

# ------------------------------------------------------------ packages
BUILD_DEPS=(build-essential autoconf automake libtool pkg-config libfuse3-dev fuse3
	libcurl4-openssl-dev zlib1g-dev libzstd-dev libjansson-dev libssl-dev libisal-dev
	libcmocka-dev clang)
RUN_DEPS=(docker-registry skopeo umoci podman debootstrap busybox-static python3 attr
	zstd libcap2-bin curl ca-certificates util-linux runc openssl groff-base)

install_packages() {
	local missing=() p
	if [ "${QUICKSTART_SKIP_INSTALL:-0}" = 1 ]; then
		say "skipping package installation (QUICKSTART_SKIP_INSTALL=1)"
		return
	fi
	for p in "${BUILD_DEPS[@]}" "${RUN_DEPS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} = 0 ]; then
		say "all ${#BUILD_DEPS[@]} build and ${#RUN_DEPS[@]} runtime/test packages are installed"
		return
	fi
	say "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q "${missing[@]}"
	# The kernel side: FUSE and overlayfs (built in on most kernels).
	modprobe fuse 2>/dev/null || true
	modprobe overlay 2>/dev/null || true
}

# ------------------------------------------------------------ build
# build DIR [configure args]: autoreconf (once), configure and make in DIR.
AUTORECONF_DONE=0
build() {
	local dir=$1
	shift
	if [ $AUTORECONF_DONE = 0 ]; then
		if [ -f "$SRC/config.status" ]; then
			say "source dir is configured in-tree; make distclean (VPATH builds need that)"
			make -C "$SRC" distclean >/dev/null 2>&1 || rm -f "$SRC/config.status"
		fi
		say "autoreconf -fi"
		(cd "$SRC" && autoreconf -fi)
		AUTORECONF_DONE=1
	fi
	say "configure $* in ${dir#"$SRC"/}/"
	mkdir -p "$dir"
	(cd "$dir" && "$SRC/configure" "$@")
	say "make -j$JOBS in ${dir#"$SRC"/}/"
	make -C "$dir" -j"$JOBS"
}

# ------------------------------------------------------------ test mode
# counts FILE: "pass fail skip" from an automake test-suite.log
counts() {
	awk '/^# PASS:/ {p += $3} /^# XFAIL:/ {p += $3} /^# FAIL:/ {f += $3}
	     /^# XPASS:/ {f += $3} /^# ERROR:/ {f += $3} /^# SKIP:/ {s += $3}
	     END {printf "%d %d %d\n", p, f, s}' "$1"
}

TOTAL_P=0 TOTAL_F=0 TOTAL_S=0
# check_in DIR LABEL: make check in DIR; print test-suite.log on failure.
check_in() {
	local dir=$1 label=$2 rc=0 p=0 f=0 s=0
	shift 2 # the rest: make variables (e.g. TESTS=...)
	say "make check ($label)"
	make -C "$dir" -j"$JOBS" check "$@" || rc=$?
	if [ -f "$dir/test-suite.log" ]; then
		read -r p f s < <(counts "$dir/test-suite.log")
		TOTAL_P=$((TOTAL_P + p)) TOTAL_F=$((TOTAL_F + f)) TOTAL_S=$((TOTAL_S + s))
	fi
	if [ $rc != 0 ]; then
		TOTAL_F=$((TOTAL_F + (f == 0)))	# a failing make with no failed test
		say "make check ($label) FAILED; $dir/test-suite.log:"
		cat "$dir/test-suite.log" 2>/dev/null || echo "(no test-suite.log: the build of the tests failed)"
	fi
	return $rc
}

# result NAME RC: count a check that is not a test of the suite.
result() {
	if [ "$2" = 0 ]; then
		TOTAL_P=$((TOTAL_P + 1))
	else
		TOTAL_F=$((TOTAL_F + 1))
		say "$1 FAILED"
	fi
	return "$2"
}

# unit_tests_in DIR: configure left the cmocka unit tests out of DIR's
# TESTS when cmocka is missing (Makefile.am's `if HAVE_CMOCKA` comments
# them out of the Makefile), which make check does not report.
unit_tests_in() {
	if grep -q '^UNIT_TESTS = tests/unit/' "$1/Makefile"; then
		return 0
	fi
	echo "quickstart: ${1#"$SRC"/}/ has no unit tests: configure found no cmocka (libcmocka-dev)" >&2
	return 1
}

# The files `make install` must put below the prefix; nothing else.
INSTALLED=(bin/soci-fuse share/man/man1/soci-fuse.1 share/bash-completion/completions/soci-fuse
	lib/systemd/system/soci-fuse-store.service share/doc/soci-fuse/examples/storage.conf.soci-fuse
	share/doc/soci-fuse/examples/soci-fuse-store-daemonset.yaml)

# installed_ok DEST PREFIX: exactly INSTALLED is there, the binary runs,
# the unit starts the installed binary.
installed_ok() {
	local dest=$1 prefix=$2 f rc=0 got want
	for f in "${INSTALLED[@]}"; do
		[ -f "$dest$prefix/$f" ] || { echo "quickstart: not installed: $prefix/$f" >&2; rc=1; }
	done
	want=$(for f in "${INSTALLED[@]}"; do echo "$dest$prefix/$f"; done | sort)
	got=$(find "$dest" ! -type d | sort)
	[ "$got" = "$want" ] || {
		echo "quickstart: make install put files not in INSTALLED (contrib/quickstart.sh):" >&2
		comm -13 <(echo "$want") <(echo "$got") >&2
		rc=1
	}
	"$dest$prefix/bin/soci-fuse" --version >/dev/null || rc=1
	grep -q "^ExecStart=$prefix/bin/soci-fuse store " \
		"$dest$prefix/lib/systemd/system/soci-fuse-store.service" ||
		{ echo "quickstart: the installed unit does not run $prefix/bin/soci-fuse" >&2; rc=1; }
	return $rc
}

# install_check DIR: make install DESTDIR=<tmp>, check, make uninstall
# leaves no file behind.
install_check() {
	local dir=$1 dest prefix rc=0 left
	dest=$(mktemp -d /tmp/soci-fuse-install.XXXXXX)
	prefix=$(sed -n 's/^prefix = //p' "$dir/Makefile")
	say "make install + uninstall DESTDIR=$dest (prefix $prefix)"
	if make -C "$dir" install DESTDIR="$dest" >"$dest.log" 2>&1; then
		installed_ok "$dest" "$prefix" || rc=1
	else
		tail -n 20 "$dest.log"
		rc=1
	fi
	if make -C "$dir" uninstall DESTDIR="$dest" >>"$dest.log" 2>&1; then
		left=$(find "$dest" ! -type d)
		[ -z "$left" ] || { echo "quickstart: make uninstall left: $left" >&2; rc=1; }
	else
		tail -n 20 "$dest.log"
		rc=1
	fi
	rm -rf "$dest" "$dest.log"
	return $rc
}

run_tests() {
	local rc=0 sanlog=$SRC/build-asan/sanitizer-logs f r
	build "$SRC/build" --enable-werror
	r=0 && unit_tests_in "$SRC/build" || r=1
	result "unit tests in build/" $r || rc=1
	check_in "$SRC/build" "plain build" || rc=1
	r=0 && install_check "$SRC/build" || r=1
	result "make install/uninstall" $r || rc=1

	build "$SRC/build-asan" --enable-sanitizers --enable-werror
	r=0 && unit_tests_in "$SRC/build-asan" || r=1
	result "unit tests in build-asan/" $r || rc=1
	rm -rf "$sanlog"
	mkdir -p "$sanlog"
	# Reports go to files as well as failing the process: a daemonized
	# soci-fuse has no stderr, so its reports would otherwise be lost.
	export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:log_path=$sanlog/asan"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$sanlog/ubsan"
	export LSAN_OPTIONS="report_objects=1"
	# shorter variants of the long robustness tests (CI time budget)
	CRASH_SEEDS=4 LOAD_MIB=8 LOAD_MOUNTS=4 check_in "$SRC/build-asan" "ASan+UBSan" || rc=1
	unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
	if compgen -G "$sanlog/*" >/dev/null; then
		say "sanitizer reports (also from daemons) in $sanlog:"
		for f in "$sanlog"/*; do
			echo "--- $f"
			head -n 200 "$f"
		done
		rc=1
		TOTAL_F=$((TOTAL_F + 1))
	fi

	# ThreadSanitizer in build-tsan/: the unit tests that run threads
	# (fetcher, chunk map, resume) and a short load.sh (4 mounts, 16
	# readers, mount churn): races between FUSE workers, layer threads and
	# the fetcher.  The single-threaded unit tests would add time, not
	# coverage.  Reports go to files (daemons have no stderr).
	build "$SRC/build-tsan" --enable-sanitizers=thread --enable-werror
	rm -rf "$SRC/build-tsan/sanitizer-logs"
	mkdir -p "$SRC/build-tsan/sanitizer-logs"
	export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:log_path=$SRC/build-tsan/sanitizer-logs/tsan"
	LOAD_MIB=8 LOAD_MOUNTS=4 LOAD_THREADS=16 check_in "$SRC/build-tsan" "TSan: threaded unit tests + short load" \
		TESTS="tests/unit/test_fetch tests/unit/test_chunkmap tests/unit/test_resume tests/integration/load.sh" ||
		rc=1
	unset TSAN_OPTIONS
	if compgen -G "$SRC/build-tsan/sanitizer-logs/*" >/dev/null; then
		say "ThreadSanitizer reports in $SRC/build-tsan/sanitizer-logs:"
		for f in "$SRC/build-tsan/sanitizer-logs"/*; do
			echo "--- $f"
			head -n 200 "$f"
		done
		rc=1
		TOTAL_F=$((TOTAL_F + 1))
	fi

	# libFuzzer targets (ASan+UBSan) in build-fuzz/: saved regressions, then
	# FUZZ_SECONDS per target; its closing line 'fuzz: N passed, M failed'
	say "fuzzing (fuzz/run.sh, ${FUZZ_SECONDS:-45}s per target)"
	local fuzzlog=$SRC/build-fuzz/run.log fp=0 ff=0 frc=0
	mkdir -p "$SRC/build-fuzz"
	JOBS=$JOBS bash "$SRC/fuzz/run.sh" "${FUZZ_SECONDS:-45}" 2>&1 | tee "$fuzzlog" || frc=$?
	read -r fp ff < <(sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$fuzzlog" |
		tail -n 1) || true
	fp=${fp:-0} ff=${ff:-0}
	[ "$frc" != 0 ] && [ "$ff" = 0 ] && ff=1 # failed without a count (e.g. the build)
	TOTAL_P=$((TOTAL_P + fp)) TOTAL_F=$((TOTAL_F + ff))
	[ "$ff" = 0 ] || rc=1

	if [ "$TOTAL_S" != 0 ]; then
		say "$TOTAL_S tests were SKIPPED (is /dev/fuse missing?): that is a failure here"
		rc=1
	fi
	if [ $rc = 0 ]; then
		say "all tests passed (plain, install, ASan+UBSan, TSan and fuzzing)"
	else
		say "TESTS FAILED"
	fi
	# the closing line CI reads
	echo "quickstart: $TOTAL_P passed, $TOTAL_F failed, $TOTAL_S skipped"
	return $rc
}

# ------------------------------------------------------------ demo mode
# The Debian mirror apt uses (deb822 or one-line sources), for debootstrap.
debian_mirror() {
	local m
	if [ -n "${DEBIAN_MIRROR:-}" ]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')
	[ -n "$m" ] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" && $2 !~ /security/ && $0 ~ /bookworm/ {print $2; exit}')
	echo "${m:-http://deb.debian.org/debian}"
}

run_demo() {
	local cache_dir=/var/cache/soci-fuse-demo tarball rootfs ref mnt merged t0 t1
	if [ "${QUICKSTART_SKIP_BUILD:-0}" = 1 ]; then
		[ -x "${SOCI_FUSE:-}" ] || die "QUICKSTART_SKIP_BUILD=1 needs SOCI_FUSE=/path/to/soci-fuse"
	else
		build "$SRC/build"
		SOCI_FUSE=$SRC/build/soci-fuse
	fi
	[ -c /dev/fuse ] || die "/dev/fuse is absent: no FUSE in this kernel/container"
	export SOCI_FUSE TOP_SRCDIR=$SRC
	# lib.sh: temp dir $T, registry helpers, cleanup trap (unmounts, stops
	# the registry and the daemon)
	# shellcheck source=/dev/null
	. "$SRC/tests/integration/lib.sh"

	say "layer 0: debootstrap --variant=minbase bookworm"
	tarball=$cache_dir/bookworm-minbase.tar.zst
	rootfs=$T/image/l0
	mkdir -p "$cache_dir" "$rootfs"
	if [ ! -s "$tarball" ]; then
		debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)"
		rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
		tar --numeric-owner --xattrs --xattrs-include='*' -C "$rootfs" -cf - . |
			zstd -q -T0 -o "$tarball.tmp"
		mv "$tarball.tmp" "$tarball"
		echo "cached as $tarball"
	else
		echo "from the cache: $tarball"
		zstd -dc "$tarball" | tar --numeric-owner --xattrs --xattrs-include='*' -xpf - -C "$rootfs"
	fi

	say "layer 1: add /etc/motd, delete /etc/issue.net and /usr/share/doc"
	# overlay upper-dir form: char 0/0 = whiteout (see tests/integration/mkimage.py)
	mkdir -p "$T/image/l1/etc" "$T/image/l1/usr/share"
	echo 'Hello from layer 1 of the soci-fuse demo image.' >"$T/image/l1/etc/motd"
	mknod "$T/image/l1/etc/issue.net" c 0 0
	mknod "$T/image/l1/usr/share/doc" c 0 0
	chmod 755 "$T/image/l1" "$T/image/l1/etc" "$T/image/l1/usr" "$T/image/l1/usr/share"
	python3 "$SRC/tests/integration/mkimage.py" --no-index --no-zstd "$T/image/out" \
		"$T/image/l0" "$T/image/l1"

	say "push to a registry on loopback"
	start_registry
	ref=$REGISTRY/demo/bookworm:latest
	skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$T/image/out/layout:gzip" "docker://$ref"
	echo "pushed $ref"

	say "soci-fuse mount $ref"
	mnt=$T/mnt
	mkdir -p "$mnt"
	t0=$(date +%s%N)
	"$SOCI_FUSE" mount --cache "$T/cache" "$ref" "$mnt"
	echo "\$ ls $mnt/layers"
	ls "$mnt/layers"
	t1=$(date +%s%N)
	echo "mount -> ls layers: $(((t1 - t0) / 1000000)) ms"
	echo "\$ cat $mnt/lowerdir"
	cat "$mnt/lowerdir"
	echo
	echo "\$ cat $mnt/status"
	cat "$mnt/status"
	echo

	say "overlay on lowerdir, chroot into it"
	merged=$(overlay_mount "$(cat "$mnt/lowerdir")" "$T/rootfs")
	echo "\$ chroot $merged /bin/sh -c 'cat /etc/os-release; cat /etc/motd; ...'"
	chroot "$merged" /bin/sh -c 'cat /etc/os-release; echo; cat /etc/motd;
		test -e /etc/issue.net || echo "/etc/issue.net: deleted by layer 1";
		test -e /usr/share/doc || echo "/usr/share/doc: deleted by layer 1"'
	t0=$(date +%s%N)
	wait_complete "$mnt" 600
	t1=$(date +%s%N)
	echo "all layers complete $(((t1 - t0) / 1000000)) ms later:"
	cat "$mnt/status"
	echo

	say "unmount"
	umount "$merged"
	"$SOCI_FUSE" umount "$mnt"

	say "side by side, cold caches: soci-fuse full pull vs podman pull"
	local sf_ms podman_ms
	t0=$(date +%s%N)
	mkdir -p "$T/mnt-cold"
	"$SOCI_FUSE" mount --cache "$T/cache-cold" "$ref" "$T/mnt-cold"
	wait_complete "$T/mnt-cold" 600
	t1=$(date +%s%N)
	sf_ms=$(((t1 - t0) / 1000000))
	"$SOCI_FUSE" umount "$T/mnt-cold"
	t0=$(date +%s%N)
	PODMAN_DIR=$T/podman-cold podman_cmd pull -q --tls-verify=false "$ref" >/dev/null
	t1=$(date +%s%N)
	podman_ms=$(((t1 - t0) / 1000000))
	echo "soci-fuse mount until every layer is verified and cached: $sf_ms ms"
	echo "podman pull:                                             $podman_ms ms"

	stop_registry
	say "demo done"
}

install_packages
case $MODE in
demo) run_demo ;;
test) run_tests ;;
build) build "$SRC/build" ;;
esac
