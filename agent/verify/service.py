"""The daemon's (and the command line's) side of verification: the configured anchors and
network, a document worker to do it, and the worker's report checked before use."""

from __future__ import annotations

import json
import logging

from pydantic import ValidationError

from agent.config import FormatsConfig
from agent.errors import InternalError
from agent.formats.anchors import load_anchors
from agent.formats.isolation import run_keyless
from agent.formats.job import KeylessJob
from agent.protocol.params_verify import SignatureVerifyResult

log = logging.getLogger(__name__)


def verify_job(config: FormatsConfig) -> KeylessJob:
    """Anchors from ``[formats] trust_anchors``; the network of ``[formats]``, guarded:
    the addresses a document's certificates name are the document's choice, so only the
    administrator's and the anchors' own addresses may be private (as a page's TSA)."""
    from agent.app.documents import network_settings, page_tsa_guard

    anchors = load_anchors(config.trust_anchors)
    network = network_settings(config).guarded(
        page_tsa_guard(config, [*anchors.roots, *anchors.others]))
    return KeylessJob(anchors=anchors, network=network)


async def verify_signature(config: FormatsConfig, signature: bytes, data: bytes | None,
                           format: str | None) -> SignatureVerifyResult:
    raw = await run_keyless("verify", verify_job(config),
                            {"signature": signature, "data": data, "format": format})
    try:
        return SignatureVerifyResult.model_validate(json.loads(raw))
    except ValidationError as exc:
        # Where, not what: the values came from a hostile document.
        places = [".".join(str(p) for p in e["loc"]) for e in exc.errors()[:5]]
        log.warning("a verification worker sent a malformed report at %s", places)
    except ValueError:
        log.warning("a verification worker sent a report that is not JSON")
    raise InternalError("the verification report could not be read")
