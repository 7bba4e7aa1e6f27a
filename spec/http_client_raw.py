#!/usr/bin/env python3
"""A scripted HTTP upstream for spec/http_client_spec.lua: answers each request's path with
bytes written by hand (the bad answers a real server never sends: garbage, closes mid-head or
mid-body, conflicting framing, an invalid chunk, stalls), and numbers its connections (X-Conn,
"conn=N" in bodies) so that the spec sees whether a client reused one.
usage: http_client_raw.py PORT   (prints "ready" once it listens)"""
import socket
import socketserver
import sys
import threading
import time

lock = threading.Lock()
conns = [0]


def ok(n, body=None):
    body = body if body is not None else "conn=%d" % n
    return ("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %d\r\n\r\n%s" % (len(body), n, body)).encode()


class Handler(socketserver.BaseRequestHandler):
    def read_request(self, buf):
        while b"\r\n\r\n" not in buf:
            data = self.request.recv(65536)
            if not data:
                return None, None, None, b""
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        self.head = head
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        if path == "/noread":               # reads nothing more: a big body fills the buffers
            time.sleep(10)
            return None, None, None, b""
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(rest) < length:
            data = self.request.recv(65536)
            if not data:
                break
            rest += data
        return method, path, rest[:length], rest[length:]

    def handle(self):
        with lock:
            conns[0] += 1
            n = conns[0]
        s = self.request
        buf = b""
        try:
            while True:
                method, path, body, buf = self.read_request(buf)
                if method is None or getattr(self, "drop_next", False):
                    return                  # closed without an answer (/ok-then-drop)
                if not self.answer(s, n, method, path, body):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return

    # -> whether the connection stays open for another request
    def answer(self, s, n, method, path, body):
        if path in FIXED:
            data, keep = FIXED[path]
            s.sendall(data)
            return keep
        if path == "/ok":
            s.sendall(ok(n))
            return True
        if path.startswith("/head"):       # the request head as it came, as the body
            s.sendall(ok(n, self.head.decode("latin-1")))
            return True
        if path == "/method":
            s.sendall(ok(n, method + " " + body.decode("latin-1")))
            return True
        if path == "/ok-then-close":      # allows keep-alive, then closes at once
            s.sendall(ok(n))
            return False
        if path == "/ok-then-drop":       # allows keep-alive, then closes on the next request,
            s.sendall(ok(n))              # unanswered (an idle close racing the client's send)
            self.drop_next = True
            return True
        if path == "/chunked":          # split across writes, with a trailer
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Conn: %d\r\n\r\n3\r\nabc\r\n" % n)
            time.sleep(0.05)
            s.sendall(b"4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n")
            return True
        if path == "/http10":           # HTTP/1.0, no Content-Length: the body ends at the close
            s.sendall(b"HTTP/1.0 200 OK\r\nX-Conn: %d\r\n\r\nclose-delimited " % n)
            time.sleep(0.05)
            s.sendall(b"body")
            return False
        if path == "/close-delimited-11":
            s.sendall(b"HTTP/1.1 200 OK\r\nX-Conn: %d\r\n\r\nuntil the close" % n)
            return False
        if path == "/big-close":        # 4 MiB until the close: the client must stop early
            s.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
            for _ in range(64):
                s.sendall(b"z" * 65536)
            return False
        if path == "/interim":
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n")
            time.sleep(0.05)
            s.sendall(ok(n, "after interim"))
            return True
        if path == "/extra":            # two bytes more than its Content-Length says
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Conn: %d\r\n\r\nokXX" % n)
            return True
        if path == "/stall-body":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        if path in ("/stall", "/stall-body"):
            time.sleep(10)
            return False
        s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True


# path -> (the bytes sent, whether the connection stays open)
FIXED = {
    "/garbage": (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", True),
    # names of 64 and 65 bytes (the client lower-cases short ones on the stack), one repeated
    "/names": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-" + b"Ab" * 31 + b": sixty-four\r\nX-" + b"Ab" * 31
               + b"C: sixty-five\r\nX-Rep: a\r\nx-REP: b\r\n\r\nok", True),
    "/switch": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", True),
    "/close-mid-head": (b"HTTP/1.1 200 OK\r\nContent-Le", False),
    "/close-mid-body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", False),
    "/close-mid-chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", False),
    "/conflict-cl": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", True),
    "/cl-and-te": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n0\r\n\r\n", True),
    "/bad-chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", True),
}


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    srv.serve_forever()
