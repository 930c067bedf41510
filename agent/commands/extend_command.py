"""``imza-agent extend FILE --level LEVEL [--format cms|pdf|xml] [--data DETACHED]
[--tsa-url URL] [--out OUT]``: raise a signature the person has to a higher baseline
level (a time-stamp, validation data, an archive time-stamp; LTA again renews it), without
its key and without asking the running agent.

The person runs it for their own file, so the configuration's time-stamping service and
trust anchors apply and a TSA given on the command line is taken as it is (no address
guard: no page chose it).  The file is still parsed only in a document worker, under the
``[documents]`` limits, as the daemon does: a file from a stranger costs a process.

Only the first bytes of FILE are looked at here, to tell the format when ``--format`` is
not given (``%PDF-``, an XML declaration or element, else DER).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from agent.commands.text import error, shown_path
from agent.i18n import _

if TYPE_CHECKING:
    from agent.config import Config

OK, FAILED, USAGE = 0, 1, 2
FORMATS = ("cms", "pdf", "xml")
LEVELS = ("T", "LT", "LTA", "B-T", "B-LT", "B-LTA")
_SNIFF_BYTES = 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (``agent/cli.py`` calls this for its ``extend`` parser)."""
    parser.add_argument("file", type=Path, metavar="FILE",
                        help=_("the signature: a CMS file, a signed PDF or a signed XML "
                               "document"))
    parser.add_argument("--level", required=True, type=str.upper, choices=LEVELS,
                        help=_("the level to reach: T, LT, LTA (B-T, B-LT, B-LTA are the "
                               "same); LTA of an LTA signature adds a new archive "
                               "time-stamp"))
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help=_("the signature's format (default: told from the file)"))
    parser.add_argument("--data", type=Path, default=None, metavar="DETACHED",
                        help=_("the signed content of a detached CMS or XAdES signature "
                               "(an archive time-stamp covers it)"))
    parser.add_argument("--tsa-url", default=None, metavar="URL",
                        help=_("the time-stamping service (default: [formats] tsa_url of "
                               "the configuration)"))
    parser.add_argument("--out", type=Path, default=None, metavar="OUT",
                        help=_("where to write the extended signature (default: FILE's "
                               "name with the level added, next to it)"))


def run(args: argparse.Namespace, config: Config) -> int:
    """``agent/cli.py``'s entry: the parsed arguments and the configuration."""
    return main(config, file=args.file, level=args.level, format=args.format,
                data=args.data, tsa_url=args.tsa_url, out=args.out)


def detect_format(head: bytes) -> str:
    """``pdf``, ``xml`` or ``cms`` from a file's first bytes (a signed PDF may have
    bytes before ``%PDF-``; XML may start with a byte-order mark)."""
    if b"%PDF-" in head[:_SNIFF_BYTES]:
        return "pdf"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<"):
        return "xml"
    return "cms"


def level_for(fmt: str, level: str) -> str:
    """The level as the format names it: CAdES "LT", PAdES and XAdES "B-LT"."""
    bare = level.removeprefix("B-")
    return bare if fmt == "cms" else f"B-{bare}"


def default_out(file: Path, level: str) -> Path:
    return file.with_name(f"{file.stem}.{level}{file.suffix}")


def main(config: Config, *, file: Path, level: str, format: str | None = None,
         data: Path | None = None, tsa_url: str | None = None, out: Path | None = None
         ) -> int:
    limit = config.server.max_document_bytes
    try:
        signature = _read(file, limit)
        detached = _read(data, limit) if data is not None else None
    except _Refused as refused:
        error(str(refused))
        return FAILED
    fmt = format or detect_format(signature[:_SNIFF_BYTES])
    if detached is not None and fmt == "pdf":
        error(_("a PDF carries its content: --data is for CMS and XML signatures"))
        return USAGE
    wanted = level_for(fmt, level)
    target = out or default_out(file, wanted)
    try:
        extended = asyncio.run(_extend(config, fmt, signature, wanted, detached, tsa_url))
    except _Refused as refused:
        error(str(refused))
        return FAILED
    try:
        _write(target, extended)
    except OSError as exc:
        error(_("cannot write {path}: {reason}").format(path=shown_path(target),
                                                        reason=exc.strerror or exc))
        return FAILED
    print(_("Extended to {level}: {path}").format(level=wanted, path=shown_path(target)))
    return OK


class _Refused(Exception):
    """A message for the person, already translated."""


def _read(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise _Refused(_("{path} is larger than the limit of {limit} bytes "
                             "([server] max_document_bytes)").format(
                path=shown_path(path), limit=limit))
        return path.read_bytes()
    except OSError as exc:
        raise _Refused(_("cannot read {path}: {reason}").format(
            path=shown_path(path), reason=exc.strerror or exc)) from None


async def _extend(config: Config, fmt: str, signature: bytes, level: str,
                  detached: bytes | None, tsa_url: str | None) -> bytes:
    from agent.app.documents import network_settings
    from agent.errors import AgentError
    from agent.formats.anchors import load_anchors
    from agent.formats.isolation import DocumentWorkers, limits_from_config
    from agent.formats.job import KeylessJob

    job = KeylessJob(anchors=load_anchors(config.formats.trust_anchors),
                     network=network_settings(config.formats),
                     tsa_url=tsa_url or (str(config.formats.tsa_url)
                                         if config.formats.tsa_url else None))
    # One document, no spare worker kept warm for a next one that never comes.
    workers = DocumentWorkers(dataclasses.replace(limits_from_config(config.documents),
                                                  warm_workers=0))
    try:
        return await workers.run("extend", job, {"format": fmt, "signature": signature,
                                                 "level": level, "data": detached})
    except AgentError as exc:
        raise _Refused(_("the signature could not be extended ({reason}): {message}")
                       .format(reason=exc.reason, message=exc.message)) from None
    finally:
        await workers.close()


def _write(target: Path, data: bytes) -> None:
    """Whole or not at all: a temporary file next to ``target``, then renamed."""
    target = target.expanduser()
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
