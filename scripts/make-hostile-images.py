#!/usr/bin/env python3
"""Test helper for the escape suite: write hostile OCI image archives into OUTDIR.

Each archive has one gzip layer holding PROBE (the static keel-probe) at /keel-probe and
one hostile entry, so that refusing that entry refuses the whole image:

  dotdot.tar   a regular file named ../../../../escape-tar-dotdot
  linkout.tar  a symlink `out -> /` then a regular file out/escape-tar-link
  devices.tar  a character device layer-mem (1:1, /dev/mem) and a block device
               layer-disk (254:0, the guest's first virtio disk)
  sparse.tar   a GNU sparse file ('S' entry) of 1 TiB apparent size holding 512 bytes

Each image's Cmd runs `/keel-probe attack layer-devices` (the only one that gets to run
if the entry is accepted and matters inside the container).

usage: make-hostile-images.py OUTDIR PROBE
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def octal(value, width):
    """A tar numeric field: octal digits and a NUL, or base-256 when too big."""
    text = b"%0*o\0" % (width - 1, value)
    if len(text) <= width:
        return text
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def gnu_sparse_member(name, realsize, data):
    """A GNU 'S' (old GNU sparse) header with one data chunk at the end, then its data."""
    header = bytearray(512)
    header[0:len(name)] = name.encode()
    header[100:108] = octal(0o644, 8)
    header[108:116] = octal(0, 8)
    header[116:124] = octal(0, 8)
    header[124:136] = octal(len(data), 12)
    header[136:148] = octal(0, 12)
    header[156:157] = b"S"
    header[257:265] = b"ustar  \0"
    # sparse[0] at 386: offset, numbytes; isextended at 482; realsize at 483.
    header[386:398] = octal(realsize - len(data), 12)
    header[398:410] = octal(len(data), 12)
    header[483:495] = octal(realsize, 12)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    padding = (512 - len(data) % 512) % 512
    return bytes(header) + data + b"\0" * padding


def layer(probe, kind):
    """The uncompressed layer tar for `kind`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as t:
        data = open(probe, "rb").read()
        info = tarfile.TarInfo("keel-probe")
        info.size, info.mode = len(data), 0o755
        t.addfile(info, io.BytesIO(data))
        for directory in ("tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        if kind == "dotdot":
            info = tarfile.TarInfo("../../../../escape-tar-dotdot")
            info.size = 4
            t.addfile(info, io.BytesIO(b"out\n"))
        elif kind == "linkout":
            info = tarfile.TarInfo("out")
            info.type, info.linkname = tarfile.SYMTYPE, "/"
            t.addfile(info)
            info = tarfile.TarInfo("out/escape-tar-link")
            info.size = 4
            t.addfile(info, io.BytesIO(b"out\n"))
        elif kind == "devices":
            for name, type_, major, minor in (("layer-mem", tarfile.CHRTYPE, 1, 1), ("layer-disk", tarfile.BLKTYPE, 254, 0)):
                info = tarfile.TarInfo(name)
                info.type, info.devmajor, info.devminor, info.mode = type_, major, minor, 0o666
                t.addfile(info)
        # sparse: appended by hand below (tarfile cannot write sparse members).
    raw = out.getvalue()
    if kind == "sparse":
        # Drop tarfile's two end-of-archive blocks, add the sparse member, end again.
        body = raw.rstrip(b"\0")
        body += b"\0" * ((512 - len(body) % 512) % 512)
        raw = body + gnu_sparse_member("escape-sparse", 1 << 40, b"x" * 512) + b"\0" * 1024
    return raw


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return "sha256:" + digest


def archive(path, probe, kind):
    raw = layer(probe, kind)
    compressed = gzip.compress(raw, mtime=0)
    blobs = {}
    layer_digest = blob(blobs, compressed)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/keel-probe", "attack", "layer-devices"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }
    config_data = json.dumps(config).encode()
    config_digest = blob(blobs, config_data)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config_data)},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": len(compressed)}],
    }
    manifest_data = json.dumps(manifest).encode()
    manifest_digest = blob(blobs, manifest_data)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": MANIFEST, "digest": manifest_digest, "size": len(manifest_data),
                       "annotations": {"org.opencontainers.image.ref.name": "keel/escape-" + kind + ":latest"}}],
    }
    with tarfile.open(path, "w") as t:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add("blobs/sha256/" + digest, data)


def main():
    outdir, probe = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    for kind in ("dotdot", "linkout", "devices", "sparse"):
        archive(os.path.join(outdir, kind + ".tar"), probe, kind)
        print(kind)


if __name__ == "__main__":
    main()
