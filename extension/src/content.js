// imza-agent content script: a relay between the page (window.postMessage, used by the
// page SDK) and the extension's background (one runtime port per page connection).
//
// It adds nothing of its own: in particular it sends no origin. The background takes the
// origin from the browser (port.sender.url), so a page cannot claim to be another site.
(() => {
  "use strict";
  const CHANNEL = "imza-agent";
  const origin = window.location.origin;
  if (!origin || origin === "null") return; // opaque origins (sandboxed frames) get nothing

  const version = chrome.runtime.getManifest().version;
  const ports = new Map(); // the page's connection id -> runtime.Port

  function toPage(message) {
    window.postMessage({ channel: CHANNEL, dir: "to-page", ...message }, origin);
  }

  function open(id) {
    if (typeof id !== "string" || id.length === 0 || id.length > 64 || ports.has(id)) return;
    let port;
    try {
      port = chrome.runtime.connect({ name: "imza-page" });
    } catch (error) {
      // The extension was updated or removed while the page stayed open.
      toPage({ kind: "closed", port: id, reason: "EXTENSION_UNAVAILABLE", detail: String(error) });
      return;
    }
    ports.set(id, port);
    port.onMessage.addListener((message) => {
      if (!message || typeof message !== "object") return;
      if (message.type === "opened") {
        toPage({ kind: "opened", port: id });
      } else if (message.type === "message" && typeof message.data === "string") {
        toPage({ kind: "message", port: id, data: message.data });
      } else if (message.type === "closed") {
        ports.delete(id);
        port.disconnect();
        toPage({ kind: "closed", port: id, reason: message.reason, detail: message.detail });
      }
    });
    port.onDisconnect.addListener(() => {
      if (ports.delete(id)) {
        toPage({ kind: "closed", port: id, reason: "AGENT_UNAVAILABLE", detail: "the extension disconnected" });
      }
    });
  }

  window.addEventListener("message", (event) => {
    // Only this window's own messages: not other frames', not our own answers.
    if (event.source !== window || event.origin !== origin) return;
    const m = event.data;
    if (!m || typeof m !== "object" || m.channel !== CHANNEL || m.dir !== "to-extension") return;
    if (m.kind === "hello") {
      toPage({ kind: "hello", nonce: m.nonce, version });
    } else if (m.kind === "open") {
      open(m.port);
    } else if (m.kind === "message") {
      const port = ports.get(m.port);
      if (port && typeof m.data === "string") port.postMessage({ type: "message", data: m.data });
    } else if (m.kind === "close") {
      const port = ports.get(m.port);
      if (port) {
        ports.delete(m.port);
        port.disconnect();
      }
    }
  });
})();
