#!/usr/bin/env python3
"""Power-loss replay: rebuilds a recorded disk at its flush points and checks ovlink's promises.

    powerloss.py check DIR --fs ext4|xfs --layout overlay|overlay2 --workload NAME --ovlink BIN
                       [--max-states N] [--subsets K] [--seed S] [--json OUT]

DIR is what `scripts/vm.sh --record DIR --workload NAME` left: initial.img (the fresh disk),
home.log (QEMU blklogwrites' log of every write, flush and discard the guest sent, in the
dm-log-writes format of the kernel's Documentation/admin-guide/device-mapper/log-writes.rst),
home.img (the disk after the guest) and inputs/ (the workload's archives).

1. The reference: the same workload (scripts/vm/scenario.sh) runs on this host in a private
   directory with BIN; after each command's marker the layers it holds are recorded (a digest of
   every layer tree: names, types, modes, owners, sizes, contents, link targets, devices,
   xattrs).
2. The log is replayed onto a copy of initial.img; replaying all of it must give home.img byte
   for byte. The states checked: the disk at each flush (everything written before a flush is
   durable, nothing after it; spread evenly when there are more than --max-states), and for
   --subsets of the gaps between two flushes, a seeded random subset of the writes of that gap
   on top of the earlier flush (a disk may keep any of the writes it was not asked to flush).
3. Each state is loop-mounted here (the journal replays, as at a reboot) and opened by BIN,
   whose init runs ovlink's recovery; then every invariant must hold:
   - `layer ls`, `image ls` and `status` work;
   - no half layer: every image layer listed is byte for byte a layer of the reference (its id
     is content-addressed; a committed layer is compared with the reference's commit);
   - the image store names only complete layers;
   - nothing reported is lost: the markers present form a prefix 1..k, and what commands 1..k
     reported is there (an imported image with exactly its layers, an applied layer, a
     committed image) or gone (a removed layer), the command under way after marker k
     excepted. The guest writes marker N after command N returned, straight to the disk past
     the filesystem (O_DIRECT, then a cache flush), so the marker commits nothing of the
     filesystem's: what it finds durable, ovlink made durable;
   - a container can be created, mounted and removed on every image present;
   - the workload's first import, run again as a user would, completes the image, and no
     temporary is left (home, layer directories, the image store).

Exits 0 when every state holds, 1 otherwise (each violation printed with its state).
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time

MAGIC = 0x6A736677736872
MARK_BASE = 352 * 256  # the guest's markers: 4 KiB blocks past the filesystem (scripts/vm.sh)
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8
HERE = os.path.dirname(os.path.abspath(__file__))


def read_log(path):
    """(sector size, entries the superblock counts, [(offset, length, flags, data offset)])."""
    with open(path, "rb") as f:
        sb = f.read(32)
        if len(sb) < 28:
            sys.exit(f"powerloss: {path}: no log superblock (the guest wrote nothing?)")
        magic, version, nr, ssz = struct.unpack_from("<QQQI", sb)
        if magic != MAGIC or version != 1:
            sys.exit(f"powerloss: {path}: not a dm-log-writes log (magic {magic:#x}, version {version})")
        size = os.fstat(f.fileno()).st_size
        pos, entries = ssz, []
        # The superblock counts the entries up to the last flush; writes after it follow.
        while pos + ssz <= size:
            f.seek(pos)
            sector, nsec, flags, _ = struct.unpack("<QQQQ", f.read(32))
            if flags & ~(FLUSH | FUA | DISCARD | MARK):
                break
            if len(entries) >= nr and sector == nsec == flags == 0:
                break
            data = pos + ssz
            entries.append((sector * ssz, nsec * ssz, flags, data))
            pos = data + (0 if flags & DISCARD else nsec * ssz)
        return ssz, nr, entries


def apply(img, log, entries):
    """Writes `entries` (a discard as zeros) from the open `log` into the open `img`."""
    for off, length, flags, data in entries:
        if flags & FLUSH and length == 0:
            continue
        if flags & DISCARD:
            img.seek(off)
            img.write(b"\0" * length)
            continue
        log.seek(data)
        img.seek(off)
        img.write(log.read(length))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# overlayfs's own bookkeeping on an upper dir (copy-up origin, impure dirs, hardlink counts,
# ...): what the kernel, not the workload, writes, and it differs between the guest's kernel
# and the host's. A whiteout, an opaque dir and every file's content still count.
KERNEL_XATTRS = {"trusted.overlay.origin", "trusted.overlay.impure", "trusted.overlay.nlink",
                 "trusted.overlay.upper", "trusted.overlay.uuid", "trusted.overlay.metacopy",
                 "trusted.overlay.protattr"}


def tree_digest(d):
    """One digest of a layer tree: everything but inode numbers, link counts and times."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames.sort()
        names = sorted(dirnames + filenames)
        if dirpath == d:
            names = ["."] + names
        for n in names:
            p = os.path.normpath(os.path.join(dirpath, n))
            st = os.lstat(p)
            e = [os.path.relpath(p, d), stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISREG(st.st_mode):
                e += [st.st_size, sha256_file(p)]
            elif stat.S_ISLNK(st.st_mode):
                e.append(os.readlink(p))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e += [os.major(st.st_rdev), os.minor(st.st_rdev)]
            xs = []
            for k in sorted(os.listxattr(p, follow_symlinks=False)):
                if k in KERNEL_XATTRS:
                    continue
                try:
                    xs.append([k, os.getxattr(p, k, follow_symlinks=False).hex()])
                except OSError:
                    xs.append([k, "?"])
            e.append(xs)
            out.append(e)
    return hashlib.sha256(json.dumps(out).encode()).hexdigest()


def ovlink(binary, root, layout, *args):
    r = subprocess.run([binary, "--root", root, "--driver", layout, *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def layer_dir(root, layout, lid):
    sub = "diff" if layout == "overlay2" else "root"
    return os.path.join(root, layout, lid, sub)


def snapshot(binary, root, layout):
    """{layers: {id: [kind, digest]}, images: {name: [ids]}} of a home, or an error string."""
    rc, out, err = ovlink(binary, root, layout, "layer", "ls", "--json")
    if rc != 0:
        return f"layer ls failed: {err.strip()}"
    layers = {}
    for l in json.loads(out):
        digest = None
        if l["kind"] == "image":
            digest = tree_digest(layer_dir(root, layout, l["id"]))
        layers[l["id"]] = [l["kind"], digest]
    rc, out, err = ovlink(binary, root, layout, "image", "ls", "--json")
    if rc != 0:
        return f"image ls failed: {err.strip()}"
    images = {i["name"]: i["layers"] for i in json.loads(out)}
    return {"layers": layers, "images": images}


def reference(args, inputs):
    """Runs the workload here and records the home after each marker."""
    ref = tempfile.mkdtemp(prefix="ovlink-powerloss-ref-")
    steps = {}
    hook = os.path.join(ref, "hook.sh")
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\n{sys.executable} {os.path.abspath(__file__)} _snap {ref} {args.layout} "
                f"{os.path.abspath(args.ovlink)} \"$1\"\n")
    os.chmod(hook, 0o755)
    env = dict(os.environ, OVLINK=os.path.abspath(args.ovlink), MARK_HOOK=hook, TMPDIR=ref)
    r = subprocess.run(["sh", os.path.join(HERE, "vm", "scenario.sh"), "workload", args.workload, args.layout,
                        os.path.join(ref, "home"), inputs], env=env, capture_output=True, text=True)
    try:
        if r.returncode != 0:
            sys.exit(f"powerloss: the reference run of workload {args.workload} failed: {r.stdout}{r.stderr}")
        for n in sorted(os.listdir(os.path.join(ref, "snaps")), key=int):
            with open(os.path.join(ref, "snaps", n)) as f:
                steps[int(n)] = json.load(f)
            # A step without a marker is a state a command reported on the way (dockerd's
            # Create before its ApplyDiff: an empty layer Docker asked for), recorded with
            # `between` at INTERMEDIATE + i: its layers are legitimate states, nothing more.
            marker = os.path.join(ref, "home", "markers", n)
            if os.path.exists(marker):
                with open(marker) as f:
                    steps[int(n)]["marker"] = f.read().split()
            elif int(n) < INTERMEDIATE:
                sys.exit(f"powerloss: the reference run recorded step {n} without its marker")
    finally:
        subprocess.run(["umount", "-R", os.path.join(ref, "home")], capture_output=True)
        for m in reversed(mounts_under(ref)):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(ref, ignore_errors=True)
    return steps


def mounts_under(d):
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if l.split()[4].startswith(d + "/")]


# Steps numbered from here are the reference's intermediate states (scenario.sh `between`).
INTERMEDIATE = 1000


def known_digests(steps):
    """Every complete tree the reference had: by id, and the committed images' top layers."""
    by_id, committed = {}, set()
    for s in steps.values():
        s = {"layers": s["layers"], "images": s["images"]}
        for lid, (kind, digest) in s["layers"].items():
            if kind == "image":
                by_id.setdefault(lid, set()).add(digest)
        for name, ids in s["images"].items():
            if ids and "commit" in name:
                committed.add(s["layers"][ids[-1]][1])
    return by_id, committed


def raw_markers(img):
    """The markers the guest wrote past the filesystem: {N: words}."""
    out = {}
    with open(img, "rb") as f:
        for n in range(1, 64):
            f.seek((MARK_BASE + n) * 4096)
            words = f.read(4096).split(b"\n", 1)[0].decode(errors="replace").split()
            if len(words) >= 2 and words[0] == "OVLMARK" and words[1] == str(n):
                out[n] = words[2:]
    return out


def check_state(args, img, steps, label):
    """The violations of one replayed state (an empty list: it holds)."""
    bad = []
    markers = raw_markers(img)
    mnt = tempfile.mkdtemp(prefix="ovlink-powerloss-mnt-")
    opts = "loop,nouuid" if args.fs == "xfs" else "loop"
    r = subprocess.run(["mount", "-t", args.fs, "-o", opts, img, mnt], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(mnt)
        return [f"{label}: the filesystem does not mount: {r.stderr.strip()}"]
    try:
        bad += check_mounted(args, mnt, steps, label, markers)
    finally:
        for m in reversed(mounts_under(mnt)):
            subprocess.run(["umount", m], capture_output=True)
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            time.sleep(0.2)
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        os.rmdir(mnt)
    return bad


def check_mounted(args, mnt, steps, label, markers):
    bad = []
    root = os.path.join(mnt, "root")
    present = sorted(markers)
    if present != list(range(1, len(present) + 1)):
        bad.append(f"{label}: markers {present} are not a prefix: a later command's marker without an earlier one's")
    if not os.path.isdir(os.path.join(root, args.layout)):
        if present:
            bad.append(f"{label}: marker {present[-1]} present but no home")
        return bad
    if args.workload == "snapshot":
        return bad + check_snapshots(args, root, steps, label, markers)
    snap = snapshot(args.ovlink, root, args.layout)
    if isinstance(snap, str):
        return bad + [f"{label}: {snap}"]
    rc, _, err = ovlink(args.ovlink, root, args.layout, "status")
    if rc != 0:
        bad.append(f"{label}: status failed: {err.strip()}")
    by_id, committed = known_digests(steps)
    for lid, (kind, digest) in snap["layers"].items():
        if kind not in ("image", "container"):
            bad.append(f"{label}: layer {lid} is listed as {kind}")
        elif kind == "image":
            ok = digest in by_id.get(lid, set()) or (lid not in by_id and digest in committed)
            if not ok:
                bad.append(f"{label}: half layer visible: image layer {lid} is no layer of the reference")
    for name, ids in snap["images"].items():
        for lid in ids:
            if snap["layers"].get(lid, [None])[0] != "image":
                bad.append(f"{label}: image {name} names layer {lid}, which is not a complete image layer")
    # What the commands of markers 1..k reported, the later ones overriding (a layer applied,
    # then removed, must be gone).
    images, layers = {}, {}
    for n in present:
        words = markers[n]
        what = f"marker {n} ({' '.join(words)})"
        if words[0] == "import":
            images[words[1]] = (words[2:], what)
            for lid in words[2:]:
                layers[lid] = (True, what)
        elif words[0] == "layer":
            layers[words[1]] = (True, what)
        elif words[0] == "commit":
            images[words[1]] = (None, what)
        elif words[0] == "rm":
            layers[words[1]] = (False, what)
    # The command after the last marker may have been under way: what it changes may be in
    # its state before or after.
    k = present[-1] if present else 0
    nxt = steps.get(k + 1, {}).get("marker", [])
    for name in nxt[1:]:
        images.pop(name, None)
        layers.pop(name, None)
    for name, (ids, what) in images.items():
        if name not in snap["images"] or (ids is not None and snap["images"][name] != ids):
            bad.append(f"{label}: {what} but the image is {snap['images'].get(name)}")
    for lid, (there, what) in layers.items():
        if there and snap["layers"].get(lid, [None])[0] != "image":
            bad.append(f"{label}: {what} but the layer is not there complete")
        if not there and lid in snap["layers"]:
            bad.append(f"{label}: {what} but the layer is still listed")
    # The user's next step after the power cut: the workload's first import run again must
    # complete the image (its layers those of the reference) ...
    first = steps.get(1, {}).get("marker", [])
    archive = {"ovlink/gen:demo": "gen.tar", "fx:layers": "fx-layers.tar", "ovlink/large:1": "large.tar"}
    if first[:1] == ["import"] and first[1] in archive:
        src = os.path.join(args.dir, "inputs", archive[first[1]])
        rc, out, err = ovlink(args.ovlink, root, args.layout, "image", "import", src)
        if rc != 0:
            bad.append(f"{label}: importing {first[1]} again failed: {err.strip()}")
        elif out.split() != first[2:]:
            bad.append(f"{label}: importing {first[1]} again made {out.split()}, not {first[2:]}")
        else:
            again = snapshot(args.ovlink, root, args.layout)
            for lid in first[2:]:
                got = again["layers"].get(lid, [None, None])[1] if isinstance(again, dict) else None
                if got not in by_id.get(lid, set()):
                    bad.append(f"{label}: after importing {first[1]} again, layer {lid} is not the reference's")
    # ... and recovery (every init, the store's open) left no temporary file or tree behind.
    home = os.path.join(root, args.layout)
    left = [n for n in os.listdir(home) if n.startswith(".tmp-")]
    for lid in os.listdir(home):
        d = os.path.join(home, lid)
        if len(lid) == 64 and os.path.isdir(d):
            left += [f"{lid}/{n}" for n in os.listdir(d) if n.startswith(("tmproot", ".tmp-"))]
    store = [os.path.join(root, d) for d in ("images", "configs", "containers", "layers")]
    store += [os.path.join(root, "images", d) for d in ("overlay", "overlay2")]
    for d in store:
        if os.path.isdir(d):
            left += [os.path.join(os.path.relpath(d, root), n) for n in os.listdir(d) if n.startswith(".tmp-")]
    if left:
        bad.append(f"{label}: temporaries left after recovery: {left[:5]}")
    for name in snap["images"]:
        cname = "powerloss-check"
        rc, cid, err = ovlink(args.ovlink, root, args.layout, "container", "create", cname, "--image", name)
        if rc != 0:
            bad.append(f"{label}: container create on {name} failed: {err.strip()}")
            continue
        for cmd in (["mount", cid.strip()], ["umount", cid.strip()], ["container", "rm", cname]):
            rc, _, err = ovlink(args.ovlink, root, args.layout, *cmd)
            if rc != 0:
                bad.append(f"{label}: {' '.join(cmd)} on {name} failed: {err.strip()}")
                break
    return bad


def check_snapshots(args, root, steps, label, markers):
    """The snapshotter's home: its server starts on the state (its recovery runs) and serves;
    every committed snapshot is the reference's snapshot of that name, file for file; every
    snapshot a marker reported committed is there."""
    bad = []
    sock = os.path.join(tempfile.mkdtemp(prefix="ovlink-powerloss-snap-"), "s.sock")
    p = subprocess.Popen([args.ovlink, "--root", root, "--driver", args.layout, "snapshotter", "serve",
                          "--socket", sock], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    served = False
    try:
        for _ in range(300):
            if p.poll() is not None:
                break
            r = subprocess.run([args.ovlink, "snapshotter", "call", "--socket", sock, "list"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                served = True
                break
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.terminate()
        err = p.communicate(timeout=60)[1]
        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)
    if not served:
        return [f"{label}: the snapshotter did not serve on this state: {err.strip()[-500:]}"]
    rc, out, err = ovlink(args.ovlink, root, args.layout, "snapshotter", "ls", "--json")
    if rc != 0:
        return [f"{label}: snapshotter ls failed: {err.strip()}"]
    recs = {r["key"]: r for r in json.loads(out)}
    want = {}
    for n, st in steps.items():
        words = st.get("marker", [])
        if n < INTERMEDIATE and words[:1] == ["snapshot"]:
            want[words[1]] = st["layers"].get(words[2], [None, None])[1]
    for key, r in recs.items():
        if r["kind"] != "committed":
            continue
        d = os.path.join(root, args.layout, r["layer"] or "")
        got = tree_digest(layer_dir(root, args.layout, r["layer"])) if r["layer"] and os.path.isdir(d) else None
        if got is None or got != want.get(key):
            bad.append(f"{label}: half snapshot visible: committed {key} (layer {r['layer']}) is not the reference's")
    for k in sorted(markers):
        words = markers[k]
        if words[:1] == ["snapshot"] and recs.get(words[1], {}).get("kind") != "committed":
            bad.append(f"{label}: marker {k} ({' '.join(words)}) but {words[1]} is {recs.get(words[1])}")
    home = os.path.join(root, args.layout)
    left = [n for n in os.listdir(home) if n.startswith(".tmp-")]
    if left:
        bad.append(f"{label}: temporaries left after recovery: {left[:5]}")
    return bad


def check(args):
    rec = args.dir
    inputs = os.path.join(rec, "inputs")
    t0 = time.time()
    steps = reference(args, inputs)
    ssz, nr, entries = read_log(os.path.join(rec, "home.log"))
    flushes = [i for i, e in enumerate(entries) if e[2] & FLUSH]
    work = tempfile.mkdtemp(prefix="ovlink-powerloss-", dir=args.tmp)
    base = os.path.join(work, "replay.img")
    shutil.copyfile(os.path.join(rec, "initial.img"), base)
    # Which flush states and which gaps to check.
    pick = flushes
    if len(pick) > args.max_states:
        step = len(flushes) / args.max_states
        pick = sorted({flushes[int(k * step)] for k in range(args.max_states)} | {flushes[-1]})
    rng = random.Random(args.seed)
    gaps = [k for k in range(len(flushes) - 1) if flushes[k + 1] - flushes[k] > 2]
    subset_gaps = set(rng.sample(gaps, min(args.subsets, len(gaps))))
    states, bad = 0, []
    done = 0
    with open(base, "r+b") as img, open(os.path.join(rec, "home.log"), "rb") as log:
        for k, fi in enumerate(flushes):
            apply(img, log, entries[done : fi + 1])
            done = fi + 1
            if fi in pick or k in subset_gaps:
                img.flush()
            if fi in pick:
                st = os.path.join(work, "state.img")
                subprocess.run(["cp", "--sparse=always", base, st], check=True)
                bad += check_state(args, st, steps, f"flush {k + 1}/{len(flushes)} (entry {fi})")
                states += 1
                os.unlink(st)
            if k in subset_gaps:
                gap = [e for e in entries[fi + 1 : flushes[k + 1]] if not e[2] & FLUSH]
                chosen = sorted(rng.sample(range(len(gap)), rng.randint(1, max(1, len(gap) - 1))))
                st = os.path.join(work, "state.img")
                subprocess.run(["cp", "--sparse=always", base, st], check=True)
                with open(st, "r+b") as s:
                    apply(s, log, [gap[i] for i in chosen])
                bad += check_state(args, st, steps, f"after flush {k + 1}: {len(chosen)} of the {len(gap)} unflushed writes")
                states += 1
                os.unlink(st)
        apply(img, log, entries[done:])
    whole = sha256_file(base) == sha256_file(os.path.join(rec, "home.img"))
    shutil.rmtree(work, ignore_errors=True)
    if not whole:
        bad.append("replaying the whole log onto initial.img does not give home.img: the log or the replay is wrong")
    result = {
        "workload": args.workload, "fs": args.fs, "layout": args.layout,
        "entries": len(entries), "superblock_entries": nr, "flushes": len(flushes),
        "states_checked": states, "markers": sum(1 for n in steps if n < INTERMEDIATE), "replay_equals_final": whole,
        "violations": bad, "seconds": round(time.time() - t0, 1),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(f"powerloss: {args.workload} on {args.fs}, {args.layout}: {len(entries)} log entries, "
          f"{len(flushes)} flushes, {states} states checked, {sum(1 for n in steps if n < INTERMEDIATE)} markers, "
          f"whole replay == final disk: {whole}, {len(bad)} violations, {result['seconds']} s")
    for b in bad[:40]:
        print(f"  VIOLATION {b}")
    return 1 if bad else 0


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "_snap":  # the reference run's marker hook
        _, _, ref, layout, binary, n = sys.argv
        snap = snapshot(binary, os.path.join(ref, "home", "root"), layout)
        if isinstance(snap, str):
            sys.exit(f"powerloss: reference snapshot {n}: {snap}")
        os.makedirs(os.path.join(ref, "snaps"), exist_ok=True)
        with open(os.path.join(ref, "snaps", n), "w") as f:
            json.dump(snap, f)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="replay DIR's log and check every state")
    c.add_argument("dir")
    c.add_argument("--fs", required=True, choices=["ext4", "xfs"])
    c.add_argument("--layout", required=True, choices=["overlay", "overlay2"])
    c.add_argument("--workload", required=True)
    c.add_argument("--ovlink", required=True, help="the ovlink binary (the guest's, static)")
    c.add_argument("--max-states", type=int, default=40, help="flush states at most (spread evenly)")
    c.add_argument("--subsets", type=int, default=8, help="gaps between flushes checked with a random subset of their writes")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--tmp", default=None, help="where the state images go (default: the temporary directory)")
    c.add_argument("--json", help="write the result as JSON to this file")
    return check(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
