#!/usr/bin/env python3
"""Writes the seed corpora of the ovlink fuzz targets (small, deterministic).

corpus/apply_layer/: layer tars (plain, gzip, zstd) with every entry type the applier
knows (files, dirs, symlinks, hardlinks, whiteouts, opaque dirs, fifos, devices, xattrs
via PAX, long names) and a few hostile ones. corpus/import/: tiny docker-save and OCI
archives built around those layers. Usage: seeds.py <fuzz dir>
"""
import gzip, hashlib, io, json, os, subprocess, sys, tarfile

def tar(entries, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.mode = e.get("mode", 0o644)
            ti.mtime = 1_600_000_000
            ti.linkname = e.get("link", "")
            ti.devmajor, ti.devminor = e.get("dev", (0, 0))
            if e.get("pax"):
                ti.pax_headers = e["pax"]
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()

F, D, L, H = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
base = [
    {"name": "etc/", "type": D, "mode": 0o755},
    {"name": "etc/passwd", "data": b"root:x:0:0:root:/root:/bin/sh\n"},
    {"name": "bin/", "type": D, "mode": 0o755},
    {"name": "bin/sh", "data": b"\x7fELF" + bytes(60), "mode": 0o755},
    {"name": "bin/ls", "type": H, "link": "bin/sh"},
    {"name": "usr/lib/libc.so", "data": b"libc" * 10},
    {"name": "lib", "type": L, "link": "usr/lib"},
    {"name": "tmp/", "type": D, "mode": 0o1777},
    {"name": "dev/null", "type": tarfile.CHRTYPE, "dev": (1, 3), "mode": 0o666},
    {"name": "run/fifo", "type": tarfile.FIFOTYPE},
    {"name": "usr/bin/su", "data": b"su", "mode": 0o4755},
]
child = [
    {"name": "etc/.wh.passwd"},
    {"name": "usr/.wh..wh..opq"},
    {"name": "usr/new", "data": b"new"},
    {"name": "etc/passwd2", "data": b"x", "pax": {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}},
    {"name": "a" * 120 + "/" + "b" * 120, "data": b"long"},
]
hostile = [
    [{"name": "../escape", "data": b"x"}],
    [{"name": "/abs", "data": b"x"}],
    [{"name": "up", "type": L, "link": ".."}, {"name": "up/x", "data": b"x"}],
    [{"name": "root", "type": L, "link": "/"}, {"name": "root/etc/x", "data": b"x"}],
    [{"name": "h", "type": H, "link": "../../etc/passwd"}],
    [{"name": "h", "type": H, "link": "notyet"}, {"name": "notyet", "data": b"x"}],
    [{"name": ".wh..."}], [{"name": ".wh."}],
    [{"name": "d", "type": L, "link": "/tmp"}, {"name": "d/.wh.x"}],
    [{"name": "d/", "type": D}, {"name": "d", "type": L, "link": "/"}, {"name": "d/x", "data": b"x"}],
]

def write(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)

def zstd(data):
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout

def sha(b):
    return hashlib.sha256(b).hexdigest()

def docker_save(layers):
    diff_ids = ["sha256:" + sha(l) for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": "seed"} for _ in layers]}).encode()
    cfg_name = sha(config) + ".json"
    members = [{"name": cfg_name, "data": config}]
    paths = []
    for i, l in enumerate(layers):
        d = sha(l)
        members.append({"name": d + "/", "type": D, "mode": 0o755})
        members.append({"name": d + "/layer.tar", "data": l})
        paths.append(d + "/layer.tar")
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": ["seed/img:latest"], "Layers": paths}]).encode()
    members.append({"name": "manifest.json", "data": manifest})
    return tar(members)

def oci(layers):
    blobs = []
    diff_ids = ["sha256:" + sha(l) for l in layers]
    gz = [gzip.compress(l, mtime=0) for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + sha(g), "size": len(g)} for g in gz]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + sha(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}).encode()
    members = [{"name": "oci-layout", "data": b'{"imageLayoutVersion":"1.0.0"}'},
               {"name": "index.json", "data": index},
               {"name": "blobs/", "type": D}, {"name": "blobs/sha256/", "type": D}]
    for b in [config, manifest] + gz:
        members.append({"name": "blobs/sha256/" + sha(b), "data": b})
    return tar(members)

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
ap = os.path.join(out, "corpus", "apply_layer")
im = os.path.join(out, "corpus", "import")
lb, lc = tar(base), tar(child, tarfile.PAX_FORMAT)
for n, data in [("base", lb), ("child-pax", lc), ("gnu", tar(child, tarfile.GNU_FORMAT))]:
    write(ap, n + ".tar", data)
write(ap, "base.tar.gz", gzip.compress(lb, mtime=0))
write(ap, "child.tar.zst", zstd(lc))
for i, h in enumerate(hostile):
    write(ap, "hostile-%02d.tar" % i, tar(h))
write(im, "docker-save-2.tar", docker_save([lb, lc]))
write(im, "docker-save-1.tar", docker_save([tar(base[:3])]))
write(im, "oci-gz.tar", oci([lb, lc]))
write(im, "docker-save-hostile.tar", docker_save([lb, tar(hostile[2])]))
