"""What the worker process does with its one PKCS#11 module (runs inside the worker only).

Answers are plain JSON-able dicts; errors are ``WorkerError(kind, ...)`` whose kinds the
parent maps to ``agent.errors``.  Tokens are named by ``token_id`` ("manufacturer/serial",
or the label when there is no serial) and looked up again on every call, because slot ids
change when a token is re-inserted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import (
    MGF,
    PROTECTED_AUTH,
    Attribute,
    CertificateType,
    Mechanism,
    ObjectClass,
)
from pkcs11 import KeyType as P11KeyType
from pkcs11 import _pkcs11 as pkcs11_impl
from pkcs11 import exceptions as p11x

from agent.keystores.pkcs11.modules import signs_in_one_call
from agent.keystores.pkcs11.wire import PACK_VARIABLE, b64, unb64

CKF_TOKEN_INITIALIZED = 0x400
CKF_HW_SLOT = 0x4  # CK_SLOT_INFO: a reader, not a software token
# CACKey describes every slot as this and puts the reader's name (cut to 32 bytes) in the
# slot's manufacturerID instead (C_GetSlotInfo in CACKey 0.7).
CACKEY_SLOT_DESCRIPTION = "CACKey Slot"
GONE_WAIT = 1.0  # seconds a failed command's token gets to show it was pulled (~0.5 s seen)
CK_UNAVAILABLE_INFORMATION = ctypes.c_ulong(-1).value


class WorkerError(Exception):
    """An answer of ``ok: false``: ``kind`` names the error for the parent.

    ``message`` says what the kind means and nothing else; ``detail`` (the module's
    exception, a path) is only for the parent's log and ``doctor``.  Neither ever holds
    the PIN."""

    def __init__(self, kind: str, message: str, *, detail: str | None = None,
                 **data: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail
        self.data = data


class _RawPin:
    """Hands python-pkcs11 the PIN bytes as they are: it only calls ``.encode()``."""

    __slots__ = ("_value",)

    def __init__(self, value: bytearray) -> None:
        self._value = value

    def encode(self, *_args: object) -> bytes:
        return bytes(self._value)

    def wipe(self) -> None:
        for i in range(len(self._value)):
            self._value[i] = 0

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "_RawPin(***)"


# --- the few raw Cryptoki calls python-pkcs11 does not offer ------------------------------

class _CkVersion(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


def _struct_pack() -> int | None:
    """Cryptoki structs are byte-packed on Windows and naturally aligned elsewhere: the
    platform layer knows; the daemon passes its answer (``wire.PACK_VARIABLE``)."""
    given = os.environ.get(PACK_VARIABLE, "")
    if given.isdigit():
        return int(given) or None
    from agent.platform import current as current_platform

    return current_platform().pkcs11_pack


_PACK = {"_pack_": pack} if (pack := _struct_pack()) else {}

_CkTokenInfo = type("_CkTokenInfo", (ctypes.Structure,), {**_PACK, "_fields_": (
        ("label", ctypes.c_ubyte * 32), ("manufacturerID", ctypes.c_ubyte * 32),
        ("model", ctypes.c_ubyte * 16), ("serialNumber", ctypes.c_ubyte * 16),
        ("flags", ctypes.c_ulong),
        ("ulMaxSessionCount", ctypes.c_ulong), ("ulSessionCount", ctypes.c_ulong),
        ("ulMaxRwSessionCount", ctypes.c_ulong), ("ulRwSessionCount", ctypes.c_ulong),
        ("ulMaxPinLen", ctypes.c_ulong), ("ulMinPinLen", ctypes.c_ulong),
        ("ulTotalPublicMemory", ctypes.c_ulong), ("ulFreePublicMemory", ctypes.c_ulong),
        ("ulTotalPrivateMemory", ctypes.c_ulong), ("ulFreePrivateMemory", ctypes.c_ulong),
        ("hardwareVersion", _CkVersion), ("firmwareVersion", _CkVersion),
        ("utcTime", ctypes.c_ubyte * 16),
    )})


# CK_FUNCTION_LIST up to C_Sign, in the standard's order.
_FUNCTIONS = ("C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList",
              "C_GetSlotList", "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList",
              "C_GetMechanismInfo", "C_InitToken", "C_InitPIN", "C_SetPIN",
              "C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo",
              "C_GetOperationState", "C_SetOperationState", "C_Login", "C_Logout",
              "C_CreateObject", "C_CopyObject", "C_DestroyObject", "C_GetObjectSize",
              "C_GetAttributeValue", "C_SetAttributeValue", "C_FindObjectsInit",
              "C_FindObjects", "C_FindObjectsFinal", "C_EncryptInit", "C_Encrypt",
              "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit", "C_Decrypt",
              "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest",
              "C_DigestUpdate", "C_DigestKey", "C_DigestFinal", "C_SignInit", "C_Sign")

CKU_CONTEXT_SPECIFIC = 2
SIGNATURE_BUFFER = 1024  # an RSA-8192 signature; ECDSA ones are far shorter


class _CkMechanism(ctypes.Structure):
    _fields_ = (("mechanism", ctypes.c_ulong), ("pParameter", ctypes.c_void_p),
                ("ulParameterLen", ctypes.c_ulong))


# Return values of the raw calls → python-pkcs11's exceptions, so both paths fail alike.
_RV_ERRORS: dict[int, type[Exception]] = {
    0x30: p11x.DeviceError, 0x32: p11x.DeviceRemoved, 0x50: p11x.FunctionCancelled,
    0x63: p11x.KeyTypeInconsistent, 0x70: p11x.MechanismInvalid,
    0x71: p11x.MechanismParamInvalid, 0xA0: p11x.PinIncorrect, 0xA1: p11x.PinInvalid,
    0xA2: p11x.PinLenRange, 0xA3: p11x.PinExpired, 0xA4: p11x.PinLocked,
    0xB0: p11x.SessionClosed, 0xB3: p11x.SessionHandleInvalid,
    0xE0: p11x.TokenNotPresent, 0x101: p11x.UserNotLoggedIn,
}


def _check(rv: int, what: str) -> None:
    if rv != 0:
        raise _RV_ERRORS.get(rv, p11x.PKCS11Error)(f"{what}: CKR 0x{rv:08X}")


_CkFunctionList = type("_CkFunctionList", (ctypes.Structure,), {**_PACK, "_fields_": (
    ("version", _CkVersion), *((name, ctypes.c_void_p) for name in _FUNCTIONS))})


class _RawCryptoki:
    """C_GetTokenInfo (for the PIN lengths python-pkcs11 drops) and C_CloseAllSessions,
    through the module's own function list; the library is already loaded and initialised
    by python-pkcs11, ``dlopen`` only returns the same handle."""

    def __init__(self, cdll: ctypes.CDLL) -> None:
        get_list = cdll.C_GetFunctionList
        get_list.restype = ctypes.c_ulong
        get_list.argtypes = (ctypes.POINTER(ctypes.POINTER(_CkFunctionList)),)
        table: Any = ctypes.POINTER(_CkFunctionList)()
        if get_list(ctypes.byref(table)) != 0 or not table:
            raise OSError("C_GetFunctionList failed")
        funcs = table.contents
        self._token_info = ctypes.CFUNCTYPE(
            ctypes.c_ulong, ctypes.c_ulong, ctypes.POINTER(_CkTokenInfo))(funcs.C_GetTokenInfo)
        self._close_all = ctypes.CFUNCTYPE(
            ctypes.c_ulong, ctypes.c_ulong)(funcs.C_CloseAllSessions)
        self._slot_list = ctypes.CFUNCTYPE(
            ctypes.c_ulong, ctypes.c_ubyte, ctypes.POINTER(ctypes.c_ulong),
            ctypes.POINTER(ctypes.c_ulong))(funcs.C_GetSlotList)
        ulong, buf, size = ctypes.c_ulong, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong)
        self._sign_init = ctypes.CFUNCTYPE(
            ulong, ulong, ctypes.POINTER(_CkMechanism), ulong)(funcs.C_SignInit)
        self._login = ctypes.CFUNCTYPE(ulong, ulong, ulong, buf, ulong)(funcs.C_Login)
        self._sign = ctypes.CFUNCTYPE(ulong, ulong, buf, ulong, buf, size)(funcs.C_Sign)

    def sign_once(self, session: int, key: int, mechanism: int, data: bytes,
                  pin: _RawPin | None) -> bytes:
        """C_SignInit, the context-specific login if a PIN is given, and one C_Sign with
        room for any signature (``SIGN_IN_ONE_CALL`` in modules.py says why)."""
        _check(self._sign_init(session, ctypes.byref(_CkMechanism(mechanism, None, 0)), key),
               "C_SignInit")
        if pin is not None:
            secret = ctypes.create_string_buffer(pin.encode(), len(pin))
            try:
                _check(self._login(session, CKU_CONTEXT_SPECIFIC, ctypes.addressof(secret),
                                   len(pin)), "C_Login")
            finally:
                ctypes.memset(secret, 0, len(pin))
        source = ctypes.create_string_buffer(data, len(data))
        out = ctypes.create_string_buffer(SIGNATURE_BUFFER)
        length = ctypes.c_ulong(SIGNATURE_BUFFER)
        _check(self._sign(session, ctypes.addressof(source), len(data), ctypes.addressof(out),
                          ctypes.byref(length)), "C_Sign")
        return out.raw[:length.value]

    def slot_ids(self, token_present: bool) -> list[int] | None:
        """C_GetSlotList honouring the count of the second call (see ``_slots``)."""
        count = ctypes.c_ulong(0)
        if self._slot_list(int(token_present), None, ctypes.byref(count)) != 0:
            return None
        buffer = (ctypes.c_ulong * max(count.value, 1))()
        if self._slot_list(int(token_present), buffer, ctypes.byref(count)) != 0:
            return None
        return [int(buffer[i]) for i in range(count.value)]

    def pin_lengths(self, slot_id: int) -> tuple[int, int] | None:
        info = _CkTokenInfo()
        if self._token_info(slot_id, ctypes.byref(info)) != 0:
            return None

        def clean(value: int) -> int:
            return 0 if value == CK_UNAVAILABLE_INFORMATION else int(value)

        return clean(info.ulMinPinLen), clean(info.ulMaxPinLen)

    def close_all_sessions(self, slot_id: int) -> None:
        self._close_all(slot_id)


# --- errors ---------------------------------------------------------------------------------

_KINDS: tuple[tuple[tuple[type[Exception], ...], str], ...] = (
    ((p11x.PinIncorrect, p11x.PinInvalid, p11x.PinLenRange), "PIN_INCORRECT"),
    ((p11x.PinLocked,), "PIN_LOCKED"),
    ((p11x.PinExpired,), "PIN_EXPIRED"),
    ((p11x.UserPinNotInitialized,), "PIN_NOT_INITIALIZED"),
    ((p11x.TokenNotPresent, p11x.DeviceRemoved, p11x.TokenNotRecognised, p11x.SlotIDInvalid,
      p11x.NoSuchToken), "TOKEN_NOT_PRESENT"),
    ((p11x.UserNotLoggedIn, p11x.SessionHandleInvalid, p11x.SessionClosed), "LOGIN_REQUIRED"),
    ((p11x.MechanismInvalid, p11x.MechanismParamInvalid, p11x.FunctionNotSupported,
      p11x.KeyTypeInconsistent, p11x.ArgumentsBad), "UNSUPPORTED"),
    ((p11x.FunctionCancelled,), "USER_CANCELLED"),
)


_MESSAGES = {
    "PIN_INCORRECT": "wrong PIN", "PIN_LOCKED": "the PIN is locked",
    "PIN_EXPIRED": "the PIN has expired", "PIN_NOT_INITIALIZED": "the user PIN is not set",
    "TOKEN_NOT_PRESENT": "the token is not present",
    "LOGIN_REQUIRED": "log in to the token first",
    "UNSUPPORTED": "the token does not support this", "USER_CANCELLED": "cancelled",
}
INTERNAL_MESSAGE = "the token module failed"


def _kind_of(exc: Exception) -> str:
    for classes, kind in _KINDS:
        if isinstance(exc, classes):
            return kind
    return "INTERNAL"


def _exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__} {exc}".strip()


def _as_worker_error(exc: Exception, what: str) -> WorkerError:
    kind = _kind_of(exc)
    return WorkerError(kind, _MESSAGES.get(kind, INTERNAL_MESSAGE),
                       detail=f"{what}: {_exception_text(exc)}")


# --- object attributes ---------------------------------------------------------------------

def _attr(obj: Any, attribute: Attribute) -> Any:
    """An attribute, or None if the token does not have it or will not show it."""
    try:
        return obj[attribute]
    except (p11x.PKCS11Error, KeyError, ValueError, NotImplementedError, TypeError):
        return None


def _int_bytes(value: Any) -> bytes | None:
    """python-pkcs11 gives big integers as big-endian bytes; strip leading zeros."""
    if value is None:
        return None
    if isinstance(value, int):
        return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    data = bytes(value).lstrip(b"\x00")
    return data or b"\x00"


def _key_type_name(value: Any) -> str | None:
    if value == P11KeyType.RSA:
        return "RSA"
    if value == P11KeyType.EC:
        return "EC"
    return None if value is None else str(getattr(value, "name", value))


def _reader_of(slot: Any) -> str | None:
    """The PC/SC reader a hardware slot stands for: middleware over PC/SC (OpenSC) gives
    the slot the reader's name.  A software slot (SoftHSM) has none."""
    if not int(slot.flags) & CKF_HW_SLOT:
        return None
    description = _text(slot.slot_description)
    if description == CACKEY_SLOT_DESCRIPTION:
        description = _text(slot.manufacturer_id)
    return description or None


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.strip(" \x00")


def _token_id(token: Any) -> str:
    """How the parent names a token: "manufacturer/serial", or the label without a serial."""
    serial = _text(token.serial)
    return f"{_text(token.manufacturer_id)}/{serial}" if serial else _text(token.label)


class LoadedModule:
    """The module, its logged-in sessions (one per token) and the request dispatcher."""

    def __init__(self, path: str, lib: Any, raw: _RawCryptoki | None) -> None:
        self.path = path
        self.lib = lib
        self.raw = raw
        self.sessions: dict[str, Any] = {}
        self._known_slots: dict[int, Any] = {}  # slot id → python-pkcs11 Slot, see _slots
        # Where each token was last found and what its slot offers: enumerating every slot
        # and its mechanisms on each request cost more than the token's own P-256
        # signature.  A cached slot is trusted only after C_GetTokenInfo on it names the
        # same token again (``_find``), so a card swapped in that slot is never used.
        self._slot_of: dict[str, Any] = {}
        self._mechanisms: dict[tuple[int, str], frozenset[Any]] = {}
        # A logged-in token's signing session and the keys found in it, kept from the
        # first signature to the logout (``_drop_session``): a batch's later groups then
        # cost a C_GetTokenInfo and their C_Sign calls, not a session and a key search.
        self._signing: dict[str, _SigningContext] = {}
        self.one_call_sign = signs_in_one_call(path)
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "info": self.info, "tokens": self.tokens, "objects": self.objects,
            "login": self.login, "logout": self.logout, "sign": self.sign,
            "login_sign_logout": self.login_sign_logout, "token": self.token,
        }
        # Changing and unblocking the PIN (the tray and the CLI only; see pin_ops).
        from agent.keystores.pkcs11.pin_ops import pin_operations

        self._ops.update(pin_operations(self))

    @classmethod
    def load(cls, path: str) -> LoadedModule:
        def failed(detail: str) -> WorkerError:
            return WorkerError("LOAD_FAILED", "the token module could not be loaded",
                               detail=detail)

        if not os.path.exists(path):
            raise failed(f"module file not found: {path}")
        try:
            cdll = ctypes.CDLL(path)
        except OSError as exc:
            raise failed(f"cannot load the library: {exc}") from exc
        if not hasattr(cdll, "C_GetFunctionList"):
            raise failed(f"not a PKCS#11 library (no C_GetFunctionList): {path}")
        try:
            lib = pkcs11.lib(path)
        except p11x.PKCS11Error as exc:
            detail = f"C_GetFunctionList/C_Initialize failed: {_exception_text(exc)}"
            raise failed(detail) from exc
        try:
            raw: _RawCryptoki | None = _RawCryptoki(cdll)
        except (OSError, AttributeError, ValueError):
            raw = None
        return cls(path, lib, raw)

    def handle(self, op: Any, args: dict[str, Any]) -> Any:
        handler = self._ops.get(op) if isinstance(op, str) else None
        if handler is None:
            raise WorkerError("BAD_REQUEST", INTERNAL_MESSAGE, detail=f"unknown operation {op!r}")
        try:
            return handler(args)
        except WorkerError:
            raise
        except p11x.PKCS11Error as exc:
            raise _as_worker_error(exc, str(op)) from exc
        except Exception as exc:  # a bug here must not take the worker down
            raise WorkerError("INTERNAL", INTERNAL_MESSAGE,
                              detail=f"{op}: {_exception_text(exc)}") from exc

    def close(self) -> None:
        for token_id in list(self.sessions):
            self._drop_session(token_id)

    # --- module and tokens ---------------------------------------------------------------

    def info(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            "manufacturer": _text(self.lib.manufacturer_id),
            "description": _text(self.lib.library_description),
            "library_version": ".".join(map(str, self.lib.library_version)),
            "cryptoki_version": ".".join(map(str, self.lib.cryptoki_version)),
            "slots": len(self._slots(token_present=False)),
        }

    def _slots(self, *, token_present: bool) -> list[Any]:
        """The module's slots.  A module may answer C_GetSlotList's size query with more
        than it then fills in (CACKey 0.7 does, on every call after its first), which
        PKCS#11 allows; python-pkcs11 then asks C_GetSlotInfo about the unfilled ids and
        fails with CKR_SLOT_ID_INVALID.  Then the ids come from our own C_GetSlotList and
        the slots from an earlier listing (a slot id stays with its reader)."""
        try:
            slots = self.lib.get_slots(token_present=token_present)
        except p11x.SlotIDInvalid:
            ids = self.raw.slot_ids(token_present) if self.raw else None
            if ids is None:
                raise
            return [self._known_slots[i] for i in ids if i in self._known_slots]
        self._known_slots.update((int(slot.slot_id), slot) for slot in slots)
        return list(slots)

    def _present(self) -> Iterator[tuple[Any, Any]]:
        for slot in self._slots(token_present=True):
            try:
                token = slot.get_token()
            except p11x.PKCS11Error as exc:
                # Removed meanwhile, or broken: either way not a token to offer, and one
                # bad slot must not hide the others.
                if not isinstance(exc, p11x.TokenNotPresent | p11x.DeviceRemoved):
                    print(f"pkcs11 worker: slot {slot.slot_id}: {type(exc).__name__}",
                          file=sys.stderr)
                continue
            yield slot, token

    def _describe(self, slot: Any, token: Any) -> dict[str, Any]:
        manufacturer = _text(token.manufacturer_id)
        serial = _text(token.serial)
        label = _text(token.label)
        lengths = self.raw.pin_lengths(slot.slot_id) if self.raw else None
        min_len, max_len = lengths or (0, 0)
        return {
            "token_id": _token_id(token),
            "label": label, "manufacturer": manufacturer, "model": _text(token.model),
            "serial": serial, "slot": int(slot.slot_id), "flags": int(token.flags),
            "min_pin": min_len, "max_pin": max_len, "reader": _reader_of(slot),
        }

    def tokens(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        found = [self._describe(slot, token) for slot, token in self._present()]
        # An empty, never initialised token (SoftHSM's spare slot) is nothing to show.
        found = [item for item in found
                 if item["flags"] & CKF_TOKEN_INITIALIZED or item["label"]]
        present = {item["token_id"] for item in found}
        for token_id in list(self.sessions):
            if token_id not in present:
                self.sessions.pop(token_id, None)  # its handle died with the token
                self._signing.pop(token_id, None)
        for token_id in list(self._slot_of):
            if token_id not in present:
                self._forget_slot(token_id)
        return found

    def token(self, args: dict[str, Any]) -> dict[str, Any]:
        """One token's description, read now (its slot from ``_find``'s cache)."""
        return self._describe(*self._find(args["token_id"]))

    def _find(self, token_id: str) -> tuple[Any, Any]:
        slot = self._slot_of.get(token_id)
        if slot is not None:
            try:
                token = slot.get_token()  # C_GetTokenInfo: is it still this token?
                if _token_id(token) == token_id:
                    return slot, token
            except p11x.PKCS11Error:
                pass  # pulled, or the slot is gone: look everywhere
            self._forget_slot(token_id)
        for slot, token in self._present():
            if _token_id(token) == token_id:
                self._slot_of[token_id] = slot
                return slot, token
        raise WorkerError("TOKEN_NOT_PRESENT", "the token is not present")

    def _forget_slot(self, token_id: str) -> None:
        slot = self._slot_of.pop(token_id, None)
        if slot is not None:
            self._mechanisms.pop((int(slot.slot_id), token_id), None)

    def _offers(self, slot: Any, token_id: str, mechanism: Mechanism) -> bool:
        """Whether the token offers ``mechanism``; the list is read once per token in
        its slot (``_find`` drops it when the token leaves the slot)."""
        key = (int(slot.slot_id), token_id)
        offered = self._mechanisms.get(key)
        if offered is None:
            offered = self._mechanisms[key] = frozenset(slot.get_mechanisms())
        return mechanism in offered

    def _status(self, token_id: str, slot: Any = None) -> dict[str, Any] | None:
        """The token's description re-read now (after a failed login), if still there.
        Given its slot, only C_GetTokenInfo is asked: CACKey forgets the PIN flags of
        the failed login when C_GetSlotList runs after it."""
        try:
            if slot is not None:
                described = self._describe(slot, slot.get_token())
                if described["token_id"] == token_id:
                    return described
            return self._describe(*self._find(token_id))
        except (WorkerError, p11x.PKCS11Error):
            return None

    def _gone(self, token_id: str) -> bool:
        """Whether the token left, given the reader a moment to notice (a card pulled
        mid-command fails the command before PC/SC reports it absent)."""
        deadline = time.monotonic() + GONE_WAIT
        while True:
            # Look through the slot list, not the cached slot: OpenSC answers
            # C_GetTokenInfo from its cache until a slot listing notices the card left.
            self._forget_slot(token_id)
            if self._status(token_id) is None:
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    # --- listing objects, never logging in -------------------------------------------------

    def objects(self, args: dict[str, Any]) -> dict[str, Any]:
        _slot, token = self._find(args["token_id"])
        logged_in = self.sessions.get(args["token_id"])
        session = logged_in or token.open()
        try:
            return {
                "certificates": self._certificates(session),
                "private_keys": [self._key_entry(k, private=True) for k in
                                 _find(session, ObjectClass.PRIVATE_KEY)],
                "public_keys": [self._key_entry(k, private=False) for k in
                                _find(session, ObjectClass.PUBLIC_KEY)],
            }
        finally:
            if logged_in is None:
                session.close()

    @staticmethod
    def _certificates(session: Any) -> list[dict[str, Any]]:
        found = []
        for cert in _find(session, ObjectClass.CERTIFICATE):
            cert_type = _attr(cert, Attribute.CERTIFICATE_TYPE)
            value = _attr(cert, Attribute.VALUE)
            if cert_type not in (None, CertificateType.X_509) or not value:
                continue
            found.append({"der": b64(_raw_value(value)), "id": b64(_attr(cert, Attribute.ID)),
                          "label": _text(_attr(cert, Attribute.LABEL))})
        return found

    @staticmethod
    def _key_entry(key: Any, *, private: bool) -> dict[str, Any]:
        key_type = _key_type_name(_attr(key, Attribute.KEY_TYPE))
        entry: dict[str, Any] = {"id": b64(_attr(key, Attribute.ID)), "key_type": key_type,
                                 "label": _text(_attr(key, Attribute.LABEL))}
        if key_type == "RSA":
            entry["modulus"] = b64(_int_bytes(_attr(key, Attribute.MODULUS)))
            if not private:
                entry["exponent"] = b64(_int_bytes(_attr(key, Attribute.PUBLIC_EXPONENT)))
        elif key_type == "EC":
            entry["ec_point"] = b64(_attr(key, Attribute.EC_POINT))
        if private:
            entry["always_authenticate"] = _attr(key, Attribute.ALWAYS_AUTHENTICATE)
        return entry

    # --- login ------------------------------------------------------------------------------

    def login(self, args: dict[str, Any]) -> dict[str, Any]:
        token_id = args["token_id"]
        self._login_found(token_id, *self._find(token_id), args)
        return {"logged_in": True}

    def _login_found(self, token_id: str, slot: Any, token: Any, args: dict[str, Any]) -> None:
        self._drop_session(token_id)
        pin: _RawPin | None = None
        if args.get("pin_pad"):
            user_pin: Any = PROTECTED_AUTH
        else:
            pin = _RawPin(bytearray(unb64(args["pin"]) or b""))
            user_pin = pin
        try:
            self.sessions[token_id] = token.open(user_pin=user_pin)
        except p11x.ArgumentsBad as exc:
            raise WorkerError("UNSUPPORTED", "the token has no PIN pad") from exc
        except p11x.UserAlreadyLoggedIn:
            # Another session of ours is still logged in; the PIN was not checked again.
            self._close_all(slot)
            self.sessions[token_id] = token.open(user_pin=user_pin)
        except p11x.PKCS11Error as exc:
            # python-pkcs11 leaves the session it opened before C_Login failed.
            self._close_all(slot)
            error = _as_worker_error(exc, "login")
            error.data["token"] = self._status(token_id, slot)
            raise error from exc
        finally:
            if pin is not None:
                pin.wipe()

    def _close_all(self, slot: Any) -> None:
        if self.raw is not None:
            self.raw.close_all_sessions(slot.slot_id)

    def logout(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"logged_out": self._drop_session(args["token_id"])}

    def _drop_session(self, token_id: str) -> bool:
        self._drop_signing(token_id)
        session = self.sessions.pop(token_id, None)
        if session is None:
            return False
        # The token may be gone already; the session is dead either way.
        with contextlib.suppress(p11x.PKCS11Error):
            session.close()
        return True

    # --- signing ----------------------------------------------------------------------------

    def login_sign_logout(self, args: dict[str, Any]) -> dict[str, Any]:
        """``login``, ``sign`` and (unless ``stay_logged_in``: more chunks of a batch
        follow) ``logout`` in one request: one token lookup and one round trip instead of
        three.  The PIN (or the PIN pad) is the login's; a key that wants it again per
        signature (CKA_ALWAYS_AUTHENTICATE, often visible only after login) gets the same
        one.  Any failure logs out."""
        token_id = args["token_id"]
        slot, token = self._find(token_id)
        done = False
        try:
            self._login_found(token_id, slot, token, args)
            answer = self._sign_found(token_id, slot, token, args)
            done = True
            return answer
        finally:
            if not (done and args.get("stay_logged_in")):
                self._drop_session(token_id)

    def sign(self, args: dict[str, Any]) -> dict[str, Any]:
        token_id = args["token_id"]
        if token_id not in self.sessions:
            raise WorkerError("LOGIN_REQUIRED", "log in to the token first")
        # _find still asks the token (C_GetTokenInfo) on every call: a card pulled or
        # swapped between two groups of a batch is noticed before its next signature.
        return self._sign_found(token_id, *self._find(token_id), args)

    def _signing_context(self, token_id: str, slot: Any, token: Any) -> _SigningContext:
        signing = self._signing.get(token_id)
        if signing is not None and signing.slot is not slot:
            self._drop_signing(token_id)  # found elsewhere since: not the same session
            signing = None
        if signing is None:
            # A sibling session shares the login but not the operation state: an
            # operation left active by a failed context-specific login dies with it
            # (every failure drops it, ``_drop_signing``).
            signing = _SigningContext(slot, token, token.open())
            if token_id in self.sessions:  # kept only while the login lasts
                self._signing[token_id] = signing
        return signing

    def _drop_signing(self, token_id: str, signing: _SigningContext | None = None) -> None:
        kept = self._signing.pop(token_id, None)
        for context in {id(c): c for c in (kept, signing) if c is not None}.values():
            with contextlib.suppress(p11x.PKCS11Error):  # the token may be gone already
                context.session.close()

    def _sign_found(self, token_id: str, slot: Any, token: Any,
                    args: dict[str, Any]) -> dict[str, Any]:
        mechanism = Mechanism[args["mechanism"]]
        if not self._offers(slot, token_id, mechanism):
            raise WorkerError("UNSUPPORTED", f"the token does not offer {mechanism.name}")
        signing: _SigningContext | None = None
        try:
            signing = self._signing_context(token_id, slot, token)
            answer = self._sign_in(signing, token_id, mechanism, args)
        except (p11x.UserNotLoggedIn, p11x.SessionHandleInvalid, p11x.SessionClosed) as exc:
            self._drop_session(token_id)
            self._drop_signing(token_id, signing)
            if self._gone(token_id):
                # A card pulled mid-signature: depending on when, OpenSC answers "not
                # logged in" or "session closed" rather than CKR_DEVICE_REMOVED.
                raise WorkerError("TOKEN_NOT_PRESENT", _MESSAGES["TOKEN_NOT_PRESENT"]
                                  ) from exc
            raise WorkerError("LOGIN_REQUIRED", "the token logged out") from exc
        except BaseException:
            # An operation may be left active in the session (a failed context-specific
            # login): the next signature starts in a fresh one.
            self._drop_signing(token_id, signing)
            raise
        if token_id not in self._signing:
            self._drop_signing(token_id, signing)  # not kept: no login of ours behind it
        return answer

    def _sign_in(self, signing: _SigningContext, token_id: str, mechanism: Mechanism,
                 args: dict[str, Any]) -> dict[str, Any]:
        session = signing.session
        found = signing.keys.get(_key_hint(args))
        if found is None:
            key = self._resolve_key(session, args)
            if key is None:
                raise WorkerError("KEY_NOT_FOUND", "the private key is not on the token")
            key = _signable(key)
            found = signing.keys[_key_hint(args)] = _FoundKey(
                key, b64(_attr(key, Attribute.ID)),
                bool(_attr(key, Attribute.ALWAYS_AUTHENTICATE)))
        key = found.key
        pin: _RawPin | None = None
        if found.always_authenticate:
            if args.get("pin_pad"):
                raise WorkerError(
                    "UNSUPPORTED", "PIN-pad confirmation per signature is not supported")
            if args.get("pin") is None:
                raise WorkerError("LOGIN_REQUIRED", "this key asks for the PIN on every use",
                                  context=True)
            pin = _RawPin(bytearray(unb64(args["pin"]) or b""))
        # A batch ("data_list") resolves the key once and signs every item in this session.
        items = args["data_list"] if "data_list" in args else [args["data"]]
        param = _mechanism_param(args.get("pss"))
        raw = self.raw if self.one_call_sign and param is None else None
        try:
            if raw is not None:
                signatures = [b64(raw.sign_once(session.handle, key.wrapper.handle,
                                                int(mechanism), unb64(item) or b"", pin))
                              for item in items]
            else:
                signatures = [b64(key.sign(unb64(item), mechanism=mechanism,
                                           mechanism_param=param, pin=pin)) for item in items]
        except (p11x.UserNotLoggedIn, p11x.SessionHandleInvalid, p11x.SessionClosed):
            raise
        except p11x.PKCS11Error as exc:
            error = _as_worker_error(exc, "sign")
            if error.kind.startswith("PIN_"):
                error.data["token"] = self._status(token_id)
            elif error.kind == "INTERNAL" and self._gone(token_id):
                # A card pulled mid-operation: OpenSC answers CKR_GENERAL_ERROR, not
                # CKR_DEVICE_REMOVED.  What the caller must hear is that it is gone.
                error = WorkerError("TOKEN_NOT_PRESENT", _MESSAGES["TOKEN_NOT_PRESENT"],
                                    detail=error.detail)
            raise error from exc
        finally:
            if pin is not None:
                pin.wipe()
        return {"signature": signatures[0], "signatures": signatures,
                "key_id": found.key_id, "pin_per_signature": pin is not None}

    def _resolve_key(self, session: Any, args: dict[str, Any]) -> Any:
        """The private key: by CKA_ID, else by the certificate's public key, now that
        private objects are visible."""
        key_id = unb64(args.get("key_id"))
        if key_id:
            for key in _find(session, ObjectClass.PRIVATE_KEY, key_id):
                return key
        modulus = unb64(args.get("modulus"))
        ec_point = unb64(args.get("ec_point"))
        if modulus is None and ec_point is None:
            return None
        for public in _find(session, ObjectClass.PUBLIC_KEY):
            if _same_public_key(self._key_entry(public, private=False), modulus, ec_point):
                public_id = _attr(public, Attribute.ID)
                if public_id:
                    for key in _find(session, ObjectClass.PRIVATE_KEY, public_id):
                        return key
        for key in _find(session, ObjectClass.PRIVATE_KEY):
            entry = self._key_entry(key, private=True)
            if _same_public_key(entry, modulus, ec_point):
                return key
        return None


@dataclass
class _FoundKey:
    """A private key found in a signing session, with what each signature asks of it."""

    key: Any
    key_id: str | None
    always_authenticate: bool


@dataclass
class _SigningContext:
    """A logged-in token's signing session (a sibling of the login's), where it was found
    and the keys found in it, by the caller's hint (``_key_hint``)."""

    slot: Any
    token: Any
    session: Any
    keys: dict[tuple[str | None, ...], _FoundKey] = field(default_factory=dict)


def _key_hint(args: dict[str, Any]) -> tuple[str | None, ...]:
    """How a request names its key: CKA_ID, else the certificate's public key."""
    return args.get("key_id"), args.get("modulus"), args.get("ec_point")


def _signable(key: Any) -> Any:
    """The key with python-pkcs11's sign().  python-pkcs11 reads a key's capabilities in
    one C_GetAttributeValue call; CACKey fails that call for the attributes it does not
    know yet answers CKA_SIGN on its own, and the key then comes without sign().  Asked
    alone, a key that says CKA_SIGN gets it back."""
    if hasattr(key, "sign") or _attr(key, Attribute.SIGN) is not True:
        return key
    mixin = pkcs11_impl.SignMixin  # type: ignore[attr-defined]  # not in its stubs
    with_sign = type(type(key).__name__, (mixin, type(key)), {})
    return with_sign(key.wrapper)


def _find(session: Any, object_class: ObjectClass, object_id: bytes | None = None) -> list[Any]:
    """All matching objects. A list, never a lazy iterator: a search left open
    (no C_FindObjectsFinal) makes the next operation on the session fail."""
    template: dict[Attribute, Any] = {Attribute.CLASS: object_class}
    if object_id is not None:
        template[Attribute.ID] = object_id
    return list(session.get_objects(template))


def _same_public_key(entry: dict[str, Any], modulus: bytes | None,
                     ec_point: bytes | None) -> bool:
    if modulus is not None and entry.get("modulus"):
        return unb64(entry["modulus"]) == modulus
    if ec_point is not None and entry.get("ec_point"):
        raw = unb64(entry["ec_point"]) or b""
        return raw == ec_point or _unwrap_octet_string(raw) == ec_point
    return False


def _unwrap_octet_string(data: bytes) -> bytes | None:
    """CKA_EC_POINT is usually a DER OCTET STRING around the X9.62 point."""
    if len(data) < 2 or data[0] != 0x04:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[2:2 + count], "big")
        offset = 2 + count
    body = data[offset:]
    return body if len(body) == length else None


def _raw_value(value: Any) -> bytes:
    # CKA_VALUE of a certificate is mapped as a "big integer" by python-pkcs11: bytes.
    return value if isinstance(value, bytes) else _int_bytes(value) or b""


_HASH_MECHANISMS = {"SHA256": (Mechanism.SHA256, MGF.SHA256),
                    "SHA384": (Mechanism.SHA384, MGF.SHA384),
                    "SHA512": (Mechanism.SHA512, MGF.SHA512)}


def _mechanism_param(pss: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if not pss:
        return None
    hash_mech, mgf = _HASH_MECHANISMS[pss["hash"]]
    return hash_mech, mgf, int(pss["salt"])
