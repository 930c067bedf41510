"""The demo identity: created once, reused, clearly DEMO, and usable as a real store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import PinIncorrect
from agent.keystores.base import (
    KeyStore,
    KeyType,
    Secret,
    SecretKind,
    SignMechanism,
    StoreKind,
)
from agent.keystores.demo import DEMO_PIN, DemoStore, ensure_demo_identity
from agent.protocol.enums import HashAlgorithm, Scheme


def fingerprints(paths: tuple[Path, ...]) -> list[bytes]:
    out = []
    for p in paths:
        loaded = pkcs12.load_pkcs12(p.read_bytes(), DEMO_PIN.encode())
        assert loaded.cert is not None
        out.append(loaded.cert.certificate.fingerprint(hashes.SHA256()))
    return out


@pytest.mark.posix
def test_created_once_and_reused(agent_home: Path) -> None:
    first = ensure_demo_identity(agent_home)
    assert first.p12_path.parent == agent_home / "demo"
    before = fingerprints(first.p12_paths)
    ca_before = first.ca_cert_path.read_bytes()
    second = ensure_demo_identity(agent_home)
    assert second == first
    assert fingerprints(second.p12_paths) == before
    assert second.ca_cert_path.read_bytes() == ca_before
    # No staging directories left behind; only the three files.
    assert sorted(p.name for p in agent_home.iterdir()) == ["demo"]
    assert sorted(p.name for p in (agent_home / "demo").iterdir()) == [
        "demo-auth.p12", "demo-root-ca.pem", "demo-sign.p12"]
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in first.p12_paths)


def test_incomplete_identity_is_rebuilt(agent_home: Path) -> None:
    first = ensure_demo_identity(agent_home)
    old = fingerprints(first.p12_paths)
    first.auth_p12_path.unlink()
    again = ensure_demo_identity(agent_home)
    assert again.auth_p12_path.is_file()
    assert fingerprints(again.p12_paths) != old


def test_certificates_say_demo_and_have_the_right_purposes(agent_home: Path) -> None:
    ident = ensure_demo_identity(agent_home)
    ca = x509.load_pem_x509_certificate(ident.ca_cert_path.read_bytes())
    ca_cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert ca_cn == "imza-agent DEMO Root CA — not trusted"
    # The CA file is a certificate only: its private key is never stored.
    assert b"PRIVATE KEY" not in ident.ca_cert_path.read_bytes()

    loaded = {p.name: pkcs12.load_pkcs12(p.read_bytes(), DEMO_PIN.encode())
              for p in ident.p12_paths}
    sign, auth = loaded["demo-sign.p12"], loaded["demo-auth.p12"]
    for item in (sign, auth):
        assert item.cert is not None
        cert = item.cert.certificate
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert isinstance(cn, str) and "DEMO" in cn and "Vətəndaş" in cn
        assert cert.issuer == ca.subject
        ca_pub = ca.public_key()
        assert isinstance(ca_pub, ec.EllipticCurvePublicKey)
        assert cert.signature_hash_algorithm is not None
        ca_pub.verify(cert.signature, cert.tbs_certificate_bytes,
                      ec.ECDSA(cert.signature_hash_algorithm))
    assert sign.cert is not None and auth.cert is not None
    sign_ku = sign.cert.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert sign_ku.content_commitment is True
    auth_cert = auth.cert.certificate
    auth_ku = auth_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert auth_ku.content_commitment is False
    eku = auth_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku


def test_demo_password_not_in_repr(agent_home: Path) -> None:
    ident = ensure_demo_identity(agent_home)
    assert DEMO_PIN not in repr(ident)


async def test_demo_store_lists_one_demo_token_and_signs(agent_home: Path) -> None:
    store = DemoStore(ensure_demo_identity(agent_home))
    assert isinstance(store, KeyStore)
    assert store.kind is StoreKind.DEMO
    (token,) = await store.tokens()
    assert token.demo is True and token.needs_unlock is False
    assert "DEMO" in token.label
    # The documented demo PIN is asked for as a PIN; the demo never locks.
    assert (token.secret, token.unlock) == (SecretKind.PIN, "ISSUER")
    assert store.card_events is None
    entries = await store.certificates(token)
    keyed = [e for e in entries if e.key is not None]
    assert {e.key.key_type for e in keyed if e.key} == {KeyType.RSA, KeyType.EC}
    # The demo CA is in both files but listed once.
    assert len(entries) == 3

    with pytest.raises(PinIncorrect):
        await store.login(token, Secret("1234"))
    await store.login(token, Secret(DEMO_PIN))
    digest = b"\x11" * 32
    for entry in keyed:
        assert entry.key is not None
        cert = x509.load_der_x509_certificate(entry.der)
        pub = cert.public_key()
        if entry.key.key_type is KeyType.RSA:
            sig = await store.sign(entry.key, digest,
                                   SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256))
            assert isinstance(pub, rsa.RSAPublicKey)
            pub.verify(sig, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        else:
            sig = await store.sign(entry.key, digest,
                                   SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256))
            assert isinstance(pub, ec.EllipticCurvePublicKey)
            pub.verify(sig, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    # Many hashes at once: one signature each, in order (the demo has no faster path).
    [ec_entry] = [e for e in keyed if e.key is not None and e.key.key_type is KeyType.EC]
    assert ec_entry.key is not None
    digests = [bytes([i]) * 32 for i in range(3)]
    signatures = await store.sign_many(ec_entry.key, digests,
                                       SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256))
    ec_pub = x509.load_der_x509_certificate(ec_entry.der).public_key()
    assert isinstance(ec_pub, ec.EllipticCurvePublicKey) and len(signatures) == 3
    for d, sig in zip(digests, signatures, strict=True):
        ec_pub.verify(sig, d, ec.ECDSA(Prehashed(hashes.SHA256())))
    await store.close()
