# A TLS server for net_tls_spec: answers each HTTP request with a close-delimited body, then
# closes the TCP connection under TLS WITHOUT close_notify, as someone on the path cutting the
# stream would. Usage: tls_trunc_server.py PORT CERT KEY
import socket, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(8)
print("READY", flush=True)
while True:
    c, _ = ls.accept()
    try:
        s = ctx.wrap_socket(c, server_side=True)
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nTRANSFER $100 TO ACCOUNT 1")
        raw = socket.socket(fileno=s.detach())
        raw.shutdown(socket.SHUT_RDWR)
        raw.close()
    except (ssl.SSLError, OSError):
        c.close()
