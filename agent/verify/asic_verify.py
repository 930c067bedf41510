"""ASiC-E containers (EN 319 162-1 §4.4): every signature file of ``META-INF``, verified
against the container's own files.

* ``META-INF/*signatures*.xml``: XAdES whose detached references name the container's
  files (relative URIs); signxml is given those files' bytes and nothing else (a
  reference to anything outside the container does not resolve: no fetching).
* ``META-INF/*signature*.p7s``: CAdES, detached, over the ``ASiCManifest*.xml`` whose
  ``SigReference`` names it; every ``DataObjectReference`` digest of that manifest is
  checked against the named file first (a missing or changed file: TOTAL-FAILED
  HASH_FAILURE), then the CMS over the manifest's bytes as any detached CAdES.

The container is read with agent/formats/asic.py's reader under the ``[documents]``
container bounds (entries, names, sizes, ratio) before anything is decompressed."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from lxml import etree

from agent.errors import Unsupported
from agent.formats.asic import entry_chunks, read_container
from agent.formats.asic_caps import asic_limits
from agent.formats.document_caps import StructureCaps
from agent.formats.job import KeylessJob
from agent.formats.xades import _parse
from agent.formats.xades_ltv import DIGEST_URIS
from agent.verify.caps import max_verified_signatures
from agent.verify.cms_verify import verify_cms
from agent.verify.common import FAILED, SignatureFacts, Verdict
from agent.verify.xml_verify import top_level_signatures, verify_xml

ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
DS = "http://www.w3.org/2000/09/xmldsig#"
_XADES_FILE = re.compile(r"META-INF/[^/]*signatures[^/]*\.xml", re.IGNORECASE)
_CADES_FILE = re.compile(r"META-INF/[^/]*signature[^/]*\.p7s", re.IGNORECASE)
_MANIFEST_FILE = re.compile(r"META-INF/[^/]*ASiCManifest[^/]*\.xml", re.IGNORECASE)


def _entry(container: bytes, name: str) -> bytes:
    return b"".join(entry_chunks(container, name))


def signature_files(names: Iterable[str], caps: StructureCaps) -> tuple[list[str], list[str]]:
    """An ASiC container's XAdES and CAdES signature files, in order; UNSUPPORTED when
    there is none, or more than ``[documents] max_verified_signatures``."""
    listed = list(names)
    xades = [n for n in listed if _XADES_FILE.fullmatch(n)]
    cades = [n for n in listed if _CADES_FILE.fullmatch(n)]
    if not xades and not cades:
        raise Unsupported("the container carries no signature")
    if len(xades) + len(cades) > max_verified_signatures(caps):
        raise Unsupported(f"a container with {len(xades) + len(cades)} signature files is "
                          "not verified")
    return xades, cades


async def verify_asic(job: KeylessJob, container: bytes, caps: StructureCaps
                      ) -> list[SignatureFacts]:
    read = read_container(container, asic_limits(caps), "sha256")
    files = {f.name for f in read.files}
    xades, cades = signature_files(read.names, caps)
    limit = max_verified_signatures(caps)
    cache: dict[str, bytes] = {}

    def content(name: str) -> bytes:
        if name not in cache:
            cache[name] = _entry(container, name)
        return cache[name]

    def resolve(uri: str) -> bytes | None:
        name = unquote(uri)
        return content(name) if name in files else None

    reports: list[SignatureFacts] = []
    for name in xades:
        document = content(name)
        count = len(top_level_signatures(_parse(document)))
        if len(reports) + count > limit:
            raise Unsupported(f"the container has more than {limit} signatures")
        for facts in await verify_xml(job, document, None, caps, resolve, "asic"):
            facts.field_name = name if facts.countersigns is None \
                else f"{name}: {facts.field_name}"
            reports.append(facts)
    manifests = [n for n in read.names if _MANIFEST_FILE.fullmatch(n)]
    for name in cades:
        reports.extend(await _verify_cades(job, name, manifests, content, files,
                                           limit - len(reports)))
    return reports


async def _verify_cades(job: KeylessJob, name: str, manifests: list[str], content: Any,
                        files: set[str], limit: int) -> list[SignatureFacts]:
    manifest_name = next((m for m in manifests
                          if _signature_of(content(m)) == name), None)
    if manifest_name is None:
        return [_failed(name, "FORMAT_FAILURE",
                        "no ASiCManifest of the container names this signature")]
    manifest = content(manifest_name)
    problem = _manifest_problem(manifest, content, files)
    if problem is not None:
        return [_failed(name, "HASH_FAILURE", problem)]
    if limit <= 0:
        raise Unsupported("the container has too many signatures")
    reports = await verify_cms(job, content(name), manifest, limit)
    for facts in reports:
        facts.format = "asic"
        facts.field_name = name
    return reports


def _failed(name: str, sub_indication: str, message: str) -> SignatureFacts:
    return SignatureFacts(format="asic", level=None, field_name=name,
                          verdict=Verdict(FAILED, sub_indication, message))


def _manifest_root(manifest: bytes) -> etree._Element | None:
    try:
        return _parse(manifest)
    except Exception:  # a malformed manifest: the signature over it is then not checked
        return None


def _signature_of(manifest: bytes) -> str | None:
    root = _manifest_root(manifest)
    node = None if root is None else root.find(f"{{{ASIC_NS}}}SigReference")
    uri = None if node is None else node.get("URI")
    return unquote(uri) if uri else None


def _manifest_problem(manifest: bytes, content: Any, files: set[str]) -> str | None:
    """Why the manifest does not describe the container's files (None: each reference's
    digest matches its file).  A file of the container the manifest does not name is
    simply not signed by this signature (EN 319 162-1 allows it)."""
    root = _manifest_root(manifest)
    if root is None:
        return "the ASiCManifest is not readable XML"
    references = root.findall(f"{{{ASIC_NS}}}DataObjectReference")
    if not references:
        return "the ASiCManifest names no file"
    for reference in references:
        name = unquote(reference.get("URI") or "")
        method = reference.find(f"{{{DS}}}DigestMethod")
        value = reference.find(f"{{{DS}}}DigestValue")
        md = DIGEST_URIS.get(method.get("Algorithm") or "") if method is not None else None
        if name not in files:
            return f"the signed file {name[:200]!r} is not in the container"
        if md is None or value is None:
            return f"the ASiCManifest's digest of {name[:200]!r} is unreadable"
        try:
            expected = base64.b64decode("".join((value.text or "").split()), validate=True)
        except ValueError:
            return f"the ASiCManifest's digest of {name[:200]!r} is unreadable"
        if hashlib.new(md, content(name)).digest() != expected:
            return f"the file {name[:200]!r} was changed after it was signed"
    return None
