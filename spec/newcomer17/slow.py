# trial helper: upgrade on a raw socket, never read; meanwhile another client publishes 1 MB x N through huge.lua
import socket, base64, os, time, sys, asyncio, websockets
port = int(sys.argv[1]); n = int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
time.sleep(0.5)
async def pub():
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        for i in range(n):
            await ws.send("1000000"); await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        print("publisher still open:", ws.open)
asyncio.run(pub())
s.setblocking(False); got = b""
time.sleep(0.5)
try:
    while True:
        d = s.recv(1 << 20)
        if not d: break
        got += d
except BlockingIOError: pass
print("slow client had", len(got), "bytes; tail:", got[-40:])
