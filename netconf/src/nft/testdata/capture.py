#!/usr/bin/env python3
"""Capture the batch `nft -f FILE.nft` sends, as FILE.bin (see README.md).

Run as root: python3 capture.py keel_a (inside `unshare -n`, so the host's ruleset is
never touched). Takes the sendmsg whose first message is NFNL_MSG_BATCH_BEGIN.
"""
import re
import subprocess
import sys

name = sys.argv[1]
trace = subprocess.run(
    ["strace", "-f", "-e", "trace=sendmsg", "-e", "write=all", "nft", "-f", f"{name}.nft"],
    capture_output=True, text=True, check=True,
).stderr
buffers, current = [], None
for line in trace.splitlines():
    if "sendmsg(" in line:
        current = bytearray()
        buffers.append(current)
    m = re.match(r"\s*\|\s*[0-9a-f]{5}\s+((?:[0-9a-f]{2}\s+){1,16})", line)
    if m and current is not None:
        current.extend(bytes.fromhex(m.group(1).replace(" ", "")))
batch = [b for b in buffers if len(b) >= 6 and b[4] == 0x10 and b[5] == 0]
assert len(batch) == 1, f"{len(batch)} batch buffers"
open(f"{name}.bin", "wb").write(batch[0])
print(f"{name}.bin: {len(batch[0])} bytes")
