"""A real `imza-agent run --headless` subprocess for tests, and JSON-RPC clients for it.

``Daemon`` writes a config TOML, an answers file for the scripted UI and (optionally) a
system policy, starts the agent with its own ``IMZA_AGENT_HOME``, waits for
``runtime.json`` and stops it with SIGTERM.  ``Client`` speaks JSON-RPC over ``ws`` or
``wss`` (the latter trusting only ``<home>/tls/ca.pem``).  ``raw_handshake`` sends an
upgrade request with whatever headers a test wants, for the refusals websockets' own
client would never produce.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parent.parent
NO_KEYRING = "keyring.backends.fail.Keyring"
START_TIMEOUT = 30.0  # generous: a loaded CI machine; never asserted on


# --- configuration -----------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def to_toml(sections: Mapping[str, Any]) -> str:
    """Top-level scalars, ``[section]`` tables and ``[[array]]`` of tables; enough for the
    agent's config and policy files."""
    top, tables = [], []
    for key, value in sections.items():
        if isinstance(value, Mapping):
            tables.append(_table(f"[{key}]", key, value))
        elif _is_table_array(value):
            tables.extend(_table(f"[[{key}]]", key, item) for item in value)
        else:
            top.append(f"{key} = {_toml_value(value)}\n")
    return "".join(top) + "\n".join(tables)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, Mapping) for v in value)


def _table(header: str, name: str, values: Mapping[str, Any]) -> str:
    """A table; its arrays of tables (``[[tokens.pkcs12]]``) follow its plain keys."""
    body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()
                   if not _is_table_array(v))
    nested = "".join(_table(f"[[{name}.{k}]]", f"{name}.{k}", item)
                     for k, v in values.items() if _is_table_array(v) for item in v)
    return f"{header}\n{body}{nested}"


def copy_softhsm(conf: Path, dest: Path) -> Path:
    """A private copy of a SoftHSM store (its tokens directory and a config pointing at the
    copy), so a test may add or remove tokens without touching the session's bed."""
    tokendir = None
    for line in conf.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "directories.tokendir":
            tokendir = Path(value.strip())
    assert tokendir is not None, f"{conf} names no tokendir"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tokendir, dest / "tokens")
    private = dest / "softhsm2.conf"
    private.write_text(f"directories.tokendir = {dest / 'tokens'}\n"
                       "objectstore.backend = file\nlog.level = ERROR\n", encoding="utf-8")
    return private


# --- the daemon --------------------------------------------------------------------------------

# Added to every test daemon's system policy (unless locked, or ``test_grants=False``).
# The shipped defaults grant exact portal origins only; the tests use sub-domains of
# e-gov.az as well-behaved portals (e.g. ``assert_served``), so the test administrator
# grants them, as a real one may.
TEST_POLICY: dict[str, Any] = {"allow": [{
    "origins": ["https://*.e-gov.az"], "permissions": ["select", "sign", "auth", "tokens"]}]}


def with_test_grants(policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """``policy`` plus TEST_POLICY's allow rules; a locked policy stays as it is."""
    merged = dict(policy or {})
    if not merged.get("locked"):
        merged["allow"] = [*merged.get("allow", []), *TEST_POLICY["allow"]]
    return merged


@dataclass
class Daemon:
    """One agent process.  ``config`` is merged over a test default (ports 0, plain ws
    enabled, scripted UI, no vendor modules, ``modules`` as given); a value of None drops
    the key, leaving the agent's own default."""

    home: Path
    modules: list[Path]
    env: dict[str, str]  # SOFTHSM2_CONF and friends
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The system policy (IMZA_AGENT_SYSTEM_POLICY), with TEST_POLICY's grants added
    # unless ``test_grants`` is False or the policy is locked.
    policy: dict[str, Any] | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    test_grants: bool = True

    @property
    def answers_file(self) -> Path:
        return self.home.parent / (self.home.name + "-answers.json")

    @property
    def transcript_file(self) -> Path:
        return self.answers_file.with_name(self.answers_file.name + ".transcript.jsonl")

    @property
    def log_file(self) -> Path:
        return self.home.parent / (self.home.name + "-daemon.log")

    def _config_text(self) -> str:
        merged: dict[str, dict[str, Any]] = {
            # Plain ws:// is a development setting, off by default: the tests use it.
            "server": {"wss_port": 0, "ws_port": 0, "ws_enabled": True},
            "tokens": {"known_modules": False, "modules": [str(m) for m in self.modules]},
            "ui": {"backend": "scripted", "answers_file": str(self.answers_file)},
        }
        for section, values in self.config.items():
            merged.setdefault(section, {}).update(values)
        # None: leave the key out, so the agent's own default applies.
        return to_toml({section: {k: v for k, v in values.items() if v is not None}
                        for section, values in merged.items()})

    @property
    def config_file(self) -> Path:
        """The configuration file this agent is started with (``--config``)."""
        return self.home.parent / (self.home.name + "-config.toml")

    def start(self) -> Daemon:
        self.home.mkdir(parents=True, exist_ok=True)
        config_file = self.config_file
        config_file.write_text(self._config_text(), encoding="utf-8")
        self.set_answers(self.answers)
        # A home of its own: the agent installs its CA into the user's browser
        # databases at start, and must never touch the test runner's.
        user_home = self.home.parent / (self.home.name + "-user")
        user_home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOME": str(user_home),
               "XDG_CONFIG_HOME": str(user_home / ".config"),
               "XDG_DATA_HOME": str(user_home / ".local/share"),
               **self.env, "IMZA_AGENT_HOME": str(self.home),
               # Never a developer's real keyring: the journal key goes to its file.
               "PYTHON_KEYRING_BACKEND": NO_KEYRING,
               "PYTHONUNBUFFERED": "1"}
        policy_file = self.home.parent / (self.home.name + "-policy.toml")
        policy = with_test_grants(self.policy) if self.test_grants else (self.policy or {})
        policy_file.write_text(to_toml(policy), encoding="utf-8")
        # Always point at a file of our own: a policy in /etc must not change the tests.
        env["IMZA_AGENT_SYSTEM_POLICY"] = str(policy_file)
        log = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "--config", str(config_file), "run",
             "--headless"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.ports = self._wait_for_ports()
        return self

    def _runtime(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.home / "runtime.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def _wait_for_ports(self) -> dict[str, int]:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the agent exited with {self.process.returncode}:\n"
                                   + self.log_text()[-4000:])
            info = self._runtime()
            # Wait for the key stores too, so the first request meets a warm agent.
            if info and info.get("ports") and "stores_ready" in info.get("timings", {}):
                return {k: int(v) for k, v in info["ports"].items()}
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the agent did not write runtime.json in time:\n"
                           + self.log_text()[-4000:])

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # --- the scripted user ---------------------------------------------------------------------

    def set_answers(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)
        tmp = self.answers_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.answers, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self.answers_file)  # the UI re-reads it per dialog: never half a file

    def transcript_mark(self) -> int:
        return len(self.transcript())

    def transcript(self, since: int = 0) -> list[dict[str, Any]]:
        try:
            lines = self.transcript_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines[since:] if line.strip()]

    # --- connecting ----------------------------------------------------------------------------

    def url(self, transport: str = "ws") -> str:
        return f"{transport}://127.0.0.1:{self.ports[transport]}/v1"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts only this agent's own CA, as a browser with `imza-agent trust` would."""
        context = ssl.create_default_context(cafile=str(self.home / "tls" / "ca.pem"))
        return context

    def client(self, origin: str, transport: str = "ws", **kwargs: Any) -> Client:
        return Client(self, origin, transport, **kwargs)

    def journal_verify(self) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "IMZA_AGENT_HOME": str(self.home),
               "PYTHON_KEYRING_BACKEND": NO_KEYRING}
        return subprocess.run([sys.executable, "-m", "agent.cli", "--language", "en",
                               "journal", "verify"],
                              cwd=REPO, env=env, capture_output=True, text=True,
                              check=False, timeout=30)


# --- JSON-RPC clients ------------------------------------------------------------------------

class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')} {error.get('data', {}).get('reason')}: "
                         f"{error.get('message')}")
        self.error = error
        self.code: int = error["code"]
        self.reason: str | None = (error.get("data") or {}).get("reason")
        self.data: dict[str, Any] = error.get("data") or {}


class Client:
    """``async with daemon.client(origin) as c: await c.call("agent.info")``.

    Responses are matched by id; notifications queue up in ``notifications``."""

    def __init__(self, daemon: Daemon, origin: str | None, transport: str = "ws",
                 **connect_kwargs: Any) -> None:
        self.daemon = daemon
        self.origin = origin
        self.transport = transport
        self.connect_kwargs = connect_kwargs
        self.ws: ClientConnection | None = None
        self._ids = count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.unmatched: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        kwargs: dict[str, Any] = {"origin": self.origin, "max_size": None,
                                  "compression": None, "open_timeout": 10}
        if self.transport == "wss":
            kwargs["ssl"] = self.daemon.ssl_context()
        kwargs.update(self.connect_kwargs)
        self.ws = await connect(self.daemon.url(self.transport), **kwargs)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                msg_id = message.get("id")
                if "method" in message and "id" not in message:
                    self.notifications.put_nowait(message)
                elif msg_id in self._pending:
                    self._pending.pop(msg_id).set_result(message)
                else:
                    self.unmatched.append(message)
        except Exception as exc:  # connection closed: fail whoever still waits
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(exc)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the connection closed"))

    async def send_raw(self, frame: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def next_unmatched(self, timeout: float = 10) -> dict[str, Any]:
        """The next response that belongs to no call of ours (raw frames, id null)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.unmatched:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no response came")
            await asyncio.sleep(0.01)
        return self.unmatched.pop(0)

    def start(self, method: str, params: Mapping[str, Any] | None = None,
              msg_id: Any = None) -> asyncio.Future[dict[str, Any]]:
        """Send a request now; the returned future resolves to the whole response."""
        assert self.ws is not None
        msg_id = next(self._ids) if msg_id is None else msg_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        asyncio.get_running_loop().create_task(self.ws.send(json.dumps(message)))
        return future

    async def response(self, method: str, params: Mapping[str, Any] | None = None,
                       timeout: float = 30) -> dict[str, Any]:
        return await asyncio.wait_for(self.start(method, params), timeout)

    async def call(self, method: str, params: Mapping[str, Any] | None = None,
                   timeout: float = 30) -> dict[str, Any]:
        """The result, or RpcError with the error object."""
        reply = await self.response(method, params, timeout)
        if "error" in reply:
            raise RpcError(reply["error"])
        return reply["result"]

    async def error(self, method: str, params: Mapping[str, Any] | None = None,
                    timeout: float = 30) -> RpcError:
        """The call must fail: its error."""
        reply = await self.response(method, params, timeout)
        assert "error" in reply, f"{method} succeeded: {reply.get('result')!r:.300}"
        return RpcError(reply["error"])

    async def closed(self, timeout: float = 10) -> tuple[int | None, str | None]:
        """Wait for the agent to close the connection: (close code, reason)."""
        assert self.ws is not None
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code, self.ws.close_reason


# --- raw handshakes ---------------------------------------------------------------------------

def raw_handshake(daemon: Daemon, headers: Mapping[str, str] | list[tuple[str, str]],
                  transport: str = "ws", path: str = "/v1") -> int:
    """Send a WebSocket upgrade with exactly these extra headers (Host included when given;
    otherwise the loopback one); return the HTTP status the agent answered."""
    port = daemon.ports[transport]
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if not any(name.lower() == "host" for name, _ in items):
        items.insert(0, ("Host", f"127.0.0.1:{port}"))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", *(f"{n}: {v}" for n, v in items),
             "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream: socket.socket = sock
        if transport == "wss":
            stream = daemon.ssl_context().wrap_socket(sock, server_hostname="127.0.0.1")
        stream.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = stream.recv(4096)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    return int(status_line.split()[1])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- checking what came back, independently of the agent's own code -------------------------

_HASHES = {"SHA-256": hashes.SHA256, "SHA-384": hashes.SHA384, "SHA-512": hashes.SHA512}


def verify_hash_signature(certificate_b64: str, digest: bytes, signature_b64: str, *,
                          scheme: str, hash_algorithm: str, encoding: str = "der") -> None:
    """Raises InvalidSignature unless ``signature`` is the certificate key's signature over
    the precomputed ``digest`` with the given scheme."""
    cert = x509.load_der_x509_certificate(unb64(certificate_b64))
    signature = unb64(signature_b64)
    hash_alg = _HASHES[hash_algorithm]()
    prehashed = Prehashed(hash_alg)
    key = cert.public_key()
    if scheme == "ECDSA":
        assert isinstance(key, ec.EllipticCurvePublicKey)
        if encoding == "raw":
            width = (key.curve.key_size + 7) // 8
            assert len(signature) == 2 * width, "raw ECDSA is r||s, each the order's size"
            signature = encode_dss_signature(int.from_bytes(signature[:width], "big"),
                                             int.from_bytes(signature[width:], "big"))
        key.verify(signature, digest, ec.ECDSA(prehashed))
        return
    assert isinstance(key, rsa.RSAPublicKey)
    pad: padding.AsymmetricPadding = (
        padding.PKCS1v15() if scheme == "RSASSA-PKCS1-v1_5"
        else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size))
    key.verify(signature, digest, pad, prehashed)


async def pick(daemon: Daemon, page: Client, serial_hex: str, *, pin: str,
               purpose: str = "sign", filter: Mapping[str, Any] | None = None,
               ) -> dict[str, Any]:
    """``certificates.select`` answered with the certificate whose serial is
    ``serial_hex``: the scripted user first cancels to see the choices (two certificates
    on the bed share a holder name), then picks that row."""
    params: dict[str, Any] = {"purpose": purpose}
    if filter is not None:
        params["filter"] = dict(filter)
    daemon.set_answers({"certificate": "cancel", "pin": pin})
    mark = daemon.transcript_mark()
    looked = await page.error("certificates.select", params)
    assert looked.code == 4001, looked
    [picker] = [d for d in daemon.transcript(mark) if d["dialog"] == "certificate"]
    [index] = [i for i, c in enumerate(picker["choices"]) if c["serial_hex"] == serial_hex]
    daemon.set_answers({"certificate": {"index": index}, "pin": pin})
    chosen = await page.call("certificates.select", params)
    cert = x509.load_der_x509_certificate(unb64(chosen["certificate"]))
    assert f"{cert.serial_number:X}" == serial_hex
    return chosen


async def assert_served(daemon: Daemon, origin: str = "https://bystander.e-gov.az",
                        pin: str = "1234", holder: str = "Əliyev") -> None:
    """A well-behaved page on ``origin`` (granted by the shipped defaults) still gets
    agent.info and a verified signature.  ``holder`` must name one signing certificate
    only, and ``pin`` be its token's: a wrong PIN is asked again for as long as the
    token allows, and SoftHSM never locks."""
    daemon.set_answers({"certificate": {"holder": holder}, "pin": pin})
    async with daemon.client(origin) as page:
        info = await page.call("agent.info")
        assert info["origin"] == origin
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        digest = hashlib.sha256(origin.encode()).digest()
        signed = await page.call("sign.hash", {"handle": chosen["handle"], "hash": b64(digest),
                                               "hashAlgorithm": "SHA-256"})
        verify_hash_signature(signed["certificate"], digest, signed["signature"],
                              scheme=signed["scheme"], hash_algorithm="SHA-256")


def stop_pid(pid: int) -> None:
    """Stop a daemon that some other process started (the native host): SIGTERM, then
    SIGKILL if it is still there after a generous wait."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
