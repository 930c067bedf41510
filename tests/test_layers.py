"""Which way imports go (docs/architecture.md), checked on the source: a module of a
layer may not import — not even under TYPE_CHECKING or inside a function — from the
layers it must not know."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent"

# layer (package under agent/) → packages it must never import
FORBIDDEN = {
    "protocol": ("agent.app", "agent.methods", "agent.keystores", "agent.ui", "agent.policy",
                 "agent.transport", "agent.daemon", "agent.formats", "agent.pcsc",
                 "agent.pinmgmt", "agent.commands"),
    "formats": ("agent.protocol.params", "agent.protocol.results", "agent.protocol.dispatch",
                "agent.protocol.enums", "agent.app", "agent.methods", "agent.policy",
                "agent.transport", "agent.ui", "agent.daemon", "agent.keystores"),
    "app": ("agent.transport", "agent.ui", "agent.daemon", "agent.methods",
            "agent.keystores.pkcs11", "agent.keystores.pkcs12", "agent.keystores.demo",
            "agent.keystores.manager", "agent.policy.grants", "agent.pcsc"),
    "keystores": ("agent.app", "agent.methods", "agent.transport", "agent.ui",
                  "agent.daemon", "agent.formats", "agent.pcsc"),
    "methods": ("agent.transport", "agent.ui", "agent.daemon", "agent.keystores.pkcs11",
                "agent.keystores.pkcs12", "agent.keystores.manager", "agent.pinmgmt",
                "agent.commands"),
    "transport": ("agent.app", "agent.methods", "agent.keystores", "agent.formats",
                  "agent.ui", "agent.pinmgmt", "agent.commands"),
    # PIN change and unblock are started by the person (tray, CLI), never by a page.
    "pinmgmt": ("agent.methods", "agent.transport", "agent.protocol.dispatch", "agent.daemon"),
    # The ATR map knows which module *files* serve a card (keystores.pkcs11.modules),
    # never a store class.
    "pcsc": ("agent.keystores.pkcs11.store", "agent.keystores.pkcs11.client",
             "agent.keystores.pkcs12", "agent.keystores.demo", "agent.app"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((AGENT / layer).rglob("*.py")):
        for name in imported_modules(path):
            for banned in FORBIDDEN[layer]:
                if name == banned or name.startswith(banned + "."):
                    found.append(f"{path.relative_to(AGENT.parent)} imports {name}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    assert (AGENT / layer).is_dir()
    assert violations(layer) == []


def test_the_check_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from agent.app.core import AgentCore\n"
                      "def f():\n    import agent.ui.tk\n", encoding="utf-8")
    assert {"agent.app.core", "agent.ui.tk"} <= imported_modules(sample)
