#!/usr/bin/env python3
"""benchlib.py - helpers of bench/run.sh (standard library only).

  benchlib.py weights OUT SIZE       weights-like file: deterministic
                                     pseudo-random bytes with a little
                                     structure (every other byte, the "high
                                     byte" of a bf16-ish value, takes only 128
                                     values), so gzip saves ~6%, no more.
  benchlib.py sources DIR N          N small deterministic C-like source
                                     files (200 B - 6 kB) in DIR/src/modNN/.
  benchlib.py pget URL_BASE OUTDIR CONNS CHUNK DIGEST...
                                     the SOCI parallel-pull strategy's
                                     download step: every blob cut in CHUNK
                                     byte ranges fetched by CONNS threads
                                     (single-range GETs, one keep-alive
                                     connection each) into OUTDIR/<hex>;
                                     prints "<hex> <seconds>" as each blob
                                     completes (so the caller can start its
                                     decompression at once).
  benchlib.py report RESULTS.json MD_OUT SVG_OUT
                                     medians table (stdout and markdown) and
                                     the SVG bar chart of pull time per method.

Everything here is deterministic: fixed seeds, fixed mtimes (set by
mkimage.py when it writes the tars).
"""

import http.client
import json
import os
import queue
import random
import statistics
import sys
import threading
import time
import urllib.parse

# ---------------------------------------------------------------- image data

HIGH = bytes((b & 0x7F) | 0x00 for b in range(256))  # 128 values


def cmd_weights(out, size):
    size = int(size)
    rng = random.Random(0x5EED)
    block = 4 << 20
    with open(out, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            b = bytearray(rng.randbytes(n))
            b[1::2] = b[1::2].translate(HIGH)
            f.write(b)
            left -= n


WORDS = ("static int void return struct const unsigned char size_t if else for while "
         "break continue switch case default goto sizeof uint64_t buf len err ret ctx "
         "node next prev head tail lock unlock free malloc memcpy memset strlen").split()


def cmd_sources(root, n):
    n = int(n)
    rng = random.Random(42)
    for i in range(n):
        d = os.path.join(root, "src", "mod%02d" % (i % 64))
        os.makedirs(d, exist_ok=True)
        lines = ["/* generated file %d */" % i, "#include <stdio.h>", ""]
        target = rng.randint(200, 6000)
        size = sum(len(x) + 1 for x in lines)
        while size < target:
            ln = "\t" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + ";"
            lines.append(ln)
            size += len(ln) + 1
        with open(os.path.join(d, "file%05d.c" % i), "w") as f:
            f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- pget

def cmd_pget(base, outdir, conns, chunk, *digests):
    conns, chunk = int(conns), int(chunk)
    u = urllib.parse.urlsplit(base)
    sizes = {}
    c = http.client.HTTPConnection(u.hostname, u.port)
    for d in digests:
        c.request("HEAD", "%s/blobs/%s" % (u.path, d))
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("pget: HEAD %s: HTTP %d" % (d, r.status))
        sizes[d] = int(r.getheader("Content-Length"))
    c.close()
    work = queue.Queue()
    left = {}
    fds = {}
    lock = threading.Lock()
    t0 = time.monotonic()
    # chunks in blob order, round-robin over blobs (as soci's parallel pull
    # fetches every layer at once)
    per_blob = {d: [(d, o, min(chunk, sizes[d] - o)) for o in range(0, sizes[d], chunk)]
                for d in digests}
    for d in digests:
        left[d] = len(per_blob[d])
        fds[d] = os.open(os.path.join(outdir, d.split(":")[1]),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    i = 0
    while any(per_blob.values()):
        for d in digests:
            if per_blob[d]:
                work.put(per_blob[d].pop(0))
        i += 1
    errors = []

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        while True:
            try:
                d, off, n = work.get_nowait()
            except queue.Empty:
                break
            try:
                conn.request("GET", "%s/blobs/%s" % (u.path, d),
                             headers={"Range": "bytes=%d-%d" % (off, off + n - 1)})
                r = conn.getresponse()
                if r.status != 206:
                    raise RuntimeError("HTTP %d" % r.status)
                pos = off
                while True:
                    b = r.read(1 << 20)
                    if not b:
                        break
                    os.pwrite(fds[d], b, pos)
                    pos += len(b)
                if pos != off + n:
                    raise RuntimeError("short body")
            except Exception as e:  # noqa: BLE001 - reported, bench fails
                errors.append("%s@%d: %s" % (d, off, e))
                return
            with lock:
                left[d] -= 1
                if left[d] == 0:
                    os.close(fds[d])
                    print("%s %.3f" % (d.split(":")[1], time.monotonic() - t0), flush=True)

    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        sys.exit("pget: " + "; ".join(errors[:3]))


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "s":
        return "%.2f s" % v
    if unit == "MiB":
        return "%.0f MiB" % v
    if unit == "MB/s":
        return "%.0f MB/s" % v
    return "%.3g" % v


def svg_chart(rows, title):
    """rows: [(label, seconds)] -> SVG text: horizontal bars."""
    w, lh, left, right, top = 760, 26, 230, 90, 40
    h = top + lh * len(rows) + 30
    vmax = max(v for _l, v in rows if v) or 1
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="13">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (left, title)]
    colors = {"soci-fuse": "#2a7ab0", "limit": "#999999", "floor": "#999999"}
    for i, (label, v) in enumerate(rows):
        y = top + i * lh
        bw = 0 if not v else (w - left - right) * v / vmax
        col = next((c for k, c in colors.items() if label.startswith(k)), "#e0913a")
        out.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (left - 8, y + 17, label))
        out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>'
                   % (left, y + 4, bw, lh - 8, col))
        out.append('<text x="%.1f" y="%d">%s</text>' % (left + bw + 6, y + 17,
                                                        "n/a" if v is None else "%.1f s" % v))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cmd_report(results, md_out, svg_out):
    with open(results) as f:
        r = json.load(f)
    lines = []
    meta = r["meta"]
    runs = r["runs"]

    def m(key):
        return med([run.get(key) for run in runs])

    def section(title):
        lines.append("")
        lines.append("### " + title)
        lines.append("")

    section("Full pull of the benchmark image (cold cache, median of %d runs)" % len(runs))
    lines.append("| variant | method | wall | vs soci-fuse | user+sys CPU |")
    lines.append("| --- | --- | ---: | ---: | ---: |")
    chart = []
    for var in meta["variants"]:
        sf = m("%s.soci-fuse.wall" % var)
        for method in meta["methods"]:
            k = "%s.%s" % (var, method)
            wall, cpu = m(k + ".wall"), m(k + ".cpu")
            if wall is None and cpu is None:
                continue
            ratio = "%.2fx" % (wall / sf) if wall and sf else "n/a"
            lines.append("| %s | %s | %s | %s | %s |" % (var, method, fmt(wall, "s"), ratio,
                                                       fmt(cpu, "s")))
            chart.append(("%s (%s)" % (method, var), wall))
        nl, cf = m("%s.network_limit" % var), m("%s.cpu_floor" % var)
        lines.append("| %s | limit: bytes / (connections x rate) | %s | %s | |"
                     % (var, fmt(nl, "s"), "%.2fx" % (nl / sf) if nl and sf else "n/a"))
        lines.append("| %s | floor: inflate + SHA-256 of both streams (CPU) | %s | %s | %s |"
                     % (var, fmt(cf, "s"), "%.2fx" % (cf / sf) if cf and sf else "n/a",
                        fmt(m("%s.cpu_floor_cpu" % var), "s")))
        chart.append(("limit (%s)" % var, nl))
        chart.append(("floor (%s)" % var, cf))
        if sf and nl and cf:
            lines.append("")
            pw = m("%s.podman.wall" % var)
            lines.append("%s: soci-fuse / max(limit, floor) = **%.2fx** (target <= 1.3x); "
                         "soci-fuse / podman = **%s** (target <= 0.10x)"
                         % (var, sf / max(nl, cf), "%.3fx" % (sf / pw) if pw else "n/a"))
            lines.append("")

    section("soci-fuse mount and cache (gzip variant)")
    lines.append("| measure | soci-fuse | reference | ratio | target |")
    lines.append("| --- | ---: | ---: | ---: | --- |")
    items = [
        ("mount -> `ls <mnt>/layers/<i>` of the small top layer", "mount.listable", None, "s",
         "< 0.5 s"),
        ("mount -> file in the first MiB of the big layer read", "mount.first_mib", None, "s",
         "< 1 s"),
        ("peak RSS of `soci-fuse pull`", "gzip.soci-fuse.rss", None, "MiB", "<= 100 MiB"),
        ("peak RSS of the mount daemon", "mount.rss", None, "MiB", "<= 100 MiB"),
        ("sequential read of the big file, cold page cache: FUSE vs backing data",
         "read.fuse", "read.backing", "MB/s", ">= 0.8x"),
        ("`find -ls` of the small-files layer (warm): FUSE vs ext4", "find.fuse", "find.ext4",
         "s", "<= 1.5x"),
    ]
    for label, a, b, unit, target in items:
        va, vb = m(a), (m(b) if b else None)
        ratio = "%.2fx" % (va / vb) if va and vb else ""
        lines.append("| %s | %s | %s | %s | %s |" % (label, fmt(va, unit),
                                                     fmt(vb, unit) if b else "", ratio, target))
    text = "\n".join(lines) + "\n"
    if md_out == "-":
        sys.stdout.write(text)
    else:
        with open(md_out, "w") as f:
            f.write(text)
    with open(svg_out, "w") as f:
        f.write(svg_chart(chart, "pull time per method (median, s; shorter is better)"))


def main():
    cmds = {"weights": cmd_weights, "sources": cmd_sources, "pget": cmd_pget,
            "report": cmd_report}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
