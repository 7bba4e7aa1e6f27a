# A WebSocket client (python3-websockets) for spec/ws_app_errors_spec.lua: what a real client
# sees when an app makes a mistake (a handler that raises, a socket nobody reads, a push-only
# socket with idle_timeout, ws:subscribe in the master).
#   ws_app_errors_client.py MODE PORT PATH [ARG...]  -> one line per observation; exits 0 unless it crashed
import asyncio, sys, time
import websockets

mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
args = sys.argv[4:]
url = "ws://127.0.0.1:%d%s" % (port, path)


async def end(ws, timeout):
    """the messages until the server closes (or timeout s): -> their count"""
    n = 0
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
            n += 1
    except websockets.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        print("still open after %ds" % timeout, flush=True)
    return n


async def chatty():
    """N messages that the server never takes, then a ping, a publish, and our close"""
    n = int(args[0])
    ws = await websockets.connect(url, ping_interval=None, close_timeout=10)
    print("first", await asyncio.wait_for(ws.recv(), 10), flush=True)
    for i in range(n):
        await ws.send("m%d" % i)
    print("sent", n, flush=True)
    try:
        await asyncio.wait_for(await ws.ping(), 10)
        print("pong ok", flush=True)
    except asyncio.TimeoutError:
        print("pong timeout", flush=True)
    try:
        while await asyncio.wait_for(ws.recv(), 10) != "tick":
            pass
        print("tick ok", flush=True)
    except asyncio.TimeoutError:
        print("tick timeout", flush=True)
    t = time.time()
    await ws.close()
    print("closed", ws.close_code, "echoed" if time.time() - t < 9 else "not echoed", flush=True)


async def boom():
    """sends ARG (default "boom"; "-": nothing), prints each message, then how the server closed"""
    ws = await websockets.connect(url, ping_interval=None)
    if not args or args[0] != "-":
        await ws.send(args[0] if args else "boom")
    try:
        while True:
            print("got", await asyncio.wait_for(ws.recv(), 10), flush=True)
    except websockets.ConnectionClosed:
        print("closed", ws.close_code, repr(ws.close_reason), flush=True)
    except asyncio.TimeoutError:
        print("still open after 10s", flush=True)
        await ws.close()


async def silent():
    """sends nothing; counts the server's messages until it closes"""
    t = time.time()
    ws = await websockets.connect(url, ping_interval=None)
    n = await end(ws, 20)
    print("got", n, "closed", ws.close_code, ws.close_reason, "after %.1f" % (time.time() - t), flush=True)


asyncio.run({"chatty": chatty, "boom": boom, "silent": silent}[mode]())
