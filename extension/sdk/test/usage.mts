// A page's code against the package's types: tests/test_sdk_package.py installs the packed
// tarball as node_modules/@imza/agent-sdk next to a copy of this file and runs
// `tsc --noEmit --strict` on it. Not part of the package (package.json `files`).
import {
  connect, Connection, fromBase64, hashOf, ImzaError, Kind, PROTOCOL, Reason, SDK_VERSION,
  toBase64,
} from "@imza/agent-sdk";
import type {
  AgentInfo, CertificateObject, ErrorKind, ImzaAuthToken, VersionMismatchData, WebEidToken,
} from "@imza/agent-sdk";

const protocol: 1 = PROTOCOL;
const version: string = SDK_VERSION;

/** What the page says for each kind (a missing SDK kind would not compile). */
const MESSAGES: Record<Kind, string> = {
  NO_EXTENSION: "install the extension",
  EXTENSION_WITHOUT_AGENT: "install or start the program",
  AGENT_NOT_RUNNING: "start or install the program",
  SITE_REFUSED: "this site is not allowed",
  USER_CANCELLED: "nothing was signed",
  TIMED_OUT: "try again",
  CONNECTION_LOST: "try again",
  AGENT_TOO_OLD: "update the program",
  PAGE_TOO_OLD: "this site must be updated",
};

function say(kind: ErrorKind): string {
  return kind in MESSAGES ? MESSAGES[kind as Kind] : `error ${kind}`;
}

async function login(challenge: string): Promise<ImzaAuthToken> {
  const agent: Connection = await connect({ minimumAgentVersion: "0.1.0", extensionTimeout: 500,
    transports: ["extension", "wss"] });
  const info: AgentInfo | null = agent.agent;
  if (info !== null && info.features?.includes("auth.login") === false) throw new Error("old");
  const { token } = await agent.login(challenge);
  const algorithm: "ES256" | string = token.algorithm;
  void algorithm;
  return token;
}

async function loginWebEid(challenge: string): Promise<WebEidToken> {
  const agent = await connect();
  const { token } = await agent.login(challenge, { format: "web-eid:1.0" });
  const certificate: string = token.unverifiedCertificate;
  void certificate;
  return token;
}

async function sign(document: Uint8Array): Promise<Uint8Array> {
  const agent = await connect({ wssUrl: "wss://127.0.0.1:29170/v1" });
  const chosen: CertificateObject = await agent.selectCertificate({ purpose: "sign",
    filter: { keyUsage: ["nonRepudiation"] } });
  const { cms } = await agent.signCms({ handle: chosen.handle, hash: await hashOf(document),
    hashAlgorithm: "SHA-256", level: "B", display: { text: "declaration" } });
  const { signature, scheme } = await agent.signHash({ handle: chosen.handle,
    hash: toBase64(new Uint8Array(32)), hashAlgorithm: "SHA-256", ecdsaEncoding: "raw" });
  void signature;
  void scheme;
  const { pdf } = await agent.signPdf({ handle: chosen.handle, pdf: toBase64(document),
    level: "B-T", stamp: { page: -1, box: [340, 60, 560, 130], text: "signed" } });
  // a large document as its bytes: over uploadThreshold it crosses as binary frames
  const direct = await connect({ transports: ["wss"], uploadThreshold: 256 * 1024 });
  const threshold: number = direct.uploadThreshold;
  void threshold;
  const large = await direct.signPdf({ handle: chosen.handle, pdf: document, level: "B-B" });
  const fromBuffer = await direct.signCms({ handle: chosen.handle, data: new Uint8Array(document).buffer,
    hashAlgorithm: "SHA-256", level: "B" });
  const signedXml: string = (await direct.signXml({ handle: chosen.handle,
    xml: new DataView(document.buffer), level: "B-B", mode: "enveloped" })).xml;
  void [large.pdf.length, fromBuffer.cms.length, signedXml];
  const { signatures } = await agent.signHashes({ handle: chosen.handle,
    hashes: [cms], hashAlgorithm: "SHA-384" });
  void signatures;
  agent.addEventListener("tokens.changed", (event) => {
    for (const token of event.detail.tokens) console.log(token.label, token.present);
  });
  agent.addEventListener("close", (event) => console.log(event.detail.kind));
  await agent.subscribeTokens();
  const any = await agent.call<{ cms: string }>("sign.cms", { handle: chosen.handle });
  void any.cms;
  agent.close();
  return fromBase64(pdf);
}

function explain(error: unknown): string {
  if (!(error instanceof ImzaError)) throw error;
  if (error.reason === Reason.VERSION_MISMATCH) {
    const data = error.data as VersionMismatchData;
    if (data.subject === "version") return `needs ${data.required}, found ${data.found ?? "?"}`;
    const needed: 1 = data.required;
    return `protocol ${needed} needed, the agent speaks ${data.found ?? "?"}`;
  }
  if (error.kind === Kind.EXTENSION_WITHOUT_AGENT && error.data.agentMissing) {
    return "install the program";
  }
  for (const attempt of error.data.attempts ?? []) console.log(attempt.transport, attempt.kind);
  const code: number | null = error.code;
  void code;
  return say(error.kind);
}

export { explain, login, loginWebEid, protocol, sign, version };
