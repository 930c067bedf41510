"""``signature.extend``: raise a signature (CMS, PDF or XML) to a higher baseline level
without its key — a time-stamp, validation data, an archive time-stamp, or a new archive
time-stamp for an archive-level signature.

No key and no PIN, yet the page makes the agent contact services on the user's behalf and
hands back a changed document: the origin needs the ``sign`` permission and the user
agrees once, in the agent's own window (``UserInterface.ask_extend``), as for a
signature.  The document is parsed only in a document worker (``run_keyless``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging

from agent.app.core import AgentCore
from agent.app.dialogs import ExtendRequest, PreviewKind
from agent.app.documents import (
    TsaChoice,
    choose_tsa,
    document_preview,
    network_settings,
    page_tsa_guard,
    tsa_failures,
    xml_preview,
)
from agent.app.services import Services
from agent.app.signing import (
    DISPLAY_TEXT_LIMIT,
    DOCUMENT_NAME_LIMIT,
    PreviewSource,
    display_lines,
    one_line,
)
from agent.config import FormatsConfig
from agent.errors import AgentError, InternalError, NetworkError, Unsupported
from agent.formats import available_formats
from agent.formats.anchors import Anchors, load_anchors
from agent.formats.isolation import run_keyless
from agent.formats.job import KeylessJob
from agent.methods.common import bound
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_extend import ExtendFormat, ExtendLevel, SignatureExtendParams
from agent.protocol.params_extend import SignatureExtendResult as Result

log = logging.getLogger(__name__)

METHOD = "signature.extend"
# Levels that may do without a time-stamping service: a signature that is time-stamped
# already only needs its validation data for LT.
_MAY_NEED_NO_TSA = (ExtendLevel.LT, ExtendLevel.B_LT)
# The page-TSA failures of extensions are counted under a key of their own (signatures
# count theirs per handle; a handle is never this string).
_FAILURES_KEY = METHOD
_MAX_DESCRIPTION = 200  # bytes of the worker's {"signatures": n}
_MAX_SIGNATURES = 1_000_000


async def signature_extend(app: Services, ctx: CallContext,
                           params: SignatureExtendParams) -> Result:
    core, config = app.core, app.formats_config
    reached: list[bytes] = []  # set once the user is asked: the SHA-256 to journal

    async def work() -> bytes:
        await core.require(ctx, Permission.SIGN)  # PERMISSION_DENIED before any work
        tsa = _tsa(config, ctx, params)
        if tsa is not None and tsa.from_page:
            # Before anything is contacted: a page past its failures learns nothing more.
            tsa_failures.check(ctx, _FAILURES_KEY, config.max_tsa_failures_per_handle)
        # The document read in a worker before the user is asked: a malformed or
        # tampered one is refused without a dialog, and the dialog says how many
        # signatures are extended.
        signatures = await _describe(config, params)
        reached.append(await asyncio.to_thread(
            lambda: hashlib.sha256(params.signature).digest()))
        await _confirm(core, ctx, params, signatures)
        return await _extend(config, ctx, params, tsa)

    def journal(result: str) -> None:
        if not reached:  # refused before the user was asked: only counted
            core.count_unjournaled(ctx, result)
            return
        core.record(ctx, METHOD, None, "SHA-256", reached, result)

    try:
        signature = await core.interaction(ctx, work)
    except AgentError as exc:
        journal(exc.reason)
        raise
    journal("ok")
    return Result(signature=signature)


def _tsa(config: FormatsConfig, ctx: CallContext,
         params: SignatureExtendParams) -> TsaChoice | None:
    """The TSA for this request, as ``sign.*`` choose it; None for an LT extension when
    none is configured or allowed (the worker then refuses a signature that needs one)."""
    try:
        return choose_tsa(config, ctx.origin, params.tsa_url)
    except Unsupported:
        if params.level in _MAY_NEED_NO_TSA and params.tsa_url is None:
            return None
        raise


def _previews(params: SignatureExtendParams) -> PreviewSource:
    """What is extended, as the PIN dialog would show it: the signed PDF's pages, the
    XML document's text, or the content a detached CMS signs (else the CMS itself, as
    its size and SHA-256)."""
    if params.format is ExtendFormat.PDF:
        return document_preview(params.signature, PreviewKind.PDF)
    if params.format is ExtendFormat.XML:
        return xml_preview(params.signature, enveloped=False)
    if params.data is not None:
        return document_preview(params.data)
    return document_preview(params.signature, PreviewKind.BINARY)


async def _describe(config: FormatsConfig, params: SignatureExtendParams) -> int:
    """How many signatures the document holds, read in a document worker (no service is
    asked: the job has no TSA and reaches nothing)."""
    job = KeylessJob(anchors=Anchors(), network=network_settings(config))
    answer = await run_keyless("extend", job, {
        "format": params.format.value, "signature": params.signature,
        "level": params.level.value, "describe": True})
    try:  # the worker has read a hostile document: its answer is checked, not trusted
        count = json.loads(answer[:_MAX_DESCRIPTION])["signatures"]
    except (ValueError, TypeError, KeyError):
        count = None
    if type(count) is not int or not 0 < count <= _MAX_SIGNATURES:
        raise InternalError("the document worker described the document out of shape")
    return count


async def _confirm(core: AgentCore, ctx: CallContext, params: SignatureExtendParams,
                   signatures: int) -> None:
    display = params.display
    name = one_line(display.document_name if display else None, DOCUMENT_NAME_LIMIT)
    previews = await _previews(params)(core.preview_bytes)
    if name is not None and len(previews) == 1:
        previews = (dataclasses.replace(previews[0], name=name),)
    request = ExtendRequest(
        origin=ctx.origin, format=params.format.value, level=params.level.value,
        signatures=signatures, document_name=name,
        display_text=display_lines(display.text if display else None, DISPLAY_TEXT_LIMIT),
        previews=previews)
    await core.dialog(ctx, functools.partial(core.ui.ask_extend, request))


async def _extend(config: FormatsConfig, ctx: CallContext, params: SignatureExtendParams,
                  tsa: TsaChoice | None) -> bytes:
    anchors = load_anchors(config.trust_anchors)
    network = network_settings(config)
    if tsa is not None and tsa.from_page:
        network = network.guarded(page_tsa_guard(config, [*anchors.others, *anchors.roots]))
    job = KeylessJob(anchors=anchors, network=network,
                     tsa_url=tsa.url if tsa is not None else None)
    try:
        return await run_keyless("extend", job, {
            "format": params.format.value, "signature": params.signature,
            "level": params.level.value, "data": params.data})
    except NetworkError:
        if tsa is not None and tsa.from_page:
            tsa_failures.failed(ctx, _FAILURES_KEY)
        raise
    except AgentError:
        raise
    except Exception:
        log.exception("%s failed", METHOD)
        raise InternalError("the signature could not be extended") from None


def register(dispatcher: Dispatcher, app: Services) -> None:
    if available_formats():  # pyHanko and asn1crypto: what every format's extension uses
        dispatcher.register(METHOD, SignatureExtendParams, bound(app, signature_extend))
