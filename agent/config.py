"""Configuration: one TOML file, every key optional, every key documented in
docs/configuration.md (a test checks that the two agree).

No file at all is a valid configuration.  Unknown keys are errors, so a typo in a limit
never silently leaves the default in force.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    wss_port: int = Field(default=29170, ge=0, le=65535, description="Port of the TLS WebSocket.")
    ws_port: int = Field(default=29171, ge=0, le=65535, description="Port of the plain WebSocket.")
    wss_enabled: bool = Field(default=True, description="Serve wss:// on wss_port.")
    ws_enabled: bool = Field(default=True, description="Serve ws:// on ws_port.")
    max_frame_bytes: int = Field(default=8 * 1024 * 1024, ge=1024,
                                 description="Largest accepted WebSocket frame (bytes).")
    max_connections_per_origin: int = Field(
        default=8, ge=1, description="Open connections one origin may hold at once.")
    rate_per_second: float = Field(
        default=50.0, gt=0, description="Requests per second one origin may send (sustained).")
    rate_burst: int = Field(
        default=100, ge=1, description="Requests one origin may send in a burst.")
    max_requests_in_flight: int = Field(
        default=32, ge=1,
        description="Unanswered requests one connection may have at once; more are answered "
                    "RATE_LIMITED. (Requests waiting for the user: one per origin, by the "
                    "protocol; a second gets BUSY.)")
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


class UiConfig(_Section):
    backend: Literal["tk", "scripted", "none"] = Field(
        default="tk", description="Dialogs: tk (desktop), scripted (tests), none (refuse all).")
    answers_file: Path | None = Field(
        default=None, description="With backend = scripted: the answers file.")
    language: Literal["auto", "az", "tr", "ru", "en"] = Field(
        default="auto", description="Dialog language; auto follows the OS locale.")
    dialog_timeout: float = Field(
        default=120.0, gt=0, description="Seconds a dialog waits before USER_TIMEOUT.")
    tray: bool = Field(default=True, description="Show the tray icon (ignored with --headless).")
    max_pin_attempts: int = Field(
        default=5, ge=1, le=100,
        description="Wrong PINs one request may try before it ends as USER_CANCELLED "
                    "(tokens lock on their own; PKCS#12 files never do).")


class DemoConfig(_Section):
    enabled: Literal["auto", "never"] = Field(
        default="auto", description="auto: create the demo identity when no key store is present.")


class JournalConfig(_Section):
    enabled: bool = Field(default=True, description="Write the hash-chained signing journal.")


class PolicyConfig(_Section):
    remove_defaults: bool = Field(
        default=False,
        description="Drop the sites the agent trusts by default (see docs/policy.md).")


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
        default=True, description="Use the page's tsaUrl when no TSA is configured for its origin.")
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


class ConfigError(Exception):
    """The configuration file is unreadable or invalid; the message says where."""


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{path} is not valid:\n" + "\n".join(lines)) from None
    return _resolve_paths(config, path.parent)


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
