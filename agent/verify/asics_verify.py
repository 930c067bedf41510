"""ASiC-S containers (EN 319 162-1 §4.3): one data file at the container's root and its
signature in ``META-INF`` — XAdES (``META-INF/signatures*.xml``, a detached reference by
the file's name) or CAdES (``META-INF/signature*.p7s``, detached over the file itself:
ASiC-S has no ASiCManifest) — verified as ASiC-E's are (agent/verify/asic_verify.py).

The container is read under the same ``[documents]`` container bounds before anything is
decompressed, with agent/formats/asic.py's checks of the ZIP directory; its own reader
(``read_container``) is not used because it accepts ASiC-E's mimetype only and an ASiC-S
file is one file, not a list to hash."""

from __future__ import annotations

import zipfile
from urllib.parse import unquote

from agent.errors import Unsupported
from agent.formats.asic import _check_entries, _open_zip
from agent.formats.asic_caps import META_INF, asic_limits
from agent.formats.document_caps import StructureCaps
from agent.formats.job import KeylessJob
from agent.formats.xades import _parse
from agent.verify.asic_verify import signature_files
from agent.verify.caps import max_verified_signatures
from agent.verify.common import SignatureFacts
from agent.verify.xml_verify import top_level_signatures, verify_xml

ASIC_S_MIMETYPE = "application/vnd.etsi.asic-s+zip"


def is_asic_s(data: bytes) -> bool:
    """A ZIP whose first entry is the stored ``mimetype`` of ASiC-S (as
    agent/verify/worker.py's ``is_asic`` reads ASiC-E's)."""
    return data[:4] == b"PK\x03\x04" and data[30:38] == b"mimetype" \
        and data[38:38 + len(ASIC_S_MIMETYPE)] == ASIC_S_MIMETYPE.encode("ascii")


def _read(container: bytes, caps: StructureCaps) -> dict[str, bytes]:
    """Every entry's bytes, the directory checked first (sizes, ratio, names)."""
    limits = asic_limits(caps)
    archive = _open_zip(container, limits)
    try:
        _check_entries(archive, limits)
        infos = archive.infolist()
        first = infos[0] if infos else None
        if (first is None or first.filename != "mimetype"
                or first.compress_type != zipfile.ZIP_STORED
                or archive.read(first) != ASIC_S_MIMETYPE.encode("ascii")):
            raise Unsupported("the container is not an ASiC-S container (its first entry "
                              f"must be a stored mimetype holding {ASIC_S_MIMETYPE})")
        return {i.filename: archive.read(i) for i in infos[1:] if not i.is_dir()}
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise Unsupported("the container is not a valid ZIP archive") from exc
    finally:
        archive.close()


async def verify_asic_s(job: KeylessJob, container: bytes, caps: StructureCaps
                        ) -> list[SignatureFacts]:
    entries = _read(container, caps)
    data = [n for n in entries if not n.upper().startswith(META_INF)]
    if len(data) != 1:
        raise Unsupported("an ASiC-S container holds exactly one file outside META-INF "
                          f"(this one holds {len(data)})")
    [name] = data
    xades, cades = signature_files(entries, caps)
    limit = max_verified_signatures(caps)

    def resolve(uri: str) -> bytes | None:
        return entries[name] if unquote(uri) == name else None

    reports: list[SignatureFacts] = []
    for signature in xades:
        count = len(top_level_signatures(_parse(entries[signature])))
        if len(reports) + count > limit:
            raise Unsupported(f"the container has more than {limit} signatures")
        for facts in await verify_xml(job, entries[signature], None, caps, resolve, "asic"):
            facts.field_name = signature if facts.countersigns is None \
                else f"{signature}: {facts.field_name}"
            reports.append(facts)
    from agent.verify.cms_verify import verify_cms

    for signature in cades:
        if len(reports) >= limit:
            raise Unsupported(f"the container has more than {limit} signatures")
        for facts in await verify_cms(job, entries[signature], entries[name],
                                      limit - len(reports)):
            facts.format, facts.field_name = "asic", signature
            reports.append(facts)
    return reports

