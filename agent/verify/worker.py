"""Inside a document worker: the verification report of one signed file (contract; the
verify work fills it in)."""

from __future__ import annotations

from typing import Any

from agent.errors import Unsupported
from agent.formats.job import KeylessJob


async def run_verify(job: KeylessJob, *, caps: Any, **args: Any) -> bytes:
    raise Unsupported("verification is not available yet")
