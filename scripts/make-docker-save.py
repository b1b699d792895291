#!/usr/bin/env python3
"""Builds a multi-layer `docker save` tarball from directories, for benchmarks.

    make-docker-save.py OUT NAME:TAG LAYER...      LAYER = SRC_DIR[=DEST_IN_IMAGE][,wh=PATH...]

Each LAYER becomes one layer tar: the tree SRC_DIR placed at DEST_IN_IMAGE (default `/`), plus
`.wh.` whiteouts for the given paths. Owners, modes, times, symlinks and hardlinks are kept
(Python's tarfile, PAX format). Writes manifest.json, the config (diff ids in rootfs) and
<id>/layer.tar, as `docker save` does; `docker load` and `ovlink image import` accept it.
"""
import hashlib, io, json, os, sys, tarfile, tempfile

def layer_tar(path, src, dest, whiteouts):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        dest = dest.strip("/")
        parts = dest.split("/") if dest else []
        for i in range(len(parts)):  # parent directories of DEST
            ti = tarfile.TarInfo("/".join(parts[: i + 1]))
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            t.addfile(ti)
        for root, dirs, files in os.walk(src):
            dirs.sort(); files.sort()
            rel = os.path.relpath(root, src)
            for n in dirs + files:
                p = os.path.join(root, n)
                r = os.path.normpath(os.path.join(dest, os.path.relpath(p, src)))
                if r == ".":
                    continue
                ti = t.gettarinfo(p, arcname=r)
                if ti is None:  # sockets
                    continue
                if ti.isreg():
                    with open(p, "rb") as f:
                        t.addfile(ti, f)
                else:
                    t.addfile(ti)
            # walk symlinked dirs as links only
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for w in whiteouts:
            d, b = os.path.split(w.strip("/"))
            ti = tarfile.TarInfo(os.path.join(d, ".wh." + b))
            ti.mtime = 1700000000
            t.addfile(ti)

def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()

def main():
    out, name, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    work = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)))
    diff_ids, members = [], []
    for i, spec in enumerate(specs):
        head, *opts = spec.split(",")
        src, _, dest = head.partition("=")
        wh = [o[3:] for o in opts if o.startswith("wh=")]
        p = os.path.join(work, f"l{i}.tar")
        layer_tar(p, src, dest or "/", wh)
        h = sha(p)
        diff_ids.append("sha256:" + h)
        members.append((p, h))
        print(f"layer {i + 1}: {src} -> {dest or '/'}: {os.path.getsize(p)} bytes", file=sys.stderr)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": s} for s in specs],
    }, separators=(",", ":")).encode()
    cid = hashlib.sha256(config).hexdigest()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        def add(name, data=None, path=None):
            if path:
                t.add(path, arcname=name)
            else:
                ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000
                t.addfile(ti, io.BytesIO(data))
        layers = []
        for p, h in members:
            add(f"{h}/layer.tar", path=p)
            layers.append(f"{h}/layer.tar")
            os.unlink(p)
        add(f"{cid}.json", config)
        add("manifest.json", json.dumps([{"Config": f"{cid}.json", "RepoTags": [name], "Layers": layers}]).encode())
    os.rmdir(work)
    print(f"{out}: image sha256:{cid}, {len(specs)} layers", file=sys.stderr)

main()
