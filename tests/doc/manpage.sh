#!/bin/bash
# manpage.sh - contrib/soci-fuse.1 renders cleanly: groff has no warnings,
# and every line of the SYNOPSIS is one command (a missing .br joins two
# commands on one line, which man -l shows and nothing else notices).
# Needs groff (groff-base); no root, no FUSE.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
: "${TOP_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
MAN=$TOP_SRCDIR/contrib/soci-fuse.1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

command -v groff >/dev/null || { echo "manpage: ERROR: groff is not installed" >&2; exit 1; }
warnings=$(groff -man -ww -z "$MAN" 2>&1)
[ -z "$warnings" ] || fail "groff warns: $warnings"

# rendered wide (no wrapping), without bold/underline overstrikes
synopsis=$(groff -man -Tascii -rLL=300n -P-cbou "$MAN" 2>/dev/null |
	sed -n '/^SYNOPSIS/,/^DESCRIPTION/{/^SYNOPSIS/d;/^DESCRIPTION/d;/^ *$/d;p}')
[ -n "$synopsis" ] || fail "no SYNOPSIS rendered"
while read -r line; do
	words=$(grep -o 'soci-fuse' <<<"$line" | wc -l)
	if [ "$words" != 1 ] || [[ $line != soci-fuse* ]]; then
		fail "SYNOPSIS line is not one command: $line"
	fi
done <<<"$synopsis"
# each command of the CLI has its line
for cmd in mount rootfs store umount pull status "cache ls" "cache gc"; do
	grep -q "^ *soci-fuse $cmd " <<<"$synopsis" || fail "SYNOPSIS lacks soci-fuse $cmd"
done
[ "$fails" = 0 ] && echo "manpage: ok"
exit $((fails > 0))
