"""The store manager: PKCS#11 modules, PKCS#12 files and the demo behind one listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from testbed import Pkcs12Bed, SoftHsmBed

from agent.config import Config, DemoConfig, Pkcs12File, TokensConfig
from agent.errors import InvalidHandle
from agent.keystores.base import StoreKind
from agent.keystores.demo import DemoStore, ensure_demo_identity
from agent.keystores.manager import ManagedStore, StoreManager, demo_wanted, reader_key
from agent.keystores.pkcs11 import Pkcs11Store


def config(*, modules: list[Path] = (), p12: list[Path] = (), known: bool = False,
           demo: str = "auto") -> Config:
    return Config(tokens=TokensConfig(modules=list(modules), known_modules=known,
                                      pkcs12=[Pkcs12File(path=p) for p in p12]),
                  demo=DemoConfig(enabled=demo))


def holder(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.mark.softhsm
async def test_softhsm_and_p12_listed_together(agent_home: Path, softhsm: SoftHsmBed,
                                               pkcs12_file: Pkcs12Bed) -> None:
    manager = StoreManager.from_config(
        config(modules=[softhsm.module], p12=[pkcs12_file.path]), env=softhsm.env)
    try:
        assert manager.demo_store is None and manager.demo_active is False
        assert not (agent_home / "demo").exists()
        tokens = await manager.tokens()
        labels = {t.label for t in tokens}
        assert {softhsm.tokens["A"].label, softhsm.tokens["B"].label,
                pkcs12_file.path.name} <= labels
        assert {t.kind for t in tokens} == {StoreKind.PKCS11, StoreKind.PKCS12}
        assert not any(t.demo for t in tokens)
        assert manager.problems == []

        entries = await manager.certificates()
        holders = {holder(e.der) for e in entries}
        assert {"Əliyev Rəşad", "ŞİMŞEK Gülşen", "Иванов Пётр"} <= holders
        assert not any(e.token.demo for e in entries)
        for t in tokens:
            assert manager.store(t.store_id).store_id == t.store_id
        with pytest.raises(InvalidHandle):
            manager.store("pkcs11:/no/such/module.so")
    finally:
        await manager.close()


@pytest.mark.softhsm
async def test_failing_store_is_a_problem_not_an_exception(
        agent_home: Path, softhsm: SoftHsmBed, tmp_path: Path) -> None:
    not_a_module = tmp_path / "libnot-pkcs11.so"
    not_a_module.write_bytes(b"not a shared library")
    missing = tmp_path / "missing.so"
    manager = StoreManager.from_config(
        config(modules=[softhsm.module, not_a_module, missing]), env=softhsm.env)
    try:
        tokens = await manager.tokens()
        assert softhsm.tokens["A"].label in {t.label for t in tokens}
        by_source = {p.source: p for p in manager.problems}
        assert str(missing) in by_source
        assert by_source[str(missing)].reason == "MODULE_NOT_FOUND"
        assert str(not_a_module) in by_source
        assert by_source[str(not_a_module)].message
        # The listing of certificates survives the broken module as well.
        assert any(holder(e.der) == "Əliyev Rəşad" for e in await manager.certificates())
        assert str(not_a_module) in {p.source for p in manager.problems}
    finally:
        await manager.close()


def test_demo_rule_static_half() -> None:
    assert demo_wanted(config()) is True
    assert demo_wanted(config(known=True)) is True
    assert demo_wanted(config(modules=[Path("/x.so")])) is False
    assert demo_wanted(config(p12=[Path("/x.p12")])) is False
    assert demo_wanted(config(demo="never")) is False


@pytest.mark.softhsm
async def test_demo_not_created_when_module_or_p12_configured(
        agent_home: Path, softhsm: SoftHsmBed, pkcs12_file: Pkcs12Bed) -> None:
    for cfg in (config(modules=[softhsm.module]), config(p12=[pkcs12_file.path]),
                config(modules=[Path("/nonexistent/module.so")]), config(demo="never")):
        manager = StoreManager.from_config(cfg, env=softhsm.env)
        try:
            assert manager.demo_store is None
            assert not any(t.demo for t in await manager.tokens())
        finally:
            await manager.close()
    assert not (agent_home / "demo").exists()


@pytest.mark.softhsm
async def test_demo_offered_with_known_module_but_no_card(
        agent_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenSC is installed on the test machine, and no card is in any reader: the user
    # has no token, so the demo must still be offered.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # OpenSC makes its dir
    # "No card" must hold while another test's pcscd has a virtual card in its reader
    # (pcscd's socket is system-wide): the modules' PC/SC client (libpcsclite) is pointed
    # at a socket no pcscd listens on, so they see no reader at all.
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(tmp_path / "no-pcscd.comm"))
    manager = StoreManager.from_config(config(known=True))
    try:
        assert any(c.vendor == "OpenSC" and c.present for c in manager.module_candidates)
        assert manager.demo_store is not None
        tokens = await manager.tokens()
        assert [t.demo for t in tokens] == [True]
        assert manager.demo_active is True
        entries = await manager.certificates()
        assert sum(e.key is not None for e in entries) == 2
        assert all(e.token.demo for e in entries)
        assert (agent_home / "demo" / "demo-sign.p12").is_file()
    finally:
        await manager.close()


@pytest.mark.softhsm
async def test_demo_hidden_while_a_real_token_is_present(agent_home: Path,
                                                         softhsm: SoftHsmBed) -> None:
    demo = DemoStore(ensure_demo_identity(agent_home))
    real = Pkcs11Store(softhsm.module, env=softhsm.env)
    manager = StoreManager([ManagedStore(real, str(softhsm.module))], demo=demo)
    try:
        tokens = await manager.tokens()
        assert tokens and not any(t.demo for t in tokens)
        assert manager.demo_active is False
        assert not any(e.token.demo for e in await manager.certificates())
        # The demo store stays reachable by id (a handle issued earlier still resolves).
        assert manager.store("demo") is demo
    finally:
        await manager.close()


def test_reader_key_is_what_every_module_reports() -> None:
    """CACKey keeps 32 bytes of a reader's name: the key that merges one card's rows must
    match OpenSC's full name to CACKey's cut one, also inside a multi-byte character."""
    long_name = "Yubico YubiKey OTP+FIDO+CCID 00 00"
    assert reader_key(long_name) == long_name[:32] == reader_key(long_name[:32])
    assert reader_key("Virtual PCD 00 01") == "Virtual PCD 00 01"
    cut_in_a_letter = "Çaxır Oxuyucu Şəbəkə ÖÜĞİ 00 00"  # byte 32 is inside "Ğ"
    assert len(cut_in_a_letter.encode()) > 32
    cut = cut_in_a_letter.encode()[:32].decode("utf-8", "replace").rstrip(" \x00")
    assert reader_key(cut) == reader_key(cut_in_a_letter)


@pytest.mark.softhsm
async def test_certificates_in_asks_one_store(agent_home: Path, softhsm: SoftHsmBed,
                                              pkcs12_file: Pkcs12Bed) -> None:
    manager = StoreManager.from_config(
        config(modules=[softhsm.module], p12=[pkcs12_file.path]), env=softhsm.env)
    try:
        everything = await manager.certificates()
        stores = [m.store.store_id for m in manager.managed]
        assert len(stores) == 2  # the module, and the file (its certificates after unlock)
        for store_id in stores:
            own = await manager.certificates_in(store_id)
            assert {e.token.store_id for e in own} <= {store_id}
            assert sorted(e.der for e in own) == sorted(
                e.der for e in everything if e.token.store_id == store_id)
        assert await manager.certificates_in(stores[0]) != []  # the module's tokens
        assert await manager.certificates_in("pkcs11:/no/such/module.so") == []
    finally:
        await manager.close()
