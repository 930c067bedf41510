"""The wire models accept the contract's messages and refuse malformed ones."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from pydantic import ValidationError

from agent.protocol.catalog import METHODS
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme
from agent.protocol.jsonrpc import wire_field_path
from agent.protocol.params import (
    AuthLoginParams,
    CertificatesSelectParams,
    KeyUsage,
    LoginTokenFormat,
    NoParams,
    Purpose,
    SignHashesParams,
    SignHashParams,
    SignPdfParams,
)
from agent.protocol.params_cms import SignCmsParams
from agent.protocol.params_xml import SignXmlParams
from agent.protocol.results import (
    Algorithm,
    AuthLoginResult,
    AuthToken,
    CertificateInfo,
    SignHashesResult,
    TokenSummary,
    WebEidAuthToken,
)

SHA256 = hashlib.sha256(b"invoice 2024-117").digest()
SHA384 = hashlib.sha384(b"invoice 2024-117").digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def wire(model: Any, data: dict[str, Any]) -> Any:
    """Validate as the dispatcher does: by wire (camelCase) names only."""
    return model.model_validate(data, by_alias=True, by_name=False)


def problems(model: Any, data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        wire(model, data)
    return {wire_field_path(e): e["type"] for e in info.value.errors()}


# --- contract examples are accepted -------------------------------------------------------

def test_sign_hash_decodes_base64_and_keeps_wire_form() -> None:
    params = wire(SignHashParams, {
        "handle": "h-1", "hash": b64(SHA256), "hashAlgorithm": "SHA-256",
        "scheme": "RSASSA-PSS", "display": {"text": "Invoice 117", "documentName": "a.pdf"}})
    assert params.hash == SHA256
    assert params.hash_algorithm is HashAlgorithm.SHA256
    assert params.scheme is Scheme.RSA_PSS
    assert params.ecdsa_encoding is EcdsaEncoding.DER
    assert params.display is not None and params.display.document_name == "a.pdf"
    out = params.to_wire()
    assert out["hash"] == b64(SHA256)
    assert out["hashAlgorithm"] == "SHA-256"
    assert out["display"] == {"text": "Invoice 117", "documentName": "a.pdf"}


def test_select_with_full_filter() -> None:
    params = wire(CertificatesSelectParams, {"purpose": "sign", "filter": {
        "issuer": "Test CA", "subjectSerialNumber": "AZE-1234567",
        "keyUsage": ["nonRepudiation"], "extendedKeyUsage": ["1.3.6.1.5.5.7.3.4"],
        "includeExpired": True}})
    assert params.purpose is Purpose.SIGN
    assert params.filter.key_usage == [KeyUsage.NON_REPUDIATION]
    assert params.filter.include_expired is True
    assert wire(CertificatesSelectParams, {"purpose": "auth"}).filter.include_expired is False


def test_sign_hashes_batch_of_1000() -> None:
    params = wire(SignHashesParams, {"handle": "h", "hashAlgorithm": "SHA-384",
                                     "hashes": [b64(SHA384)] * 1000})
    assert len(params.hashes) == 1000 and params.hashes[0] == SHA384


def test_document_methods() -> None:
    cms = wire(SignCmsParams, {"handle": "h", "data": b64(b"hello"), "hashAlgorithm": "SHA-256",
                               "detached": True, "level": "B"})
    assert cms.data == b"hello" and cms.hash is None
    cms = wire(SignCmsParams, {"handle": "h", "hash": b64(SHA256), "hashAlgorithm": "SHA-256",
                               "level": "T", "tsaUrl": "http://tsa.example.az/tsr"})
    assert cms.hash == SHA256 and cms.detached is True
    pdf = wire(SignPdfParams, {"handle": "h", "pdf": b64(b"%PDF-1.7\n"), "level": "B-LTA",
                               "reason": "Approved", "location": "Bakı",
                               "fieldName": "Signature1", "tsaUrl": "https://tsa.example/"})
    assert pdf.pdf.startswith(b"%PDF") and pdf.location == "Bakı"
    xml = wire(SignXmlParams, {"handle": "h", "xml": b64(b"<a/>"), "level": "B-B",
                               "mode": "enveloped"})
    assert xml.xml == b"<a/>"


def test_challenge_is_base64url_with_or_without_padding() -> None:
    nonce = bytes(range(32))
    login = wire(AuthLoginParams, {"challenge": b64url(nonce)})  # 43 chars
    assert login.challenge_bytes == nonce and login.format is LoginTokenFormat.IMZA_AUTH_1
    padded = base64.urlsafe_b64encode(nonce).decode()  # 44 chars with '='
    assert wire(AuthLoginParams, {"challenge": padded}).challenge_bytes == nonce
    long = b64url(bytes(96))
    assert len(long) == 128 and wire(AuthLoginParams,
                                     {"challenge": long}).challenge_bytes == bytes(96)


def test_web_eid_challenge_is_standard_base64_kept_as_sent() -> None:
    """Web eID signs the nonce string itself, so the model keeps it verbatim."""
    nonce = b64(bytes(range(250, 256)) + bytes(26))  # 44 characters with '+', '/', '='
    assert "+" in nonce and "/" in nonce and len(nonce) == 44
    login = wire(AuthLoginParams, {"challenge": nonce, "format": "web-eid:1.0"})
    assert login.format is LoginTokenFormat.WEB_EID_1_0 and login.challenge == nonce
    assert login.to_wire() == {"format": "web-eid:1.0", "challenge": nonce}
    long = b64(bytes(96))
    assert len(long) == 128
    assert wire(AuthLoginParams, {"challenge": long, "format": "web-eid:1.0"}).challenge == long


def test_no_params_accepts_empty_object_only() -> None:
    assert wire(NoParams, {}) == NoParams()
    assert problems(NoParams, {"x": 1}) == {"x": "extra_forbidden"}


def test_results_serialise_camelcase_base64_and_omit_absent() -> None:
    info = CertificateInfo(
        handle="h1", certificate=b"\x30\x82", chain=[b"\x30\x01"],
        token=TokenSummary(label="ASAN", manufacturer="ACME", model="T1", serial="42"),
        algorithms=[Algorithm(scheme=Scheme.ECDSA, hash_algorithm=HashAlgorithm.SHA384)])
    assert info.to_wire() == {
        "handle": "h1", "certificate": "MII=", "chain": ["MAE="],
        "token": {"label": "ASAN", "manufacturer": "ACME", "model": "T1", "serial": "42"},
        "algorithms": [{"scheme": "ECDSA", "hash": "SHA-384"}]}
    batch = SignHashesResult(signatures=[b"\x01", b"\x02"], scheme=Scheme.RSA_PKCS1_V15,
                             hash_algorithm=HashAlgorithm.SHA256, certificate=b"c")
    assert batch.to_wire()["signatures"] == ["AQ==", "Ag=="]
    login = AuthLoginResult(token=AuthToken(certificate=b"c", chain=[], algorithm="ES256",
                                            signature=b"s"))
    assert login.to_wire()["token"]["format"] == "imza-auth:1"
    web_eid = AuthLoginResult(token=WebEidAuthToken(
        unverified_certificate=b"c", algorithm="ES384", signature=b"s",
        app_version="https://imza-agent.invalid/releases/v1"))
    assert web_eid.to_wire() == {"token": {
        "unverifiedCertificate": "Yw==", "algorithm": "ES384", "signature": "cw==",
        "format": "web-eid:1.0", "appVersion": "https://imza-agent.invalid/releases/v1"}}


def test_every_method_is_in_the_catalog() -> None:
    assert set(METHODS) == {"agent.info", "certificates.select", "certificates.list",
                            "sign.hash", "sign.hashes", "sign.cms", "sign.pdf", "sign.xml",
                            "sign.batch", "sign.asic", "signature.extend", "signature.verify",
                            "document.upload", "auth.login",
                            "tokens.subscribe"}


# --- bad input is refused, naming the field -----------------------------------------------

SIGN = {"handle": "h", "hashAlgorithm": "SHA-256", "hash": b64(SHA256)}


@pytest.mark.parametrize("bad", [
    "not base64!", "QUJD\nREVG", "QUJDRA", "QUJ=RA==", "4pyT-_8=", "Zm9v\u00e9",
])
def test_wrong_base64_is_refused(bad: str) -> None:
    assert problems(SignHashParams, {**SIGN, "hash": bad}) == {"hash": "value_error"}


def test_hash_length_must_match_algorithm() -> None:
    assert problems(SignHashParams, {**SIGN, "hashAlgorithm": "SHA-512"}) == {
        "hash": "value_error"}
    assert problems(SignHashParams, {**SIGN, "hash": b64(SHA256[:20])}) == {
        "hash": "value_error"}
    hashes = [b64(SHA256), b64(SHA384)]
    assert problems(SignHashesParams, {**SIGN, "hash": None} | {"hashes": hashes}) == {
        "hash": "extra_forbidden", "hashes": "value_error"}


def test_too_many_or_no_hashes() -> None:
    base = {"handle": "h", "hashAlgorithm": "SHA-256"}
    assert problems(SignHashesParams, {**base, "hashes": [b64(SHA256)] * 1001}) == {
        "hashes": "too_long"}
    assert problems(SignHashesParams, {**base, "hashes": []}) == {"hashes": "too_short"}


@pytest.mark.parametrize("challenge", [
    b64url(bytes(31)),            # 42 characters: too short
    "A" * 129,                    # too long
    b64url(bytes(40))[:-1] + "+",  # standard alphabet, not base64url
    b64url(bytes(40)) + "=",      # bad padding
    "A" * 45,                     # 45 characters cannot be base64
])
def test_bad_challenge_is_refused(challenge: str) -> None:
    assert problems(AuthLoginParams, {"challenge": challenge}) == {"challenge": "value_error"}
    assert problems(AuthLoginParams, {"challenge": challenge, "format": "imza-auth:1"}) == {
        "challenge": "value_error"}


@pytest.mark.parametrize("challenge", [
    b64(bytes(32))[:43],              # 43 characters: Web eID takes 44 or more
    b64(bytes(97))[:129],             # too long
    b64url(bytes(31)) + "-_",         # base64url alphabet
    b64(bytes(31)) + "AAAA",          # '=' inside
    b64(bytes(34)).rstrip("="),       # 46 characters: padding left out
])
def test_bad_web_eid_challenge_is_refused(challenge: str) -> None:
    data = {"challenge": challenge, "format": "web-eid:1.0"}
    assert problems(AuthLoginParams, data) == {"challenge": "value_error"}


@pytest.mark.parametrize("token_format", ["web-eid:1.1", "imza-auth:2", "", None, 1])
def test_unknown_token_format_is_refused(token_format: object) -> None:
    data = {"challenge": b64url(bytes(32)), "format": token_format}
    assert problems(AuthLoginParams, data) == {"format": "enum"}


def test_unknown_and_snake_case_fields_are_refused() -> None:
    assert problems(SignHashParams, {**SIGN, "hashAlgoritm": "SHA-256"}) == {
        "hashAlgoritm": "extra_forbidden"}
    snake = {"handle": "h", "hash_algorithm": "SHA-256", "hash": b64(SHA256)}
    assert problems(SignHashParams, snake) == {"hashAlgorithm": "missing",
                                               "hash_algorithm": "extra_forbidden"}
    assert problems(CertificatesSelectParams, {"purpose": "sign", "filter": {"issuers": "x"}}) \
        == {"filter.issuers": "extra_forbidden"}


@pytest.mark.parametrize(("field", "value"), [
    ("hashAlgorithm", "SHA-1"), ("scheme", "RSA"), ("ecdsaEncoding", "p1363")])
def test_bad_enum_is_refused(field: str, value: str) -> None:
    assert problems(SignHashParams, {**SIGN, field: value}) == {field: "enum"}


def test_bad_purpose_and_key_usage() -> None:
    assert problems(CertificatesSelectParams, {"purpose": "encrypt"}) == {"purpose": "enum"}
    assert problems(CertificatesSelectParams, {
        "purpose": "sign", "filter": {"keyUsage": ["signing"], "extendedKeyUsage": ["1.x"]}}) \
        == {"filter.keyUsage[0]": "enum", "filter.extendedKeyUsage[0]": "string_pattern_mismatch"}


def test_display_text_refuses_bidi_override_and_controls() -> None:
    for text in ("invoice\u202efdp.exe", "a\x07b", "   "):
        assert problems(SignHashParams, {**SIGN, "display": {"text": text}}) == {
            "display.text": "value_error"}
    assert problems(SignHashParams, {**SIGN, "display": {"documentName": "a\nb"}}) == {
        "display.documentName": "value_error"}
    ok = wire(SignHashParams, {**SIGN, "display": {"text": "Line 1\nSətir 2"}})
    assert ok.display is not None and ok.display.text == "Line 1\nSətir 2"


def test_cms_needs_exactly_one_of_data_and_hash() -> None:
    base = {"handle": "h", "hashAlgorithm": "SHA-256", "level": "B"}
    assert problems(SignCmsParams, base) == {"hash": "value_error"}
    both = {**base, "data": b64(b"x"), "hash": b64(SHA256)}
    assert problems(SignCmsParams, both) == {"hash": "value_error"}
    assert problems(SignCmsParams, {**base, "data": b64(b"x"), "detached": False}) == {
        "detached": "literal_error"}
    assert problems(SignCmsParams, {**base, "data": ""}) == {"data": "value_error"}


def test_a_tsa_url_given_must_be_valid() -> None:
    # Absent is fine: the administrator's TSA may serve (else the agent says UNSUPPORTED).
    pdf = {"handle": "h", "pdf": b64(b"%PDF"), "level": "B-T"}
    assert SignPdfParams.model_validate(pdf, by_alias=True).tsa_url is None
    for url in ("ftp://tsa.example/", "https://user:pw@tsa.example/", "https:///x",
                "https://tsa.example:0/",
                # control and invisible characters: logged and shown, never accepted
                "https://tsa.example/\x00", "https://tsa.example/\x1b[31m",
                "https://tsa.example/\u202etxt", "https://tsa\u200b.example/"):
        assert problems(SignPdfParams, {**pdf, "tsaUrl": url}) == {"tsaUrl": "value_error"}
    xml = {"handle": "h", "xml": b64(b"<a/>"), "level": "B-T", "mode": "detached"}
    assert problems(SignXmlParams, {**xml, "tsaUrl": "file:///etc/passwd"}) == {
        "tsaUrl": "value_error"}


def test_pdf_field_name_without_dots() -> None:
    pdf = {"handle": "h", "pdf": b64(b"%PDF"), "level": "B-B", "fieldName": "a.b"}
    assert problems(SignPdfParams, pdf) == {"fieldName": "string_pattern_mismatch"}
