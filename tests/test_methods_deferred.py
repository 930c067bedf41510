"""The document methods are registered by name at start and their modules imported at
their first call (agent/methods/__init__.py, issue 17 bar 6): the same methods with the
same params as each module's own ``register``, none of the document stack imported to
register them, and the daemon's ``[documents]`` limits in force before the first one runs.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.formats import available_formats
from agent.methods import _DOCUMENT_METHODS, register_all
from agent.protocol.dispatch import Dispatcher

REPO = Path(__file__).resolve().parent.parent
ALL_MODULES = ("info", "certificates_select", "certificates_list", "sign_hash", "auth_login",
               "tokens_subscribe", "sign_cms", "sign_pdf", "sign_xml", "sign_batch",
               "signature_extend", "sign_asic", "signature_verify", "document_upload")
DOCUMENT_STACK = ("agent.formats.isolation", "agent.app.documents", "agent.formats.asic",
                  "agent.formats.job", "agent.formats.network")


class Recorder:
    """What a module's own ``register`` asks the dispatcher for."""

    def __init__(self) -> None:
        self.methods: dict[str, type[Any]] = {}

    def register(self, name: str, params_model: type[Any], handler: object) -> None:
        self.methods[name] = params_model


def _registered(dispatcher: Dispatcher) -> dict[str, type[Any]]:
    return {name: reg.params_model for name, reg in dispatcher._methods.items()}


def test_the_same_methods_and_params_as_the_modules_register() -> None:
    eager = Recorder()
    for name in ALL_MODULES:
        importlib.import_module(f"agent.methods.{name}").register(eager, object())
    lazy = Dispatcher()
    register_all(lazy, object())  # type: ignore[arg-type]  # registration only
    assert _registered(lazy) == eager.methods
    # This installation has the document formats: the deferred ones are all there.
    assert available_formats()
    assert set(_DOCUMENT_METHODS) <= set(lazy.methods)


def test_registering_imports_none_of_the_document_stack() -> None:
    code = ("import json, sys\n"
            "from agent.methods import register_all\n"
            "from agent.protocol.dispatch import Dispatcher\n"
            "d = Dispatcher()\n"
            "register_all(d, object())\n"
            "print(json.dumps({'methods': sorted(d.methods), "
            "'modules': sorted(m for m in sys.modules if m.startswith('agent.'))}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert "sign.pdf" in seen["methods"] and "signature.verify" in seen["methods"]
    loaded = set(seen["modules"])
    assert "agent.methods.sign_hash" in loaded  # the check can see a method module
    for module in (*DOCUMENT_STACK, *(f"agent.methods.{m}" for m, _, _ in
                                      _DOCUMENT_METHODS.values())):
        assert module not in loaded, module


def test_the_first_call_applies_the_documents_limits_then_runs_the_method() -> None:
    """In a fresh interpreter: the workers' limits are the configured ones once the first
    document method has run (signature.verify here, refused: no grant)."""
    code = """
import asyncio, json, sys
from agent.config import DocumentsConfig
from agent.errors import PermissionDenied
from agent.methods import register_all
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_verify import SignatureVerifyParams

class Core:
    def allowed_without_asking(self, ctx, permission):
        return False

class App:
    core = Core()

documents = DocumentsConfig(worker_cpu_seconds=7, worker_memory_mb=300)
d = Dispatcher()
register_all(d, App(), documents=documents)
before = "agent.formats.isolation" in sys.modules
handler = d._methods["signature.verify"].handler
ctx = CallContext(origin="https://page.example", transport="ws", connection_id="c1")
params = SignatureVerifyParams.model_validate({"signature": "AAAA"})
try:
    asyncio.run(handler(ctx, params))
    refused = False
except PermissionDenied:
    refused = True
from agent.formats import isolation
limits = isolation.document_workers().limits
print(json.dumps({"before": before, "refused": refused,
                  "same": limits == isolation.limits_from_config(documents),
                  "default": limits == isolation.limits_from_config(DocumentsConfig())}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen == {"before": False, "refused": True, "same": True, "default": False}


@pytest.mark.parametrize("name", sorted(_DOCUMENT_METHODS))
def test_each_deferred_handler_names_a_real_coroutine(name: str) -> None:
    module_name, function, _needs = _DOCUMENT_METHODS[name]
    handler = getattr(importlib.import_module(f"agent.methods.{module_name}"), function)
    assert inspect.iscoroutinefunction(handler)
    assert list(inspect.signature(handler).parameters)[:2] == ["app", "ctx"]

