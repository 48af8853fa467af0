#!/usr/bin/env python3
"""mkstream.py - the test images of streaming.sh, as an OCI image layout.

  mkstream.py [--filler-mib N] OUT

Writes OUT/layout (OCI layout; tags below) and OUT/stream.json (what the
test needs to know: per tag the layer digests and diff_ids, entry offsets in
the uncompressed tar, expected listings and file hashes, which blob byte to
corrupt).  The tars are written here entry by entry, in the order given
(not sorted), so "early" and "late" entries are where the test wants them.
Layer blobs and the manifest/config come from mkimage.py's Layout and
make_image (gzip with mtime 0).  Deterministic: fixed mtimes, random bytes
from fixed seeds.

Every image has two layers: layer 0 is the same small base layer (base/...),
layer 1 is what the case is about.  Tags:

  slow      layer 1: first d/early-0..3, e/early-0..1 and the empty
            directories n/, q/, p00/..p23/ (small), then d/filler-a (N/2 MiB
            random), d/mid, d/filler-b (N/2 MiB random), and at the end
            p00/late..p23/late (one late file per directory), q/late-cat,
            d/late-00..03, late-dir/, late-dir/f.  Served through the
            throttling proxy, the late entries arrive only at the end of a
            long download.
  blobflip  layer 1 gzip (8 MiB); the test flips a byte of the gzip header's
            MTIME field in the registry's copy: the blob no longer matches
            its digest, yet decompresses to the very same tar.
  midflip   both layers uncompressed (media type ...tar); the test flips a
            byte in the middle of a file's data in layer 1's stored blob.
  gzflip    layer 1 gzip; the test flips a byte in the middle of the
            compressed stream (random data: inside a deflate stored block).
  diffid    layer 1 gzip, blob intact, but the config's rootfs.diff_ids[1]
            is the sha256 of something else.
  badtar    layer 1 gzip of a tar whose header of d/bad-entry (between
            d/early-* + a 6 MiB filler and d/after-*) has a wrong checksum;
            blob digest and diff_id are those of the corrupt tar, so only
            the tar parser can notice.
"""

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mkimage  # noqa: E402  (Layout, compress_gzip, make_image, native_arch)

MTIME = 1704164645  # 2024-01-02T03:04:05Z
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MIB = 1 << 20


def rand(seed, n):
    return random.Random(seed).randbytes(n)


class TarWriter:
    """A tar written in the order entries are added; records offsets."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.USTAR_FORMAT)
        self.offsets = {}  # name -> offset of its header in the tar
        self.files = {}  # name -> sha256 of the content (regular files)

    def _info(self, name, typ, mode):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = typ, mode, MTIME
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    def dir(self, name):
        self.offsets[name] = self.tar.offset
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))

    def file(self, name, data):
        ti = self._info(name, tarfile.REGTYPE, 0o644)
        ti.size = len(data)
        self.offsets[name] = self.tar.offset
        self.tar.addfile(ti, io.BytesIO(data))
        self.files[name] = hashlib.sha256(data).hexdigest()

    def close(self):
        self.tar.close()
        return self.buf.getvalue()


def write_tar(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path, "sha256:" + hashlib.sha256(data).hexdigest()


def copy_file(src, dst):
    shutil.copyfile(src, dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--filler-mib", type=int, default=40)
    ap.add_argument("out")
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    layout = mkimage.Layout(os.path.join(a.out, "layout"))
    arch = mkimage.native_arch()
    info = {"tags": {}}

    with tempfile.TemporaryDirectory(dir=a.out) as tmp:
        # ---- layer 0, shared by every tag
        base = TarWriter()
        base.dir("base/")
        base.file("base/hello", b"hello from layer 0\n")
        base.file("base/data", rand(7, 64 * 1024))
        base_tar = write_tar(tmp, "base.tar", base.close())
        info["base"] = {"files": base.files}

        def image(tag, layer1_tar, compress=mkimage.compress_gzip, media=mkimage.MT_GZIP,
                  diff_ids=None, extra=None):
            layers = [base_tar, layer1_tar]
            if diff_ids:
                layers = [(t, d) for (t, _), d in zip(layers, diff_ids)]
            mdesc, man = mkimage.make_image(layout, layers, compress, media, arch, tmp, tag)
            layout.tag(mdesc, tag)
            entry = {"manifest": mdesc["digest"],
                     "layers": [l["digest"] for l in man["layers"]],
                     "sizes": [l["size"] for l in man["layers"]],
                     "diff_ids": [d for _, d in layers],
                     "true_diff_ids": [base_tar[1], layer1_tar[1]]}
            entry.update(extra or {})
            info["tags"][tag] = entry
            return entry

        # ---- slow: early entries, big fillers with a mid file, late entries
        t = TarWriter()
        t.dir("d/")
        for i in range(4):
            t.file("d/early-%d" % i, ("early file %d\n" % i).encode())
        t.dir("e/")
        for i in range(2):
            t.file("e/early-%d" % i, ("early file %d in e\n" % i).encode())
        for name in ["n/", "q/"] + ["p%02d/" % i for i in range(24)]:
            t.dir(name)
        half = a.filler_mib * MIB // 2
        t.file("d/filler-a", rand(1001, half))
        t.file("d/mid", b"the middle of the layer\n")
        t.file("d/filler-b", rand(1002, half))
        late = ["p%02d/late" % i for i in range(24)]
        for i, n in enumerate(late):
            t.file(n, ("late file %d\n" % i).encode() * (i + 1))
        t.file("q/late-cat", b"late content, read with cat\n" * 100)
        late_d = ["d/late-%02d" % i for i in range(4)]
        for i, n in enumerate(late_d):
            t.file(n, ("late file %d in d\n" % i).encode())
        t.dir("late-dir/")
        t.file("late-dir/f", b"in a directory that arrives late\n")
        data = t.close()
        image("slow", write_tar(tmp, "slow.tar", data), extra={
            "offsets": t.offsets, "files": t.files, "tar_size": len(data),
            "late": late, "late_d": late_d,
            "ls_d": sorted(n[2:] for n in t.files if n.startswith("d/")),
            "ls_root": sorted({n.split("/")[0] for n in t.offsets})})

        # ---- failure cases: a few early files, a 4 MiB filler, late files
        def failing_tar(seed, filler=8 * MIB):
            t = TarWriter()
            t.dir("d/")
            for i in range(3):
                t.file("d/early-%d" % i, ("early file %d of %d\n" % (i, seed)).encode())
            t.file("d/filler", rand(seed, filler))
            for i in range(3):
                t.file("d/late-%d" % i, ("late file %d of %d\n" % (i, seed)).encode())
            return t, t.close()

        # blobflip: gzip header MTIME byte (offset 4) flipped later
        t, data = failing_tar(2001)
        image("blobflip", write_tar(tmp, "blobflip.tar", data),
              extra={"flip_offset": 4, "files": t.files})

        # midflip: uncompressed; a byte in the middle of d/filler's data
        t, data = failing_tar(2002)
        off = t.offsets["d/filler"] + 512 + 2 * MIB
        image("midflip", write_tar(tmp, "midflip.tar", data), compress=copy_file, media=MT_TAR,
              extra={"flip_offset": off, "files": t.files})

        # gzflip: a byte in the middle of the gzip stream
        t, data = failing_tar(2003)
        e = image("gzflip", write_tar(tmp, "gzflip.tar", data), extra={"files": t.files})
        e["flip_offset"] = e["sizes"][1] // 2

        # diffid: config names a wrong diff_id for layer 1
        t, data = failing_tar(2004)
        tar1 = write_tar(tmp, "diffid.tar", data)
        wrong = "sha256:" + hashlib.sha256(b"not the diff_id of layer 1").hexdigest()
        image("diffid", tar1, diff_ids=[base_tar[1], wrong],
              extra={"wrong_diff_id": wrong, "files": t.files})

        # badtar: a header with a bad checksum in the middle
        t = TarWriter()
        t.dir("d/")
        for i in range(3):
            t.file("d/early-%d" % i, ("early file %d of badtar\n" % i).encode())
        t.file("d/filler", rand(2005, 6 * MIB))
        t.file("d/bad-entry", b"this entry's header checksum is wrong\n")
        for i in range(3):
            t.file("d/after-%d" % i, ("after the bad entry %d\n" % i).encode())
        data = bytearray(t.close())
        bad = t.offsets["d/bad-entry"]
        assert data[bad:bad + 11] == b"d/bad-entry"
        chk = data[bad + 148:bad + 156]
        good = int(chk.rstrip(b"\0 ").decode(), 8)
        data[bad + 148:bad + 156] = b"%06o\0 " % ((good + 1) & 0o777777)
        image("badtar", write_tar(tmp, "badtar.tar", bytes(data)), extra={
            "bad_offset": bad, "bad_name": "d/bad-entry", "files": t.files})

        layout.finish()
    info["arch"] = arch
    with open(os.path.join(a.out, "stream.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
