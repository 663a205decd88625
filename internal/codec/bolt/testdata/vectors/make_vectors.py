#!/usr/bin/env python3
"""Writes the Bolt byte vectors in this directory from the protocol spec.

This is an implementation independent of the Go codec (struct packing here,
CRC32 from zlib), so the Go tests cross-check one against the other. The
sofa_python_* vectors are not constructed: they are the bytes captured from
a real SOFARPC peer that sofastack/sofa-bolt-python publishes in
tests/test_bolt_package.py (test_from_stream), annotated field by field.

Each .hex file holds hex digits with '#' comments; a reader drops comments
and whitespace. Run from this directory: python3 make_vectors.py
"""
import struct
import zlib

SOFA_REQUEST = b"com.alipay.sofa.rpc.core.request.SofaRequest"
SOFA_RESPONSE = b"com.alipay.sofa.rpc.core.response.SofaResponse"


def header_map(pairs):
    """SOFARPC SimpleMapSerializer: (int32 len, key, int32 len, value)..."""
    out = []
    for k, v in pairs:
        k, v = k.encode(), v.encode()
        out.append((struct.pack(">i", len(k)) + k, "key len %d %r" % (len(k), k.decode())))
        out.append((struct.pack(">i", len(v)) + v, "value len %d %r" % (len(v), v.decode())))
    return out


def text(b):
    s = b.decode("latin-1")
    return "".join(c if 32 <= ord(c) < 127 else "." for c in s)


def frame(name, title, proto, typ, cmd, rid, codec, field, cls=b"", hdr=(), content=b"",
          ver1=None, switch=None, ver2=1):
    """Returns annotated (bytes, comment) parts of one frame."""
    hparts = header_map(hdr)
    hbytes = b"".join(p for p, _ in hparts)
    parts = [(bytes([proto]), "proto %d" % proto)]
    if proto == 2:
        parts.append((bytes([ver1]), "ver1 %d" % ver1))
    parts += [
        (bytes([typ]), "type %d (%s)" % (typ, {0: "response", 1: "request", 2: "oneway"}[typ])),
        (struct.pack(">H", cmd), "cmdcode %d (%s)" % (cmd, {0: "heartbeat", 1: "request", 2: "response"}[cmd])),
        (bytes([ver2]), "ver2 %d" % ver2),
        (struct.pack(">I", rid), "request id %d" % rid),
        (bytes([codec]), "codec %d" % codec),
    ]
    if proto == 2:
        parts.append((bytes([switch]), "switch 0x%02x" % switch))
    if typ == 0:
        parts.append((struct.pack(">H", field), "response status 0x%04x" % field))
    else:
        parts.append((struct.pack(">i", field), "timeout %d ms" % field))
    parts += [
        (struct.pack(">H", len(cls)), "class name length %d" % len(cls)),
        (struct.pack(">H", len(hbytes)), "header length %d" % len(hbytes)),
        (struct.pack(">I", len(content)), "content length %d" % len(content)),
    ]
    if cls:
        parts.append((cls, "class name %r" % cls.decode()))
    parts += hparts
    if content:
        parts.append((content, "content %r" % text(content)))
    if proto == 2 and ver1 == 2 and switch & 1:
        crc = zlib.crc32(b"".join(p for p, _ in parts))
        parts.append((struct.pack(">I", crc), "CRC32 (IEEE, zlib) of all bytes above"))
    write(name, title, parts)


def write(name, title, parts):
    total = sum(len(p) for p, _ in parts)
    with open(name, "w") as f:
        f.write("# %s\n# %d bytes; fields in wire order, big-endian\n" % (title, total))
        for p, c in parts:
            h = p.hex()
            lines = [h[i:i + 64] for i in range(0, len(h), 64)]
            f.write("%-64s # %s\n" % (lines[0], c))
            for l in lines[1:]:
                f.write(l + "\n")


ROUTE = [
    ("service", "com.alipay.test.HelloService:1.0"),
    ("sofa_head_target_service", "com.alipay.test.HelloService:1.0"),
    ("sofa_head_method_name", "sayHello"),
    ("sofa_head_target_app", "demo"),
    ("rpc_trace_context.sofaTraceId", "0a0fe8ad170000000000100112345"),
]
# Opaque stand-in for a hessian2 SofaRequest body: the codec never reads it.
BODY = bytes(range(0x40, 0x60))

frame("v1_heartbeat.hex", "v1 heartbeat request (SOFABolt HeartbeatCommand)",
      1, 1, 0, 1, 1, -1)
frame("v1_heartbeat_reply.hex", "v1 heartbeat reply (SOFABolt HeartbeatAckCommand)",
      1, 0, 0, 1, 1, 0)
frame("v1_request.hex", "v1 request, hessian2, SOFARPC routing headers",
      1, 1, 1, 7, 1, 3000, SOFA_REQUEST, ROUTE, BODY)
frame("v1_oneway.hex", "v1 one-way request, protobuf, no timeout",
      1, 2, 1, 8, 11, -1, SOFA_REQUEST,
      [("service", "com.alipay.test.LogService:2.0:blue"), ("sofa_head_method_name", "log")], b"\x0a\x01a")
frame("v1_response.hex", "v1 response SUCCESS, hessian2",
      1, 0, 2, 7, 1, 0, SOFA_RESPONSE, [("rpc_resp_baggage", "")], bytes(range(0x60, 0x70)))
# Hessian2 short string: length byte (UTF-16 units) then UTF-8.
frame("v1_response_no_processor.hex", "v1 response NO_PROCESSOR with a hessian2 java.lang.String message",
      1, 0, 2, 7, 1, 6, b"java.lang.String", (), bytes([8]) + b"no route")
frame("v2_request_crc.hex", "v2 request, ver1 2, switch CRC on: CRC32 trailer",
      2, 1, 1, 9, 1, 1000, SOFA_REQUEST, ROUTE[:3], BODY, ver1=2, switch=1)
frame("v2_request_ver1.hex", "v2 request, ver1 1: switch CRC bit set but no CRC (ver1 1 never has one)",
      2, 1, 1, 10, 11, 500, SOFA_REQUEST, ROUTE[:1], b"\x0a\x01b", ver1=1, switch=1)
frame("v2_response_crc.hex", "v2 response SUCCESS, ver1 2, switch CRC on",
      2, 0, 2, 9, 1, 0, SOFA_RESPONSE, (), bytes(range(0x60, 0x70)), ver1=2, switch=1)
frame("v2_heartbeat.hex", "v2 heartbeat request, ver1 2, CRC on",
      2, 1, 0, 11, 1, -1, ver1=2, switch=1)
frame("v2_heartbeat_reply.hex", "v2 heartbeat reply, ver1 2, CRC on",
      2, 0, 0, 11, 1, 0, ver1=2, switch=1)


def capture(name, title, raw, typ):
    """Annotates captured bytes field by field (v1 only)."""
    parts = []
    o = 0

    def take(n, c):
        nonlocal o
        parts.append((raw[o:o + n], c))
        o += n
        return raw[o - n:o]

    take(1, "proto 1")
    take(1, "type %d" % typ)
    take(2, "cmdcode %d" % struct.unpack(">H", raw[2:4])[0])
    take(1, "ver2")
    rid = struct.unpack(">I", take(4, "request id")[0:4])[0]
    parts[-1] = (parts[-1][0], "request id %d" % rid)
    take(1, "codec %d" % raw[9])
    if typ == 0:
        take(2, "response status %d" % struct.unpack(">H", raw[10:12])[0])
    else:
        take(4, "timeout %d ms" % struct.unpack(">i", raw[10:14])[0])
    cl = struct.unpack(">H", take(2, "class name length"))[0]
    hl = struct.unpack(">H", take(2, "header length"))[0]
    nl = struct.unpack(">I", take(4, "content length"))[0]
    parts[-3] = (parts[-3][0], "class name length %d" % cl)
    parts[-2] = (parts[-2][0], "header length %d" % hl)
    parts[-1] = (parts[-1][0], "content length %d" % nl)
    take(cl, "class name %r" % raw[o:o + cl].decode())
    end = o + hl
    while o < end:
        kl = struct.unpack(">i", raw[o:o + 4])[0]
        take(4 + kl, "key len %d %r" % (kl, raw[o + 4:o + 4 + kl].decode()))
        vl = struct.unpack(">i", raw[o:o + 4])[0]
        take(4 + vl, "value len %d %r" % (vl, raw[o + 4:o + 4 + vl].decode()))
    take(nl, "content (protobuf) %r" % text(raw[o:o + nl]))
    assert o == len(raw), (o, len(raw))
    write(name, title, parts)


CAPTURED_RESPONSE = bytes.fromhex(
    "0100000201000000840b0000002e0000000000036"
    "36f6d2e616c697061792e736f66612e7270632e636f72652e726573706f6e73652e536f6661526573706f6e7365"
    "0a0161")
capture("sofa_python_response_pb.hex",
        "captured SOFARPC v1 protobuf response, from sofastack/sofa-bolt-python tests/test_bolt_package.py",
        CAPTURED_RESPONSE, 0)

CAPTURED_REQUEST = (
    b'\x01\x01\x00\x01\x01\x00\x00\x00\x6d\x0b\x00\x00\x00\x64\x00\x2c\x02\xe6\x00\x00\x00\x03\x63\x6f\x6d\x2e\x61\x6c\x69\x70\x61\x79\x2e\x73\x6f\x66\x61\x2e\x72\x70\x63\x2e\x63\x6f\x72\x65\x2e\x72\x65\x71\x75\x65\x73\x74\x2e\x53\x6f\x66\x61\x52\x65\x71\x75\x65\x73\x74\x00\x00\x00\x18\x73\x6f\x66\x61\x5f\x68\x65\x61\x64\x5f\x74\x61\x72\x67\x65\x74\x5f\x73\x65\x72\x76\x69\x63\x65\x00\x00\x00\x3b\x63\x6f\x6d\x2e\x61\x6c\x69\x70\x61\x79\x2e\x72\x70\x63\x2e\x63\x6f\x6d\x6d\x6f\x6e\x2e\x73\x65\x72\x76\x69\x63\x65\x2e\x66\x61\x63\x61\x64\x65\x2e\x70\x62\x2e\x53\x61\x6d\x70\x6c\x65\x53\x65\x72\x76\x69\x63\x65\x50\x62\x3a\x31\x2e\x30\x00\x00\x00\x1b\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x6f\x66\x61\x52\x70\x63\x49\x64\x00\x00\x00\x01\x30\x00\x00\x00\x1f\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x7a\x70\x72\x6f\x78\x79\x54\x69\x6d\x65\x6f\x75\x74\x00\x00\x00\x03\x31\x30\x30\x00\x00\x00\x1d\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x6f\x66\x61\x54\x72\x61\x63\x65\x49\x64\x00\x00\x00\x1e\x30\x62\x61\x36\x31\x36\x61\x31\x31\x35\x32\x33\x32\x35\x31\x38\x31\x39\x31\x31\x34\x31\x30\x30\x32\x31\x38\x37\x33\x38\x00\x00\x00\x1f\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x6f\x66\x61\x43\x61\x6c\x6c\x65\x72\x49\x64\x63\x00\x00\x00\x03\x64\x65\x76\x00\x00\x00\x1e\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x6f\x66\x61\x43\x61\x6c\x6c\x65\x72\x49\x70\x00\x00\x00\x0d\x31\x31\x2e\x31\x36\x36\x2e\x32\x32\x2e\x31\x36\x31\x00\x00\x00\x1e\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x6f\x66\x61\x50\x65\x6e\x41\x74\x74\x72\x73\x00\x00\x00\x00\x00\x00\x00\x1b\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x7a\x70\x72\x6f\x78\x79\x55\x49\x44\x00\x00\x00\x00\x00\x00\x00\x20\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x6f\x66\x61\x43\x61\x6c\x6c\x65\x72\x5a\x6f\x6e\x65\x00\x00\x00\x05\x47\x5a\x30\x30\x42\x00\x00\x00\x14\x73\x6f\x66\x61\x5f\x68\x65\x61\x64\x5f\x74\x61\x72\x67\x65\x74\x5f\x61\x70\x70\x00\x00\x00\x04\x62\x61\x72\x31\x00\x00\x00\x07\x73\x65\x72\x76\x69\x63\x65\x00\x00\x00\x3b\x63\x6f\x6d\x2e\x61\x6c\x69\x70\x61\x79\x2e\x72\x70\x63\x2e\x63\x6f\x6d\x6d\x6f\x6e\x2e\x73\x65\x72\x76\x69\x63\x65\x2e\x66\x61\x63\x61\x64\x65\x2e\x70\x62\x2e\x53\x61\x6d\x70\x6c\x65\x53\x65\x72\x76\x69\x63\x65\x50\x62\x3a\x31\x2e\x30\x00\x00\x00\x19\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x45\x6c\x61\x73\x74\x69\x63\x00\x00\x00\x01\x46\x00\x00\x00\x1d\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x79\x73\x50\x65\x6e\x41\x74\x74\x72\x73\x00\x00\x00\x00\x00\x00\x00\x22\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x7a\x70\x72\x6f\x78\x79\x54\x61\x72\x67\x65\x74\x5a\x6f\x6e\x65\x00\x00\x00\x00\x00\x00\x00\x1f\x72\x70\x63\x5f\x74\x72\x61\x63\x65\x5f\x63\x6f\x6e\x74\x65\x78\x74\x2e\x73\x6f\x66\x61\x43\x61\x6c\x6c\x65\x72\x41\x70\x70\x00\x00\x00\x03\x66\x6f\x6f\x00\x00\x00\x15\x73\x6f\x66\x61\x5f\x68\x65\x61\x64\x5f\x6d\x65\x74\x68\x6f\x64\x5f\x6e\x61\x6d\x65\x00\x00\x00\x05\x68\x65\x6c\x6c\x6f\x0a\x01\x61'
)
capture("sofa_python_request_pb.hex",
        "captured SOFARPC v1 protobuf request, from sofastack/sofa-bolt-python tests/test_bolt_package.py",
        CAPTURED_REQUEST, 1)
