"""PIN management inside the worker process: change the user PIN, unblock it with the
PUK / SO PIN.  Runs inside the worker only, next to ``worker_ops``.

``change_pin``: C_SetPIN(old, new) in a read/write session that is not logged in, which
changes the user PIN.  ``unblock_pin`` has two styles, because PKCS#11 leaves unblocking
to the module:

* ``so_init_pin`` (the standard one, SoftHSM and most vendor modules): C_Login as the
  security officer with the PUK / SO PIN, then C_InitPIN(new).
* ``set_pin_unlogged``: C_SetPIN(PUK, new) in a session nobody is logged in to.  OpenSC
  unblocks a card's PIN this way (RESET RETRY COUNTER) when its configuration says
  ``user_pin_unblock_style = set_pin_in_unlogged_session``; with its default ("none") it
  cannot unblock at all, and its ``init_pin_in_so_session`` fails on PIV cards, whose SO
  PIN is the PUK itself (OpenSC's opensc.conf(5) and src/pkcs11/framework-pkcs15.c).
  The parent starts this worker with such a configuration (``pin_management``).

Both first end this worker's own sessions on the token: a user login held for signing
would make the SO login fail (CKR_USER_ANOTHER_ALREADY_LOGGED_IN), and after a new PIN the
next signature should ask for it anyway.  PINs arrive base64-encoded, are decoded into
bytearrays and wiped after the call, like the login's (``_RawPin``).  Every error names
its kind and carries the token's flags as they are after the failure, so the caller can
tell the person how many tries are left, where the token says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pkcs11 import exceptions as p11x

from agent.keystores.pkcs11.wire import unb64
from agent.keystores.pkcs11.worker_ops import WorkerError, _as_worker_error, _RawPin

if TYPE_CHECKING:
    from agent.keystores.pkcs11.worker_ops import LoadedModule

# Error kinds of these operations (``agent.keystores.pkcs11.pin_management`` maps them).
WRONG_PIN = "WRONG_PIN"
WRONG_PUK = "WRONG_PUK"
PIN_LOCKED = "PIN_LOCKED"
PUK_LOCKED = "PUK_LOCKED"
PIN_LENGTH = "PIN_LENGTH"
PIN_REJECTED = "PIN_REJECTED"

# The new PIN passed the token's stated length rule (``_check_length``) and the token
# refused it all the same: a card with stricter rules of its own (PIV: 6-8 digits).
_REFUSED_ERRORS = (p11x.PinLenRange, p11x.PinInvalid, p11x.DataInvalid)


def pin_operations(module: LoadedModule) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """The operations to add to ``module``'s dispatcher."""
    return {"change_pin": lambda args: change_pin(module, args),
            "unblock_pin": lambda args: unblock_pin(module, args)}


def _raw(args: dict[str, Any], name: str) -> tuple[_RawPin, int]:
    """The PIN, and its length in bytes (known without another copy of it)."""
    value = bytearray(unb64(args.get(name)) or b"")
    return _RawPin(value), len(value)


def _check_length(module: LoadedModule, slot: Any, size: int) -> None:
    """The token's own length rule, checked before the token is asked: a module that
    took a too-long PIN as just a wrong one would cost the person a try."""
    lengths = module.raw.pin_lengths(slot.slot_id) if module.raw else None
    low, high = lengths or (0, 0)
    if (low and size < low) or (high and size > high) or size == 0:
        raise WorkerError(PIN_LENGTH, "the new PIN's length is out of range",
                          min_pin=low, max_pin=high)


def _failure(module: LoadedModule, token_id: str, kind: str, message: str,
             exc: Exception | None = None) -> WorkerError:
    detail = f"{type(exc).__name__}" if exc is not None else None
    error = WorkerError(kind, message, detail=detail)
    error.data["token"] = module._status(token_id)
    return error


def _fresh_start(module: LoadedModule, token_id: str, slot: Any) -> None:
    module._drop_session(token_id)
    module._close_all(slot)


def change_pin(module: LoadedModule, args: dict[str, Any]) -> dict[str, Any]:
    _set_pin(module, args, "old", (WRONG_PIN, "wrong PIN"), (PIN_LOCKED, "the PIN is locked"),
             "change_pin")
    return {"changed": True, "token": module._status(args["token_id"])}


def _set_pin(module: LoadedModule, args: dict[str, Any], old_field: str,
             wrong: tuple[str, str], locked: tuple[str, str], what: str) -> None:
    """C_SetPIN(old, new) in an R/W session nobody is logged in to: a change with the old
    PIN, or OpenSC's unblock with the PUK as the "old" one."""
    token_id = args["token_id"]
    (old, _), (new, new_size) = _raw(args, old_field), _raw(args, "new")
    try:
        slot, token = module._find(token_id)
        _check_length(module, slot, new_size)
        _fresh_start(module, token_id, slot)
        try:
            with token.open(rw=True) as session:
                session.set_pin(old, new)
        except p11x.PinIncorrect as exc:
            raise _failure(module, token_id, *wrong, exc) from exc
        except p11x.PinLocked as exc:
            raise _failure(module, token_id, *locked, exc) from exc
        except _REFUSED_ERRORS as exc:
            raise _failure(module, token_id, PIN_REJECTED,
                           "the token refused the new PIN", exc) from exc
        except p11x.PKCS11Error as exc:
            raise _as_worker_error(exc, what) from exc
        finally:
            module._close_all(slot)
    finally:
        old.wipe()
        new.wipe()


def unblock_pin(module: LoadedModule, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("style") == "set_pin_unlogged":
        return _unblock_by_set_pin(module, args)
    token_id = args["token_id"]
    (puk, _), (new, new_size) = _raw(args, "puk"), _raw(args, "new")
    try:
        slot, token = module._find(token_id)
        _check_length(module, slot, new_size)
        _fresh_start(module, token_id, slot)
        try:
            session = token.open(rw=True, so_pin=puk)
        except p11x.PinIncorrect as exc:
            module._close_all(slot)  # python-pkcs11 leaves the session C_Login failed in
            raise _failure(module, token_id, WRONG_PUK, "wrong PUK", exc) from exc
        except p11x.PinLocked as exc:
            module._close_all(slot)
            raise _failure(module, token_id, PUK_LOCKED, "the PUK is locked", exc) from exc
        except p11x.PKCS11Error as exc:
            module._close_all(slot)
            raise _as_worker_error(exc, "unblock_pin (SO login)") from exc
        try:
            session.init_pin(new)
        except _REFUSED_ERRORS as exc:
            raise _failure(module, token_id, PIN_REJECTED,
                           "the token refused the new PIN", exc) from exc
        except p11x.PKCS11Error as exc:
            raise _as_worker_error(exc, "unblock_pin (C_InitPIN)") from exc
        finally:
            module._close_all(slot)  # logs the security officer out
    finally:
        puk.wipe()
        new.wipe()
    return {"unblocked": True, "token": module._status(token_id)}


def _unblock_by_set_pin(module: LoadedModule, args: dict[str, Any]) -> dict[str, Any]:
    _set_pin(module, args, "puk", (WRONG_PUK, "wrong PUK"), (PUK_LOCKED, "the PUK is locked"),
             "unblock_pin (C_SetPIN with the PUK)")
    return {"unblocked": True, "token": module._status(args["token_id"])}
