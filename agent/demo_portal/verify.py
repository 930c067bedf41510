"""What the demo portal's server needs beside the portal kit's checks: the exception its
API answers with, and who a certificate names.

The login token is checked by the portal kit (``imza_portal.login``: its own origin, a
challenge it issued once, the chain to its anchors, the key usage), the declaration's CAdES
by pyHanko (verify_cms.py), a signed PDF by ``imza_portal.documents`` (pyHanko). Nothing
here comes from the agent: a portal developer may copy this file as it is
(tests/test_demo_portal.py holds it to that).
"""

from __future__ import annotations

from cryptography import x509


class Rejected(Exception):
    """The evidence does not prove what it should; the message is safe to show. ``code``
    names the reason for programs (the portal kit's error code when it found it)."""

    def __init__(self, message: str, code: str = "REJECTED") -> None:
        super().__init__(message)
        self.code = code


def describe(cert: x509.Certificate) -> dict[str, str]:
    """Name and personal number of the certificate's holder, for the page."""
    def attribute(oid: x509.ObjectIdentifier) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else ""

    return {"name": attribute(x509.NameOID.COMMON_NAME),
            "serialNumber": attribute(x509.NameOID.SERIAL_NUMBER),
            "issuer": cert.issuer.rfc4514_string()}
