// Drives Debian's Chromium over the demo portal for tests/e2e/test_sdk_outcomes.py: picks
// a language and presses buttons with the keyboard only, then reads the message area
// next to each button. Prints what it saw as one JSON line.
//
//   node tests/e2e/sdk_outcomes.mjs plan.json
//
// plan: {userDataDir, url, home, hosts: [...], spki: [...], extensionDir?, sdk,
//        steps: [{language: "ru"} | {press: "login" | "sign-declaration" | "sign-pdf",
//                                     area: "login" | "declaration" | "pdf"}]}
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

import { chromiumArgs } from "./chromium_args.mjs";
import { routePackedSdk } from "./packed_sdk.mjs";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const OUTCOME_TIMEOUT = 90_000; // generous for a loaded CI machine; never asserted on

/** Focus an element and press Enter: what a keyboard user does. */
async function pressWithKeyboard(page, selector) {
  await page.focus(selector);
  const focused = await page.evaluate(() => document.activeElement?.id || document.activeElement?.dataset.lang || null);
  await page.keyboard.press("Enter");
  return focused;
}

async function readArea(page, area) {
  return page.evaluate((name) => {
    const element = document.getElementById(`${name}-outcome`);
    return {
      outcome: element.dataset.outcome || null,
      kind: element.dataset.kind || null,
      text: element.textContent,
      message: element.querySelector(".message")?.textContent ?? null,
      code: element.querySelector(".code")?.textContent ?? null,
      live: element.getAttribute("aria-live"),
      describes: document.querySelector(`[aria-describedby="${name}-outcome"]`)?.id ?? null,
    };
  }, area);
}

async function pageState(page) {
  return page.evaluate(() => ({
    lang: document.documentElement.lang,
    pressed: [...document.querySelectorAll("#languages button")]
      .filter((b) => b.getAttribute("aria-pressed") === "true").map((b) => b.dataset.lang),
    buttonLangs: [...document.querySelectorAll("#languages button")].map((b) => b.lang),
    loginButton: document.getElementById("login").textContent,
    areas: Object.fromEntries(["login", "declaration", "pdf"].map((name) => [name,
      document.getElementById(`${name}-outcome`).textContent])),
  }));
}

const result = { steps: [] };
const context = await chromium.launchPersistentContext(plan.userDataDir, {
  executablePath: "/usr/bin/chromium", headless: true, args: chromiumArgs(plan),
  env: { ...process.env, HOME: plan.home },
});
try {
  await routePackedSdk(context, plan, result);
  if (plan.extensionDir) {
    const worker = context.serviceWorkers()[0] || await context.waitForEvent("serviceworker");
    result.extensionId = new URL(worker.url()).host;
  }
  const page = context.pages()[0] || await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") (result.console ||= []).push(message.text());
  });
  await page.goto(plan.url);
  await page.waitForSelector("html[data-ready='yes']");
  for (const step of plan.steps) {
    if (step.language) {
      const focused = await pressWithKeyboard(page, `#languages button[data-lang='${step.language}']`);
      await page.waitForFunction((lang) => document.documentElement.lang === lang,
        step.language, { timeout: OUTCOME_TIMEOUT });
      result.steps.push({ language: step.language, focused, state: await pageState(page) });
    } else if (step.press) {
      const focused = await pressWithKeyboard(page, `#${step.press}`);
      await page.waitForFunction((name) => {
        const state = document.getElementById(`${name}-outcome`).dataset.outcome;
        return state === "error" || state === "done";
      }, step.area, { timeout: OUTCOME_TIMEOUT, polling: 100 });
      result.steps.push({ press: step.press, focused, area: await readArea(page, step.area),
        state: await pageState(page),
        transport: await page.$eval("#transport", (e) => e.dataset.transport || null) });
    }
  }
} catch (error) {
  result.failure = String(error && error.stack || error);
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
