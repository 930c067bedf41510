"""Shared test bed: a test PKI, two SoftHSM2 tokens and a PKCS#12 file, built per session.

Import as ``from testbed import ...`` (tests/ is put on ``sys.path`` by tests/conftest.py).
"""

from .pkcs12 import Pkcs12Bed, build_pkcs12
from .pki import CA, Identity, TestPKI, build_pki, validity
from .softhsm import SoftHsmBed, TokenObject, TokenSpec, build_softhsm

__all__ = [
    "CA",
    "Identity",
    "Pkcs12Bed",
    "SoftHsmBed",
    "TestPKI",
    "TokenObject",
    "TokenSpec",
    "build_pkcs12",
    "build_pki",
    "build_softhsm",
    "validity",
]
