# A permessage-deflate client for spec/ws_deflate_spec.lua: python3-websockets (which offers
# permessage-deflate by default) for what a real client does, and a raw socket with Python's zlib
# for exact frames (RSV1 bits, RFC 7692 7.2.3's bytes, deflate bombs, invalid data). Usage:
#   ws_deflate_client.py MODE PORT PATH [OPTIONS]  -> one line per observation; exit 0 unless it crashed
import asyncio, base64, os, random, socket, struct, sys, zlib
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
opts = sys.argv[4] if len(sys.argv) > 4 else ""
url = "ws://127.0.0.1:%d%s" % (port, path)


def factory():
    """the client's offer from OPTIONS (comma-separated): nct_client, nct_server, cbits=N, sbits=N"""
    kw = {}
    for o in filter(None, opts.split(",")):
        if o == "nct_client":
            kw["client_no_context_takeover"] = True
        elif o == "nct_server":
            kw["server_no_context_takeover"] = True
        elif o.startswith("cbits="):
            kw["client_max_window_bits"] = int(o[6:])
            kw["compress_settings"] = {"memLevel": 5}
        elif o.startswith("sbits="):
            kw["server_max_window_bits"] = int(o[6:])
    return ClientPerMessageDeflateFactory(**kw)


async def echo():
    if opts in ("default", "none"):   # the library's own offer, or no offer at all
        kw = {"compression": "deflate" if opts == "default" else None}
    else:
        kw = {"compression": None, "extensions": [factory()]}
    async with websockets.connect(url, max_size=2 ** 24, **kw) as ws:
        print("extensions", ws.response_headers.get("Sec-WebSocket-Extensions"))
        print("negotiated", len(ws.extensions))
        await ws.send("hello \u03ba")
        print("text", await ws.recv())
        await ws.send(b"\x00\x01\xff")
        print("binary", repr(await ws.recv()))
        await ws.send(["frag1", "frag2"])
        print("fragments", await ws.recv())
        await ws.send("")
        print("empty", repr(await ws.recv()))
        rnd = random.Random(5)
        noise = bytes(rnd.getrandbits(8) for _ in range(60000))
        await ws.send(noise)
        print("random", (await ws.recv()) == noise)
        # compressible messages, several times (context takeover carries over between them)
        big = "".join("line %d of a compressible message\n" % i for i in range(20000))
        for i in range(3):
            await ws.send(big)
            print("compressible", i, len(big), (await ws.recv()) == big)
        # matches far back: 1000 bytes apart, past a 512-byte window
        far = bytes(rnd.getrandbits(8) for _ in range(1000)) * 50
        await ws.send(far)
        print("far", (await ws.recv()) == far)
    print("close", ws.close_code)


def connect(offer):
    """a raw handshake offering `offer`; returns the socket and the response's extensions"""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: %s\r\n" % offer if offer else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path, key, ext)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert buf == b"", buf
    resp = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-extensions:"):
            resp = line.split(b":", 1)[1].strip().decode()
    return s, resp


def frame(b0, payload):
    n = len(payload)
    if n < 126:
        h = bytes([b0, 0x80 | n])
    elif n < 65536:
        h = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    m = os.urandom(4)
    return h + m + bytes(c ^ m[i % 4] for i, c in enumerate(payload))


def read_frame(s, buf):
    def need(n):
        nonlocal buf
        while len(buf) < n:
            d = s.recv(65536)
            if not d:
                raise EOFError
            buf += d
    need(2)
    b0, n = buf[0], buf[1] & 0x7F
    h = 2
    if n == 126:
        need(4)
        n, h = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        need(10)
        n, h = struct.unpack(">Q", buf[2:10])[0], 10
    need(h + n)
    return b0, buf[h:h + n], buf[h + n:]


def until_close(s):
    """the server's frames until its close: its close code (or 'eof')"""
    buf = b""
    while True:
        try:
            b0, payload, buf = read_frame(s, buf)
        except (EOFError, ConnectionResetError):
            return "eof"
        if b0 & 0x0F == 8:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005


def deflate(data, wbits=15):
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    z = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert z.endswith(b"\x00\x00\xff\xff")
    return z[:-4]


def raw_echo():
    """RFC 7692 7.2.3.1's "Hello", in one frame and in two, and a message sent uncompressed: each
    echo comes back compressed (RSV1) and inflates to it"""
    s, resp = connect("permessage-deflate")
    print("extensions", resp)
    inflater = zlib.decompressobj(-15)
    hello = bytes([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
    sent = [frame(0xC1, hello), frame(0x41, hello[:3]) + frame(0x80, hello[3:]), frame(0x81, b"plain \xce\xba")]
    buf = b""
    for f in sent:
        s.sendall(f)
        b0, payload, buf = read_frame(s, buf)
        print("echo rsv1=%d op=%d %s %s" % (b0 >> 6 & 1, b0 & 0x0F, payload.hex(),
                                            inflater.decompress(payload + b"\x00\x00\xff\xff").decode()))
    s.sendall(frame(0x88, struct.pack(">H", 1000)))
    print("close", until_close(s))


def vanish():
    """a compressed message, its echo, then the TCP connection closed without a close frame"""
    s, resp = connect("permessage-deflate")
    s.sendall(frame(0xC1, deflate(b"vanishing " * 100)))
    b0, payload, _ = read_frame(s, b"")
    print("echo rsv1=%d" % (b0 >> 6 & 1), len(zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")))
    s.close()
    print("vanished")


RAW = {
    # a text message that inflates to 10 MB of "a": over max_message_size
    "bomb": lambda: frame(0xC1, deflate(b"a" * (10 << 20))),
    # the same, split in frames: the first frames already inflate past max
    "bomb_fragments": lambda: b"".join(frame(0x41 if i == 0 else 0x00, c) for i, c in
                                       enumerate(chunks(deflate(b"a" * (10 << 20)), 1000))) + frame(0x80, b""),
    "bad_deflate": lambda: frame(0xC1, b"\xff\xff\xff\xff\xff"),
    "bad_utf8_deflate": lambda: frame(0xC1, deflate(b"ok \xed\xa0\x80")),
    "bad_utf8_plain": lambda: frame(0x81, b"\xce\xba\xed\xa0\x80"),
    "rsv1_continuation": lambda: frame(0x41, deflate(b"a")) + frame(0xC0, b"\x00"),
    "rsv1_ping": lambda: frame(0xC9, b""),
    "rsv1": lambda: frame(0xC1, hello_bytes()),
}


def chunks(b, n):
    return [b[i:i + n] for i in range(0, len(b), n)]


def hello_bytes():
    return bytes([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])


if mode == "echo":
    asyncio.run(echo())
elif mode == "raw_echo":
    raw_echo()
elif mode == "vanish":
    vanish()
else:
    s, resp = connect(opts or "permessage-deflate")
    print("extensions", resp)
    s.sendall(RAW[mode]())
    print("close", until_close(s))
