# Writes the first N bytes of a real TLS ClientHello (Python's ssl over memory, no socket) to
# stdout: spec/tls_hostile_spec.lua's truncated handshakes. tls_hello.py N
import ssl
import sys

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
sys.stdout.buffer.write(out.read()[: int(sys.argv[1])])
