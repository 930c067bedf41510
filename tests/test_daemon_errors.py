"""Every error code of the contract, from a running daemon, and what hostile pages get.

Covered elsewhere: 4002 USER_TIMEOUT, 4008 BUSY, 4012 TOO_LARGE (a frame over
``server.max_frame_bytes`` closes the connection with 1009), 4013 RATE_LIMITED and 5000
INTERNAL (``tokens.call_timeout``) in test_daemon_limits.py.

4009 NETWORK is not reachable through the methods served now: only `sign.cms`,
`sign.pdf` and `sign.xml` talk to a TSA, OCSP or CRL service, and they belong to the
signature formats issue; it is tested there, not faked here.

The daemon's token is the fault-injecting module in front of a private copy of the
SoftHSM store, so a test can report the PIN locked.  After each abuse a well-behaved page
on another origin is still served.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import Daemon, assert_served, b64, copy_softhsm, pick, unb64, verify_hash_signature
from testbed import SoftHsmBed
from testbed.native import build_faulty_module

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

GOV = "https://www.e-gov.az"
DIGEST = b64(hashlib.sha256(b"errors").digest())


@pytest.fixture(scope="module")
def agent(softhsm: SoftHsmBed, mode_file: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("errors")
    module = build_faulty_module(tmp / "native")
    conf = copy_softhsm(softhsm.conf, tmp / "softhsm")
    env = {"SOFTHSM2_CONF": str(conf), "FAULTY_PKCS11_TARGET": str(softhsm.module),
           "FAULTY_PKCS11_MODE_FILE": str(mode_file),
           # What the person types on the reader's pad in `pin_pad` mode.
           "FAULTY_PKCS11_PAD_PIN": softhsm.tokens["A"].pin}
    daemon = Daemon(home=tmp / "home", modules=[module], env=env).start()
    yield daemon
    mode_file.write_text("", encoding="utf-8")
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


def _serial(softhsm: SoftHsmBed, name: str) -> str:
    return f"{softhsm.identity(name).cert.serial_number:X}"


def _pin_a(softhsm: SoftHsmBed) -> str:
    return softhsm.tokens["A"].pin


def _sign_params(handle: str, **extra: object) -> dict[str, object]:
    return {"handle": handle, "hash": DIGEST, "hashAlgorithm": "SHA-256", **extra}


# --- 4001 USER_CANCELLED, and a wrong PIN the page never sees -----------------------------------

async def test_user_cancels_the_picker_and_the_pin_dialog(agent: Daemon,
                                                          softhsm: SoftHsmBed) -> None:
    async with agent.client(GOV) as page:
        agent.set_answers({"certificate": "cancel"})
        cancelled = await page.error("certificates.select", {"purpose": "sign"})
        assert (cancelled.code, cancelled.reason) == (4001, "USER_CANCELLED")
        agent.set_answers({"certificate": {"holder": "Əliyev"}, "pin": "cancel"})
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        cancelled = await page.error("sign.hash", _sign_params(chosen["handle"]))
        assert (cancelled.code, cancelled.reason) == (4001, "USER_CANCELLED")


async def test_wrong_pin_then_right_pin_signs(agent: Daemon, softhsm: SoftHsmBed) -> None:
    wrong = "86420975"
    async with agent.client(GOV, "wss") as page:
        agent.set_answers({"certificate": {"holder": "Əliyev"}})
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        agent.set_answers({"pin": [wrong, _pin_a(softhsm)]})
        mark = agent.transcript_mark()
        reply = await page.response("sign.hash", _sign_params(chosen["handle"]))
    assert "result" in reply and "signature" in reply["result"]
    assert wrong not in json.dumps(reply)
    first, second = agent.transcript(mark)
    assert first["dialog"] == second["dialog"] == "pin"
    assert first["retry"] is None
    # The second dialog says the last PIN was wrong and what the token says now.
    assert second["retry"] is not None and second["retry"]["countLow"] is True
    assert second["retry"]["locked"] is False
    for path in [*agent.home.rglob("*"), agent.transcript_file, agent.log_file]:
        if path.is_file():
            assert wrong.encode() not in path.read_bytes(), path.name


# --- 4003 PERMISSION_DENIED: hostile and look-alike origins ------------------------------------

@pytest.mark.parametrize("origin", ["https://e-gov.az.evil.example", "https://evile-gov.az",
                                    "https://e-gov.az:8443", "https://xn--e-gov-9ua.az"])
async def test_look_alike_origins_get_nothing_that_touches_a_key(
        agent: Daemon, softhsm: SoftHsmBed, origin: str) -> None:
    agent.set_answers({"consent": "deny", "certificate": "first", "pin": "1234"})
    mark = agent.transcript_mark()
    async with agent.client(origin) as page:
        info = await page.call("agent.info")
        assert set(info) == {"name", "version", "protocol"}
        for method, params in (("certificates.select", {"purpose": "sign"}),
                               ("certificates.select", {"purpose": "auth"}),
                               ("sign.hash", _sign_params("h" + "A" * 24)),
                               ("sign.hashes", {"handle": "hAAAA", "hashes": [DIGEST],
                                                "hashAlgorithm": "SHA-256"}),
                               ("auth.login", {"challenge": "B" * 43}),
                               ("tokens.subscribe", None),
                               ("certificates.list", {"purpose": "auth"})):
            denied = await page.error(method, params)
            assert (denied.code, denied.reason) == (4003, "PERMISSION_DENIED"), method
    dialogs = agent.transcript(mark)
    # The user was asked once, said no, and was never shown a certificate or a PIN.
    assert [d["dialog"] for d in dialogs] == ["consent"]
    assert dialogs[0]["origin"] == origin
    await assert_served(agent, pin=_pin_a(softhsm))


async def test_default_origin_is_served_without_a_consent_dialog(agent: Daemon,
                                                                 softhsm: SoftHsmBed) -> None:
    agent.set_answers({"consent": "deny", "certificate": {"holder": "Əliyev"},
                       "pin": _pin_a(softhsm)})
    mark = agent.transcript_mark()
    async with agent.client("https://www.e-gov.az") as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        await page.call("sign.hash", _sign_params(chosen["handle"]))
    assert [d["dialog"] for d in agent.transcript(mark)] == ["certificate", "pin"]


# --- 4004 NO_CERTIFICATE ------------------------------------------------------------------------

async def test_filter_matching_nothing_is_no_certificate_after_an_empty_picker(
        agent: Daemon) -> None:
    agent.set_answers({"certificate": "first"})
    mark = agent.transcript_mark()
    async with agent.client(GOV) as page:
        for flt in ({"issuer": "No Such CA"}, {"subjectSerialNumber": "AZE-0000000"},
                    {"extendedKeyUsage": ["1.3.6.1.5.5.7.3.3"]}):
            missing = await page.error("certificates.select", {"purpose": "sign",
                                                               "filter": flt})
            assert (missing.code, missing.reason) == (4004, "NO_CERTIFICATE")
    # Each answer came after the user saw a picker saying nothing matches, and closed it:
    # a page cannot test what certificates exist behind the user's back.
    assert [(d["dialog"], d["choices"], d["filtered"]) for d in agent.transcript(mark)] == [
        ("certificate", [], True)] * 3


# --- 4005 TOKEN_NOT_PRESENT ---------------------------------------------------------------------

async def test_token_removed_after_select(softhsm: SoftHsmBed, tmp_path: Path) -> None:
    conf = copy_softhsm(softhsm.conf, tmp_path / "softhsm")
    daemon = Daemon(home=tmp_path / "home", modules=[softhsm.module],
                    env={"SOFTHSM2_CONF": str(conf)}).start()
    try:
        daemon.set_answers({"certificate": {"holder": "Иванов"},
                            "pin": softhsm.tokens["B"].pin})
        async with daemon.client(GOV) as page:
            chosen = await page.call("certificates.select", {"purpose": "auth"})
            assert chosen["token"]["label"] == softhsm.tokens["B"].label
            chosen = await page.call("certificates.select", {"purpose": "sign"})
            assert chosen["token"]["label"] == softhsm.tokens["B"].label
            # Pull token B: SoftHSM keeps it in a directory named after its serial.
            tail = softhsm.tokens["B"].serial[-12:]
            [token_dir] = [d for d in (tmp_path / "softhsm" / "tokens").iterdir()
                           if d.name.replace("-", "").endswith(tail)]
            shutil.move(token_dir, tmp_path / "pulled-out")
            gone = await page.error("sign.hash", _sign_params(chosen["handle"]))
            assert (gone.code, gone.reason) == (4005, "TOKEN_NOT_PRESENT")
        await assert_served(daemon, pin=_pin_a(softhsm))  # token A still works
    finally:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]


# --- 4006 PIN_LOCKED ----------------------------------------------------------------------------

async def test_locked_pin(agent: Daemon, softhsm: SoftHsmBed, mode_file: Path) -> None:
    agent.set_answers({"certificate": {"holder": "Əliyev"}, "pin": _pin_a(softhsm)})
    async with agent.client(GOV) as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        mark = agent.transcript_mark()
        mode_file.write_text("locked", encoding="utf-8")
        try:
            locked = await page.error("sign.hash", _sign_params(chosen["handle"]))
        finally:
            mode_file.write_text("", encoding="utf-8")
    assert (locked.code, locked.reason) == (4006, "PIN_LOCKED")
    assert locked.data["unlock"] == "PUK"
    # The user is told; no PIN is asked for a locked token.
    assert [d["dialog"] for d in agent.transcript(mark)] == ["pin_locked"]
    await assert_served(agent, pin=_pin_a(softhsm))


# --- a PIN pad: no PIN through the agent, the reader's prompt closes after the login -------------

async def test_pin_pad_login_signs_and_closes_the_readers_prompt(
        agent: Daemon, softhsm: SoftHsmBed, mode_file: Path) -> None:
    agent.set_answers({"certificate": {"holder": "Əliyev"}, "pin": "pinpad"})
    async with agent.client(GOV) as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        mark = agent.transcript_mark()
        mode_file.write_text("pin_pad", encoding="utf-8")
        try:
            signed = await page.call("sign.hash", _sign_params(chosen["handle"]))
        finally:
            mode_file.write_text("", encoding="utf-8")
    verify_hash_signature(signed["certificate"], hashlib.sha256(b"errors").digest(),
                          signed["signature"], scheme=signed["scheme"],
                          hash_algorithm="SHA-256")
    assert [d["dialog"] for d in agent.transcript(mark)] == ["pin", "pin_pad_finished"]


# --- 4007 CERTIFICATE_INVALID -------------------------------------------------------------------

@pytest.mark.parametrize(("identity", "detail"), [("expired", "EXPIRED"),
                                                  ("not_yet_valid", "NOT_YET_VALID")])
async def test_signing_with_an_invalid_certificate(agent: Daemon, softhsm: SoftHsmBed,
                                                   identity: str, detail: str) -> None:
    async with agent.client(GOV) as page:
        chosen = await pick(agent, page, _serial(softhsm, identity), pin=_pin_a(softhsm),
                            filter={"includeExpired": True})
        mark = agent.transcript_mark()
        invalid = await page.error("sign.hash", _sign_params(chosen["handle"]))
    assert (invalid.code, invalid.reason) == (4007, "CERTIFICATE_INVALID")
    assert invalid.data["detail"] == detail
    assert agent.transcript(mark) == []  # refused before any PIN is asked


# --- 4010 UNSUPPORTED ---------------------------------------------------------------------------

async def test_scheme_that_does_not_fit_the_key(agent: Daemon, softhsm: SoftHsmBed) -> None:
    async with agent.client(GOV) as page:
        rsa = await pick(agent, page, _serial(softhsm, "rsa_sign"), pin=_pin_a(softhsm))
        ec = await pick(agent, page, _serial(softhsm, "ec_sign"), pin=_pin_a(softhsm))
        for handle, scheme in ((rsa["handle"], "ECDSA"), (ec["handle"], "RSASSA-PSS"),
                               (ec["handle"], "RSASSA-PKCS1-v1_5")):
            refused = await page.error("sign.hash", _sign_params(handle, scheme=scheme))
            assert (refused.code, refused.reason) == (4010, "UNSUPPORTED"), scheme


# --- 4011 INVALID_HANDLE ------------------------------------------------------------------------

async def test_unknown_foreign_and_wrong_purpose_handles(agent: Daemon,
                                                         softhsm: SoftHsmBed) -> None:
    agent.set_answers({"certificate": {"holder": "Əliyev"}, "pin": _pin_a(softhsm)})
    async with agent.client(GOV) as page, agent.client(GOV, "wss") as other:
        unknown = await page.error("sign.hash", _sign_params("hNoSuchHandleAtAll123456"))
        assert (unknown.code, unknown.reason) == (4011, "INVALID_HANDLE")
        auth = await page.call("certificates.select", {"purpose": "auth"})
        assert unb64(auth["certificate"]) == softhsm.identity("rsa_auth").der
        # An authentication key is never usable for signing.
        for method, params in (("sign.hash", _sign_params(auth["handle"])),
                               ("sign.hashes", {"handle": auth["handle"], "hashes": [DIGEST],
                                                "hashAlgorithm": "SHA-256"})):
            misused = await page.error(method, params)
            assert (misused.code, misused.reason) == (4011, "INVALID_HANDLE"), method
        # A handle is valid on the connection that got it only.
        signing = await page.call("certificates.select", {"purpose": "sign"})
        foreign = await other.error("sign.hash", _sign_params(signing["handle"]))
        assert (foreign.code, foreign.reason) == (4011, "INVALID_HANDLE")


# --- JSON-RPC request errors, binary frames ------------------------------------------------------

async def test_request_errors(agent: Daemon, softhsm: SoftHsmBed) -> None:
    async with agent.client("https://garbage.example") as page:
        await page.send_raw("{not json")
        parse = await page.next_unmatched()
        assert parse["id"] is None and parse["error"]["code"] == -32700
        assert parse["error"]["data"]["reason"] == "PARSE_ERROR"

        await page.send_raw(json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "agent.info"}]))
        batch = await page.next_unmatched()
        assert batch["error"]["code"] == -32600
        assert batch["error"]["data"]["reason"] == "INVALID_REQUEST"

        await page.send_raw('{"jsonrpc": "2.0", "id": 7, "id": 8, "method": "agent.info"}')
        duplicate = await page.next_unmatched()
        assert duplicate["error"]["code"] == -32600

        unknown = await page.error("sign.everything", {})
        assert (unknown.code, unknown.reason) == (-32601, "METHOD_NOT_FOUND")

        short_hash = await page.error("sign.hash", {"handle": "h1", "hashAlgorithm": "SHA-256",
                                                    "hash": b64(b"\0" * 20)})
        assert (short_hash.code, short_hash.reason) == (-32602, "INVALID_PARAMS")
        assert [f["field"] for f in short_hash.data["fields"]] == ["hash"]
        typo = await page.error("sign.hash", {"handle": "h1", "hash": DIGEST,
                                              "hashAlgoritm": "SHA-256"})
        assert typo.code == -32602
        assert (await page.call("agent.info"))["protocol"] == 1  # the connection lives on
    await assert_served(agent, pin=_pin_a(softhsm))


async def test_binary_frame_closes_the_connection(agent: Daemon, softhsm: SoftHsmBed) -> None:
    # Binary frames carry uploads (document.upload): one nobody announced is a protocol
    # violation (tests/test_document_upload*.py).
    async with agent.client("https://binary.example") as page:
        await page.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"agent.info"}')
        code, reason = await page.closed()
    assert (code, reason) == (1008, "binary frame without an upload waiting for it")
    await assert_served(agent, pin=_pin_a(softhsm))
