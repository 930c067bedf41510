"""The test bed is what it claims: real tokens, matching keys, a valid chain, a real .p12."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pkcs11 import Attribute, Mechanism, ObjectClass
from testbed import Pkcs12Bed, SoftHsmBed, TestPKI
from testbed.softhsm import _public_key_of


def _spki(public_key) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.softhsm
def test_both_tokens_visible_with_unicode_labels(softhsm: SoftHsmBed) -> None:
    lib = softhsm.lib()
    tokens = [slot.get_token() for slot in lib.get_slots(token_present=True)]
    # SoftHSM always adds one slot with an uninitialised token; it is not part of the bed.
    seen = {t.label: t.serial.decode() for t in tokens
            if t.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED}
    assert len(seen) == 2
    assert seen["Rəqəmsal İmza A"] == softhsm.tokens["A"].serial
    assert seen["Token B"] == softhsm.tokens["B"].serial
    assert softhsm.tokens["A"].serial != softhsm.tokens["B"].serial


@pytest.mark.parametrize("token_key", ["A", "B"])
@pytest.mark.softhsm
def test_certificates_pair_with_on_token_public_keys(softhsm: SoftHsmBed, token_key: str) -> None:
    spec = softhsm.tokens[token_key]
    token = softhsm.lib().get_token(token_label=spec.label)
    with token.open() as session:  # certificates and public keys are public objects
        for name in spec.identities:
            obj = softhsm.objects[name]
            certs = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                              Attribute.ID: obj.cert_id}))
            pubs = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                             Attribute.ID: obj.key_id}))
            assert len(certs) == 1 and len(pubs) == 1, name
            cert = x509.load_der_x509_certificate(certs[0][Attribute.VALUE])
            assert cert == obj.identity.cert
            assert certs[0][Attribute.LABEL] == obj.label
            assert _spki(cert.public_key()) == _spki(_public_key_of(pubs[0])), name
            if name == "ec_sign_mismatched_id":
                assert obj.cert_id != obj.key_id
                assert obj.cert_id == hashlib.sha1(obj.identity.der).digest()
                no_cert_by_key_id = list(session.get_objects(
                    {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.ID: obj.key_id}))
                assert no_cert_by_key_id == []
            else:
                assert obj.cert_id == obj.key_id
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
                assert obj.key_id == ski.value.digest


@pytest.mark.softhsm
def test_private_keys_are_on_token_and_locked_down(softhsm: SoftHsmBed) -> None:
    spec = softhsm.tokens["B"]
    token = softhsm.lib().get_token(token_label=spec.label)
    with token.open() as session:
        # Without login the private keys are invisible (CKA_PRIVATE).
        assert list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})) == []
    with token.open(user_pin=spec.pin) as session:
        for name in spec.identities:
            obj = softhsm.objects[name]
            key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=obj.key_id)
            assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
            assert key[Attribute.SIGN]
            assert key[Attribute.ALWAYS_AUTHENTICATE] == (name == "rsa_sign_always_auth")


@pytest.mark.softhsm
def test_chain_verifies(softhsm: SoftHsmBed, pkcs12_file: Pkcs12Bed, pki: TestPKI) -> None:
    root, intermediate = pki.root.cert, pki.intermediate.cert
    root.verify_directly_issued_by(root)
    intermediate.verify_directly_issued_by(root)
    assert pki.chain == [intermediate, root]
    assert set(pki.identities) >= {*softhsm.objects, pkcs12_file.identity.name}
    for identity in pki.identities.values():
        identity.cert.verify_directly_issued_by(intermediate)


@pytest.mark.softhsm
def test_certificate_contents(softhsm: SoftHsmBed, pki: TestPKI) -> None:
    now = dt.datetime.now(dt.UTC)
    sign = softhsm.identity("rsa_sign").cert
    cn = sign.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
    assert cn.value == "Əliyev Rəşad"
    assert cn._type.name == "UTF8String"
    assert sign.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "AZE-1234567"
    ku = sign.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.content_commitment and ku.value.digital_signature

    auth = softhsm.identity("ec_auth").cert
    assert not auth.extensions.get_extension_for_class(x509.KeyUsage).value.content_commitment
    eku = auth.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku

    assert softhsm.identity("expired").cert.not_valid_after_utc < now
    assert softhsm.identity("not_yet_valid").cert.not_valid_before_utc > now
    assert sign.not_valid_before_utc < now < sign.not_valid_after_utc
    assert {o.identity.key_type for o in softhsm.objects.values()} == {"RSA", "EC"}


def test_pkcs12_opens_only_with_its_password(pkcs12_file: Pkcs12Bed) -> None:
    blob = pkcs12_file.path.read_bytes()
    loaded = pkcs12.load_pkcs12(blob, pkcs12_file.password.encode("utf-8"))
    assert loaded.cert is not None and loaded.cert.certificate == pkcs12_file.identity.cert
    assert [c.certificate for c in loaded.additional_certs] == pkcs12_file.chain
    assert loaded.key is not None
    assert _spki(loaded.key.public_key()) == _spki(pkcs12_file.identity.cert.public_key())
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(blob, b"p12-sifre-1")
    assert pkcs12_file.password not in repr(pkcs12_file)


@pytest.mark.softhsm
def test_rsa_sign_on_token_verifies_with_its_certificate(softhsm: SoftHsmBed) -> None:
    spec = softhsm.tokens["A"]
    obj = softhsm.objects["rsa_sign"]
    data = "Sənəd: ödəniş №42".encode()
    with softhsm.lib().get_token(token_label=spec.label).open(user_pin=spec.pin) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=obj.key_id)
        signature = key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
    obj.identity.cert.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.softhsm
def test_always_authenticate_key_needs_pin_per_signature(softhsm: SoftHsmBed) -> None:
    spec = softhsm.tokens["B"]
    obj = softhsm.objects["rsa_sign_always_auth"]
    assert obj.always_authenticate
    data = b"context-specific login"
    with softhsm.lib().get_token(token_label=spec.label).open(user_pin=spec.pin) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=obj.key_id)
        with pytest.raises(pkcs11.exceptions.UserNotLoggedIn):
            key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
        signature = key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS, pin=spec.pin)
    obj.identity.cert.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def test_agent_home_is_isolated(agent_home) -> None:
    from agent import paths

    assert paths.data_dir() == agent_home
    assert list(agent_home.iterdir()) == []


@pytest.mark.softhsm
def test_child_processes_see_the_same_tokens(softhsm: SoftHsmBed) -> None:
    # The agent's PKCS#11 workers are subprocesses: they must find the bed via os.environ.
    assert os.environ["SOFTHSM2_CONF"] == softhsm.env["SOFTHSM2_CONF"]
    code = (
        "import sys, pkcs11\n"
        "lib = pkcs11.lib(sys.argv[1])\n"
        "tokens = [s.get_token() for s in lib.get_slots(token_present=True)]\n"
        "ready = [t.label for t in tokens if t.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED]\n"
        "print('|'.join(sorted(ready)))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(softhsm.module)],
                          capture_output=True, text=True, check=True, encoding="utf-8")
    assert done.stdout.strip().split("|") == sorted(["Rəqəmsal İmza A", "Token B"])
