"""`imza-agent demo`: the agent with the demo identity, the demo portal
(examples/portal/) and a browser pointed at it — the whole flow in one command.

The portal is served with the agent's own TLS certificate (issued for localhost by the
per-machine CA), so after `imza-agent trust install` the browser shows no warning.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import webbrowser
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

from agent.config import Config
from agent.paths import data_dir, sub_dir

PORTAL_DIR = Path(__file__).resolve().parents[2] / "examples" / "portal"


def _load_portal() -> ModuleType:
    path = PORTAL_DIR / "server.py"
    if not path.is_file():
        raise SystemExit("imza-agent demo: the demo portal (examples/portal/) is not "
                         "installed; run it from a source checkout")
    spec = importlib.util.spec_from_file_location("imza_demo_portal", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _ensure_agent(config_path: Path | None) -> dict[str, object]:
    from agent.nativehost import SOCKET_NAME, make_daemon_starter

    asyncio.run(make_daemon_starter(data_dir() / SOCKET_NAME, config_path)())
    return json.loads((data_dir() / "runtime.json").read_text(encoding="utf-8"))


def main(config: Config, config_path: Path | None, *, port: int, open_browser: bool) -> int:
    from agent.tls.material import ensure_tls_material

    portal_module = _load_portal()
    runtime = _ensure_agent(config_path)
    tls = ensure_tls_material(sub_dir("tls"))
    server = portal_module.PortalServer(
        anchors=[data_dir() / "demo" / "demo-root-ca.pem"], host="127.0.0.1", port=port,
        public_host="localhost", cert=tls.cert_path, key=tls.key_path)
    ports = runtime.get("ports") or {}
    query = {}
    if isinstance(ports, dict):
        query = {name: f"{name}://127.0.0.1:{p}/v1" for name, p in ports.items()}
    url = f"{server.origin}/" + (f"?{urlencode(query)}" if query else "")
    print(f"imza-agent demo: agent pid {runtime.get('pid')}, portal {url}\n"
          "  demo identity PIN: 0000; stop the portal with Ctrl-C "
          "(the agent keeps running)", flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `imza-agent demo`")
