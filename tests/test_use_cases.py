"""The use cases in-process: consent, picker, PIN loop, signing, login and the formats,
driven through the real dispatcher and method modules against a fake key store and the
scripted UI.  No SoftHSM, no daemon, no network: the whole module runs in seconds."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from fakes import Bench, FakeKeyStore, Page, make_bench

from agent.app.signing import KeyUse, SigningRequest, mechanism_for, sign_with_key
from agent.errors import InternalError, PinLocked
from agent.methods.auth_login import login_message
from agent.protocol.dispatch import CallContext
from agent.protocol.enums import HashAlgorithm

ORIGIN = "https://portal.example.az"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def signer_selected(bench: Bench) -> tuple[Page, str]:
    """A signing certificate on the fake token, a site allowed always, and its handle."""
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="1234")
    page = Page(bench)
    return page, await page.select()


def reason(answer: dict[str, Any]) -> str:
    assert "error" in answer, answer
    value: str = answer["error"]["data"]["reason"]
    return value


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


def verify_ec(cert_der: bytes, digest: bytes, signature: bytes,
              algorithm: hashes.HashAlgorithm) -> None:
    public = x509.load_der_x509_certificate(cert_der).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(Prehashed(algorithm)))


# --- consent ---------------------------------------------------------------------------------

async def test_sign_hash_after_consent_once(bench: Bench) -> None:
    bench.issue("signer")
    bench.answers.set(consent="once", certificate="first", pin="1234")
    page = Page(bench)
    handle = await page.select()
    digest = hashlib.sha256(b"declaration").digest()
    answer = await page.call("sign.hash", {"handle": handle, "hash": b64(digest),
                                           "hashAlgorithm": "SHA-256"})
    result = answer["result"]
    verify_ec(base64.b64decode(result["certificate"]), digest,
              base64.b64decode(result["signature"]), hashes.SHA256())
    # One consent for the connection, then the picker, then one PIN dialog.
    assert [d["dialog"] for d in bench.answers.shown()] == ["consent", "certificate", "pin"]
    assert bench.store.calls[-1] == "logout" and not bench.store.logged_in
    [line] = bench.journal.lines
    assert (line["method"], line["result"], line["digest_hex"]) == (
        "sign.hash", "ok", digest.hex())


async def test_consent_denied_reaches_no_key(bench: Bench) -> None:
    bench.issue("signer")
    bench.answers.set(consent="deny")
    page = Page(bench)
    assert reason(await page.call("certificates.select", {"purpose": "sign"})) == \
        "PERMISSION_DENIED"
    assert "login" not in bench.store.calls and "certificates" not in bench.store.calls
    # "deny" is remembered: no second dialog for the same site.
    await page.call("certificates.select", {"purpose": "sign"})
    assert [d["dialog"] for d in bench.answers.shown()] == ["consent"]


async def test_nobody_to_ask_means_denied_without_a_dialog(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, interactive=False)
    bench.issue("signer")
    assert reason(await Page(bench).call("certificates.select", {"purpose": "sign"})) == \
        "PERMISSION_DENIED"
    assert bench.answers.shown() == []


async def test_once_grant_dies_with_the_connection(bench: Bench) -> None:
    bench.issue("signer")
    bench.answers.set(consent="once", certificate="first")
    page = Page(bench)
    handle = await page.select()
    await page.ctx.close()
    assert len(bench.core.connections) == 0
    again = Page(bench)
    bench.answers.set(consent="deny")
    answer = await again.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                            "hashAlgorithm": "SHA-256"})
    assert reason(answer) == "PERMISSION_DENIED"  # asked again, and refused


# --- handles and certificates ------------------------------------------------------------------

async def test_handle_of_another_connection_is_invalid(bench: Bench) -> None:
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="1234")
    handle = await Page(bench).select()
    answer = await Page(bench).call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                                  "hashAlgorithm": "SHA-256"})
    assert reason(answer) == "INVALID_HANDLE"


async def test_handle_dies_with_its_connection(bench: Bench) -> None:
    page, handle = await signer_selected(bench)
    await page.ctx.close()
    answer = await page.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                           "hashAlgorithm": "SHA-256"})
    assert reason(answer) == "INVALID_HANDLE"
    assert "login" not in bench.store.calls


async def test_auth_handle_cannot_sign(bench: Bench) -> None:
    bench.issue("login", purpose="auth")
    bench.answers.set(consent="always", certificate="first", pin="1234")
    page = Page(bench)
    handle = await page.select("auth")
    answer = await page.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                           "hashAlgorithm": "SHA-256"})
    assert reason(answer) == "INVALID_HANDLE"
    assert "sign" not in bench.store.calls


async def test_no_matching_certificate(bench: Bench) -> None:
    bench.issue("login", purpose="auth")
    bench.answers.set(consent="always")
    assert reason(await Page(bench).call("certificates.select", {"purpose": "sign"})) == \
        "NO_CERTIFICATE"
    # Only after the user saw (and closed) the empty picker.
    picker = bench.answers.shown()[-1]
    assert (picker["dialog"], picker["choices"], picker["filtered"]) == (
        "certificate", [], False)


async def test_expired_certificate_fails_before_any_pin(bench: Bench) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    bench.issue("old", not_before=past, not_after=past + dt.timedelta(days=30))
    bench.answers.set(consent="always", certificate={"index": 0}, pin="1234")
    page = Page(bench)
    answer = await page.call("certificates.select",
                             {"purpose": "sign", "filter": {"includeExpired": True}})
    handle = answer["result"]["handle"]
    answer = await page.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                           "hashAlgorithm": "SHA-256"})
    assert reason(answer) == "CERTIFICATE_INVALID"
    assert answer["error"]["data"]["detail"] == "EXPIRED"
    assert "pin" not in [d["dialog"] for d in bench.answers.shown()]


async def test_token_pulled_after_select(bench: Bench) -> None:
    page, handle = await signer_selected(bench)
    bench.store.present = False
    answer = await page.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                           "hashAlgorithm": "SHA-256"})
    assert reason(answer) == "TOKEN_NOT_PRESENT"


# --- the PIN loop ------------------------------------------------------------------------------

async def sign_once(bench: Bench, page: Page | None = None) -> dict[str, Any]:
    page = page or Page(bench)
    handle = await page.select()
    return await page.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                         "hashAlgorithm": "SHA-256"})


async def test_wrong_pin_then_right(bench: Bench) -> None:
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin=["0000", "1234"])
    assert "result" in await sign_once(bench)
    pins = [d for d in bench.answers.shown() if d["dialog"] == "pin"]
    assert pins[0]["retry"] is None and pins[1]["retry"]["countLow"] is True


async def test_pin_locked_on_the_last_try_names_the_stores_unlock(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, unlock="SO_PIN", tries=1)
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin=["0000"])
    answer = await sign_once(bench)
    assert reason(answer) == "PIN_LOCKED" and answer["error"]["data"]["unlock"] == "SO_PIN"
    [locked] = [d for d in bench.answers.shown() if d["dialog"] == "pin_locked"]
    assert locked["unlock"] == "SO_PIN"


@pytest.mark.parametrize("unlock", ["CHANGE_PIN", "INIT_PIN"])
async def test_store_reason_for_a_locked_pin_reaches_page_and_dialog(bench: Bench,
                                                                    unlock: str) -> None:
    """An expired or never-set PIN is not "too many wrong PINs, use the PUK"."""
    bench.issue("signer")
    bench.store.login_error = PinLocked(unlock=unlock)
    bench.answers.set(consent="always", certificate="first", pin="1234")
    answer = await sign_once(bench)
    assert answer["error"]["data"]["unlock"] == unlock
    [locked] = [d for d in bench.answers.shown() if d["dialog"] == "pin_locked"]
    assert locked["unlock"] == unlock


async def test_token_already_locked_asks_no_pin(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, tries=0, unlock="PUK")
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="1234")
    answer = await sign_once(bench)
    assert answer["error"]["data"]["unlock"] == "PUK"
    assert "pin" not in [d["dialog"] for d in bench.answers.shown()]


async def test_password_store_asks_for_a_password(tmp_path: Path) -> None:
    from agent.keystores.base import SecretKind

    bench = make_bench(tmp_path, secret_kind=SecretKind.PASSWORD, secret="parol",
                       unlock="ISSUER")
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="parol")
    assert "result" in await sign_once(bench)
    [pin] = [d for d in bench.answers.shown() if d["dialog"] == "pin"]
    assert pin["password"] is True


async def test_too_many_wrong_pins_in_one_request(bench: Bench) -> None:
    bench.store.tries = 99  # a lenient token: the agent, not the token, stops asking
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin=["1"] * 10)
    assert reason(await sign_once(bench)) == "USER_CANCELLED"
    pins = [d for d in bench.answers.shown() if d["dialog"] == "pin"]
    assert len(pins) == bench.core.max_pin_attempts


async def test_pin_dialog_timeout(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, dialog_timeout=0.2)
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="ignore")
    assert reason(await sign_once(bench)) == "USER_TIMEOUT"
    assert "login" not in bench.store.calls


async def test_always_authenticate_key_gets_the_pin_per_signature(bench: Bench) -> None:
    bench.issue("signer", always_authenticate=True)
    bench.answers.set(consent="always", certificate="first", pin="1234")
    assert "result" in await sign_once(bench)
    assert bench.store.calls.count("sign") == 1


async def test_second_request_of_a_site_while_one_waits_is_busy(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    page, handle = await signer_selected(bench)
    bench.answers.set(consent="always", certificate="first", pin="1234", delay=0.3)
    params = {"handle": handle, "hash": b64(bytes(32)), "hashAlgorithm": "SHA-256"}
    first, second = await asyncio.gather(page.call("sign.hash", params),
                                         page.call("sign.hash", params))
    assert "result" in first and reason(second) == "BUSY"


# --- batches, login tokens -----------------------------------------------------------------------

async def test_sign_hashes_one_dialog_for_the_batch(bench: Bench) -> None:
    page, handle = await signer_selected(bench)
    digests = [hashlib.sha384(bytes([i])).digest() for i in range(5)]
    answer = await page.call("sign.hashes", {"handle": handle, "hashAlgorithm": "SHA-384",
                                             "hashes": [b64(d) for d in digests]})
    result = answer["result"]
    for digest, sig in zip(digests, result["signatures"], strict=True):
        verify_ec(base64.b64decode(result["certificate"]), digest, base64.b64decode(sig),
                  hashes.SHA384())
    [pin] = [d for d in bench.answers.shown() if d["dialog"] == "pin"]
    assert pin["count"] == 5
    assert bench.journal.lines[-1]["count"] == 5


async def test_auth_login_binds_the_origin(bench: Bench) -> None:
    bench.issue("login", purpose="auth", curve=ec.SECP384R1())
    bench.answers.set(consent="always", certificate="first", pin="1234")
    challenge = bytes(range(32))
    answer = await Page(bench).call(
        "auth.login", {"challenge": base64.urlsafe_b64encode(challenge).decode().rstrip("=")})
    token = answer["result"]["token"]
    assert token["algorithm"] == "ES384"
    raw = base64.b64decode(token["signature"])
    der = encode_dss_signature(int.from_bytes(raw[:48], "big"),
                               int.from_bytes(raw[48:], "big"))
    message = login_message(ORIGIN, challenge)
    verify_ec(base64.b64decode(token["certificate"]), hashlib.sha384(message).digest(), der,
              hashes.SHA384())
    # The same signature does not verify for another origin.
    with pytest.raises(InvalidSignature):
        verify_ec(base64.b64decode(token["certificate"]),
                  hashlib.sha384(login_message("https://evil.example", challenge)).digest(),
                  der, hashes.SHA384())
    assert bench.journal.lines[-1]["digest_algorithm"] == "SHA-384"


async def test_a_use_case_may_sign_only_once(bench: Bench) -> None:
    page, handle = await signer_selected(bench)

    async def greedy(use: KeyUse) -> None:
        mechanism = mechanism_for(use.entry, None, HashAlgorithm.SHA256)
        await use.sign([bytes(32)], mechanism)
        await use.sign([bytes(32)], mechanism)

    request = SigningRequest(method="sign.hash", purpose="sign", handle=handle)
    with pytest.raises(InternalError):
        await sign_with_key(bench.core, page.ctx, request, greedy)
    assert [d["dialog"] for d in bench.answers.shown()].count("pin") == 1
    assert bench.journal.lines[-1]["result"] == "INTERNAL"


async def test_internal_errors_tell_the_page_nothing(bench: Bench) -> None:
    page = Page(bench)

    async def broken(ctx: CallContext, params: Any) -> Any:
        raise InternalError("/usr/lib/vendor/libbroken.so: C_Sign failed: CKR_GENERAL_ERROR")

    from agent.protocol.params import NoParams

    page.dispatcher.register("test.broken", NoParams, broken)
    answer = await page.call("test.broken")
    text = json.dumps(answer)
    assert answer["error"]["message"] == "internal error"
    assert "libbroken" not in text and "CKR_" not in text and "/usr" not in text


# --- the journal: only requests that reached a key ---------------------------------------------

async def test_requests_that_never_reach_a_key_are_counted_not_journalled(
        bench: Bench) -> None:
    from agent.policy.site import site_of

    page, handle = await signer_selected(bench)
    bogus = {"handle": "h" + "A" * 24, "hash": b64(bytes(32)), "hashAlgorithm": "SHA-256"}
    for _ in range(70):
        assert reason(await page.call("sign.hash", bogus)) == "INVALID_HANDLE"
    bench.answers.set(consent="deny")
    nosy = Page(bench, "https://nosy.example")
    for _ in range(70):
        assert reason(await nosy.call("sign.hash", bogus)) == "PERMISSION_DENIED"
    # One real signature, waiting on its PIN dialog while 60 more requests arrive.
    bench.answers.set(certificate="first", pin="1234", delay=0.3)
    real = {"handle": handle, "hash": b64(hashlib.sha256(b"real").digest()),
            "hashAlgorithm": "SHA-256"}
    first, *others = await asyncio.gather(*(page.call("sign.hash", real) for _ in range(61)))
    assert "result" in first and [reason(a) for a in others] == ["BUSY"] * 60
    [line] = bench.journal.lines
    assert (line["result"], line["digest_hex"]) == ("ok", hashlib.sha256(b"real").hexdigest())
    assert bench.core.unjournaled == {
        (site_of(ORIGIN), "INVALID_HANDLE"): 70, (site_of(ORIGIN), "BUSY"): 60,
        ("nosy.example", "PERMISSION_DENIED"): 70}


def test_the_unjournaled_count_stays_bounded(bench: Bench) -> None:
    from agent.app.core import OTHER_SITES, UNJOURNALED_ROWS

    for i in range(UNJOURNALED_ROWS + 500):
        ctx = CallContext(origin=f"https://www.site{i}.example", transport="wss",
                          connection_id=str(i))
        bench.core.count_unjournaled(ctx, "BUSY")
    assert len(bench.core.unjournaled) == UNJOURNALED_ROWS + 1
    assert bench.core.unjournaled[(OTHER_SITES, "BUSY")] == 500
    assert sum(bench.core.unjournaled.values()) == UNJOURNALED_ROWS + 500


# --- formats, in-process (pyHanko, signxml: no network at level B) -------------------------------

async def test_sign_cms_level_b(bench: Bench) -> None:
    from asn1crypto import cms

    page, handle = await signer_selected(bench)
    data = "Bəyannamə: 10 000 AZN".encode()
    answer = await page.call("sign.cms", {"handle": handle, "data": b64(data),
                                          "hashAlgorithm": "SHA-256", "level": "B"})
    content = cms.ContentInfo.load(base64.b64decode(answer["result"]["cms"]))
    signer_info = content["content"]["signer_infos"][0]
    signed_attrs = signer_info["signed_attrs"]
    digest = next(a["values"][0].native for a in signed_attrs
                  if a["type"].native == "message_digest")
    assert digest == hashlib.sha256(data).digest()
    signer_cert = bench.pki.identities["signer"].cert
    public = signer_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    # Signed over the attributes' DER with the SET OF tag, not the [0] they carry.
    signed_der = b"\x31" + signed_attrs.dump()[1:]
    public.verify(signer_info["signature"].native, signed_der, ec.ECDSA(hashes.SHA256()))
    assert bench.journal.lines[-1]["method"] == "sign.cms"


async def test_sign_xml_enveloped_b_b_verifies_with_signxml(bench: Bench) -> None:
    from signxml import XMLVerifier

    page, handle = await signer_selected(bench)
    # signxml's verifier re-reads references as ASCII, so names stay ASCII here;
    # non-ASCII element names are checked with xmlsec1 in tests/test_formats_xml.py.
    xml = "<declaration><amount>10 000 ₼ — Əliyev</amount></declaration>".encode()
    answer = await page.call("sign.xml", {"handle": handle, "xml": b64(xml),
                                          "level": "B-B", "mode": "enveloped"})
    signed = base64.b64decode(answer["result"]["xml"])
    signer_pem = bench.pki.identities["signer"].cert.public_bytes(Encoding.PEM).decode()
    verified = XMLVerifier().verify(signed, x509_cert=signer_pem, expect_references=3)
    assert "Əliyev".encode() in verified[0].signed_data


async def test_sign_pdf_b_b_validates_with_pyhanko(bench: Bench) -> None:
    from io import BytesIO

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    page, handle = await signer_selected(bench)
    answer = await page.call("sign.pdf", {"handle": handle, "pdf": b64(minimal_pdf()),
                                          "level": "B-B",
                                          "display": {"documentName": "arayis.pdf"}})
    signed = base64.b64decode(answer["result"]["pdf"])
    reader = PdfFileReader(BytesIO(signed))
    [embedded] = reader.embedded_signatures
    from asn1crypto import x509 as asn1_x509

    def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))

    # The fake token holds no CA certificate: the relying party knows its CAs.
    context = ValidationContext(trust_roots=[asn1(bench.pki.root.cert)],
                                other_certs=[asn1(bench.pki.intermediate.cert)],
                                allow_fetching=False, revocation_mode="soft-fail")
    status = await async_validate_pdf_signature(embedded, context)
    assert status.intact and status.valid and status.trusted
    [pin] = [d for d in bench.answers.shown() if d["dialog"] == "pin"]
    assert pin["document_name"] == "arayis.pdf"


def minimal_pdf() -> bytes:
    """A one-page PDF written by pyHanko's own writer."""
    from io import BytesIO

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PdfFileWriter

    writer = PdfFileWriter()
    page = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject(
            [generic.NumberObject(n) for n in (0, 0, 595, 842)]),
    })
    writer.insert_page(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_store_port_is_all_the_core_needs(tmp_path: Path) -> None:
    """A second store kind (here another fake) needs no change to the core."""
    bench = make_bench(tmp_path)
    other = FakeKeyStore(store_id="second", secret="9999", label="Second")
    bench.stores.by_id[other.store_id] = other
    bench.issue("other", store=other)
    bench.answers.set(consent="always", certificate="first", pin="9999")
    assert "result" in await sign_once(bench)
    assert "sign" in other.calls and "sign" not in bench.store.calls
