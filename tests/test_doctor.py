"""``imza-agent doctor``: the report over the SoftHSM test tokens, a PKCS#12 file, a
failing module and the demo, as JSON, as text, and through the command line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from testbed import Pkcs12Bed, SoftHsmBed

from agent import doctor
from agent.config import Config, DemoConfig, Pkcs12File, TokensConfig

REPO = Path(__file__).resolve().parent.parent
NAMES = ("Əliyev Rəşad", "ŞİMŞEK Gülşen", "Иванов Пётр")


def cert_sha256(bed: SoftHsmBed, name: str) -> str:
    return hashlib.sha256(
        bed.identity(name).cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def by_fingerprint(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["sha256"]: c for c in report["certificates"]}


@pytest.fixture
def bad_module(tmp_path: Path) -> Path:
    path = tmp_path / "libbroken-pkcs11.so"
    path.write_bytes(b"\x7fELF but not really")
    return path


@pytest.fixture
def full_config(softhsm: SoftHsmBed, pkcs12_file: Pkcs12Bed, tmp_path: Path,
                bad_module: Path) -> Config:
    return Config(tokens=TokensConfig(
        modules=[softhsm.module, tmp_path / "nonexistent-pkcs11.so", bad_module],
        known_modules=False, pkcs12=[Pkcs12File(path=pkcs12_file.path, label="Şəxsi imza")]))


def write_config(path: Path, softhsm: SoftHsmBed, pkcs12_file: Pkcs12Bed,
                 missing: Path) -> Path:
    path.write_text(
        "[tokens]\n"
        f"modules = [{json.dumps(str(softhsm.module))}, {json.dumps(str(missing))}]\n"
        "known_modules = false\n"
        f"pkcs12 = [{{ path = {json.dumps(str(pkcs12_file.path))} }}]\n",
        encoding="utf-8")
    return path


@pytest.mark.softhsm
def test_collect_reports_tokens_certificates_and_pairing(
        agent_home: Path, softhsm: SoftHsmBed, pkcs12_file: Pkcs12Bed, full_config: Config,
        tmp_path: Path, bad_module: Path) -> None:
    report = doctor.collect(full_config)
    json.dumps(report)  # JSON-able as a whole
    assert set(report) >= {"format", "agent", "pcsc", "modules", "tokens", "certificates",
                           "pkcs12", "demo", "problems"}

    token_labels = {t["label"] for t in report["tokens"]}
    assert {softhsm.tokens["A"].label, softhsm.tokens["B"].label, "Şəxsi imza"} <= token_labels
    token_a = next(t for t in report["tokens"] if t["label"] == softhsm.tokens["A"].label)
    assert token_a["kind"] == "pkcs11" and token_a["pinState"] in {"ok", "count low"}
    assert (token_a["secret"], token_a["unlock"]) == ("pin", "PUK")
    p12_token = next(t for t in report["tokens"] if t["label"] == "Şəxsi imza")
    assert (p12_token["secret"], p12_token["unlock"]) == ("password", "ISSUER")
    assert token_a["pin"]["maxLength"] >= token_a["pin"]["minLength"] > 0

    certs = by_fingerprint(report)
    holders = {c["holder"] for c in certs.values()}
    assert set(NAMES) <= holders
    rsa_sign = certs[cert_sha256(softhsm, "rsa_sign")]
    assert rsa_sign["holder"] == "Əliyev Rəşad"
    assert "CN=Əliyev Rəşad" in rsa_sign["subject"]
    assert "nonRepudiation" in rsa_sign["keyUsage"]
    assert rsa_sign["pairing"] in {"id", "assumed-id"}
    assert rsa_sign["keyId"] == softhsm.objects["rsa_sign"].key_id.hex()
    assert rsa_sign["expired"] is False and rsa_sign["notYetValid"] is False
    assert int(rsa_sign["serialHex"], 16) == softhsm.identity("rsa_sign").cert.serial_number
    # Certificate CKA_ID differs from the key's: paired by comparing public keys.
    mismatched = certs[cert_sha256(softhsm, "ec_sign_mismatched_id")]
    assert mismatched["pairing"] == "public-key"
    assert mismatched["keyId"] == softhsm.objects["ec_sign_mismatched_id"].key_id.hex()
    assert certs[cert_sha256(softhsm, "expired")]["expired"] is True
    assert certs[cert_sha256(softhsm, "not_yet_valid")]["notYetValid"] is True
    assert "clientAuth" in certs[cert_sha256(softhsm, "rsa_auth")]["extendedKeyUsage"]

    modules = {m["path"]: m for m in report["modules"]}
    assert modules[str(softhsm.module)]["loaded"] is True
    assert modules[str(softhsm.module)]["slots"] >= 2
    missing = modules[str(tmp_path / "nonexistent-pkcs11.so")]
    assert missing["loaded"] is False and "not there" in missing["error"]
    broken = modules[str(bad_module)]
    assert broken["present"] is True and broken["loaded"] is False
    assert "cannot load the library" in broken["error"]  # the loader's words, shown locally
    assert {str(tmp_path / "nonexistent-pkcs11.so"), str(bad_module)} <= {
        p["source"] for p in report["problems"]}

    (p12,) = report["pkcs12"]
    assert p12["exists"] is True and p12["label"] == "Şəxsi imza"
    assert p12["needsUnlock"] is True  # the doctor never opens the file with the password
    assert report["demo"]["available"] is False and report["demo"]["active"] is False
    assert not (agent_home / "demo").exists()

    pcsc = report["pcsc"]
    assert isinstance(pcsc["available"], bool)
    if not pcsc["available"]:
        assert pcsc["reason"]
    assert pkcs12_file.password not in json.dumps(report, ensure_ascii=False)


@pytest.mark.softhsm
def test_text_output_keeps_names_and_says_what_failed(
        agent_home: Path, softhsm: SoftHsmBed, full_config: Config, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = doctor.main(full_config, json_output=False)
    out = capsys.readouterr().out
    assert code == 1  # a configured module is missing and another fails to load
    for name in NAMES:
        assert name in out
    assert softhsm.tokens["A"].label in out
    assert "PC/SC" in out
    assert f"{tmp_path / 'nonexistent-pkcs11.so'} [config] — FAILED" in out
    assert "paired by public key" in out
    assert "password-protected file (no retry counter)" in out  # the PKCS#12 file's token
    assert "EXPIRED" in out and "NOT YET VALID" in out


def test_demo_is_labelled(agent_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = Config(tokens=TokensConfig(known_modules=False), demo=DemoConfig(enabled="auto"))
    assert doctor.main(cfg, json_output=True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["demo"]["available"] is True and report["demo"]["active"] is True
    (token,) = report["tokens"]
    assert token["demo"] is True and "DEMO" in token["label"]
    keyed = [c for c in report["certificates"] if c["keyId"]]
    assert len(keyed) == 2 and all(c["demo"] and "DEMO" in c["holder"] for c in keyed)
    assert doctor.main(cfg, json_output=False) == 0
    text = capsys.readouterr().out
    assert "[DEMO — not a real identity]" in text
    assert "DEMO token offered" in text


@pytest.mark.parametrize("json_flag", [True, False])
@pytest.mark.softhsm
def test_command_line_prints_utf8(agent_home: Path, softhsm: SoftHsmBed,
                                  pkcs12_file: Pkcs12Bed, tmp_path: Path,
                                  json_flag: bool) -> None:
    missing = tmp_path / "yoxdur-pkcs11.so"
    cfg = write_config(tmp_path / "agent.toml", softhsm, pkcs12_file, missing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    # stdout opened as ASCII (as a legacy console code page would be): the doctor must
    # still print the names, in UTF-8.
    env.update(softhsm.env, IMZA_AGENT_HOME=str(agent_home), PYTHONIOENCODING="ascii")
    # Both entry points: the `imza-agent doctor` command and the module itself.
    argv = ([sys.executable, "-m", "agent.cli", "--config", str(cfg), "doctor", "--json"]
            if json_flag else [sys.executable, "-m", "agent.doctor", "--config", str(cfg)])
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, timeout=120,
                          check=False)
    assert done.returncode == 1, done.stderr.decode("utf-8", "replace")
    out = done.stdout.decode("utf-8")  # strict: fails on anything but UTF-8
    for name in NAMES:
        assert name in out
    if json_flag:
        report = json.loads(out)
        assert str(missing) in {p["source"] for p in report["problems"]}
        assert {"available", "reason", "readers"} <= set(report["pcsc"])
    else:
        assert f"{missing} [config] — FAILED: the module file is not there" in out
        assert "PC/SC" in out


@pytest.mark.softhsm
def test_the_token_rows_name_the_module_and_both_pins(
        agent_home: Path, softhsm: SoftHsmBed, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong SO PIN on a private copy of the bed: SoftHSM then raises the SO PIN's
    COUNT_LOW, which the doctor shows as the PUK's state next to the module."""
    from daemon import copy_softhsm

    conf = copy_softhsm(softhsm.conf, tmp_path / "softhsm")
    spec = softhsm.tokens["B"]
    script = ("import pkcs11\n"
              f"t = pkcs11.lib({str(softhsm.module)!r}).get_token(token_label={spec.label!r})\n"
              "try:\n    t.open(rw=True, so_pin='00000000')\nexcept pkcs11.PinIncorrect:\n"
              "    print('refused')\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "refused"
    config = Config(tokens=TokensConfig(modules=[softhsm.module], known_modules=False),
                    demo=DemoConfig(enabled="never"))
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))  # the store's worker inherits it
    report = doctor.collect(config)
    rows = {t["label"]: t for t in report["tokens"]}
    assert rows[spec.label]["pukState"] == "count low"
    assert rows[softhsm.tokens["A"].label]["pukState"] == "ok"
    assert rows[spec.label]["source"] == str(softhsm.module)
    from io import StringIO

    from agent import i18n
    from agent.doctor.text import render_text

    out = StringIO()
    i18n.set_language("en")
    render_text(report, out)
    text = out.getvalue()
    assert f"module: {softhsm.module}" in text
    assert "PUK few tries left" in text and "PUK ok" in text
    i18n.set_language("tr")
    try:
        out = StringIO()
        render_text(report, out)
        assert f"modül: {softhsm.module}" in out.getvalue()
        assert "PUK: az deneme kaldı" in out.getvalue()
    finally:
        i18n.set_language("en")
