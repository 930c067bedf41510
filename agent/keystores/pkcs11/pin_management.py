"""Changing and unblocking a token's user PIN, from the parent's side of the worker.

Only the person starts these, from the tray or the CLI (``agent.pinmgmt``); no protocol
method reaches this module (tests/test_layers.py and tests/test_pin_management.py hold
that).  The worker does the Cryptoki calls (``pin_ops``); this module sends it the PINs
as base64 of their bytes, turns its answers into ``PinManagementError`` with a
``PinProblem``, and reads what the token's flags say about both PINs (``PinState``).

Unblocking through OpenSC needs a setting its default configuration lacks
(``user_pin_unblock_style``, see ``pin_ops``): the unblock then runs in a worker of its own,
started with a copy of the OpenSC configuration in force plus that one setting, which lives
only as long as the call.  Other modules get the standard C_Login(SO) + C_InitPIN.

PKCS#11 reports no count of tries, only "few left" (COUNT_LOW), "last try" (FINAL_TRY)
and "locked", for the user PIN and for the SO PIN each; that is all ``PinState`` holds.
"""

from __future__ import annotations

import enum
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ModuleCrashed, ModuleTimeout, ModuleUnavailable, PinStatus
from agent.keystores.base import Secret, TokenInfo
from agent.keystores.pkcs11.client import WorkerClient, WorkerFailure
from agent.keystores.pkcs11.store import Pkcs11Store, pin_status
from agent.keystores.pkcs11.wire import b64

CKF_SO_PIN_COUNT_LOW = 0x00100000
CKF_SO_PIN_FINAL_TRY = 0x00200000
CKF_SO_PIN_LOCKED = 0x00400000


# Where OpenSC looks for its configuration when OPENSC_CONF is not set (Debian first).
OPENSC_CONF_PATHS = ("/etc/opensc/opensc.conf", "/etc/opensc.conf",
                     "/usr/local/etc/opensc.conf", "/usr/local/etc/opensc/opensc.conf")
# First in the file, so OpenSC's lookup of its application block finds this one.
OPENSC_UNBLOCK_BLOCK = """app opensc-pkcs11 {
	pkcs11 {
		user_pin_unblock_style = set_pin_in_unlogged_session;
	}
}
"""


def is_opensc(module: Path) -> bool:
    return Path(module).name.startswith("opensc-pkcs11")


def opensc_unblock_conf(directory: Path, env: Mapping[str, str]) -> Path:
    """An OpenSC configuration: the unblock setting, then the one in force now."""
    current = env.get("OPENSC_CONF") or next(
        (p for p in OPENSC_CONF_PATHS if os.path.isfile(p)), None)
    text = ""
    if current:
        try:
            text = Path(current).read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    path = directory / "opensc.conf"
    path.write_text(OPENSC_UNBLOCK_BLOCK + "\n" + text, encoding="utf-8")
    return path


class PinProblem(enum.StrEnum):
    WRONG_PIN = "WRONG_PIN"            # the old PIN was wrong (a try was used)
    WRONG_PUK = "WRONG_PUK"            # the PUK / SO PIN was wrong (a try was used)
    PIN_LOCKED = "PIN_LOCKED"          # the user PIN is blocked: unblock it first
    PUK_LOCKED = "PUK_LOCKED"          # the PUK is blocked too: only the issuer helps
    PIN_LENGTH = "PIN_LENGTH"          # the new PIN breaks the token's length rule
    PIN_REJECTED = "PIN_REJECTED"      # it fits the rule, but the token refused it
    MISMATCH = "MISMATCH"              # the new PIN and its repetition differ
    TOKEN_NOT_PRESENT = "TOKEN_NOT_PRESENT"
    UNSUPPORTED = "UNSUPPORTED"        # the module or token cannot do it (PIN pad only...)
    FAILED = "FAILED"                  # the module failed, crashed or timed out


@dataclass(frozen=True)
class PinState:
    """What the token's flags say about its user PIN and its PUK / SO PIN."""

    pin: PinStatus
    puk_count_low: bool = False
    puk_final_try: bool = False
    puk_locked: bool = False

    @classmethod
    def of(cls, flags: int, min_length: int = 0, max_length: int = 0) -> PinState:
        return cls(pin=pin_status(flags, min_length, max_length),
                   puk_count_low=bool(flags & CKF_SO_PIN_COUNT_LOW),
                   puk_final_try=bool(flags & CKF_SO_PIN_FINAL_TRY),
                   puk_locked=bool(flags & CKF_SO_PIN_LOCKED))

    @classmethod
    def of_worker(cls, token: dict[str, Any] | None) -> PinState | None:
        if not token:
            return None
        return cls.of(int(token["flags"]), int(token["min_pin"]), int(token["max_pin"]))


class PinManagementError(Exception):
    """Why a change or unblock failed; ``state`` is the token's state after the failure
    (None when the token could not be read any more).  Never holds a PIN."""

    def __init__(self, problem: PinProblem, state: PinState | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.state = state


_PROBLEMS = {kind.value: kind for kind in PinProblem}
_PROBLEMS.update({"PIN_INCORRECT": PinProblem.WRONG_PIN, "LOGIN_REQUIRED": PinProblem.FAILED,
                  "USER_CANCELLED": PinProblem.FAILED, "LOAD_FAILED": PinProblem.FAILED,
                  "PIN_NOT_INITIALIZED": PinProblem.UNSUPPORTED})


class TokenPins:
    """PIN management for the tokens of one PKCS#11 store (its worker process)."""

    def __init__(self, store: Pkcs11Store) -> None:
        self.store = store

    async def _call(self, op: str, args: dict[str, Any],
                    worker: WorkerClient | None = None) -> Any:
        try:
            return await (worker or self.store.worker).call(op, args, self.store.call_timeout)
        except WorkerFailure as failure:
            problem = _PROBLEMS.get(failure.kind, PinProblem.FAILED)
            raise PinManagementError(problem,
                                     PinState.of_worker(failure.data.get("token"))) from None
        except (ModuleCrashed, ModuleTimeout, ModuleUnavailable):
            raise PinManagementError(PinProblem.FAILED) from None

    async def states(self) -> dict[str, PinState]:
        """token_id → PinState of every token present now."""
        listing = await self._call("tokens", {})
        return {item["token_id"]: PinState.of(int(item["flags"]), int(item["min_pin"]),
                                              int(item["max_pin"]))
                for item in listing}

    async def state(self, token: TokenInfo) -> PinState:
        found = (await self.states()).get(token.token_id)
        if found is None:
            raise PinManagementError(PinProblem.TOKEN_NOT_PRESENT)
        return found

    async def change(self, token: TokenInfo, old: Secret, new: Secret) -> PinState | None:
        """Change the user PIN; returns the state afterwards."""
        args = {"token_id": token.token_id, "old": b64(old.reveal()), "new": b64(new.reveal())}
        try:
            answer = await self._call("change_pin", args)
        finally:
            args.clear()
            self.store.invalidate(token.token_id)
        return PinState.of_worker(answer.get("token"))

    async def unblock(self, token: TokenInfo, puk: Secret, new: Secret) -> PinState | None:
        """Log in as the security officer with ``puk`` and set the user PIN to ``new``,
        which also resets its retry counter; returns the state afterwards."""
        args = {"token_id": token.token_id, "puk": b64(puk.reveal()), "new": b64(new.reveal())}
        try:
            if is_opensc(self.store.module):
                answer = await self._unblock_with_opensc(args)
            else:
                answer = await self._call("unblock_pin", {**args, "style": "so_init_pin"})
        finally:
            args.clear()
            self.store.invalidate(token.token_id)
        state = PinState.of_worker(answer.get("token"))
        if is_opensc(self.store.module):
            # The store's own worker keeps OpenSC's view from before; read it afresh.
            await self.store.reinitialize()
        return state

    async def _unblock_with_opensc(self, args: dict[str, Any]) -> Any:
        env = dict(self.store.worker._env)  # the store's environment (tests: the reader's)
        with tempfile.TemporaryDirectory(prefix="imza-opensc-") as directory:
            env["OPENSC_CONF"] = str(opensc_unblock_conf(Path(directory), {**os.environ,
                                                                            **env}))
            worker = WorkerClient(self.store.module, env=env)
            try:
                return await self._call("unblock_pin", {**args, "style": "set_pin_unlogged"},
                                        worker)
            finally:
                await worker.close()
