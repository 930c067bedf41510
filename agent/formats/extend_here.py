"""Inside a document worker: ``signature.extend`` — a signature raised to a higher
baseline level without its key (contract; the extend work fills it in)."""

from __future__ import annotations

from typing import Any

from agent.errors import Unsupported
from agent.formats.job import KeylessJob


async def run_extend(job: KeylessJob, *, caps: Any, **args: Any) -> bytes:
    raise Unsupported("extending signatures is not available yet")
