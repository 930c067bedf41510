"""Two real SoftHSM2 tokens, keys generated on the token, certificates from the test PKI.

Object conventions (tests rely on them):

* ``CKA_ID`` of a key pair is the SHA-1 of the public key's subjectPublicKey bits, i.e.
  the certificate's Subject Key Identifier, the way most token middleware does it. The
  certificate object gets the same ``CKA_ID``, except for ``ec_sign_mismatched_id`` whose
  certificate ``CKA_ID`` is the SHA-1 of the certificate DER (its public-key object keeps
  the key pair's id), so pairing has to fall back to comparing public keys.
* ``CKA_LABEL`` of the private key, public key and certificate is
  ``"<common name> / <identity name>"`` (non-ASCII on purpose).
* Private keys: CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only;
  ``rsa_sign_always_auth`` also has CKA_ALWAYS_AUTHENTICATE (each sign needs the PIN again,
  python-pkcs11: ``key.sign(data, mechanism=..., pin=...)``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, CertificateType, KeyType, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from .pki import Identity, PublicKey, TestPKI, validity

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SOFTHSM_UTIL = "softhsm2-util"
P256_OID = "1.2.840.10045.3.1.7"  # secp256r1 / prime256v1


@dataclass(frozen=True)
class TokenSpec:
    key: str  # "A" / "B"
    label: str
    pin: str
    so_pin: str
    serial: str
    identities: tuple[str, ...]

    def __repr__(self) -> str:  # keep PINs out of assertion rewrites and logs
        return f"TokenSpec(key={self.key!r}, label={self.label!r}, serial={self.serial!r})"


@dataclass(frozen=True)
class TokenObject:
    identity: Identity
    token: TokenSpec
    key_id: bytes  # CKA_ID of the private and public key objects
    cert_id: bytes  # CKA_ID of the certificate object; != key_id only for ec_sign_mismatched_id
    label: str = ""  # CKA_LABEL shared by the key pair and the certificate
    always_authenticate: bool = False


@dataclass
class SoftHsmBed:
    module: Path
    conf: Path
    env: dict[str, str]
    tokens: dict[str, TokenSpec]
    objects: dict[str, TokenObject]
    pki: TestPKI

    def identity(self, name: str) -> Identity:
        return self.objects[name].identity

    def lib(self) -> pkcs11.lib:
        """The process-wide python-pkcs11 handle on the module (initialised on demand)."""
        return pkcs11.lib(str(self.module))


@dataclass(frozen=True)
class _Plan:
    """What to put on a token for one identity."""

    name: str
    key_type: str
    purpose: str
    common_name: str
    country: str
    serial_number: str
    window: str = "valid"
    always_authenticate: bool = False
    mismatched_cert_id: bool = False


@dataclass(frozen=True)
class _TokenPlan:
    key: str
    label: str
    pin: str
    so_pin: str
    identities: tuple[_Plan, ...]


ALIYEV = ("Əliyev Rəşad", "AZ", "AZE-1234567")
SIMSEK = ("ŞİMŞEK Gülşen", "TR", "TUR-12345678901")
IVANOV = ("Иванов Пётр", "RU", "RUS-7701234567")

TOKEN_PLANS = (
    _TokenPlan("A", "Rəqəmsal İmza A", "1234", "12345678", (
        _Plan("rsa_sign", "RSA", "sign", *ALIYEV),
        _Plan("ec_sign", "EC", "sign", *SIMSEK),
        _Plan("rsa_auth", "RSA", "auth", *ALIYEV),
        _Plan("expired", "EC", "sign", *IVANOV, window="expired"),
        _Plan("not_yet_valid", "EC", "sign", *IVANOV, window="not_yet_valid"),
    )),
    _TokenPlan("B", "Token B", "987654", "87654321", (
        _Plan("ec_auth", "EC", "auth", *IVANOV),
        _Plan("rsa_sign_always_auth", "RSA", "sign", *IVANOV, always_authenticate=True),
        _Plan("ec_sign_mismatched_id", "EC", "sign", *SIMSEK, mismatched_cert_id=True),
    )),
)


def _require_softhsm() -> str:
    util = shutil.which(SOFTHSM_UTIL)
    if not MODULE.is_file() or util is None:
        pytest.fail("SoftHSM2 is not installed: run scripts/test.sh (it installs softhsm2) "
                    "or `apt-get install -y softhsm2`", pytrace=False)
    return util


def _write_conf(tmp: Path) -> Path:
    tokendir = tmp / "tokens"
    tokendir.mkdir(parents=True, exist_ok=True)
    conf = tmp / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n",
        encoding="utf-8",
    )
    return conf


def _init_token(util: str, plan: _TokenPlan, env: dict[str, str]) -> None:
    argv = [util, "--init-token", "--free", "--label", plan.label,
            "--so-pin", plan.so_pin, "--pin", plan.pin]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # Not CalledProcessError: its message would carry the PINs from argv.
        raise RuntimeError(f"softhsm2-util --init-token failed for {plan.label!r}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")


def _public_key_of(pub: pkcs11.PublicKey) -> PublicKey:
    if pub.key_type == KeyType.RSA:
        n = int.from_bytes(pub[Attribute.MODULUS], "big")
        e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    return load_der_public_key(encode_ec_public_key(pub))  # type: ignore[return-value]


def _generate(session: pkcs11.Session, plan: _Plan, label: str):
    private_template = {
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.ALWAYS_AUTHENTICATE: plan.always_authenticate,
    }
    common = dict(label=label, store=True,
                  capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                  public_template={Attribute.PRIVATE: False},
                  private_template=private_template)
    if plan.key_type == "RSA":
        return session.generate_keypair(KeyType.RSA, 2048, **common)
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(P256_OID)}, local=True)
    return params.generate_keypair(**common)


def _store_certificate(session: pkcs11.Session, cert: x509.Certificate, label: str,
                       cert_id: bytes, der: bytes) -> None:
    session.create_object({
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: label,
        Attribute.ID: cert_id,
        Attribute.SUBJECT: cert.subject.public_bytes(),
        Attribute.ISSUER: cert.issuer.public_bytes(),
        Attribute.SERIAL_NUMBER: core.Integer(cert.serial_number).dump(),
        Attribute.VALUE: der,
    })


def _populate(session: pkcs11.Session, plan: _Plan, spec: TokenSpec,
              pki: TestPKI) -> TokenObject:
    label = f"{plan.common_name} / {plan.name}"
    pub, priv = _generate(session, plan, label)
    public_key = _public_key_of(pub)
    # CKA_ID = SKI: known only once the key exists, so it is set after generation.
    key_id = x509.SubjectKeyIdentifier.from_public_key(public_key).digest
    pub[Attribute.ID] = key_id
    priv[Attribute.ID] = key_id
    not_before, not_after = validity(plan.window)
    cert = pki.issue(plan.name, public_key, purpose=plan.purpose,
                     common_name=plan.common_name, country=plan.country,
                     serial_number=plan.serial_number,
                     not_before=not_before, not_after=not_after)
    der = pki.identities[plan.name].der
    cert_id = hashlib.sha1(der).digest() if plan.mismatched_cert_id else key_id
    _store_certificate(session, cert, label, cert_id, der)
    return TokenObject(identity=pki.identities[plan.name], token=spec, key_id=key_id,
                       cert_id=cert_id, label=label,
                       always_authenticate=plan.always_authenticate)


def build_softhsm(tmp: Path, pki: TestPKI) -> SoftHsmBed:
    """Make a fresh SoftHSM2 store under ``tmp`` with tokens A and B.

    Sets ``SOFTHSM2_CONF`` in ``os.environ`` (worker subprocesses inherit it); the caller
    restores the old value when done. The module is left finalised; ``pkcs11.lib()``
    initialises it again on first use, reading this configuration.
    """
    util = _require_softhsm()
    conf = _write_conf(tmp)
    env = {"SOFTHSM2_CONF": str(conf)}
    os.environ.update(env)
    for plan in TOKEN_PLANS:
        _init_token(util, plan, dict(os.environ))

    lib = pkcs11.lib(str(MODULE))
    lib.reinitialize()  # a module loaded earlier in this process read another config
    tokens: dict[str, TokenSpec] = {}
    objects: dict[str, TokenObject] = {}
    try:
        for plan in TOKEN_PLANS:
            token = lib.get_token(token_label=plan.label)
            spec = TokenSpec(key=plan.key, label=plan.label, pin=plan.pin, so_pin=plan.so_pin,
                             serial=token.serial.decode("ascii").strip(),
                             identities=tuple(p.name for p in plan.identities))
            tokens[plan.key] = spec
            with token.open(rw=True, user_pin=plan.pin) as session:
                for identity_plan in plan.identities:
                    objects[identity_plan.name] = _populate(session, identity_plan, spec, pki)
    finally:
        lib.finalize()
    return SoftHsmBed(module=MODULE, conf=conf, env=env, tokens=tokens, objects=objects,
                      pki=pki)
