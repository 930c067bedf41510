"""Issue 18 §4: the portal developer's documentation says what the code does.

- docs/integration.md has a guide per server language (Python, Node.js, Java), the sequence
  of calls as diagrams, the error tables and the administrator's part;
- its login-error table lists exactly the kit's error codes, and its table of the SDK's
  error kinds exactly the kinds the SDK module exports;
- every Python example (docs/integration.md, the Python kit's README and DOCUMENTS.md)
  calls the kit as it is: what it imports exists, each call to a kit class or method binds
  to the real signature, each attribute it reads exists. (The Java examples are compiled
  in tests/test_portal_kit_java.py, the Node.js ones checked in test_portal_kit_node.py.)
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import re
import shutil
import subprocess
import typing
from typing import Any

import pytest
from daemon import REPO

from imza_portal.errors import ErrorCode

INTEGRATION = REPO / "docs" / "integration.md"
PYTHON_KIT = REPO / "portal-kit" / "python"
PYTHON_DOCS = {"integration": INTEGRATION, "README": PYTHON_KIT / "README.md",
               "DOCUMENTS": PYTHON_KIT / "DOCUMENTS.md"}


def _section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or a higher
    level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    end = re.search(rf"^#{{1,{level}}} ", text[start + len(heading):], re.M)
    return text[start: start + len(heading) + end.start()] if end else text[start:]


def _table_codes(section: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))


def test_a_guide_per_language_the_diagrams_and_the_administrators_part() -> None:
    text = INTEGRATION.read_text(encoding="utf-8")
    for heading, fence, kit_import in [
            ("### Python (Flask)", "```python", "from imza_portal.login import"),
            ("### Node.js (Express)", "```js", "from 'imza-portal-verify'"),
            ("### Java (Spring Boot)", "```java", "import az.imza.portal.LoginVerifier;")]:
        section = _section(text, heading)
        assert fence in section and kit_import in section, heading
    diagrams = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    # login, and the document that stays on the server
    assert len(diagrams) >= 2 and all(d.startswith("sequenceDiagram") for d in diagrams)
    assert any("auth.login" in d for d in diagrams)
    assert any("sign.hash" in d and "prepare_pdf" in d for d in diagrams)
    admin = _section(text, "## Administrators")
    assert "policy.toml" in admin and "LocalNetworkAccessAllowedForUrls" in admin


def test_the_login_error_table_is_the_kits_codes() -> None:
    table = _section(INTEGRATION.read_text(encoding="utf-8"),
                     "### Login errors: what to tell the user")
    assert _table_codes(table) == {code.value for code in ErrorCode}


def test_the_sdk_kinds_table_is_the_sdks_kinds() -> None:
    node = shutil.which("node")
    assert node is not None, "node is required: apt-get install nodejs"
    sdk = REPO / "extension" / "sdk" / "imza.js"
    done = subprocess.run(
        [node, "--input-type=module", "-e",
         "const sdk = await import(process.argv[1]);"
         "console.log(JSON.stringify(Object.values(sdk.Kind)))", sdk.as_uri()],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    kinds = set(json.loads(done.stdout))
    table = _section(INTEGRATION.read_text(encoding="utf-8"),
                     "### What to tell the user (the SDK's error kinds)")
    # every kind has its row; the agent's other reasons pass through ("any other" row)
    assert len(kinds) >= 9 and _table_codes(table) == kinds


# --- the Python examples against the kit ------------------------------------------------

def _instance_for(cls: type) -> Any:
    """An object to read attributes from: exceptions as the kit raises them."""
    if issubclass(cls, BaseException):
        for args in (("MALFORMED", "a message"), ("a message",)):
            try:
                return cls(*args)
            except (TypeError, ValueError):
                continue
    return cls


class _KitUsage(ast.NodeVisitor):
    """Follows names bound to the kit's classes and their results through one example and
    records every call and attribute that does not fit the kit."""

    def __init__(self) -> None:
        self.types: dict[str, Any] = {}  # name in the example -> kit class (or instance)
        self.problems: list[str] = []
        self.checked = 0

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if (node.module or "").startswith("imza_portal"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                if not hasattr(module, alias.name):
                    self.problems.append(f"{node.module} has no {alias.name}")
                else:
                    self.types[alias.asname or alias.name] = ("class",
                                                              getattr(module, alias.name))

    def _callee(self, func: ast.expr) -> inspect.Signature | None:
        """The signature a call binds to: a kit class's constructor, a kit class's class or
        static method, or a method of an instance of one (without its ``self``)."""
        if isinstance(func, ast.Name) and func.id in self.types:
            kind, value = self.types[func.id]
            return inspect.signature(value) if kind == "class" and callable(value) else None
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id in self.types):
            return None
        kind, owner = self.types[func.value.id]
        if not hasattr(owner, func.attr):
            self.problems.append(f"line {func.lineno}: {func.value.id}.{func.attr}: "
                                 f"{owner.__name__} has no such method")
            return None
        method = getattr(owner, func.attr)
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(method).parameters.values()):
            # the sync wrappers pass **options on to their async_ twin: check against that
            method = getattr(owner, f"async_{func.attr}", method)
        plain = not isinstance(inspect.getattr_static(owner, func.attr),
                               (staticmethod, classmethod))
        if kind == "instance" and plain:
            return inspect.signature(functools.partial(method, None))  # self
        return inspect.signature(method)

    def _returns(self, func: ast.expr) -> type | None:
        if isinstance(func, ast.Name) and func.id in self.types:
            kind, value = self.types[func.id]
            return value if kind == "class" and inspect.isclass(value) else None
        if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id in self.types):
            method = getattr(self.types[func.value.id][1], func.attr, None)
            if callable(method):
                returned = typing.get_type_hints(method).get("return")
                return returned if inspect.isclass(returned) else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        signature = self._callee(node.func)
        if signature is not None and not any(isinstance(a, ast.Starred) for a in node.args) \
                and all(k.arg is not None for k in node.keywords):
            try:
                signature.bind(*[None] * len(node.args),
                               **{k.arg: None for k in node.keywords if k.arg})
            except TypeError as exc:
                self.problems.append(f"line {node.lineno}: {ast.unparse(node)}: {exc}")
            self.checked += 1
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            return
        if isinstance(node.value, ast.Call):
            returned = self._returns(node.value.func)
            if returned is not None:
                self.types[node.targets[0].id] = ("instance", returned)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name and isinstance(node.type, ast.Name) and node.type.id in self.types:
            self.types[node.name] = ("instance", self.types[node.type.id][1])
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in self.types:
            kind, cls = self.types[node.value.id]
            if kind == "instance":
                fields = getattr(cls, "__dataclass_fields__", {})
                if node.attr not in fields and not hasattr(_instance_for(cls), node.attr):
                    self.problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}: "
                                         f"{cls.__name__} has no {node.attr}")
                self.checked += 1
        self.generic_visit(node)


@pytest.mark.parametrize("where", sorted(PYTHON_DOCS))
def test_the_python_examples_call_the_kit_as_it_is(where: str) -> None:
    text = PYTHON_DOCS[where].read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, where
    usage = _KitUsage()
    for block in blocks:
        usage.visit(ast.parse(block))
    assert not usage.problems, "\n".join(usage.problems)
    assert usage.checked >= 4  # the visitor really followed the kit's names
