"""Property-based fuzz of the protocol core (hypothesis, in-process).

* ``parse_frame``: any text or bytes gives a Request, Notification or ErrorReply and never
  raises; an ErrorReply is valid JSON-RPC whose only echo of the input is a valid id.
* ``Dispatcher.handle_frame`` with every real method over the fakes: any frame gives one
  JSON-RPC reply (id matching, or null), never raises, and never an INTERNAL error.
* The params models: ``model_validate`` of any JSON raises nothing but ValidationError.

Examples are derandomized and bounded by the "ci" profile (tests/conftest.py); run with
``HYPOTHESIS_PROFILE=deep`` for a long search (docs/testing.md, "Fuzzing").
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import Bench, make_bench
from fuzz.frames import valid_requests
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.methods import register_all
from agent.protocol import jsonrpc
from agent.protocol.base import WireModel
from agent.protocol.catalog import METHODS
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import AuthLoginParams, CertificateFilter, Display, PdfStamp

# --- strategies ---------------------------------------------------------------------------

# A token that must never come back: "<" and ">" keep it out of the plain member names
# the agent may quote (``jsonrpc._PRINTABLE_NAME``), so any echo of it is a leak.
canaries = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=10, max_size=10).map(
    lambda s: f"<{s}>")

huge_ints = st.one_of(st.integers(), st.integers(min_value=2**53 - 2, max_value=2**53 + 2),
                      st.integers(min_value=2**64, max_value=2**400).map(lambda n: -n),
                      st.integers(min_value=2**64, max_value=2**400))


# Any code point, lone surrogates included (st.text leaves them out by default): a page's
# JSON may carry "\ud800", and bytes may decode to anything.
any_chars = st.characters(exclude_categories=()) | st.integers(0xD800, 0xDFFF).map(chr)


def any_text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=any_chars, max_size=max_size)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | huge_ints | text | st.floats(
        allow_nan=False, allow_infinity=False)
    return st.recursive(leaves, lambda kids: st.lists(kids, max_size=4)
                        | st.dictionaries(text, kids, max_size=4), max_leaves=20)


def _text_with(canary: str) -> st.SearchStrategy[str]:
    # Any Unicode, lone surrogates included, and the canary inside.
    return st.one_of(any_text(20), st.just(canary),
                     st.tuples(any_text(5), any_text(5)).map(lambda p: p[0] + canary + p[1]))


valid_ids = st.one_of(st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
                      any_text(256).filter(lambda s: "<" not in s))
invalid_ids = st.one_of(st.text(min_size=257, max_size=300), huge_ints, st.none(),
                        st.booleans(), st.floats(allow_nan=False),
                        st.lists(st.integers(), max_size=2))
method_names = st.sampled_from([*METHODS, "", "x" * 129, "rpc.discover"])


def sometimes(draw: st.DrawFn, in_ten: int) -> bool:
    """True about ``in_ten`` times in ten; shrinks towards False."""
    return draw(st.sampled_from([False] * (10 - in_ten) + [True] * in_ten))


@st.composite
def messages(draw: st.DrawFn, canary: str) -> dict[str, Any]:
    """A JSON-RPC-shaped object, usually well-formed at the top, with any of its members
    missing, mistyped or extra."""
    text = _text_with(canary)
    message: dict[str, Any] = {}
    if sometimes(draw, 9):
        message["jsonrpc"] = "2.0" if sometimes(draw, 8) else draw(
            st.sampled_from(["1.0", 2.0, None]) | text)
    if sometimes(draw, 8):
        message["id"] = draw(valid_ids if sometimes(draw, 8) else invalid_ids)
    if sometimes(draw, 9):
        message["method"] = draw(method_names) if sometimes(draw, 8) else draw(
            text | json_values(text))
    if sometimes(draw, 8):
        params = draw(st.dictionaries(text, json_values(text), max_size=5)
                      | json_values(text))
        template = draw(st.sampled_from(valid_requests()))
        if sometimes(draw, 6):  # the real members, some of them replaced
            params = {**template["params"], **(params if isinstance(params, dict) else {})}
            message["method"] = template["method"]
        message["params"] = params
    if sometimes(draw, 2):  # an unknown member, often named with the canary
        message[draw(st.just(canary) | text)] = draw(json_values(text))
    return message


def _member_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


@st.composite
def frames(draw: st.DrawFn) -> tuple[str | bytes, str]:
    """(frame, canary): a frame as a page could send it, defects included."""
    canary = draw(canaries)
    message = draw(messages(canary))
    members = [f"{json.dumps(k, ensure_ascii=draw(st.booleans()))}:{_member_text(v)}"
               for k, v in message.items()]
    if members and sometimes(draw, 1):
        members.append(draw(st.sampled_from(members)))  # a duplicate member name
    if sometimes(draw, 1):  # a constant or number JSON does not have
        members.append(f'"{canary}":' + draw(st.sampled_from(
            ["NaN", "Infinity", "-Infinity", "1e400", "9" * 5000, "-" + "9" * 4400])))
    text = "{" + ",".join(members) + "}"
    if sometimes(draw, 1):
        depth = draw(st.sampled_from([31, 32, 33, 1000, 100_000]))
        text = "[" * depth + text + "]" * depth
    elif sometimes(draw, 1):
        text = "[" + text + "]"  # a batch
    elif sometimes(draw, 1):
        text = text[: draw(st.integers(0, len(text)))]
    if sometimes(draw, 5):
        return text, canary
    data = text.encode("utf-8", "surrogatepass")
    if sometimes(draw, 2):
        spot = draw(st.integers(0, len(data)))
        data = data[:spot] + draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80"])) \
            + data[spot:]
    return data, canary


any_frame = st.one_of(any_text(200), st.binary(), frames().map(lambda f: f[0]))

# --- parse_frame --------------------------------------------------------------------------


def _input_id(frame: str | bytes) -> tuple[bool, Any]:
    """(has a usable id, the id) as an independent strict reader sees the frame."""
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(message, dict) or "id" not in message:
        return False, None
    return True, message["id"]


def _as_sent(value: Any) -> Any:
    """``value`` as a peer reads it back from JSON: two raw surrogates in a Python string
    (which no text frame can carry) come back joined into one character."""
    return json.loads(json.dumps(value))


def check_error_frame(text: str, canary: str | None = None) -> dict[str, Any]:
    reply = json.loads(text)
    assert isinstance(reply, dict) and reply["jsonrpc"] == "2.0"
    assert set(reply) == {"jsonrpc", "id", "error"}, reply
    error = reply["error"]
    assert isinstance(error["code"], int) and isinstance(error["message"], str)
    assert set(error) <= {"code", "message", "data"}
    if canary is not None:
        assert canary not in json.dumps(error, ensure_ascii=False), reply
    return reply


@given(st.one_of(any_text(200), st.binary()))
def test_parse_frame_never_raises_on_noise(frame: str | bytes) -> None:
    message = jsonrpc.parse_frame(frame)
    assert isinstance(message, jsonrpc.Request | jsonrpc.Notification | jsonrpc.ErrorReply)
    if isinstance(message, jsonrpc.ErrorReply):
        reply = check_error_frame(message.text)
        assert reply["error"]["code"] == message.code


@given(frames())
def test_parse_frame_echoes_nothing_but_a_valid_id(sample: tuple[str | bytes, str]) -> None:
    frame, canary = sample
    message = jsonrpc.parse_frame(frame)
    if isinstance(message, jsonrpc.Request):
        assert isinstance(message.id, str | int) and not isinstance(message.id, bool)
        assert isinstance(message.method, str) and message.method
        assert isinstance(message.params, dict | list)
        return
    if isinstance(message, jsonrpc.Notification):
        return
    assert isinstance(message, jsonrpc.ErrorReply)
    reply = check_error_frame(message.text, canary)
    assert reply["error"]["code"] == message.code
    has_id, sent_id = _input_id(frame)
    if reply["id"] is not None:
        # Only a valid id comes back, and only the one that was sent.
        assert has_id and reply["id"] == _as_sent(sent_id)
        assert isinstance(sent_id, str | int) and not isinstance(sent_id, bool)
        assert isinstance(sent_id, str) or abs(sent_id) <= 2**53 - 1
        assert not isinstance(sent_id, str) or len(sent_id) <= jsonrpc.MAX_ID_CHARS


# --- the dispatcher with every method, over the fakes --------------------------------------


class _Agent:
    """One in-process agent for a whole property: a bench (fake token, scripted UI that
    allows, picks and types the right PIN), the real dispatcher with every method, and an
    event loop that outlives the examples."""

    def __init__(self, tmp: Path) -> None:
        self.runner = asyncio.Runner()
        self.bench: Bench = make_bench(tmp, dialog_timeout=5.0)
        self.bench.issue("signer")
        self.bench.issue("auth", purpose="auth")
        self.bench.answers.set(consent="always", certificate="first", pin="1234")
        self.dispatcher = Dispatcher()
        register_all(self.dispatcher, self.bench.services)
        self.sent: list[str] = []
        self.ctx = CallContext(origin="https://portal.example.az", transport="wss",
                               connection_id="fuzz", send=self._send)
        select = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "certificates.select",
                             "params": {"purpose": "sign"}})
        reply = json.loads(self.frame(select) or "{}")
        self.handle: str = reply["result"]["handle"]

    async def _send(self, frame: str) -> None:
        self.sent.append(frame)

    def frame(self, frame: str | bytes) -> str | None:
        return self.runner.run(asyncio.wait_for(
            self.dispatcher.handle_frame(self.ctx, frame), timeout=60))

    def close(self) -> None:
        self.runner.close()


@pytest.fixture(scope="module")
def agent() -> Iterator[_Agent]:
    with tempfile.TemporaryDirectory(prefix="imza-props-") as tmp:
        agent = _Agent(Path(tmp))
        try:
            yield agent
        finally:
            agent.close()


def _damaged(draw: st.DrawFn, value: Any, text: st.SearchStrategy[str]) -> Any:
    """``value`` with some members replaced by any JSON, dropped, or added."""
    if isinstance(value, dict):
        out = {}
        for name, member in value.items():
            if sometimes(draw, 1):
                continue
            out[name] = draw(json_values(text)) if sometimes(draw, 3) else _damaged(
                draw, member, text)
        if sometimes(draw, 1):
            out[draw(text)] = draw(json_values(text))
        return out
    if isinstance(value, list) and value and sometimes(draw, 2):
        return [_damaged(draw, v, text) for v in value] * draw(st.sampled_from([1, 2, 50]))
    return value


@st.composite
def requests_with_handle(draw: st.DrawFn) -> tuple[str, str]:
    """(frame, canary): a well-formed request of a real method, its handle usually the
    live one (placeholder ``HANDLE``, replaced by the test), its params damaged."""
    canary = draw(canaries)
    template = draw(st.sampled_from(valid_requests("HANDLE")))
    template["id"] = draw(valid_ids)
    template["params"] = _damaged(draw, template["params"], _text_with(canary))
    if sometimes(draw, 2):
        template["params"].pop("handle", None)
        template["params"][draw(st.just("handle") | st.text(max_size=3))] = draw(
            json_values(_text_with(canary)))
    return json.dumps(template, ensure_ascii=draw(st.booleans())), canary


def check_reply(reply: str | None, frame: str | bytes, canary: str | None) -> None:
    message = jsonrpc.parse_frame(frame)
    if isinstance(message, jsonrpc.Notification):
        assert reply is None
        return
    assert reply is not None
    answer = json.loads(reply)
    assert answer["jsonrpc"] == "2.0" and ("result" in answer) != ("error" in answer)
    if isinstance(message, jsonrpc.Request):
        assert answer["id"] == _as_sent(message.id)
    else:  # refused before dispatch: the parser's own reply
        assert reply == message.text
    if "error" in answer:
        error = answer["error"]
        # INTERNAL means an exception the handler did not expect: a bug a frame reached.
        assert error["code"] != 5000, (error, frame[:300])
        if canary is not None:
            assert canary not in json.dumps(error, ensure_ascii=False), (error, frame[:300])


@given(any_frame)
def test_dispatcher_answers_any_frame(agent: _Agent, frame: str | bytes) -> None:
    check_reply(agent.frame(frame), frame, None)


# Half the profile's examples: sign.pdf and sign.xml each start a document worker.
@settings(max_examples=100)
@given(requests_with_handle())
def test_dispatcher_answers_damaged_requests(agent: _Agent, sample: tuple[str, str]) -> None:
    frame, canary = sample
    frame = frame.replace('"HANDLE"', json.dumps(agent.handle))
    check_reply(agent.frame(frame), frame, canary)


# --- the params models --------------------------------------------------------------------

MODELS: list[type[WireModel]] = [*{spec.params for spec in METHODS.values()},
                                 CertificateFilter, PdfStamp, Display]


def _aliases(model: type[WireModel]) -> list[str]:
    return list(model.model_json_schema(by_alias=True).get("properties", {}))


@st.composite
def model_inputs(draw: st.DrawFn) -> tuple[type[WireModel], Any]:
    model = draw(st.sampled_from(sorted(MODELS, key=lambda m: m.__name__)))
    values = json_values(any_text(30))
    names = _aliases(model)
    if names and draw(st.integers(0, 4)):
        data: Any = {name: draw(values) for name in names if draw(st.booleans())}
        data.update(draw(st.dictionaries(any_text(10), values, max_size=2)))
    else:
        data = draw(values)
    return model, data


@given(model_inputs())
def test_params_models_raise_only_validation_errors(sample: tuple[type[WireModel], Any]
                                                     ) -> None:
    model, data = sample
    try:
        model.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        # The dispatcher turns it into INVALID_PARAMS: that must work for every error too.
        reply = check_error_frame(jsonrpc.invalid_params_frame(1, exc))
        assert reply["error"]["code"] == jsonrpc.INVALID_PARAMS


_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="


@given(st.sampled_from(["imza-auth:1", "web-eid:1.0"]),
       st.text(alphabet=_B64_CHARS, min_size=40, max_size=132) | any_text(140))
def test_login_challenge_per_format(token_format: str, challenge: str) -> None:
    """Whatever the challenge, ``auth.login``'s params either refuse it (a ValidationError
    the dispatcher can report) or keep it: web-eid:1.0 signs the very string the page
    sent, imza-auth:1 the bytes it decodes to."""
    try:
        params = AuthLoginParams.model_validate({"challenge": challenge, "format": token_format},
                                                by_alias=True, by_name=False)
    except ValidationError as exc:
        reply = check_error_frame(jsonrpc.invalid_params_frame(1, exc))
        assert [f["field"] for f in reply["error"]["data"]["fields"]] == ["challenge"]
        return
    assert params.challenge == challenge
    if token_format == "web-eid:1.0":
        assert 44 <= len(challenge) <= 128
        assert len(base64.b64decode(challenge, validate=True)) >= 32  # standard base64
    else:
        assert len(params.challenge_bytes) >= 32 and "+" not in challenge
