# Chat clients for spec/chat_example_spec.lua: real python3-websockets clients of
# examples/chat/app.lua, possibly on two hosts (two ports).
#   chat_client.py PORT_A PORT_B   -> prints one line per message each client received
# ann (host A, room r) and bob (host B, room r) and cat (host A, room other) connect; ann says
# "hi", bob says "yo"; each prints what it got, in order, until it has seen both lines or 10 s pass.
import asyncio, json, sys
import websockets

port_a, port_b = int(sys.argv[1]), int(sys.argv[2])


def url(port, room, name):
    return "ws://127.0.0.1:%d/ws?room=%s&name=%s" % (port, room, name)


async def listen(name, ws, until, seen):
    try:
        while not until <= seen[name]:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            what = "joined" if m.get("joined") else "left" if m.get("left") else m["text"]
            print(name, "got", m["name"], what, flush=True)
            seen[name].add(what)
    except asyncio.TimeoutError:
        print(name, "timeout", flush=True)


async def main():
    ann = await websockets.connect(url(port_a, "r", "ann"))
    bob = await websockets.connect(url(port_b, "r", "bob"))
    cat = await websockets.connect(url(port_a, "other", "cat"))
    await asyncio.sleep(0.5)  # every subscription is registered before anyone speaks
    seen = {"ann": set(), "bob": set(), "cat": set()}
    tasks = [asyncio.create_task(listen("ann", ann, {"hi", "yo"}, seen)),
             asyncio.create_task(listen("bob", bob, {"hi", "yo"}, seen)),
             asyncio.create_task(listen("cat", cat, {"meow"}, seen))]
    await ann.send("hi")
    await bob.send("yo")
    await cat.send("meow")
    await asyncio.gather(*tasks)
    for ws in (ann, bob, cat):
        await ws.close()
    print("done", flush=True)


asyncio.run(main())
