// Drives Debian's firefox-esr over WebDriver BiDi (puppeteer-core, no browser download)
// through a scenario of tests/e2e/test_firefox.py and prints what it saw as one JSON line.
//
//   node tests/e2e/firefox.mjs plan.json
//
// plan: {install: "bidi" | "policy", profileDir, extension (the .xpi), policyFile?, url,
//        hosts: [...], home, actions?: ["login", "declaration"], sdk (the packed imza.js)}
//
// install "bidi": BiDi's webExtension.install (Firefox 138+) installs the .xpi as a
// temporary add-on, unsigned, as a person trying it from about:debugging does.
// install "policy": the administrator's way, the ExtensionSettings policy of
// docs/extension.md (force_installed, install_url) in a policies.json. Firefox reads a
// policies.json from elsewhere than /etc only in automation (Cu.isInAutomation), so this
// profile turns that on (its pref and MOZ_DISABLE_NONLOCAL_CONNECTIONS, as Mozilla's own
// test harness does) instead of the test writing into /etc; the unsigned .xpi is accepted
// because ESR honours xpinstall.signatures.required = false. The policy code path and the
// install from install_url are Firefox's own.
import { readFileSync } from "node:fs";
import puppeteer from "puppeteer-core";

import { interceptPackedSdk } from "./packed_sdk.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const FIREFOX = "/usr/bin/firefox-esr";
const OUTCOME_TIMEOUT = 90_000; // generous for a loaded CI machine; never asserted on

/** Click, then wait until element `id` has data-`key`="yes" or the page shows an error. */
async function act(page, selector, [id, key]) {
  await page.click(selector);
  await page.waitForFunction((doneId, doneKey) => {
    const error = document.getElementById("error").dataset.reason;
    return Boolean(error) || document.getElementById(doneId).dataset[doneKey] === "yes";
  }, { timeout: OUTCOME_TIMEOUT, polling: 100 }, id, key);
  const error = await page.$eval("#error", (e) => e.dataset.reason || null);
  const errorText = error ? await page.$eval("#error", (e) => e.textContent) : null;
  return { error, errorText };
}

/** What the SDK sees of the extension and, through it, the agent. */
async function probe(page) {
  return page.evaluate(async () => {
    const sdk = await import("/sdk/imza.js");
    try {
      const agent = await sdk.connect({ transports: ["extension"] });
      const info = await agent.info();
      agent.close();
      return { transport: agent.transport, seen: info.transport, origin: info.origin };
    } catch (error) {
      return { error: error.reason || String(error), attempts: error.data?.attempts };
    }
  });
}

const result = {};
const policy = plan.install === "policy";
const prefs = {
  // portal.test and friends resolve to loopback, as --host-resolver-rules does for Chromium
  "network.dns.localDomains": plan.hosts.join(","),
};
if (policy) {
  Object.assign(prefs, {
    "browser.policies.alternatePath": plan.policyFile,
    "security.turn_off_all_security_so_that_viruses_can_take_over_this_computer": true,
    "xpinstall.signatures.required": false,
  });
}
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: FIREFOX,
  headless: true,
  userDataDir: plan.profileDir,
  // The portal's own self-signed certificate; the agent is reached through the extension.
  acceptInsecureCerts: true,
  env: { ...process.env, HOME: plan.home,
    ...(policy ? { MOZ_DISABLE_NONLOCAL_CONNECTIONS: "1" } : {}) },
  extraPrefsFirefox: prefs,
});
try {
  result.browserVersion = await browser.version();
  if (!policy) result.extensionId = await browser.installExtension(plan.extension);
  const page = (await browser.pages())[0] || await browser.newPage();
  await interceptPackedSdk(page, plan, result);
  page.on("console", (message) => {
    if (message.type() === "error") (result.console ||= []).push(message.text());
  });
  // A policy installs the add-on in the background after start-up: its content script is
  // in the pages loaded after that, so load the portal until the SDK finds the extension.
  const deadline = Date.now() + OUTCOME_TIMEOUT;
  result.loads = 0;
  do {
    await page.goto(plan.url);
    await page.waitForSelector("html[data-ready='yes']");
    result.loads += 1;
    result.probe = await probe(page);
  } while (policy && result.probe.error && Date.now() < deadline);
  const actions = plan.actions || ["login"];
  if (actions.includes("login")) {
    result.login = await act(page, "#login", ["user", "loggedIn"]);
    result.user = await page.$eval("#user", (e) => e.textContent);
    result.transport = await page.$eval("#transport", (e) => e.dataset.transport || null);
  }
  if (actions.includes("declaration")) {
    result.declaration = await act(page, "#sign-declaration", ["declaration-result", "accepted"]);
    result.declarationText = await page.$eval("#declaration-result", (e) => e.textContent);
  }
} catch (error) {
  result.failure = String(error && error.stack || error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
