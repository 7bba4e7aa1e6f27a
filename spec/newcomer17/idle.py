# trial helper: connect and never send anything (no pings); print what arrives and how it ends
import asyncio, sys, time, websockets
async def main(url, secs):
    ws = await websockets.connect(url, ping_interval=None); t0 = time.time()
    try:
        while True:
            m = await asyncio.wait_for(ws.recv(), secs - (time.time() - t0))
    except asyncio.TimeoutError: print("still open after", secs, "s", flush=True)
    except websockets.ConnectionClosed as e: print("closed after %.1fs" % (time.time() - t0), e.rcvd, flush=True)
asyncio.run(main(sys.argv[1], float(sys.argv[2])))
