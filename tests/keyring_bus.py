"""A real OS keyring for tests: gnome-keyring's Secret Service on a private D-Bus bus.

``keyring_bus`` (session) starts ``dbus-daemon`` on a socket in a temporary directory and
``gnome-keyring-daemon --unlock --components=secrets`` on it, with a throw-away HOME so
the login keyring it creates is the test's own.  ``keyring_env`` (per test) points this
process (``DBUS_SESSION_BUS_ADDRESS``) at that bus and lets ``keyring`` choose its backend
afresh, as the agent would at start; the dict it yields is the environment for a
subprocess (``imza-agent journal verify``).  Tests using them carry ``@pytest.mark.keyring``
(tests/components.py): without the programs the run fails, it never skips.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_PASSWORD = b"journal-test-keyring"


def _wait_for_secret_service(address: str, deadline: float) -> None:
    import secretstorage
    from jeepney.io.blocking import open_dbus_connection

    while True:
        try:
            with open_dbus_connection(address) as bus:
                if secretstorage.check_service_availability(bus):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("gnome-keyring-daemon did not offer the Secret Service")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def keyring_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("keyring")
    home, runtime = base / "home", base / "run"
    home.mkdir(mode=0o700)
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime),
           "XDG_DATA_HOME": str(home / ".local" / "share"),
           "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1",
         f"--address=unix:path={base / 'bus'}"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        assert address.startswith("unix:"), f"dbus-daemon printed {address!r}"
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        # --foreground keeps it our child (its pid is ours to stop); the password on stdin
        # creates and unlocks the login keyring.
        daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env)
        assert daemon.stdin is not None
        daemon.stdin.write(_PASSWORD)
        daemon.stdin.close()
        _wait_for_secret_service(address, time.monotonic() + 20)
        yield {k: env[k] for k in ("DBUS_SESSION_BUS_ADDRESS", "HOME", "XDG_RUNTIME_DIR",
                                    "XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    finally:
        for process in (daemon, bus):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def keyring_env(keyring_bus: dict[str, str]) -> Iterator[dict[str, str]]:
    """This process talks to the test keyring; yields a subprocess environment that does.

    A subprocess (the CLI) lets ``keyring`` choose its backend itself.  In this process
    the choice is made once and cached, so the fixture sets the Secret Service backend
    after checking it is viable on the test bus, and leaves the failing backend behind: no
    later test in this process reaches a real keyring by accident.
    """
    import keyring
    from keyring.backends import SecretService, fail

    saved = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = keyring_bus["DBUS_SESSION_BUS_ADDRESS"]
    try:
        assert SecretService.Keyring.priority > 0  # raises when the service is not there
        keyring.set_keyring(SecretService.Keyring())
        env = {**os.environ}
        env.pop("PYTHON_KEYRING_BACKEND", None)  # an outer choice would override the bus
        yield env
    finally:
        if saved is None:
            os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = saved
        keyring.set_keyring(fail.Keyring())


def secret(path: Path, name: str) -> str | None:
    """The keyring entry ``name`` ("journal-head", "journal-hmac-key") of the journal."""
    import keyring
    from secretstorage.exceptions import ItemNotFoundException

    # Under a loaded CI machine gnome-keyring once answered that its "default" alias named
    # a collection object that did not exist (mid-rewrite of the keyring file); the
    # journal itself treats such an answer as "keyring unavailable".  The test asks again
    # for a few seconds before it counts as a failure.
    deadline = time.monotonic() + 5
    while True:
        try:
            value = keyring.get_password("imza-agent", f"{name}:{path.resolve()}")
            return value if isinstance(value, str) else None
        except ItemNotFoundException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
