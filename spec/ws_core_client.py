# A WebSocket client for spec/ws_core_spec.lua (timeouts, backpressure, drain, counts):
# python3-websockets where a real client's behaviour is the point, a raw socket where the
# client must misbehave (send before the 101, never answer a ping or a close, flood, never read).
#   ws_core_client.py MODE PORT [ARG...]  -> one line per observation; exits 0 unless it crashed
import asyncio, base64, os, select, signal, socket, struct, subprocess, sys, time, urllib.request
import websockets

mode, port = sys.argv[1], int(sys.argv[2])
args = sys.argv[3:]


def url(path="/"):
    return "ws://127.0.0.1:%d%s" % (port, path)


def handshake(path="/"):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode()


def frame(op, payload, fin=True):
    """a client frame, masked with a zero key (valid, and no per-byte work for big floods)"""
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        h = bytes([b0, 0x80 | n])
    elif n < 65536:
        h = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return h + b"\0\0\0\0" + payload


class Raw:
    """a raw client: its handshake, then the server's frames one at a time"""
    def __init__(self, path="/", extra=b"", timeout=20):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.sendall(handshake(path) + extra)
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def recv(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError()
        return d

    def next(self):
        """-> opcode, payload; raises EOFError at the end, socket.timeout"""
        while True:
            if len(self.buf) >= 2:
                n, h = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, h = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, h = struct.unpack(">Q", self.buf[2:10])[0], 10
                if n < 126 or h > 2:
                    if len(self.buf) >= h + n:
                        op, p = self.buf[0] & 0x0F, self.buf[h:h + n]
                        self.buf = self.buf[h + n:]
                        return op, p
            self.buf += self.recv()


def close_code(p):
    return struct.unpack(">H", p[:2])[0] if len(p) >= 2 else 1005


def pipelined():
    """the handshake and two frames in one write, before the 101 is read: both echoed"""
    r = Raw(args[0], frame(1, b"early1") + frame(1, b"early2"))
    print("echo", r.next()[1].decode(), r.next()[1].decode())


async def idle():
    """no frame at all (the library's own pings off): the server closes with 1001"""
    t = time.time()
    async with websockets.connect(url("/idle"), ping_interval=None) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 20)
        except websockets.ConnectionClosed:
            pass
    print("closed", ws.close_code, ws.close_reason, "after %.1f" % (time.time() - t))


async def busy():
    """a message every 300 ms for 2.4 s on an idle_timeout of 1000 ms: never closed"""
    async with websockets.connect(url("/idle"), ping_interval=None) as ws:
        for i in range(8):
            await ws.send("m%d" % i)
            print("echo", await asyncio.wait_for(ws.recv(), 5))
            await asyncio.sleep(0.3)
    print("close", ws.close_code)


async def pinged():
    """python-websockets answers pings: open after 3 ping_intervals, still echoing"""
    async with websockets.connect(url("/ping"), ping_interval=None) as ws:
        await asyncio.sleep(2)
        await ws.send("still")
        print("echo", await asyncio.wait_for(ws.recv(), 5))
    print("close", ws.close_code)


def no_pong():
    """a raw client that never answers the server's pings: closed with 1001"""
    r = Raw("/ping")
    t, pings = time.time(), 0
    while True:
        op, p = r.next()
        if op == 9:
            pings += 1
        elif op == 8:
            print("pings", pings, "close", close_code(p), p[2:].decode(), "after %.1f" % (time.time() - t))
            return


def close_wait():
    """the server closes (ws:close), the client never answers: the TCP connection ends anyway"""
    r = Raw("/close", frame(1, b"close me"))
    op, p = r.next()
    print("got", op, close_code(p))
    t = time.time()
    try:
        while True:
            r.next()
    except EOFError:
        print("eof after %.1f" % (time.time() - t))
    except ConnectionResetError:
        print("eof after %.1f" % (time.time() - t))
    except socket.timeout:
        print("timeout")


def flood():
    """N frames of 16 KB to a handler that does not receive for a while: how far the socket
    took them before it stalled (reading paused), then all of them once it receives"""
    n = int(args[0])
    r = Raw(args[1] if len(args) > 1 else "/slow")
    data = b"".join(frame(2, bytes([i % 251]) * 16384) for i in range(n))
    s = r.s
    s.setblocking(False)
    off, last = 0, time.time()
    while off < len(data) and time.time() - last < 2:
        _, w, _ = select.select([], [s], [], 0.2)
        if w:
            try:
                k = s.send(data[off:off + 1048576])
            except BlockingIOError:
                k = 0
            if k > 0:
                off += k
                last = time.time()
    print("stalled_at", off, "of", len(data))
    s.setblocking(True)
    s.settimeout(30)
    s.sendall(data[off:] + frame(1, b"end"))
    op, p = r.next()
    print("server", p.decode())


def no_read():
    """asks for N messages of 64 KB and reads none for 3 s, then reads them all"""
    n = int(args[0])
    r = Raw("/send", frame(1, str(n).encode()))
    time.sleep(3)
    got = 0
    while got < n:
        op, p = r.next()
        if op == 2:
            got += 1
    print("got", got)


def never_read():
    """asks for many big messages and never reads: the server must end the connection"""
    r = Raw("/send", frame(1, b"100000"))
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(float(args[0]))
    print("slept")


async def drain():
    """echoes across a SIGHUP of the master (pid ARG): the old worker still echoes while it
    drains, then closes with 1001; a new connection reaches the new generation"""
    pid = int(args[0])
    async with websockets.connect(url("/gen")) as ws:
        await ws.send("a")
        print("before", await ws.recv())
        os.kill(pid, signal.SIGHUP)
        t = time.time()
        n = 0
        try:
            while True:
                await ws.send("b%d" % n)
                reply = await asyncio.wait_for(ws.recv(), 10)
                if n == 0 or reply.split(":")[0] != "1":
                    print("during", reply)
                n += 1
                await asyncio.sleep(0.2)
        except websockets.ConnectionClosed:
            pass
        print("echoes", n, "closed", ws.close_code, ws.close_reason, "after %.1f" % (time.time() - t))
    for _ in range(50):  # the new generation may take a moment to answer
        try:
            async with websockets.connect(url("/gen")) as ws2:
                await ws2.send("c")
                reply = await ws2.recv()
                if reply.startswith("2:"):
                    print("after", reply)
                    return
        except (OSError, websockets.WebSocketException):
            pass
        await asyncio.sleep(0.2)
    print("after none")


def metrics(mport):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10).read().decode()
    return " ".join(l for l in body.split("\n") if l.startswith("luacluster_websocket"))


async def counts():
    """two open WebSockets, three messages each way, then the metrics"""
    mport = int(args[0])
    a = await websockets.connect(url("/"))
    b = await websockets.connect(url("/"))
    for m in ("x", "y", "z"):
        await a.send(m)
        await a.recv()
    print("open", metrics(mport))
    if len(args) > 1:  # `luacluster status` as given (a command line)
        st = subprocess.run(args[1], shell=True, capture_output=True, text=True, timeout=20)
        print("status", st.stdout.replace("\n", " | "))
    await a.close()
    await b.close()
    await asyncio.sleep(0.5)
    print("closed", metrics(mport))


async def abandon():
    """N clients: one message each to a handler that receives once and returns: each is closed
    by the server with 1000"""
    n = int(args[0])
    codes = {}
    async def one(i):
        ws = await websockets.connect(url("/once"))
        await ws.send("m%d" % i)
        await ws.recv()
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        codes[ws.close_code] = codes.get(ws.close_code, 0) + 1
    await asyncio.gather(*(one(i) for i in range(n)))
    print("codes", sorted(codes.items()))


MODES = {"pipelined": pipelined, "no_pong": no_pong, "close_wait": close_wait, "flood": flood,
         "no_read": no_read, "never_read": never_read}
if mode in MODES:
    MODES[mode]()
else:
    asyncio.run({"idle": idle, "busy": busy, "pinged": pinged, "drain": drain, "counts": counts,
                 "abandon": abandon}[mode]())
