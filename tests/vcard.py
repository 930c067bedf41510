"""A real pcscd with the vpcd virtual reader, and a virtual card the test controls.

``Pcscd`` runs ``pcscd --foreground`` as the test's own process with a private
``reader.conf.d`` (so vpcd listens on ports of our choosing, not the packaged 35963) and
stops it by PID.  pcscd's socket (/run/pcscd/pcscd.comm) is system-wide: when another
pcscd already runs, the test fails and says so rather than fight over it.

``VirtualCard`` is the card side of vpcd: it connects to the reader's port ("insert") and
answers the reader's messages, each a 2-byte big-endian length and a payload.  One-byte
payloads are controls: 0 power off, 1 power on, 2 reset, 4 "send your ATR"; anything else
is an APDU, answered by ``answer`` (default: 6D 00, instruction not supported).
Closing the socket is "remove".
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
READER_NAME = "Virtual PCD 00 00"  # vpcd's first reader; "… 00 01" is on port + 1
START_TIMEOUT = 15.0  # generous for CI; never asserted on
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4


def _free_port_pair() -> int:
    """A port P with P and P+1 free: vpcd opens one per virtual reader."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of TCP ports for vpcd")


def _socket_answers() -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(PCSCD_SOCKET))
        except OSError:
            return False
    return True


def _tcp_listening(port: int) -> bool:
    """Whether something listens on the port, without connecting: vpcd would take a
    probing connection for a card."""
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.is_file():
            continue
        for line in table.read_text(encoding="ascii").splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                return True
    return False


class Pcscd:
    """``start()`` / ``stop()`` may be repeated: the restart tests stop it under a daemon."""

    def __init__(self, work_dir: Path) -> None:
        binary = shutil.which("pcscd") or ("/usr/sbin/pcscd" if Path("/usr/sbin/pcscd")
                                          .is_file() else None)
        if binary is None:
            pytest.fail("pcscd is not installed (`apt-get install -y pcscd`)", pytrace=False)
        if not VPCD_DRIVER.is_file():
            pytest.fail(f"{VPCD_DRIVER} is missing (`apt-get install -y vsmartcard-vpcd`)",
                        pytrace=False)
        self.binary = binary
        self.work_dir = work_dir
        self.port = _free_port_pair()
        self.conf_dir = work_dir / "reader.conf.d"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "vpcd").write_text(
            'FRIENDLYNAME "Virtual PCD"\n'
            f"DEVICENAME   /dev/null:0x{self.port:04X}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    0x{self.port:04X}\n", encoding="ascii")
        self.log = work_dir / "pcscd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Pcscd:
        if _socket_answers():
            pytest.fail(f"another pcscd already serves {PCSCD_SOCKET}; stop it for the tests "
                        "(`systemctl stop pcscd.socket pcscd`)", pytrace=False)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--foreground", "--debug", "--config", str(self.conf_dir)],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("pcscd did not come up:\n" + self.log_text()[-3000:],
                            pytrace=False)
            time.sleep(0.05)
        return self

    def _listening(self) -> bool:
        """Ready when clients can connect and vpcd waits for a card on our port."""
        return _socket_answers() and _tcp_listening(self.port)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() \
            else ""


class VirtualCard:
    def __init__(self, atr: bytes, port: int,
                 answer: Callable[[bytes], bytes] | None = None) -> None:
        self.atr = atr
        self.port = port
        self.answer = answer or (lambda apdu: b"\x6d\x00")
        self.powered = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def insert(self) -> VirtualCard:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock.settimeout(None)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                        name="virtual-card")
        self._thread.start()
        return self

    def remove(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _recv(self, sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            # Delayed ACKs would cost ~40 ms per APDU; QUICKACK resets after each recv.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the reader closed the connection")
            data += chunk
        return data

    def _send(self, sock: socket.socket, payload: bytes) -> None:
        sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                (length,) = struct.unpack(">H", self._recv(sock, 2))
                message = self._recv(sock, length)
                if length == 1 and message[0] in (POWER_OFF, POWER_ON, RESET):
                    self.powered = message[0] != POWER_OFF
                elif length == 1 and message[0] == GET_ATR:
                    self._send(sock, self.atr)
                else:
                    self._send(sock, self.answer(message))



def wait_until_present(atr: bytes, reader: str = READER_NAME) -> None:
    """Block until pcscd reports the card in the reader. A client that starts while vpcd
    is still powering a just-connected card was seen never to learn of it, so the tests
    let pcscd finish first, as a person's hand is slower than that anyway."""
    from smartcard import scard as s

    deadline = time.monotonic() + START_TIMEOUT
    hresult, context = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
    assert hresult == s.SCARD_S_SUCCESS, "pcscd does not answer"
    try:
        while time.monotonic() < deadline:
            hresult, states = s.SCardGetStatusChange(
                context, 100, [(reader, s.SCARD_STATE_UNAWARE)])
            if hresult == s.SCARD_S_SUCCESS and states:
                _, state, seen = states[0]
                if state & s.SCARD_STATE_PRESENT and bytes(seen) == atr:
                    return
            time.sleep(0.05)
    finally:
        s.SCardReleaseContext(context)
    raise AssertionError(f"pcscd did not see the virtual card in {reader}")


class PairedCard:
    """A virtual card standing for one SoftHSM token: the card is in the reader exactly
    while the token's directory is in SoftHSM's tokendir.

    The config maps the card's ATR to the SoftHSM module (``[[pcsc.atr]]``), so the agent
    treats SoftHSM as the card's middleware.  ``remove`` parks the token directory and
    then pulls the card; ``insert`` restores the directory and then inserts the card, so
    when the PC/SC event arrives the module already shows the new truth, as a real
    card's module would.  SoftHSM reads its tokendir only when loaded: seeing the token
    come back takes the agent's re-initialisation of the module.
    """

    def __init__(self, card: VirtualCard, token_dir: Path) -> None:
        self.card = card
        self.token_dir = token_dir
        self.parked = token_dir.parent.parent / f"parked-{token_dir.name}"

    @staticmethod
    def token_dir_of(tokendir: Path, label: str) -> Path:
        """The SoftHSM token directory whose token has this label."""
        wanted = label.encode("utf-8")
        for candidate in sorted(tokendir.iterdir()):
            token_object = candidate / "token.object"
            if token_object.is_file() and wanted in token_object.read_bytes():
                return candidate
        raise AssertionError(f"no SoftHSM token labelled {label!r} in {tokendir}")

    def insert(self) -> None:
        if self.parked.exists():
            self.parked.rename(self.token_dir)
        self.card.insert()
        wait_until_present(self.card.atr)

    def remove(self) -> None:
        self.token_dir.rename(self.parked)
        self.card.remove()
