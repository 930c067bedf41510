"""Issue 17 bar 4, the page side: the SDK sends a large document as raw binary WebSocket
frames (``document.upload``) and puts the signed document of a ``{"binary", "prefix"}``
answer back together, so the page sees the same result as before.

The SDK (extension/sdk/imza.js, unchanged) runs in Node with Node's own WHATWG WebSocket
against a small server that speaks the upload contract (tests/test_sdk_upload_page.mjs):
it records every frame, fills uploads from binary frames in order, closes 1008 on a binary
frame nobody waits for, and answers the document methods the way the agent does. The
extension's path runs on the scripted page of tests/test_sdk_kinds.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
from daemon import REPO

from agent.protocol.params import DOCUMENT_EXTRA_FIELDS, DOCUMENT_FIELDS

SDK = REPO / "extension" / "sdk" / "imza.js"
DRIVER = REPO / "tests" / "test_sdk_upload_page.mjs"
FAKE_PAGE = REPO / "tests" / "sdk_fake_page.mjs"
WS_MODULE = REPO / "tests" / "e2e" / "node_modules" / "ws" / "wrapper.mjs"
MIB = 1024 * 1024
FEATURES = ["agent.info", "document.upload", "sign.cms", "sign.pdf", "signature.extend",
            "signature.verify"]
# a threshold small enough for quick documents
LOW = {"uploadThreshold": 4096}


def _node() -> list[str]:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the page SDK: apt-get install nodejs"
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=True).stdout
    major = int(re.match(r"v(\d+)", version).group(1))  # type: ignore[union-attr]
    # Node 20 and 21 have the WHATWG WebSocket behind a flag; 22 has it by default.
    return [node, "--experimental-websocket"] if major < 22 else [node]


def run(plan: dict[str, Any]) -> dict[str, Any]:
    assert WS_MODULE.is_file(), "ws is required: (cd tests/e2e && npm ci)"
    done = subprocess.run([*_node(), str(DRIVER), SDK.as_uri(), WS_MODULE.as_uri(),
                           json.dumps(plan)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "connectError" not in result, result["connectError"]
    return result


def sign_pdf(size: int, as_: str = "bytes", seed: int = 1) -> dict[str, Any]:
    return {"method": "sign.pdf", "params": {"handle": "h-1", "level": "B-B"},
            "documents": {"pdf": {"size": size, "as": as_, "seed": seed}}}


def methods(result: dict[str, Any]) -> list[str]:
    return [f["method"] for f in result["seen"]["frames"] if f["type"] == "text"]


def binary_bytes(result: dict[str, Any]) -> int:
    return sum(f["length"] for f in result["seen"]["frames"] if f["type"] == "binary")


def assert_signed_as_expected(result: dict[str, Any]) -> None:
    """Every call's document came back whole: what the page got is what the server sent."""
    expected = {e["sha256"] for e in result["seen"]["expected"]}
    assert len(expected) == len(result["calls"])
    for call in result["calls"]:
        assert "error" not in call, call
        assert call["type"] == "string" and call["result"]["canonicalBase64"] is True
        assert call["result"]["sha256"] in expected, call
    assert result["seen"]["violations"] == []
    # and what the server got, upload or base64, is exactly the page's document
    sent = {d["sha256"] for c in result["calls"] for d in c["documents"].values()}
    for request in result["seen"]["requests"]:
        assert {m["sha256"] for m in request["members"].values()} <= sent, request


# --- the document crosses as raw bytes ---------------------------------------------------

@pytest.mark.parametrize("as_", ["bytes", "buffer", "base64"])
def test_a_large_pdf_crosses_as_raw_binary_frames(as_: str) -> None:
    result = run({"features": FEATURES, "options": LOW, "reply": "prefix",
                  "calls": [sign_pdf(50_000, as_)]})
    page_document = result["calls"][0]["documents"]["pdf"]
    assert methods(result) == ["agent.info", "document.upload", "sign.pdf"]
    # the server received exactly the page's bytes, in binary frames, not as text
    assert result["seen"]["uploads"] == [
        {"size": 50_000, "frames": 1, "sha256": page_document["sha256"]}]
    assert binary_bytes(result) == 50_000
    assert max(f["length"] for f in result["seen"]["frames"] if f["type"] == "text") < 500
    assert result["seen"]["requests"][0]["members"]["pdf"]["via"] == "upload"
    assert result["binaryType"] == "arraybuffer"
    assert_signed_as_expected(result)
    # the rest of the answer is passed on as it came
    assert result["calls"][0]["members"] == ["level", "pdf"]


def test_the_answer_with_a_prefix_is_the_uploaded_documents_head_and_the_frame() -> None:
    result = run({"features": FEATURES, "options": LOW, "reply": "prefix",
                  "calls": [sign_pdf(20_000)]})
    assert_signed_as_expected(result)
    # the signed document is longer than the frame: the page put the prefix in front
    # (M = size - 7, N = 3000 + the request's id, 3)
    assert result["calls"][0]["result"]["size"] == 20_000 - 7 + 3000 + 3


@pytest.mark.parametrize("reply", ["binary", "binary-null-prefix"])
def test_the_answer_without_a_prefix_is_the_frame_alone(reply: str) -> None:
    result = run({"features": FEATURES, "options": LOW, "reply": reply,
                  "calls": [sign_pdf(20_000)]})
    assert_signed_as_expected(result)
    assert result["calls"][0]["result"]["size"] == 3000 + 3 + 20_000


def test_an_answer_of_zero_bytes_has_no_frame_and_is_the_prefix() -> None:
    result = run({"features": FEATURES, "options": LOW, "reply": "zero",
                  "calls": [sign_pdf(20_000)]})
    assert_signed_as_expected(result)
    assert result["calls"][0]["result"]["size"] == 20_000 - 7


@pytest.mark.parametrize(("method", "member"), sorted(
    [(m, f) for m, f in DOCUMENT_FIELDS.items()]
    + [(m, f) for m, extra in DOCUMENT_EXTRA_FIELDS.items() for f in extra]))
def test_every_document_member_of_the_agent_is_uploaded(method: str, member: str) -> None:
    documents = {member: {"size": 9000, "as": "bytes", "seed": 3}}
    result = run({"features": FEATURES, "options": LOW, "reply": "prefix",
                  "calls": [{"method": method, "params": {}, "documents": documents}]})
    call = result["calls"][0]
    assert "error" not in call, call
    assert result["seen"]["requests"][0]["members"][member] == {
        "via": "upload", "size": 9000, "sha256": call["documents"][member]["sha256"]}
    if "result" in call:  # a method that answers a document (not signature.verify)
        assert_signed_as_expected(result)


def test_a_signature_and_its_detached_content_are_two_uploads_one_after_the_other() -> None:
    documents = {"signature": {"size": 6000, "as": "bytes", "seed": 4},
                 "data": {"size": 7000, "as": "base64", "seed": 5}}
    result = run({"features": FEATURES, "options": LOW, "reply": "prefix",
                  "calls": [{"method": "signature.verify", "params": {},
                             "documents": documents}]})
    assert methods(result) == ["agent.info", "document.upload", "document.upload",
                               "signature.verify"]
    call = result["calls"][0]
    assert call["members"] == ["format", "signatures"]
    members = result["seen"]["requests"][0]["members"]
    for name in ("signature", "data"):
        assert members[name]["via"] == "upload"
        assert members[name]["sha256"] == call["documents"][name]["sha256"]


def test_two_large_calls_at_once_do_not_mix_their_bytes() -> None:
    # The first upload's id comes late: had the second call's bytes gone out first, they
    # would have filled the first upload (the oldest incomplete one).
    result = run({"features": FEATURES, "options": LOW, "reply": "prefix",
                  "delayFirstUploadAnswer": 300,
                  "calls": [sign_pdf(30_000, seed=6), sign_pdf(40_000, seed=7)]})
    assert_signed_as_expected(result)
    sent = sorted(c["documents"]["pdf"]["sha256"] for c in result["calls"])
    assert sorted(u["sha256"] for u in result["seen"]["uploads"]) == sent
    assert sorted(r["members"]["pdf"]["sha256"] for r in result["seen"]["requests"]) == sent


# --- when the SDK does not upload --------------------------------------------------------

def test_an_agent_without_the_feature_gets_base64_as_before() -> None:
    features = [f for f in FEATURES if f != "document.upload"]
    result = run({"features": features, "options": LOW, "reply": "prefix",
                  "calls": [sign_pdf(50_000)]})
    assert methods(result) == ["agent.info", "sign.pdf"]
    assert binary_bytes(result) == 0
    request = result["seen"]["requests"][0]["members"]["pdf"]
    assert request == {"via": "base64", "size": 50_000,
                       "sha256": result["calls"][0]["documents"]["pdf"]["sha256"]}
    assert_signed_as_expected(result)


def test_features_not_listed_at_connect_are_asked_for_again_before_a_large_document() -> None:
    # agent.info lists features only to a granted origin; still none: base64.
    result = run({"features": None, "options": LOW, "reply": "prefix",
                  "calls": [sign_pdf(50_000)]})
    assert methods(result) == ["agent.info", "agent.info", "sign.pdf"]
    assert binary_bytes(result) == 0
    assert result["seen"]["requests"][0]["members"]["pdf"]["via"] == "base64"
    assert_signed_as_expected(result)


def test_the_default_threshold_is_one_mebibyte_and_a_document_at_it_is_base64() -> None:
    result = run({"features": FEATURES, "reply": "prefix",
                  "calls": [sign_pdf(MIB, seed=8), sign_pdf(MIB + 1, seed=9)]})
    assert result["uploadThreshold"] == MIB
    via = {r["members"]["pdf"]["size"]: r["members"]["pdf"]["via"]
           for r in result["seen"]["requests"]}
    assert via == {MIB: "base64", MIB + 1: "upload"}
    # one upload of MIB + 1 bytes: more than one frame
    assert [u["size"] for u in result["seen"]["uploads"]] == [MIB + 1]
    assert result["seen"]["uploads"][0]["frames"] == 2
    assert_signed_as_expected(result)


@pytest.mark.parametrize("threshold", [4096, 100_000])
def test_the_threshold_option_decides(threshold: int) -> None:
    result = run({"features": FEATURES, "options": {"uploadThreshold": threshold},
                  "reply": "prefix", "calls": [sign_pdf(50_000, "base64")]})
    via = result["seen"]["requests"][0]["members"]["pdf"]["via"]
    assert via == ("upload" if threshold < 50_000 else "base64")
    assert_signed_as_expected(result)


@pytest.mark.parametrize("threshold", [-1, "1000", None])
def test_a_threshold_that_is_not_a_number_of_bytes_is_the_pages_bug(threshold: Any) -> None:
    done = subprocess.run([*_node(), str(DRIVER), SDK.as_uri(), WS_MODULE.as_uri(),
                           json.dumps({"features": FEATURES, "reply": "prefix", "calls": [],
                                       "options": {"uploadThreshold": threshold}})],
                          capture_output=True, text=True, timeout=60, check=False)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["connectError"]["isImzaError"] is False
    assert "uploadThreshold" in result["connectError"]["message"]


def test_the_extension_path_keeps_base64_in_one_message() -> None:
    info = {"result": {"name": "imza-agent", "version": "0.4.0", "protocol": 1,
                       "features": FEATURES}}
    pdf = "JVBERi0xLjcK" * 400  # 3600 bytes of base64
    plan = {"extension": {"open": "opened", "answers": {
        "agent.info": info, "sign.pdf": {"result": {"pdf": "AAAA"}}}},
        "options": {"extensionTimeout": 300, "openTimeout": 300, "infoTimeout": 300,
                    "uploadThreshold": 100},
        "call": {"method": "sign.pdf", "params": {"handle": "h", "pdf": pdf, "level": "B-B"}}}
    done = subprocess.run([*_node(), str(FAKE_PAGE), SDK.as_uri(), json.dumps(plan)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["connected"] == "extension"
    assert result["seen"]["extensionMessages"] == ["agent.info", "sign.pdf"]
    assert result["seen"]["requests"][1]["params"]["pdf"] == pdf
    assert result["value"] == {"pdf": "AAAA"}


# --- a connection that closes mid-transfer -----------------------------------------------

@pytest.mark.parametrize("plan", [
    {"terminateAfterUploadBytes": 1},  # during the upload
    {"reply": "terminate-after-answer"},  # after the answer, before its bytes
    {"reply": "half-then-terminate"},  # in the middle of the answer's bytes
], ids=["upload", "before-answer-bytes", "mid-answer-bytes"])
def test_a_connection_closed_mid_transfer_rejects_the_call_as_connection_lost(
        plan: dict[str, Any]) -> None:
    result = run({"features": FEATURES, "options": LOW, "reply": "prefix",
                  "calls": [sign_pdf(2 * MIB)], **plan})
    error = result["calls"][0]["error"]
    assert error["isImzaError"] is True
    assert (error["kind"], error["reason"]) == ("CONNECTION_LOST", "AGENT_UNAVAILABLE")
    assert result["closeEvents"] == ["CONNECTION_LOST"]


def test_a_message_between_an_answer_and_its_bytes_is_refused() -> None:
    result = run({"features": FEATURES, "options": LOW, "reply": "text-before-bytes",
                  "calls": [sign_pdf(20_000)]})
    error = result["calls"][0]["error"]
    assert error["isImzaError"] is True and error["reason"] == "INTERNAL"
    assert "before the bytes" in error["message"]
