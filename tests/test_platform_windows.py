"""The Windows platform layer against fakes that record what it would do: a dictionary
registry in place of winreg, a CryptoAPI recorder in place of crypt32.dll, raw TCP tables
built here byte by byte, a token table, a named-pipe recorder. A wrong key path, flag or
argument fails here, on Linux; what only real Windows can show is listed in
docs/platforms.md."""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.platform.base import CaCert
from agent.platform.firefox_roots import PREF_LINE
from agent.platform.windows import WindowsPlatform
from agent.platform.windows import peer as winpeer
from agent.platform.windows.autostart import RUN_KEY, RunKeyAutostart
from agent.platform.windows.identity import Identity
from agent.platform.windows.registry import Hive
from agent.platform.windows.relay import NamedPipeRelay
from agent.platform.windows.trust import WindowsTrustStore
from agent.tls.material import ensure_tls_material

SID = "S-1-5-21-1111111111-2222222222-3333333333-1001"
OTHER_SID = "S-1-5-21-1111111111-2222222222-3333333333-1002"
EXE = "C:\\Program Files\\imza-agent\\imza-agent.exe"


# --- fakes -----------------------------------------------------------------------------

class FakeRegistry:
    """Keys as Windows shows them ("HKCU\\Software\\..."), each a dict of string values."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, str]] = {}

    def get(self, hive: Hive, path: str, name: str) -> str | None:
        return self.keys.get(f"{hive}\\{path}", {}).get(name)

    def set(self, hive: Hive, path: str, name: str, value: str) -> None:
        self.keys.setdefault(f"{hive}\\{path}", {})[name] = value

    def delete_value(self, hive: Hive, path: str, name: str) -> None:
        self.keys.get(f"{hive}\\{path}", {}).pop(name, None)

    def values(self, hive: Hive, path: str) -> dict[str, str] | None:
        return self.keys.get(f"{hive}\\{path}")

    def delete_key(self, hive: Hive, path: str) -> None:
        full = f"{hive}\\{path}"
        assert not any(k.startswith(full + "\\") for k in self.keys), "key has subkeys"
        self.keys.pop(full, None)


class FakeCrypt32:
    """System stores by (location flag, name): lists of DER certificates."""

    def __init__(self) -> None:
        self.stores: dict[tuple[int, str], list[bytes]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.open_handles = 0

    def open_system_store(self, location: int, name: str) -> Any:
        self.calls.append(("open", location, name))
        self.open_handles += 1
        return self.stores.setdefault((location, name), [])

    def certificates(self, store: Any) -> list[bytes]:
        return list(store)

    def add_encoded(self, store: Any, encoding: int, der: bytes, disposition: int) -> None:
        self.calls.append(("add", encoding, disposition))
        x509.load_der_x509_certificate(der)  # CryptoAPI would refuse anything else
        if der in store:
            store.remove(der)  # CERT_STORE_ADD_REPLACE_EXISTING
        store.append(der)

    def delete(self, store: Any, der: bytes) -> None:
        self.calls.append(("delete", der))
        store.remove(der)

    def close(self, store: Any) -> None:
        self.open_handles -= 1


class FakeIdentities:
    def __init__(self, processes: dict[int, Identity], own: Identity) -> None:
        self.processes = processes
        self._own = own

    def of_process(self, pid: int) -> Identity | None:
        return self.processes.get(pid)

    def own(self) -> Identity:
        return self._own


def _port_dword(port: int) -> bytes:
    return port.to_bytes(2, "big") + b"\0\0"


def table4(rows: Sequence[tuple[str, int, str, int, int, int]]) -> bytes:
    """A MIB_TCPTABLE_OWNER_PID as GetExtendedTcpTable fills it: (local, lport, remote,
    rport, state, pid) per row."""
    out = struct.pack("<I", len(rows))
    for la, lp, ra, rp, state, pid in rows:
        out += struct.pack("<I", state) + ipaddress.IPv4Address(la).packed + _port_dword(lp)
        out += ipaddress.IPv4Address(ra).packed + _port_dword(rp) + struct.pack("<I", pid)
    return out


def table6(rows: Sequence[tuple[str, int, str, int, int, int]]) -> bytes:
    out = struct.pack("<I", len(rows))
    for la, lp, ra, rp, state, pid in rows:
        out += ipaddress.IPv6Address(la).packed + struct.pack("<I", 0) + _port_dword(lp)
        out += ipaddress.IPv6Address(ra).packed + struct.pack("<I", 0) + _port_dword(rp)
        out += struct.pack("<II", state, pid)
    return out


class FakeTables:
    def __init__(self, v4: bytes, v6: bytes) -> None:
        self.v4, self.v6 = v4, v6
        self.families: list[int] = []

    def table(self, family: int) -> bytes:
        self.families.append(family)
        return self.v4 if family == 2 else self.v6


class FakePipes:
    def __init__(self) -> None:
        self.created: list[tuple[str, str, int, int]] = []

    def create(self, name: str, sddl: str, open_mode: int, pipe_mode: int,
               max_instances: int) -> Any:
        assert max_instances == 255
        self.created.append((name, sddl, open_mode, pipe_mode))
        return len(self.created)


def windows(tmp_path: Path, *, elevated: bool = False,
            registry: FakeRegistry | None = None) -> WindowsPlatform:
    return WindowsPlatform(
        registry or FakeRegistry(), FakeCrypt32(),
        FakeIdentities({}, Identity(SID, 2)), FakeTables(table4([]), table6([])),
        {"APPDATA": str(tmp_path / "Roaming"), "LOCALAPPDATA": str(tmp_path / "Local"),
         "PROGRAMDATA": str(tmp_path / "ProgramData")},
        lambda: [EXE, "run"], elevated=elevated, pipes=FakePipes())


# --- native messaging ------------------------------------------------------------------

CHROMIUM_MANIFEST = '{"name": "az.imza.agent", "allowed_origins": ["x"]}'
FIREFOX_MANIFEST = '{"name": "az.imza.agent", "allowed_extensions": ["y"]}'
MANIFESTS = {b: FIREFOX_MANIFEST if b == "firefox" else CHROMIUM_MANIFEST
             for b in ("chrome", "edge", "chromium", "brave", "firefox")}


@pytest.mark.parametrize(("elevated", "hive"), [(False, "HKCU"), (True, "HKLM")])
def test_native_messaging_keys_per_browser(tmp_path: Path, elevated: bool, hive: str) -> None:
    registry = FakeRegistry()
    registrar = windows(tmp_path, elevated=elevated, registry=registry).native_messaging(
        tmp_path)
    done = registrar.register(list(MANIFESTS), MANIFESTS)
    folder = tmp_path / ("ProgramData" if elevated else "Local") / "imza-agent/native-messaging"
    chromium, firefox = (str(folder / "az.imza.agent.chromium.json"),
                         str(folder / "az.imza.agent.firefox.json"))
    assert registry.keys == {
        f"{hive}\\Software\\Google\\Chrome\\NativeMessagingHosts\\az.imza.agent":
            {"": chromium},
        f"{hive}\\Software\\Microsoft\\Edge\\NativeMessagingHosts\\az.imza.agent":
            {"": chromium},
        f"{hive}\\Software\\Chromium\\NativeMessagingHosts\\az.imza.agent": {"": chromium},
        f"{hive}\\Software\\BraveSoftware\\Brave-Browser\\NativeMessagingHosts\\az.imza.agent":
            {"": chromium},
        f"{hive}\\Software\\Mozilla\\NativeMessagingHosts\\az.imza.agent": {"": firefox},
    }
    assert Path(chromium).read_text(encoding="utf-8") == CHROMIUM_MANIFEST
    assert Path(firefox).read_text(encoding="utf-8") == FIREFOX_MANIFEST
    assert {r.registry_key for r in done} == set(registry.keys)


def test_unregistering_removes_keys_and_manifests_no_longer_named(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registrar = windows(tmp_path, registry=registry).native_messaging(tmp_path)
    registrar.register(list(MANIFESTS), MANIFESTS)
    folder = tmp_path / "Local" / "imza-agent" / "native-messaging"
    registrar.unregister(["firefox", "chrome"])
    assert not (folder / "az.imza.agent.firefox.json").exists()
    assert (folder / "az.imza.agent.chromium.json").exists()  # Edge etc. still use it
    assert not any("Mozilla" in k or "Google" in k for k in registry.keys)
    registrar.unregister(["edge", "chromium", "brave"])
    assert registry.keys == {}
    assert not (folder / "az.imza.agent.chromium.json").exists()


def test_the_cli_registers_through_the_platform(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.platform import native_messaging

    registry = FakeRegistry()
    platform = windows(tmp_path, registry=registry)
    monkeypatch.setattr(native_messaging, "current", lambda: platform)
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "data"))
    assert native_messaging.install(["--browser", "edge", "--browser", "firefox"], None) == 0
    edge = registry.get("HKCU", "Software\\Microsoft\\Edge\\NativeMessagingHosts\\az.imza.agent",
                        "")
    assert edge is not None
    manifest = json.loads(Path(edge).read_text(encoding="utf-8"))
    launcher = tmp_path / "data" / "native-host.cmd"
    assert manifest["path"] == str(launcher)
    assert manifest["allowed_origins"] == ["chrome-extension://ajnfmipgaekhgddmadkchgoigmjfbhha/"]
    text = launcher.read_bytes().decode("utf-8")  # as written: CRLF, for cmd.exe
    assert text.startswith("@echo off\r\n") and text.endswith('"native-host" %*\r\n')
    assert f'set "IMZA_AGENT_HOME={tmp_path / "data"}"\r\n' in text
    assert len(registry.keys) == 2  # only the two browsers asked for


# --- autostart ---------------------------------------------------------------------------

def test_autostart_is_the_run_value(tmp_path: Path) -> None:
    registry = FakeRegistry()
    autostart = windows(tmp_path, registry=registry).autostart()
    assert autostart.status().enabled is False
    on = autostart.set_enabled(True)
    assert registry.keys == {
        "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run":
            {"imza-agent": f'"{EXE}" run'}}
    assert on.enabled and on.scope == "user"
    assert on.file == "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\imza-agent"
    off = autostart.set_enabled(False)
    assert not off.enabled and registry.get("HKCU", RUN_KEY, "imza-agent") is None


def test_a_machine_run_value_decides_and_is_not_duplicated(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.set("HKLM", RUN_KEY, "imza-agent", f'"{EXE}" run')
    autostart = RunKeyAutostart(registry, [EXE, "run"])
    state = autostart.set_enabled(True)
    assert state.scope == "system" and state.enabled
    assert registry.get("HKCU", RUN_KEY, "imza-agent") is None


# --- local TLS trust -------------------------------------------------------------------

def _ca(tls_dir: Path) -> tuple[CaCert, bytes]:
    material = ensure_tls_material(tls_dir)
    pem = material.ca_cert_path.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    return CaCert(material.ca_cert_path, material.ca_fingerprint_sha256), der


def _profile(tmp_path: Path, name: str) -> Path:
    profile = tmp_path / "Roaming" / "Mozilla" / "Firefox" / "Profiles" / name
    profile.mkdir(parents=True)
    (profile / "prefs.js").write_text("// prefs\n", encoding="utf-8")
    return profile


@pytest.mark.parametrize(("elevated", "flag", "label"),
                         [(False, 0x10000, "CurrentUser\\ROOT"),
                          (True, 0x20000, "LocalMachine\\ROOT")])
def test_trust_install_status_remove_in_the_root_store(tmp_path: Path, elevated: bool,
                                                       flag: int, label: str) -> None:
    old, old_der = _ca(tmp_path / "old")
    ca, der = _ca(tmp_path / "new")
    profile = _profile(tmp_path, "abcd.default-release")
    (profile / "user.js").write_text('user_pref("mine", 1);\n', encoding="utf-8")
    crypt32 = FakeCrypt32()
    store = crypt32.stores.setdefault((flag, "ROOT"), [])
    unrelated = x509.load_pem_x509_certificate(_ca(tmp_path / "x")[0].pem_path.read_bytes())
    store += [old_der]
    trust = WindowsTrustStore(crypt32, tmp_path / "Roaming/Mozilla/Firefox/Profiles",
                              machine=elevated)

    results = trust.install(ca)
    assert ("open", flag, "ROOT") in crypt32.calls
    assert ("add", 0x10001, 3) in crypt32.calls  # X509|PKCS7 encoding, replace existing
    assert ("delete", old_der) in crypt32.calls
    assert store == [der]
    assert crypt32.open_handles == 0
    assert [(str(r.path), r.trusted, r.stale) for r in results] == [
        (label, True, []), (str(profile), True, [])]
    assert (profile / "user.js").read_text(encoding="utf-8").splitlines() == [
        'user_pref("mine", 1);', PREF_LINE]
    assert PREF_LINE.startswith('user_pref("security.enterprise_roots.enabled", true);')

    assert [r.trusted for r in trust.status(old.fingerprint_sha256)] == [False, False]
    removed = trust.remove()
    assert store == [] and [r.trusted for r in removed] == [False, False]
    assert (profile / "user.js").read_text(encoding="utf-8") == 'user_pref("mine", 1);\n'
    assert unrelated is not None


def test_trust_command_routes_to_the_windows_store(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from agent.tls import trust

    platform = windows(tmp_path)
    monkeypatch.setattr(trust, "current_platform", lambda: platform)
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "data"))
    assert trust.main("install", json_output=True) == trust.EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["databases"] == [{"path": "CurrentUser\\ROOT", "browser": "windows",
                                 "trusted": True, "stale": [], "error": None}]
    assert trust.main("status") == trust.EXIT_OK
    assert trust.main("remove") == trust.EXIT_OK
    assert trust.main("status") == trust.EXIT_INCOMPLETE


# --- the relay -------------------------------------------------------------------------

def test_the_relay_is_a_per_user_pipe_only_that_user_may_open(tmp_path: Path) -> None:
    platform = windows(tmp_path)
    relay = platform.relay()
    assert relay.address(tmp_path / "agent.sock") == f"\\\\.\\pipe\\imza-agent-{SID}"
    assert isinstance(relay, NamedPipeRelay)
    relay.create_instance(first=True)
    relay.create_instance(first=False)
    pipes = platform.pipes
    assert isinstance(pipes, FakePipes)
    (name, sddl, first_mode, pipe_mode), (_n, _s, next_mode, _p) = pipes.created
    assert name == f"\\\\.\\pipe\\imza-agent-{SID}"
    # Protected DACL: network logons denied, this SID alone allowed; nobody else listed.
    assert sddl == f"D:P(D;;GA;;;NU)(A;;GA;;;{SID})"
    assert first_mode == 0x00000003 | 0x40000000 | 0x00080000  # duplex, overlapped, first
    assert next_mode == 0x00000003 | 0x40000000
    assert pipe_mode & 0x00000008  # PIPE_REJECT_REMOTE_CLIENTS


# --- the peer check --------------------------------------------------------------------

SERVER = ("127.0.0.1", 43210)
CLIENT = ("127.0.0.1", 50001)
ESTAB, TIME_WAIT = 5, 11


def _check(rows4: list[tuple[str, int, str, int, int, int]],
           rows6: list[tuple[str, int, str, int, int, int]] | None = None,
           ) -> winpeer.WindowsPeerCheck:
    identities = FakeIdentities({100: Identity(SID, 2), 200: Identity(OTHER_SID, 3),
                                 300: Identity(SID, 5)}, Identity(SID, 2))
    return winpeer.WindowsPeerCheck(FakeTables(table4(rows4), table6(rows6 or [])),
                                    identities)


def test_tcp_tables_parse_as_windows_lays_them_out() -> None:
    rows = list(winpeer.parse_table(table4([("127.0.0.1", 50001, "127.0.0.1", 443, 5, 77)]),
                                    winpeer.AF_INET))
    assert [(str(r.local.address), r.local.port, r.remote.port, r.state, r.pid)
            for r in rows] == [("127.0.0.1", 50001, 443, 5, 77)]
    rows = list(winpeer.parse_table(table6([("::ffff:127.0.0.1", 1, "::1", 2, 5, 9)]),
                                    winpeer.AF_INET6))
    assert [(str(r.local.address), str(r.remote.address), r.pid) for r in rows] == [
        ("127.0.0.1", "::1", 9)]


def test_same_user_needs_this_sid_and_this_session() -> None:
    server_side = ("127.0.0.1", 43210, "127.0.0.1", 50001, ESTAB, 999)  # our own row
    mine = _check([server_side, ("127.0.0.1", 50001, "127.0.0.1", 43210, ESTAB, 100)])
    assert mine.same_user(SERVER, CLIENT) is True
    other = _check([("127.0.0.1", 50001, "127.0.0.1", 43210, ESTAB, 200)])
    assert other.same_user(SERVER, CLIENT) is False
    other_session = _check([("127.0.0.1", 50001, "127.0.0.1", 43210, ESTAB, 300)])
    assert other_session.same_user(SERVER, CLIENT) is False
    leftover = _check([("127.0.0.1", 50001, "127.0.0.1", 43210, TIME_WAIT, 100)])
    assert leftover.same_user(SERVER, CLIENT) is False
    ambiguous = _check([("127.0.0.1", 50001, "127.0.0.1", 43210, ESTAB, 100),
                        ("127.0.0.1", 50001, "127.0.0.1", 43210, ESTAB, 200)])
    assert ambiguous.same_user(SERVER, CLIENT) is False
    v6 = _check([], [("::1", 50001, "::1", 43210, ESTAB, 100)])
    assert v6.same_user(("::1", 43210, 0, 0), ("::1", 50001, 0, 0)) is True
    assert mine.same_user(SERVER, ("not an address",)) is False


# --- the rest of the platform ----------------------------------------------------------

def test_windows_paths_and_flags(tmp_path: Path) -> None:
    platform = windows(tmp_path)
    assert platform.system_policy_file() == tmp_path / "ProgramData/imza-agent/policy.toml"
    assert platform.trust_automatic is False  # Windows asks the user: never at start
    assert platform.pkcs11_table == "windows" and platform.pkcs11_pack == 1
    assert platform.peer_check() is not None


