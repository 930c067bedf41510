// The page SDK (extension/sdk/imza.js) against a real agent: its large documents go as
// document.upload + binary frames, and what it hands the page is the whole signed document.
// The page's WebSocket is `ws`'s (browser-like API), made to send the page's Origin as a
// browser does. tests/test_document_upload_sdk.py runs it and checks the outputs.
//
//   node tests/test_document_upload_sdk.mjs <sdk URL> <ws module URL> '<plan>'
//
// plan: {url, origin, serial, pdf: path, content: path, out: directory}

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [sdkUrl, wsModule, planText] = process.argv.slice(2);
const plan = JSON.parse(planText);
const { default: WsWebSocket } = await import(wsModule);

const sent = { text: 0, binary: 0, binaryBytes: 0 };
const received = { binary: 0 };

class PageWebSocket extends WsWebSocket {
  constructor(url) {
    super(url, { origin: plan.origin, maxPayload: 0 });
    this.addEventListener("message", (event) => {
      if (typeof event.data !== "string") received.binary += 1;
    });
  }

  send(data) {
    if (typeof data === "string") sent.text += 1;
    else { sent.binary += 1; sent.binaryBytes += data.byteLength; }
    super.send(data);
  }
}
globalThis.WebSocket = PageWebSocket;

const sdk = await import(sdkUrl);
const result = { sent, received };
try {
  const agent = await sdk.connect({ transports: ["ws"], allowInsecureWs: true,
    wsUrl: plan.url });
  const chosen = await agent.selectCertificate({ purpose: "sign",
    filter: { subjectSerialNumber: plan.serial } });
  const pdf = new Uint8Array(readFileSync(plan.pdf));
  const signed = await agent.signPdf({ handle: chosen.handle, level: "B-B", pdf });
  writeFileSync(join(plan.out, "signed.pdf"), sdk.fromBase64(signed.pdf));
  const content = new Uint8Array(readFileSync(plan.content));
  const cms = await agent.signCms({ handle: chosen.handle, hashAlgorithm: "SHA-256",
    level: "B", data: content });
  writeFileSync(join(plan.out, "signature.der"), sdk.fromBase64(cms.cms));
  result.uploadThreshold = agent.uploadThreshold;
  agent.close();
} catch (error) {
  result.error = { kind: error.kind, reason: error.reason, message: error.message };
}
console.log(JSON.stringify(result));
process.exit(0);
