"""The Windows installers, checked on Linux: installer/windows/build-msi.sh compiles the WiX
source with Debian's wixl into both MSIs around a stand-in payload (small files where the
PyInstaller build would be), and msiinfo (msitools) reads their tables back. The Group
Policy template (installer/windows/policy) is parsed with lxml and held to the registry
keys the agent reads.

What this cannot show: that Windows Installer, the browsers and Group Policy behave as
their documentation says with these tables. The CI workflow .github/workflows/windows.yml
installs the per-user MSI on a hosted Windows machine for that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from lxml import etree

from agent.platform.macos.launch_agent import LABEL, plist_bytes
from agent.platform.windows import autostart as windows_autostart
from agent.platform.windows.native_messaging import BROWSERS, host_key, manifest_kind

pytestmark = pytest.mark.msi

REPO = Path(__file__).resolve().parents[1]
WINDOWS = REPO / "installer" / "windows"
POLICY = WINDOWS / "policy"
HOST = "az.imza.agent"
CHROMIUM_ID = "ajnfmipgaekhgddmadkchgoigmjfbhha"
FIREFOX_ID = "imza-agent@imza.az"

# The native messaging keys the agent's platform layer uses (agent/platform/windows), by the
# MSI feature that writes them (named after the browser) and the manifest their default
# value names; and its start-at-login value.
NATIVE_KEYS = {browser: (host_key(browser), manifest_kind(browser)) for browser in BROWSERS}
RUN_KEY = windows_autostart.RUN_KEY
RUN_VALUE = windows_autostart.VALUE_NAME
POLICY_KEY = r"Software\Policies\imza-agent"
# The administrator's policy in the registry, as the agent reads it (docs/windows.md):
# (key, value name) of single values, and the keys of lists.
POLICY_VALUES = {(POLICY_KEY, "Locked"), (POLICY_KEY, "PlainWebSocket"),
                 (POLICY_KEY, "RemoveDefaults"), (POLICY_KEY, "TsaUrl")}
POLICY_LISTS = {POLICY_KEY + r"\Allow", POLICY_KEY + r"\Block", POLICY_KEY + r"\RemoveDefault"}
ROOTS = {"user": "1", "machine": "2"}  # msidbRegistryRoot: HKCU 1, HKLM 2
LANGUAGES = ("en-US", "az-Latn-AZ", "tr-TR", "ru-RU")
# The stand-in payload: PyInstaller's onedir layout in miniature.
PAYLOAD = ("imza-agent.exe", "imza-agentw.exe", "imza-agent-native-host.exe",
           "_internal/python311.dll", "_internal/base_library.zip",
           "_internal/agent/cli.pyc", "_internal/PySide6/plugins/platforms/qwindows.dll")


def _tools() -> None:
    missing = [t for t in ("wixl", "msiinfo") if shutil.which(t) is None]
    assert not missing, f"{', '.join(missing)} not found: apt-get install -y wixl msitools"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _tools()
    root = tmp_path_factory.mktemp("msi")
    payload = root / "imza-agent"
    for rel in PAYLOAD:
        path = payload / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"stand-in for {rel}\n".encode())
    out = root / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(WINDOWS / "build-msi.sh"), str(payload), str(out)],
                          capture_output=True, text=True, env=env, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    msis = {scope: next(out.glob(f"imza-agent-*-{scope}.msi")) for scope in ROOTS}
    return {"payload": payload, "msi": msis}


def table(msi: Path, name: str) -> list[dict[str, str]]:
    """A table as msiinfo exports it: column names, types, key columns, then the rows."""
    # cwd: msiinfo writes a table's binary streams (Icon, Binary) as files beside it.
    text = subprocess.run(["msiinfo", "export", str(msi), name], capture_output=True,
                          text=True, check=True, cwd=msi.parent).stdout
    lines = text.split("\r\n") if "\r\n" in text else text.splitlines()
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[3:] if line]


def tables(msi: Path, *names: str) -> dict[str, list[dict[str, str]]]:
    return {name: table(msi, name) for name in names}


def feature_of(msi: Path) -> dict[str, str]:
    return {row["Component_"]: row["Feature_"] for row in table(msi, "FeatureComponents")}


def registry(msi: Path) -> list[dict[str, str]]:
    return table(msi, "Registry")


def directories(msi: Path) -> dict[str, PurePosixPath]:
    """Directory id → path below INSTALLDIR (only those under it)."""
    rows = {r["Directory"]: r for r in table(msi, "Directory")}

    def path(ident: str) -> PurePosixPath | None:
        if ident == "INSTALLDIR":
            return PurePosixPath(".")
        parent = rows[ident]["Directory_Parent"]
        if not parent:
            return None
        above = path(parent)
        name = rows[ident]["DefaultDir"].split("|")[-1]
        return None if above is None else above / name

    return {d: p for d in rows if (p := path(d)) is not None}


# --- the native messaging host, start at login, the Start menu ------------------------------

@pytest.mark.parametrize("scope", list(ROOTS))
def test_native_messaging_keys_point_at_the_manifests(built: dict[str, Any], scope: str) -> None:
    msi = built["msi"][scope]
    rows = registry(msi)
    features = feature_of(msi)
    keypaths = {r["Component"]: r["KeyPath"] for r in table(msi, "Component")}
    for feature, (key, family) in NATIVE_KEYS.items():
        default = [r for r in rows if r["Key"] == key and r["Name"] == ""]
        assert len(default) == 1, (scope, key)
        row = default[0]
        assert row["Root"] == ROOTS[scope], (scope, key)
        assert row["Value"] == f"[INSTALLDIR]{HOST}.{family}.json"
        assert features[row["Component_"]] == feature
        assert keypaths[row["Component_"]] == row["Registry"]  # uninstall follows the key path
        # "-" with no value: the key itself goes on uninstall, not just its value.
        removal = [r for r in rows if r["Key"] == key and r["Name"] == "-"]
        assert [(r["Root"], r["Value"], r["Component_"]) for r in removal] == [
            (ROOTS[scope], "", row["Component_"])]
    # Nothing else registers the host: no key the platform layer would not know.
    hosts = {r["Key"] for r in rows if "NativeMessagingHosts" in r["Key"]}
    assert hosts == {key for key, _family in NATIVE_KEYS.values()}


def test_manifests_name_the_host_next_to_them(built: dict[str, Any]) -> None:
    payload: Path = built["payload"]
    chromium = json.loads((payload / f"{HOST}.chromium.json").read_text("utf-8"))
    firefox = json.loads((payload / f"{HOST}.firefox.json").read_text("utf-8"))
    for manifest in (chromium, firefox):
        assert manifest["name"] == HOST
        assert manifest["type"] == "stdio"
        # A bare name: both browsers resolve it against the manifest's directory on Windows.
        assert manifest["path"] == "imza-agent-native-host.exe"
    assert chromium["allowed_origins"] == [f"chrome-extension://{CHROMIUM_ID}/"]
    assert "allowed_extensions" not in chromium
    assert firefox["allowed_extensions"] == [FIREFOX_ID]
    assert "allowed_origins" not in firefox
    for scope in ROOTS:
        msi = built["msi"][scope]
        dirs = directories(msi)
        at_root = {r["FileName"].split("|")[-1] for r in table(msi, "File")
                   if dirs.get(_component_dir(msi, r["Component_"])) == PurePosixPath(".")}
        assert {f"{HOST}.chromium.json", f"{HOST}.firefox.json",
                "imza-agent-native-host.exe"} <= at_root


def _component_dir(msi: Path, component: str) -> str:
    return next(r["Directory_"] for r in table(msi, "Component") if r["Component"] == component)


@pytest.mark.parametrize("scope", list(ROOTS))
def test_start_at_login_and_start_menu(built: dict[str, Any], scope: str) -> None:
    msi = built["msi"][scope]
    run = [r for r in registry(msi) if r["Key"] == RUN_KEY]
    assert [(r["Root"], r["Name"], r["Value"]) for r in run] == [
        (ROOTS[scope], RUN_VALUE, '"[INSTALLDIR]imza-agentw.exe" run')]
    assert feature_of(msi)[run[0]["Component_"]] == "autostart"
    shortcuts = table(msi, "Shortcut")
    assert [(s["Directory_"], s["Name"], s["Target"], s["Arguments"], s["WkDir"])
            for s in shortcuts] == [
        ("ProgramMenuFolder", "imza-agent", "[INSTALLDIR]imza-agentw.exe", "run", "INSTALLDIR")]
    assert feature_of(msi)[shortcuts[0]["Component_"]] == "core"


# --- files, scope, uninstall ---------------------------------------------------------------

@pytest.mark.parametrize("scope", list(ROOTS))
def test_every_payload_file_is_installed_in_its_place(built: dict[str, Any], scope: str) -> None:
    msi = built["msi"][scope]
    payload: Path = built["payload"]
    dirs = directories(msi)
    components = {r["Component"]: r for r in table(msi, "Component")}
    installed = {dirs[components[f["Component_"]]["Directory_"]] / f["FileName"].split("|")[-1]
                 for f in table(msi, "File")}
    on_disk = {PurePosixPath(p.relative_to(payload).as_posix())
               for p in payload.rglob("*") if p.is_file()}
    assert installed == on_disk
    assert PurePosixPath("_internal/PySide6/plugins/platforms/qwindows.dll") in installed
    features = feature_of(msi)
    assert {features[f["Component_"]] for f in table(msi, "File")} == {"core"}


def test_per_user_needs_no_administrator(built: dict[str, Any]) -> None:
    msi = built["msi"]["user"]
    props = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    assert "ALLUSERS" not in props and "MSIINSTALLPERUSER" not in props
    info = subprocess.run(["msiinfo", "suminfo", str(msi)], capture_output=True, text=True,
                          check=True).stdout
    # Word count (msiinfo calls it "Source"): 2 compressed + 8 no elevation needed.
    assert re.search(r"^Source: 10\b", info, re.M), info
    dirs = {r["Directory"]: r for r in table(msi, "Directory")}
    assert dirs["INSTALLDIR"]["Directory_Parent"] == "UserPrograms"
    assert dirs["UserPrograms"]["Directory_Parent"] == "LocalAppDataFolder"
    assert dirs["UserPrograms"]["DefaultDir"] == "Programs"
    # Everything the per-user MSI writes in the registry is the user's own.
    assert {r["Root"] for r in registry(msi)} == {"1"}


def test_per_machine_installs_for_everyone(built: dict[str, Any]) -> None:
    msi = built["msi"]["machine"]
    props = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    assert props["ALLUSERS"] == "1"
    info = subprocess.run(["msiinfo", "suminfo", str(msi)], capture_output=True, text=True,
                          check=True).stdout
    assert re.search(r"^Source: 2\b", info, re.M), info
    assert re.search(r"^Template: x64;1033$", info, re.M), info
    dirs = {r["Directory"]: r for r in table(msi, "Directory")}
    assert dirs["INSTALLDIR"]["Directory_Parent"] == "ProgramFiles64Folder"
    assert {r["Root"] for r in registry(msi)} == {"2"}


@pytest.mark.parametrize("scope", list(ROOTS))
def test_uninstall_removes_what_install_added(built: dict[str, Any], scope: str) -> None:
    msi = built["msi"][scope]
    components = table(msi, "Component")
    files = {f["File"]: f for f in table(msi, "File")}
    regs = {r["Registry"]: r for r in registry(msi)}
    for comp in components:
        # A key path is what Windows Installer tracks the component by; 4 = registry key path.
        assert comp["KeyPath"], comp
        is_registry = int(comp["Attributes"]) & 4
        assert (comp["KeyPath"] in regs) if is_registry else (comp["KeyPath"] in files), comp
        assert int(comp["Attributes"]) & 256, comp  # 64-bit: the registry's native view
    if scope == "user":
        # ICE38/ICE64: in the profile no file is a key path, and every directory this MSI
        # creates is removed on uninstall (InstallMode 2).
        assert not any(c["KeyPath"] in files for c in components)
        dirs = directories(msi)
        removed = {r["DirProperty"] for r in table(msi, "RemoveFile")
                   if r["FileName"] == "" and r["InstallMode"] == "2"}
        assert set(dirs) <= removed
    else:
        assert sum(1 for c in components if c["KeyPath"] in files) == len(files)
    # The product's own key goes as a whole.
    assert any(r["Key"] == r"Software\imza-agent" and r["Name"] == "-" for r in regs.values())
    # What "Apps & Features" lists, and a newer version replacing this one.
    props = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    assert props["ARPPRODUCTICON"] in {i["Name"] for i in table(msi, "Icon")}
    assert props["ARPNOMODIFY"] == "1"
    assert props["ProductName"] == "imza-agent"
    upgrade = table(msi, "Upgrade")
    assert {u["UpgradeCode"] for u in upgrade} == {props["UpgradeCode"]}
    assert {u["ActionProperty"] for u in upgrade} == {"WIX_UPGRADE_DETECTED",
                                                       "WIX_DOWNGRADE_DETECTED"}
    sequence = {r["Action"] for r in table(msi, "InstallExecuteSequence")}
    assert {"RemoveExistingProducts", "RemoveRegistryValues", "RemoveFiles",
            "RemoveShortcuts"} <= sequence


@pytest.mark.parametrize("scope", list(ROOTS))
def test_tables_refer_to_rows_that_exist(built: dict[str, Any], scope: str) -> None:
    """What Windows Installer's validation (ICE) would catch first: a reference to a
    component, directory, feature or action that is not there."""
    msi = built["msi"][scope]
    t = tables(msi, "Component", "Directory", "Feature", "FeatureComponents", "File",
               "Registry", "Shortcut", "RemoveFile", "CustomAction", "InstallExecuteSequence")
    components = {c["Component"] for c in t["Component"]}
    dirs = {d["Directory"] for d in t["Directory"]}
    features = {f["Feature"] for f in t["Feature"]}
    assert {c["Directory_"] for c in t["Component"]} <= dirs
    for name in ("File", "Registry", "Shortcut", "RemoveFile"):
        assert {r["Component_"] for r in t[name]} <= components, name
    assert {r["Directory_"] for r in t["Shortcut"]} <= dirs
    assert {r["DirProperty"] for r in t["RemoveFile"]} <= dirs
    assert {r["Feature_"] for r in t["FeatureComponents"]} <= features
    # Every component belongs to a feature, or it would never be installed nor removed.
    assert {r["Component_"] for r in t["FeatureComponents"]} == components
    actions = {a["Action"] for a in t["CustomAction"]}
    scheduled = {r["Action"] for r in t["InstallExecuteSequence"]}
    assert actions <= scheduled
    numbers = [r["Sequence"] for r in t["InstallExecuteSequence"]]
    assert len(numbers) == len(set(numbers))  # no two actions at one step
    if scope == "user":  # nothing of the machine's
        assert not dirs & {"ProgramFiles64Folder", "CommonAppDataFolder", "POLICYDIR"}
        assert not any(r["Key"].startswith("Software\\Policies") for r in t["Registry"])


def test_the_two_msis_are_different_products(built: dict[str, Any]) -> None:
    codes = [{r["Property"]: r["Value"] for r in table(built["msi"][s], "Property")}
             for s in ROOTS]
    assert codes[0]["UpgradeCode"] != codes[1]["UpgradeCode"]
    user_guids = {c["ComponentId"] for c in table(built["msi"]["user"], "Component")}
    machine_guids = {c["ComponentId"] for c in table(built["msi"]["machine"], "Component")}
    assert not user_guids & machine_guids  # a component GUID names one set of resources


# --- public properties → features --------------------------------------------------------------

def _format(text: str, props: Mapping[str, str]) -> str:
    return re.sub(r"\[([A-Za-z_][A-Za-z0-9_.]*)\]", lambda m: props.get(m[1], ""), text)


def _condition(text: str, props: Mapping[str, str]) -> bool:
    """The conditions of the feature-choosing actions: terms joined by AND, each `NOT P`,
    `P`, `P = "v"` or `P >< "v"` (substring)."""
    if text.strip() == "1":
        return True
    result = True
    for term in text.split(" AND "):
        term = term.strip()
        if m := re.fullmatch(r'([A-Z_]+) = "([^"]*)"', term):
            ok = props.get(m[1], "") == m[2]
        elif m := re.fullmatch(r'([A-Z_]+) >< "([^"]*)"', term):
            ok = m[2] in props.get(m[1], "")
        elif m := re.fullmatch(r"NOT ([A-Za-z_]+)", term):
            ok = not props.get(m[1], "")
        elif re.fullmatch(r"[A-Z_]+", term):
            ok = bool(props.get(term, ""))
        else:
            raise AssertionError(f"condition this test cannot evaluate: {term!r}")
        result = result and ok
    return result


def addlocal(msi: Path, given: Mapping[str, str]) -> list[str]:
    """Runs the MSI's property-setting custom actions (type 51) before CostInitialize as
    Windows Installer would on a first install, and returns ADDLOCAL's feature list."""
    props = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    props.update(given)
    actions = {a["Action"]: a for a in table(msi, "CustomAction")}
    sequence = sorted(table(msi, "InstallExecuteSequence"), key=lambda r: int(r["Sequence"]))
    cost = next(int(r["Sequence"]) for r in sequence if r["Action"] == "CostInitialize")
    for row in sequence:
        action = actions.get(row["Action"])
        if action is None or int(action["Type"]) & 0x3F != 51:
            continue
        assert int(row["Sequence"]) < cost, row  # features are chosen before costing
        if _condition(row["Condition"], props):
            props[action["Source"]] = _format(action["Target"], props)
    features = props.get("ADDLOCAL", "").split(",")
    known = {f["Feature"] for f in table(msi, "Feature")}
    assert set(features) <= known, set(features) - known
    return features


BROWSER_FEATURES = ["chrome", "edge", "chromium", "brave", "firefox"]


def test_every_browser_the_platform_layer_knows_is_a_feature() -> None:
    assert sorted(BROWSERS) == sorted(BROWSER_FEATURES)


@pytest.mark.parametrize("scope", list(ROOTS))
def test_defaults_register_every_browser_and_start_at_login(
        built: dict[str, Any], scope: str) -> None:
    assert addlocal(built["msi"][scope], {}) == ["core", *BROWSER_FEATURES, "autostart"]


def test_properties_choose_browsers_and_autostart(built: dict[str, Any]) -> None:
    msi = built["msi"]["user"]
    assert addlocal(msi, {"BROWSERS": "chrome,firefox", "AUTOSTART": "0"}) == [
        "core", "chrome", "firefox"]
    # An administrator's own ADDLOCAL is left as given.
    assert addlocal(msi, {"ADDLOCAL": "core,edge"}) == ["core", "edge"]
    # The per-user MSI has no machine policy to write, whatever is asked.
    assert addlocal(msi, {"FORCE_EXTENSION": "1", "LOCKED": "1", "POLICY_FILE": "x"}) == [
        "core", *BROWSER_FEATURES, "autostart"]


def test_machine_properties_force_the_extension_and_set_policy(built: dict[str, Any]) -> None:
    msi = built["msi"]["machine"]
    assert addlocal(msi, {"BROWSERS": "chrome,edge,firefox", "FORCE_EXTENSION": "1"}) == [
        "core", "chrome", "edge", "firefox", "autostart", "force_chrome", "force_edge"]
    # Firefox installs an add-on only from a URL, so it needs one.
    assert addlocal(msi, {"BROWSERS": "firefox", "FORCE_EXTENSION": "1",
                          "FIREFOX_EXTENSION_URL": "https://x.example/a.xpi"}) == [
        "core", "firefox", "autostart", "force_firefox"]
    assert addlocal(msi, {"LOCKED": "1", "WS_ENABLED": "0", "TSA_URL": "http://tsa.example",
                          "POLICY_FILE": r"\\server\share\policy.toml"}) == [
        "core", *BROWSER_FEATURES, "autostart", "policy_locked", "policy_ws", "policy_tsa",
        "policy_file"]


def test_machine_policy_values_are_the_ones_the_agent_reads(built: dict[str, Any]) -> None:
    msi = built["msi"]["machine"]
    features = feature_of(msi)
    rows = {(r["Key"], r["Name"]): r for r in registry(msi)}
    written = {(key, name) for key, name in rows if key == POLICY_KEY}
    assert written == {(POLICY_KEY, "Locked"), (POLICY_KEY, "PlainWebSocket"),
                       (POLICY_KEY, "TsaUrl")}
    assert written <= POLICY_VALUES
    assert rows[(POLICY_KEY, "Locked")]["Value"] == "#[LOCKED]"  # '#': REG_DWORD
    assert rows[(POLICY_KEY, "PlainWebSocket")]["Value"] == "#[WS_ENABLED]"
    assert rows[(POLICY_KEY, "TsaUrl")]["Value"] == "[TSA_URL]"
    assert features[rows[(POLICY_KEY, "Locked")]["Component_"]] == "policy_locked"
    for vendor in (r"Google\Chrome", r"Microsoft\Edge"):
        row = rows[(rf"Software\Policies\{vendor}\ExtensionInstallForcelist", "[FORCELIST_INDEX]")]
        assert row["Value"] == "[EXTENSION_ID];[EXTENSION_UPDATE_URL]"
    props = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    assert props["EXTENSION_ID"] == CHROMIUM_ID
    firefox = rows[(r"Software\Policies\Mozilla\Firefox\Extensions\Locked", "[FORCELIST_INDEX]")]
    assert firefox["Value"] == FIREFOX_ID


def test_docs_list_every_public_property(built: dict[str, Any]) -> None:
    """docs/windows.md's property table names exactly the properties the MSIs read."""
    docs = (REPO / "docs" / "windows.md").read_text("utf-8")
    documented = {m[1]: m[2] for m in re.finditer(r"^\| `([A-Z_]+)` \| (both|machine) \|",
                                                   docs, re.M)}
    internal = {"INSTALLDIR", "POLICYDIR", "ADDLOCAL", "SystemFolder"}
    for scope in ROOTS:
        msi = built["msi"][scope]
        texts = [r["Value"] + r["Name"] for r in registry(msi)]
        texts += [a["Target"] for a in table(msi, "CustomAction")]
        texts += [r["Condition"] for r in table(msi, "InstallExecuteSequence")]
        used = set(re.findall(r"\[([A-Za-z_]+)\]", " ".join(texts)))
        used |= set(re.findall(r"\b([A-Z][A-Z_]{2,})\b", " ".join(
            r["Condition"] for r in table(msi, "InstallExecuteSequence"))))
        used -= internal | {"NOT", "AND", "OR"}
        used = {u for u in used if not u.startswith("IMZA_")}
        expected = {name for name, where in documented.items()
                    if where == "both" or scope == "machine"}
        assert used == expected, (scope, used ^ expected)
        assert len(expected) == (2 if scope == "user" else 11)


def test_policy_file_is_copied_in_and_removed_again(built: dict[str, Any]) -> None:
    msi = built["msi"]["machine"]
    actions = {a["Action"]: a for a in table(msi, "CustomAction")}
    sequence = {r["Action"]: r for r in table(msi, "InstallExecuteSequence")}
    at = {name: int(row["Sequence"]) for name, row in sequence.items()}
    copy, remove = actions["IMZA_CopyPolicyFile"], actions["IMZA_RemovePolicyFile"]
    for action in (copy, remove):
        kind = int(action["Type"])
        # 50: an executable named by a property; deferred (0x400), elevated (0x800).
        assert kind & 0x3F == 50 and kind & 0x400 and kind & 0x800, action
        assert action["Source"] == "IMZA_CMD"
    assert "[POLICY_FILE]" in copy["Target"] and "[POLICYDIR]policy.toml" in copy["Target"]
    assert "[POLICYDIR]policy.toml" in remove["Target"]
    assert at["InstallFiles"] < at["IMZA_CopyPolicyFile"] < at["InstallFinalize"]
    assert at["InstallInitialize"] < at["IMZA_RemovePolicyFile"] < at["RemoveFiles"]
    assert at["IMZA_SetCmd"] < at["InstallInitialize"]
    assert actions["IMZA_SetCmd"]["Target"] == "[SystemFolder]cmd.exe"
    # Only when the policy_file feature comes or goes.
    assert sequence["IMZA_CopyPolicyFile"]["Condition"] == "(&policy_file = 3) AND POLICY_FILE"
    assert sequence["IMZA_RemovePolicyFile"]["Condition"] == (
        "(&policy_file = 2) AND (!policy_file = 3)")
    dirs = {r["Directory"]: r for r in table(msi, "Directory")}
    assert dirs["POLICYDIR"]["Directory_Parent"] == "CommonAppDataFolder"
    assert any(r["DirProperty"] == "POLICYDIR" and r["InstallMode"] == "2"
               for r in table(msi, "RemoveFile"))


# --- the Group Policy template -------------------------------------------------------------------

NS = {"p": "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"}


def _admx() -> Any:
    return etree.parse(str(POLICY / "imza-agent.admx"))


def test_admx_policies_map_onto_the_keys_the_agent_reads() -> None:
    values: set[tuple[str, str]] = set()
    lists: set[str] = set()
    for policy in _admx().iterfind(".//p:policies/p:policy", NS):
        key = policy.get("key")
        assert key == POLICY_KEY or key.startswith(POLICY_KEY + "\\"), key
        if policy.get("valueName"):
            values.add((key, policy.get("valueName")))
            for state, number in (("enabledValue", "1"), ("disabledValue", "0")):
                decimal = policy.find(f"p:{state}/p:decimal", NS)
                assert decimal is not None and decimal.get("value") == number, policy.get("name")
        for element in policy.iterfind("p:elements/*", NS):
            tag = etree.QName(element).localname
            if tag == "list":
                lists.add(element.get("key"))
                assert element.get("key") == key
            else:
                values.add((element.get("key") or key, element.get("valueName")))
    assert values == POLICY_VALUES
    assert lists == POLICY_LISTS
    allow = _admx().find(".//p:list[@key='Software\\Policies\\imza-agent\\Allow']", NS)
    assert allow.get("explicitValue") == "true"  # value name = origin, data = permissions
    for name in ("Block", "RemoveDefault"):
        numbered = _admx().find(f".//p:list[@key='{POLICY_KEY}\\{name}']", NS)
        assert numbered.get("valuePrefix") == ""  # values 1, 2, ...


@pytest.mark.parametrize("language", LANGUAGES)
def test_adml_has_every_string_and_presentation(language: str) -> None:
    admx = _admx()
    text = (POLICY / "imza-agent.admx").read_text("utf-8")
    strings = set(re.findall(r"\$\(string\.([A-Za-z0-9_]+)\)", text))
    presentations = set(re.findall(r"\$\(presentation\.([A-Za-z0-9_]+)\)", text))
    adml = etree.parse(str(POLICY / language / "imza-agent.adml"))
    table_ = {s.get("id"): s.text or "" for s in adml.iterfind(".//p:stringTable/p:string", NS)}
    assert set(table_) == strings
    assert all(v.strip() for v in table_.values())
    shown = {p.get("id"): p for p in adml.iterfind(".//p:presentationTable/p:presentation", NS)}
    assert set(shown) == presentations
    for policy in admx.iterfind(".//p:policies/p:policy", NS):
        ref = re.fullmatch(r"\$\(presentation\.(\w+)\)", policy.get("presentation") or "")
        element_ids = {e.get("id") for e in policy.iterfind("p:elements/*", NS)}
        if ref is None:
            assert not element_ids, policy.get("name")
            continue
        assert {c.get("refId") for c in shown[ref[1]]} == element_ids, policy.get("name")
    if language != "en-US":  # translated, not copied
        english = etree.parse(str(POLICY / "en-US" / "imza-agent.adml"))
        en = {s.get("id"): s.text for s in english.iterfind(".//p:string", NS)}
        assert table_["Locked_Explain"] != en["Locked_Explain"]


# --- the frozen program's entry (PyInstaller) ---------------------------------------------------

def test_frozen_entry_runs_modules_like_python_dash_m(tmp_path: Path) -> None:
    """The agent starts helpers as `sys.executable -m MODULE ARGS`; in the frozen build that
    executable is entry.py's program, which must pass ARGS on to MODULE."""
    proc = subprocess.run(
        [sys.executable, str(WINDOWS / "entry.py"), "-m", "json.tool", "--sort-keys"],
        input='{"b": 1, "a": 2}', capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"a": 2, "b": 1}
    assert proc.stdout.index('"a"') < proc.stdout.index('"b"')  # --sort-keys reached it
    # The CLI directly, and the way the agent's launcher starts it (`-m agent.cli`).
    for args in (["--version"], ["-m", "agent.cli", "--version"]):
        version = subprocess.run([sys.executable, str(WINDOWS / "entry.py"), *args],
                                 capture_output=True, text=True, timeout=60, cwd=REPO)
        assert version.returncode == 0, version.stderr
        assert version.stdout.startswith("imza-agent "), (args, version.stdout)


# --- the macOS package recipe (pkgbuild runs on macOS only) -----------------------------------

MACOS = REPO / "installer" / "macos"


def test_macos_launch_agent_is_the_platform_layers() -> None:
    import plistlib

    shipped = plistlib.loads((MACOS / f"{LABEL}.plist").read_bytes())
    exe = "/Applications/imza-agent.app/Contents/MacOS/imza-agent"
    assert shipped == plistlib.loads(plist_bytes([exe, "run"]))
    entitlements = plistlib.loads((MACOS / "entitlements.plist").read_bytes())
    assert entitlements == {"com.apple.security.cs.disable-library-validation": True,
                            "com.apple.security.cs.allow-unsigned-executable-memory": True}


def test_macos_manifests_point_at_the_apps_native_host(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(MACOS / "manifests.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    written = {p.relative_to(tmp_path).as_posix(): json.loads(p.read_text("utf-8"))
               for p in tmp_path.rglob("*.json")}
    assert set(written) == {
        f"Library/Google/Chrome/NativeMessagingHosts/{HOST}.json",
        f"Library/Application Support/Chromium/NativeMessagingHosts/{HOST}.json",
        f"Library/Microsoft/Edge/NativeMessagingHosts/{HOST}.json",
        f"Library/Application Support/Mozilla/NativeMessagingHosts/{HOST}.json"}
    for where, manifest in written.items():
        assert manifest["path"] == (
            "/Applications/imza-agent.app/Contents/MacOS/imza-agent-native-host")
        if "Mozilla" in where:
            assert manifest["allowed_extensions"] == [FIREFOX_ID]
        else:
            assert manifest["allowed_origins"] == [f"chrome-extension://{CHROMIUM_ID}/"]


def test_macos_distribution_installs_the_component_package() -> None:
    dist = etree.parse(str(MACOS / "Distribution.xml")).getroot()
    refs = dist.findall("pkg-ref")
    assert {r.get("id") for r in refs} == {"az.imza.agent"}
    assert [r.text for r in refs if r.text] == ["imza-agent-component.pkg"]
    domains = dist.find("domains")
    assert domains.get("enable_localSystem") == "true"
    assert domains.get("enable_currentUserHome") == "false"
    build = (MACOS / "build-pkg.sh").read_text("utf-8")
    assert "--identifier az.imza.agent" in build and "imza-agent-component.pkg" in build
    assert "notarytool submit" in build and "stapler staple" in build
