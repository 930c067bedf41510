"""The platform layer is the only place that asks which OS the agent runs on: a scan of
agent/ for the ways Python tells (``sys.platform``, ``os.name``, ``platform.system()``
and friends, ``winreg``) outside agent/platform, and the choice ``current()`` makes here."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.platform import build, current, os_name

AGENT = Path(__file__).resolve().parents[1] / "agent"
LAYER = AGENT / "platform"

ASKS = {("sys", "platform"), ("os", "name"), ("platform", "system"), ("platform", "uname"),
        ("platform", "mac_ver"), ("platform", "win32_ver"), ("platform", "win32_edition"),
        ("platform", "release"), ("sys", "getwindowsversion")}
OS_MODULES = {"winreg", "_winapi", "msvcrt"}


def os_questions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in ASKS):
            found.append(f"{node.value.id}.{node.attr}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("sys", "os", "platform"):
            found += [f"from {node.module} import {a.name}:{node.lineno}" for a in node.names
                      if (node.module, a.name) in ASKS]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""])
            found += [f"import {n}:{node.lineno}" for n in names if n in OS_MODULES]
    return found


def outside_the_layer() -> Iterator[tuple[str, Path]]:
    """Every module of the agent but the platform layer's, by its repository path."""
    for path in sorted(AGENT.rglob("*.py")):
        if LAYER not in path.parents:
            yield str(path.relative_to(AGENT.parent)), path


def test_nothing_outside_the_platform_layer_asks_which_os() -> None:
    offenders = {name: q for name, path in outside_the_layer() if (q := os_questions(path))}
    assert offenders == {}


def test_the_scan_sees_each_way_of_asking(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import sys, os, platform\nimport winreg\nfrom sys import platform as p\n"
                      "a = sys.platform\nb = os.name == 'nt'\nc = platform.system()\n",
                      encoding="utf-8")
    assert sorted(q.split(":")[0] for q in os_questions(sample)) == sorted(
        ["import winreg", "from sys import platform", "sys.platform", "os.name",
         "platform.system"])
    harmless = tmp_path / "ok.py"
    harmless.write_text("from agent.platform import current\nname = current().name\n",
                        encoding="utf-8")
    assert os_questions(harmless) == []


# --- /proc: Linux's view of processes ---------------------------------------------------------
# Reading /proc is asking Linux too (Windows and macOS have none): a path string in code
# outside the layer is flagged; comments and docstrings that name it are not.

SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _docstring(node: ast.AST) -> ast.AST | None:
    body = getattr(node, "body", None)
    first = body[0] if isinstance(body, list) and body else None
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return first.value
    return None


def proc_paths(path: Path) -> set[tuple[str, str]]:
    """(the enclosing function or class, the string) for each string literal in code
    (f-strings' parts included; not docstrings) that is a /proc path."""
    found: set[tuple[str, str]] = set()

    def visit(node: ast.AST, scope: str, skip: ast.AST | None) -> None:
        if isinstance(node, SCOPES):
            scope = node.name
        doc = _docstring(node) or skip
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node is not doc
                and (node.value + "/").startswith("/proc/")):
            found.add((scope, node.value))
        for child in ast.iter_child_nodes(node):
            visit(child, scope, doc)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>", None)
    return found


def test_nothing_outside_the_layer_reads_proc() -> None:
    offenders = {}
    for name, path in outside_the_layer():
        found = sorted(f"{scope}: {text}" for scope, text in proc_paths(path))
        if found:
            offenders[name] = found
    assert offenders == {}


PROC_SAMPLE = '''"""Reads /proc/self (the module's doc)."""
from pathlib import Path

SELF = Path("/proc/self")


class C:
    """/proc/<pid>/stat, in a class's doc."""


def f(pid):
    """/proc/<pid>/cmdline, in a function's doc."""
    # /proc/net/tcp, in a comment
    a = Path(f"/proc/{pid}/cmdline")
    c = Path("/proc")
    d = "see /proc/net/tcp"
    e = "/process"
'''


def test_the_proc_scan_sees_code_and_not_prose(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(PROC_SAMPLE, encoding="utf-8")
    found = proc_paths(sample)
    # Compared by their tails after "/proc": tests/test_linux_marker.py would take a
    # /proc literal here for a test that reads /proc.
    assert all(text.startswith("/proc") for _, text in found)
    assert sorted((scope, text[5:]) for scope, text in found) == [
        ("<module>", "/self"), ("f", ""), ("f", "/")]


def test_the_layer_itself_does_ask() -> None:
    assert os_questions(LAYER / "__init__.py")  # the scan would notice it elsewhere


@pytest.mark.parametrize(("system", "name"), [("linux", "linux"), ("win32", "windows"),
                                              ("darwin", "macos"), ("freebsd14", "linux")])
def test_os_names(system: str, name: str) -> None:
    assert os_name(system) == name


@pytest.mark.linux
def test_this_machine_gets_the_linux_platform_once() -> None:
    platform = current()
    assert platform is current()
    assert platform.name == "linux" and platform.trust_automatic is True
    assert build("linux").name == "linux"
    assert platform.system_policy_file() == Path("/etc/imza-agent/policy.toml")
    assert platform.pkcs11_table == "linux" and platform.pkcs11_pack is None
    assert platform.relay().address(Path("/run/x.sock")) == "/run/x.sock"
    assert platform.process_exists(1) is True
    assert platform.description().startswith("Linux ")


@pytest.mark.posix
def test_the_unix_relay_listens_for_this_user_only(tmp_path: Path) -> None:
    import asyncio
    import stat

    async def scenario() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(2))
            await writer.drain()
            writer.close()

        relay = current().relay()
        path = tmp_path / "agent.sock"
        server = await relay.listen(path, echo, 2**16)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reader, writer = await relay.connect(path, 2**16)
        writer.write(b"hi")
        answer = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return answer

    assert asyncio.run(scenario()) == b"hi"


# --- calls that exist on Linux and macOS only -------------------------------------------------
# Asking ``sys.platform`` is one way to know the OS; calling what only POSIX has is another,
# and on Windows it fails at import (``fcntl``) or at the call (``os.pwrite``). Outside the
# layer such a call must be guarded (``try`` … ``except ImportError/AttributeError``) or be
# one of the few below, each reached only where the OS has it.

POSIX_MODULES = {"fcntl", "termios", "pwd", "grp", "resource", "posix", "tty", "pty"}
POSIX_CALLS = {("os", "pwrite"), ("os", "pread"), ("os", "getsid"), ("os", "getuid"),
               ("os", "geteuid"), ("os", "getgid"), ("os", "fork"), ("os", "setsid"),
               ("os", "killpg"), ("os", "getpgid"), ("os", "setpgrp"), ("os", "O_CLOEXEC"),
               ("signal", "SIGKILL"), ("signal", "SIGHUP"), ("signal", "SIGXCPU"),
               ("socket", "AF_UNIX"), ("asyncio", "open_unix_connection"),
               ("asyncio", "start_unix_server")}
GUARDS = {"ImportError", "ModuleNotFoundError", "AttributeError"}

# Reached only where the OS has it, each for the reason given.
POSIX_ONLY_PATHS = {
    # The X11/Wayland display check of the Linux desktop.
    "agent/ui/process/display.py": {"socket.AF_UNIX"},
    # A stale Unix socket file; Windows' named pipe leaves no file to find.
    "agent/transport/local.py": {"asyncio.open_unix_connection"},
}


def _guarded(parents: list[ast.AST]) -> bool:
    for node in parents:
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                kinds = (handler.type.elts if isinstance(handler.type, ast.Tuple)
                         else [handler.type])
                if any(isinstance(k, ast.Name) and k.id in GUARDS for k in kinds):
                    return True
    return False


def posix_only_calls(path: Path) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST, parents: list[ast.AST]) -> None:
        if isinstance(node, ast.Import) and not _guarded(parents):
            found.update(f"import {a.name}" for a in node.names if a.name in POSIX_MODULES)
        elif (isinstance(node, ast.ImportFrom) and node.module in POSIX_MODULES
              and not _guarded(parents)):
            found.add(f"import {node.module}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and (node.value.id, node.attr) in POSIX_CALLS and not _guarded(parents)):
            found.add(f"{node.value.id}.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name)
              and (node.func.value.id, node.func.attr) == ("os", "kill")
              and len(node.args) == 2 and isinstance(node.args[1], ast.Constant)
              and node.args[1].value == 0):
            found.add("os.kill(pid, 0)")  # Windows: CTRL_C_EVENT to that process group
        elif (isinstance(node, ast.Call) and ast.unparse(node.func) == "os.kill"
              and node.args and ast.unparse(node.args[0]) == "os.getpid()"):
            found.add("os.kill(os.getpid(), …)")  # Windows: TerminateProcess, no orderly stop
        for child in ast.iter_child_nodes(node):
            visit(child, [*parents, node])

    visit(ast.parse(path.read_text(encoding="utf-8")), [])
    return found


def test_nothing_outside_the_layer_calls_what_only_posix_has() -> None:
    offenders = {}
    for name, path in outside_the_layer():
        calls = posix_only_calls(path) - POSIX_ONLY_PATHS.get(name, set())
        if calls:
            offenders[name] = sorted(calls)
    assert offenders == {}


def test_the_posix_scan_sees_each_kind_and_respects_guards(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "import os, signal, socket\nimport fcntl\nfrom resource import RLIMIT_AS\n"
        "os.pwrite(1, b'', 0)\nos.kill(5, 0)\nos.kill(5, signal.SIGTERM)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "s = socket.AF_UNIX\n"
        "try:\n    import termios\nexcept ImportError:\n    pass\n"
        "try:\n    x = os.getsid(0)\nexcept AttributeError:\n    pass\n", encoding="utf-8")
    assert posix_only_calls(sample) == {"import fcntl", "import resource", "os.pwrite",
                                        "os.kill(pid, 0)", "os.kill(os.getpid(), …)",
                                        "socket.AF_UNIX"}


def test_each_posix_only_exception_is_still_there() -> None:
    # A stale entry would let the call come back unnoticed.
    for name, calls in POSIX_ONLY_PATHS.items():
        assert calls <= posix_only_calls(AGENT.parent / name), name
