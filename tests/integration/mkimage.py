#!/usr/bin/env python3
"""mkimage.py - turn staged layer directories into an OCI image layout.

Companion of mkimage.sh (which stages the trees and pushes the result).

Each layer is given as a directory in *overlayfs upper-dir form*, the same
form soci-fuse shows under <mnt>/layers/<i>:
  - a character device 0/0 is a whiteout: it becomes an empty regular tar
    entry named ".wh.<name>";
  - a directory with the xattr trusted.overlay.opaque=y is an opaque
    directory: the directory entry is followed by "<dir>/.wh..wh..opq";
  - everything else is written as it is: regular files, directories,
    symlinks, hard links (paths sharing an inode, the first one in walk order
    is the regular entry, the others are links to it), fifos, char and block
    devices, mode bits incl. suid/sgid/sticky, uid/gid, mtime with
    nanoseconds (PAX "mtime" record when not a whole second or negative),
    and xattrs as PAX "SCHILY.xattr.<name>" records (trusted.overlay.*,
    user.overlay.* and security.selinux are never written).

The tars are deterministic: entries sorted by byte name, parents first, no
uname/gname, gzip with mtime 0, zstd single-threaded.  Layer 0 names carry
no "./" prefix (Go/buildkit style); later layers use "./name" (GNU tar
style), so both spellings reach the parser.  Entries matching a
--tar-format RE=FMT rule are written in that tar dialect instead of PAX
(gnu: ././@LongLink + base-256 numbers; ustar: 155-byte prefix split);
such entries must have whole-second mtimes and no xattrs.

Output layout (OCI image layout, tags in index.json):
  gzip   image manifest, application/vnd.oci.image.layer.v1.tar+gzip layers
  zstd   image manifest, application/vnd.oci.image.layer.v1.tar+zstd layers
         (made with the zstd CLI)
  index  OCI image index: a decoy manifest for another architecture FIRST
         (one layer holding only /WRONG-PLATFORM), then the native "gzip"
         manifest.  A client that ignores the platform gets the decoy.
and <out>/image.json, a summary (digests per tag) for the tests.

Usage: mkimage.py [--tar-format RE=FMT]... [--no-index] [--no-zstd] OUT LAYERDIR...
"""

import argparse
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile

CREATED = "2024-01-01T00:00:00Z"
SKIP_XATTRS = (b"trusted.overlay.", b"user.overlay.", b"security.selinux")
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm",
          "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
          "i686": "386", "i386": "386"}


def native_arch():
    m = platform.machine()
    return GOARCH.get(m, m)


def die(msg):
    print("mkimage.py: " + msg, file=sys.stderr)
    sys.exit(1)


class HashingWriter:
    """File wrapper computing sha256 and size of what is written."""

    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def write(self, b):
        self.f.write(b)
        self.h.update(b)
        self.n += len(b)


def walk_sorted(root):
    """Depth-first pre-order walk in byte order (a dir's subtree directly
    after the dir itself)."""
    def rec(rel):
        path = os.path.join(root, rel) if rel else root
        with os.scandir(path) as it:
            names = sorted(e.name for e in it)
        for name in names:
            child = os.path.join(rel, name) if rel else name
            yield child
            if stat.S_ISDIR(os.lstat(os.path.join(root, child)).st_mode):
                yield from rec(child)
    yield from rec(b"")


def pax_time(ns):
    sign = "-" if ns < 0 else ""
    a = abs(ns)
    return "%s%d.%09d" % (sign, a // 10**9, a % 10**9)


def xattrs_of(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in sorted(names):
        nb = n.encode()
        if nb.startswith(SKIP_XATTRS):
            continue
        out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def write_layer(root, tar_path, dot_prefix, format_rules):
    """Write the layer tar; return (diff_id, size)."""
    hardlinks = {}
    with open(tar_path, "wb") as raw:
        out = HashingWriter(raw)

        def emit(ti, fmt, data_path=None):
            out.write(ti.tobuf(fmt, "utf-8", "surrogateescape"))
            if data_path is not None and ti.size:
                left = ti.size
                with open(data_path, "rb") as f:
                    while left:
                        b = f.read(min(left, 1 << 20))
                        if not b:
                            die("%s shrank while reading" % data_path)
                        out.write(b)
                        left -= len(b)
                pad = (-ti.size) % 512
                if pad:
                    out.write(b"\0" * pad)

        def name_of(rel):
            s = rel.decode("utf-8", "surrogateescape")
            return ("./" + s) if dot_prefix else s

        def fmt_of(rel):
            s = rel.decode("utf-8", "surrogateescape")
            for rx, fmt in format_rules:
                if rx.search(s):
                    return fmt
            return tarfile.PAX_FORMAT

        def base_info(name, st, fmt):
            ti = tarfile.TarInfo(name)
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            ti.uname = ti.gname = ""
            ns = st.st_mtime_ns
            if ns % 10**9 == 0 and ns >= 0:
                ti.mtime = ns // 10**9
            elif fmt == tarfile.PAX_FORMAT:
                ti.mtime = max(0, ns // 10**9)
                ti.pax_headers["mtime"] = pax_time(ns)
            else:
                die("%s: sub-second/negative mtime needs PAX format" % name)
            return ti

        # The layer root itself: only layer 0 carries a "./" entry.
        if not dot_prefix:
            st = os.lstat(root)
            ti = base_info("./", st, tarfile.PAX_FORMAT)
            ti.type = tarfile.DIRTYPE
            emit(ti, tarfile.PAX_FORMAT)

        for rel in walk_sorted(root):
            path = os.path.join(root, rel)
            st = os.lstat(path)
            fmt = fmt_of(rel)
            mode = st.st_mode
            if stat.S_ISCHR(mode) and st.st_rdev == 0:
                # whiteout
                d, b = os.path.split(rel)
                wh = os.path.join(d, b".wh." + b) if d else b".wh." + b
                ti = base_info(name_of(wh), st, fmt)
                ti.type = tarfile.REGTYPE
                ti.size = 0
                emit(ti, fmt)
                continue
            ti = base_info(name_of(rel), st, fmt)
            xa = xattrs_of(path)
            if xa:
                if fmt != tarfile.PAX_FORMAT:
                    die("%s: xattrs need PAX format" % ti.name)
                for k, v in xa.items():
                    if not v:
                        die("%s: xattr %s has an empty value, which PAX cannot carry "
                            "(an empty record deletes the keyword)" % (ti.name, k))
                    ti.pax_headers["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
            if stat.S_ISDIR(mode):
                ti.type = tarfile.DIRTYPE
                emit(ti, fmt)
                try:
                    opaque = os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False)
                except OSError:
                    opaque = b""
                if opaque == b"y":
                    oq = base_info(name_of(os.path.join(rel, b".wh..wh..opq")), st, fmt)
                    oq.type = tarfile.REGTYPE
                    oq.size = 0
                    emit(oq, fmt)
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in hardlinks:
                ti.type = tarfile.LNKTYPE
                ti.linkname = hardlinks[key]
                emit(ti, fmt)
                continue
            if st.st_nlink > 1:
                hardlinks[key] = ti.name
            if stat.S_ISREG(mode):
                ti.type = tarfile.REGTYPE
                ti.size = st.st_size
                emit(ti, fmt, path)
            elif stat.S_ISLNK(mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(path).decode("utf-8", "surrogateescape")
                emit(ti, fmt)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                emit(ti, fmt)
            elif stat.S_ISFIFO(mode):
                ti.type = tarfile.FIFOTYPE
                emit(ti, fmt)
            else:
                print("mkimage.py: skipping socket %s" % path.decode(errors="replace"),
                      file=sys.stderr)
        out.write(b"\0" * 1024)  # end of archive, like Go's archive/tar
    return "sha256:" + out.h.hexdigest(), out.n


class Layout:
    def __init__(self, path):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.refs = []

    def add_bytes(self, data, media_type):
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, h), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + h, "size": len(data)}

    def add_file(self, path, media_type):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        dst = os.path.join(self.blobs, h.hexdigest())
        shutil.move(path, dst)
        return {"mediaType": media_type, "digest": "sha256:" + h.hexdigest(),
                "size": os.path.getsize(dst)}

    def add_json(self, obj, media_type):
        return self.add_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(),
                              media_type)

    def tag(self, desc, name):
        d = dict(desc)
        d["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.refs.append(d)

    def finish(self):
        idx = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": self.refs}
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(idx, f, indent=1)


def compress_gzip(src, dst):
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=fo, mtime=0) as gz:
            shutil.copyfileobj(fi, gz, 1 << 20)


def compress_zstd(src, dst):
    subprocess.run(["zstd", "-q", "-3", "-T1", "--no-progress", "-f", "-o", dst, src],
                   check=True)


def make_image(layout, layers, compress, media_type, arch, tmpdir, tag_hint):
    """layers: list of (tar_path, diff_id).  Returns manifest descriptor."""
    descs = []
    for i, (tar, _diff) in enumerate(layers):
        z = os.path.join(tmpdir, "%s-%d.z" % (tag_hint, i))
        compress(tar, z)
        descs.append(layout.add_file(z, media_type))
    config = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [d for _t, d in layers]},
        "history": [{"created": CREATED, "created_by": "mkimage.py layer %d" % i}
                    for i in range(len(layers))],
    }
    cdesc = layout.add_json(config, MT_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": descs}
    mdesc = layout.add_json(manifest, MT_MANIFEST)
    return mdesc, manifest


def parse_rule(s):
    rx, _, fmt = s.rpartition("=")
    fmts = {"gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT, "pax": tarfile.PAX_FORMAT}
    if not rx or fmt not in fmts:
        raise argparse.ArgumentTypeError("expected REGEX=gnu|ustar|pax")
    return re.compile(rx), fmts[fmt]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tar-format", action="append", type=parse_rule, default=[],
                    metavar="RE=FMT")
    ap.add_argument("--no-index", action="store_true", help="no 'index' tag")
    ap.add_argument("--no-zstd", action="store_true", help="no 'zstd' tag")
    ap.add_argument("out")
    ap.add_argument("layers", nargs="+")
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    layout = Layout(os.path.join(a.out, "layout"))
    summary = {"tags": {}}
    with tempfile.TemporaryDirectory(dir=a.out) as tmp:
        tars = []
        for i, d in enumerate(a.layers):
            tar = os.path.join(tmp, "layer%d.tar" % i)
            diff_id, size = write_layer(os.fsencode(d), tar, i > 0, a.tar_format)
            tars.append((tar, diff_id))
            summary.setdefault("diff_ids", []).append(diff_id)
            summary.setdefault("tar_sizes", []).append(size)

        arch = native_arch()
        gz_desc, gz_man = make_image(layout, tars, compress_gzip, MT_GZIP, arch, tmp, "gz")
        layout.tag(gz_desc, "gzip")
        summary["tags"]["gzip"] = {"manifest": gz_desc["digest"],
                                   "layers": [l["digest"] for l in gz_man["layers"]]}
        if not a.no_zstd:
            zs_desc, zs_man = make_image(layout, tars, compress_zstd, MT_ZSTD, arch, tmp, "zs")
            layout.tag(zs_desc, "zstd")
            summary["tags"]["zstd"] = {"manifest": zs_desc["digest"],
                                       "layers": [l["digest"] for l in zs_man["layers"]]}
        if not a.no_index:
            decoy_arch = "arm64" if arch != "arm64" else "amd64"
            droot = os.path.join(tmp, "decoy-root")
            os.makedirs(droot)
            with open(os.path.join(droot, "WRONG-PLATFORM"), "w") as f:
                f.write("this is the %s decoy of the index; soci-fuse picked the wrong "
                        "platform\n" % decoy_arch)
            os.utime(os.path.join(droot, "WRONG-PLATFORM"), (0, 0))
            os.utime(droot, (0, 0))
            dtar = os.path.join(tmp, "decoy.tar")
            d_id, _ = write_layer(os.fsencode(droot), dtar, False, [])
            d_desc, d_man = make_image(layout, [(dtar, d_id)], compress_gzip, MT_GZIP,
                                       decoy_arch, tmp, "decoy")
            d_desc["platform"] = {"architecture": decoy_arch, "os": "linux"}
            if decoy_arch == "arm64":
                d_desc["platform"]["variant"] = "v8"
            n_desc = dict(gz_desc)
            n_desc["platform"] = {"architecture": arch, "os": "linux"}
            index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [d_desc, n_desc]}
            i_desc = layout.add_json(index, MT_INDEX)
            layout.tag(i_desc, "index")
            summary["tags"]["index"] = {"index": i_desc["digest"],
                                        "manifest": gz_desc["digest"],
                                        "layers": summary["tags"]["gzip"]["layers"],
                                        "decoy_manifest": d_desc["digest"],
                                        "decoy_layers": [l["digest"] for l in d_man["layers"]]}
        layout.finish()
    summary["arch"] = arch
    with open(os.path.join(a.out, "image.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
