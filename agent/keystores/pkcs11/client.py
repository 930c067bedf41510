"""The daemon's side of one worker process: start it, ask it, kill it when it misbehaves.

One request at a time (an ``asyncio.Lock``), every request under a timeout.  A timeout
kills the worker (``ModuleTimeout``), a dead or garbled worker is a ``ModuleCrashed``;
either way the next call starts a fresh worker, and nothing else in the daemon notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import agent
from agent.errors import ModuleCrashed, ModuleTimeout, ModuleUnavailable
from agent.keystores.pkcs11 import wire

log = logging.getLogger(__name__)

_WORKER_MODULE = "agent.keystores.pkcs11.worker"
_CLOSE_GRACE = 2.0  # seconds a worker gets to finalise the module before it is killed


class WorkerFailure(Exception):
    """The worker answered ``ok: false``; ``kind`` and ``data`` say what went wrong.

    ``detail`` is the worker's account for the log (the module's exception, its path):
    it never becomes part of an error a page can see."""

    def __init__(self, kind: str, message: str, data: dict[str, Any],
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.data = data
        self.detail = detail


class WorkerClient:
    def __init__(self, module: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.module = module
        self._env = dict(env or {})
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._reapers: set[asyncio.Future[int]] = set()
        # Why the module would not load, in the loader's words, for `doctor` and the log.
        self.load_problem: str | None = None

    @property
    def pid(self) -> int | None:
        """The running worker's pid (for tests and diagnostics)."""
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def busy(self) -> bool:
        """A request is in flight (or queued behind one)."""
        return self._lock.locked()

    def abort(self) -> None:
        """End the request in flight by killing the worker (it then fails with
        ``ModuleCrashed``); the next request starts a fresh worker."""
        self._kill_soon()

    async def call(self, op: str, args: dict[str, Any], timeout: float) -> Any:
        async with self._lock:
            try:
                # asyncio.timeout, not wait_for: no extra task and loop turn per call.
                async with asyncio.timeout(timeout):
                    return await self._call(op, args)
            except TimeoutError:
                log.warning("PKCS#11 module %s did not answer %s in %.1f s; killing its worker",
                            self.module, op, timeout)
                await self._kill()
                raise ModuleTimeout() from None
            except asyncio.CancelledError:
                # Whoever waited gave up; the module is mid-call and its answer would
                # arrive as the reply to the next request. Start afresh instead.
                self._kill_soon()
                raise
            except (asyncio.IncompleteReadError, ConnectionError, wire.FrameError) as exc:
                code = await self._kill()
                log.warning("PKCS#11 worker for %s died during %s (exit code %s)",
                            self.module, op, code)
                raise ModuleCrashed() from exc

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        proc = await self._running()
        request_id = next(self._ids)
        answer = await self._exchange(proc, {"id": request_id, "op": op, "args": args})
        return _result(answer)

    async def _running(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", _WORKER_MODULE, str(self.module),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=self._worker_env())
        try:
            _result(await self._read(self._proc))
        except WorkerFailure as exc:
            await self._reap()
            self.load_problem = exc.detail or exc.message
            log.debug("PKCS#11 module %s cannot be loaded: %s", self.module,
                      self.load_problem)
            raise ModuleUnavailable() from None
        self.load_problem = None
        return self._proc

    def _worker_env(self) -> dict[str, str]:
        env = {**os.environ, **self._env}
        # The worker must import this very package, even when run from a source tree.
        root = str(Path(agent.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        from agent.platform import current as current_platform

        env[wire.PACK_VARIABLE] = str(current_platform().pkcs11_pack or 0)
        return env

    async def _exchange(self, proc: asyncio.subprocess.Process,
                        request: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None
        proc.stdin.write(wire.encode_frame(request))
        await proc.stdin.drain()
        answer = await self._read(proc)
        if answer.get("id") not in (None, request["id"]):
            raise wire.FrameError("answer to another request")
        return answer

    @staticmethod
    async def _read(proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        header = await proc.stdout.readexactly(wire.HEADER_SIZE)
        body = await proc.stdout.readexactly(wire.frame_length(header))
        return wire.decode_body(body)

    async def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return await proc.wait()

    def _kill_soon(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        reaper = asyncio.ensure_future(proc.wait())
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _reap(self) -> None:
        """Wait for a worker that is exiting on its own (after a load failure)."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _CLOSE_GRACE)
        await self._kill()

    async def close(self) -> None:
        async with self._lock:
            proc = self._proc
            if proc is None or proc.returncode is not None:
                self._proc = None
                return
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: the worker logs out, finalises and exits
            await self._reap()


def _result(answer: dict[str, Any]) -> Any:
    if answer.get("ok"):
        return answer.get("result")
    error = answer.get("error") or {}
    kind = str(error.pop("kind", "INTERNAL"))
    message = str(error.pop("message", "the token module failed"))
    detail = error.pop("detail", None)
    if detail:
        log.debug("PKCS#11 worker: %s: %s", kind, detail)
    raise WorkerFailure(kind, message, error, str(detail) if detail else None)
