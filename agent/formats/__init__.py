"""Signature formats built over the agent's key stores: CAdES (``sign.cms``), PAdES
(``sign.pdf``) and XAdES (``sign.xml``).

This package's ``__init__`` stays light: the daemon imports it at start-up to advertise
what is available, so pyHanko, signxml and lxml are only looked for here, never imported;
the format modules import them when a request needs them — in a document worker
process (``isolation``, ``worker``), where a hostile document costs nothing but that
process.
"""

from __future__ import annotations

from importlib.util import find_spec

CMS_LEVELS = ("B", "T", "LT", "LTA")
PDF_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
XML_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
# ASiC-E containers (sign.asic), XAdES or CAdES.
ASIC_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")


def _installed(*modules: str) -> bool:
    return all(find_spec(name) is not None for name in modules)


def available_formats() -> dict[str, list[str]]:
    """The formats this installation can produce (``agent.info`` ``formats``)."""
    formats: dict[str, list[str]] = {}
    if _installed("pyhanko", "pyhanko_certvalidator", "aiohttp"):
        formats["cms"] = list(CMS_LEVELS)
        formats["pdf"] = list(PDF_LEVELS)
        if _installed("signxml", "lxml"):
            formats["xml"] = list(XML_LEVELS)
            formats["asic"] = list(ASIC_LEVELS)
    return formats
