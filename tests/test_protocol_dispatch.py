"""Framing and dispatch: what a page gets back for every kind of frame."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent import PROTOCOL_VERSION, __version__
from agent.errors import (
    AgentError,
    InvalidHandle,
    ModuleCrashed,
    PinIncorrect,
    PinLocked,
    PinStatus,
    UserCancelled,
)
from agent.methods import info
from agent.protocol import jsonrpc
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.enums import HashAlgorithm, Scheme
from agent.protocol.handles import HandleTable
from agent.protocol.params import NoParams, SignHashParams
from agent.protocol.results import SignHashResult, TokenList, TokenState

SECRET = "PIN=271828 /home/user/.secret"


@dataclass
class GrantSet:
    granted: set[str] = field(default_factory=set)

    def has_any_grant(self, origin: str) -> bool:
        return origin in self.granted


@dataclass
class FakeCore:
    policy: GrantSet = field(default_factory=GrantSet)


@dataclass
class FakeServices:
    """What agent.info touches; nothing else is reached."""

    core: FakeCore = field(default_factory=FakeCore)
    formats: Mapping[str, Sequence[str]] = field(
        default_factory=lambda: {"pdf": ("B-B", "B-T")})


SERVICES = FakeServices()
# The test handler's handles: the protocol core keeps none of its own.
HANDLES: HandleTable[str] = HandleTable()


def make_ctx(origin: str = "https://portal.gov.az", granted: bool = True,
             sent: list[str] | None = None) -> CallContext:
    if granted:
        SERVICES.core.policy.granted.add(origin)
    else:
        SERVICES.core.policy.granted.discard(origin)

    async def send(text: str) -> None:
        assert sent is not None
        sent.append(text)

    return CallContext(origin=origin, transport="wss", connection_id="c1",
                       send=send if sent is not None else None)


async def sign_hash(ctx: CallContext, params: SignHashParams) -> SignHashResult:
    target = HANDLES.resolve(params.handle)
    if target == "cancel":
        raise UserCancelled()
    if target == "locked":
        raise PinLocked(unlock="PUK")
    if target == "crash":
        raise ModuleCrashed()
    if target == "bug":
        raise RuntimeError(SECRET)
    if target == "wrong-pin":
        raise PinIncorrect(PinStatus(count_low=True), message=SECRET)
    if target == "bare":
        raise AgentError(SECRET)
    if target == "wrong-type":
        return {"signature": "x"}  # type: ignore[return-value]
    return SignHashResult(signature=params.hash[::-1], scheme=params.scheme or Scheme.ECDSA,
                          hash_algorithm=params.hash_algorithm, certificate=b"cert")


@pytest.fixture
def dispatcher() -> Dispatcher:
    d = Dispatcher()
    info.register(d, SERVICES)  # type: ignore[arg-type]  # a fake with what info reads
    d.register("sign.hash", SignHashParams, sign_hash)
    return d


DIGEST = hashlib.sha256(b"x").digest()


def request(method: str, params: Any = None, msg_id: Any = 1) -> str:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        msg["params"] = params
    return json.dumps(msg)


async def call(d: Dispatcher, ctx: CallContext, frame: str) -> dict[str, Any]:
    reply = await d.handle_frame(ctx, frame)
    assert reply is not None
    return json.loads(reply)


def sign_params(ctx: CallContext, target: str) -> dict[str, Any]:
    return {"handle": HANDLES.issue(target), "hashAlgorithm": "SHA-256",
            "hash": base64.b64encode(DIGEST).decode()}


# --- framing ------------------------------------------------------------------------------

@pytest.mark.parametrize("frame", ["{", "garbage", "", '{"a": NaN}', "[1,", "1" * 5000,
                                   "[" * 100_000 + "]" * 100_000])
async def test_unparseable_frames_are_parse_errors(dispatcher: Dispatcher, frame: str) -> None:
    reply = await call(dispatcher, make_ctx(), frame)
    assert reply["error"]["code"] == -32700
    assert reply["id"] is None
    assert reply["error"]["data"]["reason"] == "PARSE_ERROR"


@pytest.mark.parametrize(("frame", "reply_id"), [
    ('[{"jsonrpc":"2.0","id":1,"method":"agent.info"}]', None),   # batch
    ('"agent.info"', None),                                        # not an object
    ('{"id":1,"method":"agent.info"}', 1),                         # jsonrpc missing
    ('{"jsonrpc":"1.0","id":"a","method":"agent.info"}', "a"),     # wrong version
    ('{"jsonrpc":"2.0","id":1.5,"method":"agent.info"}', None),    # fractional id
    ('{"jsonrpc":"2.0","id":true,"method":"agent.info"}', None),   # boolean id
    ('{"jsonrpc":"2.0","id":null,"method":"agent.info"}', None),   # null id
    ('{"jsonrpc":"2.0","id":{},"method":"agent.info"}', None),     # object id
    ('{"jsonrpc":"2.0","id":9007199254740993,"method":"agent.info"}', None),  # > 2^53
    ('{"jsonrpc":"2.0","id":7,"method":42}', 7),                   # method not a string
    ('{"jsonrpc":"2.0","id":7}', 7),                               # method missing
    ('{"jsonrpc":"2.0","id":7,"method":"agent.info","params":"x"}', 7),
    ('{"jsonrpc":"2.0","id":7,"method":"agent.info","param":{}}', 7),   # unknown member
    ('{"jsonrpc":"2.0","id":7,"id":8,"method":"agent.info"}', None),    # duplicate member
])
async def test_invalid_requests(dispatcher: Dispatcher, frame: str, reply_id: Any) -> None:
    reply = await call(dispatcher, make_ctx(), frame)
    assert reply["error"]["code"] == -32600, reply
    assert reply["error"]["data"]["reason"] == "INVALID_REQUEST"
    assert reply["id"] == reply_id


async def test_deep_nesting_is_refused(dispatcher: Dispatcher) -> None:
    params = {"filter": {}}
    node: dict[str, Any] = params["filter"]
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    reply = await call(dispatcher, make_ctx(), request("certificates.select", params))
    assert reply["error"]["code"] == -32600


async def test_unknown_method(dispatcher: Dispatcher) -> None:
    reply = await call(dispatcher, make_ctx(), request("sign.everything", {}, msg_id="q"))
    assert reply == {"jsonrpc": "2.0", "id": "q", "error": {
        "code": -32601, "message": "unknown method",
        "data": {"reason": "METHOD_NOT_FOUND", "method": "sign.everything"}}}
    huge = "m" * 100 + "\u202e"
    reply = await call(dispatcher, make_ctx(), request(huge, {}))
    assert reply["error"]["code"] == -32601 and "\u202e" not in json.dumps(reply)


async def test_invalid_params_lists_fields_without_values(dispatcher: Dispatcher) -> None:
    ctx = make_ctx()
    huge = "A" * 100_000 + "!"
    params = {"handle": "h", "hashAlgorithm": "MD5", "hash": huge, "x" * 500: 1}
    reply = await call(dispatcher, ctx, request("sign.hash", params, msg_id=3))
    error = reply["error"]
    assert reply["id"] == 3 and error["code"] == -32602
    assert error["data"]["reason"] == "INVALID_PARAMS"
    fields = {f["field"]: f["problem"] for f in error["data"]["fields"]}
    assert set(fields) == {"hashAlgorithm", "hash", "(unprintable or too long)"}
    assert fields["(unprintable or too long)"] == "unknown field"
    assert "hashAlgorithm" in error["message"]
    assert len(json.dumps(reply)) < 2000


async def test_positional_params_are_invalid_params(dispatcher: Dispatcher) -> None:
    reply = await call(dispatcher, make_ctx(), request("sign.hash", ["h", "SHA-256"]))
    assert reply["error"]["code"] == -32602


async def test_client_notification_gets_no_answer(dispatcher: Dispatcher) -> None:
    frame = json.dumps({"jsonrpc": "2.0", "method": "agent.info"})
    assert await dispatcher.handle_frame(make_ctx(), frame) is None


# --- results and errors -------------------------------------------------------------------

async def test_agent_info_for_granted_origin(dispatcher: Dispatcher) -> None:
    reply = await call(dispatcher, make_ctx(), request("agent.info", msg_id="i"))
    assert reply == {"jsonrpc": "2.0", "id": "i", "result": {
        "name": "imza-agent", "version": __version__, "protocol": PROTOCOL_VERSION,
        "origin": "https://portal.gov.az", "transport": "wss",
        "features": ["agent.info", "sign.hash"], "formats": {"pdf": ["B-B", "B-T"]},
        # The digests a page may choose for the formats that let it (docs/protocol.md).
        "digestAlgorithms": {"pdf": ["SHA-256", "SHA-384", "SHA-512"]}}}


async def test_agent_info_for_origin_without_grant(dispatcher: Dispatcher) -> None:
    reply = await call(dispatcher, make_ctx(granted=False), request("agent.info", {}))
    assert reply["result"] == {"name": "imza-agent", "version": __version__,
                               "protocol": PROTOCOL_VERSION}


async def test_successful_call(dispatcher: Dispatcher) -> None:
    ctx = make_ctx()
    reply = await call(dispatcher, ctx, request("sign.hash", sign_params(ctx, "ok"), msg_id=9))
    assert reply["id"] == 9
    assert reply["result"] == {"signature": base64.b64encode(DIGEST[::-1]).decode(),
                               "scheme": "ECDSA", "hashAlgorithm": "SHA-256",
                               "certificate": base64.b64encode(b"cert").decode()}


@pytest.mark.parametrize(("target", "code", "reason"), [
    ("cancel", 4001, "USER_CANCELLED"),
    ("locked", 4006, "PIN_LOCKED"),
    ("crash", 5000, "INTERNAL"),
])
async def test_agent_errors_reach_the_page(dispatcher: Dispatcher, target: str, code: int,
                                           reason: str) -> None:
    ctx = make_ctx()
    reply = await call(dispatcher, ctx, request("sign.hash", sign_params(ctx, target)))
    assert reply["error"]["code"] == code
    assert reply["error"]["data"]["reason"] == reason
    if target == "locked":
        assert reply["error"]["data"]["unlock"] == "PUK"
    if target == "crash":
        assert reply["error"]["data"]["detail"] == "MODULE_CRASHED"


@pytest.mark.parametrize("target", ["bug", "wrong-pin", "bare", "wrong-type"])
async def test_unexpected_failures_are_generic_internal_errors(
        dispatcher: Dispatcher, target: str, caplog: pytest.LogCaptureFixture) -> None:
    ctx = make_ctx()
    with caplog.at_level(logging.INFO, logger="agent.protocol"):
        reply = await dispatcher.handle_frame(
            ctx, request("sign.hash", sign_params(ctx, target), msg_id=5))
    assert reply is not None
    assert json.loads(reply) == {"jsonrpc": "2.0", "id": 5, "error": {
        "code": 5000, "message": "internal error", "data": {"reason": "INTERNAL"}}}
    assert "271828" not in reply
    assert "271828" not in caplog.text  # the text is in the debug traceback only
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_traceback_only_at_debug(dispatcher: Dispatcher,
                                       caplog: pytest.LogCaptureFixture) -> None:
    ctx = make_ctx()
    with caplog.at_level(logging.DEBUG, logger="agent.protocol"):
        await dispatcher.handle_frame(ctx, request("sign.hash", sign_params(ctx, "bug")))
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(debug) == 1


def test_register_refuses_wrong_params_model_and_duplicates(dispatcher: Dispatcher) -> None:
    with pytest.raises(ValueError, match="already registered"):
        dispatcher.register("sign.hash", SignHashParams, sign_hash)  # type: ignore[arg-type]
    d = Dispatcher()
    with pytest.raises(ValueError, match="takes SignHashParams"):
        d.register("sign.hash", NoParams, sign_hash)  # type: ignore[arg-type]


async def test_notifications_and_cleanups() -> None:
    sent: list[str] = []
    ctx = make_ctx(sent=sent)
    tokens = TokenList(tokens=[TokenState(label="ASAN İmza", serial="0042", present=False)])
    await ctx.notify("tokens.changed", tokens)
    assert json.loads(sent[0]) == {"jsonrpc": "2.0", "method": "tokens.changed", "params": {
        "tokens": [{"label": "ASAN İmza", "serial": "0042", "present": False}]}}
    with pytest.raises(TypeError):
        await ctx.notify("tokens.gone", tokens)

    closed: list[str] = []

    async def first() -> None:
        closed.append("async")

    def broken() -> None:
        raise RuntimeError("cleanup failed")

    ctx.on_close(first)
    ctx.on_close(broken)
    ctx.on_close(lambda: closed.append("sync"))
    await ctx.close()
    assert closed == ["sync", "async"]


def test_handles_are_stable_per_target_and_random_across_tables() -> None:
    a: HandleTable[tuple[str, str, str]] = HandleTable()
    b: HandleTable[tuple[str, str, str]] = HandleTable()
    assert a.issue(("store", "token", "cert")) == a.issue(("store", "token", "cert"))
    assert a.issue(("store", "token", "cert")) != b.issue(("store", "token", "cert"))
    assert len(a) == 1
    with pytest.raises(InvalidHandle):
        a.resolve("nope")


def test_serialisers() -> None:
    assert json.loads(jsonrpc.result_frame("x", SignHashResult(
        signature=b"\xff", scheme=Scheme.RSA_PSS, hash_algorithm=HashAlgorithm.SHA512,
        certificate=b"\x00"))) == {"jsonrpc": "2.0", "id": "x", "result": {
            "signature": "/w==", "scheme": "RSASSA-PSS", "hashAlgorithm": "SHA-512",
            "certificate": "AA=="}}
    frame = jsonrpc.error_frame("\udc80", UserCancelled().to_wire())
    assert frame.isascii()
