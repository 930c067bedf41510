"""The ATR table (built-in and from the config) and what the doctor says about cards:
a known one by name and module, an unknown one with a report ready to send, and a
stopped smart card service."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testbed import SoftHsmBed
from vcard import READER_NAME, Pcscd, VirtualCard

from agent import doctor
from agent.config import AtrRule, Config, PcscConfig, TokensConfig
from agent.keystores.pkcs11.modules import KNOWN_MODULES
from agent.pcsc.atr import AtrDatabase, AtrSyntaxError, entry_from, parse_atr
from agent.pcsc.probe import probe_pcsc
from agent.pcsc.report import unknown_card_report

# Real ATRs (pcsc-tools' smartcard_list.txt) → the product the table must name.
REAL_CARDS = {
    "3B 9F 95 81 31 FE 9F 00 66 46 53 05 20 03 25 71 DF 00 00 03 90 00 96": "ePass2003",
    "3B 9F 96 81 31 FE 45 80 67 55 45 4B 41 45 12 93 31 80 73 B3 A1 80 6B": "AKİS",
    "3B BA 11 00 81 31 FE 4D 55 45 4B 41 45 20 56 31 2E 30 AE": "AKİS",
    "3B 8B 01 52 75 74 6F 6B 65 6E 20 45 43 50 A0": "Rutoken ECP",
    "3B 8B 01 52 75 74 6F 6B 65 6E 6C 69 74 65 C2": "Rutoken Lite",
    "3B 6F 00 FF 00 56 72 75 54 6F 6B 6E 73 30 20 00 00 90 00": "Rutoken S",
    "3B D5 18 00 81 31 3A 7D 80 73 C8 21 10 30": "eToken 5110",
    "3B FF 96 00 00 81 31 FE 43 80 31 80 65 B0 84 56 51 10 12 01 78 82 90 00 6A":
        "eToken 5300",
    "3B DC 18 FF 81 91 FE 1F C3 80 73 C8 21 13 66 01 06 11 59 00 01 28": "JaCarta",
    "3B FB 13 00 00 81 31 FE 45 63 68 61 72 69 73 6D 61 74 65 78 84": "Charismathics",
    "3B 7F 96 00 00 80 31 80 65 B0 85 03 00 EF 12 0F FE 82 90 00": "IDPrime",
    "3B FF 96 00 00 81 31 FE 43 80 31 80 65 B0 85 59 56 FB 12 0F FC 82 90 00 02": "IDPrime",
    "3B FF 18 00 00 81 31 FE 55 00 6B 02 09 05 03 01 01 01 43 4E 53 10 31 80 64": "Bit4id",
    "3B D5 18 FF 81 91 FE 1F C3 80 73 C8 21 13 09": "Athena",
}
UNKNOWN_ATR = bytes.fromhex("3B8880014D5A41544553540A")


@pytest.mark.parametrize(("atr", "product"), REAL_CARDS.items())
def test_builtin_table_names_the_tokens_users_hold(atr: str, product: str) -> None:
    db = AtrDatabase.load()
    entry = db.match(parse_atr(atr)[0])
    assert entry is not None and product in entry.name
    linux = [str(p) for p in db.module_paths(entry, "linux")]
    # The vendor module first (paths from KNOWN_MODULES, not repeated), OpenSC last.
    assert linux[-1] in KNOWN_MODULES["linux"]["OpenSC"]
    for os_name in ("linux", "windows", "darwin"):
        assert db.module_paths(entry, os_name), os_name


def test_every_builtin_module_reference_is_a_vendor_or_a_full_path() -> None:
    db = AtrDatabase.load()
    for entry in db.entries:
        for os_name in ("linux", "windows", "darwin"):
            for ref in entry.module_refs(os_name):
                full_path = ref.startswith("/") or ref[1:3] == ":\\"
                assert ref in KNOWN_MODULES[os_name] or full_path, (entry.name, os_name, ref)


def test_wildcards_masks_and_lengths() -> None:
    wild = entry_from({"atr": "3B .. 81", "name": "w"}, "test")
    assert wild.matches(bytes([0x3B, 0x42, 0x81]))
    assert not wild.matches(bytes([0x3B, 0x42, 0x82]))
    assert not wild.matches(bytes([0x3B, 0x42, 0x81, 0x00]))  # length counts
    masked = entry_from({"atr": "3B:80", "mask": "FF F0", "name": "m"}, "test")
    assert masked.matches(bytes([0x3B, 0x8F])) and not masked.matches(bytes([0x3B, 0x9F]))
    assert parse_atr("3b8b01") == (bytes([0x3B, 0x8B, 0x01]), b"\xff\xff\xff")
    for bad in ("3B ZZ", "", "3B 123"):
        with pytest.raises(AtrSyntaxError):
            parse_atr(bad)
    with pytest.raises(AtrSyntaxError):
        entry_from({"atr": "3B 80", "mask": "FF", "name": "short mask"}, "test")


def test_config_entries_come_first_and_may_name_paths(tmp_path: Path) -> None:
    module = tmp_path / "libvendor.so"
    rutoken = "3B 8B 01 52 75 74 6F 6B 65 6E 20 45 43 50 A0"
    config = Config(pcsc=PcscConfig(atr=[
        AtrRule(atr=rutoken, name="Our branded Rutoken", modules=[str(module)]),
        AtrRule(atr=UNKNOWN_ATR.hex(), name="In-house card", modules=["Rutoken"])]))
    db = AtrDatabase.load(rule.model_dump() for rule in config.pcsc.atr)
    branded = db.match(parse_atr(rutoken)[0])
    assert branded is not None and branded.name == "Our branded Rutoken"
    assert branded.source == "config" and db.module_paths(branded, "linux")[0] == module
    in_house = db.match(UNKNOWN_ATR)
    assert in_house is not None
    assert str(db.module_paths(in_house, "windows")[0]) == \
        KNOWN_MODULES["windows"]["Rutoken"][0]


def test_config_refuses_a_malformed_atr() -> None:
    with pytest.raises(ValueError, match="not an ATR byte"):
        Config.model_validate({"pcsc": {"atr": [{"atr": "3B GG", "name": "x"}]}})


def test_unknown_card_report_has_what_support_needs() -> None:
    text = unknown_card_report("Reader 1", UNKNOWN_ATR, ["/usr/lib/a.so", "/usr/lib/b.so"],
                               os_name="Linux 6.1 (x86_64)")
    assert "3B 88 80 01 4D 5A 41 54 45 53 54 0A" in text
    assert "Reader 1" in text and "Linux 6.1 (x86_64)" in text
    assert "/usr/lib/a.so" in text and "/usr/lib/b.so" in text


# --- the doctor, against a real pcscd ------------------------------------------------------

@pytest.fixture
def pcscd(tmp_path: Path) -> Iterator[Pcscd]:
    daemon = Pcscd(tmp_path / "pcscd").start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _insert_and_wait(atr: bytes, port: int) -> VirtualCard:
    """Insert, then wait until pcscd reports the card (its polling is asynchronous)."""
    card = VirtualCard(atr, port).insert()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        readers = probe_pcsc().readers
        if any(r.name == READER_NAME and r.card_present for r in readers):
            return card
        time.sleep(0.05)
    card.remove()
    raise AssertionError("pcscd never reported the virtual card")


def _doctor(config: Config) -> tuple[dict[str, Any], str]:
    report = doctor.collect(config)
    out = io.StringIO()
    doctor.render_text(report, out)
    return report, out.getvalue()


@pytest.mark.pcscd
@pytest.mark.softhsm
def test_doctor_names_an_unknown_card_with_a_report(pcscd: Pcscd, softhsm: SoftHsmBed) -> None:
    card = _insert_and_wait(UNKNOWN_ATR, pcscd.port)
    try:
        config = Config(tokens=TokensConfig(modules=[softhsm.module], known_modules=False))
        report, text = _doctor(config)
    finally:
        card.remove()
    pcsc = report["pcsc"]
    assert pcsc["service"] == "running"
    [row] = [c for c in pcsc["cards"] if c["reader"] == READER_NAME]
    assert row["known"] is False and row["product"] is None
    assert "3B 88 80 01 4D 5A 41 54 45 53 54 0A" in row["report"]
    assert READER_NAME in row["report"] and str(softhsm.module) in row["report"]
    assert "UNKNOWN card" in text and row["report"].splitlines()[1] in text


@pytest.mark.pcscd
@pytest.mark.softhsm
def test_doctor_names_a_known_card_and_its_module(pcscd: Pcscd, softhsm: SoftHsmBed) -> None:
    card = _insert_and_wait(UNKNOWN_ATR, pcscd.port)
    try:
        config = Config(
            tokens=TokensConfig(modules=[softhsm.module], known_modules=False),
            pcsc=PcscConfig(atr=[AtrRule(atr=UNKNOWN_ATR.hex(" "), name="Test card",
                                         modules=[str(softhsm.module)])]))
        report, text = _doctor(config)
    finally:
        card.remove()
    [row] = [c for c in report["pcsc"]["cards"] if c["reader"] == READER_NAME]
    assert row["known"] is True and row["product"] == "Test card"
    assert row["modules"] == [str(softhsm.module)] and row["report"] is None
    assert f"Test card — {softhsm.module}" in text


@pytest.mark.pcscd
def test_doctor_says_the_service_is_not_running(tmp_path: Path) -> None:
    pcscd = Pcscd(tmp_path)  # configured, never started: fails if another pcscd serves
    pcscd.start()
    pcscd.stop()
    report, text = _doctor(Config(tokens=TokensConfig(known_modules=False)))
    assert report["pcsc"]["service"] == "not-running"
    assert "The smart card service is not running" in text
