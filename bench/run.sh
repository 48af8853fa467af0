#!/bin/bash
# bench/run.sh - pull a >1.2 GB image with soci-fuse and the usual tools,
# side by side, through a per-connection rate limit; print medians.
#
#   bench/run.sh [--rate 32m] [--runs 3] [--connections 16] [--chunk-size 8M]
#                [--weights-mib 1200] [--sources 6000] [--variants "gzip zstd"]
#                [--methods "soci-fuse podman skopeo-umoci soci-strategy curl-tar"]
#                [--blobs store|registry] [--no-mount] [--build-only] [--serve]
#                [--results FILE.md]
#
# --build-only builds and pushes the image; --serve serves it through the
# throttle until interrupted (for profiling by hand).
#
# Needs root and /dev/fuse.  Missing tools (docker-registry, nginx, podman,
# skopeo, umoci, igzip, zstd, curl, openssl, python3, debootstrap) are
# installed with apt-get, and soci-fuse is built in build/ when SOCI_FUSE
# (default build/soci-fuse) does not exist yet.  Not part of `make check`.
#
# The image (built once, cached in BENCH_CACHE, default
# /var/cache/soci-fuse-bench, with the registry storage it was pushed to):
#   layer 0  Debian bookworm minbase (debootstrap; the tarball of
#            contrib/quickstart.sh demo in /var/cache/soci-fuse-demo is
#            reused when present)
#   layer 1  opt/model/{config.json,tokenizer.json} (small, first in the
#            tar) and opt/model/weights.bin: WEIGHTS_MIB of deterministic
#            pseudo-random bytes with a little structure (gzip saves ~2%)
#   layer 2  SOURCES small generated source files in src/modNN/
#   layer 3  a small top layer (etc/bench-release, an entrypoint)
# as tags gzip and zstd (tests/integration/mkimage.py: deterministic tars).
#
# The registry (docker-registry on 127.0.0.1) is reached through nginx with
# `limit_rate RATE` per connection: one connection is slow, many add up, as
# with an object store.  With --blobs store (the default) nginx serves blob
# GETs itself from the registry's storage (static files, sendfile), the way
# a registry's object store or CDN serves them once the registry redirected
# there, and proxies the rest of the API to docker-registry; with --blobs
# registry docker-registry serves the blobs too, through nginx.  Client and
# server share this machine's cores, and the registry copying every byte
# through two loopback sockets cost ~2 s of CPU per pull of the image that
# a remote store would not take from the client; either way every method
# gets the same server.  Each run, with a cold (empty) cache/storage for
# every method, in the same run:
#   soci-fuse      soci-fuse pull --cache <empty dir>
#   podman         podman pull into an empty, isolated storage
#   skopeo-umoci   skopeo copy docker:// -> oci: ; umoci unpack
#   soci-strategy  SOCI's parallel pull: CONNECTIONS parallel range GETs of
#                  CHUNK bytes of every blob to a file (benchlib.py pget);
#                  each blob, once whole: igzip -dc | tar x (zstd -dc)
#   curl-tar       one `curl | igzip -dc | tar x` per layer, all in parallel
# and two bounds:
#   limit          compressed bytes / (CONNECTIONS x RATE)
#   floor          the CPU floor: CPU time of inflating every blob
#                  (igzip/zstd) and SHA-256 of blobs and tars (openssl),
#                  blobs in the page cache; as wall time on these cores:
#                  max(longest single inflate, total / cores)
# Then (gzip variant) a mount with an empty cache: mount -> `ls` of the top
# layer, mount -> a file in the first MiB of layer 1 read, peak RSS of the
# daemon; sequential read of weights.bin through FUSE vs the cache's data
# file (echo 3 > /proc/sys/vm/drop_caches before each); `find -ls` of
# layer 2 through FUSE vs the staged tree on ext4 (warm, second of 2).
#
# Output: a table of medians (terminal and bench/RESULTS.md, with date,
# machine and parameters) and bench/results.svg (pull time per method).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$BENCH_DIR/.." && pwd)
: "${SOCI_FUSE:=$SRC/build/soci-fuse}"
SOCI_FUSE=$(readlink -f "$SOCI_FUSE")
export TOP_SRCDIR=$SRC SOCI_FUSE
: "${BENCH_CACHE:=/var/cache/soci-fuse-bench}"

RATE=32m
RUNS=3
CONNS=16
CHUNK=8M
WEIGHTS_MIB=1200
SOURCES=6000
VARIANTS="gzip zstd"
METHODS="soci-fuse podman skopeo-umoci soci-strategy curl-tar"
BLOBS=store
DO_MOUNT=1
BUILD_ONLY=0
SERVE=0
RESULTS_MD=$BENCH_DIR/RESULTS.md
while [ $# -gt 0 ]; do
	case $1 in
	--rate) RATE=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--connections) CONNS=$2; shift 2 ;;
	--chunk-size) CHUNK=$2; shift 2 ;;
	--weights-mib) WEIGHTS_MIB=$2; shift 2 ;;
	--sources) SOURCES=$2; shift 2 ;;
	--variants) VARIANTS=$2; shift 2 ;;
	--methods) METHODS=$2; shift 2 ;;
	--blobs) BLOBS=$2; shift 2 ;;
	--no-mount) DO_MOUNT=0; shift ;;
	--build-only) BUILD_ONLY=1; shift ;;
	--serve) SERVE=1; shift ;;
	--results) RESULTS_MD=$2; shift 2 ;;
	-h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $BLOBS in store | registry) ;; *) echo "run.sh: --blobs store|registry" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (FUSE mounts, podman storage, drop_caches)" >&2; exit 1; }

# Debian packages of the tools run here, by command
declare -A PKG_OF=([docker-registry]=docker-registry [nginx]=nginx-light [podman]=podman
	[skopeo]=skopeo [umoci]=umoci [igzip]=isal [zstd]=zstd [curl]=curl [openssl]=openssl
	[python3]=python3 [debootstrap]=debootstrap [runc]=runc)
ensure_tools() {
	local missing=() c
	for c in "${!PKG_OF[@]}"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("${PKG_OF[$c]}")
	done
	[ ${#missing[@]} = 0 ] && return
	echo "run.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	apt-get install -y -q "${missing[@]}" >&2
	# the packaged nginx starts a system instance on port 80: not ours
	systemctl disable --now nginx >/dev/null 2>&1 || true
}
ensure_tools
if [ ! -x "$SOCI_FUSE" ] && [ "$SOCI_FUSE" = "$SRC/build/soci-fuse" ]; then
	echo "run.sh: building soci-fuse in $SRC/build" >&2
	bash "$SRC/contrib/quickstart.sh" build >&2
fi
[ -x "$SOCI_FUSE" ] || { echo "run.sh: $SOCI_FUSE: not built (set SOCI_FUSE)" >&2; exit 1; }

# bytes of a size with nginx/soci-fuse suffixes (k, m, g = powers of 1024)
to_bytes() {
	local v=${1%[kKmMgG]} s=${1: -1}
	case $s in
	k | K) echo $((v << 10)) ;; m | M) echo $((v << 20)) ;; g | G) echo $((v << 30)) ;;
	*) echo "$1" ;;
	esac
}
RATE_B=$(to_bytes "$RATE")
CHUNK_B=$(to_bytes "$CHUNK")

# lib.sh: $T (temp dir), start_registry, podman_cmd, cleanup trap.
# shellcheck source=../tests/integration/lib.sh
. "$SRC/tests/integration/lib.sh"

say() { printf '\n== %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# ------------------------------------------------------------ the image
STAMP="weights=$WEIGHTS_MIB sources=$SOURCES v=1"
IMG=$BENCH_CACHE/image
build_image() {
	local base=/var/cache/soci-fuse-demo/bookworm-minbase.tar.zst stage=$BENCH_CACHE/stage
	if [ -f "$IMG/stamp" ] && [ "$(cat "$IMG/stamp")" = "$STAMP" ]; then
		say "image: from the cache ($IMG)"
		return
	fi
	say "image: building ($STAMP) in $BENCH_CACHE"
	rm -rf "$IMG" "$stage" "$BENCH_CACHE/registry"
	mkdir -p "$stage"/{l0,l1/opt/model,l2,l3/etc,l3/usr/local/bin}
	if [ -s "$base" ]; then
		zstd -dc "$base" | tar --numeric-owner --xattrs --xattrs-include='*' -xpf - -C "$stage/l0"
	else
		debootstrap --variant=minbase bookworm "$stage/l0" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
		rm -rf "$stage"/l0/var/cache/apt/archives/*.deb "$stage"/l0/var/lib/apt/lists/*
	fi
	printf '{"architectures": ["BenchForCausalLM"], "hidden_size": 4096}\n' \
		>"$stage/l1/opt/model/config.json"
	python3 -c 'import json; print(json.dumps({"vocab": {"tok%d" % i: i for i in range(2000)}}))' \
		>"$stage/l1/opt/model/tokenizer.json"
	python3 "$BENCH_DIR/benchlib.py" weights "$stage/l1/opt/model/weights.bin" $((WEIGHTS_MIB << 20))
	python3 "$BENCH_DIR/benchlib.py" sources "$stage/l2" "$SOURCES"
	echo "soci-fuse benchmark image ($STAMP)" >"$stage/l3/etc/bench-release"
	printf '#!/bin/sh\nexec python3 -c "print(1)"\n' >"$stage/l3/usr/local/bin/entrypoint"
	chmod 755 "$stage/l3/usr/local/bin/entrypoint"
	find "$stage"/l1 "$stage"/l2 "$stage"/l3 -exec touch -h -d '2024-01-01 00:00:00 UTC' {} +
	python3 "$SRC/tests/integration/mkimage.py" --no-index "$IMG.tmp" \
		"$stage/l0" "$stage/l1" "$stage/l2" "$stage/l3"
	# keep the small-files tree: the ext4 side of the find -ls comparison
	rm -rf "$BENCH_CACHE/src-tree"
	mv "$stage/l2" "$BENCH_CACHE/src-tree"
	rm -rf "$stage"
	echo "$STAMP" >"$IMG.tmp/stamp"
	mv "$IMG.tmp" "$IMG"
}

push_image() {
	local v
	if [ -f "$BENCH_CACHE/registry/pushed" ] &&
		[ "$(cat "$BENCH_CACHE/registry/pushed")" = "$STAMP" ]; then
		return
	fi
	for v in gzip zstd; do
		skopeo copy -q --dest-tls-verify=false --preserve-digests \
			"oci:$IMG/layout:$v" "docker://$REGISTRY/bench/img:$v"
	done
	echo "$STAMP" >"$BENCH_CACHE/registry/pushed"
}

# ------------------------------------------------------------ nginx
# nginx's location for blob GETs with --blobs store: the blob file in the
# registry's filesystem storage, sent from the page cache (sendfile),
# ranges and all, at RATE per connection.
blob_location() {
	[ "$BLOBS" = store ] || return 0
	local blobs=$BENCH_CACHE/registry/docker/registry/v2/blobs/sha256
	cat <<NGINX
		location ~ "^/v2/.+/blobs/sha256:(?<h2>[0-9a-f]{2})(?<h62>[0-9a-f]{62})\$" {
			alias $blobs/\$h2/\$h2\$h62/data;
			default_type application/octet-stream;
			sendfile on;
			limit_rate $RATE;
		}
NGINX
}

start_nginx() {
	local port attempt i
	mkdir -p "$T/nginx/logs" "$T/nginx/tmp"
	for attempt in 1 2 3; do
		port=$(free_port)
		cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $T/nginx/logs/error.log warn;
pid $T/nginx/nginx.pid;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $T/nginx/tmp/body;
	proxy_temp_path $T/nginx/tmp/proxy;
	fastcgi_temp_path $T/nginx/tmp/fastcgi;
	uwsgi_temp_path $T/nginx/tmp/uwsgi;
	scgi_temp_path $T/nginx/tmp/scgi;
	upstream registry { server $REGISTRY; keepalive 64; }
	server {
		listen 127.0.0.1:$port;
		keepalive_requests 100000;
$(blob_location)
		location / {
			proxy_pass http://registry;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$http_host;
			# memory buffers only: the registry reads from the page cache
			proxy_max_temp_file_size 0;
			# the modelled object store: each connection is slow
			limit_rate $RATE;
		}
	}
}
EOF
		nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' &
		NGINX_PID=$!
		BG_PIDS+=("$NGINX_PID")
		PROXY=127.0.0.1:$port
		for ((i = 0; i < 50; i++)); do
			if curl -fsS -o /dev/null "http://$PROXY/v2/" 2>/dev/null; then
				return 0
			fi
			sleep 0.1
		done
		kill "$NGINX_PID" 2>/dev/null || true
	done
	cat "$T/nginx/logs/error.log" >&2
	die "nginx did not start"
}

# ------------------------------------------------------------ measuring
# record KEY VALUE: one measurement of this run.
record() {
	printf '%s %s\n' "$1" "$2" >>"$T/results/run-$RUN.txt"
	printf '  %-28s %s\n' "$1" "$2" >&2
}

# timed KEY CMD...: run CMD under /usr/bin/time; records KEY.wall,
# KEY.cpu (user+sys, children included) and KEY.rss (MiB).  Output of CMD
# goes to $T/logs/KEY.log.
timed() {
	local key=$1 tf=$T/time.out rc
	shift
	rm -f "$tf"
	/usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$T/logs/$key.log" 2>&1 && rc=0 || rc=$?
	if [ $rc != 0 ]; then
		log "$key failed (exit $rc):"
		tail -n 5 "$T/logs/$key.log" >&2
		return 0
	fi
	read -r wall user sys rss <"$tf"
	record "$key.wall" "$wall"
	record "$key.cpu" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')"
	record "$key.rss" "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
}

layer_digests() { python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["tags"][sys.argv[2]]["layers"]))' "$IMG/image.json" "$1"; }
blob_path() { echo "$BENCH_CACHE/registry/docker/registry/v2/blobs/sha256/${1:7:2}/${1#sha256:}/data"; }
decomp() { [ "$1" = gzip ] && echo "igzip -dc" || echo "zstd -dcq"; }

# The two strategies without soci-fuse, as scripts /usr/bin/time can run.
cat >"$T/soci-strategy.sh" <<'EOF'
# soci-strategy.sh BASEURL OUT CONNS CHUNK DECOMP DIGEST...: parallel range
# GETs of every blob, then DECOMP | tar x of each blob as soon as it is whole.
set -euo pipefail
base=$1 out=$2 conns=$3 chunk=$4 dec=$5
shift 5
declare -A idx
i=0
for d in "$@"; do idx[${d#sha256:}]=$i; mkdir -p "$out/l$i"; i=$((i + 1)); done
mkdir -p "$out/blobs"
pids=()
while read -r hex _t; do
	$dec "$out/blobs/$hex" | tar -x --numeric-owner -C "$out/l${idx[$hex]}" &
	pids+=($!)
done < <(python3 "$BENCHLIB" pget "$base" "$out/blobs" "$conns" "$chunk" "$@")
for p in "${pids[@]}"; do wait "$p"; done
[ ${#pids[@]} = $# ]
EOF
cat >"$T/curl-tar.sh" <<'EOF'
# curl-tar.sh BASEURL OUT DECOMP DIGEST...: one curl | DECOMP | tar x per layer.
set -euo pipefail
base=$1 out=$2 dec=$3
shift 3
i=0
pids=()
for d in "$@"; do
	mkdir -p "$out/l$i"
	(curl -fsS "$base/blobs/$d" | $dec | tar -x --numeric-owner -C "$out/l$i") &
	pids+=($!)
	i=$((i + 1))
done
for p in "${pids[@]}"; do wait "$p"; done
EOF
export BENCHLIB=$BENCH_DIR/benchlib.py
# podman_cmd (lib.sh: isolated storage, flags this machine needs) as a
# script, for /usr/bin/time
{
	echo "PODMAN_RR=$PODMAN_RR"
	declare -f podman_cmd
	echo 'podman_cmd "$@"'
} >"$T/podman.sh"

# cpu_floor VARIANT BLOB...: the CPU floor of a verifying pull on these
# cores.  CPU seconds (user+sys, steadier than wall time on a shared
# machine) of inflating each blob (igzip/zstd -d > /dev/null) and of SHA-256
# (openssl) of the blobs; SHA-256 of the tars is priced at the same
# bytes/s.  Records the sum (cpu_floor_cpu) and the floor of the wall time:
# the larger of the longest single inflate (one stream cannot be split)
# and the sum spread over all cores (cpu_floor).
cpu_floor() {
	local v=$1 b inflate=0 longest=0 sha=0 blob_bytes=0 tar_bytes t
	shift
	for b in "$@"; do
		/usr/bin/time -f '%U %S' -o "$T/floor.t" $(decomp "$v") "$b" >/dev/null
		t=$(awk '{ print $1 + $2 }' "$T/floor.t")
		inflate=$(awk -v a="$inflate" -v t="$t" 'BEGIN { print a + t }')
		longest=$(awk -v a="$longest" -v t="$t" 'BEGIN { print (t > a ? t : a) }')
		/usr/bin/time -f '%U %S' -o "$T/floor.t" openssl dgst -sha256 "$b" >/dev/null
		sha=$(awk -v a="$sha" -v f="$T/floor.t" 'BEGIN { getline l <f; split(l, x, " "); print a + x[1] + x[2] }')
		blob_bytes=$((blob_bytes + $(stat -c %s "$b")))
	done
	tar_bytes=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["tar_sizes"]))' "$IMG/image.json")
	t=$(awk -v i="$inflate" -v s="$sha" -v bb="$blob_bytes" -v tb="$tar_bytes" \
		'BEGIN { printf "%.3f", i + s * (bb + tb) / bb }')
	record "$v.cpu_floor_cpu" "$t"
	record "$v.cpu_floor" "$(awk -v t="$t" -v l="$longest" -v n="$(nproc)" \
		'BEGIN { f = t / n; printf "%.3f", (l > f ? l : f) }')"
}

run_pulls() {
	local v=$1
	local ref=$PROXY/bench/img:$v digests bytes m w
	read -r -a digests <<<"$(layer_digests "$v")"
	bytes=0
	for d in "${digests[@]}"; do bytes=$((bytes + $(stat -c %s "$(blob_path "$d")"))); done
	record "$v.bytes" "$bytes"
	record "$v.network_limit" "$(awk -v b="$bytes" -v c="$CONNS" -v r="$RATE_B" 'BEGIN { printf "%.3f", b / (c * r) }')"
	local blobs=()
	for d in "${digests[@]}"; do blobs+=("$(blob_path "$d")"); done
	cat "${blobs[@]}" >/dev/null # page cache, as for the registry
	cpu_floor "$v" "${blobs[@]}"
	for m in $METHODS; do
		w=$T/work/$m
		rm -rf "$w"
		mkdir -p "$w"
		sync
		log "run $RUN $v: $m"
		case $m in
		soci-fuse)
			timed "$v.$m" "$SOCI_FUSE" pull --cache "$w/cache" \
				--connections "$CONNS" --chunk-size "$CHUNK" "$ref"
			;;
		podman)
			PODMAN_DIR=$w/podman timed "$v.$m" bash "$T/podman.sh" pull -q --tls-verify=false "$ref"
			PODMAN_DIR=$w/podman podman_cmd rmi -a -f >/dev/null 2>&1 || true
			;;
		skopeo-umoci)
			timed "$v.$m" bash -c 'skopeo copy -q --src-tls-verify=false "docker://$1" "oci:$2/oci:img" &&
				umoci unpack --image "$2/oci:img" "$2/bundle"' _ "$ref" "$w"
			;;
		soci-strategy)
			timed "$v.$m" bash "$T/soci-strategy.sh" "http://$PROXY/v2/bench/img" "$w" \
				"$CONNS" "$CHUNK_B" "$(decomp "$v")" "${digests[@]}"
			;;
		curl-tar)
			timed "$v.$m" bash "$T/curl-tar.sh" "http://$PROXY/v2/bench/img" "$w" \
				"$(decomp "$v")" "${digests[@]}"
			;;
		*) die "unknown method $m" ;;
		esac
		umount_all_below "$w"
		rm -rf --one-file-system "$w"
	done
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# seconds (from $1) until CMD succeeds, polling every 10 ms
until_ok() {
	local t0=$1
	shift
	until "$@" >/dev/null 2>&1; do sleep 0.01; done
	elapsed "$t0"
}

run_mount() {
	local ref=$PROXY/bench/img:gzip w=$T/work/mount mnt pid hex size t0 t
	read -r -a digests <<<"$(layer_digests gzip)"
	mkdir -p "$w/mnt"
	mnt=$w/mnt
	t0=$(now)
	"$SOCI_FUSE" mount --cache "$w/cache" --connections "$CONNS" --chunk-size "$CHUNK" \
		"$ref" "$mnt" || { log "mount failed"; return 0; }
	# both requests wait in soci-fuse until the entries have arrived
	(t=$(until_ok "$t0" ls "$mnt/layers/3/etc"); echo "$t" >"$w/listable") &
	pid=$!
	(t=$(until_ok "$t0" cat "$mnt/layers/1/opt/model/config.json"); echo "$t" >"$w/first") &
	wait "$pid" $! # (not a bare wait: registry and nginx are our children too)
	record mount.listable "$(cat "$w/listable")"
	record mount.first_mib "$(cat "$w/first")"
	wait_complete "$mnt" 1200 || { log "mount never completed"; return 0; }
	record mount.complete "$(elapsed "$t0")"
	pid=$(soci_fuse_pids "$mnt" | head -n 1)
	[ -n "$pid" ] && record mount.rss "$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"

	size=$(stat -c %s "$mnt/layers/1/opt/model/weights.bin")
	hex=${digests[1]#sha256:}
	drop_caches
	t0=$(now)
	dd if="$mnt/layers/1/opt/model/weights.bin" of=/dev/null bs=1M status=none
	t=$(elapsed "$t0")
	record read.fuse "$(awk -v s="$size" -v t="$t" 'BEGIN { printf "%.0f", s / t / 1e6 }')"
	drop_caches
	t0=$(now)
	dd if="$w/cache/layers/$hex/data" of=/dev/null bs=1M count=$((size >> 20)) status=none
	t=$(elapsed "$t0")
	record read.backing "$(awk -v s="$(((size >> 20) << 20))" -v t="$t" 'BEGIN { printf "%.0f", s / t / 1e6 }')"

	find "$mnt/layers/2" -ls >/dev/null
	t0=$(now); find "$mnt/layers/2" -ls >/dev/null; record find.fuse "$(elapsed "$t0")"
	find "$BENCH_CACHE/src-tree" -ls >/dev/null
	t0=$(now); find "$BENCH_CACHE/src-tree" -ls >/dev/null; record find.ext4 "$(elapsed "$t0")"
	sf_umount "$mnt" || true
	umount_all_below "$w"
	rm -rf --one-file-system "$w"
}

# ------------------------------------------------------------ main
mkdir -p "$BENCH_CACHE" "$T/results" "$T/logs" "$T/work"
build_image
mkdir -p "$BENCH_CACHE/registry"
start_registry "$BENCH_CACHE/registry"
push_image
[ $BUILD_ONLY = 1 ] && exit 0
start_nginx
say "registry $REGISTRY behind nginx $PROXY (limit_rate $RATE per connection)"
if [ $SERVE = 1 ]; then
	# for profiling by hand: serve until interrupted
	echo "serving $PROXY/bench/img:gzip and :zstd; ^C to stop" >&2
	while sleep 3600; do :; done
	exit 0
fi

for ((RUN = 1; RUN <= RUNS; RUN++)); do
	say "run $RUN/$RUNS"
	for v in $VARIANTS; do run_pulls "$v"; done
	[ $DO_MOUNT = 1 ] && run_mount
done

# ------------------------------------------------------------ report
python3 - "$T/results" "$VARIANTS" "$METHODS" <<'EOF' >"$T/results.json"
import glob, json, sys
runs = []
for p in sorted(glob.glob(sys.argv[1] + "/run-*.txt")):
    d = {}
    for line in open(p):
        k, v = line.split()
        d[k] = float(v)
    runs.append(d)
print(json.dumps({"meta": {"variants": sys.argv[2].split(), "methods": sys.argv[3].split()},
                  "runs": runs}))
EOF
cp "$T/results.json" "$BENCH_DIR/results.json"
{
	echo "# soci-fuse benchmark results"
	echo
	echo "Generated by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "- machine: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores," \
		"$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM," \
		"Linux $(uname -r), $(df -T "$T" | awk 'NR == 2 { print $2 }') for caches"
	echo "- soci-fuse $("$SOCI_FUSE" --version | awk '{ print $2 }') ($(git -C "$SRC" describe --always --dirty 2>/dev/null || echo '?'))," \
		"$(podman --version), skopeo $(skopeo --version | awk '{ print $3 }'), $(umoci --version)"
	echo "- image: 4 layers (Debian bookworm minbase; ${WEIGHTS_MIB} MiB weights-like file; $SOURCES small" \
		"files; small top layer); compressed sizes:" \
		"$(for v in $VARIANTS; do awk -v v="$v" '$1 == v ".bytes" { printf "%s %.2f GB ", v, $2 / 1e9; exit }' "$T"/results/run-1.txt; done)"
	echo "- network: nginx \`limit_rate $RATE\` per connection ($RATE_B B/s) in front of docker-registry on loopback," \
		"blobs served by $([ "$BLOBS" = store ] && echo "nginx from the registry's storage (--blobs store)" || echo "docker-registry (--blobs registry)");" \
		"soci-fuse and the SOCI strategy use $CONNS connections, $CHUNK chunks"
	echo "- $RUNS runs, medians; every method starts with an empty cache/storage in each run"
	echo "- ${BENCH_NOTE:-}"
	python3 "$BENCH_DIR/benchlib.py" report "$T/results.json" - "$BENCH_DIR/results.svg"
	echo
	echo "![pull time per method](results.svg)"
} >"$RESULTS_MD.tmp"
mv "$RESULTS_MD.tmp" "$RESULTS_MD"
python3 "$BENCH_DIR/benchlib.py" report "$T/results.json" - "$BENCH_DIR/results.svg"
say "written $RESULTS_MD, $BENCH_DIR/results.svg"
