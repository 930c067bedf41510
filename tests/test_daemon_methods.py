"""Every method of the contract, against a running daemon over real ``ws`` and ``wss``
connections, with SoftHSM tokens and the scripted UI.

One daemon serves the module (a private copy of the SoftHSM store, a system policy that
grants ``list`` to an intranet origin); the token-change test runs its own daemon, since
it removes a token for good (SoftHSM does not see a token directory come back while it
is loaded).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from authverify import TokenRejected, verify_login_token
from daemon import Daemon, b64, copy_softhsm, pick, unb64, verify_hash_signature
from testbed import Pkcs12Bed, SoftHsmBed

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

INTRANET = "https://intranet.corp.az"  # the system policy grants it `list` (and the rest)
GOV = "https://www.e-gov.az"  # granted by the shipped defaults: no consent dialog
PLAIN = "https://portal.example"  # well-formed, listed nowhere
TRANSPORTS = ["ws", "wss"]
ALL_METHODS = {"agent.info", "certificates.select", "certificates.list", "sign.hash",
               "sign.hashes", "auth.login", "tokens.subscribe"}
POLICY = {"allow": [{"origin": INTRANET,
                     "permissions": ["select", "sign", "auth", "list", "tokens"]}]}


@pytest.fixture(scope="module")
def agent(softhsm: SoftHsmBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("methods")
    conf = copy_softhsm(softhsm.conf, tmp / "softhsm")
    daemon = Daemon(home=tmp / "home", modules=[softhsm.module],
                    env={"SOFTHSM2_CONF": str(conf)}, policy=POLICY).start()
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


def _digest(label: str, size: int = 32) -> bytes:
    return {32: hashlib.sha256, 48: hashlib.sha384, 64: hashlib.sha512}[size](
        label.encode()).digest()


async def _select(agent: Daemon, softhsm: SoftHsmBed, origin: str, transport: str,
                  identity: str):
    """An open page and the select result for the bed's ``identity``."""
    token = softhsm.objects[identity].token
    page = agent.client(origin, transport)
    await page.__aenter__()
    chosen = await pick(agent, page, _serial(softhsm, identity), pin=token.pin,
                        purpose=softhsm.identity(identity).purpose)
    return page, chosen


# --- agent.info ---------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_agent_info_is_minimal_for_an_ungranted_origin(agent: Daemon,
                                                             transport: str) -> None:
    async with agent.client(PLAIN, transport) as page:
        info = await page.call("agent.info")
    assert set(info) == {"name", "version", "protocol"}
    assert info["name"] == "imza-agent" and info["protocol"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_agent_info_is_full_for_a_granted_origin(agent: Daemon, transport: str) -> None:
    async with agent.client(GOV, transport) as page:
        info = await page.call("agent.info")
    assert info["origin"] == GOV and info["transport"] == transport
    assert set(info["features"]) >= ALL_METHODS
    assert isinstance(info["formats"], dict)


# --- certificates.select ------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_select_returns_the_certificate_the_user_picked(
        agent: Daemon, softhsm: SoftHsmBed, transport: str) -> None:
    agent.set_answers({"certificate": {"holder": "Əliyev"}})
    mark = agent.transcript_mark()
    async with agent.client(GOV, transport) as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
    assert unb64(chosen["certificate"]) == softhsm.identity("rsa_sign").der
    assert chosen["token"]["label"] == softhsm.tokens["A"].label
    assert chosen["token"]["serial"] == softhsm.tokens["A"].serial
    assert {"scheme": "RSASSA-PSS", "hash": "SHA-256"} in chosen["algorithms"]
    assert chosen["handle"]
    [picker] = agent.transcript(mark)
    assert picker["dialog"] == "certificate" and picker["origin"] == GOV
    assert picker["purpose"] == "sign"
    # Every signing certificate is shown, the invalid ones greyed; no authentication key.
    shown = {c["serial_hex"]: c for c in picker["choices"]}
    signing = ("rsa_sign", "ec_sign", "expired", "not_yet_valid", "rsa_sign_always_auth",
               "ec_sign_mismatched_id")
    assert set(shown) == {_serial(softhsm, n) for n in signing}
    assert {k for k, c in shown.items() if not c["usable"]} == {
        _serial(softhsm, "expired"), _serial(softhsm, "not_yet_valid")}


def _serial(softhsm: SoftHsmBed, name: str) -> str:
    return f"{softhsm.identity(name).cert.serial_number:X}"


# --- sign.hash ----------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sign_hash_rsa_pkcs1_and_pss(agent: Daemon, softhsm: SoftHsmBed,
                                           transport: str) -> None:
    page, chosen = await _select(agent, softhsm, GOV, transport, "rsa_sign")
    assert unb64(chosen["certificate"]) == softhsm.identity("rsa_sign").der
    mark = agent.transcript_mark()
    try:
        for scheme, hash_alg, size in (("RSASSA-PKCS1-v1_5", "SHA-256", 32),
                                       ("RSASSA-PSS", "SHA-384", 48),
                                       ("RSASSA-PSS", "SHA-512", 64)):
            digest = _digest(scheme + hash_alg, size)
            signed = await page.call("sign.hash", {
                "handle": chosen["handle"], "hash": b64(digest), "hashAlgorithm": hash_alg,
                "scheme": scheme, "display": {"text": "Invoice 117", "documentName": "i.pdf"}})
            assert signed["scheme"] == scheme and signed["hashAlgorithm"] == hash_alg
            assert signed["certificate"] == chosen["certificate"]
            verify_hash_signature(signed["certificate"], digest, signed["signature"],
                                  scheme=scheme, hash_algorithm=hash_alg)
    finally:
        await page.__aexit__()
    dialogs = agent.transcript(mark)
    assert [d["dialog"] for d in dialogs] == ["pin"] * 3
    assert all(d["origin"] == GOV and d["count"] == 1 and d["display_text"] == "Invoice 117"
               and d["document_name"] == "i.pdf" and d["retry"] is None for d in dialogs)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sign_hash_ecdsa_der_and_raw(agent: Daemon, softhsm: SoftHsmBed,
                                           transport: str) -> None:
    page, chosen = await _select(agent, softhsm, GOV, transport, "ec_sign")
    try:
        for encoding in ("der", "raw"):
            digest = _digest("ecdsa " + encoding)
            signed = await page.call("sign.hash", {
                "handle": chosen["handle"], "hash": b64(digest), "hashAlgorithm": "SHA-256",
                "ecdsaEncoding": encoding})
            assert signed["scheme"] == "ECDSA"  # the default for an EC key
            raw = unb64(signed["signature"])
            if encoding == "raw":
                assert len(raw) == 64
            else:
                assert raw[0] == 0x30  # DER SEQUENCE{r, s}
            verify_hash_signature(signed["certificate"], digest, signed["signature"],
                                  scheme="ECDSA", hash_algorithm="SHA-256",
                                  encoding=encoding)
    finally:
        await page.__aexit__()


# --- sign.hashes --------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sign_hashes_one_pin_dialog_for_the_batch(agent: Daemon, softhsm: SoftHsmBed,
                                                        transport: str) -> None:
    page, chosen = await _select(agent, softhsm, GOV, transport, "ec_sign")
    digests = [_digest(f"order {i}") for i in range(50)]
    mark = agent.transcript_mark()
    try:
        signed = await page.call("sign.hashes", {
            "handle": chosen["handle"], "hashes": [b64(d) for d in digests],
            "hashAlgorithm": "SHA-256", "display": {"text": "50 payment orders"}})
    finally:
        await page.__aexit__()
    assert len(signed["signatures"]) == 50
    assert signed["scheme"] == "ECDSA" and signed["hashAlgorithm"] == "SHA-256"
    for digest, signature in zip(digests, signed["signatures"], strict=True):
        verify_hash_signature(signed["certificate"], digest, signature, scheme="ECDSA",
                              hash_algorithm="SHA-256")
    [dialog] = agent.transcript(mark)
    assert dialog["dialog"] == "pin" and dialog["count"] == 50
    assert dialog["display_text"] == "50 payment orders"


# --- auth.login ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("transport", "holder", "token", "identity", "algorithm"), [
    ("ws", "Əliyev", "A", "rsa_auth", "RS256"),
    ("wss", "Иванов", "B", "ec_auth", "ES256"),
])
async def test_auth_login_token_verifies_for_this_origin_only(
        agent: Daemon, softhsm: SoftHsmBed, transport: str, holder: str, token: str,
        identity: str, algorithm: str) -> None:
    challenge = secrets.token_urlsafe(32)  # 43 characters, no padding
    agent.set_answers({"certificate": {"holder": holder}, "pin": softhsm.tokens[token].pin})
    mark = agent.transcript_mark()
    async with agent.client(GOV, transport) as page:
        result = await page.call("auth.login", {"challenge": challenge})
    login = result["token"]
    assert login["algorithm"] == algorithm
    root, intermediate = softhsm.pki.root.cert, softhsm.pki.intermediate.cert
    cert = verify_login_token(login, origin=GOV, challenge=challenge, root=root,
                              intermediates=[intermediate])
    assert cert == softhsm.identity(identity).cert
    for origin, other_challenge in (("https://evil.example", challenge),
                                    ("https://e-gov.az", challenge),
                                    (GOV, secrets.token_urlsafe(32))):
        with pytest.raises(TokenRejected):
            verify_login_token(login, origin=origin, challenge=other_challenge, root=root,
                               intermediates=[intermediate])
    picker, pin = agent.transcript(mark)
    assert picker["dialog"] == "certificate" and picker["purpose"] == "auth"
    assert pin["dialog"] == "pin" and pin["action"] == "auth" and pin["origin"] == GOV


# --- certificates.list --------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_is_denied_to_a_plain_origin_without_a_dialog(agent: Daemon,
                                                                 transport: str) -> None:
    agent.set_answers({"consent": "always", "certificate": "first"})
    mark = agent.transcript_mark()
    for origin in (PLAIN, GOV):  # even the defaults do not grant `list`
        async with agent.client(origin, transport) as page:
            denied = await page.error("certificates.list", {"purpose": "sign"})
        assert denied.code == 4003 and denied.reason == "PERMISSION_DENIED"
    assert agent.transcript(mark) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_list_for_a_policy_granted_origin(agent: Daemon, softhsm: SoftHsmBed,
                                                transport: str) -> None:
    mark = agent.transcript_mark()
    agent.set_answers({"pin": softhsm.tokens["B"].pin})
    async with agent.client(INTRANET, transport) as page:
        listed = await page.call("certificates.list", {"purpose": "sign"})
        everything = await page.call("certificates.list",
                                     {"purpose": "sign", "filter": {"includeExpired": True}})
        auth = await page.call("certificates.list", {"purpose": "auth"})
        found = {unb64(c["certificate"]): c for c in listed["certificates"]}
        # The handles work: sign with one of them.
        entry = found[softhsm.identity("rsa_sign_always_auth").der]
        digest = _digest("listed")
        signed = await page.call("sign.hash", {"handle": entry["handle"], "hash": b64(digest),
                                               "hashAlgorithm": "SHA-256"})
        verify_hash_signature(signed["certificate"], digest, signed["signature"],
                              scheme="RSASSA-PKCS1-v1_5", hash_algorithm="SHA-256")
    valid_signing = {"rsa_sign", "ec_sign", "rsa_sign_always_auth", "ec_sign_mismatched_id"}
    assert set(found) == {softhsm.identity(n).der for n in valid_signing}
    assert {unb64(c["certificate"]) for c in everything["certificates"]} == {
        softhsm.identity(n).der for n in valid_signing | {"expired", "not_yet_valid"}}
    assert {unb64(c["certificate"]) for c in auth["certificates"]} == {
        softhsm.identity("rsa_auth").der, softhsm.identity("ec_auth").der}
    assert [d["dialog"] for d in agent.transcript(mark)] == ["pin"]  # no picker, no consent


# --- tokens.subscribe ---------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tokens_subscribe_lists_the_tokens(agent: Daemon, softhsm: SoftHsmBed,
                                                 transport: str) -> None:
    async with agent.client(GOV, transport) as page:
        current = await page.call("tokens.subscribe")
    assert sorted(current["tokens"], key=lambda t: t["label"]) == sorted(
        [{"label": t.label, "serial": t.serial, "present": True}
         for t in softhsm.tokens.values()], key=lambda t: t["label"])


async def _next_change(page, timeout: float = 15) -> dict:
    message = await asyncio.wait_for(page.notifications.get(), timeout)
    assert message["method"] == "tokens.changed" and "id" not in message
    return message["params"]


async def test_tokens_changed_on_insertion_and_removal(
        softhsm: SoftHsmBed, pkcs12_file: Pkcs12Bed, tmp_path: Path) -> None:
    """A PKCS#12 file appearing is an insertion; a SoftHSM token directory leaving is a
    removal (SoftHSM cannot show a token that appears while it is loaded)."""
    conf = copy_softhsm(softhsm.conf, tmp_path / "softhsm")
    p12 = tmp_path / "later" / "citizen.p12"  # configured, not there yet
    p12.parent.mkdir()
    daemon = Daemon(home=tmp_path / "home", modules=[softhsm.module],
                    env={"SOFTHSM2_CONF": str(conf)},
                    config={"tokens": {"poll_interval": 0.1,
                                       "pkcs12": [{"path": str(p12), "label": "Citizen"}]}},
                    ).start()
    try:
        async with daemon.client(GOV, "wss") as page:
            before = (await page.call("tokens.subscribe"))["tokens"]
            assert {t["label"] for t in before} == {softhsm.tokens["A"].label,
                                                    softhsm.tokens["B"].label}
            shutil.copyfile(pkcs12_file.path, p12.with_suffix(".tmp"))
            p12.with_suffix(".tmp").rename(p12)  # appears whole, as a plugged-in token would
            inserted = (await _next_change(page))["tokens"]
            [citizen] = [t for t in inserted if t["label"] == "Citizen"]
            assert citizen["present"] is True
            assert [t for t in inserted if t is not citizen] == before

            token_dir = _token_dir(tmp_path / "softhsm" / "tokens", softhsm.tokens["B"].serial)
            shutil.move(token_dir, tmp_path / "pulled-out")
            removed = (await _next_change(page))["tokens"]
            assert removed == [t for t in inserted
                               if t["label"] != softhsm.tokens["B"].label]
            assert page.notifications.empty()  # nothing told twice, nothing without a change
    finally:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]


def _token_dir(tokens: Path, serial: str) -> Path:
    # SoftHSM names a token's directory after its UUID, whose tail is the serial.
    tail = re.sub("[^0-9a-f]", "", serial.lower())
    [found] = [d for d in tokens.iterdir()
               if re.sub("[^0-9a-f]", "", d.name.lower()).endswith(tail)]
    return found


# --- the journal, and where PINs must never be ----------------------------------------------------

def test_journal_is_intact_and_no_pin_is_written_anywhere(agent: Daemon,
                                                         softhsm: SoftHsmBed) -> None:
    done = agent.journal_verify()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "journal intact" in done.stdout
    journal = (agent.home / "journal.jsonl").read_text(encoding="utf-8")
    assert "sign.hashes" in journal and "auth.login" in journal
    pins = [t.pin for t in softhsm.tokens.values()]
    files = [p for p in agent.home.rglob("*") if p.is_file()]
    files += [agent.transcript_file, agent.log_file]
    for path in files:
        text = path.read_bytes().decode("latin-1")
        for pin in pins:
            # PINs are short digit strings: a hex digest or base64 may contain them
            # by chance, so look for them as a whole token.
            pattern = rf"(?<![0-9A-Za-z+/]){re.escape(pin)}(?![0-9A-Za-z+/=])"
            assert re.search(pattern, text) is None, f"a PIN appears in {path.name}"
