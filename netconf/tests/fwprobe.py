#!/usr/bin/env python3
"""Traffic for netconf/tests/firewall.rs: small servers and clients run inside the test's
network namespaces (`ip netns exec NS python3 fwprobe.py ...`).

  serve-tcp ADDR PORT TEXT    answer every TCP connection with TEXT; print "ready" first
  serve-udp ADDR PORT         print every datagram received as "got SRC PAYLOAD", answer
                              "echo:PAYLOAD"; print "ready" first
  tcp ADDR PORT SECONDS       connect, print what the server sends; exit 1 on failure
  udp ADDR PORT PAYLOAD SECS  send PAYLOAD, print the answer; exit 1 without one
  ping ADDR                   one ICMP / ICMPv6 echo request (raw socket); exit 1 without
                              a reply within 2 s
  frame IFACE DSTMAC SRC DST DPORT PAYLOAD
                              send one Ethernet frame carrying IPv4/UDP from SRC to DST
                              through IFACE to DSTMAC, bypassing the sender's routing (a
                              raw AF_PACKET socket: what a container with CAP_NET_RAW can do)
"""
import socket
import struct
import sys


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve_tcp(addr, port, text):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = s.accept()
        conn.sendall(text.encode())
        conn.close()


def serve_udp(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        print(f"got {peer[0]} {data.decode(errors='replace')}", flush=True)
        s.sendto(b"echo:" + data, peer)


def tcp(addr, port, seconds):
    try:
        s = socket.create_connection((addr, int(port)), timeout=float(seconds))
        s.settimeout(float(seconds))
        data = s.recv(1024)
    except OSError as e:
        print(f"failed: {e}", file=sys.stderr)
        sys.exit(1)
    print(data.decode(), end="")
    sys.exit(0 if data else 1)


def udp(addr, port, payload, seconds):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.settimeout(float(seconds))
    try:
        s.sendto(payload.encode(), (addr, int(port)))
        data, _ = s.recvfrom(2048)
    except OSError as e:
        print(f"failed: {e}", file=sys.stderr)
        sys.exit(1)
    print(data.decode(), end="")


def ping(addr):
    v6 = ":" in addr
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        request = struct.pack("!BBHHH", 128, 0, 0, 0x4B45, 1) + b"keel"  # the kernel sums it
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        request = struct.pack("!BBHHH", 8, 0, 0, 0x4B45, 1) + b"keel"
        request = request[:2] + struct.pack("!H", checksum(request)) + request[4:]
    s.settimeout(2)
    s.sendto(request, (addr, 0))
    try:
        while True:
            data, _ = s.recvfrom(2048)
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
            if icmp[0] == (129 if v6 else 0):
                print("reply")
                return
    except OSError as e:
        print(f"failed: {e}", file=sys.stderr)
        sys.exit(1)


def frame(iface, dstmac, src, dst, dport, payload):
    payload = payload.encode()
    sport = 40000
    udp_len = 8 + len(payload)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, udp_len)
    udp_header = struct.pack("!HHHH", sport, int(dport), udp_len, 0)
    udp_sum = checksum(pseudo + udp_header + payload) or 0xFFFF
    udp_header = struct.pack("!HHHH", sport, int(dport), udp_len, udp_sum)
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0,
                            socket.inet_aton(src), socket.inet_aton(dst))
    ip_header = ip_header[:10] + struct.pack("!H", checksum(ip_header)) + ip_header[12:]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    srcmac = s.getsockname()[4]
    ether = bytes.fromhex(dstmac.replace(":", "")) + srcmac + struct.pack("!H", 0x0800)
    s.send(ether + ip_header + udp_header + payload)


COMMANDS = {"serve-tcp": serve_tcp, "serve-udp": serve_udp, "tcp": tcp, "udp": udp, "ping": ping, "frame": frame}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
