"""Who a Windows process runs as: its token's user SID and its Terminal Services session.

Both the named pipe (only this SID may open it) and the loopback peer check (the client's
process must be this SID *and* this session: on a Remote Desktop host one user may have two
sessions, and only the one running this agent is ours) need it. ``Identities`` is the seam;
``TokenIdentities`` asks Windows through ctypes (not run on this project's Linux CI).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Identity:
    sid: str  # "S-1-5-21-…-1001"
    session: int


class Identities(Protocol):
    def of_process(self, pid: int) -> Identity | None:
        """None when the process is gone or may not be opened."""

    def own(self) -> Identity: ...


PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
TOKEN_QUERY = 0x0008
TOKEN_USER_CLASS = 1


class TokenIdentities:
    def __init__(self) -> None:
        self._k: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._a: Any = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._k.OpenProcess.restype = ctypes.c_void_p
        self._k.GetCurrentProcess.restype = ctypes.c_void_p
        self._a.OpenProcessToken.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                             ctypes.POINTER(ctypes.c_void_p)]
        self._a.GetTokenInformation.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                                ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
        self._a.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p,
                                                   ctypes.POINTER(ctypes.c_wchar_p)]
        self._k.CloseHandle.argtypes = [ctypes.c_void_p]
        self._k.LocalFree.argtypes = [ctypes.c_void_p]

    def _sid_of(self, process: Any) -> str | None:
        token = ctypes.c_void_p()
        if not self._a.OpenProcessToken(process, TOKEN_QUERY, ctypes.byref(token)):
            return None
        try:
            size = ctypes.c_uint32(0)
            self._a.GetTokenInformation(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
            buffer = ctypes.create_string_buffer(size.value)
            if not self._a.GetTokenInformation(token, TOKEN_USER_CLASS, buffer, size,
                                               ctypes.byref(size)):
                return None
            # TOKEN_USER starts with SID_AND_ATTRIBUTES, whose first field is the PSID.
            psid = ctypes.c_void_p.from_buffer(buffer).value
            text = ctypes.c_wchar_p()
            if not self._a.ConvertSidToStringSidW(psid, ctypes.byref(text)):
                return None
            try:
                return text.value
            finally:
                self._k.LocalFree(ctypes.cast(text, ctypes.c_void_p))
        finally:
            self._k.CloseHandle(token)

    def _session_of(self, pid: int) -> int | None:
        session = ctypes.c_uint32()
        if not self._k.ProcessIdToSessionId(pid, ctypes.byref(session)):
            return None
        return int(session.value)

    def of_process(self, pid: int) -> Identity | None:
        process = self._k.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not process:
            return None
        try:
            sid = self._sid_of(process)
        finally:
            self._k.CloseHandle(process)
        session = self._session_of(pid)
        return None if sid is None or session is None else Identity(sid, session)

    def own(self) -> Identity:
        sid = self._sid_of(self._k.GetCurrentProcess())
        session = self._session_of(int(self._k.GetCurrentProcessId()))
        if sid is None or session is None:
            raise OSError("cannot read this process's own token")
        return Identity(sid, session)
