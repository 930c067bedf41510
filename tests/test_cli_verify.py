"""``imza-agent verify FILE [--data DETACHED] [--json]``: the verdicts of test_verify.py's
signatures as a person and a script read them; exit 0 only when every signature passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pki_services import DIRECT_ENV, NETWORK_TIMEOUT, FormatsBed
from test_verify import DATA, Signed, formats_bed, signing_agent

from agent import i18n
from agent.commands.verify_command import main as verify_main
from agent.config import Config, FormatsConfig

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

__all__ = ["formats_bed"]  # the session's loopback PKI
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def verify_bed(formats_bed: FormatsBed) -> Iterator[tuple[FormatsBed, Signed]]:
    """test_verify's signing agent, making only what these tests read."""
    for bed, signed, _ in signing_agent(formats_bed, {"cms_bt", "cms_revoked", "pdf_bt"}):
        yield bed, signed


def _config(bed: FormatsBed) -> Config:
    return Config(formats=FormatsConfig(trust_anchors=bed.anchors,
                                        network_timeout=NETWORK_TIMEOUT,
                                        page_tsa_private_addresses=True))


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DIRECT_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def english() -> Iterator[None]:
    before = i18n.current_language()
    i18n.set_language("en")
    yield
    i18n.set_language(before)


def _files(tmp: Path, signature: bytes, data: bytes | None = None) -> tuple[Path, Path | None]:
    sig = tmp / "signed.bin"
    sig.write_bytes(signature)
    detached = None
    if data is not None:
        detached = tmp / "content.bin"
        detached.write_bytes(data)
    return sig, detached


def test_json_of_a_good_cms_exits_0(verify_bed: tuple[FormatsBed, Signed], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    bed, signed = verify_bed
    sig, data = _files(tmp_path, signed["cms_bt"], DATA)
    assert verify_main(_config(bed), sig, data=data, json_output=True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "cms"
    [one] = report["signatures"]
    assert (one["indication"], one["level"]) == ("TOTAL-PASSED", "CAdES-B-T")
    assert one["signer"]["commonName"] == "Formatlar v_good"
    assert "subIndication" not in one and one["timestampTime"].endswith("Z")


def test_text_of_a_changed_cms_exits_1(verify_bed: tuple[FormatsBed, Signed], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       english: None) -> None:
    bed, signed = verify_bed
    sig, data = _files(tmp_path, signed["cms_bt"], DATA + b" ")
    assert verify_main(_config(bed), sig, data=data, json_output=False) == 1
    out = capsys.readouterr().out
    assert "invalid (TOTAL-FAILED)" in out
    assert "HASH_FAILURE: the signed content was changed" in out
    assert "Formatlar v_good" in out


def test_revoked_signer_exits_1_in_json(verify_bed: tuple[FormatsBed, Signed],
                                        tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bed, signed = verify_bed
    sig, data = _files(tmp_path, signed["cms_revoked"], DATA)
    assert verify_main(_config(bed), sig, data=data, json_output=True) == 1
    [one] = json.loads(capsys.readouterr().out)["signatures"]
    assert (one["indication"], one["subIndication"]) == ("TOTAL-FAILED", "REVOKED")
    assert one["revocation"]["status"] == "revoked"


def test_unreadable_file_exits_2(verify_bed: tuple[FormatsBed, Signed], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    bed, _ = verify_bed
    sig, _data = _files(tmp_path, b"neither a PDF, XML nor CMS")
    assert verify_main(_config(bed), sig, data=None, json_output=True) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "UNSUPPORTED"
    assert verify_main(_config(bed), tmp_path / "missing.pdf", data=None,
                       json_output=False) == 2
    assert "missing.pdf" in capsys.readouterr().err


def _cli(bed: FormatsBed, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp / "config.toml"
    anchors = ", ".join(json.dumps(str(p)) for p in bed.anchors)
    config.write_text(f"[formats]\ntrust_anchors = [{anchors}]\n"
                      f"network_timeout = {NETWORK_TIMEOUT}\n"
                      "page_tsa_private_addresses = true\n", encoding="utf-8")
    env = {**os.environ, **DIRECT_ENV, "HOME": str(tmp), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize(("language", "result_word"), [
    ("az", "Nəticə"), ("tr", "Sonuç"), ("ru", "Результат"), ("en", "Result")])
def test_command_line_speaks_each_language(verify_bed: tuple[FormatsBed, Signed],
                                           tmp_path: Path, language: str,
                                           result_word: str) -> None:
    bed, signed = verify_bed
    sig, _ = _files(tmp_path, signed["pdf_bt"])
    done = _cli(bed, tmp_path, "--language", language, "verify", str(sig))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{result_word}: " in done.stdout and "TOTAL-PASSED" in done.stdout
    assert "PAdES-B-T" in done.stdout


def test_command_line_detached_json(verify_bed: tuple[FormatsBed, Signed],
                                    tmp_path: Path) -> None:
    bed, signed = verify_bed
    sig, data = _files(tmp_path, signed["cms_bt"], DATA)
    assert data is not None
    done = _cli(bed, tmp_path, "verify", str(sig), "--data", str(data), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["signatures"][0]["indication"] == "TOTAL-PASSED"
    missing = _cli(bed, tmp_path, "verify", str(sig), "--json")  # detached, no data
    assert missing.returncode == 2
    assert json.loads(missing.stdout)["error"] == "UNSUPPORTED"
