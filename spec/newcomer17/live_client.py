# trial helper: read N messages from a WebSocket (one line each), then close; "timeout" if they do not come
import asyncio, sys, websockets
async def main(url, n):
    async with websockets.connect(url) as ws:
        for _ in range(n):
            print("got", await asyncio.wait_for(ws.recv(), 10), flush=True)
    print("done", flush=True)
try: asyncio.run(main(sys.argv[1], int(sys.argv[2])))
except asyncio.TimeoutError: print("timeout")
