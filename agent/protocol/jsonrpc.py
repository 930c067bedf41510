"""JSON-RPC 2.0 framing: one text frame in, a request or a ready error frame out; and the
serialisers for results, errors and notifications.

Parsing is defensive because the frame comes from any web page the user visits:
duplicate member names, NaN/Infinity, absurd nesting and huge integers are refused
rather than interpreted, and nothing the sender wrote is echoed back except a valid id.
The frame size limit is the transport's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

MAX_DEPTH = 32  # the deepest real message is about 6 levels
MAX_ID_CHARS = 256
MAX_METHOD_CHARS = 128
_MAX_SAFE_INT = 2**53 - 1  # ids must survive a round trip through a JavaScript number
_TOP_LEVEL = frozenset({"jsonrpc", "id", "method", "params"})
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,40}")

JsonRpcId = str | int


@dataclass(frozen=True)
class Request:
    id: JsonRpcId
    method: str
    params: dict[str, Any] | list[Any]


@dataclass(frozen=True)
class Notification:
    """A message without ``id``. The contract defines none from the client: no answer."""

    method: str
    params: dict[str, Any] | list[Any]


@dataclass(frozen=True)
class ErrorReply:
    """A frame that cannot be dispatched; ``text`` is the response to send."""

    code: int
    text: str


class _FrameError(Exception):
    def __init__(self, code: int, message: str, msg_id: JsonRpcId | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.msg_id = code, message, msg_id


def _refuse_constant(name: str) -> Any:
    raise _FrameError(PARSE_ERROR, f"{name} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Parsers disagree on which duplicate wins; refusing removes the ambiguity.
        raise _FrameError(INVALID_REQUEST, "duplicate member name in an object")
    return obj


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS


def parse_frame(text: str | bytes) -> Request | Notification | ErrorReply:
    try:
        return _parse(text)
    except _FrameError as exc:
        return ErrorReply(exc.code, error_frame(exc.msg_id, _standard_error(
            exc.code, exc.message)))


def _parse(text: str | bytes) -> Request | Notification:
    try:
        message = json.loads(text, object_pairs_hook=_unique_members,
                             parse_constant=_refuse_constant)
    except RecursionError:
        raise _FrameError(PARSE_ERROR, "JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        # JSONDecodeError, and int() refusing thousands of digits; both are ValueError.
        raise _FrameError(PARSE_ERROR, "not valid JSON") from None
    if isinstance(message, list):
        raise _FrameError(INVALID_REQUEST, "batches are not supported; send one object")
    if not isinstance(message, dict):
        raise _FrameError(INVALID_REQUEST, "a request must be a JSON object")
    if _too_deep(message):
        raise _FrameError(INVALID_REQUEST, f"nested deeper than {MAX_DEPTH} levels")

    has_id = "id" in message
    msg_id = message.get("id")
    if has_id and not _valid_id(msg_id):
        raise _FrameError(INVALID_REQUEST, "id must be a string (at most "
                          f"{MAX_ID_CHARS} characters) or an integer")
    reply_id = msg_id if has_id else None
    if message.get("jsonrpc") != "2.0":
        raise _FrameError(INVALID_REQUEST, 'jsonrpc must be "2.0"', reply_id)
    unknown = sorted(set(message) - _TOP_LEVEL)
    if unknown:
        raise _FrameError(INVALID_REQUEST, "unknown member " + _safe_name(unknown[0]),
                          reply_id)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise _FrameError(INVALID_REQUEST, "method must be a non-empty string", reply_id)
    if len(method) > MAX_METHOD_CHARS:
        raise _FrameError(METHOD_NOT_FOUND, "unknown method", reply_id)
    params = message.get("params", {})
    if not isinstance(params, dict | list):
        raise _FrameError(INVALID_REQUEST, "params must be an object", reply_id)
    if not has_id:
        return Notification(method, params)
    assert isinstance(msg_id, str | int)  # _valid_id checked it
    return Request(msg_id, method, params)


def _safe_name(name: object) -> str:
    """A member name fit to quote back: short and plain, or a placeholder."""
    text = str(name)
    return repr(text) if _PRINTABLE_NAME.fullmatch(text) else "(unprintable or too long)"


_STANDARD_REASON = {
    PARSE_ERROR: "PARSE_ERROR",
    INVALID_REQUEST: "INVALID_REQUEST",
    METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
    INVALID_PARAMS: "INVALID_PARAMS",
}


def _standard_error(code: int, message: str, **data: Any) -> dict[str, Any]:
    return {"code": code, "message": message,
            "data": {"reason": _STANDARD_REASON[code], **data}}


# --- serialisers --------------------------------------------------------------------------

def _dumps(message: Mapping[str, Any]) -> str:
    # ASCII output: a lone surrogate in an echoed id can then never break UTF-8 encoding.
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _payload(value: BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(value)


def result_frame(msg_id: JsonRpcId, result: BaseModel | Mapping[str, Any]) -> str:
    return _dumps({"jsonrpc": "2.0", "id": msg_id, "result": _payload(result)})


def error_frame(msg_id: JsonRpcId | None, error: Mapping[str, Any]) -> str:
    """``error`` is a JSON-RPC error object, e.g. ``AgentError.to_wire()``."""
    return _dumps({"jsonrpc": "2.0", "id": msg_id, "error": dict(error)})


def notification_frame(method: str, params: BaseModel | Mapping[str, Any]) -> str:
    return _dumps({"jsonrpc": "2.0", "method": method, "params": _payload(params)})


def method_not_found_frame(msg_id: JsonRpcId, method: str) -> str:
    data = {"method": method} if _PRINTABLE_NAME.fullmatch(method) else {}
    return error_frame(msg_id, _standard_error(METHOD_NOT_FOUND, "unknown method", **data))


def invalid_params_frame(msg_id: JsonRpcId, problem: ValidationError | str) -> str:
    if isinstance(problem, str):
        return error_frame(msg_id, _standard_error(INVALID_PARAMS, problem))
    fields = describe_validation_error(problem)
    summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
    return error_frame(msg_id, _standard_error(
        INVALID_PARAMS, f"invalid params: {summary}", fields=fields))


MAX_REPORTED_PROBLEMS = 10
_PROBLEM_MESSAGE = {"extra_forbidden": "unknown field", "missing": "required"}


def describe_validation_error(exc: ValidationError) -> list[dict[str, str]]:
    """``[{field, problem}]`` without the offending values: they may be huge documents,
    and member names are quoted only when short and plain."""
    problems: list[dict[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        field = wire_field_path(err)
        problem = _PROBLEM_MESSAGE.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        problems.append({"field": field, "problem": problem[:200]})
        if len(problems) == MAX_REPORTED_PROBLEMS:
            break
    return problems


def wire_field_path(err: ErrorDetails) -> str:
    """``filter.keyUsage[0]``: the field as the portal named it.

    Pydantic reports a validated default under its Python name, since no wire name was
    sent; those are camelCased. Unknown fields keep the spelling the sender used."""
    path = ""
    for part in err["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if err["type"] != "extra_forbidden":
            part = to_camel(part)
        name = part if _PRINTABLE_NAME.fullmatch(part) else "(unprintable or too long)"
        path += ("." if path else "") + name
    return path or "params"
