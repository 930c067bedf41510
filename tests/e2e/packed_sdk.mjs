// The browser drivers answer the page's request for /sdk/imza.js with the packed SDK (the
// `imza.js` of the tarball `npm pack extension/sdk` made: tests/packed_sdk.py), not with
// the file the demo portal would serve, so the end-to-end tests exercise what a portal
// installs. Each answered request is recorded in result.sdk; the Python side asserts there
// was at least one, so a page that got the SDK any other way fails its test.
//
// plan.sdk: the packed imza.js (required).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const SDK_PATH = "/sdk/imza.js";
const CONTENT_TYPE = "text/javascript; charset=utf-8";

function packed(plan, result) {
  if (!plan.sdk) throw new Error("plan.sdk (the packed imza.js) is required");
  const body = readFileSync(plan.sdk);
  result.sdk = { file: plan.sdk, sha256: createHash("sha256").update(body).digest("hex"),
    served: [] };
  return body;
}

const isSdk = (url) => new URL(url).pathname === SDK_PATH;

/** Playwright: route every page of `context` (set before the first page loads). */
export async function routePackedSdk(context, plan, result) {
  const body = packed(plan, result);
  await context.route((url) => url.pathname === SDK_PATH, async (route) => {
    result.sdk.served.push(route.request().url());
    await route.fulfill({ status: 200, contentType: CONTENT_TYPE, body });
  });
}

/** puppeteer (Firefox over WebDriver BiDi): intercept the requests of `page`. */
export async function interceptPackedSdk(page, plan, result) {
  const body = packed(plan, result);
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    if (request.isInterceptResolutionHandled()) return;
    if (isSdk(request.url())) {
      result.sdk.served.push(request.url());
      request.respond({ status: 200, contentType: CONTENT_TYPE, body });
    } else {
      request.continue();
    }
  });
}
