"""The agent's local CA and leaf: constraints, no CA key on disk, renewal, real TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.tls.material import (
    CA_FILE,
    CERT_FILE,
    LEAF_VALIDITY,
    TlsMaterial,
    ensure_tls_material,
    load_tls_material,
    ssl_context,
)

PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                     re.S)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _spki(key_or_cert: x509.Certificate | PrivateKeyTypes) -> bytes:
    public = key_or_cert.public_key()
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def material(tmp_path: Path) -> TlsMaterial:
    return ensure_tls_material(tmp_path / "tls")


def test_ca_is_constrained_to_loopback_names(material: TlsMaterial) -> None:
    ca = _cert(material.ca_cert_path)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.digital_signature
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees is not None
    assert set(constraints.value.permitted_subtrees) == {
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    }
    assert constraints.value.excluded_subtrees is None


@pytest.mark.posix
def test_no_ca_private_key_anywhere_in_the_dir(material: TlsMaterial) -> None:
    ca_spki = _spki(_cert(material.ca_cert_path))
    leaf_spki = _spki(_cert(material.cert_path))
    keys = []
    for path in material.ca_cert_path.parent.rglob("*"):
        if path.is_file():
            keys += PEM_KEY.findall(path.read_bytes())
    assert len(keys) == 1, "exactly one private key (the leaf's) may be on disk"
    key = serialization.load_pem_private_key(keys[0], None)
    assert _spki(key) == leaf_spki
    assert _spki(key) != ca_spki
    assert stat.S_IMODE(material.key_path.stat().st_mode) == 0o600


def test_leaf_is_issued_by_the_ca_for_loopback_only(material: TlsMaterial) -> None:
    ca, leaf = _cert(material.ca_cert_path), _cert(material.cert_path)
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= LEAF_VALIDITY + dt.timedelta(
        hours=1)
    assert leaf.not_valid_after_utc <= ca.not_valid_after_utc
    assert material.not_after == leaf.not_valid_after_utc


def test_first_run_reports_a_new_ca(material: TlsMaterial) -> None:
    assert material.renewed
    assert material.previous_ca_fingerprint_sha256 is None
    assert re.fullmatch(r"[0-9a-f]{64}", material.ca_fingerprint_sha256)


def test_second_call_keeps_the_same_material(material: TlsMaterial) -> None:
    leaf_before = material.cert_path.read_bytes()
    again = ensure_tls_material(material.ca_cert_path.parent)
    assert again.ca_fingerprint_sha256 == material.ca_fingerprint_sha256
    assert not again.renewed
    assert material.cert_path.read_bytes() == leaf_before


def test_no_renewal_while_more_than_30_days_remain(material: TlsMaterial) -> None:
    later = material.not_after - dt.timedelta(days=31)
    again = ensure_tls_material(material.ca_cert_path.parent, now=later)
    assert not again.renewed
    assert again.ca_fingerprint_sha256 == material.ca_fingerprint_sha256


def test_renewal_near_expiry_makes_a_new_ca(material: TlsMaterial) -> None:
    near_expiry = material.not_after - dt.timedelta(days=10)
    renewed = ensure_tls_material(material.ca_cert_path.parent, now=near_expiry)
    assert renewed.renewed
    assert renewed.ca_fingerprint_sha256 != material.ca_fingerprint_sha256
    assert renewed.previous_ca_fingerprint_sha256 == material.ca_fingerprint_sha256
    assert renewed.not_after > material.not_after
    _cert(renewed.cert_path).verify_directly_issued_by(_cert(renewed.ca_cert_path))


def test_mismatched_files_are_replaced(material: TlsMaterial, tmp_path: Path) -> None:
    other = ensure_tls_material(tmp_path / "other")
    # A leaf from another generation no longer matches the key and the CA on disk.
    (material.ca_cert_path.parent / CERT_FILE).write_bytes(other.cert_path.read_bytes())
    assert load_tls_material(material.ca_cert_path.parent) is None
    fresh = ensure_tls_material(material.ca_cert_path.parent)
    assert fresh.renewed
    assert fresh.previous_ca_fingerprint_sha256 == material.ca_fingerprint_sha256
    assert load_tls_material(material.ca_cert_path.parent) is not None
    assert (material.ca_cert_path.parent / CA_FILE).exists()


def test_server_context_requires_tls_1_2(material: TlsMaterial) -> None:
    assert ssl_context(material).minimum_version == ssl.TLSVersion.TLSv1_2


# --- a real handshake -------------------------------------------------------------------

async def _handshake(material: TlsMaterial, client: ssl.SSLContext, server_hostname: str
                     ) -> bytes:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello over tls")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=ssl_context(material))
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=server_hostname)
        data = await reader.read()
        writer.close()
        return data
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
async def test_client_trusting_only_our_ca_connects(material: TlsMaterial, name: str) -> None:
    client = ssl.create_default_context(cafile=str(material.ca_cert_path))
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    assert client.cert_store_stats()["x509_ca"] == 1
    assert await _handshake(material, client, name) == b"hello over tls"


async def test_wrong_hostname_is_refused(material: TlsMaterial) -> None:
    client = ssl.create_default_context(cafile=str(material.ca_cert_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(material, client, "example.com")


async def test_client_with_system_trust_refuses(material: TlsMaterial) -> None:
    client = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(material, client, "127.0.0.1")
