"""The demo portal's page in real Chromium (Debian's, playwright-core from tests/e2e): the
third way to sign a PDF ("4. PDF on the server") and the server's check of the PDF signed
in the browser, pressed with the keyboard only, against a real agent with the demo
identity. The page must say what the server found, in the page's language, and the file
it offers must be the one the server checked. The page gets the packed SDK (the tarball
`npm pack extension/sdk` makes, tests/packed_sdk.py), as every browser test does."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_bed import (
    E2E,
    portal_with_demo_agent,
    require_chromium_tools,
    spki_hash,
    trusting_home,
    valid_pdfsig,
)
from daemon import Daemon
from packed_sdk import packed_sdk, served_packed

from agent.demo_portal.server import PortalServer, sample_pdf

pytestmark = [pytest.mark.browser, pytest.mark.daemon, pytest.mark.verifiers]


# The driver: written to a temporary file, importing playwright-core, the shared Chromium
# command line and the packed-SDK route from tests/e2e by absolute path.
DRIVER = """
import { readFileSync } from "node:fs";
import { chromium } from "%(playwright)s";
import { chromiumArgs } from "%(args)s";
import { routePackedSdk } from "%(packed)s";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const TIMEOUT = 90_000;
const result = {};

async function press(page, selector) {
  await page.focus(selector);
  result.focused = [...(result.focused || []),
    await page.evaluate(() => document.activeElement?.id || document.activeElement?.dataset.lang)];
  await page.keyboard.press("Enter");
}

async function read(page, area, verification) {
  return page.evaluate(([area, verification]) => {
    const outcome = document.getElementById(`${area}-outcome`);
    const checked = document.getElementById(verification);
    return { outcome: outcome.dataset.outcome || null, kind: outcome.dataset.kind || null,
      message: outcome.textContent, verified: checked.dataset.verified || null,
      lines: [...checked.querySelectorAll("li")].map((li) => li.textContent),
      title: checked.querySelector("strong")?.textContent ?? null };
  }, [area, verification]);
}

const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args: chromiumArgs(plan),
  env: { ...process.env, HOME: plan.home } });
try {
  await routePackedSdk(context, plan, result);  // /sdk/imza.js: the packed SDK
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") (result.console ||= []).push(m.text()); });
  await page.goto(plan.url);
  await page.waitForSelector("html[data-ready='yes']");
  await press(page, "#sign-pdf-server");
  await page.waitForFunction(() => ["done", "error"].includes(
    document.getElementById("server-pdf-outcome").dataset.outcome), null, { timeout: TIMEOUT });
  result.server = await read(page, "server-pdf", "server-pdf-verification");
  result.serverResult = await page.textContent("#server-pdf-result");
  result.download = await page.evaluate(async () => {
    const link = document.getElementById("server-download");
    if (link.hidden || !link.href) return null;
    const bytes = new Uint8Array(await (await fetch(link.href)).arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  });
  await press(page, "#sign-pdf");
  await page.waitForFunction(() => document.getElementById("pdf-verification").dataset.verified
    || document.getElementById("pdf-outcome").dataset.outcome === "error", null,
    { timeout: TIMEOUT });
  result.browser = await read(page, "pdf", "pdf-verification");
  await press(page, "#languages button[data-lang='ru']");
  await page.waitForFunction(() => document.documentElement.lang === "ru", null,
    { timeout: TIMEOUT });
  result.serverRu = await read(page, "server-pdf", "server-pdf-verification");
} catch (error) {
  result.failure = String(error && error.stack || error);
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(result) + "\\n");
"""


@dataclass
class Bed:
    tmp: Path
    portal: PortalServer
    agent: Daemon
    home: Path  # HOME whose NSS db trusts the agent's CA


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    require_chromium_tools()
    with tempfile.TemporaryDirectory(prefix="imza-portal-page-") as tmp_text:
        tmp = Path(tmp_text)
        with portal_with_demo_agent(tmp, "0000") as (portal, agent):
            yield Bed(tmp, portal, agent, trusting_home(agent, tmp / "home"))


def _drive(bed: Bed) -> dict[str, Any]:
    driver = bed.tmp / "driver.mjs"
    driver.write_text(DRIVER % {
        "playwright": (E2E / "node_modules" / "playwright-core" / "index.mjs").as_uri(),
        "args": (E2E / "chromium_args.mjs").as_uri(),
        "packed": (E2E / "packed_sdk.mjs").as_uri()}, encoding="utf-8")
    plan = {"userDataDir": str(bed.tmp / "profile"), "home": str(bed.home),
            "url": f"{bed.portal.origin}/?lang=en&wss={bed.agent.url('wss')}",
            "hosts": ["portal.test"], "spki": [spki_hash(bed.portal.cert_path)],
            "sdk": str(packed_sdk().module)}  # the page gets the packed SDK, not the source
    plan_file = bed.tmp / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    done = subprocess.run(["node", str(driver), str(plan_file)], cwd=E2E, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result["failure"]
    served_packed(result)  # the page got the packed SDK, not the source
    return result


def test_the_page_signs_on_the_server_and_shows_the_servers_check(bed: Bed) -> None:
    mark = bed.agent.transcript_mark()
    result = _drive(bed)
    assert result["focused"] == ["sign-pdf-server", "sign-pdf", "ru"]  # keyboard only
    server = result["server"]
    assert server["outcome"] == "done", server
    assert "signed on the server" in server["message"]
    assert server["verified"] == "valid" and server["title"] == "Server check"
    assert "The signature is valid." in server["lines"]
    assert "The certificate is issued by a CA this portal trusts." in server["lines"]
    assert "Level: PAdES-B-B" in server["lines"]
    # the same check, now in Russian
    assert result["serverRu"]["title"] == "Проверка сервера"
    assert "Подпись действительна." in result["serverRu"]["lines"]
    # the offered file is the one the server checked and recorded
    pdf = base64.b64decode(result["download"])
    assert pdf.startswith(sample_pdf())
    server_record, browser_record = bed.portal.portal.pdfs
    assert server_record["way"] == "server" and server_record["ok"] is True
    assert hashlib.sha256(pdf).hexdigest() == server_record["sha256"]
    assert server_record["sha256"] in result["serverResult"]
    assert "Signature is Valid." in valid_pdfsig(pdf, bed.tmp / "server-signed.pdf")
    # the PDF signed in the browser (sign.pdf) was checked on the server too
    assert browser_record == {"way": "browser", "sha256": browser_record["sha256"], "ok": True}
    assert result["browser"]["verified"] == "valid"
    assert "The signature is valid." in result["browser"]["lines"]
    # one certificate and one PIN dialog per signature, each naming the document
    pins = [d for d in bed.agent.transcript(mark) if d.get("dialog") == "pin"]
    assert [d.get("document_name") for d in pins] == ["arayis.pdf", "arayis.pdf"]
    assert [m for m in result.get("console", []) if "demo portal:" in m] == []
