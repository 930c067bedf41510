"""What the method handlers are given: the use cases and the installation's formats.

The daemon builds one ``Services`` from real adapters; an in-process test builds one from
fakes (``tests/fakes.py``).  Handlers get it when they are registered, so the protocol's
``CallContext`` stays free of application types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.app.core import AgentCore
from agent.config import FormatsConfig


@dataclass
class Services:
    core: AgentCore
    # Signature formats available in this installation and their levels, e.g.
    # {"cms": ["B", "T", "LT"], "pdf": ["B-B", "B-T"]}; shown by agent.info.
    formats: Mapping[str, Sequence[str]] = field(default_factory=dict)
    formats_config: FormatsConfig = field(default_factory=FormatsConfig)
