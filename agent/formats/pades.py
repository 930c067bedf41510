"""PAdES baseline signatures (ETSI EN 319 142-1) with pyHanko, as an incremental update.

* B-B: ETSI.CAdES.detached signature, signing-certificate-v2, no signing-time attribute;
* B-T: plus a signature time-stamp;
* B-LT: plus a DSS with the certificates, OCSP responses and CRLs of the signer's and
  the TSA's paths;
* B-LTA: plus a document time-stamp over all of it.

A ``stamp`` makes the signature visible: a new field with a widget on the given page
whose appearance (drawn by pyHanko) shows the signer's name, the signing time and an
optional line of text, in an embedded font that covers Azerbaijani, Turkish and Cyrillic.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import cms
from cryptography import x509
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import layout
from pyhanko.pdf_utils.font.api import FontEngine, FontEngineFactory
from pyhanko.pdf_utils.font.basic import SimpleFontEngineFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner, PdfTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.stamp import TextStampStyle

from agent.errors import AgentError, NetworkError, Unsupported
from agent.formats.builds import Stamp
from agent.formats.cades import signer_info_timestamp, validation_data_for
from agent.formats.digests import digest_for
from agent.formats.document_caps import StructureCaps, check_pdf_bytes, check_pdf_trees
from agent.formats.job import FormatJob, confirm
from agent.formats.signer_adapter import JobSigner, checked_digest_name
from agent.formats.timestamps import GuardedTimeStamper
from agent.formats.update_stream import UpdateStream

log = logging.getLogger(__name__)

# What pyHanko reads at a time to digest the signed byte ranges (its default, 4 KiB,
# makes 12,800 reads of a 50 MB document).
DIGEST_CHUNK = 1 << 20


# What pyHanko raises besides its own PdfError when a document is malformed (found by
# fuzzing: tests/test_fuzz_findings.py).  MemoryError is not here: it is TOO_LARGE.
_MALFORMED = (PdfError, ValueError, KeyError, TypeError, AssertionError, IndexError,
              AttributeError, ArithmeticError, RecursionError)


async def build_pades_here(job: FormatJob, pdf: bytes, level: str, *, reason: str | None,
                           location: str | None, field_name: str | None,
                           stamp: Stamp | None = None,
                           caps: StructureCaps | None = None,
                           digest_algorithm: str | None = None) -> bytes:
    """``build_pades`` in this process: what a document worker runs.  A document pyHanko
    cannot process is UNSUPPORTED, whatever exception it chose to say so with."""
    try:
        return await _build_pades(job, pdf, level, reason=reason, location=location,
                                  field_name=field_name, stamp=stamp,
                                  caps=caps or StructureCaps(),
                                  md=checked_digest_name(
                                      digest_for(job.certificate, digest_algorithm)))
    except AgentError:
        raise
    except _MALFORMED as exc:
        # One line, no traceback: a hostile document is not the agent's failure.
        log.warning("PDF refused: %s in the format library", type(exc).__name__)
        raise Unsupported("the document could not be processed as a PDF") from None


async def _build_pades(job: FormatJob, pdf: bytes, level: str, *, reason: str | None,
                       location: str | None, field_name: str | None, stamp: Stamp | None,
                       caps: StructureCaps, md: str) -> bytes:
    check_pdf_bytes(pdf, caps)  # before pyHanko allocates for what the file claims
    # The document once, its updates after it: pyHanko writes them in place.
    stream = UpdateStream(pdf)
    # pyHanko reports some malformed structures with assertions and type errors.
    try:
        writer = IncrementalPdfFileWriter(stream, strict=False)
    except (PdfError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise Unsupported("the document could not be read as a PDF") from exc
    if writer.prev.encrypted:
        raise Unsupported("encrypted PDFs cannot be signed")
    try:
        check_pdf_trees(writer.root, caps)  # before pyHanko walks them without a bound
    except (PdfError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise Unsupported("the document's page or field tree could not be read") from exc
    # Checked here, before the time-stamp request and the PIN dialog.
    page_index = _stamp_page(writer, stamp, field_name) if stamp is not None else None
    if field_name is None:
        field_name = _free_field_name(writer)
    field_spec = None
    if stamp is not None and page_index is not None:
        x1, y1, x2, y2 = stamp.box
        # pyHanko types the box as ints; PDF coordinates may be fractional.
        field_spec = fields.SigFieldSpec(field_name, box=(x1, y1, x2, y2),  # type: ignore[arg-type]
                                         on_page=page_index)
    # Also used when ``fieldName`` names an existing visible field: pyHanko's default
    # appearance uses Courier, which cannot write "ə" or "Ж".
    style, text_params = stamp_appearance(job.certificate, stamp.text if stamp else None)
    long_term = level in ("B-LT", "B-LTA")
    signer = JobSigner(job)
    async with job.network.session() as session:
        stamper = None
        if level != "B-B":
            assert job.tsa_url is not None
            stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
            trial = await stamper.preflight(md)
            if long_term:
                # Before the PIN: a responder failing afterwards would waste the signature.
                # What this gathers predates the signature and is not embedded.
                await validation_data_for(job, session, trial)
        # B-LT's DSS and B-LTA's document time-stamp are added below, after the signature
        # time-stamp, for the TSA that signed the real token (pyHanko's own B-LT embeds
        # the data gathered before signing, for the TSA of its trial token).
        meta = PdfSignatureMetadata(
            field_name=field_name, reason=reason, location=location,
            md_algorithm=md, subfilter=fields.SigSeedSubFilter.PADES)
        pdf_signer = PdfSigner(meta, signer=signer, timestamper=stamper, stamp_style=style,
                               new_field_spec=field_spec)
        # The dialog, the PIN and the login now: pyHanko's signing session takes its time
        # (the signature's /M and the stamp's time) as it starts (D3 of issue 14).
        await confirm(job.sign)
        try:
            await pdf_signer.async_sign_pdf(writer, in_place=True, chunk_size=DIGEST_CHUNK,
                                            appearance_text_params=text_params)
        except AgentError:
            raise
        except SigningError as exc:
            # pyHanko reports missing revocation data for B-LT as a signing error.
            if long_term:
                log.warning("B-LT validation data unavailable: %s", exc.__class__.__name__)
                raise NetworkError("validation data (OCSP/CRL) could not be gathered",
                                   service="REVOCATION") from None
            raise
        if long_term:
            assert stamper is not None
            await _add_dss(job, session, stream, field_name)
            if level == "B-LTA":
                await _add_document_timestamp(job, session, stamper, stream, md)
        return stream.appended()


def _signature(stream: UpdateStream, field_name: str) -> Any:
    reader = PdfFileReader(stream, strict=False)
    return next(s for s in reader.embedded_signatures if s.field_name == field_name)


async def _add_dss(job: FormatJob, session: Any, stream: UpdateStream,
                   field_name: str) -> None:
    """A DSS revision with the signer's and the signature time-stamp's TSA's validation
    data, asked for now (after the time-stamp: D2 of issue 14)."""
    token = signer_info_timestamp(_signature(stream, field_name).signer_info)
    await _dss_revision(job, session, stream, token)


async def _dss_revision(job: FormatJob, session: Any, stream: UpdateStream,
                        token: cms.ContentInfo) -> None:
    data = await validation_data_for(job, session, token)
    writer = IncrementalPdfFileWriter(stream, strict=False)
    DocumentSecurityStore.supply_dss_in_writer(writer, None, certs=data.certificates,
                                               ocsps=data.ocsps, crls=data.crls)
    writer.write_in_place()


async def _add_document_timestamp(job: FormatJob, session: Any, stamper: GuardedTimeStamper,
                                  stream: UpdateStream, md: str) -> None:
    """B-LTA: a document time-stamp over the signature and its DSS, then a DSS revision
    with the validation data of the TSA that signed that document time-stamp."""
    writer = IncrementalPdfFileWriter(stream, strict=False)
    await PdfTimeStamper(stamper).async_timestamp_pdf(writer, md, in_place=True,
                                                      chunk_size=DIGEST_CHUNK)
    reader = PdfFileReader(stream, strict=False)
    doc_ts = reader.embedded_signatures[-1]
    token = cms.ContentInfo({"content_type": "signed_data", "content": doc_ts.signed_data})
    await _dss_revision(job, session, stream, token)


def _free_field_name(writer: IncrementalPdfFileWriter) -> str:
    """``Signature<n>``, the first one the document does not use yet."""
    taken = {name for name, _, _ in fields.enumerate_sig_fields(writer.prev)}
    number = 1
    while f"Signature{number}" in taken:
        number += 1
    return f"Signature{number}"


# --- the visible stamp ----------------------------------------------------------------

STAMP_FONT_SIZE = 10
STAMP_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"
# Characters the time line needs, for cutting the font down to the stamp's text.
_TIME_CHARACTERS = "0123456789-:+ "
MAX_SIGNER_NAME = 128
# Fonts that cover Latin (with ə, ş, ğ, İ, ı), Cyrillic and Greek: DejaVu Sans where the
# Debian package fonts-dejavu-core (or the distribution's equivalent) puts it, then the
# fonts Windows and macOS ship.
STAMP_FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
    Path("C:/Windows/Fonts/segoeui.ttf"),
    Path("/System/Library/Fonts/Supplemental/Arial Unicode.ttf"),
)


def _stamp_page(writer: IncrementalPdfFileWriter, stamp: Stamp,
                field_name: str | None) -> int:
    """The 0-based index of the page the new visible field goes on."""
    if field_name is not None and field_name in {
            name for name, _, _ in fields.enumerate_sig_fields(writer.prev)}:
        # The existing field has its own page and box; two places would be ambiguous.
        raise Unsupported(f"the document already has a field {field_name!r}: leave out "
                          "stamp to sign into it, or name a new field")
    try:
        pages = int(writer.root["/Pages"]["/Count"])
    except (KeyError, TypeError, ValueError, PdfError):
        raise Unsupported("the document's page tree could not be read") from None
    index = stamp.page - 1 if stamp.page > 0 else pages + stamp.page
    if not 0 <= index < pages:
        raise Unsupported(f"stamp.page {stamp.page} is not in the document "
                          f"({pages} page{'s' if pages != 1 else ''})")
    return index


def signer_display_name(cert: x509.Certificate) -> str:
    """The holder's common name (else organisation, else the whole subject), without
    control or format characters, which could reorder or hide text."""
    subject = cert.subject
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        values = subject.get_attributes_for_oid(oid)
        if values:
            name = str(values[0].value)
            break
    else:
        name = subject.rfc4514_string()
    clean = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    return clean.strip()[:MAX_SIGNER_NAME] or "?"


def stamp_appearance(cert: x509.Certificate,
                     text: str | None) -> tuple[TextStampStyle, dict[str, str]]:
    """The stamp's style and its text parameters: name, time (filled in by pyHanko at
    signing as ``ts``), and the optional line."""
    name = signer_display_name(cert)
    lines = [name, *([text] if text else [])]
    font_file = find_stamp_font()
    font: FontEngineFactory
    if font_file is not None:
        font = SubsetFontFactory(font_file, "".join(lines) + _TIME_CHARACTERS,
                                 STAMP_FONT_SIZE)
    else:
        # No usable font: pyHanko's default, the standard (not embedded) Courier, shows
        # ASCII reliably and nothing beyond Latin-1, so the text loses its accents
        # ("Əliyev" → "Eliyev") rather than turning into garbage.
        _warn_no_font()
        font = SimpleFontEngineFactory.default_factory()
        name, text = ascii_fold(name), ascii_fold(text) if text else text
    template = "%(signer)s\n%(ts)s" + ("\n%(extra)s" if text else "")
    style = TextStampStyle(
        stamp_text=template, timestamp_format=STAMP_TIME_FORMAT, border_width=1,
        text_box_style=TextBoxStyle(font=font, font_size=STAMP_FONT_SIZE,
                                    leading=STAMP_FONT_SIZE + 2),
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MID, y_align=layout.AxisAlignment.ALIGN_MID,
            margins=layout.Margins.uniform(4),
            inner_content_scaling=layout.InnerScaling.SHRINK_TO_FIT))
    params = {"signer": name, **({"extra": text} if text else {})}
    return style, params


@functools.cache
def _warn_no_font() -> None:
    log.warning("no Unicode font for signature stamps (install fonts-dejavu-core and the "
                "formats extra); stamps are written in ASCII with Courier")


def find_stamp_font() -> Path | None:
    """The first font of ``STAMP_FONT_CANDIDATES`` present, if the OpenType machinery
    (pyHanko's ``opentype`` extra: fontTools, uharfbuzz) is installed."""
    try:
        import fontTools.subset  # noqa: F401
        import uharfbuzz  # noqa: F401
    except ImportError:
        return None
    return next((p for p in STAMP_FONT_CANDIDATES if p.is_file()), None)


# Letters and punctuation that Unicode does not decompose into ASCII ones.
_ASCII_LOOKALIKES = str.maketrans({
    "ə": "e", "Ə": "E", "ı": "i", "ß": "ss", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
    "ł": "l", "Ł": "L", "‐": "-", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"',
    "”": '"', "«": '"', "»": '"', "№": "No"})


def ascii_fold(text: str) -> str:
    """Latin letters without their marks; anything else becomes '?'."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_LOOKALIKES))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.encode("ascii", "replace").decode("ascii")


class SubsetFontFactory(FontEngineFactory):
    """A TrueType/OpenType font for pyHanko's text boxes, cut down to the characters the
    stamp shows and rescaled to 1000 units per em.

    pyHanko 0.38 writes a CID font's glyph widths (/W) and TJ adjustments in the font's
    own units, which PDF reads as 1/1000 em: right for most OpenType/CFF fonts, but
    DejaVu Sans has 2048 units per em and its letters would be drawn twice as far apart.
    Rescaling the whole font takes about a second; the subset takes a few milliseconds.
    """

    def __init__(self, font_file: Path, characters: str, font_size: int) -> None:
        self.font_file = font_file
        self.characters = characters
        self.font_size = font_size

    def create_font_engine(self, writer: BasePdfFileWriter,
                           obj_stream: object = None) -> FontEngine:
        from pyhanko.pdf_utils.font.opentype import GlyphAccumulator

        if obj_stream is None and writer.stream_xrefs:
            obj_stream = writer.prepare_object_stream()
        return GlyphAccumulator(writer=writer, font_handle=BytesIO(self.font_bytes()),
                                font_size=self.font_size, obj_stream=obj_stream)

    def font_bytes(self) -> bytes:
        from fontTools import subset
        from fontTools.ttLib import TTFont
        from fontTools.ttLib.scaleUpem import scale_upem

        options = subset.Options()
        options.layout_features = ["*"]  # keep what HarfBuzz shapes with (marks, ligatures)
        options.name_IDs = ["*"]  # pyHanko names the embedded font from the name table
        options.notdef_outline = True
        options.glyph_names = True
        options.drop_tables = [*options.drop_tables, "FFTM"]  # FontForge's, unsubsettable
        with TTFont(self.font_file, lazy=False) as font:
            subsetter = subset.Subsetter(options)
            subsetter.populate(text=self.characters)
            subsetter.subset(font)
            if font["head"].unitsPerEm != 1000:
                scale_upem(font, 1000)
            out = BytesIO()
            font.save(out)
        return out.getvalue()
