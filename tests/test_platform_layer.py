"""The platform layer is the only place that asks which OS the agent runs on: a scan of
agent/ for the ways Python tells (``sys.platform``, ``os.name``, ``platform.system()``
and friends, ``winreg``) outside agent/platform, and the choice ``current()`` makes here."""

from __future__ import annotations

import ast
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


def test_nothing_outside_the_platform_layer_asks_which_os() -> None:
    offenders = {str(p.relative_to(AGENT.parent)): q for p in sorted(AGENT.rglob("*.py"))
                 if LAYER not in p.parents and (q := os_questions(p))}
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


def test_the_layer_itself_does_ask() -> None:
    assert os_questions(LAYER / "__init__.py")  # the scan would notice it elsewhere


@pytest.mark.parametrize(("system", "name"), [("linux", "linux"), ("win32", "windows"),
                                              ("darwin", "macos"), ("freebsd14", "linux")])
def test_os_names(system: str, name: str) -> None:
    assert os_name(system) == name


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
