// The Chromium command line every e2e driver shares: no network of its own (this machine
// has none), the plan's host names on loopback, and only the portal's own key excused
// from certificate checks — the agent's wss certificate must be trusted the real way
// (NSS, as `imza-agent` installs it).
//
// plan: {hosts: [...], spki: [...], publicPort?, extensionDir?}
export function chromiumArgs(plan) {
  const args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    `--host-resolver-rules=${plan.hosts.map((h) => `MAP ${h} 127.0.0.1`).join(", ")}`,
    `--ignore-certificate-errors-spki-list=${plan.spki.join(",")}`];
  if (plan.publicPort) {
    // The portal is a public site: it must be granted local-network access to reach
    // loopback, as real portals are in Chrome 147+.
    args.push(`--ip-address-space-overrides=127.0.0.1:${plan.publicPort}=public`);
  }
  if (plan.extensionDir) {
    args.push(`--disable-extensions-except=${plan.extensionDir}`,
      `--load-extension=${plan.extensionDir}`);
  }
  return args;
}
