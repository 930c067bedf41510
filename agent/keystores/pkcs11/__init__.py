"""PKCS#11 tokens, each module driven from its own worker process (crash isolation).

Only names are exported here, lazily: the worker process imports this package too and
must not pay for asyncio or cryptography on start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.keystores.pkcs11.modules import ModuleCandidate, discover_modules
    from agent.keystores.pkcs11.store import ModuleInfo, Pkcs11Store

__all__ = ["ModuleCandidate", "ModuleInfo", "Pkcs11Store", "discover_modules"]

_HOMES = {"Pkcs11Store": "store", "ModuleInfo": "store",
          "ModuleCandidate": "modules", "discover_modules": "modules"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
