// imza-agent background: page connections (runtime ports from the content script) ↔ the
// native messaging host `imza-agent native-host`, which relays them to the agent.
//
// The origin the agent sees is computed here from the browser's port.sender.url — never
// from anything the page sent — and only https origins (plus development origins an
// administrator configured in the managed storage key "devOrigins") are relayed.
"use strict";

const HOST_NAME = "az.imza.agent";
const MAX_REQUEST_CHARS = 48 * 1024 * 1024; // the agent refuses larger frames anyway
const MAX_REPLY_CHARS = 64 * 1024 * 1024; // what we agree to reassemble from parts

let native = null; // the host connection, shared by all pages
let nextId = 1;
const pages = new Map(); // id -> {port, origin, parts: string[], partChars: number}

const devOrigins = (async () => {
  try {
    const managed = await chrome.storage.managed.get("devOrigins");
    const list = Array.isArray(managed.devOrigins) ? managed.devOrigins : [];
    return new Set(list.filter((o) => typeof o === "string"));
  } catch {
    return new Set(); // no managed storage (e.g. Firefox without a policy)
  }
})();

/** scheme://host[:port] of a page URL, or null when the page may not use the agent. */
function originOf(url, allowedDev) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  const origin = parsed.origin; // canonical: lower case, punycode, default port dropped
  if (!origin || origin === "null") return null;
  if (parsed.protocol === "https:") return origin;
  return allowedDev.has(origin) ? origin : null;
}

function tooLargeReply(text) {
  let id = null;
  try {
    const request = JSON.parse(text);
    if (typeof request.id === "string" || Number.isInteger(request.id)) id = request.id;
  } catch {
    // not JSON: the reply has no id, as the agent's would
  }
  return JSON.stringify({ jsonrpc: "2.0", id, error: { code: 4012,
    message: "the request is too large for the extension", data: { reason: "TOO_LARGE" } } });
}

function closePage(id, reason, detail) {
  const page = pages.get(id);
  if (!page) return;
  pages.delete(id);
  try {
    page.port.postMessage({ type: "closed", reason, detail });
    page.port.disconnect();
  } catch {
    // the tab is already gone
  }
}

function connectNative() {
  if (native) return native;
  const port = chrome.runtime.connectNative(HOST_NAME);
  native = port;
  port.onMessage.addListener(onNativeMessage);
  port.onDisconnect.addListener(() => {
    // Chromium reports why in lastError, Firefox in port.error.
    const error = chrome.runtime.lastError || port.error;
    const detail = (error && error.message) || "the agent's native host exited";
    if (native === port) native = null;
    for (const id of [...pages.keys()]) closePage(id, "AGENT_UNAVAILABLE", detail);
  });
  return port;
}

function onNativeMessage(message) {
  if (!message || typeof message !== "object") return;
  const page = pages.get(message.port);
  if (!page) return;
  if (message.type === "opened") {
    page.port.postMessage({ type: "opened" });
  } else if (message.type === "part" && typeof message.data === "string") {
    page.parts.push(message.data);
    page.partChars += message.data.length;
    if (page.partChars > MAX_REPLY_CHARS) {
      closePage(message.port, "AGENT_UNAVAILABLE", "a reply was larger than the extension accepts");
      native?.postMessage({ type: "close", port: message.port });
    }
  } else if (message.type === "message" && typeof message.data === "string") {
    const data = page.parts.length ? page.parts.join("") + message.data : message.data;
    page.parts = [];
    page.partChars = 0;
    page.port.postMessage({ type: "message", data });
  } else if (message.type === "closed") {
    closePage(message.port, String(message.reason || "CLOSED"), String(message.detail || ""));
  }
}

chrome.runtime.onConnect.addListener((port) => {
  const sender = port.sender || {};
  // Only our own content scripts, in a tab.
  if (port.name !== "imza-page" || sender.id !== chrome.runtime.id || !sender.tab) {
    port.disconnect();
    return;
  }
  const id = nextId++;
  const queue = []; // page messages that arrive before the origin is checked
  let page = null;
  port.onMessage.addListener((message) => {
    if (!message || message.type !== "message" || typeof message.data !== "string") return;
    if (!page) {
      queue.push(message.data);
      return;
    }
    send(message.data);
  });
  port.onDisconnect.addListener(() => {
    if (pages.delete(id)) native?.postMessage({ type: "close", port: id });
  });

  function send(data) {
    if (!pages.has(id)) return;
    if (data.length > MAX_REQUEST_CHARS) {
      port.postMessage({ type: "message", data: tooLargeReply(data) });
      return;
    }
    native?.postMessage({ type: "message", port: id, data });
  }

  devOrigins.then((allowedDev) => {
    const origin = originOf(sender.url, allowedDev);
    if (!origin) {
      port.postMessage({ type: "closed", reason: "REFUSED",
        detail: "only https pages (and configured development origins) may use the agent" });
      port.disconnect();
      return;
    }
    page = { port, origin, parts: [], partChars: 0 };
    pages.set(id, page);
    try {
      connectNative().postMessage({ type: "open", port: id, origin });
    } catch (error) {
      closePage(id, "AGENT_UNAVAILABLE", String(error));
      return;
    }
    for (const data of queue.splice(0)) send(data);
  });
});
