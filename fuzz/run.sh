#!/bin/bash
# run.sh [SECONDS] - build the libFuzzer targets (ASan+UBSan) in build-fuzz/
# and fuzz each of them for SECONDS (default 60) from a copy of its seed
# corpus.  Every saved crash input in fuzz/regressions/<target>/ is replayed
# first and must pass.  A crash, leak, timeout or OOM found now is copied to
# fuzz/regressions/<target>/ (so the next run replays it) and fails the run.
# Ends with 'fuzz: N passed, M failed'; exit status 1 when M > 0.
#
# Knobs: JOBS (make -j, default 2), FUZZ_BUILD_DIR (default build-fuzz).
set -uo pipefail

SECONDS_EACH=${1:-60}
case $SECONDS_EACH in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$here/.." && pwd)
B=${FUZZ_BUILD_DIR:-$SRC/build-fuzz}
JOBS=${JOBS:-2}

# target:max_len
TARGETS=(fuzz_tar:65536 fuzz_layer_stream:65536 fuzz_manifest:16384 fuzz_ref:512
	fuzz_www_auth:10240 fuzz_regconf:16384)

say() { printf '\n==> %s\n' "$*"; }
die() { echo "fuzz: ERROR: $*" >&2; echo "fuzz: 0 passed, 1 failed"; exit 1; }

# ------------------------------------------------------------ build
if [ ! -x "$SRC/configure" ] || [ "$SRC/configure.ac" -nt "$SRC/configure" ] ||
	[ "$SRC/Makefile.am" -nt "$SRC/Makefile.in" ]; then
	say "autoreconf -fi"
	(cd "$SRC" && autoreconf -fi) || die "autoreconf failed"
fi
[ -f "$SRC/config.status" ] &&
	die "the source dir is configured in-tree; run 'make distclean' there (VPATH builds need that)"
mkdir -p "$B"
if [ ! -f "$B/Makefile" ] || ! grep -q -- '--enable-fuzzing' "$B/config.status" 2>/dev/null; then
	say "configure --enable-fuzzing in $B"
	(cd "$B" && CC=clang "$SRC/configure" --enable-fuzzing) || die "configure failed"
fi
say "make -j$JOBS in $B"
make -C "$B" -j"$JOBS" || die "build failed"

# Leaks are bugs too (libFuzzer checks them after each input with ASan).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
COMMON=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)

pass=0 fail=0
for spec in "${TARGETS[@]}"; do
	t=${spec%%:*} max_len=${spec#*:}
	bin=$B/fuzz/$t
	reg=$here/regressions/$t
	log=$B/fuzz-logs/$t
	rm -rf "$log"
	mkdir -p "$log"

	# ---- replay every saved crash input: all must pass, none is skipped
	mapfile -t files < <(find "$reg" -type f 2>/dev/null | sort)
	if [ ${#files[@]} -gt 0 ]; then
		say "$t: replaying ${#files[@]} regression input(s)"
		rfail=0
		for f in "${files[@]}"; do
			if ! "$bin" "${COMMON[@]}" "$f" >"$log/replay.log" 2>&1; then
				echo "FAIL: $t regression ${f#"$SRC"/}"
				tail -n 60 "$log/replay.log"
				rfail=1
			fi
		done
		if [ $rfail = 1 ]; then
			fail=$((fail + 1))
			continue
		fi
	fi

	# ---- fuzz from a copy of the seed corpus
	say "$t: fuzzing for ${SECONDS_EACH}s (-max_len=$max_len)"
	work=$B/fuzz-corpus/$t
	art=$B/fuzz-artifacts/$t/
	rm -rf "$art"
	mkdir -p "$work" "$art"
	cp -f "$here/corpus/$t"/* "$work"/ 2>/dev/null || true
	rc=0
	"$bin" "${COMMON[@]}" -max_len="$max_len" -max_total_time="$SECONDS_EACH" \
		-artifact_prefix="$art" "$work" >"$log/fuzz.log" 2>&1 || rc=$?
	grep -E '^(stat::|#[0-9]+ +DONE)' "$log/fuzz.log" | tr '\n' ' '
	echo
	mapfile -t found < <(find "$art" -type f \( -name 'crash-*' -o -name 'leak-*' \
		-o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null)
	if [ $rc != 0 ] || [ ${#found[@]} -gt 0 ]; then
		echo "FAIL: $t (exit $rc); log: $log/fuzz.log"
		grep -E -A40 '^==[0-9]+==ERROR|runtime error|^==[0-9]+== ERROR' "$log/fuzz.log" | head -n 80
		mkdir -p "$reg"
		for f in "${found[@]}"; do
			cp "$f" "$reg/"
			echo "saved ${reg#"$SRC"/}/$(basename "$f")"
		done
		fail=$((fail + 1))
	else
		echo "ok: $t"
		pass=$((pass + 1))
	fi
done

echo "fuzz: $pass passed, $fail failed"
[ $fail = 0 ]
