# trial helper: send N messages to a socket that never reads them, then ping and close; report timings
import asyncio, sys, time, websockets
async def main(url, n):
    ws = await websockets.connect(url, max_size=None, ping_interval=None)
    t0 = time.time()
    for i in range(n): await ws.send("m%d" % i)
    print("sent", n, "in %.2fs" % (time.time() - t0), flush=True)
    try:
        pong = await ws.ping(); await asyncio.wait_for(pong, 3); print("pong ok", flush=True)
    except Exception as e: print("ping:", repr(e), flush=True)
    t0 = time.time()
    await asyncio.wait_for(ws.close(), 15) if True else None
    print("closed code", ws.close_code, repr(ws.close_reason), "after %.2fs" % (time.time() - t0), flush=True)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
