# A WebSocket echo server for spec/ngx_drivers_spec.lua (Debian's python3-websockets):
# ws_echo.py PORT listens on 127.0.0.1:PORT, echoes every message, prints "ready".
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port):
        print("ready", flush=True)
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1])))
