// imza-agent page SDK: talk to the citizen's signing agent from a web page.
//
// An ES module with no dependencies and no build step:
//
//   import { connect, ImzaError, Reason } from "/sdk/imza.js";
//   const agent = await connect();              // extension, else wss://, else ws://
//   const { token } = await agent.login(challengeFromYourServer);
//
// The wire contract is docs/protocol.md; every method there has one promise-returning
// function here. Failures are ImzaError objects whose `reason` is one of `Reason`.

export const PROTOCOL = 1;
export const SDK_VERSION = "0.1.0";

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
  VERSION_MISMATCH: "VERSION_MISMATCH", // the agent speaks another protocol version
});

const REASON_BY_CODE = Object.freeze({
  4001: Reason.USER_CANCELLED, 4002: Reason.USER_TIMEOUT, 4003: Reason.PERMISSION_DENIED,
  4004: Reason.NO_CERTIFICATE, 4005: Reason.TOKEN_NOT_PRESENT, 4006: Reason.PIN_LOCKED,
  4007: Reason.CERTIFICATE_INVALID, 4008: Reason.BUSY, 4009: Reason.NETWORK,
  4010: Reason.UNSUPPORTED, 4011: Reason.INVALID_HANDLE, 4012: Reason.TOO_LARGE,
  4013: Reason.RATE_LIMITED, 5000: Reason.INTERNAL, [-32700]: Reason.PARSE_ERROR,
  [-32600]: Reason.INVALID_REQUEST, [-32601]: Reason.METHOD_NOT_FOUND,
  [-32602]: Reason.INVALID_PARAMS,
});

/** A failed call or connection. `reason` is a `Reason` value; `code` the JSON-RPC
 * code when the agent answered; `data` the error's data (e.g. `unlock`, `fields`). */
export class ImzaError extends Error {
  constructor(reason, message, { code = null, data = {}, cause } = {}) {
    super(message || reason, cause === undefined ? undefined : { cause });
    this.name = "ImzaError";
    this.reason = reason;
    this.code = code;
    this.data = data;
  }

  static fromWire(error) {
    const data = (error && typeof error.data === "object" && error.data) || {};
    const reason = data.reason || REASON_BY_CODE[error && error.code] || Reason.INTERNAL;
    return new ImzaError(reason, String((error && error.message) || reason),
      { code: error && error.code, data });
  }
}

const DEFAULTS = Object.freeze({
  transports: ["extension", "wss", "ws"],
  extensionTimeout: 1000, // ms the extension has to acknowledge
  openTimeout: 35000, // ms for the extension's agent connection (it may start the agent)
  socketTimeout: 5000, // ms for a WebSocket to open
  wssUrl: "wss://127.0.0.1:29170/v1",
  wsUrl: "ws://127.0.0.1:29171/v1",
});

const CHANNEL = "imza-agent";

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
        socket.close();
        reject(new ImzaError(Reason.AGENT_UNAVAILABLE, `${url} did not answer`));
      }, timeoutMs);
      socket.onopen = () => {
        clearTimeout(timer);
        resolve(new WebSocketChannel(socket));
      };
      socket.onerror = socket.onclose = () => {
        clearTimeout(timer);
        reject(new ImzaError(Reason.AGENT_UNAVAILABLE, `${url} is not reachable`));
      };
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.onmessage = () => {};
    this.onclose = () => {};
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.onmessage(event.data);
    };
    socket.onerror = null;
    socket.onclose = () => this.onclose("the agent closed the connection");
  }

  send(text) {
    this.socket.send(text);
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

class ExtensionChannel {
  static open(timeoutMs) {
    const port = randomId();
    const channel = new ExtensionChannel(port);
    return withTimeout(channel.opened, timeoutMs, () => {
      channel.close();
      return new ImzaError(Reason.AGENT_UNAVAILABLE, "the agent did not answer the extension");
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
          const detail = m.detail || m.reason || "closed";
          if (!this.isOpen) {
            const reason = m.reason === "REFUSED" ? Reason.PERMISSION_DENIED : Reason.AGENT_UNAVAILABLE;
            reject(new ImzaError(reason, `extension: ${detail}`, { data: { detail: m.reason } }));
          } else {
            this.isOpen = false;
            this.onclose(detail);
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
    this.agent = null; // agent.info's answer, set by connect()
    this._channel = channel;
    this._nextId = 1;
    this._pending = new Map();
    this.closed = false;
    channel.onmessage = (text) => this._receive(text);
    channel.onclose = (why) => this._closed(why);
  }

  /** Any method by name: resolves to `result`, rejects with ImzaError. */
  call(method, params) {
    if (this.closed) {
      return Promise.reject(new ImzaError(Reason.AGENT_UNAVAILABLE, "the connection is closed"));
    }
    const id = this._nextId++;
    const message = { jsonrpc: "2.0", id, method };
    if (params !== undefined) message.params = params;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      try {
        this._channel.send(JSON.stringify(message));
      } catch (cause) {
        this._pending.delete(id);
        reject(new ImzaError(Reason.AGENT_UNAVAILABLE, "sending failed", { cause }));
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
  login(challenge) { return this.call("auth.login", { challenge }); }
  subscribeTokens() { return this.call("tokens.subscribe"); }

  close() {
    if (this.closed) return;
    this._channel.close();
    this._closed("closed by the page");
  }

  _receive(text) {
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
    this._pending.delete(message.id);
    if (message.error) waiter.reject(ImzaError.fromWire(message.error));
    else waiter.resolve(message.result);
  }

  _closed(why) {
    if (this.closed) return;
    this.closed = true;
    for (const { reject } of this._pending.values()) {
      reject(new ImzaError(Reason.AGENT_UNAVAILABLE, `the connection closed: ${why}`));
    }
    this._pending.clear();
    this.dispatchEvent(new CustomEvent("close", { detail: { reason: why } }));
  }
}

/**
 * Connect to the agent: through the extension when it acknowledges within
 * `extensionTimeout`, else wss://, else ws://. Checks the protocol version.
 * Rejects with ImzaError: EXTENSION_UNAVAILABLE (no extension, agent not reachable
 * directly), AGENT_UNAVAILABLE (extension present, agent not), VERSION_MISMATCH, or
 * PERMISSION_DENIED (the agent refuses this origin).
 */
export async function connect(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  const attempts = [];
  let extension = null;
  for (const transport of opts.transports) {
    let channel;
    try {
      if (transport === "extension") {
        extension = await detectExtension(opts.extensionTimeout);
        if (!extension) {
          attempts.push({ transport, reason: Reason.EXTENSION_UNAVAILABLE });
          continue;
        }
        channel = await ExtensionChannel.open(opts.openTimeout);
      } else if (transport === "wss" || transport === "ws") {
        const url = transport === "wss" ? opts.wssUrl : opts.wsUrl;
        channel = await WebSocketChannel.open(url, opts.socketTimeout);
      } else {
        throw new TypeError(`unknown transport ${transport}`);
      }
    } catch (error) {
      if (!(error instanceof ImzaError)) throw error;
      attempts.push({ transport, reason: error.reason, message: error.message });
      continue;
    }
    const connection = new Connection(channel, transport);
    let info;
    try {
      info = await connection.info();
    } catch (error) {
      connection.close();
      attempts.push({ transport, reason: error.reason, message: error.message });
      continue;
    }
    if (info.protocol !== PROTOCOL) {
      connection.close();
      throw new ImzaError(Reason.VERSION_MISMATCH,
        `the agent speaks protocol ${info.protocol}, this page ${PROTOCOL}`,
        { data: { agentProtocol: info.protocol, agentVersion: info.version } });
    }
    connection.agent = info;
    return connection;
  }
  const data = { attempts, extension: extension !== null };
  if (attempts.some((a) => a.reason === Reason.PERMISSION_DENIED)) {
    throw new ImzaError(Reason.PERMISSION_DENIED, "the agent refuses this site", { data });
  }
  if (extension === null && opts.transports.includes("extension")) {
    throw new ImzaError(Reason.EXTENSION_UNAVAILABLE,
      "no imza-agent extension on this page and no agent reachable directly", { data });
  }
  throw new ImzaError(Reason.AGENT_UNAVAILABLE, "the imza-agent is not reachable", { data });
}

// --- helpers for pages ------------------------------------------------------------------

/** Standard base64 of bytes (ArrayBuffer, typed array) — the contract's binary form. */
export function toBase64(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes.buffer ?? bytes);
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
