"""The macOS platform layer against fakes: a stand-in for the ``security`` and ``launchctl``
commands that accepts only the argument lists the man pages document (anything else fails
the test) and keeps a keychain in memory, a temporary home for the files, and a process
socket table for the peer check. What only a real Mac can show is in docs/platforms.md."""

from __future__ import annotations

import hashlib
import json
import plistlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.platform.base import CaCert
from agent.platform.firefox_roots import PREF_LINE
from agent.platform.macos import MacPlatform
from agent.platform.macos.launch_agent import bootstrap_command
from agent.platform.macos.peer import MacPeerCheck, ProcSocket
from agent.platform.peer import Endpoint
from agent.tls.material import CA_CN_PREFIX, ensure_tls_material

UID = 501
EXE = "/Applications/imza-agent.app/Contents/MacOS/imza-agent"


class FakeMac:
    """``security`` and ``launchctl`` as far as the layer uses them."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.keychains: dict[str, list[x509.Certificate]] = {}
        self.trusted: set[bytes] = set()  # DER of certificates with trustRoot for ssl
        self.disabled: set[str] = set()

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        out, code = self._answer(argv)
        return subprocess.CompletedProcess(argv, code, out, "" if code == 0 else "failed")

    def _answer(self, argv: list[str]) -> tuple[str, int]:
        match argv:
            case ["security", "add-trusted-cert", *flags, "-r", "trustRoot", "-p", "ssl",
                  "-k", keychain, pem] if flags in ([], ["-d"]):
                cert = x509.load_pem_x509_certificate(Path(pem).read_bytes())
                self.keychains.setdefault(keychain, []).append(cert)
                self.trusted.add(cert.public_bytes(Encoding.DER))
                return "", 0
            case ["security", "find-certificate", "-a", "-c", name, "-p", keychain]:
                found = [c for c in self.keychains.get(keychain, [])
                         if name in c.subject.rfc4514_string()]
                text = "".join(c.public_bytes(Encoding.PEM).decode() for c in found)
                return text, 0 if found else 44
            case ["security", "delete-certificate", "-Z", sha1, "-t", keychain]:
                certs = self.keychains.get(keychain, [])
                for cert in certs:
                    der = cert.public_bytes(Encoding.DER)
                    if hashlib.sha1(der).hexdigest().upper() == sha1:
                        certs.remove(cert)
                        self.trusted.discard(der)
                        return "", 0
                return "", 44
            case ["security", "verify-cert", "-c", pem, "-p", "ssl", "-L", "-q"]:
                der = x509.load_pem_x509_certificate(Path(pem).read_bytes()).public_bytes(
                    Encoding.DER)
                return "", 0 if der in self.trusted else 1
            case ["launchctl", "print-disabled", domain] if domain == f"gui/{UID}":
                return "".join(f'\t"{label}" => disabled\n' for label in self.disabled), 0
            case ["launchctl", ("enable" | "disable") as verb, target] \
                    if target == f"gui/{UID}/az.imza.agent":
                (self.disabled.add if verb == "disable" else self.disabled.discard)(
                    "az.imza.agent")
                return "", 0
        raise AssertionError(f"unexpected command line: {argv}")


def mac(tmp_path: Path, run: FakeMac, *, elevated: bool = False) -> MacPlatform:
    return MacPlatform(run, UID, lambda: [EXE, "run"], elevated=elevated)


# --- native messaging ------------------------------------------------------------------

def test_manifest_directories_per_browser(tmp_path: Path) -> None:
    registrar = mac(tmp_path, FakeMac()).native_messaging(tmp_path)
    manifests = {b: f'{{"b": "{b}"}}' for b in registrar.browsers}
    registrar.register(list(manifests), manifests)
    support = tmp_path / "Library" / "Application Support"
    expected = {"chrome": "Google/Chrome", "chromium": "Chromium", "edge": "Microsoft Edge",
                "brave": "BraveSoftware/Brave-Browser", "firefox": "Mozilla"}
    for browser, folder in expected.items():
        path = support / folder / "NativeMessagingHosts" / "az.imza.agent.json"
        assert path.read_text(encoding="utf-8") == manifests[browser]
    assert sorted(p.relative_to(support).as_posix() for p in support.rglob("*.json")) == sorted(
        f"{f}/NativeMessagingHosts/az.imza.agent.json" for f in expected.values())
    registrar.unregister(["firefox"])
    assert not (support / "Mozilla/NativeMessagingHosts/az.imza.agent.json").exists()


# --- autostart ---------------------------------------------------------------------------

def test_launch_agent_plist(tmp_path: Path) -> None:
    run = FakeMac()
    autostart = mac(tmp_path, run).autostart({"HOME": str(tmp_path)})
    assert autostart.status().enabled is False
    state = autostart.set_enabled(True)
    plist = tmp_path / "Library" / "LaunchAgents" / "az.imza.agent.plist"
    assert state.file == plist and state.enabled and state.scope == "user"
    assert plistlib.loads(plist.read_bytes()) == {
        "Label": "az.imza.agent", "ProgramArguments": [EXE, "run"], "RunAtLoad": True,
        "LimitLoadToSessionType": "Aqua", "ProcessType": "Interactive"}
    assert autostart.set_enabled(False).enabled is False and not plist.exists()
    # Switching never loads or unloads a job: that would start a second agent or stop this.
    assert not any(c[:2] in (["launchctl", "bootstrap"], ["launchctl", "bootout"])
                   for c in run.calls)
    assert bootstrap_command(UID, plist) == ["launchctl", "bootstrap", "gui/501", str(plist)]


def test_a_system_launch_agent_is_switched_with_launchctl(tmp_path: Path) -> None:
    from agent.platform.macos.launch_agent import LaunchAgentAutostart

    system = tmp_path / "LibraryLaunchAgents"
    system.mkdir()
    (system / "az.imza.agent.plist").write_bytes(b"")
    run = FakeMac()
    autostart = LaunchAgentAutostart(run, tmp_path, UID, [EXE, "run"], system_dir=system)
    assert autostart.status().enabled and autostart.status().scope == "system"
    assert autostart.set_enabled(False).enabled is False
    assert ["launchctl", "disable", "gui/501/az.imza.agent"] in run.calls
    assert autostart.set_enabled(True).enabled is True
    assert ["launchctl", "enable", "gui/501/az.imza.agent"] in run.calls


# --- local TLS trust -------------------------------------------------------------------

def _ca(tls_dir: Path) -> CaCert:
    material = ensure_tls_material(tls_dir)
    return CaCert(material.ca_cert_path, material.ca_fingerprint_sha256)


@pytest.mark.parametrize(("elevated", "flags", "keychain"),
                         [(False, [], "Library/Keychains/login.keychain-db"),
                          (True, ["-d"], "/Library/Keychains/System.keychain")])
def test_keychain_trust(tmp_path: Path, elevated: bool, flags: list[str],
                        keychain: str) -> None:
    keychain_path = str(tmp_path / keychain) if not keychain.startswith("/") else keychain
    run = FakeMac()
    old, ca = _ca(tmp_path / "old"), _ca(tmp_path / "new")
    run.keychains[keychain_path] = [x509.load_pem_x509_certificate(old.pem_path.read_bytes())]
    profile = tmp_path / "Library/Application Support/Firefox/Profiles/x.default"
    profile.mkdir(parents=True)
    (profile / "prefs.js").write_text("", encoding="utf-8")
    store = mac(tmp_path, run, elevated=elevated).trust_store(tmp_path)

    results = store.install(ca)
    assert ["security", "add-trusted-cert", *flags, "-r", "trustRoot", "-p", "ssl", "-k",
            keychain_path, str(ca.pem_path)] in run.calls
    assert ["security", "find-certificate", "-a", "-c", CA_CN_PREFIX, "-p",
            keychain_path] in run.calls
    assert [(str(r.path), r.trusted, r.stale) for r in results] == [
        (keychain_path, True, []), (str(profile), True, [])]
    assert len(run.keychains[keychain_path]) == 1  # the old generation was deleted
    assert PREF_LINE in (profile / "user.js").read_text(encoding="utf-8")

    removed = store.remove()
    assert run.keychains[keychain_path] == []
    assert [r.trusted for r in removed] == [False, False]
    assert not (profile / "user.js").exists()


def test_trust_command_routes_to_the_keychain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from agent.tls import trust

    run = FakeMac()
    monkeypatch.setattr(trust, "current_platform", lambda: mac(tmp_path, run))
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert trust.main("install", json_output=True) == trust.EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["databases"][0]["path"] == str(tmp_path / "Library/Keychains/login.keychain-db")
    assert trust.main("remove") == trust.EXIT_OK
    assert trust.main("status") == trust.EXIT_INCOMPLETE


# --- peer check ------------------------------------------------------------------------

class FakeSockets:
    def __init__(self, sockets: list[ProcSocket], uids: dict[int, int]) -> None:
        self.sockets, self.uids = sockets, uids

    def tcp_sockets(self) -> list[ProcSocket]:
        return self.sockets

    def uid_of(self, pid: int) -> int | None:
        return self.uids.get(pid)


def test_peer_check_matches_the_client_socket_to_its_process() -> None:
    client = Endpoint.of(("127.0.0.1", 50001))
    server = Endpoint.of(("127.0.0.1", 43210))
    ours = ProcSocket(10, client, server)
    check = MacPeerCheck(FakeSockets([ours, ProcSocket(11, server, client)], {10: UID}), UID)
    assert check.same_user(("127.0.0.1", 43210), ("127.0.0.1", 50001)) is True
    not_found = MacPeerCheck(FakeSockets([], {}), UID)  # another user's: invisible to us
    assert not_found.same_user(("127.0.0.1", 43210), ("127.0.0.1", 50001)) is False
    other = MacPeerCheck(FakeSockets([ours], {10: 502}), UID)
    assert other.same_user(("127.0.0.1", 43210), ("127.0.0.1", 50001)) is False


def test_macos_flags(tmp_path: Path) -> None:
    platform = mac(tmp_path, FakeMac())
    assert platform.trust_automatic is False and platform.pkcs11_table == "darwin"
    assert platform.peer_check() is None  # the libproc walk is not written yet
    assert platform.system_policy_file() == Path(
        "/Library/Application Support/imza-agent/policy.toml")
