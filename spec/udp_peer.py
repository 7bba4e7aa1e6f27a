#!/usr/bin/env python3
# The UDP peers of spec/ngx_udp_spec.lua, on 127.0.0.1:PORT until killed:
#   udp_peer.py echo PORT  answers each datagram with itself, except:
#                          "silent ..."  no answer; "many K" K answers "d1".."dK";
#                          "big N" one answer of N bytes ("0123456789" repeated)
#   udp_peer.py dns PORT   a DNS server with hand-built packets: example.test has two A
#                          records (10.0.0.1, 10.0.0.2), nx.example.test is NXDOMAIN,
#                          silent.example.test gets no answer, anything else NXDOMAIN
import socket
import struct
import sys


def echo(sock):
    while True:
        data, peer = sock.recvfrom(65536)
        if data.startswith(b"silent"):
            continue
        if data.startswith(b"many "):
            for i in range(1, int(data[5:]) + 1):
                sock.sendto(b"d%d" % i, peer)
        elif data.startswith(b"big "):
            n = int(data[4:])
            sock.sendto((b"0123456789" * (n // 10 + 1))[:n], peer)
        else:
            sock.sendto(data, peer)


def qname(packet, at):
    labels = []
    while packet[at] != 0:
        n = packet[at]
        labels.append(packet[at + 1:at + 1 + n].decode())
        at += 1 + n
    return ".".join(labels), at + 1


def dns(sock):
    while True:
        query, peer = sock.recvfrom(65536)
        ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            continue
        name, end = qname(query, 12)
        question = query[12:end + 4]
        qtype = struct.unpack("!H", query[end:end + 2])[0]
        if name == "silent.example.test":
            continue
        answers = []
        rcode = 3
        if name == "example.test":
            rcode = 0
            if qtype == 1:
                for ip in ("10.0.0.1", "10.0.0.2"):
                    rdata = socket.inet_aton(ip)
                    answers.append(struct.pack("!HHHIH", 0xC00C, 1, 1, 300, len(rdata)) + rdata)
        head = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(answers), 0, 0)
        sock.sendto(head + question + b"".join(answers), peer)


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    try:  # both 127.0.0.1 and ::1, for a name that has both (localhost)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
    print("ready", flush=True)
    (echo if mode == "echo" else dns)(sock)


main()
