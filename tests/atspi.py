"""Reading a program's accessibility tree as a screen reader does: AT-SPI over D-Bus.

``AtspiBus`` starts a private session ``dbus-daemon`` and Debian's ``at-spi-bus-launcher``
on it (at-spi2-core). The launcher starts the accessibility bus and answers
``org.a11y.Bus.GetAddress``; the registry (``at-spi2-registryd``) is started on that bus by
D-Bus activation the first time it is asked for. A Qt program given ``env()``
(``DBUS_SESSION_BUS_ADDRESS`` of the private bus, ``QT_LINUX_ACCESSIBILITY_ALWAYS_ON=1``)
registers its widgets there; ``snapshot()`` then walks the registry's desktop →
applications → children with jeepney, reading what Orca would read: name, description,
role, states and, for text widgets, their text.

Nothing here is a mock: a node exists in the tree only if the toolkit exported it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, MessageType, Properties, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection

LAUNCHER = Path("/usr/libexec/at-spi-bus-launcher")
REGISTRY = "org.a11y.atspi.Registry"
ROOT_PATH = "/org/a11y/atspi/accessible/root"
ACCESSIBLE = "org.a11y.atspi.Accessible"
TEXT = "org.a11y.atspi.Text"
WAIT = 20.0

# AtspiStateType: bit n of GetState's two 32-bit words (at-spi2-core's atspi-constants.h).
STATES = (
    "invalid", "active", "armed", "busy", "checked", "collapsed", "defunct", "editable",
    "enabled", "expandable", "expanded", "focusable", "focused", "has-tooltip",
    "horizontal", "iconified", "modal", "multi-line", "multiselectable", "opaque",
    "pressed", "resizable", "selectable", "selected", "sensitive", "showing",
    "single-line", "stale", "transient", "vertical", "visible", "manages-descendants",
    "indeterminate", "required", "truncated", "animated", "invalid-entry",
    "supports-autocompletion", "selectable-text", "is-default", "visited", "checkable",
    "has-popup", "read-only",
)


@functools.cache
def role_name(role: int) -> str:
    """The role's name as every AT-SPI client names it: libatspi's own table, not the
    application's ``GetRoleName`` (Qt answers "text" there for a password field, whose
    role number is ATSPI_ROLE_PASSWORD_TEXT; Orca goes by the number)."""
    atspi = ctypes.CDLL("libatspi.so.0")
    glib = ctypes.CDLL("libglib-2.0.so.0")
    atspi.atspi_role_get_name.restype = ctypes.c_void_p
    atspi.atspi_role_get_name.argtypes = [ctypes.c_int]
    pointer = atspi.atspi_role_get_name(role)
    if not pointer:
        return f"role {role}"
    try:
        return ctypes.string_at(pointer).decode()
    finally:
        glib.g_free(ctypes.c_void_p(pointer))


def states_of(words: list[int]) -> frozenset[str]:
    found = set()
    for index, word in enumerate(words):
        for bit in range(32):
            number = index * 32 + bit
            if word & (1 << bit) and number < len(STATES):
                found.add(STATES[number])
    return frozenset(found)


@dataclass
class Node:
    """One accessible object, read once (a snapshot, not a live proxy)."""

    bus_name: str
    path: str
    name: str
    description: str
    role: int
    role_name: str  # libatspi's name for ``role`` ("password text", "push button", ...)
    app_role_name: str  # what the application's GetRoleName said
    states: frozenset[str]
    text: str | None  # the Text interface's whole content, when the object has one
    children: list[Node] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, role: str | None = None, name: str | None = None, *,
             contains: str | None = None) -> list[Node]:
        """Nodes below (and including) this one with this role name and/or exact name, or
        whose name, description or text contains ``contains``."""
        found = []
        for node in self.walk():
            if role is not None and node.role_name != role:
                continue
            if name is not None and node.name != name:
                continue
            if contains is not None and not any(
                    contains in (s or "") for s in (node.name, node.description, node.text)):
                continue
            found.append(node)
        return found

    def one(self, role: str | None = None, name: str | None = None, *,
            contains: str | None = None) -> Node:
        found = self.find(role, name, contains=contains)
        assert len(found) == 1, (
            f"expected one {role!r} named {name!r} containing {contains!r}, found "
            f"{len(found)}:\n{self.dump()}")
        return found[0]

    def all_text(self) -> str:
        """Every name, description and text in the subtree, one per line: what a screen
        reader can speak of this window."""
        parts = []
        for node in self.walk():
            parts += [s for s in (node.name, node.description, node.text) if s]
        return "\n".join(parts)

    def dump(self, depth: int = 0) -> str:
        line = (f"{'  ' * depth}{self.role_name} {self.name!r}"
                + (f" desc={self.description!r}" if self.description else "")
                + (f" text={self.text[:60]!r}" if self.text else "")
                + f" [{','.join(sorted(self.states & INTERESTING))}]")
        return "\n".join([line, *(c.dump(depth + 1) for c in self.children)])


INTERESTING = frozenset({"focusable", "focused", "sensitive", "showing", "enabled",
                         "is-default", "read-only", "editable"})


class Reader:
    """A jeepney connection to the accessibility bus and the calls a screen reader makes."""

    def __init__(self, address: str) -> None:
        self.connection: DBusConnection = open_dbus_connection(address)

    def close(self) -> None:
        self.connection.close()

    def _call(self, bus_name: str, path: str, interface: str, method: str,
              signature: str | None = None, body: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        address = DBusAddress(path, bus_name=bus_name, interface=interface)
        reply = self.connection.send_and_get_reply(
            new_method_call(address, method, signature, body), timeout=WAIT)
        if reply.header.message_type is MessageType.error:
            raise RuntimeError(f"{interface}.{method} on {bus_name}{path}: {reply.body}")
        return tuple(reply.body)

    def _property(self, bus_name: str, path: str, interface: str, name: str) -> Any:
        address = DBusAddress(path, bus_name=bus_name, interface=interface)
        reply = self.connection.send_and_get_reply(Properties(address).get(name),
                                                   timeout=WAIT)
        if reply.header.message_type is MessageType.error:
            raise RuntimeError(f"{interface}.{name} on {bus_name}{path}: {reply.body}")
        return reply.body[0][1]

    def children(self, bus_name: str, path: str) -> list[tuple[str, str]]:
        return [tuple(c) for c in self._call(bus_name, path, ACCESSIBLE, "GetChildren")[0]]

    def node(self, bus_name: str, path: str, depth: int = 0, limit: list[int] | None = None
             ) -> Node:
        limit = limit if limit is not None else [5000]
        limit[0] -= 1
        assert limit[0] > 0, "the accessibility tree is implausibly large"
        name = self._property(bus_name, path, ACCESSIBLE, "Name")
        description = self._property(bus_name, path, ACCESSIBLE, "Description")
        role = self._call(bus_name, path, ACCESSIBLE, "GetRole")[0]
        app_role_name = self._call(bus_name, path, ACCESSIBLE, "GetRoleName")[0]
        states = states_of(list(self._call(bus_name, path, ACCESSIBLE, "GetState")[0]))
        interfaces = self._call(bus_name, path, ACCESSIBLE, "GetInterfaces")[0]
        text = None
        if TEXT in interfaces:
            count = self._property(bus_name, path, TEXT, "CharacterCount")
            text = self._call(bus_name, path, TEXT, "GetText", "ii", (0, count))[0]
        node = Node(bus_name, path, name, description, role, role_name(role), app_role_name,
                    states, text)
        if depth < 40:
            node.children = [self.node(b, p, depth + 1, limit)
                             for b, p in self.children(bus_name, path)
                             if p != "/org/a11y/atspi/null"]
        return node

    def applications(self) -> list[tuple[str, str, str]]:
        """(bus name, path, name) of every application registered with the registry."""
        apps = []
        for bus_name, path in self.children(REGISTRY, ROOT_PATH):
            try:
                apps.append((bus_name, path,
                             self._property(bus_name, path, ACCESSIBLE, "Name")))
            except RuntimeError:
                continue  # an application that went away between the two calls
        return apps

    def pid_of(self, bus_name: str) -> int:
        """The process behind a connection to the accessibility bus."""
        return int(self._call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                              "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s",
                              (bus_name,))[0])

    def application(self, name: str | int) -> Node:
        """An application's tree, by its name or by its process id."""
        for bus_name, path, app_name in self.applications():
            if app_name == name or (isinstance(name, int) and self.pid_of(bus_name) == name):
                return self.node(bus_name, path)
        raise LookupError(f"no application {name!r} in {self.applications()}")


class AtspiBus:
    """A private session bus with the AT-SPI bus launcher on it."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="imza-atspi-")
        self.base = Path(self._tmp.name)
        self.session = ""
        self.a11y = ""
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> AtspiBus:
        runtime = self.base / "run"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(self.base)}
        for name in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "AT_SPI_BUS_ADDRESS"):
            env.pop(name, None)  # the launcher must not find (or publish on) anyone else's
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1",
             f"--address=unix:path={self.base / 'bus'}"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env)
        self._processes.append(bus)
        assert bus.stdout is not None
        self.session = bus.stdout.readline().decode().strip()
        assert self.session.startswith("unix:"), f"dbus-daemon printed {self.session!r}"
        env["DBUS_SESSION_BUS_ADDRESS"] = self.session
        # Its own process group, so that the accessibility bus and the registry it starts
        # go with it (they are ours: started for this test only).
        launcher = subprocess.Popen([str(LAUNCHER), "--launch-immediately"], env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        self._processes.append(launcher)
        self.a11y = self._wait_for_address()
        self._wait_for_registry()
        return self

    def _wait_for_address(self) -> str:
        deadline = time.monotonic() + WAIT
        address = DBusAddress("/org/a11y/bus", bus_name="org.a11y.Bus",
                              interface="org.a11y.Bus")
        bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                          interface="org.freedesktop.DBus")
        with open_dbus_connection(self.session) as session:
            # Our launcher first: asking before it owns the name would make the bus
            # activate a second one.
            while not session.send_and_get_reply(new_method_call(
                    bus, "NameHasOwner", "s", ("org.a11y.Bus",)), timeout=WAIT).body[0]:
                assert time.monotonic() < deadline, "at-spi-bus-launcher did not start"
                time.sleep(0.02)
            while True:
                reply = session.send_and_get_reply(new_method_call(address, "GetAddress"),
                                                   timeout=WAIT)
                if reply.header.message_type is not MessageType.error and reply.body[0]:
                    return str(reply.body[0])
                assert time.monotonic() < deadline, f"no accessibility bus: {reply.body}"
                time.sleep(0.05)

    def _wait_for_registry(self) -> None:
        """Activate the registry (the first call starts at-spi2-registryd)."""
        deadline = time.monotonic() + WAIT
        while True:
            reader = Reader(self.a11y)
            try:
                reader.children(REGISTRY, ROOT_PATH)
                return
            except RuntimeError as error:
                assert time.monotonic() < deadline, f"no AT-SPI registry: {error}"
                time.sleep(0.1)
            finally:
                reader.close()

    def env(self, display: str | None = None) -> dict[str, str]:
        """What a Qt program needs to show itself to this bus (and draw on ``display``)."""
        env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": self.session,
               "QT_LINUX_ACCESSIBILITY_ALWAYS_ON": "1", "QT_ACCESSIBILITY": "1",
               "QT_QPA_PLATFORM": "xcb", "XDG_RUNTIME_DIR": str(self.base / "run")}
        env.pop("AT_SPI_BUS_ADDRESS", None)
        if display is not None:
            env["DISPLAY"] = display
        return env

    def reader(self) -> Reader:
        return Reader(self.a11y)

    def wait_for(self, app_name: str | int, ready: Callable[[Node], bool],
                 timeout: float = WAIT) -> Node:
        """The application's tree once ``ready`` holds for it (windows appear late)."""
        deadline = time.monotonic() + timeout
        last: Node | None = None
        problem = ""
        while time.monotonic() < deadline:
            reader = self.reader()
            try:
                last = reader.application(app_name)
                if ready(last):
                    return last
            except (LookupError, RuntimeError, TimeoutError) as error:
                problem = str(error)  # not registered yet, or a widget went mid-walk
            finally:
                reader.close()
            time.sleep(0.2)
        raise AssertionError(f"{app_name}: not ready in {timeout} s ({problem})\n"
                             + (last.dump() if last else "no tree"))

    def stop(self) -> None:
        launcher = self._processes[1] if len(self._processes) > 1 else None
        if launcher is not None and launcher.poll() is None:
            # The launcher's session: the accessibility bus and the registry it started.
            os.killpg(launcher.pid, signal.SIGTERM)
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if launcher is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
        self._tmp.cleanup()

    def __enter__(self) -> AtspiBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
