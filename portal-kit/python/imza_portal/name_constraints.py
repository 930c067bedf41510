"""Name constraints over a path (RFC 5280 4.2.1.10, 6.1.3 (b)(c), 6.1.4 (g)), judged as the
JDK's PKIX validator judges them, since the Java kit is the reference where RFC 5280 leaves
room (SCHEMA.md, "Name constraints").

Every CA on the path below the anchor constrains every certificate under it; a self-issued
CA is not judged itself (its constraints still count). The anchor's own nameConstraints
are not applied: the Java kit builds its TrustAnchor from the certificate alone."""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Iterator, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import ErrorCode, LoginError

# The attribute types whose string values compare case- and space-insensitively (the
# JDK's RFC 2253 keywords); any other value compares by its exact encoding.
_KEYWORDS = frozenset(oid.dotted_string for oid in (
    NameOID.COMMON_NAME, NameOID.COUNTRY_NAME, NameOID.LOCALITY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME, NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.STREET_ADDRESS, NameOID.DOMAIN_COMPONENT,
    NameOID.USER_ID))
_STRING_TAGS = frozenset({12, 19})  # UTF8String, PrintableString
_TRIMMED = "".join(map(chr, range(33)))  # what Java's String.trim() removes
_ALNUM = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# A name in comparable form: (form, value); the forms are "dn", "email", "dns", "ip" and,
# for a form this module does not judge, the general name's class name.
Judged = tuple[str, object]


def _tag(attr: x509.NameAttribute[str | bytes]) -> int | None:
    """The value's ASN.1 string tag. cryptography keeps it only in a private attribute;
    should that go (None), a text value compares as UTF8String and PrintableString ones
    do, the types certificates use."""
    tag = getattr(getattr(attr, "_type", None), "value", None)
    return tag if isinstance(tag, int) else None


def _attribute(attr: x509.NameAttribute[str | bytes]) -> tuple[object, ...]:
    oid = attr.oid.dotted_string
    tag = _tag(attr)
    if (oid in _KEYWORDS and (tag is None or tag in _STRING_TAGS)
            and isinstance(attr.value, str)):
        text = _squeeze(attr.value).upper().lower()
        return ("s", oid, unicodedata.normalize("NFKD", text))
    return ("#", oid, tag, attr.value)


def _squeeze(value: str) -> str:
    """Runs of spaces become one, then the ends are trimmed (as the JDK canonicalises)."""
    out: list[str] = []
    for char in value:
        if char == " " and out and out[-1] == " ":
            continue
        out.append(char)
    return "".join(out).strip(_TRIMMED)


def _dn(name: x509.Name) -> tuple[tuple[object, ...], ...]:
    """RDNs in DER order (the root of the tree first), each a sorted set of attributes."""
    return tuple(tuple(sorted((_attribute(a) for a in rdn), key=repr)) for rdn in name.rdns)


def _general(name: x509.GeneralName) -> Judged:
    if isinstance(name, x509.DirectoryName):
        return ("dn", _dn(name.value))
    if isinstance(name, x509.RFC822Name):
        return ("email", name.value.lower())
    if isinstance(name, x509.DNSName):
        return ("dns", name.value.lower())
    if isinstance(name, x509.IPAddress):
        value = name.value
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return ("ip", value.network_address.packed + value.netmask.packed)
        return ("ip", value.packed)
    return (type(name).__name__, name)


def _valid_email(text: str) -> bool:
    domain = text[text.find("@") + 1:]
    return bool(text) and domain not in ("", ".")


def _cn_as_host(cn: str) -> Judged | None:
    """The JDK also judges the subject's most specific CN as a DNS name or IP address
    when the subjectAltName has none of that form."""
    if cn.replace(".", "").isdigit():
        try:
            return ("ip", ipaddress.IPv4Address(cn).packed)
        except ValueError:
            return None
    # An IPv6 literal is left unjudged here and in the Node.js kit (the JDK judges it).
    if not cn or ":" in cn or " " in cn or cn.startswith(".") or cn.endswith("."):
        return None
    for label in cn.split("."):
        if not label or label[0] not in _ALNUM or any(
                c not in _ALNUM and c != "-" for c in label[1:]):
            return None
    return ("dns", cn.lower())


def names_of(cert: x509.Certificate) -> list[Judged]:
    """The names a constraint judges: the subject, the subjectAltName entries (without
    one, the subject's emailAddress attributes) and the CN as a host name."""
    subject = cert.subject
    names: list[Judged] = [("dn", _dn(subject))] if len(subject) else []
    try:
        alt: list[x509.GeneralName] | None = list(cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        alt = None
    if alt is None:
        names += [("email", str(a.value).lower())
                  for a in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
                  if _valid_email(str(a.value))]
    else:
        names += [_general(n) for n in alt]
    cns = [a.value for rdn in subject.rdns for a in rdn if a.oid == NameOID.COMMON_NAME]
    if cns and isinstance(cns[-1], str):
        host = _cn_as_host(cns[-1])
        if host is not None and all(form != host[0] for form, _ in names):
            names.append(host)
    return names


def _within(form: str, name: object, base: object) -> bool:
    """``name`` lies in the subtree ``base`` (a match or narrower, as the JDK's
    GeneralNameInterface.constrains says it)."""
    if name == base:
        return True
    if form == "dn":
        assert isinstance(name, tuple) and isinstance(base, tuple)
        return len(name) > 0 and len(name) >= len(base) and name[:len(base)] == base
    if form in ("email", "dns"):
        assert isinstance(name, str) and isinstance(base, str)
        if not base or not name.endswith(base):
            return False
        before = name[len(name) - len(base) - 1]
        if form == "email":  # host, .domain or a whole mailbox (which only matches itself)
            return "@" not in base and (base.startswith(".") or before == "@")
        return (before == ".") != base.startswith(".")
    if form == "ip":  # a host address inside an address + mask of the same family
        assert isinstance(name, bytes) and isinstance(base, bytes)
        half = len(name)
        return len(base) == 2 * half and all(
            name[i] & base[half + i] == base[i] for i in range(half))
    return False  # a form judged nowhere here: never "within"


def _permits(constraints: x509.NameConstraints, name: Judged) -> bool:
    form, value = name
    judged = form in ("dn", "email", "dns", "ip")
    for subtree in constraints.excluded_subtrees or ():
        base_form, base = _general(subtree)
        if base_form == form and (not judged or _within(form, value, base)):
            return False
    permitted = [_general(s) for s in constraints.permitted_subtrees or ()]
    same = [base for base_form, base in permitted if base_form == form]
    return not same or (judged and any(_within(form, value, base) for base in same))


def _tlvs(der: bytes) -> Iterator[tuple[int, bytes]]:
    """(identifier octet, content) of each DER element in ``der``, in order."""
    at = 0
    while at < len(der):
        if at + 2 > len(der):
            raise ValueError("truncated DER")
        tag, length, at = der[at], der[at + 1], at + 2
        if length & 0x80:
            count = length & 0x7F
            length, at = int.from_bytes(der[at:at + count], "big"), at + count
        if at + length > len(der):
            raise ValueError("truncated DER")
        yield tag, der[at:at + length]
        at += length


def _bounded_subtree(cert: x509.Certificate) -> bool:
    """Whether a GeneralSubtree of the nameConstraints has a non-zero minimum or a maximum,
    which the JDK refuses (cryptography parses past them, so the DER is read here)."""
    (_, tbs), = _tlvs(cert.tbs_certificate_bytes)
    for tag, content in _tlvs(tbs):
        if tag != 0xA3:  # [3] extensions
            continue
        (_, extensions), = _tlvs(content)
        for _, extension in _tlvs(extensions):
            oid, *_, value = (c for _, c in _tlvs(extension))
            if oid != b"\x55\x1d\x1e":  # 2.5.29.30
                continue
            (_, parts), = _tlvs(value)
            for _, subtrees in _tlvs(parts):
                for _, subtree in _tlvs(subtrees):
                    if any(tag != 0x80 or any(content) for tag, content in
                           list(_tlvs(subtree))[1:]):
                        return True
    return False


def _constraints(cert: x509.Certificate) -> x509.NameConstraints | None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    if _bounded_subtree(cert):
        raise ValueError("a name constraint with a minimum or maximum is not supported")
    return constraints


def _top_down(path: Sequence[x509.Certificate]) -> Iterator[tuple[x509.Certificate, bool]]:
    """The path without its anchor from the CA under the anchor down; True for the end
    entity."""
    below_anchor = list(path[:-1])
    for index, cert in enumerate(reversed(below_anchor)):
        yield cert, index == len(below_anchor) - 1


def check_name_constraints(path: Sequence[x509.Certificate]) -> None:
    """CERT_UNTRUSTED when a certificate on ``path`` (end entity first, anchor last) has a
    name outside what a CA above it permits, or inside what it excludes. A name of a form
    not judged here (URI, otherName, ...) under a constraint of that form fails too."""
    active: list[x509.NameConstraints] = []
    for cert, last in _top_down(path):
        try:
            if active and (last or cert.subject != cert.issuer):
                for name in names_of(cert):
                    if not all(_permits(c, name) for c in active):
                        raise LoginError(ErrorCode.CERT_UNTRUSTED,
                                         f"{cert.subject.rfc4514_string()} has a name "
                                         "outside a CA's name constraints")
            constraints = _constraints(cert)
        except ValueError as e:  # an extension that does not parse judges nothing
            raise LoginError(ErrorCode.CERT_UNTRUSTED,
                             f"{cert.subject.rfc4514_string()}: {e}") from e
        if constraints is not None:
            active.append(constraints)
