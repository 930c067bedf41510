// The first-run check of tests/e2e/test_first_run_browser.py: Debian's Chromium with a
// fresh profile and the fresh HOME whose ~/.pki/nssdb the agent filled at its first start
// loads the demo portal — with no flag that excuses certificate errors — and logs in.
// Prints what it saw as one JSON line.
//
//   node tests/e2e/first_run_browser.mjs plan.json
//
// plan: {userDataDir, home, url, sdk (the packed imza.js)}
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

import { routePackedSdk } from "./packed_sdk.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const OUTCOME_TIMEOUT = 90_000; // generous for a loaded CI machine; never asserted on

const result = { console: [], failedRequests: [] };
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true,
  // Deliberately no --ignore-certificate-errors(-spki-list): the agent's CA must be
  // trusted the way a person's browser trusts it, through $HOME/.pki/nssdb.
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
  env: { ...process.env, HOME: plan.home },
});
try {
  await routePackedSdk(context, plan, result);
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") result.console.push(message.text());
  });
  page.on("requestfailed", (request) => {
    result.failedRequests.push(`${request.url()}: ${request.failure()?.errorText}`);
  });
  try {
    const response = await page.goto(plan.url);
    result.status = response ? response.status() : null;
    const security = response ? await response.securityDetails() : null;
    result.issuer = security ? security.issuer : null;
  } catch (error) {
    result.gotoError = String(error && error.message || error); // net::ERR_CERT_… here
  }
  result.title = await page.title();
  result.bodyText = (await page.textContent("body").catch(() => "")) || "";
  if (!result.gotoError) {
    await page.waitForSelector("html[data-ready='yes']", { timeout: OUTCOME_TIMEOUT });
    result.ready = true;
    await page.click("#login");
    await page.waitForFunction(() => {
      const error = document.getElementById("error").dataset.reason;
      return Boolean(error) || document.getElementById("user").dataset.loggedIn === "yes";
    }, null, { timeout: OUTCOME_TIMEOUT, polling: 100 });
    result.transport = await page.$eval("#transport", (e) => e.dataset.transport || null);
    result.error = await page.$eval("#error", (e) => e.dataset.reason || null);
    result.errorText = result.error ? await page.textContent("#error") : null;
    result.user = await page.textContent("#user");
  }
} catch (error) {
  result.failure = String(error && error.stack || error);
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
