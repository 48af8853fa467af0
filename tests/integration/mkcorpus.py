#!/usr/bin/env python3
"""mkcorpus.py - the fidelity corpus: layers that cover what real images hold.

Usage: mkcorpus.py [--push REGISTRY] OUT        (as root: mknod, chown)

Writes OUT/layers/*.tar (the uncompressed layers), OUT/blobs/ (what is
pushed) and OUT/corpus.json (refs, layer digests, which tar is the oracle
of what).  With --push the images go to REGISTRY through the registry API
(urllib; every manifest is pushed exactly as built, media types included):

  test/fidelity:oci     OCI manifest; layers L0..L5 below, compressed
                        gzip (several members), zstd (several frames and
                        skippable frames), none, gzip (with the Docker
                        layer media type), gzip, zstd
  test/fidelity:docker  Docker schema 2 manifest (rootfs.diff.tar.gzip and
                        rootfs.diff.tar) of the same six tars
  test/fidelity:index   OCI index listing two other platforms FIRST, then
                        the native Docker schema 2 manifest
  test/fidelity-sparse:oci  one layer that podman refuses (zstd that starts
                        with a skippable frame), holding:
                        entries given twice (the later wins), GNU old
                        sparse 'S'; plus files over 8 GiB, sparse (PAX
                        0.0/0.1/1.0 and 'S' with a base-256 real size);
                        the oracle is GNU tar's extraction of SPARSE.tar

The layers, bottom first (names and contents are in the code below):
  L0 Python tarfile (PAX) + hand-made headers: implicit parents, long path
     and link target in PAX, UTF-8 and odd bytes in names, base-256
     uid/gid/size, uid/gid > 2^21, nanosecond mtimes, xattrs
     (security.capability, user.*), hard links (same dir, across dirs, to a
     symlink, chains), symlinks (absolute, relative, dangling, loops),
     char/block devices, FIFO, setuid/setgid/sticky, mode 000 file and
     directory; NO end-of-archive blocks.
  L1 GNU tar --format=gnu: long names and link targets (L/K), base-256
     uid/gid, whiteouts (file and directory), an opaque directory, a file
     replaced by a directory; zero bytes after the end blocks (GNU tar
     pads the archive to 10 KiB), then non-zero ones.
  L2 GNU tar --format=pax, three archives concatenated with tar -A: PAX
     sparse 1.0, 0.1, 0.0, xattrs (SCHILY.xattr), nanosecond mtimes.
  L3 GNU tar --format=v7 + --format=oldgnu concatenated: a directory turned
     back into a file, v7 directories (trailing '/'), oldgnu long names.
  L4 an empty layer (1024 zero bytes, what Docker writes).
  L5 an empty stream (0 bytes).

Deterministic for a given GNU tar and zstd: fixed mtimes, sorted entries.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import urllib.request

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
          "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
          "none": "application/vnd.oci.image.layer.v1.tar"}
MT_D_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_D_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_D = {"gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "none": "application/vnd.docker.image.rootfs.diff.tar"}
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}

T0 = 1672628645          # 2023-01-02T03:04:05Z
T1 = 1704164645          # 2024-01-02T03:04:05Z
HUGE = 9 * 1024 ** 3 + 12345   # over 8 GiB: needs PAX size / base-256
# A valid VFS_CAP_REVISION_2 security.capability: cap_net_bind_service
# (bit 10) permitted + effective.
CAPABILITY = bytes.fromhex("01000002" "00040000" "00000000" "00000000" "00000000")


def die(msg):
    print("mkcorpus.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------ headers
def octal(v, n):
    return ("%0*o" % (n - 1, v)).encode() + b"\0"


def base256(v, n):
    """GNU base-256: marker bit, then big-endian two's complement."""
    b = (v % (1 << (8 * n))).to_bytes(n, "big")
    return bytes([b[0] | 0x80]) + b[1:]


def raw_header(name, typeflag=b"0", size=0, mode=0o644, uid=0, gid=0, mtime=T0,
               linkname=b"", magic=b"ustar\x0000", dev=(0, 0), numfmt=None):
    """A hand-made header block; numfmt {field: 'b256'} picks base-256."""
    numfmt = numfmt or {}
    h = bytearray(512)

    def put(off, data):
        h[off:off + len(data)] = data

    def num(field, off, n, v):
        put(off, base256(v, n) if numfmt.get(field) == "b256" else octal(v, n))
    put(0, name[:100])
    num("mode", 100, 8, mode)
    num("uid", 108, 8, uid)
    num("gid", 116, 8, gid)
    num("size", 124, 12, size)
    num("mtime", 136, 12, mtime)
    put(156, typeflag)
    put(157, linkname[:100])
    put(257, magic)
    num("devmajor", 329, 8, dev[0])
    num("devminor", 337, 8, dev[1])
    put(148, b" " * 8)
    put(148, ("%06o\0 " % sum(h)).encode())
    return bytes(h)


def body(data):
    return data + b"\0" * ((-len(data)) % 512)


def pax_time(sec, nsec):
    return "%d.%09d" % (sec, nsec)


def ti(name, type_=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, mtime=T0, nsec=None,
       linkname="", size=0, dev=(0, 0), xattrs=None):
    t = tarfile.TarInfo(name)
    t.type, t.mode, t.uid, t.gid, t.mtime = type_, mode, uid, gid, mtime
    t.uname = t.gname = ""
    t.linkname, t.size = linkname, size
    t.devmajor, t.devminor = dev
    if nsec is not None:
        t.pax_headers["mtime"] = pax_time(mtime, nsec)
    for k, v in (xattrs or {}).items():
        t.pax_headers["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
    return t


class TarBuf:
    def __init__(self):
        self.b = io.BytesIO()

    def add(self, t, data=b"", fmt=tarfile.PAX_FORMAT):
        if t.type == tarfile.REGTYPE:
            t.size = len(data)
        self.b.write(t.tobuf(fmt, "utf-8", "surrogateescape"))
        if data:
            self.b.write(body(data))

    def raw(self, blob):
        self.b.write(blob)

    def value(self):
        return self.b.getvalue()


# ------------------------------------------------------------------ layers
def layer0():
    """Python tarfile + hand-made headers; ends WITHOUT the zero blocks."""
    t = TarBuf()
    D, F, L, S = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE
    t.add(ti("etc/", D, 0o755))
    t.add(ti("etc/hostname"), b"fidelity\n")
    t.add(ti("etc/passwd", mode=0o644, nsec=123456789), b"root:x:0:0::/root:/bin/sh\n")
    # implicit parents: no entries for implicit/, implicit/a/, implicit/a/b/
    t.add(ti("implicit/a/b/c.txt"), b"parents are implicit\n")
    # long path and long link target (PAX path / linkpath)
    longdir = "long/" + "d" * 100 + "/" + "e" * 100 + "/" + "f" * 90
    t.add(ti(longdir + "/", D, 0o755))
    t.add(ti(longdir + "/" + "g" * 120 + ".txt", nsec=1), b"long path\n")
    t.add(ti("long/sym", S, 0o777, linkname="/" + "t" * 80 + "/" + "u" * 200))
    t.add(ti("long/hardlink", L, linkname=longdir + "/" + "g" * 120 + ".txt"))
    # names: UTF-8 in PAX, odd bytes in a plain ustar name
    t.add(ti("names/", D, 0o755))
    t.add(ti("names/grüße-日本語-ελληνικά.txt"), b"utf-8\n")
    t.add(ti("names/emoji-\U0001F600"), b"astral\n")
    for raw_name in (b"names/latin1-\xe9\xff", b"names/ctrl-\x01\x7f", b"names/new\nline",
                     b"names/ spaces  ", b"names/back\\slash:colon;*?[]"):
        t.raw(raw_header(raw_name, size=3) + body(b"odd"))
    # base-256 numbers in a hand-made GNU-magic header (any value may use it)
    t.add(ti("b256/", D, 0o755))
    t.raw(raw_header(b"b256/file", size=6, uid=3000000, gid=5000000, magic=b"ustar  \0",
                     numfmt={"uid": "b256", "gid": "b256", "size": "b256", "mtime": "b256"})
          + body(b"base\n\n"))
    # ids above 2^21 (PAX uid/gid records)
    t.add(ti("ids/", D, 0o755))
    t.add(ti("ids/big", uid=2 ** 21 + 5, gid=4000000000), b"big ids\n")
    t.add(ti("ids/dir/", D, 0o750, uid=3000001, gid=3000002))
    t.add(ti("ids/sym", S, 0o777, uid=2 ** 31, gid=2 ** 22, linkname="big"))
    # xattrs (PAX SCHILY.xattr.*)
    t.add(ti("xattr/", D, 0o755, xattrs={"user.dir": b"on a directory"}))
    t.add(ti("xattr/cap", mode=0o755, xattrs={"security.capability": CAPABILITY}), b"#!\n")
    t.add(ti("xattr/user", xattrs={"user.foo": b"bar", "user.bin": b"\x00\x01\xff\xfe",
                                   "user.utf8": "ü".encode()}), b"x\n")
    t.add(ti("xattr/big", xattrs={"user.big": b"v" * 4000}), b"x\n")
    # symlinks
    t.add(ti("sym/", D, 0o755))
    t.add(ti("sym/abs", S, 0o777, linkname="/etc/hostname", nsec=5))
    t.add(ti("sym/rel", S, 0o777, linkname="../etc/hostname"))
    t.add(ti("sym/dangling", S, 0o777, linkname="no/such/file"))
    t.add(ti("sym/loop1", S, 0o777, linkname="loop2"))
    t.add(ti("sym/loop2", S, 0o777, linkname="loop1"))
    t.add(ti("sym/self", S, 0o777, linkname="self"))
    t.add(ti("sym/dir", S, 0o777, linkname="../etc"))
    # hard links
    t.add(ti("hl/", D, 0o755))
    t.add(ti("hl/orig", mode=0o640, uid=7, gid=8), b"hard-linked content\n")
    t.add(ti("hl/same-dir", L, linkname="hl/orig"))
    t.add(ti("other/", D, 0o755))
    t.add(ti("other/across", L, linkname="hl/orig"))
    t.add(ti("hl/chain", L, linkname="other/across"))
    t.add(ti("hl/to-symlink", L, linkname="sym/rel"))
    t.add(ti("hl/dotslash", L, linkname="./hl/orig"))
    # devices and fifos
    t.add(ti("dev/", D, 0o755))
    t.add(ti("dev/null", tarfile.CHRTYPE, 0o666, dev=(1, 3)))
    t.add(ti("dev/sda", tarfile.BLKTYPE, 0o660, gid=6, dev=(8, 0)))
    t.add(ti("dev/big", tarfile.CHRTYPE, 0o600, dev=(4095, 1048575)))
    t.add(ti("dev/fifo", tarfile.FIFOTYPE, 0o644, nsec=999999999))
    # modes
    t.add(ti("perm/", D, 0o755))
    t.add(ti("perm/suid", mode=0o4755), b"s\n")
    t.add(ti("perm/sgid", mode=0o2755), b"g\n")
    t.add(ti("perm/all", mode=0o7777), b"a\n")
    t.add(ti("perm/sticky/", D, 0o1777))
    t.add(ti("perm/sgid-dir/", D, 0o2775))
    t.add(ti("perm/none", mode=0), b"no access\n")
    t.add(ti("perm/none-dir/", D, 0))
    t.add(ti("perm/none-dir/inside", mode=0o600), b"inside a mode 000 dir\n")
    t.add(ti("dup/", D, 0o755))
    t.add(ti("dup/file", mode=0o600), b"L0, replaced in L1\n")
    # to be changed by later layers
    t.add(ti("whdir/", D, 0o755))
    t.add(ti("whdir/a"), b"whited out by L1\n")
    t.add(ti("opq/", D, 0o755))
    t.add(ti("opq/old1"), b"hidden by the opaque dir\n")
    t.add(ti("opq/sub/", D, 0o755))
    t.add(ti("opq/sub/old2"), b"hidden too\n")
    t.add(ti("swap/", D, 0o755))
    t.add(ti("swap/x"), b"file in L0, dir in L1, file in L3\n")
    t.add(ti("swap/y"), b"file in L0, dir in L2\n")
    t.add(ti("mtime/", D, 0o755))
    t.add(ti("mtime/ns", mtime=T0, nsec=1), b"1 ns\n")
    t.add(ti("mtime/ns9", mtime=T0, nsec=999999999), b"999999999 ns\n")
    t.add(ti("mtime/epoch", mtime=0), b"1970\n")
    t.add(ti("mtime/y2038", mtime=2 ** 31 + 10), b"after 2038\n")
    return t.value()  # no end-of-archive blocks


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def gnutar(fmt, stage, out, *extra, members=None):
    """GNU tar of stage's "." (names "./x"), or of its top-level entries
    (names "x": concatenated archives then name no directory twice, which
    podman refuses: "duplicates of file paths not supported")."""
    if members:
        members = sorted(os.listdir(stage))
    run("tar", "--format=" + fmt, "--sort=name", "--numeric-owner", *extra,
        "-cf", out, "-C", stage, *(members or ["."]))


def mkfile(path, data=b"", mode=0o644, uid=0, gid=0, mtime=T1, nsec=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime * 10**9 + nsec,) * 2)


def mkdir(path, mode=0o755, mtime=T1):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def fix_dir_times(root, mtime=T1):
    for d, dirs, _ in os.walk(root):
        os.utime(d, (mtime, mtime))


def layer1(tmp):
    """GNU format: L/K, base-256 ids, whiteouts, opaque dir, file -> dir;
    garbage after the end blocks."""
    s = os.path.join(tmp, "l1")
    mkdir(s)
    mkdir(s + "/gnu")
    longname = s + "/gnu/" + "n" * 150
    mkfile(longname, b"GNU long name\n")
    mkfile(s + "/gnu/" + "p" * 120 + "/" + "q" * 120, b"GNU long path\n")
    os.symlink("/target/" + "t" * 200, s + "/gnu/longsym")
    os.link(longname, s + "/gnu/" + "h" * 130)   # hard link with a long target: K
    mkfile(s + "/gnu/bigids", b"base-256 ids\n", uid=3000000, gid=5000000)
    mkfile(s + "/gnu/mode000", b"", mode=0)
    mkdir(s + "/etc")
    mkfile(s + "/etc/.wh.hostname")            # whiteout of a file
    mkfile(s + "/.wh.whdir")                   # whiteout of a directory
    mkdir(s + "/opq")
    mkfile(s + "/opq/.wh..wh..opq")
    mkfile(s + "/opq/new", b"only this one is visible in opq\n")
    mkdir(s + "/swap")
    mkdir(s + "/swap/x")                       # was a file in L0
    mkfile(s + "/swap/x/inner", b"inside the directory that replaced a file\n")
    mkfile(s + "/dup/file", b"L1 overrides L0\n", mode=0o640)
    fix_dir_times(s)
    os.utime(s + "/gnu/longsym", (T1, T1), follow_symlinks=False)
    out = os.path.join(tmp, "l1.tar")
    gnutar("gnu", s, out)   # GNU tar pads to 10 KiB: zeros after the end blocks
    with open(out, "ab") as f:  # and then non-zero bytes
        f.write(b"trailing garbage after the end of the archive\n" * 20)
    return open(out, "rb").read()


def sparse_file(path, size, chunks, mtime=T1):
    """A sparse file of `size` bytes with data `chunks` {offset: bytes}."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in chunks.items():
            f.seek(off)
            f.write(data)
    os.utime(path, (mtime, mtime))


def pattern(n, seed):
    return hashlib.sha256(seed.encode()).digest() * (n // 32) + b"x" * (n % 32)


def layer2(tmp):
    """GNU tar PAX: sparse 1.0, 0.1, 0.0 concatenated; xattrs; ns mtimes."""
    parts = []
    for ver in ("1.0", "0.1", "0.0"):
        s = os.path.join(tmp, "l2-" + ver)
        mkdir(s)
        tag = ver.replace(".", "")
        sp = s + "/sparse-v" + tag
        sparse_file(sp + "/v" + tag, 3 * 1024 * 1024 + 100,
                    {0: pattern(5000, ver + "a"), 1024 * 1024: pattern(70000, ver + "b"),
                     3 * 1024 * 1024: pattern(100, ver + "c")})
        sparse_file(sp + "/v%s-hole-at-end" % tag, 2 * 1024 * 1024,
                    {4096: pattern(4096, ver + "d")})
        sparse_file(sp + "/v%s-all-hole" % tag, 1024 * 1024, {})
        if ver == "1.0":
            mkdir(s + "/xattr2")
            mkfile(s + "/xattr2/f", b"xattrs by GNU tar\n", nsec=123456789)
            os.setxattr(s + "/xattr2/f", "user.gnutar", b"value")
            os.setxattr(s + "/xattr2/f", "security.capability", CAPABILITY)
            os.utime(s + "/xattr2/f", ns=(T1 * 10**9 + 123456789,) * 2)
            mkdir(s + "/swap")
            mkdir(s + "/swap/y", 0o700)            # was a file in L0
            mkfile(s + "/swap/y/z", b"in y\n", nsec=42)
            mkdir(s + "/swap/y", 0o700)
        fix_dir_times(s)
        out = os.path.join(tmp, "l2-%s.tar" % ver)
        gnutar("pax", s, out, "-S", "--sparse-version=" + ver, "--xattrs",
               "--xattrs-include=*", "--pax-option=delete=atime,delete=ctime",
               members=True)
        parts.append(out)
    for p in parts[1:]:
        run("tar", "-Af", parts[0], p)
    return open(parts[0], "rb").read()


def layer3(tmp):
    """v7 + oldgnu concatenated: dir -> file again, v7 dirs, oldgnu names."""
    s = os.path.join(tmp, "l3-v7")
    mkdir(s)
    mkdir(s + "/swap")
    mkfile(s + "/swap/x", b"a file again, written by tar --format=v7\n", mode=0o600)
    mkdir(s + "/v7/dir", 0o711)
    mkfile(s + "/v7/dir/file", b"v7\n", uid=1000, gid=1000)
    os.symlink("dir/file", s + "/v7/sym")
    os.utime(s + "/v7/sym", (T1, T1), follow_symlinks=False)
    fix_dir_times(s)
    a = os.path.join(tmp, "l3-v7.tar")
    gnutar("v7", s, a, members=True)
    s = os.path.join(tmp, "l3-oldgnu")
    mkdir(s)
    mkfile(s + "/oldgnu/" + "o" * 140, b"oldgnu long name\n")
    mkfile(s + "/oldgnu/plain", b"oldgnu\n", mode=0o755)
    fix_dir_times(s)
    b = os.path.join(tmp, "l3-oldgnu.tar")
    gnutar("oldgnu", s, b, members=True)
    run("tar", "-Af", a, b)
    return open(a, "rb").read()


def sparse_layer(tmp):
    """What podman refuses (GNU old sparse 'S') and files over 8 GiB."""
    parts = []
    for fmt, ver in (("oldgnu", None), ("pax", "1.0"), ("pax", "0.1"), ("pax", "0.0")):
        s = os.path.join(tmp, "sp-%s-%s" % (fmt, ver))
        mkdir(s)
        tag = fmt + (ver or "").replace(".", "")
        chunks = {0: pattern(10000, tag + "0"), 1 << 20: pattern(4096, tag + "1"),
                  5 << 30: pattern(65536 + 7, tag + "2"), HUGE - 10: b"last bytes"}
        sparse_file(s + "/sparse/%s-huge" % tag, HUGE, chunks)
        sparse_file(s + "/sparse/%s-small" % tag, 300000,
                    {8192: pattern(20000, tag + "s"), 200000: pattern(300, tag + "t")})
        if fmt == "oldgnu":
            # more than 4 holes: needs old GNU sparse extension blocks
            sparse_file(s + "/sparse/oldgnu-many", 64 * 4096 + 1,
                        {i * 8192: pattern(100 + i, "m%d" % i) for i in range(30)})
        fix_dir_times(s)
        out = os.path.join(tmp, "sp-%s.tar" % tag)
        extra = ["-S"] + (["--sparse-version=" + ver] if ver else [])
        if fmt == "pax":
            extra.append("--pax-option=delete=atime,delete=ctime")
        gnutar(fmt, s, out, *extra)
        parts.append(out)
    for p in parts[1:]:
        run("tar", "-Af", parts[0], p)
    # Entries given twice (the later wins), which podman refuses too
    # ("duplicates of file paths not supported"); no end blocks: GNU tar's
    # archive follows.
    t = TarBuf()
    D, S = tarfile.DIRTYPE, tarfile.SYMTYPE
    t.add(ti("dup/", D, 0o755))
    t.add(ti("dup/file", mode=0o600), b"first\n")
    t.add(ti("dup/file", mode=0o644, mtime=T1), b"second, the one that counts\n")
    t.add(ti("dup/type"), b"a file first\n")
    t.add(ti("dup/type", S, 0o777, linkname="then a symlink"))
    t.add(ti("dup/sym", S, 0o777, linkname="a symlink first"))
    t.add(ti("dup/sym", mode=0o640), b"then a file\n")
    t.add(ti("dup/dir/", D, 0o700))
    t.add(ti("dup/dir/in"), b"kept: a directory given again keeps its children\n")
    t.add(ti("dup/dir/", D, 0o755, mtime=T1))
    return t.value() + open(parts[0], "rb").read()


# ------------------------------------------------------------------ compression
def gzip_members(data, pieces):
    """Several gzip members, split at uneven points."""
    out = b""
    cuts = [0] + [len(data) * i // pieces + 7 * i for i in range(1, pieces)] + [len(data)]
    for a, b in zip(cuts, cuts[1:]):
        out += gzip.compress(data[a:b], compresslevel=6, mtime=0)
    return out


def zstd(data):
    return subprocess.run(["zstd", "-q", "-3", "-T1", "-c"], input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def zstd_frames(data, pieces, lead=False):
    """Several zstd frames with skippable frames between and after them, and
    before them with lead (podman sniffs the compression from the first
    bytes and takes such a blob for an uncompressed tar)."""
    def skippable(n, payload):
        return (0x184D2A50 + n).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload
    out = skippable(0, b"leading skippable frame") if lead else b""
    cuts = [0] + [len(data) * i // pieces + 3 * i for i in range(1, pieces)] + [len(data)]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        out += zstd(data[a:b]) + skippable(i % 16, b"skip %d " % i * (i + 1))
    return out


# ------------------------------------------------------------------ images
class Blobs:
    def __init__(self, out):
        self.dir = os.path.join(out, "blobs")
        os.makedirs(self.dir, exist_ok=True)

    def add(self, data, media_type):
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.dir, h), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + h, "size": len(data)}

    def add_json(self, obj, media_type):
        return self.add(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode(),
                        media_type)

    def get(self, digest):
        return open(os.path.join(self.dir, digest.split(":")[1]), "rb").read()


def image(blobs, tars, comps, arch, docker=False):
    """Manifest descriptor for the tars compressed as comps."""
    layers = []
    for tar, comp in zip(tars, comps):
        if comp.startswith("none-as-"):   # already compressed (or broken)
            layers.append(blobs.add(tar, (MT_D if docker else MT_OCI)[comp[8:]]))
            continue
        z = {"gzip": lambda d: gzip_members(d, 1), "gzip3": lambda d: gzip_members(d, 3),
             "zstd": zstd, "zstdN": lambda d: zstd_frames(d, 4),
             "zstdL": lambda d: zstd_frames(d, 3, lead=True), "none": lambda d: d}[comp.rstrip("D")](tar)
        kind = comp.rstrip("3NLD")
        # "D": a Docker layer media type in an OCI manifest, as some
        # builders write (mixing is legal and podman takes it)
        layers.append(blobs.add(z, (MT_D if docker or comp.endswith("D") else MT_OCI)[kind]))
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    config = {"created": "2024-01-01T00:00:00Z", "architecture": arch, "os": "linux",
              "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    c = blobs.add_json(config, MT_D_CONFIG if docker else MT_OCI_CONFIG)
    m = {"schemaVersion": 2, "mediaType": MT_D_MANIFEST if docker else MT_OCI_MANIFEST,
         "config": c, "layers": layers}
    return blobs.add_json(m, m["mediaType"]), m


def push(registry, repo, blobs, tag, mdesc):
    """Push mdesc (and every blob it names, recursively) as repo:tag."""
    base = "http://%s/v2/%s" % (registry, repo)
    doc = json.loads(blobs.get(mdesc["digest"]))
    children = []
    if "manifests" in doc:
        for m in doc["manifests"]:
            push(registry, repo, blobs, None, m)
    else:
        children = [doc["config"]] + doc["layers"]
    for d in {c["digest"]: c for c in children}.values():   # each blob once
        req = urllib.request.Request(base + "/blobs/uploads/", method="POST")
        with urllib.request.urlopen(req) as r:
            loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = "http://" + registry + loc
        loc += ("&" if "?" in loc else "?") + "digest=" + d["digest"]
        req = urllib.request.Request(loc, data=blobs.get(d["digest"]), method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req).close()
    ref = tag or mdesc["digest"]
    req = urllib.request.Request(base + "/manifests/" + ref, data=blobs.get(mdesc["digest"]),
                                 method="PUT", headers={"Content-Type": mdesc["mediaType"]})
    with urllib.request.urlopen(req) as r:
        got = r.headers.get("Docker-Content-Digest")
    if got and got != mdesc["digest"]:
        die("%s:%s: registry stored %s, pushed %s" % (repo, ref, got, mdesc["digest"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--push", metavar="REGISTRY")
    ap.add_argument("out")
    a = ap.parse_args()
    if os.geteuid() != 0:
        die("must run as root (mknod, chown)")
    out = os.path.abspath(a.out)
    tmp = os.path.join(out, "stage")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(tmp)
    os.makedirs(os.path.join(out, "layers"))
    tars = [layer0(), layer1(tmp), layer2(tmp), layer3(tmp), b"\0" * 1024, b""]
    sparse = sparse_layer(tmp)
    shutil.rmtree(tmp)
    names = []
    for i, t in enumerate(tars + [sparse]):
        n = os.path.join(out, "layers", "L%d.tar" % i if i < len(tars) else "SPARSE.tar")
        with open(n, "wb") as f:
            f.write(t)
        names.append(n)

    arch = GOARCH.get(platform.machine(), platform.machine())
    blobs = Blobs(out)
    oci, _ = image(blobs, tars, ["gzip3", "zstdN", "none", "gzipD", "gzip", "zstd"], arch)
    dock, _ = image(blobs, tars, ["gzip", "gzip", "none", "gzip3", "gzip", "gzip"], arch,
                    docker=True)
    decoys = []
    for darch in ("arm64", "s390x", "ppc64le"):
        if darch == arch or len(decoys) == 2:
            continue
        wrong = TarBuf()
        wrong.add(ti("WRONG-PLATFORM"), ("the %s decoy\n" % darch).encode())
        d, _ = image(blobs, [wrong.value() + b"\0" * 1024], ["gzip"], darch)
        d["platform"] = {"architecture": darch, "os": "linux"}
        decoys.append(d)
    native = dict(dock)
    native["platform"] = {"architecture": arch, "os": "linux"}
    idx = blobs.add_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                          "manifests": decoys + [native]}, MT_OCI_INDEX)
    sp, _ = image(blobs, [sparse], ["zstdL"], arch)

    images = {"test/fidelity:oci": oci, "test/fidelity:docker": dock,
              "test/fidelity:index": idx, "test/fidelity-sparse:oci": sp}
    summary = {"layers": names[:len(tars)], "sparse_layer": names[-1], "huge_size": HUGE,
               "images": {k: v["digest"] for k, v in images.items()}}
    with open(os.path.join(out, "corpus.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if a.push:
        for ref, desc in images.items():
            repo, tag = ref.split(":")
            push(a.push, repo, blobs, tag, desc)


if __name__ == "__main__":
    main()
