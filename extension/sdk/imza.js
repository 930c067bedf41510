// imza-agent page SDK: talk to the citizen's signing agent from a web page.
//
// An ES module with no dependencies and no build step:
//
//   import { connect, ImzaError, Kind } from "/sdk/imza.js";
//   const agent = await connect();              // extension, else wss://
//   const { token } = await agent.login(challengeFromYourServer);
//
// The wire contract is docs/protocol.md; every method there has one promise-returning
// function here. Failures are ImzaError objects whose `reason` is one of `Reason` and whose
// `kind` (one of `Kind`, or an agent reason passed through) says what to tell the user.
//
// Published as a package (package.json, types in imza.d.ts, README.md next to this file);
// the same file is also served as is, so it must stay plain JavaScript.

/** The wire protocol version this SDK speaks (agent.info's `protocol`); package.json's
 * `imzaAgent.protocol` repeats it for tools that read the package without running it. */
export const PROTOCOL = 1;
// 0.2: ImzaError.kind. 0.3: AGENT_TOO_OLD / PAGE_TOO_OLD, minimumAgentVersion,
// login(challenge, {format}). 0.4: uploadThreshold (large documents as binary WebSocket
// frames), documents as bytes. Equal to package.json's `version`.
export const SDK_VERSION = "0.4.0";

/** Every reason an ImzaError can carry: the contract's, plus the three of connect(). */
export const Reason = Object.freeze({
  // the contract (docs/protocol.md, "Errors")
  USER_CANCELLED: "USER_CANCELLED",
  USER_TIMEOUT: "USER_TIMEOUT",
  PERMISSION_DENIED: "PERMISSION_DENIED",
  NO_CERTIFICATE: "NO_CERTIFICATE",
  TOKEN_NOT_PRESENT: "TOKEN_NOT_PRESENT",
  PIN_LOCKED: "PIN_LOCKED",
  CERTIFICATE_INVALID: "CERTIFICATE_INVALID",
  BUSY: "BUSY",
  NETWORK: "NETWORK",
  UNSUPPORTED: "UNSUPPORTED",
  INVALID_HANDLE: "INVALID_HANDLE",
  TOO_LARGE: "TOO_LARGE",
  RATE_LIMITED: "RATE_LIMITED",
  INTERNAL: "INTERNAL",
  PARSE_ERROR: "PARSE_ERROR",
  INVALID_REQUEST: "INVALID_REQUEST",
  METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
  INVALID_PARAMS: "INVALID_PARAMS",
  // the SDK's own: which part the user has to install or update
  EXTENSION_UNAVAILABLE: "EXTENSION_UNAVAILABLE", // no extension answered and no agent was reachable directly
  AGENT_UNAVAILABLE: "AGENT_UNAVAILABLE", // the extension is there, the agent is not (or the connection dropped)
  VERSION_MISMATCH: "VERSION_MISMATCH", // the agent's protocol or version does not fit the page
});

/**
 * What a page tells the user: every ImzaError has a `kind`. The SDK's own kinds say which
 * part is missing or who said no; any other agent reason (NO_CERTIFICATE, PIN_LOCKED,
 * RATE_LIMITED, BUSY, …) is passed through unchanged as the kind.
 */
export const Kind = Object.freeze({
  NO_EXTENSION: "NO_EXTENSION", // no extension answered and no direct connection was tried
  EXTENSION_WITHOUT_AGENT: "EXTENSION_WITHOUT_AGENT", // the extension is there, the agent is not installed or not running
  AGENT_NOT_RUNNING: "AGENT_NOT_RUNNING", // no extension, and no agent answered over wss://
  SITE_REFUSED: "SITE_REFUSED", // the agent (its policy, or the user's earlier answer) refuses this site
  USER_CANCELLED: "USER_CANCELLED", // the user closed or refused the dialog
  TIMED_OUT: "TIMED_OUT", // the user did not answer in time, or the agent did not answer the SDK in time
  CONNECTION_LOST: "CONNECTION_LOST", // the connection to the agent closed during a call
  // Both with reason VERSION_MISMATCH; `data` says which number (`subject`), what the page
  // needs (`required`) and what the agent has (`found`).
  AGENT_TOO_OLD: "AGENT_TOO_OLD", // the agent is older than the page needs: update the program
  PAGE_TOO_OLD: "PAGE_TOO_OLD", // the agent speaks a newer protocol than this SDK: update the site
});

/** The kind of an error that has only a reason (the agent's answers). */
function kindOfReason(reason) {
  if (reason === Reason.USER_TIMEOUT) return Kind.TIMED_OUT;
  if (reason === Reason.PERMISSION_DENIED) return Kind.SITE_REFUSED;
  if (reason === Reason.AGENT_UNAVAILABLE) return Kind.CONNECTION_LOST;
  if (reason === Reason.EXTENSION_UNAVAILABLE) return Kind.NO_EXTENSION;
  return reason;
}

const REASON_BY_CODE = Object.freeze({
  4001: Reason.USER_CANCELLED, 4002: Reason.USER_TIMEOUT, 4003: Reason.PERMISSION_DENIED,
  4004: Reason.NO_CERTIFICATE, 4005: Reason.TOKEN_NOT_PRESENT, 4006: Reason.PIN_LOCKED,
  4007: Reason.CERTIFICATE_INVALID, 4008: Reason.BUSY, 4009: Reason.NETWORK,
  4010: Reason.UNSUPPORTED, 4011: Reason.INVALID_HANDLE, 4012: Reason.TOO_LARGE,
  4013: Reason.RATE_LIMITED, 5000: Reason.INTERNAL, [-32700]: Reason.PARSE_ERROR,
  [-32600]: Reason.INVALID_REQUEST, [-32601]: Reason.METHOD_NOT_FOUND,
  [-32602]: Reason.INVALID_PARAMS,
});

/** A failed call or connection. `reason` is a `Reason` value; `kind` what to tell the
 * user (a `Kind`, or the agent's reason passed through); `code` the JSON-RPC code when the
 * agent answered; `data` the error's data (e.g. `unlock`, `fields`). */
export class ImzaError extends Error {
  constructor(reason, message, { code = null, data = {}, cause, kind } = {}) {
    super(message || reason, cause === undefined ? undefined : { cause });
    this.name = "ImzaError";
    this.reason = reason;
    this.kind = kind || kindOfReason(reason);
    this.code = code;
    this.data = data;
  }

  static fromWire(error) {
    const data = (error && typeof error.data === "object" && error.data) || {};
    const code = error && typeof error.code === "number" ? error.code : null;
    const reason = data.reason || REASON_BY_CODE[code] || Reason.INTERNAL;
    return new ImzaError(reason, String((error && error.message) || reason), { code, data });
  }
}

const DEFAULTS = Object.freeze({
  transports: ["extension", "wss", "ws"],
  // Plain ws:// proves nothing about who answers: any program that took the port first
  // would receive the page's documents. It is tried only when the page opts in (for
  // development against an agent configured with `ws_enabled = true`).
  allowInsecureWs: false,
  extensionTimeout: 1000, // ms the extension has to acknowledge
  openTimeout: 35000, // ms for the extension's agent connection (it may start the agent)
  socketTimeout: 5000, // ms for a WebSocket to open
  infoTimeout: 10000, // ms for an open connection to answer agent.info
  // On a shared machine (terminal server) each user's agent takes the first free port of a
  // small range: wss 29170, 29172, … (even), ws 29171, 29173, … (odd); the agent's
  // `[server] port_range`. connect() tries them in order; `wssUrl` / `wsUrl` (one URL) or
  // `wssUrls` / `wsUrls` (a list) replace the range.
  portRange: 5,
  // On a WebSocket whose agent lists "document.upload" in agent.info's `features`, a
  // document larger than this (bytes) is sent as raw binary frames (`document.upload`)
  // rather than base64 inside the request, and its signed copy comes back the same way.
  uploadThreshold: 1024 * 1024,
});

// The members of the document methods that may carry a document: the agent's
// DOCUMENT_FIELDS and DOCUMENT_EXTRA_FIELDS (agent/protocol/params.py). The first is the
// document an answer's `prefix` refers to.
const DOCUMENT_MEMBERS = Object.freeze({
  "sign.pdf": Object.freeze(["pdf"]),
  "sign.cms": Object.freeze(["data"]),
  "signature.extend": Object.freeze(["signature"]),
  "signature.verify": Object.freeze(["signature", "data"]),
});
const UPLOAD_FEATURE = "document.upload";
// Bytes per binary frame of an upload: far below any frame limit the agent may set, and
// the browser copies one frame at a time rather than the whole document at once.
const UPLOAD_FRAME_BYTES = 1024 * 1024;

const RANGE_START = Object.freeze({ wss: 29170, ws: 29171 });
const RANGE_STEP = 2;
const MAX_PORT_RANGE = 32; // the agent's own limit: connect() never probes more

/** The URLs connect() tries for `transport`, in order. */
function directUrls(transport, opts) {
  const single = transport === "wss" ? opts.wssUrl : opts.wsUrl;
  if (single !== undefined) return [String(single)];
  const list = transport === "wss" ? opts.wssUrls : opts.wsUrls;
  if (list !== undefined) return Array.from(list, String).slice(0, MAX_PORT_RANGE);
  const count = Math.min(Math.max(1, Math.floor(Number(opts.portRange) || 1)), MAX_PORT_RANGE);
  return Array.from({ length: count },
    (_, i) => `${transport}://127.0.0.1:${RANGE_START[transport] + RANGE_STEP * i}/v1`);
}

// Failures that say "no agent of this user here" and send connect() to the next port of the
// range: nothing listening, another user's agent (its peer check answers 403 before the
// handshake, which a page sees as "not reachable", like a closed port — it learns nothing
// more about it) or a certificate this browser does not trust, a port that accepts and
// stalls, a connection dropped before agent.info was answered. Anything else is the user's
// own agent answering (e.g. refusing the site): the range stops there.
const NEXT_PORT_KINDS = new Set([Kind.AGENT_NOT_RUNNING, Kind.TIMED_OUT, Kind.CONNECTION_LOST]);

/** The first agent of `urls` that opens and answers agent.info: {connection, info}, or
 * null after recording each failed URL in `attempts`. Sequential on purpose: a page reaches
 * no more agents than it must (no Origin is sent to ports after its own agent's), the
 * order decides, as the agent's choice of port does, and on loopback a refused port costs
 * one round trip. */
async function firstAgentOf(transport, urls, opts, attempts) {
  for (const url of urls) {
    let connection;
    try {
      connection = new Connection(await WebSocketChannel.open(url, opts.socketTimeout), transport);
      connection.url = url;
    } catch (error) {
      if (!(error instanceof ImzaError)) throw error;
      attempts.push({ ...attemptOf(transport, error), url });
      if (NEXT_PORT_KINDS.has(error.kind)) continue;
      return null;
    }
    try {
      const info = await withTimeout(connection.info(), opts.infoTimeout, () => new ImzaError(
        Reason.AGENT_UNAVAILABLE, `${url}: agent.info was not answered in time`,
        { kind: Kind.TIMED_OUT }));
      return { connection, info };
    } catch (error) {
      connection.close();
      attempts.push({ ...attemptOf(transport, error), url });
      if (!NEXT_PORT_KINDS.has(error.kind)) return null;
    }
  }
  return null;
}

const CHANNEL = "imza-agent";

// WebSocket close codes the agent uses to say why it ends a connection: 1008 ("policy
// violation") with a reason starting "refused" when it will not serve this origin, and
// 4001–4999 for a contract error code (4003 PERMISSION_DENIED, 4013 RATE_LIMITED, …).
const CLOSE_POLICY = 1008;

/** The ImzaError a WebSocket close stands for, or null when it says nothing specific. */
function closeError(code, text, url) {
  const reasonText = String(text || "").slice(0, 123); // a close reason is at most 123 bytes
  if (code === CLOSE_POLICY && /^refused\b/i.test(reasonText)) {
    return new ImzaError(Reason.PERMISSION_DENIED, `the agent refuses this site: ${reasonText}`,
      { data: { closeCode: code, detail: reasonText } });
  }
  if (code >= 4000 && code <= 4999) {
    const reason = REASON_BY_CODE[code] || Reason.INTERNAL;
    return new ImzaError(reason, `${url} closed: ${reasonText || reason}`,
      { code, data: { closeCode: code, detail: reasonText } });
  }
  return null;
}

/** A native host the browser does not know: the agent is not installed (for this browser). */
const HOST_MISSING = /native messaging host not found|no such native application|NO_NATIVE_HOST/i;

function randomId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function withTimeout(promise, ms, onTimeout) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// --- channels: something that carries JSON-RPC text both ways ------------------------------

class WebSocketChannel {
  static open(url, timeoutMs) {
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new WebSocket(url);
      } catch (cause) {
        reject(new ImzaError(Reason.AGENT_UNAVAILABLE, `cannot open ${url}`, { cause }));
        return;
      }
      const timer = setTimeout(() => {
        socket.onopen = socket.onerror = socket.onclose = null; // closing reports nothing more
        socket.close();
        reject(new ImzaError(Reason.AGENT_UNAVAILABLE, `${url} did not answer in time`,
          { kind: Kind.TIMED_OUT }));
      }, timeoutMs);
      socket.onopen = () => {
        clearTimeout(timer);
        resolve(new WebSocketChannel(socket, url));
      };
      // A browser reports a refused TCP connection, an untrusted certificate and an HTTP
      // 403 at the handshake alike (close code 1006, no reason): "not reachable".
      socket.onerror = () => {
        clearTimeout(timer);
        reject(new ImzaError(Reason.AGENT_UNAVAILABLE, `${url} is not reachable`,
          { kind: Kind.AGENT_NOT_RUNNING }));
      };
      socket.onclose = (event) => {
        clearTimeout(timer);
        reject(closeError(event && event.code, event && event.reason, url) ||
          new ImzaError(Reason.AGENT_UNAVAILABLE, `${url} is not reachable`,
            { kind: Kind.AGENT_NOT_RUNNING }));
      };
    });
  }

  constructor(socket, url) {
    this.socket = socket;
    this.onmessage = () => {};
    this.onbinary = () => {};
    this.onclose = () => {};
    // Binary frames (a signed document's bytes) arrive as ArrayBuffers: read at once and in
    // order, where a Blob would need an asynchronous read that could pass the next frame.
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.onmessage(event.data);
      else if (event.data instanceof ArrayBuffer) this.onbinary(new Uint8Array(event.data));
    };
    socket.onerror = null;
    socket.onclose = (event) => this.onclose(closeError(event && event.code,
      event && event.reason, url) || lostError("the agent closed the connection"));
  }

  send(text) {
    this.socket.send(text);
  }

  /** One binary frame (only a WebSocket carries them: the extension's path is text). */
  sendBinary(bytes) {
    this.socket.send(bytes);
  }

  close() {
    this.socket.close();
  }
}

/** Whether the extension's content script is on this page: {version} or null. */
export function detectExtension(timeoutMs = DEFAULTS.extensionTimeout) {
  return new Promise((resolve) => {
    const nonce = randomId();
    const listener = (event) => {
      const m = event.data;
      if (event.source !== window || !m || m.channel !== CHANNEL || m.dir !== "to-page") return;
      if (m.kind === "hello" && m.nonce === nonce) {
        cleanup();
        resolve({ version: String(m.version || "") });
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      resolve(null);
    }, timeoutMs);
    function cleanup() {
      clearTimeout(timer);
      window.removeEventListener("message", listener);
    }
    window.addEventListener("message", listener);
    postToExtension({ kind: "hello", nonce });
  });
}

function postToExtension(message) {
  window.postMessage({ channel: CHANNEL, dir: "to-extension", ...message }, window.location.origin);
}

/** What the extension's "closed" message means. Before "opened": REFUSED is the agent
 * refusing this origin (or the extension refusing a non-https page); anything else means
 * the agent could not be reached (`data.agentMissing` when the browser knows no native
 * host, i.e. the agent is not installed for this browser). After "opened": a lost
 * connection, unless the agent refused. */
function extensionClosedError(m, wasOpen) {
  const detail = String(m.detail || m.reason || "closed");
  const data = { detail: m.reason, message: detail };
  if (m.reason === "REFUSED") {
    return new ImzaError(Reason.PERMISSION_DENIED, `extension: ${detail}`, { data });
  }
  if (wasOpen) return lostError(`extension: ${detail}`, data);
  data.agentMissing = HOST_MISSING.test(`${m.reason} ${detail}`);
  return new ImzaError(Reason.AGENT_UNAVAILABLE, `extension: ${detail}`,
    { data, kind: Kind.EXTENSION_WITHOUT_AGENT });
}

function lostError(message, data = {}) {
  return new ImzaError(Reason.AGENT_UNAVAILABLE, message, { data, kind: Kind.CONNECTION_LOST });
}

class ExtensionChannel {
  static open(timeoutMs) {
    const port = randomId();
    const channel = new ExtensionChannel(port);
    return withTimeout(channel.opened, timeoutMs, () => {
      channel.close();
      return new ImzaError(Reason.AGENT_UNAVAILABLE, "the agent did not answer the extension in time",
        { kind: Kind.TIMED_OUT });
    }).then(() => channel);
  }

  constructor(port) {
    this.port = port;
    this.onmessage = () => {};
    this.onclose = () => {};
    this.isOpen = false;
    this.opened = new Promise((resolve, reject) => {
      this.listener = (event) => {
        const m = event.data;
        if (event.source !== window || !m || m.channel !== CHANNEL || m.dir !== "to-page") return;
        if (m.port !== port) return;
        if (m.kind === "opened") {
          this.isOpen = true;
          resolve();
        } else if (m.kind === "message" && typeof m.data === "string") {
          this.onmessage(m.data);
        } else if (m.kind === "closed") {
          window.removeEventListener("message", this.listener);
          const error = extensionClosedError(m, this.isOpen);
          if (!this.isOpen) {
            reject(error);
          } else {
            this.isOpen = false;
            this.onclose(error);
          }
        }
      };
    });
    window.addEventListener("message", this.listener);
    postToExtension({ kind: "open", port });
  }

  send(text) {
    postToExtension({ kind: "message", port: this.port, data: text });
  }

  close() {
    window.removeEventListener("message", this.listener);
    postToExtension({ kind: "close", port: this.port });
  }
}

// --- the connection ---------------------------------------------------------------------

/** One connection to the agent. Events: "tokens.changed" (CustomEvent, detail =
 * {tokens}), "notification" (detail = {method, params}), "close" (detail = {reason}). */
export class Connection extends EventTarget {
  constructor(channel, transport) {
    super();
    this.transport = transport; // "extension" | "wss" | "ws"
    this.url = null; // the WebSocket URL whose agent answered (which port of the range)
    this.agent = null; // agent.info's answer, set by connect()
    // documents above this many bytes go as binary frames (see DEFAULTS.uploadThreshold)
    this.uploadThreshold = DEFAULTS.uploadThreshold;
    this._channel = channel;
    this._nextId = 1;
    this._pending = new Map();
    this._incoming = null; // the answer whose document's bytes are still to come
    this._uploads = Promise.resolve(); // the upload before the next one (one at a time)
    this.closed = false;
    this._closeError = null;
    channel.onmessage = (text) => this._receive(text);
    channel.onbinary = (bytes) => this._receiveBinary(bytes);
    channel.onclose = (error) => this._closed(error);
  }

  /** Any method by name: resolves to `result`, rejects with ImzaError. A member given as
   * bytes (ArrayBuffer, typed array) is sent as base64 — or, for a document method's
   * document over `uploadThreshold` on a WebSocket, as binary frames. */
  call(method, params) {
    if (this.closed) {
      return Promise.reject(this._closeError || lostError("the connection is closed"));
    }
    const members = DOCUMENT_MEMBERS[method];
    if (members !== undefined && isRecord(params)) {
      return this._callWithDocuments(method, params, members);
    }
    return this._request(method, isRecord(params) ? withBase64(params) : params);
  }

  /** A document method: its large documents uploaded when the agent takes uploads here,
   * the rest as base64; the answer's document reassembled from its binary frame. */
  async _callWithDocuments(method, params, members) {
    const large = members.filter((m) => documentSize(params[m]) > this.uploadThreshold);
    const toUpload = large.length > 0 && await this._uploadsAccepted() ? large : [];
    const sent = withBase64(params, toUpload);
    let uploaded = false;
    for (const member of toUpload) {
      const bytes = bytesOf(params[member]);
      if (bytes === null) continue; // not base64: sent as it is, for the agent to refuse
      sent[member] = { upload: await this._upload(bytes) };
      uploaded = true;
    }
    // A `prefix` answer names the first bytes of the method's (first) document.
    const prefixSource = uploaded ? () => bytesOf(params[members[0]]) : null;
    return this._request(method, sent, prefixSource);
  }

  /** Whether this connection can upload: a WebSocket to an agent that lists the feature.
   * agent.info lists features only to an origin that holds a grant; when connect() saw
   * none, the grant may have come since (an earlier call's consent dialog): ask again. */
  async _uploadsAccepted() {
    if (typeof this._channel.sendBinary !== "function") return false;
    const listed = () => Array.isArray(this.agent && this.agent.features) &&
      this.agent.features.includes(UPLOAD_FEATURE);
    if (this.agent && Array.isArray(this.agent.features)) return listed();
    try {
      const info = await this._request("agent.info");
      if (isRecord(info)) this.agent = { ...(this.agent || {}), ...info };
    } catch (error) {
      if (this.closed) throw error;
      return false;
    }
    return listed();
  }

  /** `document.upload`, then the bytes as binary frames: resolves to the upload's id. One
   * upload at a time per connection: the agent fills the oldest incomplete upload first,
   * so the frames of two uploads under way together would mix their documents. */
  _upload(bytes) {
    const run = this._uploads.then(async () => {
      const result = await this._request("document.upload", { size: bytes.byteLength });
      const id = isRecord(result) ? result.upload : undefined;
      if (typeof id !== "string") {
        throw new ImzaError(Reason.INTERNAL, "document.upload answered without an upload id");
      }
      try {
        for (let offset = 0; offset < bytes.byteLength; offset += UPLOAD_FRAME_BYTES) {
          this._channel.sendBinary(bytes.subarray(offset, offset + UPLOAD_FRAME_BYTES));
        }
      } catch (cause) {
        throw new ImzaError(Reason.AGENT_UNAVAILABLE, "sending failed",
          { cause, kind: Kind.CONNECTION_LOST });
      }
      return id;
    });
    this._uploads = run.catch(() => {});
    return run;
  }

  /** Send one request. `prefixSource`: for a request that used an upload, a function
   * giving the bytes an answer's `{"binary", "prefix"}` refers to. */
  _request(method, params, prefixSource = null) {
    if (this.closed) {
      return Promise.reject(this._closeError || lostError("the connection is closed"));
    }
    const id = this._nextId++;
    const message = { jsonrpc: "2.0", id, method };
    if (params !== undefined) message.params = params;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, prefixSource });
      try {
        this._channel.send(JSON.stringify(message));
      } catch (cause) {
        this._pending.delete(id);
        reject(new ImzaError(Reason.AGENT_UNAVAILABLE, "sending failed",
          { cause, kind: Kind.CONNECTION_LOST }));
      }
    });
  }

  // One function per method of the contract (docs/protocol.md, "Methods").
  info() { return this.call("agent.info"); }
  selectCertificate(params = { purpose: "sign" }) { return this.call("certificates.select", params); }
  listCertificates(params = { purpose: "sign" }) { return this.call("certificates.list", params); }
  signHash(params) { return this.call("sign.hash", params); }
  signHashes(params) { return this.call("sign.hashes", params); }
  signCms(params) { return this.call("sign.cms", params); }
  signPdf(params) { return this.call("sign.pdf", params); }
  signXml(params) { return this.call("sign.xml", params); }
  /** `options.format` ("imza-auth:1", the default, or "web-eid:1.0") is sent only when
   * given: an agent that predates the parameter refuses unknown params (INVALID_PARAMS). */
  login(challenge, options = {}) {
    const params = { challenge };
    if (options.format !== undefined) params.format = options.format;
    return this.call("auth.login", params);
  }
  subscribeTokens() { return this.call("tokens.subscribe"); }

  close() {
    if (this.closed) return;
    this._channel.close();
    this._closed(lostError("closed by the page"));
  }

  _receive(text) {
    if (this._incoming !== null) {
      // The contract sends an answer's bytes right after it: a text frame first breaks it.
      this._failIncoming("the agent sent a message before the bytes of a signed document");
    }
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.id === undefined && typeof message.method === "string") {
      const detail = { method: message.method, params: message.params };
      this.dispatchEvent(new CustomEvent("notification", { detail }));
      if (message.method === "tokens.changed") {
        this.dispatchEvent(new CustomEvent("tokens.changed", { detail: message.params }));
      }
      return;
    }
    const waiter = this._pending.get(message.id);
    if (!waiter) return;
    const parts = !message.error && waiter.prefixSource ? binaryParts(message.result) : [];
    if (parts.length === 0) {
      this._pending.delete(message.id);
      if (message.error) waiter.reject(ImzaError.fromWire(message.error));
      else waiter.resolve(message.result);
      return;
    }
    // The document's bytes follow as binary frames: the call stays pending (a close now
    // rejects it) until they are all here.
    this._incoming = { id: message.id, waiter, result: message.result, parts, chunks: [],
      received: 0 };
    this._assemble();
  }

  _receiveBinary(bytes) {
    const incoming = this._incoming;
    if (incoming === null) return; // nothing is owed: not an answer of this SDK's
    incoming.chunks.push(bytes);
    incoming.received += bytes.byteLength;
    if (incoming.received > incoming.parts[0].size) {
      this._failIncoming("the agent sent more bytes than its answer announced");
      return;
    }
    this._assemble();
  }

  /** Put each `{"binary"}` member whose bytes are all here back together (base64, as an
   * answer without upload has it); resolve the call when none is left. */
  _assemble() {
    const incoming = this._incoming;
    while (incoming.parts.length > 0 && incoming.received === incoming.parts[0].size) {
      const { member, size, prefix } = incoming.parts.shift();
      let head = new Uint8Array(0);
      if (prefix > 0) {
        const source = incoming.waiter.prefixSource();
        if (source === null || source.byteLength < prefix) {
          this._failIncoming(`the answer's prefix (${prefix} bytes) is longer than the document`);
          return;
        }
        head = source.subarray(0, prefix);
      }
      const whole = new Uint8Array(prefix + size);
      whole.set(head, 0);
      let offset = prefix;
      for (const chunk of incoming.chunks) {
        whole.set(chunk, offset);
        offset += chunk.byteLength;
      }
      incoming.result[member] = toBase64(whole);
      incoming.chunks = [];
      incoming.received = 0;
    }
    if (incoming.parts.length > 0) return;
    this._incoming = null;
    this._pending.delete(incoming.id);
    incoming.waiter.resolve(incoming.result);
  }

  _failIncoming(message) {
    const { id, waiter } = this._incoming;
    this._incoming = null;
    this._pending.delete(id);
    waiter.reject(new ImzaError(Reason.INTERNAL, message));
  }

  /** `error`: the ImzaError the close stands for (CONNECTION_LOST, or SITE_REFUSED when the
   * agent closed saying it refuses this site); pending calls reject with it. */
  _closed(error) {
    if (this.closed) return;
    this.closed = true;
    this._closeError = error;
    this._incoming = null;
    for (const { reject } of this._pending.values()) reject(error);
    this._pending.clear();
    this.dispatchEvent(new CustomEvent("close",
      { detail: { reason: error.message, kind: error.kind, error } }));
  }
}

/**
 * Connect to the agent: through the extension when it acknowledges within
 * `extensionTimeout`, else wss://; plain ws:// only with `allowInsecureWs: true` (it is
 * never a silent fallback). Checks the protocol version.
 * Rejects with ImzaError whose `kind` is SITE_REFUSED (the agent refuses this origin;
 * reason PERMISSION_DENIED), TIMED_OUT (something was there but did not answer in time),
 * EXTENSION_WITHOUT_AGENT (the extension is there, the agent is not installed or not
 * running; reason AGENT_UNAVAILABLE), AGENT_NOT_RUNNING (no extension, and nothing answered
 * over wss://; reason EXTENSION_UNAVAILABLE), NO_EXTENSION (no extension and no direct
 * transport tried), AGENT_TOO_OLD (the agent speaks an older protocol, or its version is
 * below `minimumAgentVersion`) or PAGE_TOO_OLD (the agent speaks a newer protocol than this
 * SDK). `data.attempts` lists each try with its kind.
 */
export async function connect(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  if (opts.minimumAgentVersion !== undefined && parseVersion(opts.minimumAgentVersion) === null) {
    throw new TypeError(`minimumAgentVersion is not a version: ${opts.minimumAgentVersion}`);
  }
  if (typeof opts.uploadThreshold !== "number" || !(opts.uploadThreshold >= 0)) {
    throw new TypeError(`uploadThreshold is not a number of bytes: ${opts.uploadThreshold}`);
  }
  const attempts = [];
  let extension = null;
  for (const transport of opts.transports) {
    let connection;
    let info;
    if (transport === "wss" || transport === "ws") {
      if (transport === "ws" && opts.allowInsecureWs !== true) {
        attempts.push({ transport, reason: Reason.AGENT_UNAVAILABLE, kind: null,
          message: "not tried: ws:// is unauthenticated; pass allowInsecureWs: true to use it" });
        continue;
      }
      const found = await firstAgentOf(transport, directUrls(transport, opts), opts, attempts);
      if (found === null) continue;
      ({ connection, info } = found);
    } else if (transport === "extension") {
      let channel;
      try {
        extension = await detectExtension(opts.extensionTimeout);
        if (!extension) {
          attempts.push({ transport, reason: Reason.EXTENSION_UNAVAILABLE, kind: Kind.NO_EXTENSION });
          continue;
        }
        channel = await ExtensionChannel.open(opts.openTimeout);
      } catch (error) {
        if (!(error instanceof ImzaError)) throw error;
        attempts.push(attemptOf(transport, error));
        continue;
      }
      connection = new Connection(channel, transport);
      try {
        info = await withTimeout(connection.info(), opts.infoTimeout, () => new ImzaError(
          Reason.AGENT_UNAVAILABLE, `${transport}: agent.info was not answered in time`,
          { kind: Kind.TIMED_OUT }));
      } catch (error) {
        connection.close();
        attempts.push(attemptOf(transport, error));
        continue;
      }
    } else {
      throw new TypeError(`unknown transport ${transport}`);
    }
    const mismatch = versionError(info, opts.minimumAgentVersion);
    if (mismatch) {
      connection.close();
      throw mismatch; // the same agent is behind every transport: trying another is no use
    }
    connection.agent = info;
    connection.uploadThreshold = opts.uploadThreshold;
    return connection;
  }
  throw connectError(attempts, extension !== null);
}

// --- version negotiation ----------------------------------------------------------------

/** [numbers, prerelease] of "1.2.3", "0.2", "0.2.0rc1", "0.2.0-beta.1+build5"; null when
 * it does not start with a number. A suffix other than build metadata ("+…") or a PEP 440
 * post-release (".post1") marks a pre-release, which comes before the release with the
 * same numbers (as semver and PEP 440 order them). */
function parseVersion(text) {
  const match = /^v?(\d+(?:\.\d+)*)(.*)$/.exec(String(text ?? "").trim());
  if (!match) return null;
  const numbers = match[1].split(".").map(Number);
  const rest = match[2];
  return [numbers, rest !== "" && !/^(\+|[.-]?post)/i.test(rest)];
}

/** Negative, zero or positive as parsed version `a` is below, equal to or above `b`. */
function compareVersions(a, b) {
  const [x, xPre] = a;
  const [y, yPre] = b;
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const diff = (x[i] || 0) - (y[i] || 0);
    if (diff !== 0) return diff;
  }
  return Number(yPre) - Number(xPre);
}

/** The ImzaError for an agent.info answer this page cannot work with, else null. The
 * protocol must be this SDK's: lower is an agent to update, higher a page to update. Then
 * the agent's version must reach `minimum` when the page asks for one. */
function versionError(info, minimum) {
  const found = { protocol: Number.isInteger(info && info.protocol) ? info.protocol : null,
    version: info && typeof info.version === "string" ? info.version : null };
  const base = { agentProtocol: found.protocol, agentVersion: found.version,
    sdkProtocol: PROTOCOL, sdkVersion: SDK_VERSION };
  if (found.protocol !== PROTOCOL) {
    const pageTooOld = found.protocol !== null && found.protocol > PROTOCOL;
    return new ImzaError(Reason.VERSION_MISMATCH, pageTooOld
      ? `the agent speaks protocol ${found.protocol}, newer than this page's ${PROTOCOL}`
      : `the agent speaks protocol ${found.protocol}, older than this page's ${PROTOCOL}`,
    { kind: pageTooOld ? Kind.PAGE_TOO_OLD : Kind.AGENT_TOO_OLD,
      data: { ...base, subject: "protocol", required: PROTOCOL, found: found.protocol } });
  }
  if (minimum === undefined) return null;
  const have = parseVersion(found.version);
  if (have !== null && compareVersions(have, parseVersion(minimum)) >= 0) return null;
  return new ImzaError(Reason.VERSION_MISMATCH,
    `the agent is version ${found.version}, this page needs ${minimum} or later`,
    { kind: Kind.AGENT_TOO_OLD,
      data: { ...base, subject: "version", required: String(minimum), found: found.version } });
}

// The kinds that say a transport did not reach an agent (rather than an agent's answer).
const CONNECT_KINDS = new Set([Kind.NO_EXTENSION, Kind.EXTENSION_WITHOUT_AGENT,
  Kind.AGENT_NOT_RUNNING, Kind.TIMED_OUT, Kind.CONNECTION_LOST]);

function attemptOf(transport, error) {
  const attempt = { transport, reason: error.reason, kind: error.kind, message: error.message };
  if (error.data && error.data.agentMissing) attempt.agentMissing = true;
  return attempt;
}

/** One error for a connect() where every transport failed: the most specific wins. A
 * refusal is the agent's answer, so it beats "unreachable" elsewhere; a timeout means
 * something was there; the extension answering tells "agent missing" from "nothing". */
function connectError(attempts, hasExtension) {
  const data = { attempts, extension: hasExtension,
    agentMissing: attempts.some((a) => a.agentMissing === true) };
  const had = (kind) => attempts.some((a) => a.kind === kind);
  if (had(Kind.SITE_REFUSED)) {
    return new ImzaError(Reason.PERMISSION_DENIED, "the agent refuses this site",
      { data, kind: Kind.SITE_REFUSED });
  }
  // The agent answered agent.info with one of its own errors (RATE_LIMITED, BUSY, …).
  const answered = attempts.find((a) => a.kind !== null && !CONNECT_KINDS.has(a.kind));
  if (answered) {
    return new ImzaError(answered.reason, answered.message, { data, kind: answered.kind });
  }
  const reason = hasExtension ? Reason.AGENT_UNAVAILABLE : Reason.EXTENSION_UNAVAILABLE;
  if (had(Kind.TIMED_OUT)) {
    return new ImzaError(reason, "the imza-agent did not answer in time",
      { data, kind: Kind.TIMED_OUT });
  }
  if (hasExtension) {
    return new ImzaError(reason, "the extension is there but the imza-agent is not reachable",
      { data, kind: Kind.EXTENSION_WITHOUT_AGENT });
  }
  const direct = attempts.some((a) => a.transport !== "extension" && a.kind !== null);
  if (!direct) {
    return new ImzaError(reason, "no imza-agent extension on this page",
      { data, kind: Kind.NO_EXTENSION });
  }
  return new ImzaError(reason,
    "no imza-agent extension on this page and no agent reachable directly",
    { data, kind: Kind.AGENT_NOT_RUNNING });
}

// --- documents --------------------------------------------------------------------------

function isRecord(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isBytes(value) {
  return value instanceof ArrayBuffer || ArrayBuffer.isView(value);
}

/** A view of exactly the bytes of an ArrayBuffer or a view (a subarray or DataView names
 * part of its buffer). */
function viewOf(bytes) {
  return ArrayBuffer.isView(bytes)
    ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
}

/** `params` with each member given as bytes turned into base64 (the contract's form),
 * but those of `except` (about to be uploaded as they are). */
function withBase64(params, except = []) {
  const copy = { ...params };
  for (const [name, value] of Object.entries(copy)) {
    if (isBytes(value) && !except.includes(name)) copy[name] = toBase64(value);
  }
  return copy;
}

/** A document's size in bytes: of its bytes, or what its base64 decodes to; -1 when it is
 * neither (the agent says what is wrong with it). */
function documentSize(value) {
  if (isBytes(value)) return value.byteLength;
  if (typeof value !== "string") return -1;
  const padding = value.endsWith("==") ? 2 : value.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor(value.length / 4) * 3 - padding);
}

/** A document's bytes (decoding base64), or null when it is not a document. */
function bytesOf(value) {
  if (isBytes(value)) return viewOf(value);
  if (typeof value !== "string") return null;
  try {
    return fromBase64(value);
  } catch {
    return null;
  }
}

/** The members of an answer to an upload that stand for bytes in binary frames, in order:
 * `{"binary": N}` or `{"binary": N, "prefix": M}` (docs/protocol.md, "Uploads"); a
 * `prefix` of null is none. */
function binaryParts(result) {
  if (!isRecord(result)) return [];
  const count = (n) => Number.isSafeInteger(n) && n >= 0;
  const parts = [];
  for (const [member, value] of Object.entries(result)) {
    if (!isRecord(value) || !count(value.binary)) continue;
    if (Object.keys(value).some((key) => key !== "binary" && key !== "prefix")) continue;
    if (value.prefix != null && !count(value.prefix)) continue;
    parts.push({ member, size: value.binary, prefix: value.prefix ?? 0 });
  }
  return parts;
}

// --- helpers for pages ------------------------------------------------------------------

/** Standard base64 of bytes (ArrayBuffer, typed array) — the contract's binary form. */
export function toBase64(bytes) {
  const view = viewOf(bytes);
  let binary = "";
  for (let i = 0; i < view.length; i += 0x8000) {
    binary += String.fromCharCode(...view.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Bytes of a standard base64 string. */
export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** base64 of the SHA-2 hash of `data` (string as UTF-8, or bytes), for sign.hash. */
export async function hashOf(data, algorithm = "SHA-256") {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return toBase64(await crypto.subtle.digest(algorithm, bytes));
}
