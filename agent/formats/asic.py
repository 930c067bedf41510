"""ASiC-E containers (ETSI EN 319 162-1 §4.4): several files and their signatures in
one ZIP, signed with XAdES (``asic_xades``) or CAdES (``asic_cades``), created from a
page's files or given one more signature.

The container:

* ``mimetype`` first, stored (not compressed), no extra field, holding
  ``application/vnd.etsi.asic-e+zip`` — what lets a reader recognise it from its first
  bytes;
* the data files (deflated), ``META-INF/manifest.xml`` (the ODF manifest listing them
  with their MIME types);
* per signature, ``META-INF/signatures<N>.xml`` (XAdES) or ``META-INF/signature<N>.p7s``
  with ``META-INF/ASiCManifest<N>.xml`` (CAdES), N one more than any number already used.

A page's container is read only in a document worker, with every bound checked from the
ZIP's directories before anything is decompressed: the entry count (even before
``zipfile`` parses the central directory), the names, the summed and the per-entry
uncompressed sizes and the compression ratio (``AsicLimits``).  One more signature is
appended with ``zipfile``'s append mode: the existing entries' local headers and data
stay where and what they are, byte for byte; only the central directory is rewritten.

This module's top is stdlib only: the daemon imports it to reach the worker.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import re
import secrets
import struct
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import InternalError, TooLarge, Unsupported
from agent.formats.asic_caps import (
    MAX_NAME_CHARS,
    META_INF,
    MIMETYPE,
    AsicLimits,
    name_problem,
)

if TYPE_CHECKING:
    from agent.formats.job import FormatJob, KeylessJob

MANIFEST = "META-INF/manifest.xml"
_MANIFEST_NS = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
_OCTETS = "application/octet-stream"
_UTF8_NAMES = 0x800      # general purpose flag bit 11: the name is UTF-8
_ENCRYPTED = 0x1
_READ_CHUNK = 1024 * 1024
_CENTRAL_HEADER = 46         # bytes of a central directory entry before its name
_CENTRAL_EXTRA_ROOM = 1024   # its extra fields and comment, generously
# What a container's signature files may be called (EN 319 162-1 §4.4.3): the numbers in
# these names are what the next signature's N must differ from.
_NUMBERED = re.compile(r"META-INF/(?:.*signatures?|.*ASiCManifest)(\d*)[^/]*\.(?:xml|p7s)",
                       re.IGNORECASE)
XADES_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
CADES_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")


def asic_levels(signature_format: str) -> tuple[str, ...]:
    return XADES_LEVELS if signature_format == "xades" else CADES_LEVELS


# --- reading a page's container (in a worker) ------------------------------------------------

@dataclass(frozen=True)
class ReadFile:
    name: str
    mime_type: str
    size: int
    digest: bytes
    data: bytes | None  # kept when asked for (previews), else None


@dataclass(frozen=True)
class ReadContainer:
    files: list[ReadFile]
    names: list[str]  # every entry's name


def _declared_directory(data: bytes) -> tuple[int, int]:
    """The entry count and the central directory's size that the End of Central
    Directory record (or its ZIP64 version) declares, read before ``zipfile`` builds an
    object for each entry.  The record is found as zipfile finds it (the last signature
    in the file's last 64 KiB + 22 bytes), so both read the same one."""
    start = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if start < 0 or start + 22 > len(data):
        raise Unsupported("the container is not a ZIP archive")
    entries, size = struct.unpack_from("<HI", data, start + 10)
    if entries != 0xFFFF and size != 0xFFFFFFFF:
        return int(entries), int(size)
    locator = start - 20  # ZIP64 end of central directory locator, then its record
    if locator < 0 or data[locator:locator + 4] != b"PK\x06\x07":
        raise Unsupported("the container is not a ZIP archive")
    (record,) = struct.unpack_from("<Q", data, locator + 8)
    if record + 56 > len(data) or data[record:record + 4] != b"PK\x06\x06":
        raise Unsupported("the container is not a ZIP archive")
    entries64, size64 = struct.unpack_from("<QQ", data, record + 32)
    return int(entries64), int(size64)


def _open_zip(data: bytes, limits: AsicLimits) -> zipfile.ZipFile:
    entries, directory = _declared_directory(data)
    # zipfile reads the directory by its size, not by the count: a record that
    # understates the count is caught by the size (a fixed header, a name, some room for
    # extra fields and a comment per entry).
    largest = limits.entries * (_CENTRAL_HEADER + limits.name_bytes + _CENTRAL_EXTRA_ROOM)
    if entries > limits.entries:
        raise TooLarge(f"the container has more than {limits.entries} entries")
    if directory > largest:
        raise TooLarge(f"the container's directory is larger than {limits.entries} entries "
                       "need")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise Unsupported("the container is not a valid ZIP archive") from exc
    if len(archive.infolist()) > limits.entries:
        raise TooLarge(f"the container has more than {limits.entries} entries")
    return archive


def _entry_problem(info: zipfile.ZipInfo, limits: AsicLimits) -> str | None:
    name = info.filename
    if info.orig_filename != name:
        return "contains a NUL character"
    if not name.isascii() and not info.flag_bits & _UTF8_NAMES:
        # zipfile reads such names as CP437: what a signature would reference is a guess.
        return "is not marked as UTF-8"
    if len(name.encode("utf-8")) > limits.name_bytes:
        return f"is longer than {limits.name_bytes} bytes"
    if name == "mimetype":
        return None
    path = name[:-1] if info.is_dir() else name
    if path.upper().startswith(META_INF):
        path = path[len(META_INF):]
        if not path:
            return None
    elif path.upper() == META_INF.rstrip("/"):
        return None
    return name_problem(path)


def _check_entries(archive: zipfile.ZipFile, limits: AsicLimits) -> None:
    """Everything checked from the central directory, before any decompression."""
    seen: set[str] = set()
    total = 0
    for info in archive.infolist():
        problem = _entry_problem(info, limits)
        if problem is not None:
            raise Unsupported(f"the container holds an entry whose name {problem}")
        key = info.filename.casefold()
        if key in seen:
            raise Unsupported("the container holds two entries with the same name")
        seen.add(key)
        if info.flag_bits & _ENCRYPTED:
            raise Unsupported("the container holds an encrypted entry")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise Unsupported("the container uses a compression other than deflate")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise Unsupported("the container is not a valid ZIP archive")
        total += info.file_size
        if total > limits.unpacked_bytes:
            raise TooLarge(f"the container's files are over {limits.unpacked_bytes} bytes "
                           "uncompressed")
        if (info.file_size > limits.ratio_floor_bytes
                and info.file_size > info.compress_size * limits.ratio):
            raise TooLarge(f"an entry of the container is compressed more than "
                           f"{limits.ratio}:1 (a ZIP bomb?)")


def _check_mimetype(archive: zipfile.ZipFile) -> None:
    first = archive.infolist()[0] if archive.infolist() else None
    if (first is None or first.filename != "mimetype"
            or first.compress_type != zipfile.ZIP_STORED
            or first.file_size != len(MIMETYPE)
            or archive.read(first) != MIMETYPE.encode("ascii")):
        raise Unsupported("the container is not an ASiC-E container (its first entry must "
                          f"be a stored mimetype holding {MIMETYPE})")


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, md: str,
                keep: bool) -> tuple[bytes, bytes | None]:
    """The entry's digest (and its bytes when ``keep``), read in chunks; its CRC and
    local header are checked by zipfile on the way."""
    digest = hashlib.new(md)
    kept = io.BytesIO() if keep else None
    size = 0
    with archive.open(info) as stream:
        while chunk := stream.read(_READ_CHUNK):
            size += len(chunk)
            if size > info.file_size:  # zipfile stops at the declared size; in case not
                raise TooLarge("an entry of the container is larger than it declares")
            digest.update(chunk)
            if kept is not None:
                kept.write(chunk)
    return digest.digest(), kept.getvalue() if kept is not None else None


def _manifest_types(archive: zipfile.ZipFile) -> dict[str, str]:
    """The MIME types ``META-INF/manifest.xml`` gives the files (none when it is absent
    or unreadable: the types are then guessed, they are informative only)."""
    if MANIFEST not in archive.namelist():
        return {}
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    try:
        root = etree.fromstring(archive.read(MANIFEST), parser=parser)
    except (etree.LxmlError, ValueError):
        return {}
    if root.getroottree().docinfo.doctype:
        return {}
    types: dict[str, str] = {}
    for entry in root.iter(f"{{{_MANIFEST_NS}}}file-entry"):
        path = entry.get(f"{{{_MANIFEST_NS}}}full-path")
        media = entry.get(f"{{{_MANIFEST_NS}}}media-type")
        if path and media and re.fullmatch(r"[\w.+-]{1,100}/[\w.+-]{1,150}", media, re.ASCII):
            types[path] = media
    return types


def read_container(data: bytes, limits: AsicLimits, md: str,
                   keep_bytes: int = -1) -> ReadContainer:
    """A page's container checked and its data files hashed with ``md``; the bytes of
    files up to ``keep_bytes`` long are kept."""
    archive = _open_zip(data, limits)
    try:
        _check_entries(archive, limits)
        _check_mimetype(archive)
        types = _manifest_types(archive)
        files: list[ReadFile] = []
        for info in archive.infolist()[1:]:
            is_data = not info.is_dir() and not info.filename.upper().startswith(META_INF)
            if is_data and len(files) >= limits.files:
                raise TooLarge(f"the container holds more than {limits.files} files")
            digest, kept = _read_entry(archive, info, md,
                                       keep=is_data and info.file_size <= keep_bytes)
            if is_data:
                files.append(ReadFile(info.filename,
                                      types.get(info.filename) or guess_type(info.filename),
                                      info.file_size, digest, kept))
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise Unsupported("the container is not a valid ZIP archive") from exc
    finally:
        archive.close()
    if not files:
        raise Unsupported("the container holds no file to sign")
    return ReadContainer(files, [i.filename for i in archive.infolist()])


def entry_chunks(data: bytes, name: str) -> Iterator[bytes]:
    """An entry of a container ``read_container`` accepted, read again in chunks."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open(name) as stream:
        while chunk := stream.read(_READ_CHUNK):
            yield chunk


def guess_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or _OCTETS


def next_number(names: list[str]) -> int:
    """N for the new signature's files: one more than any N the container uses."""
    used = [int(m.group(1) or 0) for n in names if (m := _NUMBERED.fullmatch(n))]
    return max(used, default=0) + 1


# --- writing ----------------------------------------------------------------------------

def _info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, time.localtime()[:6])
    info.compress_type = compress
    info.external_attr = 0o100644 << 16  # a regular file, readable once extracted
    return info


def odf_manifest(files: list[tuple[str, str]]) -> bytes:
    """``META-INF/manifest.xml`` (OpenDocument's manifest) for (name, MIME type) pairs."""
    from lxml import etree

    ns = _MANIFEST_NS
    root = etree.Element(f"{{{ns}}}manifest", nsmap={"manifest": ns})
    root.set(f"{{{ns}}}version", "1.2")
    for path, media in [("/", MIMETYPE), *files]:
        entry = etree.SubElement(root, f"{{{ns}}}file-entry")
        entry.set(f"{{{ns}}}full-path", path)
        entry.set(f"{{{ns}}}media-type", media)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                standalone=True)
    return out


def new_container(files: list[tuple[str, bytes, str]],
                  signature_entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_info("mimetype", zipfile.ZIP_STORED), MIMETYPE.encode("ascii"))
        for name, data, _mime in files:
            archive.writestr(_info(name, zipfile.ZIP_DEFLATED), data)
        archive.writestr(_info(MANIFEST, zipfile.ZIP_DEFLATED),
                         odf_manifest([(name, mime) for name, _data, mime in files]))
        for name, data in signature_entries:
            archive.writestr(_info(name, zipfile.ZIP_DEFLATED), data)
    return buffer.getvalue()


def appended(container: bytes, signature_entries: list[tuple[str, bytes]]) -> bytes:
    """The container with ``signature_entries`` added after its existing entries, which
    keep their bytes and offsets (zipfile's append mode rewrites the directory only)."""
    buffer = io.BytesIO(container)
    with zipfile.ZipFile(buffer, "a") as archive:
        for name, data in signature_entries:
            archive.writestr(_info(name, zipfile.ZIP_DEFLATED), data)
    return buffer.getvalue()


# --- the worker's jobs ----------------------------------------------------------------------

def _data_files(files: list[dict[str, Any]], limits: AsicLimits) -> list[tuple[str, bytes, str]]:
    if not files or len(files) > limits.files:
        raise TooLarge(f"a container holds 1 to {limits.files} files")
    out = []
    for item in files:
        name = item["name"]
        if len(name.encode("utf-8")) > limits.name_bytes:
            raise Unsupported(f"a file name is longer than {limits.name_bytes} bytes")
        problem = name_problem(name)
        if problem is not None:
            raise Unsupported(f"the file name {problem}")
        out.append((name, item["data"], item.get("mime_type") or guess_type(name)))
    if len({name.casefold() for name, _d, _m in out}) != len(out):
        raise Unsupported("two files have the same name")
    return out


async def build_asic_here(job: FormatJob, *, signature_format: str, level: str,
                          digest_algorithm: str | None, limits: AsicLimits,
                          files: list[dict[str, Any]] | None = None,
                          container: bytes | None = None, caps: Any = None) -> bytes:
    """``build_asic`` in this process: what a document worker runs.  ``files``: dicts of
    name, data and mime_type (a new container); else ``container`` gets one more
    signature."""
    from agent.formats.asic_cades import asic_manifest, sign_asic_cades
    from agent.formats.asic_xades import DataFile, sign_asic_xades, xades_digest
    from agent.formats.digests import digest_for
    from agent.formats.signer_adapter import checked_digest_name

    if level not in asic_levels(signature_format):
        raise Unsupported(f"level {level} is not available for {signature_format} containers")
    md = (xades_digest(job, digest_algorithm) if signature_format == "xades"
          else checked_digest_name(digest_for(job.certificate, digest_algorithm)))
    new_files: list[tuple[str, bytes, str]] = []
    chunks: Callable[[str], Iterable[bytes]]
    if files is not None:
        new_files = _data_files(files, limits)
        signed = [DataFile(n, m, len(d), hashlib.new(md, d).digest()) for n, d, m in new_files]
        names: list[str] = []
        by_name = {n: d for n, d, _m in new_files}
        chunks = lambda name: (by_name[name],)  # noqa: E731
    elif container is not None:
        read = read_container(container, limits, md)
        signed = [DataFile(f.name, f.mime_type, f.size, f.digest) for f in read.files]
        names = read.names
        chunks = lambda name: entry_chunks(container, name)  # noqa: E731
    else:
        raise InternalError("an ASiC job without files or container")
    number = next_number(names)
    # The new entries' names, checked before the dialog: a clash would waste the PIN.
    signature_name = (f"META-INF/signatures{number}.xml" if signature_format == "xades"
                      else f"META-INF/signature{number}.p7s")
    manifest_name = f"META-INF/ASiCManifest{number}.xml"
    taken = {name.casefold() for name in names}
    if {signature_name.casefold(), manifest_name.casefold()} & taken:
        raise Unsupported("the container already has an entry named like the new signature")
    entries: list[tuple[str, bytes]]
    if signature_format == "xades":
        signature_id = f"S{number}-{secrets.token_hex(8)}"
        entries = [(signature_name,
                    await sign_asic_xades(job, signed, level, md, signature_id, chunks))]
    else:
        manifest = asic_manifest(signature_name, signed, md)
        entries = [(manifest_name, manifest),
                   (signature_name, await sign_asic_cades(job, manifest, level, md))]
    if container is not None:
        return appended(container, entries)
    return new_container(new_files, entries)


async def list_asic_here(*, container: bytes, limits: AsicLimits, preview_bytes: int,
                         caps: Any = None) -> bytes:
    """The data files of a page's container for the confirmation dialog, as JSON: name,
    size, SHA-256 and, up to ``preview_bytes``, the bytes (base64)."""
    import base64

    read = read_container(container, limits, "sha256", keep_bytes=preview_bytes)
    listing = [{"name": f.name, "size": f.size, "sha256": f.digest.hex(),
                **({"data": base64.b64encode(f.data).decode("ascii")}
                   if f.data is not None else {})}
               for f in read.files]
    return json.dumps(listing).encode("utf-8")


# --- the daemon's side ------------------------------------------------------------------------

async def build_asic(job: FormatJob, args: dict[str, Any]) -> bytes:
    """The signed container, built in a document worker (``build_asic_here``)."""
    from agent.formats.isolation import build_isolated

    return await build_isolated("asic", job, args)


@dataclass(frozen=True)
class ListedFile:
    name: str
    size: int
    sha256: str
    data: bytes | None


async def list_asic(job: KeylessJob, container: bytes, limits: AsicLimits,
                    preview_bytes: int) -> list[ListedFile]:
    """The data files of a page's container, listed by a document worker
    (``list_asic_here``); what it says is checked, as anything a worker says."""
    import base64
    import binascii

    from agent.formats.isolation import run_keyless

    raw = await run_keyless("asic-list", job, {"container": container, "limits": limits,
                                               "preview_bytes": preview_bytes})
    try:
        listing = json.loads(raw)
        if not isinstance(listing, list) or not 0 < len(listing) <= limits.files:
            raise ValueError("not a listing")
        out = []
        for item in listing:
            name, size, sha256 = item["name"], item["size"], item["sha256"]
            if (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS
                    or not isinstance(size, int) or isinstance(size, bool) or size < 0
                    or not isinstance(sha256, str)
                    or not re.fullmatch(r"[0-9a-f]{64}", sha256)):
                raise ValueError("not a listed file")
            data = None
            if "data" in item:
                data = base64.b64decode(item["data"], validate=True)
                if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
                    raise ValueError("listed bytes differ from their digest")
            out.append(ListedFile(name, size, sha256, data))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InternalError("the document worker listed the container wrongly") from exc
    return out
