// Runs the page SDK (extension/sdk/imza.js, unchanged) in Node on a stand-in page whose
// extension and WebSocket are scripted, and prints what the page saw as one JSON line.
// tests/test_sdk_kinds.py writes the plan and asserts on the result.
//
//   node tests/sdk_fake_page.mjs <sdk file URL> '<plan JSON>'
//
// plan: {
//   extension: null | {open: "opened" | "no-host" | "unreachable" | "refused" | "hang" |
//                            "lost-after-open", answers?: {...}},
//   ws: {open: "refuse" | "hang" | "opened", answers?: {...},
//        closeOnSend?: {method, code, reason}},  // the agent closes when it gets `method`
//   options: {...},                       // connect()'s options
//   call?: {method, params}               // one call after connecting
//   login?: {challenge, options?}         // or agent.login(challenge, options?)
// }
// answers: {method: {result} | {error}}; a method missing from answers is never answered.

const [sdkUrl, planText] = process.argv.slice(2);
const plan = JSON.parse(planText);
const PAGE_ORIGIN = "https://portal.example";
// requests: every JSON-RPC request the page sent, {method, params}, whatever the transport
// closes: "extension" or the socket's URL, each time the page closed a connection
const seen = { sockets: [], extensionOpens: 0, extensionMessages: [], requests: [], closes: [] };

// --- the page: window.postMessage delivers asynchronously, as a browser's does -----------
const page = new EventTarget();
globalThis.window = Object.assign(page, {
  location: { origin: PAGE_ORIGIN },
  postMessage(message, targetOrigin) {
    if (targetOrigin !== PAGE_ORIGIN) throw new Error(`postMessage to ${targetOrigin}`);
    const copy = structuredClone(message);
    setTimeout(() => {
      const event = new Event("message");
      Object.assign(event, { data: copy, source: page, origin: PAGE_ORIGIN });
      page.dispatchEvent(event);
    }, 0);
  },
});

function answer(answers, text) {
  const request = JSON.parse(text);
  seen.requests.push({ method: request.method, params: request.params ?? null });
  const scripted = answers && answers[request.method];
  if (!scripted) return null;
  return JSON.stringify({ jsonrpc: "2.0", id: request.id, ...scripted });
}

// --- a scripted extension: what content.js + background.js would post to the page --------
function installExtension(spec) {
  const toPage = (m) => window.postMessage({ channel: "imza-agent", dir: "to-page", ...m },
    PAGE_ORIGIN);
  page.addEventListener("message", (event) => {
    const m = event.data;
    if (!m || m.channel !== "imza-agent" || m.dir !== "to-extension") return;
    if (m.kind === "hello") {
      toPage({ kind: "hello", nonce: m.nonce, version: "0.1.0" });
    } else if (m.kind === "open") {
      seen.extensionOpens += 1;
      const port = m.port;
      if (spec.open === "opened" || spec.open === "lost-after-open") {
        toPage({ kind: "opened", port });
      } else if (spec.open === "no-host") {
        // background.js: chrome.runtime.lastError of connectNative when no host manifest
        toPage({ kind: "closed", port, reason: "AGENT_UNAVAILABLE",
          detail: "Specified native messaging host not found." });
      } else if (spec.open === "unreachable") {
        // agent/transport/native_relay.py when the daemon's socket does not answer
        toPage({ kind: "closed", port, reason: "AGENT_UNAVAILABLE",
          detail: "cannot reach the agent: [Errno 111] Connection refused" });
      } else if (spec.open === "refused") {
        toPage({ kind: "closed", port, reason: "REFUSED",
          detail: "origin is not on the administrator's allow-list" });
      } // "hang": never answers
    } else if (m.kind === "close") {
      seen.closes.push("extension");
    } else if (m.kind === "message") {
      const method = JSON.parse(m.data).method;
      seen.extensionMessages.push(method);
      if (spec.open === "lost-after-open" && !(spec.answers && spec.answers[method])) {
        toPage({ kind: "closed", port: m.port, reason: "AGENT_UNAVAILABLE",
          detail: "the agent's native host exited" });
        return;
      }
      const reply = answer(spec.answers, m.data);
      if (reply) toPage({ kind: "message", port: m.port, data: reply });
    }
  });
}
if (plan.extension) installExtension(plan.extension);

// --- a scripted WebSocket ----------------------------------------------------------------
class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.onopen = this.onerror = this.onclose = this.onmessage = null;
    seen.sockets.push(url);
    const spec = plan.ws || { open: "refuse" };
    if (spec.open === "refuse") {
      // What a browser shows for a refused TCP connection, an untrusted certificate and
      // an HTTP 403 alike: an error, then close 1006 without a reason.
      setTimeout(() => {
        this.onerror?.(new Event("error"));
        this._close(1006, "");
      }, 0);
    } else if (spec.open === "opened") {
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.(new Event("open"));
      }, 0);
    } // "hang": never opens
  }

  send(text) {
    const spec = plan.ws;
    const close = spec.closeOnSend;
    if (close && JSON.parse(text).method === close.method) {
      setTimeout(() => this._close(close.code, close.reason), 0);
      return;
    }
    const reply = answer(spec.answers, text);
    if (reply) setTimeout(() => this.onmessage?.({ data: reply }), 0);
  }

  close() {
    if (this.readyState === 3) return;
    seen.closes.push(this.url);
    this._close(1005, "");
  }

  _close(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.(Object.assign(new Event("close"), { code, reason, wasClean: code !== 1006 }));
  }
}
globalThis.WebSocket = FakeWebSocket;

// --- the page's code ---------------------------------------------------------------------
const sdk = await import(sdkUrl);
const result = { seen };
const describe = (error) => ({ kind: error.kind, reason: error.reason, code: error.code,
  isImzaError: error instanceof sdk.ImzaError, name: error.name, message: error.message,
  data: error.data });
try {
  const agent = await sdk.connect(plan.options || {});
  result.connected = agent.transport;
  result.agent = agent.agent;
  if (plan.call || plan.login) {
    try {
      result.value = plan.call ? await agent.call(plan.call.method, plan.call.params)
        : await agent.login(plan.login.challenge, ...(plan.login.options ? [plan.login.options] : []));
    } catch (error) {
      result.error = describe(error);
    }
  }
  agent.close();
} catch (error) {
  result.connectError = describe(error);
}
// messages the page posted last (an extension "close") are delivered a task later
await new Promise((resolve) => setTimeout(resolve, 20));
console.log(JSON.stringify(result));
process.exit(0);
