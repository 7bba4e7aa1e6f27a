# A WSS client for spec/tls_server_spec.lua (Debian's python3-websockets over ssl):
# tls_wss_client.py PORT CA_FILE: connects to wss://localhost:PORT/ws verifying against CA_FILE,
# sends "hi", prints the answer.
import asyncio
import ssl
import sys

import websockets


async def main(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    async with websockets.connect("wss://localhost:%d/ws" % port, ssl=ctx) as ws:
        await ws.send("hi")
        print(await asyncio.wait_for(ws.recv(), 5), flush=True)


asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
