#!/usr/bin/env python3
"""Test helper: copy the tar archive SRC to DST with one byte flipped in the middle of its
largest file (an image layer blob), keeping the tar itself valid; print that member's name.
Used by the image tests to check that keel refuses a tampered blob."""
import io
import sys
import tarfile

src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(src) as t, tarfile.open(dst, "w") as o:
    members = t.getmembers()
    big = max((m for m in members if m.isfile()), key=lambda m: m.size)
    for m in members:
        data = t.extractfile(m).read() if m.isfile() else None
        if m is big:
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            data = bytes(data)
            print(m.name)
        o.addfile(m, io.BytesIO(data) if data is not None else None)
