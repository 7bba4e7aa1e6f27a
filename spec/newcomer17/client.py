# trial helper: connect N websockets, send lines, print everything received (with timestamps)
# usage: python3 client.py URL [--send TEXT] [--secs S] [--compress] [--name N]
import asyncio, sys, time, argparse
import websockets
p = argparse.ArgumentParser()
p.add_argument("url"); p.add_argument("--send", action="append", default=[])
p.add_argument("--secs", type=float, default=2); p.add_argument("--compress", action="store_true")
p.add_argument("--name", default="c"); p.add_argument("--delay", type=float, default=0.3)
p.add_argument("--size", type=int, default=0)
a = p.parse_args()
t0 = time.time()
def log(*x): print(f"{a.name} +{time.time()-t0:.2f}", *x, flush=True)
async def main():
    try:
        ws = await websockets.connect(a.url, compression="deflate" if a.compress else None, max_size=None)
    except Exception as e:
        log("connect failed:", repr(e)); return
    log("connected; ext:", ws.response.headers.get("Sec-WebSocket-Extensions") if hasattr(ws, "response") and ws.response else getattr(ws, "response_headers", {}).get("Sec-WebSocket-Extensions"))
    async def reader():
        try:
            async for m in ws:
                log("recv:", (m[:120] + ("..." if len(m) > 120 else "")) if isinstance(m, str) else f"<binary {len(m)}>")
        except Exception as e:
            log("reader ended:", repr(e))
        log("close code/reason:", ws.close_code, repr(ws.close_reason))
    r = asyncio.create_task(reader())
    await asyncio.sleep(a.delay)
    for s in a.send:
        try: await ws.send(s); log("sent", s[:40])
        except Exception as e: log("send failed", repr(e))
    if a.size:
        try: await ws.send("x" * a.size); log("sent huge", a.size)
        except Exception as e: log("send failed", repr(e))
    try: await asyncio.wait_for(asyncio.shield(r), a.secs)
    except asyncio.TimeoutError: pass
    await ws.close(); await r
asyncio.run(main())
