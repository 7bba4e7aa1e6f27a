# WebSocket subscribers for spec/ws_pubsub_spec.lua and bench/ws_fanout (python3-websockets):
# sockets that ws:subscribe on the server, publishes asked for over HTTP, and what each socket
# got checked (each publish once, in order per publisher, with its kind). Usage:
#   ws_pubsub_client.py MODE PORT [ARGS...]  -> one line per observation; exit 0 unless it crashed
# The server (the spec's app) answers GET /sub?TOPIC with a WebSocket subscribed to TOPIC whose
# first message is "hello w<worker id>", and GET /pub?FROM,TOPIC,N,KIND[,SIZE] with N publishes
# ("<FROM>-<i>" padded to SIZE bytes) made by FROM: "worker" (the worker that answers) or
# "master" (asked by message; "burst": the master without a pause between big ones). A text message "unsub T" / "sub T" on a socket calls
# ws:unsubscribe / ws:subscribe on the server and is answered "ok".
import asyncio, base64, os, resource, socket, struct, sys, time, urllib.request
import websockets

mode, port = sys.argv[1], int(sys.argv[2])
args = sys.argv[3:]
base = "127.0.0.1:%d" % port


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pub(frm, topic, n, kind="text", size=0):
    q = "%s,%s,%d,%s,%d" % (frm, topic, n, kind, size)
    with urllib.request.urlopen("http://%s/pub?%s" % (base, q), timeout=60) as r:
        return r.read().decode()


async def open_sub(topic, **kw):
    ws = await websockets.connect("ws://%s/sub?%s" % (base, topic), max_size=None, max_queue=None, **kw)
    hello = await asyncio.wait_for(ws.recv(), 20)
    assert hello.startswith("hello w"), hello
    return ws, hello[len("hello "):]


async def open_on_both(topic, k):
    """k sockets subscribed to topic, on both workers (more are opened until both are seen)"""
    socks, workers = [], set()
    while len(socks) < k or len(workers) < 2:
        ws, w = await open_sub(topic)
        socks.append((ws, w))
        workers.add(w)
        assert len(socks) < 64, "every socket went to one worker"
    return socks, workers


async def collect(ws, count, timeout=30):
    got = []
    while len(got) < count:
        m = await asyncio.wait_for(ws.recv(), timeout)
        got.append(m)
    return got


async def nothing_more(ws, wait=0.5):
    try:
        m = await asyncio.wait_for(ws.recv(), wait)
        return m
    except asyncio.TimeoutError:
        return None


def check_order(got, expect):
    """got: messages; expect: {publisher: (n, type)} -> None or the problem"""
    seen = {}
    for m in got:
        text = m.decode() if isinstance(m, bytes) else m
        frm, i = text.rstrip(".").rsplit("-", 1)
        if frm not in expect:
            return "unexpected %r" % text[:40]
        n, typ = expect[frm]
        if not isinstance(m, typ):
            return "%s came as %s" % (text[:40], type(m).__name__)
        if int(i) != seen.get(frm, 0) + 1:
            return "%s after %s-%d" % (text[:40], frm, seen.get(frm, 0))
        seen[frm] = int(i)
    for frm, (n, _) in expect.items():
        if seen.get(frm, 0) != n:
            return "%s: %d of %d" % (frm, seen.get(frm, 0), n)
    return None


async def fanout():
    """sockets on both workers each get 20 worker and 20 master publishes once, in order"""
    k = int(args[0]) if args else 6
    socks, workers = await open_on_both("news", k)
    print("sockets", len(socks), "workers", len(workers))
    pub("worker", "news", 20, "text")
    pub("master", "news", 20, "binary")
    bad = 0
    for ws, w in socks:
        got = await collect(ws, 40)
        problem = check_order(got, {"worker": (20, str), "master": (20, bytes)}) or (
            await nothing_more(ws) and "a message more")
        if problem:
            bad += 1
            print("socket on", w, problem)
    print("fanout bad", bad)
    for ws, _ in socks:
        await ws.close()


async def unsub():
    """a socket that unsubscribes gets nothing more; one that subscribes to a second topic gets it"""
    a, _ = await open_sub("u1")
    b, _ = await open_sub("u1")
    await a.send("unsub u1")
    assert await a.recv() == "ok"
    await b.send("sub u2")
    assert await b.recv() == "ok"
    pub("worker", "u1", 3)
    pub("master", "u2", 2)
    got_b = await collect(b, 5)
    print("b", check_order(got_b, {"worker": (3, str), "master": (2, str)}) or "ok")
    print("a", await nothing_more(a, 1.0) or "nothing")
    await a.send("unsub u1")   # a second unsubscribe is no mistake
    print("a again", await a.recv())
    await a.close()
    await b.close()


async def leave():
    """sockets that close (client close, vanished) leave their topics"""
    a, _ = await open_sub("gone")
    b, _ = await open_sub("gone")
    c, _ = await open_sub("gone2")
    pub("master", "gone", 1)
    print("before", len(await collect(a, 1)), len(await collect(b, 1)))
    await a.close()
    b.transport.abort()   # vanished: no close frame
    await c.send("unsub gone2")
    assert await c.recv() == "ok"
    await asyncio.sleep(0.5)
    print("after", pub("master", "gone", 1))
    print("after2", pub("master", "gone2", 1))
    print("c", await nothing_more(c, 0.5) or "nothing")
    await c.close()


def raw_sub(topic, rcvbuf):
    """a subscriber that never reads: a raw socket with a small receive buffer"""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /sub?%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (topic, key)).encode())
    buf = b""
    while b"hello w" not in buf:
        buf += s.recv(4096)
    return s


async def slow():
    """one subscriber never reads: the others get every publish; the worker does not keep it all"""
    n, size = int(args[0]), int(args[1])
    stuck = [raw_sub("big", 4096) for _ in range(2)]
    good, workers = await open_on_both("big", 2)
    t = time.time()
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(None, pub, "master", "big", n, "binary", size)
    bad = 0
    for ws, w in good:
        got = await collect(ws, n, 60)
        if len(got) != n or any(len(m) != size for m in got):
            bad += 1
    await fut
    print("good sockets", len(good), "bad", bad, "seconds %.1f" % (time.time() - t))
    for s in stuck:
        s.close()
    for ws, _ in good:
        await ws.close()


async def burst():
    """subscribers that never read, and many big publishes at once from the master"""
    n, size = int(args[0]), int(args[1])
    stuck = [raw_sub("burst", 4096) for _ in range(4)]
    pub("burst", "burst", n, "binary", size)
    for s in stuck:
        s.close()
    print("burst done")


async def many():
    """n subscribers (both workers), one publish: each gets it once"""
    n = int(args[0])
    raise_fd_limit()
    socks = []
    for i in range(0, n, 200):
        socks += await asyncio.gather(*[open_sub("many") for _ in range(min(200, n - i))])
    workers = set(w for _, w in socks)
    t = time.time()
    pub("master", "many", 1)
    got = await asyncio.gather(*[collect(ws, 1) for ws, _ in socks])
    print("many sockets", len(socks), "workers", len(workers), "got", sum(1 for g in got if g == ["master-1"]),
          "seconds %.2f" % (time.time() - t))
    more = await asyncio.gather(*[nothing_more(ws, 0.3) for ws, _ in socks[:50]])
    print("many extra", sum(1 for m in more if m))
    await asyncio.gather(*[ws.close() for ws, _ in socks])


asyncio.run({"fanout": fanout, "unsub": unsub, "leave": leave, "slow": slow, "burst": burst, "many": many}[mode]())
