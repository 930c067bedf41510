"""The previews of a batch's XML items (``sign.batch``) made in ONE preview process, not
one each: ``python -m agent.formats.batch_preview CPU_S MEMORY_MB LIMIT NAMESPACES
ELEMENTS``.

What each item shows is ``agent.formats.preview.indented_xml``, under the same limits,
caps and parser settings as a single document's preview; only the process is shared by
the items of one request (one page's documents), because starting Python and lxml for
each of a hundred e-invoices took most of a minute.  A document that fails, or is over
its share of ``[ui] preview_bytes``, has no text, as alone; the whole batch gets the
document workers' CPU and memory limits and ``prepare_timeout``, and past them every
item shows its size and SHA-256 only.

Daemon → process: one frame (JSON: the items' modes), then one frame per document.
Process → daemon: one frame per item: a status byte (1: text follows, 0: none), then the
text, which the daemon refuses over the item's share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from agent import pipe_frames
from agent.pipe_frames import HEADER, HEADER_SIZE, FrameError

log = logging.getLogger(__name__)

_MODULE = "agent.formats.batch_preview"
_FROM_DAEMON = 2**32 - 1


def main(argv: list[str]) -> int:
    from agent.formats.document_caps import StructureCaps
    from agent.formats.preview import indented_xml
    from agent.formats.worker import apply_limits

    cpu, memory, limit, namespaces, elements = (int(a) for a in argv[1:6])
    apply_limits(cpu, memory)  # before a byte of any document is read
    caps = StructureCaps(xml_namespace_declarations=namespaces, xml_elements=elements)
    stdin, out = sys.stdin.buffer, os.dup(1)
    head = pipe_frames.read_body(stdin, _FROM_DAEMON)
    modes = json.loads(head) if head is not None else []
    for mode in modes:
        document = pipe_frames.read_body(stdin, _FROM_DAEMON) or b""
        try:
            text = indented_xml(document, limit, caps, enveloped=mode == "enveloped")
        except Exception:  # not well-formed, over the caps, out of memory: no preview
            text = None
        body = b"\x00" if text is None else b"\x01" + text
        pipe_frames.write_all(out, HEADER.pack(len(body)) + body)
    return 0


def _env() -> dict[str, str]:
    import agent

    env = dict(os.environ)
    root = str(Path(agent.__file__).resolve().parent.parent)  # this very package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["MALLOC_ARENA_MAX"] = "2"  # as for document workers: RLIMIT_AS counts arenas
    return env


async def indented_xml_batch(documents: list[tuple[bytes, bool]], limit: int,
                             limits: object) -> list[bytes | None]:
    """Each ``(document, enveloped)``'s preview text (None: none), at most ``limit`` bytes
    each, from one preview process under the document workers' ``limits``."""
    from agent.formats.isolation import WorkerLimits

    assert isinstance(limits, WorkerLimits)
    if not documents:
        return []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", _MODULE, str(limits.cpu_seconds), str(limits.memory_mb),
        str(limit), str(limits.caps.xml_namespace_declarations),
        str(limits.caps.xml_elements), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=_env())
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    texts: list[bytes | None] = [None] * len(documents)

    async def feed() -> None:
        with contextlib.suppress(ConnectionError):
            modes = json.dumps(["enveloped" if e else "detached" for _, e in documents])
            stdin.write(HEADER.pack(len(modes)) + modes.encode("ascii"))
            for document, _ in documents:
                stdin.write(HEADER.pack(len(document)))
                stdin.write(document)
                await stdin.drain()
            stdin.close()

    async def read() -> None:
        for index in range(len(documents)):
            # More than an item may say is not a preview: the rest are left without.
            size = pipe_frames.frame_length(await stdout.readexactly(HEADER_SIZE), limit + 1)
            body = await stdout.readexactly(size)
            if body[:1] == b"\x01":
                texts[index] = body[1:]

    try:
        await asyncio.wait_for(asyncio.gather(feed(), read()), limits.prepare_timeout)
    except TimeoutError:
        log.warning("XML previews took over %.0f s; shown without their text",
                    limits.prepare_timeout)
    except (asyncio.IncompleteReadError, ConnectionError, FrameError):
        pass  # the process died or misbehaved: the items from there on show no text
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
    return texts


if __name__ == "__main__":
    sys.exit(main(sys.argv))
