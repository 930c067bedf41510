"""The committed JSON Schema is what the models produce, and it describes real frames."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.protocol.catalog import METHODS
from agent.protocol.schema import build_schema, render_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "docs" / "protocol.schema.json"


def test_committed_schema_is_current() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == render_schema(), (
        "docs/protocol.schema.json is out of date with agent/protocol; regenerate it with\n"
        "    .venv/bin/python -m agent.protocol.schema > docs/protocol.schema.json")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = build_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_covers_every_method() -> None:
    assert set(build_schema()["x-methods"]) == set(METHODS)


H = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
NONCE = base64.b64encode(hashlib.sha256(b"nonce").digest()).decode()  # Web eID's own form


@pytest.mark.parametrize("frame", [
    {"jsonrpc": "2.0", "id": 1, "method": "agent.info"},
    {"jsonrpc": "2.0", "id": "a", "method": "sign.hash",
     "params": {"handle": "h", "hash": H, "hashAlgorithm": "SHA-256"}},
    {"jsonrpc": "2.0", "id": 2, "method": "certificates.select",
     "params": {"purpose": "sign", "filter": {"keyUsage": ["nonRepudiation"]}}},
    {"jsonrpc": "2.0", "id": 3, "result": {"signatures": [H], "scheme": "ECDSA",
                                           "hashAlgorithm": "SHA-256", "certificate": H}},
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "not valid JSON",
                                             "data": {"reason": "PARSE_ERROR"}}},
    {"jsonrpc": "2.0", "method": "tokens.changed",
     "params": {"tokens": [{"label": "L", "serial": "1", "present": True}]}},
    {"jsonrpc": "2.0", "id": 5, "method": "auth.login",
     "params": {"challenge": NONCE, "format": "web-eid:1.0"}},
    {"jsonrpc": "2.0", "id": 5, "result": {"token": {
        "unverifiedCertificate": H, "algorithm": "ES256", "signature": H,
        "format": "web-eid:1.0", "appVersion": "https://imza-agent.invalid/releases/v0"}}},
])
def test_valid_frames_match(validator: jsonschema.Draft202012Validator,
                            frame: dict[str, Any]) -> None:
    validator.validate(frame)


@pytest.mark.parametrize("frame", [
    {"jsonrpc": "2.0", "id": 1, "method": "sign.hash", "params": {"handle": "h"}},
    {"jsonrpc": "2.0", "id": 1, "method": "sign.hash",
     "params": {"handle": "h", "hash": H, "hashAlgorithm": "SHA-1"}},
    {"jsonrpc": "2.0", "id": 1, "method": "sign.hash",
     "params": {"handle": "h", "hash": "@@", "hashAlgorithm": "SHA-256"}},
    {"jsonrpc": "2.0", "id": 1, "method": "nope"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "agent.info"},
    {"jsonrpc": "2.0", "id": 1, "method": "auth.login", "params": {"challenge": "short"}},
    {"jsonrpc": "2.0", "id": 1, "method": "auth.login",
     "params": {"challenge": NONCE, "format": "web-eid:2.0"}},
    {"jsonrpc": "2.0", "id": 5, "result": {"token": {
        "unverifiedCertificate": H, "algorithm": "ES256", "signature": H,
        "format": "web-eid:1.0"}}},  # appVersion missing
])
def test_invalid_frames_do_not_match(validator: jsonschema.Draft202012Validator,
                                     frame: dict[str, Any]) -> None:
    assert not validator.is_valid(json.loads(json.dumps(frame)))


DOC_FILE = SCHEMA_FILE.with_name("protocol.md")


def _doc_requests() -> list[dict[str, Any]]:
    """The complete (not elided) example requests of docs/protocol.md."""
    requests, current = [], None
    for line in DOC_FILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("→ "):
            current = [line[2:]]
        elif current is not None and line.startswith("   ") and line.lstrip()[:1] not in "←…":
            current.append(line)
        elif current is not None:
            text = "".join(current)
            if "…" not in text:
                requests.append(json.loads(text))
            current = None
    return requests


def test_doc_example_requests_are_valid() -> None:
    requests = _doc_requests()
    assert {r["method"] for r in requests} >= {"agent.info", "sign.hash", "sign.hashes",
                                               "sign.cms", "sign.xml", "auth.login"}
    for req in requests:
        spec = METHODS[req["method"]]
        spec.params.model_validate(req.get("params", {}), by_alias=True, by_name=False)
