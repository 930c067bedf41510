"""Issue 17 bar 4 end to end in real Chromium (Debian's, driven by
tests/e2e/sdk_upload_browser.mjs): the packed page SDK, on the demo portal's https origin,
signs a 5 MB PDF through the real agent over wss:// with ``uploadThreshold`` lowered to
64 KiB. The PDF crosses the wire once, as raw binary frames (``document.upload``), never
as base64 in a text frame; the signed PDF comes back as a binary frame holding what the
signature appended, and the SDK hands the page the whole signed PDF, which poppler
(pdfsig) accepts.
"""

from __future__ import annotations

import base64
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
from test_large_documents import large_pdf

from agent.demo_portal.server import PortalServer

pytestmark = [pytest.mark.browser, pytest.mark.daemon, pytest.mark.verifiers]

PIN = "0000"  # the demo identity's documented PIN
DOCUMENT_BYTES = 5 * 1024 * 1024
THRESHOLD = 64 * 1024
# A text frame larger than this would be carrying the document (or the signed one).
SMALL_FRAME = 64 * 1024


@dataclass
class Bed:
    tmp: Path
    portal: PortalServer
    agent: Daemon
    browser_home: Path  # HOME with an NSS db trusting the agent's CA


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    require_chromium_tools()
    with tempfile.TemporaryDirectory(prefix="imza-e2e-upload-") as tmp_text:
        tmp = Path(tmp_text)
        with portal_with_demo_agent(tmp, PIN) as (portal, agent):
            yield Bed(tmp, portal, agent, trusting_home(agent, tmp / "browser-home"))


def _run_browser(bed: Bed, pdf_path: Path) -> dict[str, Any]:
    wss_url = f"wss://127.0.0.1:{bed.agent.ports['wss']}/v1"
    plan = {"userDataDir": str(bed.tmp / "profile"), "hosts": ["portal.test"],
            "spki": [spki_hash(bed.portal.cert_path)], "home": str(bed.browser_home),
            "origin": bed.portal.origin, "publicPort": bed.portal.port,
            "url": f"{bed.portal.origin}/?wss={wss_url}&ws={bed.agent.url('ws')}",
            "wssUrl": wss_url, "sdk": str(packed_sdk().module), "pdfPath": str(pdf_path),
            "uploadThreshold": THRESHOLD}
    plan_file = bed.tmp / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    done = subprocess.run(["node", str(E2E / "sdk_upload_browser.mjs"), str(plan_file)],
                          cwd=E2E, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result["failure"]
    served_packed(result)
    return result


def test_a_5_mb_pdf_is_signed_through_the_sdk_as_binary_frames(bed: Bed) -> None:
    original = large_pdf(DOCUMENT_BYTES, b"sdk-upload")
    pdf_path = bed.tmp / "large-document.pdf"
    pdf_path.write_bytes(original)
    result = _run_browser(bed, pdf_path)
    assert "error" not in result, result["error"]
    assert result["transport"] == "wss"
    assert "document.upload" in result["features"]
    assert result["documentSize"] == len(original)

    sent, received = result["frames"]["sent"], result["frames"]["received"]
    methods = [f["method"] for f in sent if f["type"] == "text"]
    assert methods == ["agent.info", "certificates.select", "document.upload", "sign.pdf"]
    # the document went once, as raw bytes: exactly its size in binary frames, and no
    # text frame either way large enough to hold it (or the signed PDF) as base64
    assert sum(f["length"] for f in sent if f["type"] == "binary") == len(original)
    assert max(f["length"] for f in sent + received if f["type"] == "text") < SMALL_FRAME
    # the signed PDF came back as one binary frame, without the original in it again
    answer_bytes = [f["length"] for f in received if f["type"] == "binary"]
    assert len(answer_bytes) == 1 and 0 < answer_bytes[0] < len(original) // 10

    signed = base64.b64decode(result["pdf"], validate=True)
    assert signed[:len(original)] == original  # an incremental update of the page's PDF
    assert len(signed) - answer_bytes[0] <= len(original)  # the rest was the prefix
    assert "DEMO" in valid_pdfsig(signed, bed.tmp / "signed.pdf")
