"""`imza-agent demo`: the agent with the demo identity, the demo portal and a browser
pointed at it — the whole flow in one command.

The portal is a small relying party that ships inside the package (``server.py`` with
the checks any portal makes, ``verify.py``, ``verify_cms.py`` and ``pdf_desk.py`` on the
portal kit ``imza_portal``, and the page in ``static/``), so the command works from an
installed wheel. It is served with the agent's
own TLS certificate (issued for localhost by the per-machine CA): after
`imza-agent trust install` the browser shows no warning.
"""

from __future__ import annotations

import asyncio
import json
import sys
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from agent.config import Config
from agent.paths import data_dir, sub_dir

NEEDS_FORMATS = (
    "imza-agent demo: the demo portal needs the `formats` extra (pyHanko): the page signs "
    "its declaration with sign.cms and a PDF with sign.pdf or, the PDF staying on the "
    "server, with sign.hash; the portal prepares, finishes and verifies them.\n"
    "  Install it with: pip install 'imza-agent[formats]'\n"
    "  (from a wheel file: pip install 'imza_agent-<version>-py3-none-any.whl[formats]')")


def _ensure_agent(config_path: Path | None) -> dict[str, Any]:
    """Start the daemon unless one runs for this data dir; its runtime.json says where."""
    from agent.daemon.launcher import make_daemon_starter
    from agent.transport.local import SOCKET_NAME

    async def ensure() -> None:
        await make_daemon_starter(data_dir() / SOCKET_NAME, config_path)()

    asyncio.run(ensure())
    runtime = json.loads((data_dir() / "runtime.json").read_text(encoding="utf-8"))
    if not isinstance(runtime, dict):
        raise SystemExit("imza-agent demo: the agent's runtime.json is not an object")
    return runtime


def main(config: Config, config_path: Path | None, *, port: int, open_browser: bool) -> int:
    from agent.formats import available_formats

    if not {"cms", "pdf"} <= available_formats().keys():
        print(NEEDS_FORMATS, file=sys.stderr)
        return 2

    from agent.demo_portal.server import PortalServer
    from agent.tls.material import ensure_tls_material

    runtime = _ensure_agent(config_path)
    tls = ensure_tls_material(sub_dir("tls"))
    server = PortalServer(
        anchors=[data_dir() / "demo" / "demo-root-ca.pem"], host="127.0.0.1", port=port,
        public_host="localhost", cert=tls.cert_path, key=tls.key_path)
    ports = runtime.get("ports")
    query: dict[str, str] = {}
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
