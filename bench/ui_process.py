"""The UI process's memory next to the daemon's: a real `imza-agent run` in desktop mode.

A private Xvfb, the SoftHSM bed, ``[ui] backend = "qt"`` with the tray on: the daemon
starts ``python -m agent.ui.qt`` itself (docs/ui-process.md). PSS (``smaps_rollup``) is
read for the daemon with its PKCS#11 workers and, apart, for the UI process, at three
moments: idle after start, with the consent dialog up, and with the PIN dialog of a
``sign.pdf`` up (its pages rendered by pypdfium2). A dialog counts as up when the UI
process has a visible X window (xdotool); the page then leaves and the dialog goes with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent_process import AgentProcess, _pss_kib, _tree, rpc
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parent.parent
UI_MODULE = "agent.ui.qt"
STRANGER = "https://ui-bench.example"  # no grant: certificates.select asks for consent
WAIT = 60.0


@contextmanager
def xvfb() -> Iterator[str]:
    server = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24",
                               "-nolisten", "tcp"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    assert server.stdout is not None
    number = server.stdout.readline().strip()
    if not number.isdigit():
        raise RuntimeError("Xvfb did not start")
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait()


def desktop_config(base: Path, module: Path) -> Path:
    """Desktop mode: the Qt UI process with the tray, English; plain ws:// only (what the
    bench's client speaks), no rate limit, ports 0."""
    config = base / "config-desktop.toml"
    config.write_text(
        "[server]\nwss_port = 0\nws_port = 0\nws_enabled = true\nwss_enabled = false\n"
        "rate_per_second = 1000000.0\nrate_burst = 1000000\n"
        f"[tokens]\nknown_modules = false\nmodules = [{json.dumps(str(module))}]\n"
        "[ui]\nbackend = \"qt\"\ntray = true\nlanguage = \"en\"\ndialog_timeout = 120\n",
        encoding="utf-8")
    return config


class DesktopAgent(AgentProcess):
    """``imza-agent run`` without ``--headless``, drawing on ``display``."""

    def __init__(self, home: Path, config: Path, policy: Path, env: dict[str, str],
                 display: str) -> None:
        # A HOME of its own: desktop mode's first run trusts its certificate in the
        # browsers' stores under HOME, which must not be the user's.
        (home.parent / "desktop-home").mkdir(parents=True, exist_ok=True)
        super().__init__(home, config, policy, {**env, "DISPLAY": display,
                                                "QT_QPA_PLATFORM": "xcb",
                                                "HOME": str(home.parent / "desktop-home")})
        self.display = display

    async def start_desktop(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "runtime.json").unlink(missing_ok=True)
        log = (self.home.parent / f"{self.home.name}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "--config", str(self.config), "run"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        info = await self._poll(lambda i: bool(i and i.get("ports")))
        self.port = int(info["ports"]["ws"])
        await self._poll(lambda i: "stores_ready" in (i or {}).get("timings", {}))

    def ui_pid(self) -> int | None:
        assert self.process is not None
        for pid in _tree(self.process.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if UI_MODULE.encode() in argv:
                return pid
        return None

    async def wait_ui(self) -> int:
        deadline = time.monotonic() + WAIT
        while (pid := self.ui_pid()) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon started no UI process")
            await asyncio.sleep(0.1)
        return pid

    def memory(self) -> dict[str, Any]:
        """PSS KiB: the daemon and its workers (the UI process's subtree left out), and
        the UI process."""
        assert self.process is not None
        ui = self.ui_pid()
        ui_tree = set(_tree(ui)) if ui else set()
        daemon = [_pss_kib(p) for p in _tree(self.process.pid) if p not in ui_tree]
        return {"daemon": daemon, "ui": sum(_pss_kib(p) for p in ui_tree)}

    def windows(self, pid: int) -> list[str]:
        done = subprocess.run(["xdotool", "search", "--onlyvisible", "--pid", str(pid)],
                              env={**os.environ, "DISPLAY": self.display},
                              capture_output=True, text=True, check=False)
        return done.stdout.split()

    async def wait_window(self, pid: int, seen: set[str]) -> None:
        """A visible window of the UI process not seen before: the new dialog."""
        deadline = time.monotonic() + WAIT
        while not (new := set(self.windows(pid)) - seen):
            if time.monotonic() > deadline:
                raise RuntimeError("no dialog appeared")
            await asyncio.sleep(0.1)
        seen.update(new)
        await asyncio.sleep(1.5)  # drawn, previews rendered

    async def wait_no_window(self, pid: int) -> None:
        """The page left: the daemon closed its dialog."""
        deadline = time.monotonic() + WAIT
        while self.windows(pid):
            if time.monotonic() > deadline:
                raise RuntimeError("the dialog stayed after its page left")
            await asyncio.sleep(0.1)


def bench_pdf() -> bytes:
    sys.path.insert(0, str(REPO / "tests"))
    from ui_driver import document_pdf

    return document_pdf([[f"Contract page {n}", "Terms and conditions"] for n in range(1, 4)])


async def measure(bed: Any, base: Path, policy: Path) -> dict[str, Any]:
    """Idle, consent up, PIN-with-PDF up: daemon (+ workers) and UI process PSS."""
    out: dict[str, Any] = {}
    with xvfb() as display:
        agent = DesktopAgent(base / "desktop", desktop_config(base, bed.module), policy,
                             bed.env, display)
        try:
            await agent.start_desktop()
            ui = await agent.wait_ui()
            await asyncio.sleep(3.0)  # Qt loaded, the tray drawn
            out["idle"] = agent.memory()
            seen = set(agent.windows(ui))
            async with connect(f"ws://127.0.0.1:{agent.port}/v1", origin=STRANGER) as ws:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1,
                                          "method": "certificates.select",
                                          "params": {"purpose": "sign"}}))
                await agent.wait_window(ui, seen)
                out["consent"] = agent.memory()
            await agent.wait_no_window(ui)
            async with agent.connect() as ws:  # the bench origin's grant: no consent
                listed = await rpc(ws, "certificates.list", {"purpose": "sign"})
                handle = listed["certificates"][0]["handle"]
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "sign.pdf",
                                          "params": {"handle": handle, "level": "B-B",
                                                     "pdf": base64.b64encode(
                                                         bench_pdf()).decode()}}))
                await agent.wait_window(ui, seen)
                out["pin_pdf"] = agent.memory()
            await agent.wait_no_window(ui)
            await asyncio.sleep(1.0)
            out["after"] = agent.memory()
            out["ui_pid_unchanged"] = agent.ui_pid() == ui  # no crash, no restart
        finally:
            agent.stop()
    return out


def rows(ui: dict[str, Any]) -> list[tuple[str, str, str]]:
    def mib(kib: int) -> str:
        return f"{kib / 1024:.1f} MiB"

    out = []
    for key, what in (("idle", "idle, tray shown"), ("consent", "consent dialog up"),
                      ("pin_pdf", "PIN dialog with a 3-page PDF preview up"),
                      ("after", "after both dialogs closed")):
        m = ui[key]
        out.append((f"PSS desktop mode, {what}: daemon + {len(m['daemon']) - 1} workers"
                    " / UI process", f"{mib(sum(m['daemon']))} / {mib(m['ui'])}", ""))
    if not ui["ui_pid_unchanged"]:
        out.append(("UI process restarted during the run", "yes", "unexpected"))
    return out


def main() -> int:
    """This measure alone (bench/run.py runs it with the rest):
    ``.venv/bin/python bench/ui_process.py``."""
    import tempfile

    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from agent_process import write_files
    from testbed.pki import build_pki
    from testbed.softhsm import build_softhsm

    with tempfile.TemporaryDirectory(prefix="imza-bench-ui-") as tmp:
        base = Path(tmp)
        bed = build_softhsm(base / "softhsm", build_pki())
        spec = bed.tokens["A"]
        _config, policy = write_files(base, bed.module, bed.identity("ec_sign").common_name,
                                      spec.pin)
        found = asyncio.run(measure(bed, base, policy))
    print("| measure | daemon / UI process |\n|---|---|")
    for what, value, _bar in rows(found):
        print(f"| {what} | {value} |")
    return 0 if found["ui_pid_unchanged"] else 1


if __name__ == "__main__":
    sys.exit(main())
