// Drives Debian's Chromium for tests/e2e/test_sdk_upload_browser.py: on the demo portal's
// https origin, the packed page SDK connects to the real agent over wss://, with
// uploadThreshold lowered, and signs a large PDF given as bytes. Every frame the page's
// WebSocket sends and receives is recorded (type and size), and the signed PDF the SDK
// returned (base64) is printed with them as one JSON line.
//
//   node tests/e2e/sdk_upload_browser.mjs plan.json
//
// plan: {userDataDir, hosts, spki, home, origin, publicPort, url, wssUrl, sdk, pdfPath,
//        uploadThreshold}
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

import { chromiumArgs } from "./chromium_args.mjs";
import { routePackedSdk } from "./packed_sdk.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const PDF_PATH = "/large-document.pdf";

const result = {};
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args: chromiumArgs(plan),
  env: { ...process.env, HOME: plan.home },
});
try {
  await routePackedSdk(context, plan, result);
  await context.route((url) => url.pathname === PDF_PATH,
    (route) => route.fulfill({ status: 200, contentType: "application/pdf", path: plan.pdfPath }));
  await context.grantPermissions(["local-network-access"], { origin: plan.origin });
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") (result.console ||= []).push(message.text());
  });
  await page.goto(plan.url);
  await page.waitForSelector("html[data-ready='yes']");
  Object.assign(result, await page.evaluate(async ({ wssUrl, uploadThreshold, pdfPath }) => {
    // The page's WebSocket, watched: what crosses the wire, frame by frame.
    const frames = { sent: [], received: [] };
    const Native = window.WebSocket;
    window.WebSocket = class WatchedWebSocket extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener("message", (event) => frames.received.push(
          typeof event.data === "string" ? { type: "text", length: event.data.length }
            : { type: "binary", length: event.data.byteLength ?? event.data.size }));
      }

      send(data) {
        frames.sent.push(typeof data === "string"
          ? { type: "text", length: data.length, method: JSON.parse(data).method }
          : { type: "binary", length: data.byteLength ?? data.size });
        return super.send(data);
      }
    };
    const sdk = await import("/sdk/imza.js");
    const out = { frames };
    try {
      const agent = await sdk.connect({ transports: ["wss"], wssUrl, uploadThreshold });
      out.transport = agent.transport;
      out.features = agent.agent.features ?? null;
      const chosen = await agent.selectCertificate({ purpose: "sign" });
      const document = new Uint8Array(await (await fetch(pdfPath)).arrayBuffer());
      out.documentSize = document.byteLength;
      const { pdf } = await agent.signPdf({ handle: chosen.handle, pdf: document, level: "B-B",
        display: { documentName: "large-document.pdf" } });
      out.pdf = pdf;
      agent.close();
    } catch (error) {
      out.error = { kind: error.kind, reason: error.reason, message: error.message,
        data: error.data };
    }
    return out;
  }, { wssUrl: plan.wssUrl, uploadThreshold: plan.uploadThreshold, pdfPath: PDF_PATH }));
} catch (error) {
  result.failure = String(error && error.stack || error);
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
