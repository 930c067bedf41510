// The page SDK (extension/sdk/imza.js, unchanged) in Node against a small WebSocket server
// that speaks the upload contract (docs/protocol.md, "Large documents"): agent.info,
// document.upload, binary frames filling the oldest incomplete upload, documents named by
// {"upload": id}, answers as {"binary": N} / {"binary": N, "prefix": M} followed by one
// binary frame. Node's own WebSocket client (--experimental-websocket: the WHATWG one,
// binaryType "blob" by default as in a browser) is the page's; `ws` is the server.
// tests/test_sdk_upload.py writes the plan and asserts on the JSON line printed.
//
//   node --experimental-websocket tests/test_sdk_upload_page.mjs <sdk URL> <ws module> '<plan>'
//
// plan: {
//   features: [..] | null,                 // agent.info's features (null: not listed)
//   options: {...},                        // connect()'s, besides the URL
//   reply: "prefix" | "binary" | "binary-null-prefix" | "zero" | "terminate-after-answer" |
//          "half-then-terminate" | "text-before-bytes",  // how an upload's call is answered
//   terminateAfterUploadBytes?: n,         // drop the connection once n uploaded bytes came
//   delayFirstUploadAnswer?: ms,           // answer the first document.upload late
//   calls: [{method, documents: {member: {size, as: "bytes"|"buffer"|"base64", seed}},
//            params?: {...}}]              // started together, answered in any order
// }

import { createHash, randomBytes } from "node:crypto";

const [sdkUrl, wsModule, planText] = process.argv.slice(2);
const plan = JSON.parse(planText);
const { WebSocketServer } = await import(wsModule);

const OUTPUT = { "sign.pdf": "pdf", "sign.cms": "cms", "signature.extend": "signature" };
const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
const pattern = (size, seed) => Buffer.from(Array.from({ length: size },
  (_, i) => (i * 31 + seed * 7 + (i >> 8)) & 255));

// --- the server --------------------------------------------------------------------------
const seen = { frames: [], uploads: [], requests: [], violations: [], expected: [] };
const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
await new Promise((resolve) => server.on("listening", resolve));
const url = `ws://127.0.0.1:${server.address().port}/v1`;

server.on("connection", (socket) => {
  const uploads = new Map(); // id -> {size, chunks, received, frames}
  const order = []; // ids in the order they were announced
  let received = 0;
  let uploadAnswers = 0;
  const sendJson = (message) => socket.send(JSON.stringify({ jsonrpc: "2.0", ...message }));

  socket.on("message", (data, isBinary) => {
    if (isBinary) {
      seen.frames.push({ type: "binary", length: data.length });
      const waiting = order.map((id) => uploads.get(id)).find((u) => u && u.received < u.size);
      if (!waiting || waiting.received + data.length > waiting.size) {
        seen.violations.push(waiting ? "past the declared size" : "no upload waiting");
        socket.close(1008, "unexpected binary frame");
        return;
      }
      waiting.chunks.push(Buffer.from(data));
      waiting.received += data.length;
      waiting.frames += 1;
      received += data.length;
      if (plan.terminateAfterUploadBytes !== undefined && received >= plan.terminateAfterUploadBytes) {
        socket.terminate();
      }
      return;
    }
    const text = data.toString("utf8");
    const request = JSON.parse(text);
    seen.frames.push({ type: "text", method: request.method, length: text.length });
    if (request.method === "agent.info") {
      const info = { name: "imza-agent", version: "0.4.0", protocol: 1 };
      if (plan.features) info.features = plan.features;
      sendJson({ id: request.id, result: info });
    } else if (request.method === "document.upload") {
      const id = `u-${randomBytes(16).toString("base64url").slice(0, 22)}`;
      uploads.set(id, { size: request.params.size, chunks: [], received: 0, frames: 0 });
      order.push(id);
      const delay = uploadAnswers++ === 0 ? plan.delayFirstUploadAnswer || 0 : 0;
      setTimeout(() => sendJson({ id: request.id, result: { upload: id } }), delay);
    } else {
      answerDocumentMethod(request, uploads, sendJson, socket);
    }
  });
});

/** The bytes of a document member: an upload's (used once) or base64's; with how it came. */
function documentOf(value, uploads) {
  if (typeof value === "string") return { bytes: Buffer.from(value, "base64"), via: "base64" };
  const upload = value && uploads.get(value.upload);
  if (!upload || upload.received !== upload.size) return null;
  uploads.delete(value.upload);
  const bytes = Buffer.concat(upload.chunks);
  seen.uploads.push({ size: upload.size, frames: upload.frames, sha256: sha(bytes) });
  return { bytes, via: "upload" };
}

function answerDocumentMethod(request, uploads, sendJson, socket) {
  const params = request.params || {};
  const members = {};
  let viaUpload = false;
  let first = null;
  for (const [name, value] of Object.entries(params)) {
    if (!["pdf", "data", "signature"].includes(name)) continue;
    const document = documentOf(value, uploads);
    if (document === null) {
      sendJson({ id: request.id, error: { code: -32602, message: `unknown upload in ${name}`,
        data: { reason: "INVALID_PARAMS" } } });
      return;
    }
    members[name] = { via: document.via, size: document.bytes.length, sha256: sha(document.bytes) };
    viaUpload ||= document.via === "upload";
    first ??= document.bytes;
  }
  seen.requests.push({ method: request.method, members });
  const output = OUTPUT[request.method];
  if (output === undefined) { // signature.verify: a report, no document
    sendJson({ id: request.id, result: { format: "cms", signatures: [] } });
    return;
  }
  // What the agent would answer: the document with something appended from a point near its
  // end (an incremental update), or for "binary" a document that does not begin with it.
  const keep = Math.max(0, first.length - 7);
  const tail = pattern(plan.reply === "zero" ? 0 : 3000 + request.id, 99);
  const whole = plan.reply === "binary" || plan.reply === "binary-null-prefix";
  const signed = whole ? Buffer.concat([tail, first])
    : Buffer.concat([first.subarray(0, keep), tail]);
  seen.expected.push({ id: request.id, sha256: sha(signed), size: signed.length });
  if (!viaUpload) {
    sendJson({ id: request.id, result: { [output]: signed.toString("base64") } });
    return;
  }
  const answer = !whole ? { binary: tail.length, prefix: keep }
    : plan.reply === "binary" ? { binary: signed.length } : { binary: signed.length, prefix: null };
  const bytes = whole ? signed : tail;
  sendJson({ id: request.id, result: { [output]: answer, level: "B-B" } });
  if (plan.reply === "terminate-after-answer") {
    socket.terminate();
  } else if (plan.reply === "half-then-terminate") {
    socket.send(bytes.subarray(0, bytes.length >> 1), { binary: true }, () => socket.terminate());
  } else if (plan.reply === "text-before-bytes") {
    sendJson({ method: "tokens.changed", params: { tokens: [] } });
    socket.send(bytes, { binary: true });
  } else if (bytes.length > 0) {
    socket.send(bytes, { binary: true });
  }
}

// --- the page ----------------------------------------------------------------------------
const sdk = await import(sdkUrl);
const result = { seen, calls: [] };
const describe = (error) => ({ kind: error.kind, reason: error.reason,
  isImzaError: error instanceof sdk.ImzaError, message: error.message });

function makeDocument({ size, as, seed }) {
  const bytes = new Uint8Array(pattern(size, seed));
  const page = { size, sha256: sha(bytes) };
  if (as === "base64") return [sdk.toBase64(bytes), page];
  if (as === "buffer") return [bytes.buffer, page];
  // a view into a larger buffer: only its own bytes may be sent
  const larger = new Uint8Array(size + 16);
  larger.set(bytes, 8);
  return [larger.subarray(8, 8 + size), page];
}

try {
  const agent = await sdk.connect({ transports: ["ws"], allowInsecureWs: true, wsUrl: url,
    ...(plan.options || {}) });
  result.uploadThreshold = agent.uploadThreshold;
  result.binaryType = agent._channel.socket.binaryType;
  result.closeEvents = [];
  agent.addEventListener("close", (event) => result.closeEvents.push(event.detail.kind));
  await Promise.all(plan.calls.map(async (call) => {
    const params = { ...(call.params || {}) };
    const documents = {};
    for (const [member, spec] of Object.entries(call.documents)) {
      [params[member], documents[member]] = makeDocument(spec);
    }
    const entry = { method: call.method, documents };
    result.calls.push(entry);
    try {
      const value = await agent.call(call.method, params);
      const output = OUTPUT[call.method];
      entry.members = Object.keys(value).sort();
      if (output !== undefined) {
        entry.type = typeof value[output];
        const bytes = Buffer.from(value[output], "base64");
        entry.result = { sha256: sha(bytes), size: bytes.length,
          canonicalBase64: bytes.toString("base64") === value[output] };
      }
    } catch (error) {
      entry.error = describe(error);
    }
  }));
  agent.close();
} catch (error) {
  result.connectError = describe(error);
}
server.close();
console.log(JSON.stringify(result));
process.exit(0);
