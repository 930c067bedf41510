"""Issue 11 §3: the page SDK (extension/sdk/imza.js) never falls back to plain ws:// on its
own. A squatter that took the ws port and speaks the protocol well enough to pass
``agent.info`` receives nothing from a page that did not opt in with
``allowInsecureWs: true``.

The SDK runs unchanged in Node (its WebSocket is Node's own client; ``window`` is a stand-in
with no extension behind it); the squatter is a real WebSocket server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from typing import Any

import pytest
from daemon import REPO
from websockets.asyncio.server import ServerConnection, serve

SDK = REPO / "extension" / "sdk" / "imza.js"

SCRIPT = """
const [sdkUrl, options] = [process.argv[1], JSON.parse(process.argv[2])];
const target = new EventTarget();
globalThis.window = Object.assign(target, {
  postMessage() {},  // no extension content script on this "page"
  location: { origin: "https://portal.example" },
});
const sdk = await import(sdkUrl);
try {
  const agent = await sdk.connect(options);
  console.log(JSON.stringify({ connected: agent.transport }));
  agent.close();
} catch (error) {
  console.log(JSON.stringify({ reason: error.reason, attempts: error.data?.attempts }));
}
process.exit(0);
"""


class Squatter:
    """A WebSocket server on a port the agent would use, posing as the agent."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[dict[str, Any]] = []

    async def handler(self, conn: ServerConnection) -> None:
        self.connections += 1
        async for message in conn:
            request = json.loads(message)
            self.requests.append(request)
            await conn.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {
                "name": "imza-agent", "version": "9.9", "protocol": 1}}))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed


async def _connect(options: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the page SDK"
    process = await asyncio.create_subprocess_exec(
        node, "--experimental-websocket", "--no-warnings", "--input-type=module", "-e",
        SCRIPT, SDK.as_uri(), json.dumps(options),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


@pytest.fixture
async def squatter() -> Any:
    squat = Squatter()
    async with serve(squat.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield squat, f"ws://127.0.0.1:{port}/v1"


async def test_the_sdk_does_not_fall_back_to_ws_on_its_own(squatter: Any) -> None:
    squat, ws_url = squatter
    # The default transports, with the real agent's wss:// unreachable (e.g. port taken).
    result = await _connect({"wssUrl": f"wss://127.0.0.1:{_closed_port()}/v1",
                             "wsUrl": ws_url, "extensionTimeout": 200})
    assert "connected" not in result
    assert result["reason"] == "EXTENSION_UNAVAILABLE"
    tried = {a["transport"]: a for a in result["attempts"]}
    assert set(tried) == {"extension", "wss", "ws"}
    assert tried["ws"]["message"].startswith("not tried")
    assert squat.connections == 0 and squat.requests == []


async def test_ws_is_used_only_when_the_page_opts_in(squatter: Any) -> None:
    squat, ws_url = squatter
    result = await _connect({"transports": ["wss", "ws"], "allowInsecureWs": True,
                             "wssUrl": f"wss://127.0.0.1:{_closed_port()}/v1",
                             "wsUrl": ws_url})
    # Which is exactly why it is opt-in: whoever holds the port is "the agent".
    assert result == {"connected": "ws"}
    assert squat.connections == 1 and squat.requests[0]["method"] == "agent.info"
