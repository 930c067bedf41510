"""One error taxonomy for the whole agent, typed by what the user or the portal can do.

Every error a page may see is an ``AgentError`` subclass carrying the contract's numeric
``code`` and string ``reason`` (see docs/protocol.md).  Internal conditions that a page
never sees directly (a wrong PIN, which the dialog handles by asking again) are
``AgentError`` subclasses too, so one ``except`` clause catches them all, but they map to
a page-visible error only where the contract says so.

Messages never carry secrets: no PIN, no key material, no document content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    code: ClassVar[int] = 5000
    reason: ClassVar[str] = "INTERNAL"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, **data: Any) -> None:
        self.message = message or self.default_message
        self.data: dict[str, Any] = {k: v for k, v in data.items() if v is not None}
        super().__init__(self.message)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` object of the contract."""
        return {"code": self.code, "message": self.message,
                "data": {"reason": self.reason, **self.data}}


# --- errors the user caused or can fix -------------------------------------------------

class UserCancelled(AgentError):
    code, reason, default_message = 4001, "USER_CANCELLED", "the user cancelled"


class UserTimeout(AgentError):
    code, reason, default_message = 4002, "USER_TIMEOUT", "no answer from the user in time"


class PermissionDenied(AgentError):
    code, reason, default_message = 4003, "PERMISSION_DENIED", "this origin may not do that"


class NoCertificate(AgentError):
    code, reason, default_message = 4004, "NO_CERTIFICATE", "no certificate matches"


class TokenNotPresent(AgentError):
    code, reason, default_message = 4005, "TOKEN_NOT_PRESENT", "the token is not present"


class PinLocked(AgentError):
    """The PIN is blocked; ``data.unlock`` names the way out (PUK, SO PIN, issuer)."""

    code, reason, default_message = 4006, "PIN_LOCKED", "the PIN is locked"


class CertificateInvalid(AgentError):
    code, reason, default_message = 4007, "CERTIFICATE_INVALID", "the certificate is not valid"


class Busy(AgentError):
    code, reason, default_message = 4008, "BUSY", "a request from this origin is waiting"


class NetworkError(AgentError):
    code, reason, default_message = 4009, "NETWORK", "a network service failed"


class Unsupported(AgentError):
    code, reason, default_message = 4010, "UNSUPPORTED", "not supported by this token"


class InvalidHandle(AgentError):
    code, reason, default_message = 4011, "INVALID_HANDLE", "unknown or stale handle"


class TooLarge(AgentError):
    code, reason, default_message = 4012, "TOO_LARGE", "over the size limit"


class RateLimited(AgentError):
    code, reason, default_message = 4013, "RATE_LIMITED", "too many requests"


class InternalError(AgentError):
    """Something on the agent's side failed.  The page learns the class's fixed message and
    a ``detail`` code at most: the text given here is for logs, since it may name a module
    path, a file or a library's exception."""

    code, reason, default_message = 5000, "INTERNAL", "internal error"
    PAGE_DETAILS: ClassVar[frozenset[str]] = frozenset({"MODULE_CRASHED", "MODULE_TIMEOUT",
                                                        "UI_CRASHED"})

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reason": self.reason}
        if self.data.get("detail") in self.PAGE_DETAILS:
            data["detail"] = self.data["detail"]
        return {"code": self.code, "message": self.default_message, "data": data}


# --- token-module failures: the request in flight fails, the agent keeps running ----------

class ModuleCrashed(InternalError):
    """The vendor PKCS#11 module's worker process died; it is restarted on next use."""

    default_message = "the token module stopped working; try again"

    def __init__(self, message: str | None = None, **data: Any) -> None:
        super().__init__(message, detail="MODULE_CRASHED", **data)


class UiCrashed(InternalError):
    """The UI process died or stopped answering while a dialog was up; it is restarted,
    and the request in flight ends (docs/ui-process.md)."""

    default_message = "the agent's window stopped working; try again"

    def __init__(self, message: str | None = None, **data: Any) -> None:
        super().__init__(message, detail="UI_CRASHED", **data)


class ModuleTimeout(InternalError):
    """The vendor module did not answer within ``tokens.call_timeout``."""

    default_message = "the token did not answer in time; try again"

    def __init__(self, message: str | None = None, **data: Any) -> None:
        super().__init__(message, detail="MODULE_TIMEOUT", **data)


class ModuleUnavailable(InternalError):
    """A configured module could not be loaded (missing file, C_Initialize failed)."""

    default_message = "the token module could not be loaded"


# --- internal: handled by the dialog loop, never sent to a page as such -------------------

@dataclass(frozen=True)
class PinStatus:
    """What the token says about its user PIN (CKF_USER_PIN_* and friends)."""

    count_low: bool = False
    final_try: bool = False
    locked: bool = False
    pin_pad: bool = False
    min_length: int = 0
    max_length: int = 0
    to_be_changed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"countLow": self.count_low, "finalTry": self.final_try, "locked": self.locked,
                "pinPad": self.pin_pad, "minLength": self.min_length,
                "maxLength": self.max_length, "toBeChanged": self.to_be_changed}


class PinIncorrect(AgentError):
    """Wrong PIN. The dialog shows ``status`` and asks again; pages never see this."""

    code, reason, default_message = 4001, "PIN_INCORRECT", "wrong PIN"

    def __init__(self, status: PinStatus, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class LoginRequired(AgentError):
    """A key operation needs a login first; the caller asks for the PIN and retries."""

    code, reason, default_message = 5000, "INTERNAL", "login required"


PAGE_VISIBLE: tuple[type[AgentError], ...] = (
    UserCancelled, UserTimeout, PermissionDenied, NoCertificate, TokenNotPresent, PinLocked,
    CertificateInvalid, Busy, NetworkError, Unsupported, InvalidHandle, TooLarge, RateLimited,
    InternalError,
)
