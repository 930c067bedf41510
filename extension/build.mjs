// Builds the unpacked extension for each browser family from one source:
//   node extension/build.mjs [outDir]      (default: extension/dist)
// writes <outDir>/chromium and <outDir>/firefox, each with its own manifest.json
// (manifest.base.json's "common" merged with the browser's section) and the same scripts.
// The installable packages (Chromium zip, Firefox .xpi) are made by the same merge in
// Python, so the wheel and the .deb need no node: installer/extension/package.py, or
// `imza-agent extension` (agent/browser_extension; tests/test_extension_package.py checks
// the two builds agree byte for byte).
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const base = JSON.parse(readFileSync(join(here, "manifest.base.json"), "utf8"));

/** The ID Chromium gives an extension with this manifest "key" (a base64 SPKI). */
export function chromiumExtensionId(key) {
  const digest = createHash("sha256").update(Buffer.from(key, "base64")).digest("hex");
  return [...digest.slice(0, 32)].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join("");
}

export function build(outDir = join(here, "dist")) {
  const built = {};
  for (const browser of ["chromium", "firefox"]) {
    const dir = join(resolve(outDir), browser);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const manifest = { ...base.common, ...base[browser] };
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    for (const name of readdirSync(join(here, "src"))) {
      copyFileSync(join(here, "src", name), join(dir, name));
    }
    built[browser] = dir;
  }
  return { ...built, chromiumId: chromiumExtensionId(base.chromium.key) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = build(process.argv[2]);
  console.log(JSON.stringify(result, null, 2));
}
