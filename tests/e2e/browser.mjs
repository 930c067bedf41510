// Drives Debian's Chromium through one scenario of tests/e2e/test_browser.py and prints
// what it observed as one JSON line; the Python test asserts on it.
//
//   node tests/e2e/browser.mjs plan.json
//
// plan: {scenario: "portal" | "hostile", userDataDir, extensionDir?, url, origin,
//        publicPort?, grantLocalNetwork?, hosts: [...], spki: [...], home,
//        wsUrl, wssUrl, actions?: [...], portalOrigin?, sdk (the packed imza.js)}
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

import { chromiumArgs } from "./chromium_args.mjs";
import { routePackedSdk } from "./packed_sdk.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const OUTCOME_TIMEOUT = 90_000; // generous for a loaded CI machine; never asserted on

async function probeWebSocket(page, url) {
  return page.evaluate((target) => new Promise((resolve) => {
    let socket;
    try {
      socket = new WebSocket(target);
    } catch (error) {
      resolve(`throws: ${error.name}`);
      return;
    }
    let timer = setTimeout(() => resolve("timeout"), 10_000);
    // Open, then either kept open ("open") or closed by the agent at once: a refused
    // origin is told so with 1008 ("closed 1008 refused: …").
    socket.onopen = () => {
      clearTimeout(timer);
      timer = setTimeout(() => { socket.onclose = null; socket.close(); resolve("open"); }, 2_000);
    };
    socket.onclose = (event) => {
      clearTimeout(timer);
      resolve(event.code === 1006 ? "error" : `closed ${event.code} ${event.reason}`);
    };
    socket.onerror = () => { clearTimeout(timer); resolve("error"); };
  }), url);
}

/** Click, then wait until element `id` has data-`key`="yes" or the page shows an error. */
async function act(page, selector, [id, key]) {
  await page.click(selector);
  await page.waitForFunction(([doneId, doneKey]) => {
    const error = document.getElementById("error").dataset.reason;
    return Boolean(error) || document.getElementById(doneId).dataset[doneKey] === "yes";
  }, [id, key], { timeout: OUTCOME_TIMEOUT, polling: 100 });
  const error = await page.$eval("#error", (e) => e.dataset.reason || null);
  return { error, errorText: error ? await page.textContent("#error") : null };
}

async function portalScenario(page, result) {
  await page.goto(plan.url);
  await page.waitForSelector("html[data-ready='yes']");
  result.direct = { ws: await probeWebSocket(page, plan.wsUrl) };
  const actions = plan.actions || ["login", "declaration"];
  if (actions.includes("fallback")) {
    // WebSockets first, extension last: with local-network access not granted the direct
    // attempts fail and the SDK falls back to the extension.
    result.fallback = await page.evaluate(async (urls) => {
      const sdk = await import("/sdk/imza.js");
      try {
        const agent = await sdk.connect({ transports: ["wss", "ws", "extension"], ...urls });
        const info = await agent.info();
        agent.close();
        return { transport: agent.transport, seen: info.transport, origin: info.origin };
      } catch (error) {
        return { error: error.reason, attempts: error.data?.attempts };
      }
    }, { wssUrl: plan.wssUrl, wsUrl: plan.wsUrl });
  }
  if (actions.includes("versions")) {
    // Version negotiation against the real agent: this SDK's protocol, and a minimum agent
    // version the agent has (its own) and one it has not.
    result.versions = await page.evaluate(async (urls) => {
      const sdk = await import("/sdk/imza.js");
      const out = { sdkProtocol: sdk.PROTOCOL, sdkVersion: sdk.SDK_VERSION };
      const agent = await sdk.connect(urls);
      out.agent = { version: agent.agent.version, protocol: agent.agent.protocol };
      agent.close();
      const again = await sdk.connect({ ...urls, minimumAgentVersion: out.agent.version });
      out.sameVersion = again.transport;
      again.close();
      try {
        await sdk.connect({ ...urls, minimumAgentVersion: "999.0.0" });
        out.tooOld = "connected";
      } catch (error) {
        out.tooOld = { kind: error.kind, reason: error.reason, data: error.data,
          isImzaError: error instanceof sdk.ImzaError };
      }
      return out;
    }, { wssUrl: plan.wssUrl, wsUrl: plan.wsUrl });
  }
  if (actions.includes("login")) {
    result.login = await act(page, "#login", ["user", "loggedIn"]);
    result.user = await page.textContent("#user");
    result.transport = await page.$eval("#transport", (e) => e.dataset.transport || null);
  }
  if (actions.includes("declaration")) {
    result.declaration = await act(page, "#sign-declaration",
      ["declaration-result", "accepted"]);
    result.declarationText = await page.textContent("#declaration-result");
  }
  if (actions.includes("pdf")) {
    result.pdf = await act(page, "#sign-pdf", ["pdf-result", "signed"]);
    // What the download link holds, as base64, for the test to check.
    result.pdfFile = await page.evaluate(async () => {
      const href = document.getElementById("download").href;
      if (!href) return null;
      const bytes = new Uint8Array(await (await fetch(href)).arrayBuffer());
      let binary = "";
      for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return btoa(binary);
    });
  }
  if (actions.includes("tokens")) {
    result.tokens = await page.evaluate(async (urls) => {
      const sdk = await import("/sdk/imza.js");
      const agent = await sdk.connect(urls);
      const first = await agent.subscribeTokens();
      agent.close();
      return first;
    }, { wssUrl: plan.wssUrl, wsUrl: plan.wsUrl });
  }
}

async function hostileScenario(page, result) {
  await page.goto(plan.url);
  await page.waitForSelector("html[data-ready='yes']");
  result.hostile = await page.evaluate(async ({ wssUrl, wsUrl, portalOrigin }) => {
    const sdk = await import("/sdk/imza.js");
    const out = {};
    // 1. The SDK, as any page would use it.
    try {
      const agent = await sdk.connect({ wssUrl, wsUrl });
      out.connected = agent.transport;
      try {
        out.certificate = await agent.selectCertificate({ purpose: "sign" });
      } catch (error) {
        out.selectError = error.reason;
      }
    } catch (error) {
      out.connectError = error.reason;
      out.attempts = error.data?.attempts;
    }
    // 2. Talking to the content script directly, claiming to be the portal.
    out.spoof = await new Promise((resolve) => {
      const events = [];
      const timer = setTimeout(() => resolve({ events, timeout: true }), 15_000);
      window.addEventListener("message", (event) => {
        const m = event.data;
        if (!m || m.channel !== "imza-agent" || m.dir !== "to-page" || m.port !== "spoof") return;
        events.push(m.kind);
        if (m.kind === "opened") {
          window.postMessage({ channel: "imza-agent", dir: "to-extension", kind: "message",
            port: "spoof", origin: portalOrigin,
            data: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "certificates.select",
              params: { purpose: "auth" } }) }, location.origin);
        } else if (m.kind === "message") {
          events.push(m.data);
        } else if (m.kind === "closed") {
          clearTimeout(timer);
          resolve({ events, reason: m.reason, detail: m.detail });
        }
      });
      window.postMessage({ channel: "imza-agent", dir: "to-extension", kind: "open",
        port: "spoof", origin: portalOrigin, url: `${portalOrigin}/` }, location.origin);
    });
    return out;
  }, { wssUrl: plan.wssUrl, wsUrl: plan.wsUrl, portalOrigin: plan.portalOrigin });
  result.direct = { ws: await probeWebSocket(page, plan.wsUrl),
    wss: await probeWebSocket(page, plan.wssUrl) };
}

const result = { scenario: plan.scenario };
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args: chromiumArgs(plan),
  env: { ...process.env, HOME: plan.home },
});
try {
  await routePackedSdk(context, plan, result);
  if (plan.grantLocalNetwork) {
    await context.grantPermissions(["local-network-access"], { origin: plan.origin });
  }
  if (plan.extensionDir) {
    // The service worker starting proves the unpacked extension loaded.
    const worker = context.serviceWorkers()[0] || await context.waitForEvent("serviceworker");
    result.extensionId = new URL(worker.url()).host;
  }
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") (result.console ||= []).push(message.text());
  });
  if (plan.scenario === "portal") await portalScenario(page, result);
  else if (plan.scenario === "hostile") await hostileScenario(page, result);
  else throw new Error(`unknown scenario ${plan.scenario}`);
} catch (error) {
  result.failure = String(error && error.stack || error);
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
