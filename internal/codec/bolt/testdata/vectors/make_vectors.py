#!/usr/bin/env python3
"""Writes the Bolt byte vectors in this directory from the protocol spec.

This is an implementation independent of the Go codec (struct packing here,
CRC32 from zlib), so the Go tests cross-check one against the other.
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


HEADERS16 = [
    ("sofa_head_target_service", "com.weftmesh.demo.OrderService:1.0"),
    ("rpc_trace_context.sofaRpcId", "0"),
    ("rpc_trace_context.zproxyTimeout", "100"),
    ("rpc_trace_context.sofaTraceId", "7f0000011732000000001000142"),
    ("rpc_trace_context.sofaCallerIdc", "dev"),
    ("rpc_trace_context.sofaCallerIp", "127.0.0.1"),
    ("rpc_trace_context.sofaPenAttrs", ""),
    ("rpc_trace_context.zproxyUID", ""),
    ("rpc_trace_context.sofaCallerZone", "GZ00A"),
    ("sofa_head_target_app", "orders"),
    ("service", "com.weftmesh.demo.OrderService:1.0"),
    ("rpc_trace_context.Elastic", "F"),
    ("rpc_trace_context.sysPenAttrs", ""),
    ("rpc_trace_context.zproxyTargetZone", ""),
    ("rpc_trace_context.sofaCallerApp", "frontend"),
    ("sofa_head_method_name", "create"),
]
frame("v1_request_pb16.hex", "v1 request, protobuf, 100 ms timeout, 16 header entries shaped like a SOFARPC client's (routing keys and rpc_trace_context)",
      1, 1, 1, 109, 11, 100, SOFA_REQUEST, HEADERS16, b"\x0a\x01a")
frame("v1_response_pb.hex", "v1 response SUCCESS, protobuf",
      1, 0, 2, 132, 11, 0, SOFA_RESPONSE, (), b"\x0a\x01a")
