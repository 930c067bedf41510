"""Trust anchors for path building and B-LT validation data, read from the files the
administrator configures.  Kept apart from ``revocation.py`` so that reading them imports
nothing of pyHanko."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchors:
    roots: list[x509.Certificate] = field(default_factory=list)
    others: list[x509.Certificate] = field(default_factory=list)


def _read_certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def load_anchors(paths: Iterable[Path]) -> Anchors:
    """Self-signed certificates are roots; the rest help to build paths."""
    anchors = Anchors()
    for path in paths:
        try:
            certs = _read_certificates(Path(path))
        except (OSError, ValueError):
            log.warning("trust anchor file %s is unreadable; ignored", path)
            continue
        for cert in certs:
            (anchors.roots if cert.issuer == cert.subject else anchors.others).append(cert)
    return anchors
