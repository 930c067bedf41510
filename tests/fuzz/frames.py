"""Seeds and a seeded mutator for JSON-RPC frames, and small valid documents.

The mutator starts from a valid request of every method and breaks it the ways a hostile
page would: wrong types, missing and unknown members, huge strings and integers, deep
nesting, duplicate member names, NaN tokens, lone surrogates, invalid UTF-8, truncation,
batches, and frames near and over the size limits.  It takes a ``random.Random`` so a
run is reproducible from its seed (tests/test_fuzz_daemon.py prints it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable
from typing import Any

Frame = str | bytes

# --- valid documents ------------------------------------------------------------------------


def minimal_pdf(pages: int = 1, *, xref_stream: bool = False) -> bytes:
    """A small well-formed PDF with ``pages`` empty pages and a correct xref table (or a
    cross-reference stream)."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"] * pages
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    size = len(objects) + 1
    if not xref_stream:
        xref_at = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % size
        out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref_at)
        return bytes(out)
    xref_at = len(out)
    rows = b"\x00\x00\x00\xff" + b"".join(b"\x01" + o.to_bytes(2, "big") + b"\x00"
                                          for o in [*offsets, xref_at])
    out += (b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 2 1] /Root 1 0 R /Length %d >>\n"
            b"stream\n" % (size, size + 1, len(rows)) + rows + b"\nendstream\nendobj\n")
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


XML_SEEDS: tuple[bytes, ...] = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<declaration id="1"><amount>10</amount>'
    b"<name>\xc6\x8fliyev</name></declaration>",
    b'<a xmlns="urn:x" xmlns:b="urn:b"><b:c b:d="e">text</b:c><!-- c --><?pi x?></a>',
    b'<?xml version="1.0" encoding="ISO-8859-1"?><r><![CDATA[<x>]]>\xe9</r>',
    b"<r/>",
)

# --- valid requests -------------------------------------------------------------------------

_DIGEST = base64.b64encode(hashlib.sha256(b"fuzz").digest()).decode()
_CHALLENGE = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()


def valid_requests(handle: str = "h-unknown") -> list[dict[str, Any]]:
    """One well-formed request of every method (``handle`` for those that sign)."""
    pdf = base64.b64encode(minimal_pdf()).decode()
    xml = base64.b64encode(XML_SEEDS[0]).decode()
    display = {"text": "Ərizə 42", "documentName": "erize.pdf"}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("agent.info", {}),
        ("tokens.subscribe", {}),
        ("certificates.select", {"purpose": "sign", "filter": {
            "issuer": "Test", "keyUsage": ["nonRepudiation"], "includeExpired": False}}),
        ("certificates.list", {"purpose": "auth", "filter": {
            "subjectSerialNumber": "AZE0000001", "extendedKeyUsage": ["1.3.6.1.5.5.7.3.2"]}}),
        ("sign.hash", {"handle": handle, "hash": _DIGEST, "hashAlgorithm": "SHA-256",
                       "scheme": "ECDSA", "ecdsaEncoding": "raw", "display": display}),
        ("sign.hashes", {"handle": handle, "hashes": [_DIGEST, _DIGEST],
                         "hashAlgorithm": "SHA-256"}),
        ("sign.cms", {"handle": handle, "hashAlgorithm": "SHA-256", "level": "B",
                      "data": base64.b64encode(b"content").decode(), "display": display}),
        ("sign.pdf", {"handle": handle, "pdf": pdf, "level": "B-B", "reason": "Razıyam",
                      "location": "Bakı", "fieldName": "Sig1",
                      "stamp": {"page": 1, "box": [10, 10, 200, 60], "text": "ok"}}),
        ("sign.xml", {"handle": handle, "xml": xml, "level": "B-B", "mode": "enveloped"}),
        ("auth.login", {"challenge": _CHALLENGE}),
        ("auth.login", {"challenge": base64.b64encode(bytes(range(32))).decode(),
                        "format": "web-eid:1.0"}),
    ]
    return [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in enumerate(calls, start=1)]


# --- rendering JSON with the defects a strict parser must refuse ----------------------------


class Raw(str):
    """JSON text inserted as it is (a nesting bomb too deep to build as Python values)."""


def render(value: Any, rng: random.Random, defect_rate: float = 0.0) -> str:
    """JSON text of ``value``; with ``defect_rate`` > 0 some members are duplicated and
    some numbers become NaN/Infinity tokens or thousands of digits."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        members = [f"{json.dumps(str(k))}:{render(v, rng, defect_rate)}"
                   for k, v in value.items()]
        if members and rng.random() < defect_rate:
            members.append(rng.choice(members))
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v, rng, defect_rate) for v in value) + "]"
    if isinstance(value, bool | None) or not isinstance(value, int | float):
        return json.dumps(value, ensure_ascii=rng.random() < 0.5)
    if rng.random() < defect_rate:
        return rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000,
                           "-" + "1" * 4301, "1" * 4300, "0.0000001e-400"])
    return json.dumps(value)


# --- mutations ------------------------------------------------------------------------------

_ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**53, 2**53 + 1, -(2**63), 2**64, 1.5, -0.0, "", " ", "\u0000",
    "\ud800", "\u202e", "A" * 300, [], {}, [[]], {"": None}, "null", "NaN", "=" * 8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if len(prefix) >= 8 or isinstance(value, Raw):
        return found
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _huge_string(rng: random.Random, limit: int) -> str:
    return rng.choice("aA0=é\u0000") * rng.choice([limit // 2, limit - 64, limit + 64])


def _deep(rng: random.Random, depth: int) -> Raw:
    opening = "".join(rng.choice(["[", '{"a":']) for _ in range(depth))
    closing = "".join("]" if c == "[" else "}" for c in reversed(opening.replace('{"a":', "{")))
    return Raw(opening + rng.choice(["[]", "{}", '"x"', "1"]) + closing)


def mutate_message(message: dict[str, Any], rng: random.Random, *,
                   size_limit: int = 64 * 1024) -> Any:
    """A structurally damaged copy of ``message`` (still a Python value)."""
    result: Any = message
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(result))
        kind = rng.randrange(9)
        if kind == 0:
            result = _replace(result, path, rng.choice(_ODD_VALUES))
        elif kind == 1:
            result = _replace(result, path, _huge_string(rng, size_limit))
        elif kind == 2:
            result = _replace(result, path, _deep(rng, rng.choice([20, 33, 200, 2000])))
        elif kind == 3 and path:
            parent = _get(result, path[:-1])
            if isinstance(parent, dict):
                result = _replace(result, path[:-1],
                                  {k: v for k, v in parent.items() if k != path[-1]})
        elif kind == 4:
            target = _get(result, path)
            if isinstance(target, dict):
                name = rng.choice(["unknown", "__proto__", "constructor", "é" * 50, "", "id"])
                result = _replace(result, path, {**target, name: rng.choice(_ODD_VALUES)})
        elif kind == 5:
            result = _replace(result, path, [rng.choice(_ODD_VALUES)] * rng.choice([2, 1000]))
        elif kind == 6:
            result = _replace(result, path, rng.randint(-(2**70), 2**70))
        elif kind == 7:
            result = _replace(result, path, [_get(result, path)])
        else:
            result = _replace(result, path, "".join(
                chr(rng.randrange(0x110000)) for _ in range(rng.randint(1, 40))))
    return result


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _encode(text: str, rng: random.Random) -> Frame:
    choice = rng.randrange(10)
    if choice < 6:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if choice < 8:
        return data
    if choice == 8 and data:
        at = rng.randrange(len(data))
        return data[:at] + bytes([rng.choice([0x80, 0xc0, 0xff, 0xed, 0xf4])]) + data[at:]
    return data[: rng.randrange(len(data) + 1)]  # truncated


_RAW_FRAMES: tuple[Callable[[random.Random, int], Frame], ...] = (
    lambda rng, limit: "[" * rng.choice([100, 1000, 100_000]),
    lambda rng, limit: '{"a":' * 5000 + "1" + "}" * 5000,
    lambda rng, limit: "[]" * rng.choice([10, limit // 2]),
    lambda rng, limit: "[" + ",".join(["[]"] * (limit // 3 - 1)) + "]",
    lambda rng, limit: '{"jsonrpc":"2.0","id":1,"method":"agent.info","params":{'
    + ",".join(f'"p{i}":0' for i in range(limit // 12)) + "}}",
    lambda rng, limit: rng.randbytes(rng.choice([1, 64, 4096])),
    lambda rng, limit: "",
    lambda rng, limit: " " * limit,
    lambda rng, limit: '"' + "\\ud800" * 100 + '"',
    lambda rng, limit: "\ufeff" + json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent.info"}),
)


def raw_frame(rng: random.Random, limit: int) -> Frame:
    """A frame that is not a mutated request: nesting bombs, many small values, noise."""
    return rng.choice(_RAW_FRAMES)(rng, limit)


def fuzzed_frame(rng: random.Random, templates: list[dict[str, Any]], *,
                 size_limit: int = 64 * 1024) -> Frame:
    """One hostile frame: usually a mutated valid request, sometimes raw junk."""
    if rng.random() < 0.15:
        return raw_frame(rng, size_limit)
    message = mutate_message(rng.choice(templates), rng, size_limit=size_limit)
    if rng.random() < 0.1:
        message = [message]  # a batch
    text = render(message, rng, defect_rate=0.05 if rng.random() < 0.3 else 0.0)
    return _encode(text, rng)


def seed_frames() -> list[bytes]:
    """The atheris corpus for the frame and dispatch targets: every valid request, plus a
    fixed sample of mutations."""
    rng = random.Random(11)
    templates = valid_requests()
    seeds = [json.dumps(m).encode() for m in templates]
    for _ in range(40):
        frame = fuzzed_frame(rng, templates, size_limit=4096)
        data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
        if len(data) <= 16 * 1024:
            seeds.append(data)
    return seeds


# --- hostile documents ----------------------------------------------------------------------


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of these object bodies (numbered from 1; 1 is the catalog) with a correct
    xref table."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref_at)
    return bytes(out)


def kids_fan_out(fan: int = 40, levels: int = 3) -> bytes:
    """A page tree whose every node lists the same child ``fan`` times: small on disk,
    ``fan ** levels`` pages to a naive walk."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(levels):
        child = 2 + level + 1
        objects.append(b"<< /Type /Pages /Kids [" + b" ".join([b"%d 0 R" % child] * fan)
                       + b"] /Count %d >>" % fan ** (levels - level))
    objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>")
    return _pdf(objects)


def hostile_documents() -> list[tuple[str, bytes]]:
    """("pdf" | "xml", document): the shapes that froze the agent before it had caps."""
    namespaces = b"<r " + b" ".join(b'xmlns:n%d="urn:n%d"' % (i, i) for i in range(1500))
    return [
        ("pdf", minimal_pdf(1, xref_stream=True).replace(b"/Size 5 ", b"/Size 5000000 ")),
        ("pdf", kids_fan_out()),
        ("pdf", minimal_pdf(1).replace(b"/Count 1", b"/Count 2147483647")),
        ("xml", namespaces + b"><n1:a/></r>"),
        ("xml", b"<a>" * 5000 + b"</a>" * 5000),
    ]


def _flip(document: bytes, rng: random.Random) -> bytes:
    data = bytearray(document)
    for _ in range(rng.randint(1, 8)):
        spot = rng.randrange(len(data))
        data[spot] = rng.choice([rng.randrange(256), ord("9"), ord("/"), ord("R"), 0])
    if rng.random() < 0.3:
        data = data[: rng.randrange(1, len(data))]
    return bytes(data)


def document_request(rng: random.Random, handle: str = "HANDLE") -> str:
    """A sign.pdf or sign.xml request whose document is hostile or damaged."""
    if rng.random() < 0.4:
        kind, document = rng.choice(hostile_documents())
    elif rng.random() < 0.5:
        kind, document = "pdf", _flip(minimal_pdf(rng.randint(1, 3),
                                                  xref_stream=rng.random() < 0.5), rng)
    else:
        kind, document = "xml", _flip(rng.choice(XML_SEEDS), rng)
    encoded = base64.b64encode(document).decode()
    if kind == "pdf":
        params: dict[str, Any] = {"handle": handle, "pdf": encoded, "level": "B-B"}
        if rng.random() < 0.5:
            params["stamp"] = {"page": rng.choice([1, -1, 2]), "box": [10, 10, 200, 60]}
    else:
        params = {"handle": handle, "xml": encoded, "level": "B-B",
                  "mode": rng.choice(["enveloped", "detached"])}
    return json.dumps({"jsonrpc": "2.0", "id": rng.randrange(1000),
                       "method": f"sign.{kind}", "params": params})
