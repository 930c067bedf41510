"""Issue 15 §2: shared machines. Each WebSocket transport may take the first free port of a
small range (``[server] port_range``: wss_port, wss_port+2, …), and the page SDK tries the
same range in order, skipping another user's agent (its peer check refuses the page like a
closed port) until its own agent answers.

The two-users test is real: ``root`` and ``nobody`` (via ``setpriv``, as
tests/test_peer_user.py does) each run an agent on this machine, and a page of each user
(the PACKED SDK in Node, whose WebSocket is a real client; a browser cannot be started as
``nobody`` here) reaches its own agent, never the other's. It needs root and fails, never
skips, when it cannot switch user.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import NO_KEYRING, REPO, Daemon, to_toml, with_test_grants
from packed_sdk import packed_sdk

from agent.config import ServerConfig
from agent.transport.websocket import range_ports

pytestmark = [pytest.mark.daemon]

ORIGIN = "https://portal.e-gov.az"
OTHER_USER, OTHER_GROUP, OTHER_UID = "nobody", "nogroup", 65534


# --- ports ----------------------------------------------------------------------------------

def _free_range(count: int) -> int:
    """A first port whose range (count ports, step 2) is free on IPv4 and IPv6 loopback now."""
    for _ in range(200):
        first = random.randrange(20000, 60000, 2)
        ports = range_ports(first, count)
        if all(_is_free(port) for port in ports):
            return first
    raise AssertionError("no free port range found")


def _is_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


@contextlib.contextmanager
def _held(*ports: int) -> Iterator[None]:
    """Another program listening on ``ports`` (127.0.0.1)."""
    with contextlib.ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", port))
            sock.listen()
        yield


def _runtime(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "runtime.json").read_text(encoding="utf-8"))
    return data


def _listening_uid(port: int) -> int | None:
    """The uid owning the listening socket on 127.0.0.1:port (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            return int(fields[7])
    return None


def test_the_range_setting() -> None:
    assert ServerConfig().port_range == 5
    # The documented defaults: wss on the even ports, ws on the odd, never overlapping.
    assert range_ports(29170, 5) == [29170, 29172, 29174, 29176, 29178]
    assert range_ports(29171, 5) == [29171, 29173, 29175, 29177, 29179]
    assert range_ports(29170, 1) == [29170]
    assert range_ports(0, 5) == [0]  # "any free port" (tests) is not a range
    assert range_ports(65534, 3) == [65534]  # never past the last port
    with pytest.raises(ValueError):
        ServerConfig(port_range=0)


def _doctor(daemon: Daemon) -> str:
    env = {**os.environ, "IMZA_AGENT_HOME": str(daemon.home),
           "IMZA_AGENT_SYSTEM_POLICY": str(daemon.home.parent / "none.toml")}
    done = subprocess.run([sys.executable, "-m", "agent.cli", "--config",
                           str(daemon.config_file), "doctor"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    return done.stdout + done.stderr


async def test_a_taken_port_sends_the_agent_to_the_next_of_its_range(tmp_path: Path) -> None:
    first = _free_range(5)
    with _held(first):
        daemon = Daemon(home=tmp_path / "home", modules=[], env={},
                        config={"server": {"wss_port": first, "ws_port": 0}}).start()
        try:
            runtime = _runtime(daemon.home)
            assert runtime["ports"]["wss"] == first + 2
            assert "wss" not in runtime["unavailable"]
            assert f"serving wss on {first + 2}" in daemon.log_text()
            # A page reaches it there (the Host header names the port it got).
            async with daemon.client(ORIGIN, "wss") as page:
                assert (await page.call("agent.info"))["protocol"] == 1
            assert f"wss {first + 2}" in _doctor(daemon)
        finally:
            assert daemon.stop() == 0


async def test_a_range_of_one_is_the_configured_port_only(tmp_path: Path) -> None:
    first = _free_range(2)
    with _held(first):
        daemon = Daemon(home=tmp_path / "home", modules=[], env={},
                        config={"server": {"wss_port": first, "ws_port": 0,
                                           "port_range": 1}}).start()
        try:
            runtime = _runtime(daemon.home)
            assert "wss" not in runtime["ports"]
            assert runtime["unavailable"] == {"wss": f"port {first} is used by another program"}
        finally:
            assert daemon.stop() == 0


async def test_the_whole_range_taken_is_unavailable(tmp_path: Path) -> None:
    first = _free_range(3)
    with _held(first, first + 2, first + 4):
        daemon = Daemon(home=tmp_path / "home", modules=[], env={},
                        config={"server": {"wss_port": first, "ws_port": 0,
                                           "port_range": 3}}).start()
        try:
            runtime = _runtime(daemon.home)
            assert set(runtime["ports"]) == {"ws"}  # the other transport still serves
            why = f"port {first} is used by another program"
            assert runtime["unavailable"] == {"wss": why}
            log = daemon.log_text()
            assert f"every port of the wss range is taken: {first}, {first + 2}, {first + 4}" \
                in log
            assert f"{why}; pages cannot reach the agent over wss" in log
            assert "Traceback" not in log
        finally:
            assert daemon.stop() == 0


# --- the SDK's side of the range (tests/sdk_fake_page.mjs: a scripted WebSocket) -------------

FAKE_PAGE = REPO / "tests" / "sdk_fake_page.mjs"
SDK_SOURCE = REPO / "extension" / "sdk" / "imza.js"
FAST = {"extensionTimeout": 200, "socketTimeout": 300, "infoTimeout": 300}


def _fake_page(plan: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the page SDK"
    plan = {**plan, "options": {**FAST, **plan.get("options", {})}}
    done = subprocess.run([node, str(FAKE_PAGE), SDK_SOURCE.as_uri(), json.dumps(plan)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_sdk_tries_the_documented_range_in_order() -> None:
    result = _fake_page({"extension": None, "ws": {"open": "refuse"},
                         "options": {"transports": ["wss"]}})
    assert result["seen"]["sockets"] == [f"wss://127.0.0.1:{p}/v1"
                                         for p in (29170, 29172, 29174, 29176, 29178)]
    assert result["connectError"]["kind"] == "AGENT_NOT_RUNNING"
    urls = [a.get("url") for a in result["connectError"]["data"]["attempts"]]
    assert urls == result["seen"]["sockets"]
    smaller = _fake_page({"extension": None, "ws": {"open": "refuse"},
                          "options": {"transports": ["wss"], "portRange": 2}})
    assert smaller["seen"]["sockets"] == ["wss://127.0.0.1:29170/v1",
                                          "wss://127.0.0.1:29172/v1"]
    one = _fake_page({"extension": None, "ws": {"open": "refuse"},
                      "options": {"transports": ["wss"], "wssUrl": "wss://127.0.0.1:1/v1"}})
    assert one["seen"]["sockets"] == ["wss://127.0.0.1:1/v1"]


def test_the_sdk_stops_at_the_first_agent_that_answers() -> None:
    info = {"result": {"name": "imza-agent", "version": "0.1.0", "protocol": 1}}
    found = _fake_page({"extension": None, "ws": {"open": "opened",
                                                  "answers": {"agent.info": info}},
                        "options": {"transports": ["wss"]}})
    assert found["connected"] == "wss"
    assert found["seen"]["sockets"] == ["wss://127.0.0.1:29170/v1"]
    # The user's own agent refusing this site is an answer: no other port is tried.
    refused = _fake_page({"extension": None, "ws": {"open": "opened", "closeOnSend": {
        "method": "agent.info", "code": 1008, "reason": "refused: origin is blocked"}},
        "options": {"transports": ["wss"]}})
    assert refused["connectError"]["kind"] == "SITE_REFUSED"
    assert refused["seen"]["sockets"] == ["wss://127.0.0.1:29170/v1"]
    # A port that accepts and never answers is skipped after its timeout.
    stalled = _fake_page({"extension": None, "ws": {"open": "hang"},
                          "options": {"transports": ["wss"], "portRange": 2}})
    assert len(stalled["seen"]["sockets"]) == 2
    assert stalled["connectError"]["kind"] == "TIMED_OUT"


# --- two OS users ---------------------------------------------------------------------------

def _as_other_user() -> list[str]:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.fail("this test runs a second agent as the user 'nobody': run it as root on "
                    "a machine with setpriv (util-linux)")
    return [setpriv, f"--reuid={OTHER_USER}", f"--regid={OTHER_GROUP}", "--clear-groups"]


class OtherUsersAgent:
    """An agent run as ``nobody``, with a home of its own (the Daemon helper runs as us)."""

    def __init__(self, root: Path, first_port: int, port_range: int) -> None:
        self.root = root
        self.home = root / "agent-home"
        self.user_home = root / "user-home"
        for path in (self.home, self.user_home):
            path.mkdir(parents=True)
            os.chown(path, OTHER_UID, -1)
        self.config = root / "config.toml"
        self.config.write_text(to_toml({
            "server": {"wss_port": first_port, "ws_enabled": False, "port_range": port_range},
            "tokens": {"known_modules": False, "modules": []},
            "ui": {"backend": "scripted", "answers_file": str(root / "answers.json")}}),
            encoding="utf-8")
        (root / "answers.json").write_text("{}", encoding="utf-8")
        # The test administrator's grants, as the Daemon helper gives our agent.
        (root / "policy.toml").write_text(to_toml(with_test_grants(None)), encoding="utf-8")
        self.log = root / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.user_home),
               "XDG_CONFIG_HOME": str(self.user_home / ".config"),
               "XDG_DATA_HOME": str(self.user_home / ".local/share"),
               "IMZA_AGENT_HOME": str(self.home), "PYTHON_KEYRING_BACKEND": NO_KEYRING,
               "IMZA_AGENT_SYSTEM_POLICY": str(self.root / "policy.toml"),
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*_as_other_user(), sys.executable, "-m", "agent.cli", "--config",
                 str(self.config), "run", "--headless"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_text()[-4000:]
            with contextlib.suppress(FileNotFoundError, ValueError):
                info = _runtime(self.home)
                if info.get("ports") and "stores_ready" in info.get("timings", {}):
                    return info
            time.sleep(0.1)
        raise AssertionError("nobody's agent did not start:\n" + self.log_text()[-4000:])

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") \
            if self.log.exists() else ""


# A page of one user: the packed SDK in Node with no extension behind it. Node's WebSocket
# sends no Origin header of its own; a browser always does, so the stand-in adds the page's.
PAGE = """
const [sdkUrl, origin, options] = [process.argv[1], process.argv[2], JSON.parse(process.argv[3])];
const NodeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class extends NodeWebSocket {
  constructor(url) { super(url, { headers: { Origin: origin } }); }
};
globalThis.window = Object.assign(new EventTarget(), {
  postMessage() {},
  location: { origin },
});
const sdk = await import(sdkUrl);
try {
  const agent = await sdk.connect(options);
  console.log(JSON.stringify({ url: agent.url, info: agent.agent }));
  agent.close();
} catch (error) {
  console.log(JSON.stringify({ kind: error.kind, reason: error.reason,
    attempts: error.data?.attempts }));
}
process.exit(0);
"""


def _page(sdk: Path, ca_file: Path, urls: list[str], user: list[str]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the page SDK"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(ca_file.parent),
           "NODE_EXTRA_CA_CERTS": str(ca_file)}
    options = {"transports": ["extension", "wss"], "extensionTimeout": 200,
               "wssUrls": urls, "socketTimeout": 5000}
    done = subprocess.run(
        [*user, node, "--experimental-websocket", "--no-warnings", "--input-type=module",
         "-e", PAGE, sdk.as_uri(), ORIGIN, json.dumps(options)],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_two_users_each_reach_their_own_agent(tmp_path: Path) -> None:
    other = _as_other_user()
    count = 3
    first = _free_range(count)
    urls = [f"wss://127.0.0.1:{port}/v1" for port in range_ports(first, count)]
    # Somewhere both users can read: our tmp_path is root's alone.
    shared = Path(tempfile.mkdtemp(prefix="imza-two-users-"))
    shared.chmod(0o755)
    theirs = OtherUsersAgent(shared / "nobody", first, count)
    ours: Daemon | None = None
    try:
        # nobody's agent comes first and takes the first port ...
        their_info = theirs.start()
        their_port = int(their_info["ports"]["wss"])
        assert their_port == first
        assert _listening_uid(their_port) == OTHER_UID
        # ... so ours, with the same configuration, takes the next one.
        ours = Daemon(home=tmp_path / "home", modules=[], env={},
                      config={"server": {"wss_port": first, "ws_enabled": None,
                                         "port_range": count}}).start()
        our_port = ours.ports["wss"]
        assert our_port == first + 2
        assert _listening_uid(our_port) == 0

        # Each page trusts BOTH agents' certificates (as if both CAs were in one machine
        # store): only the agents' peer check keeps a page from the other user's agent.
        sdk = shared / "imza.js"
        shutil.copyfile(packed_sdk().module, sdk)
        ca_file = shared / "both-cas.pem"
        ca_file.write_text((theirs.home / "tls" / "ca.pem").read_text() +
                           (ours.home / "tls" / "ca.pem").read_text())
        for path in (sdk, ca_file):
            path.chmod(0o644)

        mine = _page(sdk, ca_file, urls, [])
        assert "url" in mine, mine
        assert _port_of(mine["url"]) == our_port, mine  # skipped nobody's agent on `first`
        assert mine["info"]["name"] == "imza-agent" and mine["info"]["origin"] == ORIGIN
        refusal = "reason=the connection comes from another OS user's program"
        assert refusal in theirs.log_text()  # nobody's agent refused root's page

        their_page = _page(sdk, ca_file, urls, other)
        assert "url" in their_page, their_page
        assert _port_of(their_page["url"]) == their_port
        assert their_page["info"]["origin"] == ORIGIN

        # nobody's page offered only root's agent: refused, and it looks exactly like a
        # port where nothing listens (the page cannot tell another user's agent is there).
        closed = f"wss://127.0.0.1:{first + 2 * count}/v1"
        assert _is_free(first + 2 * count)
        offered = _page(sdk, ca_file, [urls[1], closed], other)
        assert "url" not in offered, offered
        assert offered["kind"] == "AGENT_NOT_RUNNING"
        tried = [a for a in offered["attempts"] if a["transport"] == "wss"]
        assert [a["url"] for a in tried] == [urls[1], closed]
        assert [(a["kind"], a["reason"]) for a in tried] == [
            ("AGENT_NOT_RUNNING", "AGENT_UNAVAILABLE")] * 2
        assert refusal in ours.log_text()
    finally:
        if ours is not None:
            assert ours.stop() == 0, ours.log_text()[-3000:]
        assert theirs.stop() == 0, theirs.log_text()[-3000:]
        shutil.rmtree(shared, ignore_errors=True)
