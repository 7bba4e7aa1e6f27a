# trial helper: send the given messages (b:... as binary) and print each message received with its type
import asyncio, sys, websockets
async def main(url, msgs):
    async with websockets.connect(url) as ws:
        for m in msgs:
            await ws.send(m[2:].encode() if m.startswith("b:") else m)
            await asyncio.sleep(0.2)
        try:
            while True:
                r = await asyncio.wait_for(ws.recv(), 1)
                print("recv", type(r).__name__, r[:60])
        except asyncio.TimeoutError: print("no more")
        except websockets.ConnectionClosed as e: print("closed", e.rcvd)
asyncio.run(main(sys.argv[1], sys.argv[2:]))
