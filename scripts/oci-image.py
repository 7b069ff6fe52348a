#!/usr/bin/env python3
"""Writes an OCI image archive (an OCI image layout in a tar, what `ctr images import` and
`docker load` read) from files on this machine, with no registry and no container tool.

One layer, built from --file, --dir and --symlink entries; the image config sets the user, the
entrypoint and the command. Deterministic: every mtime is 0 and entries are sorted, so the same
inputs give the same digests.

  oci-image.py --name ghcr.io/hookguard/hookguard:0.1.0 --out hookguard.oci.tar \\
      --file target/.../hookguard:/usr/local/bin/hookguard:0755 \\
      --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644 \\
      --user 65532:65532 --entrypoint /usr/local/bin/hookguard --cmd serve

Standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import sys
import tarfile


def tar_bytes(entries):
    """A tar of `entries` (path -> TarInfo, data) in path order, mtimes 0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            info, data = entries[path]
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def add_parents(entries, path, uid=0, gid=0):
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in entries:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.uid, info.gid = uid, gid
            entries[d] = (info, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="image name with tag, e.g. registry/repo:tag")
    ap.add_argument("--out", required=True)
    ap.add_argument("--file", action="append", default=[], help="SRC:DEST:MODE (octal)")
    ap.add_argument("--dir", action="append", default=[], help="DEST:MODE:UID:GID")
    ap.add_argument("--symlink", action="append", default=[], help="DEST:TARGET")
    ap.add_argument("--user", default="")
    ap.add_argument("--entrypoint", action="append", default=[])
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("--env", action="append", default=["PATH=/usr/local/bin:/usr/bin:/bin"])
    args = ap.parse_args()

    entries = {}
    for spec in args.file:
        src, dest, mode = spec.rsplit(":", 2)
        with open(src, "rb") as f:
            data = f.read()
        dest = dest.lstrip("/")
        add_parents(entries, dest)
        info = tarfile.TarInfo(dest)
        info.size = len(data)
        info.mode = int(mode, 8)
        entries[dest] = (info, data)
    for spec in args.dir:
        dest, mode, uid, gid = spec.split(":")
        dest = dest.strip("/")
        add_parents(entries, dest + "/x")
        info = tarfile.TarInfo(dest)
        info.type = tarfile.DIRTYPE
        info.mode = int(mode, 8)
        info.uid, info.gid = int(uid), int(gid)
        entries[dest] = (info, None)
    for spec in args.symlink:
        dest, target = spec.split(":", 1)
        dest = dest.lstrip("/")
        add_parents(entries, dest)
        info = tarfile.TarInfo(dest)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        entries[dest] = (info, None)

    layer = tar_bytes(entries)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    layer_gz = gzip.compress(layer, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Env": args.env,
            "Entrypoint": args.entrypoint or None,
            "Cmd": args.cmd or None,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "scripts/oci-image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()

    def blob(data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return {"mediaType": media_type, "digest": digest, "size": len(data)}, data

    layer_desc, _ = blob(layer_gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    config_desc, _ = blob(config_bytes, "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_desc, _ = blob(manifest_bytes, "application/vnd.oci.image.manifest.v1+json")
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    manifest_desc["annotations"] = {
        "io.containerd.image.name": args.name,
        "org.opencontainers.image.ref.name": tag,
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_desc],
    }
    # docker load reads manifest.json (a Docker archive's) next to the OCI layout.
    docker_manifest = [{
        "Config": "blobs/sha256/" + config_desc["digest"].split(":")[1],
        "RepoTags": [args.name],
        "Layers": ["blobs/sha256/" + layer_desc["digest"].split(":")[1]],
    }]
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
        "manifest.json": json.dumps(docker_manifest).encode(),
    }
    for desc, data in [(layer_desc, layer_gz), (config_desc, config_bytes), (manifest_desc, manifest_bytes)]:
        files["blobs/sha256/" + desc["digest"].split(":")[1]] = data
    out_entries = {}
    for path, data in files.items():
        add_parents(out_entries, path)
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        out_entries[path] = (info, data)
    with open(args.out, "wb") as f:
        f.write(tar_bytes(out_entries))
    print(f"oci-image: {args.name} ({manifest_desc['digest']}, layer {len(layer_gz)} bytes) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
