"""From a text frame to a response frame: parse, look up the method, validate params,
run the handler, serialise the result or the error.

Only ``AgentError``s that the contract lets a page see reach the page with their own
code and message; anything else becomes a generic INTERNAL error, because an
exception's text can hold anything (paths, token data, worse).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from agent.errors import PAGE_VISIBLE, InternalError
from agent.protocol import jsonrpc
from agent.protocol.base import WireModel
from agent.protocol.catalog import METHODS, NOTIFICATIONS

log = logging.getLogger(__name__)

Transport = Literal["wss", "ws", "extension"]
Cleanup = Callable[[], Awaitable[None] | None]
# Turns a handler's result into the response frame; the WebSocket transport passes its own
# for a request whose document came as binary frames (agent/transport/uploads.py).
ResultFrame = Callable[[jsonrpc.JsonRpcId, WireModel], str]
P = TypeVar("P", bound=WireModel)


@dataclass(eq=False)
class CallContext:
    """One connection as handlers see it; the transport creates one per connection and
    passes the same object with every frame of that connection.

    It carries what the transport knows and nothing of the application: what the agent
    keeps per connection (handles, "allow once" grants) lives in ``agent.app`` and is
    dropped through ``on_close``."""

    origin: str  # as the transport saw it (handshake Origin / extension sender), never page data
    transport: Transport
    connection_id: str
    send: Callable[[str], Awaitable[None]] | None = None  # pushes a text frame to the peer
    _cleanups: list[Cleanup] = field(default_factory=list, repr=False)

    async def notify(self, method: str, params: WireModel) -> None:
        """Send an agent → page notification on this connection."""
        expected = NOTIFICATIONS.get(method)
        if expected is None or not isinstance(params, expected):
            raise TypeError(f"{method} is not a notification with params {type(params)}")
        if self.send is None:
            raise RuntimeError("this connection cannot send notifications")
        await self.send(jsonrpc.notification_frame(method, params))

    def on_close(self, cleanup: Cleanup) -> None:
        """Run ``cleanup`` when the connection closes (e.g. end a token subscription)."""
        self._cleanups.append(cleanup)

    async def close(self) -> None:
        """Called by the transport once the connection is gone: run the cleanups, newest
        first; one failing cleanup does not stop the others."""
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                outcome = cleanup()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.debug("cleanup of connection %s failed", self.connection_id,
                          exc_info=True)


@dataclass(frozen=True)
class _Registration:
    params_model: type[WireModel]
    # Params arrive validated as ``params_model``; ``register`` ties the two types.
    handler: Callable[[CallContext, Any], Awaitable[WireModel]]
    result_model: type[WireModel] | None


class Dispatcher:
    def __init__(self) -> None:
        self._methods: dict[str, _Registration] = {}

    def register(self, name: str, params_model: type[P],
                 handler: Callable[[CallContext, P], Awaitable[WireModel]]) -> None:
        """Serve ``name``: params are validated with ``params_model`` before ``handler``
        runs.  A method of the contract must use the contract's params model, so the
        published schema stays true; its handler must return the contract's result."""
        if name in self._methods:
            raise ValueError(f"{name} is already registered")
        spec = METHODS.get(name)
        if spec is not None and params_model is not spec.params:
            raise ValueError(f"{name} takes {spec.params.__name__}, "
                             f"not {params_model.__name__}")
        self._methods[name] = _Registration(params_model, handler,
                                            spec.result if spec else None)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self._methods)

    async def handle_frame(self, ctx: CallContext, text: str | bytes) -> str | None:
        """The response frame for one incoming frame, or None when nothing is owed
        (a client notification, which the contract does not define)."""
        message = jsonrpc.parse_frame(text)
        if isinstance(message, jsonrpc.ErrorReply):
            log.debug("refused a frame from %s: code %d", ctx.origin, message.code)
            return message.text
        if isinstance(message, jsonrpc.Notification):
            return None
        return await self.handle_request(ctx, message)

    async def handle_request(self, ctx: CallContext, request: jsonrpc.Request, *,
                             result_frame: ResultFrame = jsonrpc.result_frame) -> str:
        registration = self._methods.get(request.method)
        if registration is None:
            return jsonrpc.method_not_found_frame(request.id, request.method)
        if not isinstance(request.params, dict):
            return jsonrpc.invalid_params_frame(request.id, "params must be an object")
        if len(request.params) > len(registration.params_model.model_fields) + 8:
            # Validating hundreds of thousands of unknown members costs seconds; a request
            # with that many more members than the method takes is refused uncounted.
            return jsonrpc.invalid_params_frame(
                request.id, "params has more members than the method takes")
        try:
            params = registration.params_model.model_validate(
                request.params, by_alias=True, by_name=False)
        except ValidationError as exc:
            return jsonrpc.invalid_params_frame(request.id, exc)

        log.debug("%s from %s (%s, connection %s)", request.method, ctx.origin,
                  ctx.transport, ctx.connection_id)
        try:
            result = await registration.handler(ctx, params)
            expected = registration.result_model or WireModel
            if not isinstance(result, expected):
                raise TypeError(f"{request.method} returned {type(result).__name__}, "
                                f"not {expected.__name__}")
            return result_frame(request.id, result)
        except PAGE_VISIBLE as exc:
            log.info("%s from %s failed: %s", request.method, ctx.origin, exc.reason)
            return jsonrpc.error_frame(request.id, exc.to_wire())
        except Exception as exc:
            # Not for the page: PinIncorrect, LoginRequired or any bug. Type name only
            # at info; the text and traceback may hold secrets, so debug only.
            log.error("%s from %s: internal error (%s)", request.method, ctx.origin,
                      type(exc).__name__)
            log.debug("traceback of the internal error", exc_info=True)
            return jsonrpc.error_frame(request.id, InternalError().to_wire())
