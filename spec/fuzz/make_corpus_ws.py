# Writes the seed corpus of runtime/fuzz/fuzz_ws.c under spec/fuzz/corpus/ws (python3: its zlib
# makes the compressed seeds). Run from the repository root: python3 spec/fuzz/make_corpus_ws.py
# Each file: the mode byte (see fuzz_ws.c), then the client's frames, masked.
import os, struct, zlib

MASK = b"\x37\xfa\x21\x3d"


def frame(op, payload, fin=True, rsv=0, mask=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | op
    m = 0x80 if mask else 0
    if n < 126:
        h = bytes([b0, m | n])
    elif n < 65536:
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return h + payload
    return h + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def deflate(data):
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


ECHO, ON, HOLD, DROP = 0x00, 0x10, 0x20, 0x30
ALL, HALF, NOREAD, PMD, LATE = 0x03, 0x04, 0x08, 0x40, 0x80
close1000 = frame(8, struct.pack(">H", 1000) + b"bye")
seeds = {
    "echo_text": (ECHO | ALL, frame(1, b"hello") + close1000),
    "echo_text_bytewise": (ECHO, frame(1, b"hello") + frame(2, bytes(range(256))) + close1000),
    "on_text": (ON | ALL, frame(1, b"hello") + frame(1, b"ping") + close1000),
    "on_close": (ON | 2, frame(1, b"close") + frame(1, b"late") + close1000),
    "on_raise": (ON | ALL, frame(1, b"bye") + frame(1, b"after")),
    "hold_many": (HOLD | ALL, b"".join(frame(1, b"m%d" % i) for i in range(50)) + close1000),
    "drop": (DROP | ALL, frame(1, b"x")),
    "fragments_and_ping": (ECHO | 1, frame(1, b"fra", fin=False) + frame(9, b"p") + frame(0, b"gm", fin=False)
                           + frame(0, b"ent") + close1000),
    "bad_utf8": (ECHO | ALL, frame(1, b"caf\xe9")),
    "bad_utf8_split": (ECHO | 1, frame(1, b"\xce\xba\xe1", fin=False) + frame(0, b"\xbd\xb9\xff")),
    "too_big": (ECHO | 2, frame(2, b"z" * 5000)),
    "too_big_fragments": (ECHO | ALL, frame(2, b"z" * 3000, fin=False) + frame(0, b"z" * 3000)),
    "unmasked": (ECHO | ALL, frame(1, b"hi", mask=False)),
    "reserved_opcode": (ECHO | ALL, frame(3, b"")),
    "long_ping": (ECHO | ALL, frame(9, b"p" * 126)),
    "close_codes": (ON | ALL, frame(8, struct.pack(">H", 1005))),
    "close_1byte": (ON | ALL, frame(8, b"\x03")),
    "close_empty": (ECHO | ALL, frame(8, b"")),
    "ping_flood_noread": (ECHO | ALL | NOREAD, frame(9, b"p" * 125) * 400),
    "pmd_text": (ECHO | ALL | PMD, frame(1, deflate(b"hello hello hello"), rsv=0x40) + close1000),
    "pmd_fragments": (ON | 2 | PMD, frame(1, deflate(b"abc" * 100)[:5], fin=False, rsv=0x40)
                      + frame(0, deflate(b"abc" * 100)[5:]) + close1000),
    "pmd_bomb": (ECHO | ALL | PMD, frame(2, deflate(b"\0" * 100000), rsv=0x40)),
    "pmd_garbage": (ECHO | ALL | PMD, frame(1, b"\xff\xff\xff\xff", rsv=0x40)),
    "pmd_rsv_control": (ECHO | ALL | PMD, frame(9, b"", rsv=0x40)),
    "rsv_without_pmd": (ECHO | ALL, frame(1, deflate(b"x"), rsv=0x40)),
    "late_half_close": (ECHO | ALL | HALF | LATE, frame(1, b"early")),
    "late_half_close_nothing": (ON | ALL | HALF | LATE, b""),
    "late_pipelined": (HOLD | 1 | LATE, frame(1, b"a") + frame(1, b"b") + close1000),
    "cut_frame": (ECHO | ALL | HALF, frame(1, b"hello")[:5]),
    "len64": (ECHO | ALL, bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 62) + MASK),
}
os.makedirs("spec/fuzz/corpus/ws", exist_ok=True)
for name, (mode, data) in seeds.items():
    with open("spec/fuzz/corpus/ws/" + name, "wb") as f:
        f.write(bytes([mode]) + data)
