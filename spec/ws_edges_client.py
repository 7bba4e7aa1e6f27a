# A raw WebSocket client for spec/ws_edges_spec.lua: the edges of the connection path a review
# found (deadlines that expire together, pings from a client that never reads, a handler that
# raises after the 101, what ws:send and ws:close refuse).
#   ws_edges_client.py MODE PORT [ARG...]  -> one line per observation; exits 0 unless it crashed
import base64, os, socket, struct, sys, threading, time, urllib.request

mode, port = sys.argv[1], int(sys.argv[2])
args = sys.argv[3:]


def frame(op, payload, fin=True):
    """a client frame, masked with a zero key"""
    n = len(payload)
    if n < 126:
        h = bytes([(0x80 if fin else 0) | op, 0x80 | n])
    elif n < 65536:
        h = bytes([(0x80 if fin else 0) | op, 0x80 | 126]) + struct.pack(">H", n)
    else:
        h = bytes([(0x80 if fin else 0) | op, 0x80 | 127]) + struct.pack(">Q", n)
    return h + b"\0\0\0\0" + payload


def upgrade(path):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode()


def connect(path, rcvbuf=None):
    """-> the socket after its 101, the bytes that came after the 101's head"""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    s.sendall(upgrade(path))
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise EOFError("no 101")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, rest


def next_frame(s, buf, until):
    """-> opcode, payload, rest; None at EOF or at time `until`"""
    while True:
        if len(buf) >= 2:
            n, h = buf[1] & 0x7F, 2
            if n == 126 and len(buf) >= 4:
                n, h = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127 and len(buf) >= 10:
                n, h = struct.unpack(">Q", buf[2:10])[0], 10
            if (n < 126 or h > 2) and len(buf) >= h + n:
                return buf[0] & 0x0F, buf[h:h + n], buf[h + n:]
        left = until - time.time()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            return None
        if not d:
            return None
        buf += d


def close_of(s, buf, secs):
    """the server's close frame within secs: "close CODE REASON", or "no close" """
    until = time.time() + secs
    while True:
        f = next_frame(s, buf, until)
        if f is None:
            return "no close"
        op, p, buf = f
        if op == 8:
            code = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else 1005
            return "close %d %s" % (code, p[2:].decode())


def together():
    """three idle WebSockets whose idle_timeout falls due in the same timer run (the worker is
    kept busy past it); the first one's "close" handler closes the second: each gets a close"""
    socks = [connect("/together?%d" % i) for i in (1, 2, 3)]
    threading.Thread(target=lambda: urllib.request.urlopen("http://127.0.0.1:%d/busy" % port).read(),
                     daemon=True).start()
    for i, (s, rest) in enumerate(socks, 1):
        print(i, close_of(s, rest, 8))


def ping_flood():
    """pings, and never a byte read: the server stops reading at its queue's bound, and its
    send_timeout ends the connection (a reset on our next send)"""
    s, _ = connect("/echo", rcvbuf=4096)
    s.setblocking(False)
    pings = frame(9, b"p" * 125) * 1000
    sent, t0 = 0, time.time()
    while time.time() - t0 < float(args[0]):
        try:
            sent += s.send(pings[sent % len(pings):])
        except BlockingIOError:
            time.sleep(0.05)
        except (ConnectionResetError, BrokenPipeError):
            print("reset after %.1f, %d bytes of pings" % (time.time() - t0, sent))
            return
    print("still open after %.1f, %d bytes of pings" % (time.time() - t0, sent))


def one_message():
    """one text message to PATH, then what the server does within 5 s"""
    s, rest = connect(args[0])
    s.sendall(frame(1, b"hello"))
    until = time.time() + 5
    while True:
        f = next_frame(s, rest, until)
        if f is None:
            print("nothing more")
            return
        op, p, rest = f
        if op == 8:
            code = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else 1005
            print("close", code, p[2:].decode())
            return
        print("message", op, p.decode("utf-8", "replace"))


def half_close():
    """the upgrade to PATH (and text frames ARG...), then our side closed (SHUT_WR) before the 101
    comes: the frames echoed, then the server's end"""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(upgrade(args[0]) + b"".join(frame(1, a.encode()) for a in args[1:]))
    s.shutdown(socket.SHUT_WR)
    t0, buf = time.time(), b""
    s.settimeout(5)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except socket.timeout:
        print("no eof after 5 s")
        return
    assert buf.startswith(b"HTTP/1.1 101"), buf
    buf, frames = buf.split(b"\r\n\r\n", 1)[1], []
    while True:
        f = next_frame(s, buf, 0)
        if f is None:
            break
        frames.append("%d:%s" % (f[0], f[1].decode()))
        buf = f[2]
    print("eof after %.1f, frames: %s" % (time.time() - t0, " ".join(frames) or "none"))


def never_read():
    """one message to PATH, then nothing read for SECS"""
    s, _ = connect(args[0], rcvbuf=4096)
    s.sendall(frame(1, b"go"))
    time.sleep(float(args[1]))
    print("slept")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


def big_then_idle():
    """N WebSockets one after the other, each echoes one 1 MiB message and then stays open,
    idle: how much the worker (pid ARG) grew"""
    n, pid = int(args[0]), int(args[1])
    before, keep, blob = rss_kb(pid), [], b"b" * 1048576
    for i in range(n):
        s, rest = connect("/echo")
        s.sendall(frame(2, blob))
        f = next_frame(s, rest, time.time() + 20)
        assert f is not None and f[0] == 2 and len(f[1]) == len(blob), "no echo"
        keep.append(s)
    time.sleep(0.5)
    print("grew_kb %d for %d idle WebSockets" % (rss_kb(pid) - before, n))


def stall():
    """a client that stops in the middle (ARG frame: half a frame; fragment: a first fragment
    and no more) or between messages (between: a pause longer than header_timeout after a
    whole message, then another): what the server does, and after how long"""
    what = args[0]
    s, rest = connect("/echo")
    t0 = time.time()
    if what == "frame":
        s.sendall(frame(1, b"0123456789")[:8])
    elif what == "fragment":
        s.sendall(frame(1, b"ab", fin=False))
    else:
        s.sendall(frame(1, b"one"))
        f = next_frame(s, rest, time.time() + 10)
        rest = f[2]
        time.sleep(3)
        s.sendall(frame(1, b"two"))
        f = next_frame(s, rest, time.time() + 10)
        print("echo", f[1].decode() if f and f[0] == 1 else f)
        return
    print(close_of(s, rest, 15), "after %.1f s" % (time.time() - t0))


{"stall": stall, "big_then_idle": big_then_idle, "half_close": half_close, "never_read": never_read, "together": together, "ping_flood": ping_flood, "one_message": one_message}[mode]()
