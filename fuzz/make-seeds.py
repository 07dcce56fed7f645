#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/TARGET/ (run from the
top of the repository; existing files are kept). Seeds are small valid inputs: the raw
strings of keel's own parser tests, the demo's files, packets and tars built here, and
netlink dumps of this machine's own links, addresses and routes. Inputs that once
crashed a target are added by hand (as crash-NAME) next to their regression test."""
import io, os, re, socket, struct, tarfile, glob, json, hashlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def raw_strings(path, want, limit=24):
    text = open(path).read()
    found = [m.group(1) for m in re.finditer(r'r#"(.*?)"#', text, re.S)]
    # Plain literals with an escaped newline: one-line declarations in the tests.
    for m in re.finditer(r'(?<![r#])"((?:[^"\\\n]|\\.)*\\n(?:[^"\\\n]|\\.)*)"', text):
        found.append(re.sub(r'\\(.)', lambda e: {"n": "\n", "t": "\t"}.get(e.group(1), e.group(1)), m.group(1)))
    return [s for s in found if want(s)][:limit]

def tomls():
    for i, s in enumerate(raw_strings("netconf/src/config/tests.rs", lambda s: "=" in s)):
        put("network_toml", f"test-{i:02}.toml", s)
    for i, s in enumerate(raw_strings("supervisor/src/spec/tests.rs", lambda s: "=" in s)):
        put("container_toml", f"test-{i:02}.toml", s)
    for f in glob.glob("examples/demo/containers/*.toml"):
        put("container_toml", "demo-" + os.path.basename(f), open(f).read())

def ignition():
    put("ignition_json", "demo.ign", open("examples/demo/config.ign").read())
    n = 0
    for f in sorted(glob.glob("init/src/firstboot/config/tests/*.rs")):
        for s in raw_strings(f, lambda s: '"ignition"' in s, 8):
            put("ignition_json", f"test-{n:02}.json", s)
            n += 1

def dhcp():
    mac = bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56])
    def reply(kind, options, yiaddr=bytes([10, 0, 2, 15]), sname=b"", file=b""):
        p = bytearray(236)
        p[0], p[1], p[2] = 2, 1, 6
        p[4:8] = struct.pack(">I", 0x1234abcd)
        p[16:20] = yiaddr
        p[28:34] = mac
        p[44:44 + len(sname)] = sname
        p[108:108 + len(file)] = file
        p += bytes([99, 130, 83, 99, 53, 1, kind])
        for code, value in options:
            p += bytes([code, len(value)]) + value
        p += b"\xff"
        return bytes(p + b"\0" * max(0, 300 - len(p)))
    lease = [(54, bytes([10, 0, 2, 2])), (1, bytes([255, 255, 255, 0])), (3, bytes([10, 0, 2, 2])), (6, bytes([10, 0, 2, 3, 1, 1, 1, 1])),
             (15, b"example.internal"), (26, struct.pack(">H", 1500)), (51, struct.pack(">I", 86400)), (58, struct.pack(">I", 43200)),
             (59, struct.pack(">I", 75600))]
    put("dhcp_packet", "offer", reply(2, lease))
    put("dhcp_packet", "ack", reply(5, lease))
    put("dhcp_packet", "nak", reply(6, [(54, bytes([10, 0, 2, 2]))]))
    put("dhcp_packet", "ack-minimal", reply(5, [(1, bytes([255, 255, 0, 0])), (51, struct.pack(">I", 60))], sname=b""))
    over = reply(5, [(52, b"\x03"), (54, bytes([10, 0, 2, 2]))], file=bytes([1, 4, 255, 255, 255, 0, 255]), sname=bytes([51, 4, 0, 0, 1, 0, 255]))
    put("dhcp_packet", "ack-overload", over)
    put("dhcp_packet", "ack-split-option", reply(5, lease[:3] + [(6, bytes([9, 9])), (6, bytes([9, 9]))] + lease[6:]))

def netlink():
    NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
    def dump(msg_type, family_payload, name):
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        s.bind((0, 0))
        req = struct.pack("=IHHII", 16 + len(family_payload), msg_type, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + family_payload
        s.send(req)
        n = 0
        while True:
            data = s.recv(65536)
            put("netlink_reply", f"{name}-{n}", data)
            n += 1
            # Stop at NLMSG_DONE (3) in this datagram.
            at = 0
            done = False
            while at + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, at)
                done |= kind == 3
                at += (length + 3) & ~3
            if done or n > 3:
                break
        s.close()
    dump(18, struct.pack("=BxHiII", 0, 0, 0, 0, 0), "links")        # RTM_GETLINK, ifinfomsg
    dump(22, struct.pack("=BBBBI", 0, 0, 0, 0, 0), "addresses")     # RTM_GETADDR, ifaddrmsg
    dump(26, struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 0, 0, 0, 0, 0), "routes")  # RTM_GETROUTE, rtmsg
    ack = struct.pack("=IHHII", 36, 2, 0x100, 1, 0) + struct.pack("=i", 0) + struct.pack("=IHHII", 16, 16, 5, 1, 0)
    put("netlink_reply", "ack", ack)
    put("netlink_reply", "eexist", ack[:16] + struct.pack("=i", -17) + ack[20:])

def http():
    put("http_response", "length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n")
    put("http_response", "chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    put("http_response", "to-close", "HTTP/1.0 200 OK\r\nServer: test\r\n\r\nbody until the end")
    put("http_response", "redirect", "HTTP/1.1 302 Found\r\nLocation: /v2/x\r\nContent-Length: 0\r\n\r\n")
    put("http_response", "no-content", "HTTP/1.1 204 No Content\r\n\r\n")
    put("http_response", "unauthorized", 'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="https://auth.example/token",service="registry.example"\r\nContent-Length: 2\r\n\r\n{}')
    put("http_url", "plain", "http://example.com/path?q=1\n../other")
    put("http_url", "https-port", "https://[fd00::1]:8443/a/b#frag\n//host.example/c")
    put("http_url", "metadata", "http://169.254.169.254/latest/meta-data/\nhttps://elsewhere.example/x")

def references():
    for i, r in enumerate(["busybox", "library/busybox:1.36", "registry.example:5000/team/app:v1.2",
                           "localhost/x@sha256:" + "a" * 64, "ghcr.io/o/r:t@sha256:" + "0" * 64,
                           "oci:/var/lib/images/x:latest", "oci-archive:/tmp/x.tar", "docker-archive:/tmp/y.tar"]):
        put("image_reference", f"ref-{i}", r)
    put("image_reference", "digest", "sha256:" + "f" * 64)

def oci():
    d = "sha256:" + "ab" * 32
    desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 123}
    put("oci_json", "index.json", json.dumps({"schemaVersion": 2, "manifests": [
        dict(desc, platform={"architecture": "amd64", "os": "linux"}, annotations={"org.opencontainers.image.ref.name": "latest"}),
        dict(desc, platform={"architecture": "arm64", "os": "linux", "variant": "v8"})]}))
    put("oci_json", "manifest.json", json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(desc, mediaType="application/vnd.oci.image.config.v1+json"),
        "layers": [dict(desc, mediaType="application/vnd.oci.image.layer.v1.tar+gzip")]}))
    put("oci_json", "config.json", json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "echo"],
        "Env": ["PATH=/bin"], "WorkingDir": "/", "User": "1000:1000", "ExposedPorts": {"80/tcp": {}}}, "rootfs": {"type": "layers", "diff_ids": [d]}}))
    put("oci_json", "docker-manifest.json", json.dumps([{"Config": "abc.json", "RepoTags": ["x:latest"], "Layers": ["l1/layer.tar"]}]))

def auth():
    put("registry_auth", "bearer", 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"')
    put("registry_auth", "basic", 'Basic realm="Registry Realm"')
    put("registry_auth", "quoted", 'Bearer realm="https://a.example/t?x=1",scope="a\\"b,c"\n')
    put("registry_auth", "token", '{"token":"abc","access_token":"abc","expires_in":300}')

def tars():
    def make(name, members, fmt=tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
            for info, data in members:
                t.addfile(info, io.BytesIO(data) if data is not None else None)
        put("layer_tar", name, buf.getvalue())
    def info(name, kind=tarfile.REGTYPE, data=b"", link="", pax=None):
        i = tarfile.TarInfo(name)
        i.type, i.size, i.linkname, i.mode = kind, len(data) if kind == tarfile.REGTYPE else 0, link, 0o755
        if pax:
            i.pax_headers = pax
        return i, (data if kind == tarfile.REGTYPE else None)
    make("basic", [info("etc", tarfile.DIRTYPE), info("etc/hostname", data=b"keel\n"), info("bin", tarfile.DIRTYPE),
                   info("bin/sh", data=b"\x7fELF"), info("bin/ash", tarfile.LNKTYPE, link="bin/sh"), info("bin/link", tarfile.SYMTYPE, link="/bin/sh")])
    make("whiteouts", [info("etc", tarfile.DIRTYPE), info("etc/.wh.motd"), info("var/.wh..wh..opq"), info(".wh.opt")])
    make("long-names", [info("a/" + "x" * 150, data=b"long"), info("b/" + "y" * 120, tarfile.SYMTYPE, link="z" * 130)])
    make("pax-xattrs", [info("f", data=b"x", pax={"SCHILY.xattr.user.k": "v", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"})], tarfile.PAX_FORMAT)
    make("escape-attempts", [info("../evil", data=b"x"), info("a", tarfile.SYMTYPE, link="../outside"), info("a/f", data=b"y"),
                             info("h", tarfile.LNKTYPE, link="../outside/keep")])

def disks():
    vfat = bytearray(512)
    vfat[11:13] = struct.pack("<H", 512)
    vfat[13] = 1
    vfat[0x16:0x18] = struct.pack("<H", 8)
    vfat[0x26] = 0x29
    vfat[0x2B:0x2B + 11] = b"CONFIG-2   "
    vfat[510:512] = b"\x55\xaa"
    put("disk_label", "vfat-config-2", bytes(vfat))
    fat32 = bytearray(vfat)
    fat32[0x16:0x18] = b"\0\0"
    fat32[0x42] = 0x29
    fat32[0x47:0x47 + 11] = b"cidata     "
    put("disk_label", "fat32-cidata", bytes(fat32))
    iso = bytearray(32768 + 2048)
    iso[32768] = 1
    iso[32769:32774] = b"CD001"
    iso[32768 + 40:32768 + 72] = b"config-2".ljust(32)
    put("disk_label", "iso9660-config-2", bytes(iso))
    put("kernel_cmdline", "typical", 'console=ttyS0 root=/dev/vda ro keel.debug keel.modules=virtio_net,overlay keel.config.url=http://10.0.2.2:8000/c.ign keel.shutdown_grace=5s')
    put("kernel_cmdline", "quoted", 'keel.firstboot=1 "keel.platform=qemu" keel.config.timeout=30s keel.metadata.url="http://x/ y" keel.root=/dev/vdb keel.unknown=1')

if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    tomls(); ignition(); dhcp(); netlink(); http(); references(); oci(); auth(); tars(); disks()
