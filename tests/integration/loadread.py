#!/usr/bin/env python3
"""loadread.py - many threads reading random files of soci-fuse mounts while
their layers stream in, checking every byte.

  loadread.py --threads N --timeout S --extra S MOUNT=STAGE0:STAGE1:... ...

Each MOUNT is a soci-fuse mount point; STAGEi is the directory holding what
MOUNT/layers/i must contain.  Every thread loops: pick a mount and a file of
one of its layers at random (seeded by thread number), then read it whole
and compare its SHA-256 with the staged file's (most operations), or pread a
random range and compare the bytes, or read MOUNT/status and parse it, or
list a layer directory.  Any error (ENOENT included: a lookup of an entry
that has not arrived yet must wait, not fail) or mismatch is recorded.

The main thread polls every status until all mounts are complete, lets the
readers run --extra seconds more, then stops them.  A read that takes longer
than --hang seconds, or a run longer than --timeout, is a deadlock: the
stuck operations are printed and the exit status is 3.  Prints a JSON
summary on stdout; exit 0 only when there was no error.
"""

import argparse
import hashlib
import json
import os
import random
import sys
import threading
import time

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--hang", type=float, default=180)
    ap.add_argument("--extra", type=float, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("mounts", nargs="+")
    a = ap.parse_args()

    mounts = []  # (mnt, [(layer, rel, stage_path)])
    for m in a.mounts:
        mnt, _, stages = m.partition("=")
        files = []
        for i, st in enumerate(stages.split(":")):
            for root, _dirs, names in os.walk(st):
                for n in names:
                    p = os.path.join(root, n)
                    if os.path.isfile(p) and not os.path.islink(p):
                        files.append((i, os.path.relpath(p, st), p))
        files.sort()
        mounts.append((mnt, files))

    want = {}
    want_lock = threading.Lock()

    def expected(stage_path):
        with want_lock:
            h = want.get(stage_path)
        if h is None:
            with open(stage_path, "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()
            with want_lock:
                want[stage_path] = h
        return h

    stop = threading.Event()
    lock = threading.Lock()
    stats = {"reads": 0, "bytes": 0, "ranges": 0, "status_reads": 0, "listdirs": 0,
             "errors": [], "max_op_s": 0.0}
    current = {}  # thread -> (start, description)

    def record_error(msg):
        with lock:
            if len(stats["errors"]) < 50:
                stats["errors"].append(msg)
            stats.setdefault("n_errors", 0)
            stats["n_errors"] = stats.get("n_errors", 0) + 1

    def reader(k):
        rnd = random.Random(a.seed * 1000 + k)
        while not stop.is_set():
            mnt, files = rnd.choice(mounts)
            layer, rel, stage = rnd.choice(files)
            path = os.path.join(mnt, "layers", str(layer), rel)
            r = rnd.random()
            t0 = time.time()
            try:
                if r < 0.05:
                    what = "status " + mnt
                    current[k] = (t0, what)
                    with open(os.path.join(mnt, "status")) as f:
                        json.load(f)
                    with lock:
                        stats["status_reads"] += 1
                elif r < 0.10:
                    d = os.path.dirname(path)
                    what = "listdir " + d
                    current[k] = (t0, what)
                    names = os.listdir(d)
                    if os.path.basename(path) not in names:
                        record_error("%s: %s missing" % (what, os.path.basename(path)))
                    with lock:
                        stats["listdirs"] += 1
                elif r < 0.30:
                    size = os.path.getsize(stage)
                    off = rnd.randrange(size) if size else 0
                    ln = rnd.randrange(1, 256 * 1024)
                    what = "pread %s [%d, +%d)" % (path, off, ln)
                    current[k] = (t0, what)
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        got = os.pread(fd, ln, off)
                    finally:
                        os.close(fd)
                    with open(stage, "rb") as f:
                        f.seek(off)
                        exp = f.read(ln)
                    if got != exp:
                        record_error("WRONG BYTES: %s: %d bytes read, %d expected" % (what, len(got), len(exp)))
                    with lock:
                        stats["ranges"] += 1
                        stats["bytes"] += len(got)
                else:
                    what = "read " + path
                    current[k] = (t0, what)
                    h = hashlib.sha256()
                    n = 0
                    with open(path, "rb") as f:
                        while True:
                            b = f.read(1 << 20)
                            if not b:
                                break
                            h.update(b)
                            n += len(b)
                    if h.hexdigest() != expected(stage):
                        record_error("WRONG BYTES: %s (%d bytes read, %d expected)" % (path, n, os.path.getsize(stage)))
                    with lock:
                        stats["reads"] += 1
                        stats["bytes"] += n
            except OSError as e:
                record_error("%s: %s" % (what, e))
            dt = time.time() - t0
            current.pop(k, None)
            with lock:
                stats["max_op_s"] = max(stats["max_op_s"], dt)

    def all_complete():
        done = {}
        for mnt, _ in mounts:
            try:
                with open(os.path.join(mnt, "status")) as f:
                    s = json.load(f)
            except (OSError, ValueError) as e:
                record_error("main: status of %s: %s" % (mnt, e))
                done[mnt] = False
                continue
            if any(l.get("state") == "failed" for l in s["layers"]):
                record_error("main: %s: a layer failed: %s" % (mnt, json.dumps(s)))
            done[mnt] = bool(s.get("complete"))
        return done

    t_start = time.time()
    threads = [threading.Thread(target=reader, args=(k,), daemon=True) for k in range(a.threads)]
    for t in threads:
        t.start()
    complete_at = {}
    deadlock = None
    t_all = None
    while True:
        now = time.time()
        for mnt, ok in all_complete().items():
            if ok and mnt not in complete_at:
                complete_at[mnt] = round(now - t_start, 2)
        if len(complete_at) == len(mounts) and t_all is None:
            t_all = now
        if t_all is not None and now - t_all >= a.extra:
            break
        if now - t_start > a.timeout:
            deadlock = "not all complete after %gs" % a.timeout
            break
        stuck = [(k, now - s, w) for k, (s, w) in list(current.items()) if now - s > a.hang]
        if stuck:
            deadlock = "operations stuck for more than %gs: %s" % (
                a.hang, "; ".join("thread %d: %s (%.0fs)" % x for x in stuck[:10]))
            break
        time.sleep(0.2)
    stop.set()
    if deadlock is None:
        for t in threads:
            t.join(a.hang)
            if t.is_alive():
                deadlock = "a reader did not finish its last operation within %gs" % a.hang
                break
    stats["seconds_to_complete"] = round((t_all or time.time()) - t_start, 2)
    stats["complete_at"] = complete_at
    stats["seconds_total"] = round(time.time() - t_start, 2)
    stats["max_op_s"] = round(stats["max_op_s"], 2)
    if deadlock:
        stats["deadlock"] = deadlock
    with lock:
        print(json.dumps(stats, indent=1))
    sys.stdout.flush()
    if deadlock:
        os._exit(3)
    sys.exit(1 if stats["errors"] else 0)

if __name__ == "__main__":
    main()
