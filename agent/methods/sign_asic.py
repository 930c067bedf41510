"""``sign.asic``: an ASiC-E container (EN 319 162-1) of the page's files with a XAdES or
CAdES signature, or one more signature on the page's container; one confirmation + PIN
dialog, whose previews list every file the signature covers."""

from __future__ import annotations

from dataclasses import replace

from agent.app.dialogs import Preview, PreviewKind
from agent.app.documents import document_preview, network_settings, sign_document
from agent.app.services import Services
from agent.app.signing import DOCUMENT_NAME_LIMIT, PreviewSource, SigningRequest, one_line
from agent.errors import TooLarge, Unsupported
from agent.formats import available_formats
from agent.formats.anchors import Anchors
from agent.formats.asic import asic_levels, build_asic, list_asic
from agent.formats.asic_caps import AsicLimits, asic_limits
from agent.formats.isolation import document_workers
from agent.formats.job import FormatJob, KeylessJob
from agent.methods.common import bound, display_of
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_asic import AsicFile, SignAsicParams, SignAsicResult


def _checked_files(files: list[AsicFile], limits: AsicLimits) -> None:
    """The installation's bounds on a new container, before any dialog or worker."""
    if len(files) > limits.files:
        raise TooLarge(f"a container holds at most {limits.files} files "
                       "([documents] max_container_files)")
    for item in files:
        if len(item.name.encode("utf-8")) > limits.name_bytes:
            raise Unsupported(f"a file name is longer than {limits.name_bytes} bytes "
                              "([documents] max_container_name_bytes)")


def _named(preview: Preview, name: str) -> Preview:
    return replace(preview, name=one_line(name, DOCUMENT_NAME_LIMIT))


def files_preview(files: list[AsicFile]) -> PreviewSource:
    """One preview per file of a new container, each as its content is (PDF, text,
    else size and SHA-256), named by its path."""

    async def previews(limit: int) -> tuple[Preview, ...]:
        out = []
        for item in files:
            [shown] = await document_preview(item.data)(limit)
            out.append(_named(shown, item.name))
        return tuple(out)

    return previews


def container_preview(app: Services, container: bytes, limits: AsicLimits) -> PreviewSource:
    """The files of a page's container, listed by a document worker (the daemon never
    unzips what a page sent), each previewed as in ``files_preview``."""

    async def previews(limit: int) -> tuple[Preview, ...]:
        job = KeylessJob(anchors=Anchors(), network=network_settings(app.formats_config))
        out = []
        for listed in await list_asic(job, container, limits, limit):
            if listed.data is not None:
                [shown] = await document_preview(listed.data)(limit)
            else:
                shown = Preview(PreviewKind.BINARY, size=listed.size, sha256=listed.sha256)
            out.append(_named(shown, listed.name))
        return tuple(out)

    return previews


async def sign_asic(app: Services, ctx: CallContext, params: SignAsicParams) -> SignAsicResult:
    limits = asic_limits(document_workers().limits.caps)
    signature_format = params.signature_format.value
    level = params.level.value
    if level not in asic_levels(signature_format):
        raise Unsupported(f"level {level} is not available for {signature_format} "
                          f"containers (agent.info)")
    choice = params.digest_algorithm.value if params.digest_algorithm is not None else None
    if params.files is not None:
        _checked_files(params.files, limits)
        previews = files_preview(params.files)
        source: dict[str, object] = {"files": [
            {"name": f.name, "data": f.data, "mime_type": f.mime_type} for f in params.files]}
    else:
        assert params.container is not None
        previews = container_preview(app, params.container, limits)
        source = {"container": params.container}

    async def build(job: FormatJob) -> bytes:
        return await build_asic(job, {"signature_format": signature_format, "level": level,
                                      "digest_algorithm": choice, "limits": limits,
                                      **source})

    request = SigningRequest(method="sign.asic", purpose="sign", handle=params.handle,
                             display=display_of(params.display),
                             digest_algorithm=choice or "SHA-256", previews=previews)
    container = await sign_document(app.core, ctx, app.formats_config, request,
                                    page_tsa_url=params.tsa_url, needs_tsa=level != "B-B",
                                    build=build)
    return SignAsicResult(container=container)


def register(dispatcher: Dispatcher, app: Services) -> None:
    if "asic" in available_formats():
        dispatcher.register("sign.asic", SignAsicParams, bound(app, sign_asic))
