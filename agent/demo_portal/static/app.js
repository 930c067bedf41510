// The demo portal's page: the whole integration is connect(), login(), signCms()/signPdf().
import { connect, ImzaError, Reason, fromBase64 } from "/sdk/imza.js";

const $ = (id) => document.getElementById(id);
let agent = null;

// What to tell the user for the SDK's "something is missing" reasons.
const ADVICE = {
  [Reason.EXTENSION_UNAVAILABLE]: "Install the imza-agent browser extension (and the agent).",
  [Reason.AGENT_UNAVAILABLE]: "Install or start the imza-agent program on this computer.",
  [Reason.VERSION_MISMATCH]: "Update the imza-agent program.",
  [Reason.USER_CANCELLED]: "Cancelled.",
  [Reason.PIN_LOCKED]: "The PIN is locked: unblock it with the PUK.",
};

function show(error) {
  const reason = error instanceof ImzaError ? error.reason : "PORTAL";
  $("error").textContent = `${reason}: ${ADVICE[reason] || error.message}`;
  $("error").dataset.reason = reason;
  $("status").textContent = "";
}

function status(text) {
  $("status").textContent = text;
  $("error").textContent = "";
  delete $("error").dataset.reason;
}

async function api(path, body = {}) {
  const response = await fetch(path, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" }, credentials: "same-origin" });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function getAgent() {
  if (agent && !agent.closed) return agent;
  // ?wss=…&ws=… point the demo at an agent on other ports (tests, development).
  const query = new URLSearchParams(window.location.search);
  const options = {};
  if (query.get("wss")) options.wssUrl = query.get("wss");
  if (query.get("ws")) options.wsUrl = query.get("ws");
  agent = await connect(options);
  $("transport").textContent = agent.transport;
  $("transport").dataset.transport = agent.transport;
  agent.addEventListener("close", () => { $("transport").textContent = "—"; });
  return agent;
}

function showUser(user) {
  $("user").textContent = user ? `${user.name} (${user.serialNumber})` : "not logged in";
  $("user").dataset.loggedIn = user ? "yes" : "no";
}

async function login() {
  status("Logging in…");
  const a = await getAgent();
  const { challenge } = await api("/api/login/challenge");
  const { token } = await a.login(challenge);
  const { user } = await api("/api/login", { challenge, token });
  showUser(user);
  status("Logged in");
}

async function signDeclaration(event) {
  event.preventDefault();
  status("Signing the declaration…");
  const form = Object.fromEntries(new FormData($("declaration")));
  // The server composes the declaration and keeps it; the page gets its digest and text.
  const doc = await api("/api/declaration/prepare", { form });
  const a = await getAgent();
  const chosen = await a.selectCertificate({ purpose: "sign",
    filter: { keyUsage: ["nonRepudiation"] } });
  // CAdES (detached CMS) over the server's digest: the document itself stays on the server.
  const params = { handle: chosen.handle, hash: doc.hash, hashAlgorithm: doc.hashAlgorithm,
    level: doc.level, display: { text: doc.text, documentName: "beyanname.txt" } };
  if (doc.tsaUrl) params.tsaUrl = doc.tsaUrl;
  const { cms } = await a.signCms(params);
  // The server verifies the CMS against the document it issued (once) and its trusted CAs.
  const verdict = await api("/api/declaration/submit", { documentId: doc.documentId, cms });
  $("declaration-result").textContent =
    `Qəbul edildi / Accepted: signed by ${verdict.signer.name}\n` +
    `${verdict.format}, SHA-256 ${verdict.sha256}`;
  $("declaration-result").dataset.accepted = "yes";
  status("Declaration signed");
}

async function signPdf() {
  status("Signing the PDF…");
  const pdf = new Uint8Array(await (await fetch("/sample.pdf")).arrayBuffer());
  const a = await getAgent();
  const chosen = await a.selectCertificate({ purpose: "sign" });
  let b64 = "";
  for (let i = 0; i < pdf.length; i += 0x8000) b64 += String.fromCharCode(...pdf.subarray(i, i + 0x8000));
  const { pdf: signed } = await a.signPdf({ handle: chosen.handle, pdf: btoa(b64), level: "B-B",
    reason: "DEMO", display: { documentName: "arayis.pdf" } });
  const url = URL.createObjectURL(new Blob([fromBase64(signed)], { type: "application/pdf" }));
  $("download").href = url;
  $("download").hidden = false;
  $("pdf-result").textContent = "Signed: download the file and open it in a PDF reader.";
  $("pdf-result").dataset.signed = "yes";
  status("PDF signed");
}

function guard(fn) {
  return (...args) => fn(...args).catch(show);
}

$("login").addEventListener("click", guard(login));
$("declaration").addEventListener("submit", guard(signDeclaration));
$("sign-pdf").addEventListener("click", guard(signPdf));
api("/api/me").then(({ user }) => showUser(user)).catch(() => {});
document.documentElement.dataset.ready = "yes";
