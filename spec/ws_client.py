# A WebSocket client for spec/ws_server_spec.lua: python3-websockets for what a real client does,
# a raw socket for frames no library sends (unmasked, invalid UTF-8, oversized). Usage:
#   ws_client.py MODE PORT   -> prints one line per observation; exits 0 unless it crashed
import asyncio, base64, os, socket, struct, sys
import websockets

mode, port = sys.argv[1], int(sys.argv[2])
url = "ws://127.0.0.1:%d/" % port


async def echo():
    async with websockets.connect(url, subprotocols=["superchat", "chat"]) as ws:
        print("protocol", ws.subprotocol)
        await ws.send("hello \u03ba")
        print("text", await ws.recv())
        await ws.send(b"\x00\x01\xff")
        print("binary", repr(await ws.recv()))
        await ws.send(["frag1", "frag2"])
        print("fragments", await ws.recv())
        await asyncio.wait_for(await ws.ping(b"p"), 10)
        print("pong")
        await ws.send("x" * 50000)
        print("big", len(await ws.recv()))
    print("close", ws.close_code)


async def client_close():
    ws = await websockets.connect(url)
    await ws.close(4000, "bye")
    print("close", ws.close_code, ws.close_reason)


def raw(frames, read_all=True):
    """handshake on a socket, send frames (bytes), return the server's close code (or 'eof')"""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    s.sendall(frames)
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            break
        buf += d
    # frames from the server: find its close
    while len(buf) >= 2:
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        h = 2
        if n == 126:
            n, h = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            n, h = struct.unpack(">Q", buf[2:10])[0], 10
        payload, buf = buf[h:h + n], buf[h + n:]
        if op == 8:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
    return "eof"


def frame(op, payload, fin=True, mask=True, rsv=0, length=None):
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload) if length is None else length
    if n < 126:
        h = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        h = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return h + payload
    m = b"\x37\xfa\x21\x3d"
    return h + m + bytes(c ^ m[i % 4] for i, c in enumerate(payload))


RAW = {
    "unmasked": lambda: frame(1, b"Hello", mask=False),
    "bad_utf8": lambda: frame(1, b"\xce\xba\xed\xa0\x80"),
    "bad_utf8_fragments": lambda: frame(1, b"\xce", fin=False) + frame(0, b"\xff"),
    "too_big": lambda: frame(2, b"y" * 100001),
    "huge_length": lambda: frame(2, b"", length=2 ** 63 - 1),
    "reserved_opcode": lambda: frame(3, b""),
    "rsv": lambda: frame(1, b"a", rsv=0x40),
    "bad_close_code": lambda: frame(8, struct.pack(">H", 1005)),
    "long_ping": lambda: frame(9, b"p" * 126),
    "close_echo": lambda: frame(8, struct.pack(">H", 3001) + b"why"),
}

def vanish():
    """a message, then the TCP connection closed without a close frame"""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    s.sendall(frame(1, b"vanishing"))
    s.recv(100)  # its echo
    s.close()
    print("vanished")


if mode == "vanish":
    vanish()
elif mode == "echo":
    asyncio.run(echo())
elif mode == "client_close":
    asyncio.run(client_close())
else:
    print("close", raw(RAW[mode]()))
