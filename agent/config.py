"""Configuration: one TOML file, every key optional, every key documented in
docs/configuration.md (a test checks that the two agree).

No file at all is a valid configuration.  Unknown keys are errors, so a typo in a limit
never silently leaves the default in force.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    wss_port: int = Field(default=29170, ge=0, le=65535, description="Port of the TLS WebSocket.")
    ws_port: int = Field(default=29171, ge=0, le=65535, description="Port of the plain WebSocket.")
    port_range: int = Field(
        default=5, ge=1, le=32,
        description="How many ports each WebSocket may try, for shared machines where "
                    "another user's agent holds the port: wss takes the first free of "
                    "wss_port, wss_port+2, …, ws of ws_port, ws_port+2, … (by default wss "
                    "29170–29178 even, ws 29171–29179 odd). The page SDK tries the same "
                    "ports. 1: the configured port only.")
    wss_enabled: bool = Field(default=True, description="Serve wss:// on wss_port.")
    ws_enabled: bool = Field(
        default=False,
        description="Serve plain ws:// on ws_port: a development setting. Without TLS a page "
                    "cannot tell the agent from another program that took the port first; "
                    "served only while the system policy also allows it (plain_websocket).")
    max_frame_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Largest frame (bytes) of a method that carries no document, from an "
                    "origin that holds a grant; a larger one (up to "
                    "max_document_frame_bytes) is answered TOO_LARGE with this limit.")
    max_document_frame_bytes: int = Field(
        default=144 * 1024 * 1024, ge=1024,
        description="Largest frame (bytes) of sign.pdf and sign.cms from an origin that "
                    "holds a grant: a document of max_document_bytes as base64, with room "
                    "to answer a somewhat larger one TOO_LARGE. A larger frame is not read: "
                    "the connection closes with 1009.")
    max_document_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024,
        description="Largest document (bytes, decoded) sign.pdf and sign.cms accept; a "
                    "larger one is answered TOO_LARGE with this limit.")
    max_pending_uploads: int = Field(
        default=2, ge=1, le=64,
        description="Documents one WebSocket connection may hold as uploads (document.upload: "
                    "being received, received, or in use by a request not yet answered); "
                    "one more is answered TOO_LARGE with this limit. A connection holds at "
                    "most this many times max_document_bytes of uploads, a site on all its "
                    "connections at most max_document_bytes, and max_pending_bytes counts "
                    "uploads with the requests' frames (past those: RATE_LIMITED).")
    upload_timeout: float = Field(
        default=120, ge=1, le=3600,
        description="Seconds an upload (document.upload) may wait to be used, counted from "
                    "its announcement. One still incomplete then closes its connection "
                    "(1008); a complete one is forgotten, and a request naming it later is "
                    "answered INVALID_PARAMS. Either way its bytes and its share of the "
                    "site's and the overall budgets come back. An upload a request is "
                    "using does not expire.")
    max_frame_bytes_ungranted: int = Field(
        default=64 * 1024, ge=1024,
        description="Largest accepted frame (bytes) until the origin holds a grant (by the "
                    "user, this connection's \"allow once\" included, or by policy); at "
                    "most max_frame_bytes.")
    max_connections_per_origin: int = Field(
        default=8, ge=1, description="Open connections one origin may hold at once.")
    max_connections_per_site: int = Field(
        default=16, ge=1,
        description="Open connections one site (registrable domain: all its sub-domains "
                    "together) may hold at once.")
    max_connections: int = Field(
        default=128, ge=1, description="Open connections from all pages together.")
    rate_per_second: float = Field(
        default=50.0, gt=0, description="Requests per second one origin may send (sustained).")
    rate_burst: int = Field(
        default=100, ge=1, description="Requests one origin may send in a burst.")
    bytes_per_second: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Frame bytes per second one site may send (sustained); frames beyond "
                    "are answered RATE_LIMITED without being parsed.")
    bytes_burst: int = Field(
        default=144 * 1024 * 1024, ge=1024,
        description="Frame bytes one site may send in a burst: by default one frame of "
                    "max_document_frame_bytes (a frame larger than this still passes when "
                    "the site has sent nothing for a while).")
    max_requests_in_flight: int = Field(
        default=32, ge=1,
        description="Unanswered requests one connection may have at once; more are answered "
                    "RATE_LIMITED. (Requests waiting for the user: one per origin, by the "
                    "protocol; a second gets BUSY.)")
    max_pending_requests_per_site: int = Field(
        default=32, ge=1,
        description="Unanswered requests (running or waiting for the user) one site may "
                    "have on all its connections; more are answered RATE_LIMITED.")
    max_pending_requests: int = Field(
        default=256, ge=1,
        description="Unanswered requests from all pages together; more are answered "
                    "RATE_LIMITED.")
    max_pending_bytes_per_site: int = Field(
        default=16 * 1024 * 1024, ge=1024,
        description="Frame bytes one site's unanswered requests may hold (a site's first "
                    "request always fits); more are answered RATE_LIMITED.")
    max_pending_bytes: int = Field(
        default=288 * 1024 * 1024, ge=1024,
        description="Frame bytes the unanswered requests of all pages may hold together "
                    "(by default two documents of max_document_frame_bytes); more are "
                    "answered RATE_LIMITED.")
    reserved_for_granted: float = Field(
        default=0.25, ge=0, lt=1,
        description="Share of max_connections, max_pending_requests and max_pending_bytes "
                    "that only origins holding a grant may use, so pages without one cannot "
                    "shut the user's portals out.")
    dev_origins: list[str] = Field(
        default_factory=list,
        description="Non-https origins accepted for development, e.g. http://localhost:8000.")


class Pkcs12File(_Section):
    path: Path = Field(description="Path of a .p12/.pfx file.")
    label: str | None = Field(
        default=None, description="Name shown to the user (default: file name).")


class TokensConfig(_Section):
    modules: list[Path] = Field(
        default_factory=list, description="Extra PKCS#11 module paths to load.")
    known_modules: bool = Field(
        default=True, description="Also load the built-in vendor modules found on this machine.")
    call_timeout: float = Field(
        default=20.0, gt=0,
        description="Seconds a token call may take before its worker is restarted.")
    pin_pad_timeout: float = Field(
        default=120.0, gt=0, description="Seconds a PIN-pad login may take.")
    pkcs12: list[Pkcs12File] = Field(
        default_factory=list, description="PKCS#12 files offered as key stores.")
    poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds between looks for token changes (tokens.changed).")
    os_store: bool = Field(
        default=True,
        description="Also offer the certificates of the OS's own store whose keys sit on a "
                    "token (Windows: the user's personal store through the card's minidriver; "
                    "macOS: the keychain through CryptoTokenKit). Ignored on Linux.")


class UiConfig(_Section):
    backend: Literal["qt", "scripted", "none"] = Field(
        default="qt",
        description="Dialogs: qt (desktop, in the UI process), scripted (tests), none "
                    "(refuse all). \"tk\", the removed in-process desktop UI, is read as "
                    "qt, so an old config file keeps its desktop dialogs.")
    answers_file: Path | None = Field(
        default=None, description="With backend = scripted: the answers file.")

    @field_validator("backend", mode="before")
    @classmethod
    def _old_tk_backend(cls, value: object) -> object:
        # The tkinter UI is gone; its config files meant "the desktop dialogs": Qt's now.
        return "qt" if value == "tk" else value
    language: Literal["auto", "az", "tr", "ru", "en"] = Field(
        default="auto", description="Dialog language; auto follows the OS locale.")
    dialog_timeout: float = Field(
        default=120.0, gt=0,
        description="Seconds from asking for a dialog (waiting for the screen included) "
                    "to USER_TIMEOUT.")
    tray: bool = Field(default=True, description="Show the tray icon (ignored with --headless).")
    max_pin_attempts: int = Field(
        default=5, ge=1, le=100,
        description="Wrong PINs one request may try before it ends as USER_CANCELLED "
                    "(tokens lock on their own; PKCS#12 files never do).")
    arming_delay: float = Field(
        default=0.5, ge=0.2, le=5.0,
        description="Seconds a dialog ignores keys and clicks after it appears; every key "
                    "press and focus change before then starts the wait again.")
    max_pending_dialogs_per_site: int = Field(
        default=2, ge=1, le=100,
        description="Dialogs that origins without a grant may have waiting or shown per "
                    "site (registrable domain); more get BUSY with no dialog.")
    max_pending_dialogs: int = Field(
        default=8, ge=1, le=1000,
        description="Dialogs that origins without a grant may have waiting or shown in "
                    "all; more get BUSY with no dialog.")
    max_filtered_selects_per_site: int = Field(
        default=10, ge=1, le=10000,
        description="certificates.select calls with a filter one site may make per "
                    "filtered_select_window; more get RATE_LIMITED with no dialog.")
    filtered_select_window: float = Field(
        default=600.0, gt=0, le=86400,
        description="Seconds over which max_filtered_selects_per_site is counted.")
    theme: Literal["auto", "light", "dark"] = Field(
        default="auto", description="Colours of the agent's windows; auto follows the desktop.")
    preview_bytes: int = Field(
        default=100 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024,
        description="Bytes of a document the signing dialog shows (PDF pages, text, XML); "
                    "a larger document is shown as its size and SHA-256 only.")
    ui_frame_bytes: int = Field(
        default=160 * 1024 * 1024, ge=1024 * 1024, le=2 * 1024 * 1024 * 1024,
        description="Largest message between the daemon and the UI process (a preview of "
                    "preview_bytes travels as base64: a third larger).")
    ui_ping_timeout: float = Field(
        default=5.0, gt=0, le=120,
        description="Seconds the UI process may take to answer a ping while a dialog is "
                    "up; then it counts as hung, is restarted, and the request ends "
                    "with UI_CRASHED.")
    ui_restarts_per_minute: int = Field(
        default=5, ge=1, le=100,
        description="Restarts of the UI process per minute; beyond it dialogs fail "
                    "with UI_CRASHED until the next minute.")


class DemoConfig(_Section):
    enabled: Literal["auto", "never"] = Field(
        default="auto", description="auto: create the demo identity when no key store is present.")


class JournalConfig(_Section):
    enabled: bool = Field(default=True, description="Write the HMAC-chained signing journal.")
    max_bytes: int = Field(
        default=5 * 1024 * 1024, ge=4096,
        description="Size (bytes) at which journal.jsonl is rotated to journal.jsonl.1 "
                    "(see docs/journal.md).")
    keep_files: int = Field(
        default=5, ge=0, le=1000,
        description="Rotated journal files kept besides the current one; older ones are "
                    "deleted.")
    keyring_timeout: float = Field(
        default=10.0, gt=0, le=600,
        description="Seconds the first journal line waits for the OS keyring (the HMAC key) "
                    "before the key is kept in a file next to the journal instead.")


class PolicyConfig(_Section):
    remove_defaults: bool = Field(
        default=False,
        description="Drop the sites the agent trusts by default (see docs/policy.md).")


_HOST_PATTERN = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                           r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")


def _http_url(value: str, *, echo: bool = True) -> str:
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        # A proxy URL may hold a password: such a value is not repeated in the message.
        raise ValueError(f"{value!r} is not an http(s) URL" if echo else "not an http(s) URL")
    return value


class FormatsConfig(_Section):
    """CAdES/PAdES/XAdES signing: time-stamping, validation data, the signer's status."""

    trust_anchors: list[Path] = Field(
        default_factory=list,
        description="PEM or DER certificate files: self-signed ones are trusted roots for "
                    "checking the signer's certificate and gathering B-LT validation data; "
                    "the others serve as intermediates for path building.")
    tsa_url: str | None = Field(
        default=None,
        description="RFC 3161 time-stamping service used instead of the page's tsaUrl.")
    tsa_by_origin: dict[str, str] = Field(
        default_factory=dict,
        description="Origin → time-stamping service for that origin (wins over tsa_url).")
    allow_page_tsa: bool = Field(
        default=False,
        description="Use the page's tsaUrl when no TSA is configured for its origin (off: "
                    "UNSUPPORTED). Its address, and the OCSP/CRL/caIssuers addresses in its "
                    "certificates, must then be public (see docs/formats.md).")
    page_tsa_allowed: list[str] = Field(
        default_factory=list,
        description="When not empty (and allow_page_tsa is on): the only page tsaUrl "
                    "values used. An entry is an exact URL (`https://tsa.example/tsr`, "
                    "trusted like tsa_url) or a host (`tsa.example`, or `*.example.az` "
                    "for its sub-domains).")
    page_tsa_private_addresses: bool = Field(
        default=False,
        description="Development only: let a page-chosen TSA, and the services its "
                    "certificates name, be on loopback or a private network.")
    max_tsa_failures_per_handle: int = Field(
        default=3, ge=1, le=100,
        description="Failed requests with a page-chosen TSA per certificate handle (per "
                    "connection when the picker chooses); past it RATE_LIMITED without "
                    "contacting anything.")
    max_tsa_response_bytes: int = Field(
        default=128 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="Largest time-stamping answer accepted (bytes, never decompressed).")
    max_ocsp_response_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="Largest OCSP answer accepted (bytes, never decompressed).")
    max_crl_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024,
        description="Largest CRL accepted (bytes, never decompressed).")
    max_certificate_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="Largest certificate download (AIA caIssuers) accepted (bytes).")
    tsa_by_issuer: dict[str, str] = Field(
        default_factory=dict,
        description="Issuing CA of the signer's certificate → time-stamping service (after "
                    "tsa_by_origin, before tsa_url). The CA is named by the SHA-256 "
                    "fingerprint of its certificate, hex, colons allowed "
                    "(`openssl x509 -noout -fingerprint -sha256 -in ca.pem`).")
    ocsp_by_issuer: dict[str, str] = Field(
        default_factory=dict,
        description="Issuing CA (SHA-256 fingerprint, as in tsa_by_issuer) → OCSP responder "
                    "for the certificates it issued, used instead of their AIA address.")
    http_proxy: str | None = Field(
        default=None, repr=False,  # may hold a password
        description="HTTP proxy (`http://[user:password@]host:port`) for TSA, OCSP, CRL and "
                    "certificate downloads; unset: the system proxy (HTTP_PROXY, "
                    "HTTPS_PROXY, NO_PROXY; on Windows and macOS also the system settings).")
    revocation: Literal["off", "warn", "enforce"] = Field(
        default="warn",
        description="Signer certificate check before signing: off; warn (refuse "
                    "revoked/expired, sign when status is unknown); enforce (also "
                    "refuse when path or status cannot be established, or when the "
                    "certificate names no OCSP/CRL source and its issuer has no "
                    "ocsp_by_issuer entry).")
    network_timeout: float = Field(
        default=10.0, gt=0, le=120,
        description="Seconds per TSA/OCSP/CRL request before the call fails with NETWORK.")

    @field_validator("tsa_by_issuer", "ocsp_by_issuer")
    @classmethod
    def _issuer_fingerprints(cls, value: dict[str, str]) -> dict[str, str]:
        """Keys normalised to lower hex without separators, so lookups are exact."""
        normalised: dict[str, str] = {}
        for key, url in value.items():
            digits = key.replace(":", "").replace(" ", "").lower()
            if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
                raise ValueError(f"{key!r} is not a SHA-256 certificate fingerprint "
                                 "(64 hex digits)")
            normalised[digits] = _http_url(url)
        return normalised

    @field_validator("http_proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, echo=False)

    @field_validator("page_tsa_allowed")
    @classmethod
    def _page_tsa_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "://" in entry:
                _http_url(entry)
            elif not _HOST_PATTERN.fullmatch(entry):
                raise ValueError(f"{entry!r} is neither an http(s) URL nor a host name "
                                 "(`tsa.example`, `*.example.az`)")
        return value

    @model_validator(mode="after")
    def _list_needs_page_tsa(self) -> FormatsConfig:
        if self.page_tsa_allowed and not self.allow_page_tsa:
            raise ValueError("page_tsa_allowed has no effect unless allow_page_tsa = true")
        return self


class DocumentsConfig(_Section):
    """Pages' documents (sign.pdf, sign.xml, sign.cms, sign.batch, sign.asic) are parsed
    and prepared in a worker process under these limits, after cheap structural caps
    (docs/formats.md)."""

    worker_cpu_seconds: int = Field(
        default=30, ge=1, le=3600,
        description="CPU seconds one document worker may use (Linux RLIMIT_CPU); past it the "
                    "request gets TOO_LARGE.")
    worker_memory_mb: int = Field(
        default=1024, ge=256, le=65536,
        description="Address space of one document worker, MiB (Linux RLIMIT_AS); past it the "
                    "request gets TOO_LARGE.")
    prepare_timeout: float = Field(
        default=120.0, gt=0, le=3600,
        description="Wall-clock seconds a worker may take before the signature, and again "
                    "after it (time-stamps, validation data); the user's time in the dialog "
                    "is not counted. Past it the worker is killed and the request gets "
                    "TOO_LARGE.")
    max_workers: int = Field(
        default=4, ge=1, le=64,
        description="Documents prepared at once (one worker process each); one more is "
                    "answered BUSY.")
    warm_workers: int = Field(
        default=1, ge=0, le=4,
        description="Idle workers kept started (after the first document) so the next "
                    "document does not wait for Python and the format libraries to load; 0: "
                    "start one per document.")
    max_xref_entries_per_kib: int = Field(
        default=512, ge=1,
        description="Cross-reference entries (/Size, /Index, xref sections) a PDF may "
                    "declare per KiB of its size, plus max_xref_entries_slack.")
    max_xref_entries_slack: int = Field(
        default=4096, ge=0,
        description="Cross-reference entries any PDF may declare whatever its size.")
    max_pdf_objects: int = Field(
        default=1_000_000, ge=16,
        description="Indirect objects a PDF may declare in all (cross-reference size).")
    max_page_tree_nodes: int = Field(
        default=100_000, ge=1,
        description="Nodes of a PDF's page tree (pages and /Kids); a node reached twice is "
                    "UNSUPPORTED.")
    max_page_tree_depth: int = Field(
        default=64, ge=2, description="Levels of a PDF's page tree.")
    max_form_fields: int = Field(
        default=10_000, ge=1,
        description="Form fields (with their /Kids) a PDF may have; a field reached twice "
                    "is UNSUPPORTED.")
    max_xml_namespace_declarations: int = Field(
        default=64, ge=1,
        description="Namespace declarations (xmlns) in an XML document; signing time grows "
                    "with their square times the number of elements.")
    max_xml_elements: int = Field(
        default=100_000, ge=1, description="Elements in an XML document.")
    max_batch_items: int = Field(
        default=100, ge=1, le=1000,
        description="Items one sign.batch may carry; more is TOO_LARGE before any dialog.")
    max_batch_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024,
        description="Bytes (decoded) of the documents of one sign.batch together (data, "
                    "signatures, XML, PDF); more is TOO_LARGE before any dialog. One "
                    "document worker builds them all, under the limits above.")
    max_container_files: int = Field(
        default=100, ge=1, le=10_000,
        description="Files an ASiC-E container may hold (sign.asic): the files of a new "
                    "container, or the data files of a page's container.")
    max_container_entries: int = Field(
        default=1000, ge=2, le=100_000,
        description="ZIP entries (files, signatures, manifests) of a page's container, "
                    "counted from its end record before its directory is read.")
    max_container_unpacked_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024,
        description="Uncompressed size of all the entries of a page's container (bytes).")
    max_container_ratio: int = Field(
        default=100, ge=2,
        description="Largest compression ratio (uncompressed : compressed) of an entry over "
                    "1 MiB in a page's container; more is refused as a ZIP bomb.")
    max_container_name_bytes: int = Field(
        default=255, ge=16, le=1024,
        description="Longest name (UTF-8 bytes) of a file or entry in a container.")
    max_verified_signatures: int = Field(
        default=32, ge=1, le=1000,
        description="Signatures of one file signature.verify and imza-agent verify check "
                    "(CMS signers, PDF signature fields, XML signatures, the signatures "
                    "of an ASiC-E container); a file with more is UNSUPPORTED.")


class AtrRule(_Section):
    atr: str = Field(description="Card ATR as hex bytes; `..` matches any byte.")
    mask: str | None = Field(
        default=None, description="Optional bit mask, hex, as long as the ATR.")
    name: str = Field(description="Product name shown to the user and in doctor.")
    modules: list[str] = Field(
        default_factory=list,
        description="PKCS#11 module paths (or vendor names of the built-in module table).")

    @field_validator("atr", "mask")
    @classmethod
    def _hex_bytes(cls, value: str | None) -> str | None:
        from agent.pcsc.atr import parse_atr  # raises ValueError naming the bad byte

        if value is not None:
            parse_atr(value)
        return value


class PcscConfig(_Section):
    enabled: bool = Field(
        default=True, description="Watch smart-card readers through PC/SC (pcscd / WinSCard).")
    atr: list[AtrRule] = Field(
        default_factory=list,
        description="Extra ATR → product → module entries, tried before the built-in "
                    "table (see docs/smartcards.md).")


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    tokens: TokensConfig = Field(default_factory=TokensConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    pcsc: PcscConfig = Field(default_factory=PcscConfig)
    formats: FormatsConfig = Field(default_factory=FormatsConfig)
    documents: DocumentsConfig = Field(default_factory=DocumentsConfig)


class ConfigError(Exception):
    """The configuration file is unreadable or invalid; the message says where."""


def config_file(explicit: Path | None) -> Path | None:
    """The file the configuration comes from: the one given with ``--config``, else the
    user's default file (``~/.config/imza-agent/config.toml``) when it exists; None means
    the built-in defaults. A given file is absolute from here on, so a daemon started
    elsewhere (launcher, native host) reads the same file."""
    from agent.paths import default_config_file

    if explicit is not None:
        return explicit.expanduser().absolute()
    default = default_config_file()
    return default if default.is_file() else None


def load_config(path: Path | None) -> Config:
    """The configuration in ``path``; ``None``: the built-in defaults (callers that want
    the user's default file pass ``config_file(None)``)."""
    if path is None:
        return Config()
    from agent.i18n import _  # the command line shows these in the person's language

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(_("cannot read {path}: {reason}").format(
            path=path, reason=exc.strerror)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_("{path} is not TOML: {reason}").format(
            path=path, reason=exc)) from exc
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        # The key and pydantic's explanation stay English: they name the file's text.
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(_("{path} is not valid:").format(path=path) + "\n"
                          + "\n".join(lines)) from None
    config = _resolve_paths(config, path.parent)
    return _with_os_tsa(config)


def _with_os_tsa(config: Config) -> Config:
    """A time-stamping service the OS's policy store imposes (Windows: the ADMX's TsaUrl)
    wins over the file's."""
    from agent.platform import current

    imposed = current().admin_tsa_url()
    if imposed:
        formats = config.formats.model_copy(update={"tsa_url": imposed})
        config = config.model_copy(update={"formats": formats})
    return config


def _resolve_paths(config: Config, base: Path) -> Config:
    """Relative paths in the file are relative to the file, not the working directory."""
    def fix(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base / p)

    tokens = config.tokens.model_copy(update={
        "modules": [fix(p) for p in config.tokens.modules],
        "pkcs12": [f.model_copy(update={"path": fix(f.path)}) for f in config.tokens.pkcs12],
    })
    ui = config.ui
    if ui.answers_file is not None:
        ui = ui.model_copy(update={"answers_file": fix(ui.answers_file)})
    formats = config.formats.model_copy(update={
        "trust_anchors": [fix(p) for p in config.formats.trust_anchors]})
    return config.model_copy(update={"tokens": tokens, "ui": ui, "formats": formats})
