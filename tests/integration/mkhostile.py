#!/usr/bin/env python3
"""mkhostile.py - hostile and broken images for hostile.sh.

Usage: mkhostile.py --push REGISTRY [--huge-dir N] OUT
       mkhostile.py --seeds DIR      (the hostile tars under 64 KiB, for the
                                     fuzzers' seed corpus; nothing pushed)

Pushes one image per case to REGISTRY as test/hostile-<case>:t (through the
registry API, exactly as built) and writes OUT/cases.json, a list of
  {"name", "ref", "kind", "expect", "opts", "layer", "entry"}
kind "layer": the mount succeeds and the LAST layer must fail, with an error
  in <mnt>/status that contains `expect` (the entry or what is wrong) and
  the layer digest `layer`; "mount": the mount itself must fail with one
  line on stderr containing `expect`; "ok": the image must mount and
  complete (absolute names, a huge directory).
opts are extra soci-fuse mount options (limits lowered for the test);
cache_fs "tmpfs": the case's cache is a tmpfs of its own; probe: the layer
fails only at its end, hostile.sh probes entries opened before that.
Every image but the JSON cases has a good layer 0 below the hostile one,
which must still be served.
"""

import argparse
import gzip
import hashlib
import json
import os
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkcorpus as mc  # noqa: E402  (same directory)

D, F, L, S = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE


def tar_of(*items, end=True):
    t = mc.TarBuf()
    for it in items:
        if isinstance(it, bytes):
            t.raw(it)
        else:
            t.add(*it)
    return t.value() + (b"\0" * 1024 if end else b"")


def pax_raw(records, name=b"PaxHeaders/x"):
    """A PAX 'x' header with the given raw record bytes."""
    return mc.raw_header(name, typeflag=b"x", size=len(records)) + mc.body(records)


def rec(key, val):
    """One well-formed PAX record (val: bytes)."""
    kv = b" " + key + b"=" + val + b"\n"
    n = len(kv) + 1
    while len(str(n).encode()) + len(kv) != n:
        n += 1
    return str(n).encode() + kv


GOOD = tar_of((mc.ti("good/"), b""), (mc.ti("good/file"), b"layer 0 is fine\n"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--push")
    ap.add_argument("--seeds", metavar="DIR")
    ap.add_argument("--huge-dir", type=int, default=100000)
    ap.add_argument("out", nargs="?")
    a = ap.parse_args()
    if a.seeds:
        a.out = a.seeds + "/.work"
        a.huge_dir = 10
    elif not a.push or not a.out:
        ap.error("--push REGISTRY and OUT, or --seeds DIR")
    os.makedirs(a.out, exist_ok=True)
    blobs = mc.Blobs(a.out)
    arch = mc.GOARCH.get(os.uname().machine, os.uname().machine)
    cases = []

    def case(name, kind, expect, tar=None, comp="gzip", opts=(), entry=None, desc=None):
        if a.seeds:
            if tar is not None and len(tar) < 65536 and not comp.startswith("none-as-"):
                with open(os.path.join(a.seeds, "hostile-%s.tar" % name), "wb") as f:
                    f.write(tar)
            cases.append({"name": name})
            return
        if desc is None:
            desc, man = mc.image(blobs, [GOOD, tar], ["gzip", comp], arch)
            layer = man["layers"][-1]["digest"]
        else:
            layer = None
        mc.push(a.push, "test/hostile-" + name, blobs, "t", desc)
        cases.append({"name": name, "ref": "%s/test/hostile-%s:t" % (a.push, name),
                      "kind": kind, "expect": expect, "opts": list(opts), "layer": layer,
                      "entry": entry})

    # ---- paths
    case("dotdot", "layer", "escapes the layer root",
         tar_of((mc.ti("a/"), b""), (mc.ti("a/../../escape"), b"out\n")), entry="a/../../escape")
    case("absolute", "ok", None,
         tar_of((mc.ti("/abs/"), b""), (mc.ti("/abs/file"), b"absolute names stay inside\n")))
    case("through-symlink", "layer", "not a directory",
         tar_of((mc.ti("lnk", S, 0o777, linkname="OUTSIDE"), b""),
                (mc.ti("lnk/evil"), b"written through a symlink\n")), entry="lnk/evil")
    case("deep-path", "layer", "path components",
         tar_of((mc.ti("d/" * 10000 + "f"), b"deep\n")), entry="d/d/d")
    # data-less sparse entries claiming 2^63 - 1 bytes each, then a file:
    # without a cap on the data file its offsets wrap where files may be
    # that large (tmpfs, XFS: the case's cache is a tmpfs) and "victim"
    # lands on huge1's offset, so huge1 serves victim's bytes
    def sparse_no_data(name):
        return (pax_raw(rec(b"GNU.sparse.size", b"%d" % (2**63 - 1)) +
                        rec(b"GNU.sparse.numblocks", b"0")) + mc.raw_header(name))
    case("sparse-wrap", "layer", "layer's files past",
         tar_of(sparse_no_data(b"huge1"), sparse_no_data(b"huge2"),
                (mc.ti("victim"), b"victim's bytes\n")), entry="huge1")
    cases[-1]["cache_fs"] = "tmpfs"
    # ---- hard links
    case("link-missing", "layer", "missing entry nope",
         tar_of((mc.ti("l", L, linkname="nope"), b"")), entry="l")
    case("link-later", "layer", "missing entry later",
         tar_of((mc.ti("l", L, linkname="later"), b""), (mc.ti("later"), b"too late\n")),
         entry="l")
    case("link-escape", "layer", "hard link target ../../../etc/passwd escapes",
         tar_of((mc.ti("l", L, linkname="../../../etc/passwd"), b"")), entry="l")
    case("link-dir", "layer", "hard link to directory",
         tar_of((mc.ti("d/"), b""), (mc.ti("l", L, linkname="d"), b"")), entry="l")
    # ---- header fields
    b256_huge = bytearray(mc.raw_header(b"hugesize", size=0))
    b256_huge[124:136] = b"\x80" + b"\xff" * 11
    case("size-overflow", "layer", "size field out of range", tar_of(fix_sum(b256_huge)),
         entry="hugesize")
    neg = bytearray(mc.raw_header(b"negsize"))
    neg[124:136] = b"\xff" * 12
    case("size-negative", "layer", "negative size", tar_of(fix_sum(neg)), entry="negsize")
    case("uid-overflow", "layer", "uid/gid above",
         tar_of(mc.raw_header(b"biguid", uid=1 << 40, numfmt={"uid": "b256"})), entry="biguid")
    badoct = bytearray(mc.raw_header(b"badmode"))
    badoct[100:108] = b"12x4567\0"
    case("mode-garbage", "layer", "invalid mode", tar_of(fix_sum(badoct)), entry="badmode")
    # a header with a bad checksum cannot be trusted to name itself: the
    # error gives its offset and names the entry before it
    case("bad-checksum", "layer", "checksum",
         tar_of((mc.ti("first"), b"x"),
                mc.raw_header(b"ok")[:148] + b"0000000\0" + mc.raw_header(b"ok")[156:]),
         entry="first")
    # ---- PAX
    # the records belong to the entry whose header follows them
    case("pax-huge-record", "layer", "PAX record length",
         tar_of(pax_raw(b"99999999999999999999 path=x\n"), (mc.ti("after"), b"x")),
         entry="after")
    case("pax-record-past-header", "layer", "exceeds header size",
         tar_of(pax_raw(b"1000 path=x\n"), (mc.ti("after"), b"x")), entry="after")
    # no entry follows: the extension header itself is named
    case("pax-header-huge", "layer", "exceeds limit",
         tar_of(mc.raw_header(b"PaxHeaders/x", typeflag=b"x", size=1 << 33,
                              numfmt={"size": "b256"}), end=False), entry="PaxHeaders/x")
    case("xattr-huge", "layer", "exceeds limit",
         tar_of(pax_raw(rec(b"SCHILY.xattr.user.big", b"v" * 100000)) +
                mc.raw_header(b"bigxattr") ), entry="bigxattr")
    # ---- bombs and limits
    # 1.5 GiB of zeros in a ~100 KB blob, over the 1 GiB every layer may
    # expand to anyway: the same compressed frame of 64 MiB of zeros, again
    # and again, so neither this script nor the blob holds the zeros
    zframe = mc.zstd(b"\0" * (64 << 20))
    bomb = (mc.zstd(mc.raw_header(b"zeros", size=24 * (64 << 20))) + zframe * 24 +
            mc.zstd(b"\0" * 1024))
    case("bomb-zstd", "layer", "decompression bomb", bomb, comp="none-as-zstd", entry="zeros")
    # 1.1 GiB of zeros as gzip members of 64 MiB each (~1.1 MB of blob):
    # within the default ratio, over --max-expansion-ratio 10
    gmember = gzip.compress(b"\0" * (64 << 20), 9, mtime=0)
    gbomb = (gzip.compress(mc.raw_header(b"zeros", size=18 * (64 << 20)), 9, mtime=0) +
             gmember * 18 + gzip.compress(b"\0" * 1024, 9, mtime=0))
    case("bomb-ratio", "layer", "decompression bomb", gbomb, comp="none-as-gzip",
         opts=["--max-expansion-ratio", "10"], entry="zeros")
    many = tar_of(*[(mc.ti("m/%d" % i), b"") for i in range(300)])
    case("entries", "layer", "entries in the layer", many, opts=["--max-entries", "200"],
         entry="m/200")
    # refused before a byte is fetched: no entry to name
    case("layer-size", "layer", "max-layer-size", GOOD, opts=["--max-layer-size", "10"])
    cases[-1]["layer0_fails"] = True
    # ---- compression and digests
    body = tar_of((mc.ti("data"), os.urandom(300000)))
    # cut inside the data of "data"
    case("gzip-truncated", "layer", "gzip", gzip.compress(body, mtime=0)[:-20000],
         comp="none-as-gzip", entry="data")
    case("zstd-truncated", "layer", "zstd", mc.zstd(body)[:-20000], comp="none-as-zstd",
         entry="data")
    # a gzip header, then a deflate block of the reserved type 3: fails
    # before the first tar header, so there is no entry to name
    case("gzip-garbage", "layer", "gzip",
         bytes.fromhex("1f8b0800000000000003") + b"\xff" * 5000, comp="none-as-gzip")
    # diff_id that does not match (and below, a blob size the registry
    # contradicts): about the whole blob, no entry to name
    d, m = mc.image(blobs, [GOOD, body], ["gzip", "gzip"], arch)
    cfg = json.loads(blobs.get(m["config"]["digest"]))
    cfg["rootfs"]["diff_ids"][1] = "sha256:" + "0" * 64
    m["config"] = blobs.add_json(cfg, mc.MT_OCI_CONFIG)
    d = blobs.add_json(m, mc.MT_OCI_MANIFEST)
    case("diff-id-mismatch", "layer", "diff_id mismatch", desc=d)
    if not a.seeds:
        cases[-1]["layer"] = m["layers"][1]["digest"]
    # fails only at its end (wrong diff_id), after its entries were
    # served: hostile.sh ("probe") fetches it through a throttling proxy,
    # holds lnk, xf and xd open meanwhile, and checks that readlink,
    # getxattr, listxattr, fstat and read on them get EIO once it failed
    late = tar_of((mc.ti("lnk", S, 0o777, linkname="target"), b""),
                  (mc.ti("xf", xattrs={"user.k": b"v"}), b"xattr file\n"),
                  (mc.ti("xd/", D, 0o755), b""), (mc.ti("xd/.wh..wh..opq"), b""),
                  (mc.ti("filler"), os.urandom(2 << 20)))
    d, m = mc.image(blobs, [GOOD, late], ["gzip", "gzip"], arch)
    cfg = json.loads(blobs.get(m["config"]["digest"]))
    cfg["rootfs"]["diff_ids"][1] = "sha256:" + "1" * 64
    m["config"] = blobs.add_json(cfg, mc.MT_OCI_CONFIG)
    case("late-failure", "layer", "diff_id mismatch", desc=blobs.add_json(m, mc.MT_OCI_MANIFEST))
    cases[-1]["probe"] = True
    if not a.seeds:
        cases[-1]["layer"] = m["layers"][1]["digest"]
    # the manifest says the blob is smaller than it is (a blob whose bytes
    # do not match its digest cannot come from a registry, which checks
    # digests on upload: streaming.sh corrupts blobs through a proxy)
    d, m = mc.image(blobs, [GOOD, body], ["gzip", "gzip"], arch)
    m["layers"][1]["size"] -= 1000
    d = blobs.add_json(m, mc.MT_OCI_MANIFEST)
    case("blob-size-mismatch", "layer", "Content-Range", desc=d)
    if not a.seeds:
        cases[-1]["layer"] = m["layers"][1]["digest"]
    # ---- manifest / config documents (mount-time errors)
    d, m = mc.image(blobs, [GOOD, body], ["gzip", "gzip"], arch)
    m["layers"].pop()
    case("layer-count", "mount", "diff_ids", desc=blobs.add_json(m, mc.MT_OCI_MANIFEST))
    # (the registry refuses wrong-typed or deeply nested manifests on PUT,
    # so those reach us only through the config, which it does not parse;
    # test_manifest covers the manifest parser)
    d, m = mc.image(blobs, [GOOD], ["gzip"], arch)
    cfg = json.loads(blobs.get(m["config"]["digest"]))
    cfg["rootfs"] = "layers"
    m["config"] = blobs.add_json(cfg, mc.MT_OCI_CONFIG)
    case("wrong-type-rootfs", "mount", "rootfs: not an object",
         desc=blobs.add_json(m, mc.MT_OCI_MANIFEST))
    d, m = mc.image(blobs, [GOOD], ["gzip"], arch)
    cfg = json.loads(blobs.get(m["config"]["digest"]))
    cfg["rootfs"]["diff_ids"] = [17]
    m["config"] = blobs.add_json(cfg, mc.MT_OCI_CONFIG)
    case("wrong-type-diff-id", "mount", "not a string",
         desc=blobs.add_json(m, mc.MT_OCI_MANIFEST))
    d, m = mc.image(blobs, [GOOD], ["gzip"], arch)
    raw = json.dumps(json.loads(blobs.get(m["config"]["digest"]))).encode()
    raw = raw[:-1] + b', "deep": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    m["config"] = blobs.add(raw, mc.MT_OCI_CONFIG)
    case("deep-json", "mount", "JSON", desc=blobs.add_json(m, mc.MT_OCI_MANIFEST))
    d, m = mc.image(blobs, [GOOD], ["gzip"], arch)
    cfg = json.loads(blobs.get(m["config"]["digest"]))
    cfg["history"] = [{"comment": "x" * 1000}] * 6000
    m["config"] = blobs.add_json(cfg, mc.MT_OCI_CONFIG)
    case("huge-config", "mount", "limit", desc=blobs.add_json(m, mc.MT_OCI_MANIFEST))
    d, m = mc.image(blobs, [GOOD], ["gzip"], arch)
    m["layers"] = [dict(m["layers"][0]) for _ in range(5000)]
    case("too-many-layers", "mount", "limit", desc=blobs.add_json(m, mc.MT_OCI_MANIFEST))
    # ---- big but fine: one directory with many entries
    n = a.huge_dir
    t = mc.TarBuf()
    t.add(mc.ti("big/", D, 0o755))
    hdr = mc.ti("big/x", mtime=mc.T0)
    for i in range(n):
        hdr.name = "big/%07d" % i
        t.raw(hdr.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
    case("huge-dir", "ok", None, t.value() + b"\0" * 1024, comp="zstd")
    cases[-1]["entries"] = n

    if a.seeds:
        import shutil
        shutil.rmtree(a.out)
        return
    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


def fix_sum(h):
    h = bytearray(h)
    h[148:156] = b" " * 8
    h[148:156] = ("%06o\0 " % sum(h)).encode()
    return bytes(h)


if __name__ == "__main__":
    main()
