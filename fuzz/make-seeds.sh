#!/bin/bash
# make-seeds.sh - regenerate the seed corpora in fuzz/corpus/<target>/.
#
# Deterministic (fixed mtimes, gzip -n, no zstd checksum variation): running
# it again rewrites the same bytes.  Needs tar fixtures from
# tests/fixtures/tar, python3 (tarfile), gzip and zstd.  Inputs found by the
# fuzzer are not seeds: they stay in the run's copy under build-fuzz/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$here/.." && pwd)
C=$here/corpus
FIX=$SRC/tests/fixtures/tar
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -rf "$C"
mkdir -p "$C"/{fuzz_tar,fuzz_layer_stream,fuzz_manifest,fuzz_ref,fuzz_www_auth,fuzz_regconf}

# ------------------------------------------------------------ tar
# A layer in overlay form: dirs, files, hard links, symlinks, devices,
# whiteouts, an opaque dir, "./" and "/" prefixes, a name given twice, xattrs.
python3 - "$tmp/layer.tar" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
def add(t, name, type=tarfile.REGTYPE, data=b"", **kw):
    i = tarfile.TarInfo(name)
    i.type = type
    i.mtime = 1672628645
    i.mode = kw.pop("mode", 0o755 if type == tarfile.DIRTYPE else 0o644)
    for k, v in kw.items():
        setattr(i, k, v)
    if type == tarfile.REGTYPE:
        i.size = len(data)
        t.addfile(i, io.BytesIO(data))
    else:
        t.addfile(i)
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "./", tarfile.DIRTYPE)
    add(t, "./etc", tarfile.DIRTYPE)
    add(t, "./etc/hostname", data=b"fuzz\n")
    add(t, "etc/hosts", data=b"127.0.0.1 localhost\n", uid=1000, gid=1000)
    add(t, "/etc/link", tarfile.LNKTYPE, linkname="etc/hostname")
    add(t, "etc/sym", tarfile.SYMTYPE, linkname="../etc/hosts")
    add(t, "etc/.wh.issue", data=b"")
    add(t, "usr/", tarfile.DIRTYPE)
    add(t, "usr/share/.wh..wh..opq")
    add(t, "usr/.wh..wh.plnk")
    add(t, "dev", tarfile.DIRTYPE)
    add(t, "dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
    add(t, "dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
    add(t, "dev/fifo", tarfile.FIFOTYPE)
    add(t, "etc/hostname", data=b"again\n", mode=0o4755)
    i = tarfile.TarInfo("bin/ping")
    i.mtime = 1672628645
    i.size = 3
    i.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                     "SCHILY.xattr.user.x": "y", "mtime": "1672628645.123456789"}
    t.addfile(i, io.BytesIO(b"elf"))
    add(t, "a/" + "b" * 150 + "/" + "c" * 120, data=b"long name\n")
PY

for f in gnu oldgnu pax py-gnu py-pax ustar v7 sparse-gnu sparse-pax-0.0 sparse-pax-0.1 sparse-pax-1.0; do
	cp "$FIX/$f.tar" "$C/fuzz_tar/$f.tar"
done
cp "$tmp/layer.tar" "$C/fuzz_tar/layer.tar"

# ------------------------------------------------------------ layer stream
# byte 0: compression (% 3: 0 none, 1 gzip, 2 zstd; | 0x80: short reads)
seed() { # seed NAME SELECTOR-OCTAL < stream
	{ printf "\\$2"; cat; } >"$C/fuzz_layer_stream/$1"
}
L=$C/fuzz_layer_stream
seed none-layer.tar 000 <"$tmp/layer.tar"
seed none-ustar.tar 200 <"$FIX/ustar.tar"
for f in layer.tar "$FIX/pax.tar" "$FIX/sparse-pax-1.0.tar" "$FIX/gnu.tar"; do
	[ "$f" = layer.tar ] && f=$tmp/layer.tar
	b=$(basename "$f")
	gzip -n -9 -c "$f" | seed "gzip-$b" 001
	zstd -q -19 --no-check -c "$f" | seed "zstd-$b" 002
done
gzip -n -c "$FIX/v7.tar" | seed gzip-short-reads-v7.tar 201
zstd -q --check -c "$FIX/v7.tar" | seed zstd-check-short-reads-v7.tar 202
# multi-member gzip: the tar split across two members
head -c 4096 "$tmp/layer.tar" >"$tmp/a"
tail -c +4097 "$tmp/layer.tar" >"$tmp/b"
{ gzip -n -c "$tmp/a"; gzip -n -c "$tmp/b"; } | seed gzip-two-members-layer.tar 001
# zstd: a skippable frame first, then two frames
{
	printf '\x50\x2a\x4d\x18\x04\x00\x00\x00skip'
	zstd -q -c "$tmp/a"
	zstd -q -c "$tmp/b"
} | seed zstd-skippable-two-frames-layer.tar 002

# ------------------------------------------------------------ hostile + fidelity
# The hostile layers of tests/integration/hostile.sh (those under 64 KiB,
# uncompressed) as tar seeds; as root (mkcorpus.py stages its trees with
# mknod and chown) also the fidelity corpus's layers, as tar seeds and as
# multi-member gzip / multi-frame zstd streams.
python3 "$SRC/tests/integration/mkhostile.py" --seeds "$C/fuzz_tar"
# sizes that wrapped the data file's offsets: fuzz_layer_stream checks extents
seed none-hostile-sparse-wrap.tar 000 <"$C/fuzz_tar/hostile-sparse-wrap.tar"
if [ "$(id -u)" = 0 ]; then
	python3 "$SRC/tests/integration/mkcorpus.py" "$tmp/corpus"
	for i in 0 1 3; do
		f=$tmp/corpus/layers/L$i.tar
		cp "$f" "$C/fuzz_tar/fidelity-L$i.tar"
		head -c 3000 "$f" >"$tmp/a"
		tail -c +3001 "$f" >"$tmp/b"
		{ gzip -n -c "$tmp/a"; gzip -n -c "$tmp/b"; } | seed "gzip-fidelity-L$i.tar" 001
		{
			zstd -q -c "$tmp/a"
			printf '\x51\x2a\x4d\x18\x02\x00\x00\x00hi'
			zstd -q -c "$tmp/b"
		} | seed "zstd-fidelity-L$i.tar" 002
	done
else
	echo "make-seeds.sh: not root, fidelity layer seeds left out" >&2
fi

# ------------------------------------------------------------ manifests
# byte 0: Content-Type (index into content_types[] in fuzz_manifest.c:
# 0 none, 1 OCI manifest, 2 OCI index, 3 Docker manifest, 4 Docker list,
# 5 OCI config, 6 Docker config ...); byte 1: layer count for the config.
H1=sha256:1111111111111111111111111111111111111111111111111111111111111111
H2=sha256:2222222222222222222222222222222222222222222222222222222222222222
H3=sha256:3333333333333333333333333333333333333333333333333333333333333333
H4=sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4
H5=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
M=$C/fuzz_manifest
mseed() { # mseed NAME CT-OCTAL NLAYERS-OCTAL < doc
	{ printf "\\$2\\$3"; cat; } >"$M/$1"
}
mseed oci-manifest.json 001 002 <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$H1","size":1469},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$H2","size":29126484},{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"$H3","size":0,"annotations":{"a":"b"}}],"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}
JSON
mseed oci-manifest-no-mediatype.json 000 001 <<JSON
{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$H1","size":7},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$H2","size":10240}]}
JSON
mseed docker-manifest.json 003 001 <<JSON
{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 7023,
      "digest": "$H1"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 32654,
         "digest": "$H2"
      }
   ]
}
JSON
mseed oci-index-buildx.json 002 000 <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$H4","size":566,"platform":{"architecture":"unknown","os":"unknown"},"annotations":{"vnd.docker.reference.type":"attestation-manifest"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$H1","size":100,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$H2","size":101,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$H3","size":102,"platform":{"architecture":"arm","os":"linux","variant":"v7"}},{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"$H5","size":104,"platform":{"architecture":"s390x","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$H4","size":105,"platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763.5329"}}]}
JSON
mseed oci-index-noplatform.json 002 000 <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$H1","size":10}]}
JSON
mseed docker-list.json 004 000 <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"$H1","size":529,"platform":{"architecture":"arm64","os":"linux"}},{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"$H2","size":529,"platform":{"architecture":"ppc64le","os":"linux"}}]}
JSON
mseed schema1.json 011 000 <<JSON
{"schemaVersion":1,"name":"x","tag":"latest","architecture":"amd64","fsLayers":[{"blobSum":"$H1"}],"history":[{"v1Compatibility":"{}"}],"signatures":[]}
JSON
mseed oci-config.json 005 002 <<JSON
{"created":"2024-01-02T03:04:05Z","architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["$H4","$H5"]},"history":[{"created":"2024-01-02T03:04:05Z","created_by":"debootstrap"},{"created_by":"COPY motd /etc/motd"}]}
JSON
mseed docker-config.json 006 001 <<JSON
{"architecture":"arm64","variant":"v8","os":"linux","config":{"Entrypoint":["/x"],"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":["$H3"]}}
JSON

# ------------------------------------------------------------ refs
R=$C/fuzz_ref
i=0
while IFS= read -r ref; do
	i=$((i + 1))
	printf '%s' "$ref" >"$R/ref-$(printf %02d $i)"
done <<REFS
debian
debian:bookworm
library/debian
docker.io/debian
index.docker.io/debian:12
bitnami/redis:7.2
quay.io/podman/stable
ghcr.io/a/b/c/d:v1.0.0-rc.1
localhost/foo
localhost:5000/foo/bar:t
127.0.0.1:5000/x/y:t
[::1]:5000/x
[fe80::1]/x:1
registry.example.com:443/team/app
My-Registry.Example.com/app
debian@$H1
debian:12@$H2
localhost:5000/x@$H3
a.b/c-d_e.f__g--h:T_a.g-1
x:_tag
Debian
debian:
host:99999/x
[::1/x
REFS

# ------------------------------------------------------------ WWW-Authenticate + token
W=$C/fuzz_www_auth
i=0
while IFS= read -r v; do
	i=$((i + 1))
	printf '%s' "$v" >"$W/www-auth-$(printf %02d $i)"
done <<'HDRS'
Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"
Bearer realm="https://x/t?a=1,b=2",scope="repository:a/b:pull,push",service="q\"uo\\te"
Bearer foo=bar,realm="a",realm="b",error="insufficient_scope"
Basic realm="Registry", Bearer realm="https://a/t",service="s"
Negotiate, Bearer realm="r"
Basic realm="Registry Realm"
Bearer
Bearer realm=""
Bearer error="invalid_token"
Bearer realm=token68-unquoted, service=x
HDRS
printf '%s' '{"token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln","access_token":"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln","expires_in":300,"issued_at":"2024-01-02T03:04:05Z"}' >"$W/token-both"
printf '%s' '{"access_token":"abc.def-ghi_jkl~","expires_in":60}' >"$W/token-access"
printf '%s' '{"token":"","access_token":"x"}' >"$W/token-empty"

du -sh "$C"

# ------------------------------------------------------------ registries.conf, auth, tokens
G=$C/fuzz_regconf
cat >"$G/regconf-01" <<'CONF'
unqualified-search-registries = ["docker.io", 'quay.io',
    "x.io",   # comment
]
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.local:5000/hub"
insecure = true
[[registry.mirror]]
location = 'second.local'
pull-from-mirror = "digest-only"
[[registry]]
prefix = "*.corp.example"
location = "harbor.corp/p"
blocked = false
mirror-by-digest-only = true
[[registry]]
location = "q\u002eio"
CONF
printf '[[registry]]\nprefix = "[::1]:5000"\nlocation = "[::1]:5000/ns"\n' >"$G/regconf-02"
printf 'YWxpY2U6czNjcmV0' >"$G/auth-01"
printf '{"token":"t","expires_in":300,"issued_at":"2024-01-01T00:00:00.5Z"}' >"$G/token-01"
