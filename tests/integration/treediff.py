#!/usr/bin/env python3
"""treediff.py - compare two directory trees entry by entry.

Usage: treediff.py [options] DIR_A DIR_B

Walks both trees without following symlinks and without descending into
nested mount points (a directory that is a mount point is compared as an
entry, its contents are skipped and a note is printed), and compares, for
every relative path:

  - presence on both sides
  - file type
  - permission bits incl. suid/sgid/sticky (S_IMODE)
  - uid, gid
  - size and sha256 of the content (regular files); files over
    --sparse-above bytes (256 MiB) are hashed by their non-zero 4 KiB
    blocks and offsets, found with SEEK_DATA/SEEK_HOLE, so a sparse 9 GiB
    file costs what its data costs (both sides must answer SEEK_DATA)
  - symlink target (readlink, bytes)
  - rdev major/minor (char and block devices)
  - xattrs, all names root can list (user, trusted, security, system),
    names and values; trusted.overlay.*, user.overlay.* and
    security.selinux are ignored unless --overlay-xattrs (then only
    security.selinux is)
  - mtime of non-directories (symlinks, fifos and devices too) at
    --mtime-precision, default ns: podman 4.3 (containers/storage) applies
    PAX mtimes with full nanoseconds to files, symlinks, fifos, devices and
    directories alike (checked against the test image), and overlayfs and
    FUSE pass nanoseconds through, so nothing coarser is needed; us/ms/s
    exist for sources that truncate (umoci *writes* whole seconds).
    --dir-mtime adds directories (not the root).
    --negative-mtime-as-epoch: a negative mtime compares as 0, because
    containers/storage clamps pre-1970 times to the epoch when unpacking
  - hard-link grouping: paths sharing (st_dev, st_ino) on one side must
    share one on the other, and vice versa

Not compared: atime, ctime, st_nlink, st_ino values, st_dev, directory
sizes, and the metadata of the roots themselves (only that both are
directories): an overlay's root is its upper dir, a podman merged root is
its top layer's diff dir.

Runs as root, so mode-000 files are read (CAP_DAC_OVERRIDE); fifos and
devices are never opened.  Reading a regular file can block (soci-fuse
serves a file once its layer has been unpacked to that point).

Prints the first --max (50) differences, then a summary line with the
number of entries compared.  Exit 0 when identical, 1 on any difference,
2 on bad usage or an unreadable root.

Other options:
  --exclude RELPATH      skip this path and everything below it (repeatable)
  --loose-whiteouts      for character devices 0/0 (overlay whiteouts) compare
                         only type and rdev: a layer view may give them any
                         mode, owner, time and inode (not hard-link grouped)
  --quiet                print only differences and the summary
"""

import argparse
import hashlib
import os
import re
import stat
import sys

TYPES = [
    (stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
    (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev"), (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
]
PRECISION = {"ns": 1, "us": 1000, "ms": 1000000, "s": 1000000000}


def ftype(mode):
    for test, name in TYPES:
        if test(mode):
            return name
    return "unknown"


def mount_points():
    """Set of mount points (bytes, absolute) from /proc/self/mountinfo."""
    mps = set()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                mp = line.split(b" ")[4]
                mp = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), mp)
                mps.add(mp)
    except OSError:
        pass
    return mps


def show(p):
    """Printable form of a relative byte path."""
    s = p.decode("utf-8", "backslashreplace") if p else "."
    if any(c in s for c in "\n\t\r") or s != s.strip():
        return repr(s)
    return s


def short(v, n=80):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "...(%d bytes)" % len(v)


class Entry:
    __slots__ = ("type", "perm", "uid", "gid", "size", "digest", "target", "rdev",
                 "xattrs", "mtime_ns", "key", "error", "mount")


def sha256_sparse(path, size):
    """Digest of a (huge, sparse) file without reading its holes: sha256
    over (offset, block) for every non-zero 4 KiB block, found through
    SEEK_DATA/SEEK_HOLE, then the size.  The same for any file system's
    idea of where holes are (zero blocks inside data count as holes)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: only a hole is left
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            off = data - data % 4096
            while off < hole:
                blk = os.pread(fd, 4096, off)
                if blk.strip(b"\0"):
                    h.update(b"%d:" % off + blk)
                off += 4096
            pos = max(hole, off)
    finally:
        os.close(fd)
    h.update(b"size:%d" % size)
    return "sparse:" + h.hexdigest()


def sha256_file(path, size=0, sparse_above=None):
    if sparse_above is not None and size > sparse_above:
        return sha256_sparse(path, size)
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_xattrs(path, keep_overlay):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out  # ENOTSUP etc.: no xattrs
    for n in names:
        if n == "security.selinux":
            continue
        if not keep_overlay and (n.startswith("trusted.overlay.") or n.startswith("user.overlay.")):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = "<error: %s>" % e.strerror
    return out


def scan(root, opts, mps):
    """Return {relpath: Entry} for root and everything below it."""
    entries = {}
    notes = []
    root_abs = os.path.realpath(root)

    def visit(rel):
        path = os.path.join(root_abs, rel) if rel else root_abs
        e = Entry()
        e.error = None
        e.mount = False
        st = os.lstat(path)
        e.type = ftype(st.st_mode)
        e.perm = stat.S_IMODE(st.st_mode)
        e.uid, e.gid = st.st_uid, st.st_gid
        e.mtime_ns = st.st_mtime_ns
        e.key = (st.st_dev, st.st_ino)
        e.size = e.digest = e.target = e.rdev = None
        e.xattrs = read_xattrs(path, opts.overlay_xattrs)
        if e.type == "file":
            e.size = st.st_size
            try:
                e.digest = sha256_file(path, st.st_size, opts.sparse_above)
            except OSError as ex:
                e.error = "read failed: %s" % ex.strerror
        elif e.type == "symlink":
            e.target = os.readlink(path)
        elif e.type in ("chardev", "blockdev"):
            e.rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        entries[rel] = e
        if e.type == "dir":
            if rel and path in mps:
                e.mount = True
                notes.append("%s: nested mount point, contents not compared" % show(rel))
                return
            try:
                names = sorted(os.listdir(path))
            except OSError as ex:
                e.error = "readdir failed: %s" % ex.strerror
                return
            for n in names:
                child = os.path.join(rel, n) if rel else n
                if child in opts.exclude:
                    continue
                visit(child)

    visit(b"")
    return entries, notes


def fmt_time(ns):
    sign = "-" if ns < 0 else ""
    return "%s%d.%09d" % (sign, abs(ns) // 10**9, abs(ns) % 10**9)


def compare(a, b, opts):
    diffs = []
    prec = PRECISION[opts.mtime_precision]
    for rel in sorted(set(a) | set(b)):
        ea, eb = a.get(rel), b.get(rel)
        name = show(rel)
        if ea is None:
            diffs.append("only in B: %s (%s)" % (name, eb.type))
            continue
        if eb is None:
            diffs.append("only in A: %s (%s)" % (name, ea.type))
            continue
        for e, side in ((ea, "A"), (eb, "B")):
            if e.error:
                diffs.append("%s: %s on %s" % (name, e.error, side))
        if ea.type != eb.type:
            diffs.append("%s: type %s != %s" % (name, ea.type, eb.type))
            continue
        if rel == b"":
            continue  # roots: only the type
        loose = (opts.loose_whiteouts and ea.type == "chardev" and ea.rdev == (0, 0)
                 and eb.rdev == (0, 0))
        if not loose:
            if ea.perm != eb.perm:
                diffs.append("%s: mode %04o != %04o" % (name, ea.perm, eb.perm))
            if (ea.uid, ea.gid) != (eb.uid, eb.gid):
                diffs.append("%s: owner %d:%d != %d:%d" % (name, ea.uid, ea.gid, eb.uid, eb.gid))
        if ea.type == "file":
            if ea.size != eb.size:
                diffs.append("%s: size %d != %d" % (name, ea.size, eb.size))
            if ea.digest != eb.digest and ea.digest and eb.digest:
                diffs.append("%s: content sha256 %s != %s" % (name, ea.digest[:16], eb.digest[:16]))
        if ea.target != eb.target:
            diffs.append("%s: symlink target %s != %s" % (name, short(ea.target), short(eb.target)))
        if ea.rdev != eb.rdev:
            diffs.append("%s: rdev %s != %s" % (name, ea.rdev, eb.rdev))
        if not loose and ea.xattrs != eb.xattrs:
            for k in sorted(set(ea.xattrs) | set(eb.xattrs)):
                va, vb = ea.xattrs.get(k), eb.xattrs.get(k)
                if va != vb:
                    diffs.append("%s: xattr %s: %s != %s" % (
                        name, k, "<absent>" if va is None else short(va),
                        "<absent>" if vb is None else short(vb)))
        if not loose and (ea.type != "dir" or opts.dir_mtime):
            ma, mb = ea.mtime_ns, eb.mtime_ns
            if opts.negative_mtime_as_epoch:
                ma, mb = max(ma, 0), max(mb, 0)
            if ma // prec != mb // prec:
                diffs.append("%s: mtime %s != %s" % (name, fmt_time(ea.mtime_ns), fmt_time(eb.mtime_ns)))

    # hard-link groups among the paths both sides have (non-directories)
    # (with --loose-whiteouts, whiteouts may share one inode: left out)
    def is_wh(e):
        return opts.loose_whiteouts and e.type == "chardev" and e.rdev == (0, 0)

    common = [r for r in a if r in b and a[r].type != "dir" and b[r].type != "dir"
              and not is_wh(a[r]) and not is_wh(b[r])]

    def groups(side):
        g = {}
        for r in common:
            g.setdefault(side[r].key, []).append(r)
        return {r: frozenset(g[side[r].key]) for r in common}

    ga, gb = groups(a), groups(b)
    seen = set()
    for r in sorted(common):
        if ga[r] != gb[r]:
            pair = (ga[r], gb[r])
            if pair in seen:
                continue
            seen.add(pair)
            diffs.append("%s: hard links differ: A {%s} B {%s}" % (
                show(r), ", ".join(show(x) for x in sorted(ga[r])),
                ", ".join(show(x) for x in sorted(gb[r]))))
    return diffs


def main():
    ap = argparse.ArgumentParser(usage="%(prog)s [options] DIR_A DIR_B",
                                 description="Compare two directory trees entry by entry.")
    ap.add_argument("a", metavar="DIR_A")
    ap.add_argument("b", metavar="DIR_B")
    ap.add_argument("--max", type=int, default=50, help="differences to print (50)")
    ap.add_argument("--mtime-precision", choices=sorted(PRECISION), default="ns")
    ap.add_argument("--dir-mtime", action="store_true", help="compare directory mtimes too")
    ap.add_argument("--negative-mtime-as-epoch", action="store_true",
                    help="treat mtimes before 1970 as 0 (podman's unpacking does)")
    ap.add_argument("--overlay-xattrs", action="store_true",
                    help="compare trusted.overlay.* and user.overlay.* too")
    ap.add_argument("--loose-whiteouts", action="store_true")
    ap.add_argument("--sparse-above", type=int, default=256 << 20, metavar="BYTES",
                    help="hash files larger than this by their non-zero blocks, found "
                    "with SEEK_DATA/SEEK_HOLE, instead of reading them whole (256 MiB)")
    ap.add_argument("--exclude", action="append", default=[], metavar="RELPATH")
    ap.add_argument("--quiet", action="store_true")
    opts = ap.parse_args()
    opts.exclude = {os.fsencode(x.strip("/")) for x in opts.exclude}

    for d in (opts.a, opts.b):
        if not os.path.isdir(d):
            print("treediff: %s: not a directory" % d, file=sys.stderr)
            return 2
    mps = mount_points()
    try:
        a, notes_a = scan(os.fsencode(opts.a), opts, mps)
        b, notes_b = scan(os.fsencode(opts.b), opts, mps)
    except OSError as e:
        print("treediff: %s" % e, file=sys.stderr)
        return 2
    if not opts.quiet:
        print("treediff: A = %s" % opts.a)
        print("treediff: B = %s" % opts.b)
        for n in notes_a:
            print("treediff: note (A): %s" % n)
        for n in notes_b:
            print("treediff: note (B): %s" % n)
    diffs = compare(a, b, opts)
    for d in diffs[:opts.max]:
        print("  " + d)
    if len(diffs) > opts.max:
        print("  ... and %d more" % (len(diffs) - opts.max))
    n = len(set(a) | set(b))
    print("treediff: %d entries compared (mtime precision %s%s), %d difference%s" % (
        n, opts.mtime_precision, ", dirs too" if opts.dir_mtime else "",
        len(diffs), "" if len(diffs) == 1 else "s"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
