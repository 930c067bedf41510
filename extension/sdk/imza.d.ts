// Types of the imza-agent page SDK (imza.js). Written by hand next to the module it
// describes; tests/test_sdk_package.py checks that every export of imza.js is declared
// here and that the Reason and Kind values are exactly the module's.
//
// The shapes of params and results follow docs/protocol.md ("Methods").

/** The wire protocol version this SDK speaks: agent.info's `protocol` must equal it. */
export declare const PROTOCOL: 1;
/** This SDK's own version (the package's `version`). */
export declare const SDK_VERSION: string;

/** Every reason an ImzaError can carry: the contract's, plus the SDK's own three. */
export declare const Reason: Readonly<{
  USER_CANCELLED: "USER_CANCELLED";
  USER_TIMEOUT: "USER_TIMEOUT";
  PERMISSION_DENIED: "PERMISSION_DENIED";
  NO_CERTIFICATE: "NO_CERTIFICATE";
  TOKEN_NOT_PRESENT: "TOKEN_NOT_PRESENT";
  PIN_LOCKED: "PIN_LOCKED";
  CERTIFICATE_INVALID: "CERTIFICATE_INVALID";
  BUSY: "BUSY";
  NETWORK: "NETWORK";
  UNSUPPORTED: "UNSUPPORTED";
  INVALID_HANDLE: "INVALID_HANDLE";
  TOO_LARGE: "TOO_LARGE";
  RATE_LIMITED: "RATE_LIMITED";
  INTERNAL: "INTERNAL";
  PARSE_ERROR: "PARSE_ERROR";
  INVALID_REQUEST: "INVALID_REQUEST";
  METHOD_NOT_FOUND: "METHOD_NOT_FOUND";
  INVALID_PARAMS: "INVALID_PARAMS";
  EXTENSION_UNAVAILABLE: "EXTENSION_UNAVAILABLE";
  AGENT_UNAVAILABLE: "AGENT_UNAVAILABLE";
  VERSION_MISMATCH: "VERSION_MISMATCH";
}>;
/** One of the `Reason` values. */
export type Reason = (typeof Reason)[keyof typeof Reason];

/** What a page tells the user: the SDK's own kinds. */
export declare const Kind: Readonly<{
  NO_EXTENSION: "NO_EXTENSION";
  EXTENSION_WITHOUT_AGENT: "EXTENSION_WITHOUT_AGENT";
  AGENT_NOT_RUNNING: "AGENT_NOT_RUNNING";
  SITE_REFUSED: "SITE_REFUSED";
  USER_CANCELLED: "USER_CANCELLED";
  TIMED_OUT: "TIMED_OUT";
  CONNECTION_LOST: "CONNECTION_LOST";
  AGENT_TOO_OLD: "AGENT_TOO_OLD";
  PAGE_TOO_OLD: "PAGE_TOO_OLD";
}>;
/** One of the `Kind` values. */
export type Kind = (typeof Kind)[keyof typeof Kind];

/** The agent reasons that reach a page unchanged as an error's `kind`. */
export type PassedThroughReason = Exclude<Reason,
  "USER_TIMEOUT" | "PERMISSION_DENIED" | "AGENT_UNAVAILABLE" | "EXTENSION_UNAVAILABLE" |
  "VERSION_MISMATCH">;

/**
 * An ImzaError's `kind`: an SDK kind, or an agent reason passed through. `string & {}`
 * stands for a reason a newer agent may send that this SDK does not know yet.
 */
export type ErrorKind = Kind | PassedThroughReason | (string & {});

export type Transport = "extension" | "wss" | "ws";

/** One try of connect(), for logs (`ImzaError.data.attempts`). `kind` is null for a
 * transport that was not tried (ws:// without `allowInsecureWs`). */
export interface ConnectAttempt {
  transport: Transport;
  reason: Reason | (string & {});
  kind: ErrorKind | null;
  message?: string;
  /** for `"wss"` / `"ws"`: the URL of this try (one per port of the range tried) */
  url?: string;
  agentMissing?: true;
}

/** `data` of a failed connect() where no transport reached a usable agent. */
export interface ConnectFailureData {
  attempts: ConnectAttempt[];
  /** whether the extension answered on this page */
  extension: boolean;
  /** the browser knows no native host: the agent is not installed for this browser */
  agentMissing: boolean;
}

/** `data` of AGENT_TOO_OLD / PAGE_TOO_OLD (reason VERSION_MISMATCH). */
export type VersionMismatchData = {
  agentProtocol: number | null;
  agentVersion: string | null;
  sdkProtocol: typeof PROTOCOL;
  sdkVersion: string;
} & (
  | { subject: "protocol"; required: typeof PROTOCOL; found: number | null }
  | { subject: "version"; required: string; found: string | null }
);

/** `data.fields` of INVALID_PARAMS. */
export interface InvalidField {
  field: string;
  problem: string;
}

/**
 * What an error's `data` may hold; which members are there depends on the error: the
 * agent's own `data` (`reason`, `unlock` for PIN_LOCKED, `detail` for
 * CERTIFICATE_INVALID and INTERNAL, `fields` for INVALID_PARAMS, `method` for
 * METHOD_NOT_FOUND), ConnectFailureData, VersionMismatchData, or the close of a
 * connection (`closeCode`, `detail`).
 */
export interface ImzaErrorData extends Partial<ConnectFailureData> {
  reason?: string;
  unlock?: string;
  detail?: string;
  fields?: InvalidField[];
  method?: string;
  closeCode?: number;
  message?: string;
  subject?: "protocol" | "version";
  required?: number | string;
  found?: number | string | null;
  agentProtocol?: number | null;
  agentVersion?: string | null;
  sdkProtocol?: number;
  sdkVersion?: string;
  [key: string]: unknown;
}

/** A failed call or connection. */
export declare class ImzaError extends Error {
  constructor(reason: Reason | (string & {}), message?: string, options?: {
    code?: number | null;
    data?: ImzaErrorData;
    cause?: unknown;
    kind?: ErrorKind;
  });
  readonly name: "ImzaError";
  /** the contract's reason, or one of the SDK's three */
  reason: Reason | (string & {});
  /** what to tell the user: branch on this */
  kind: ErrorKind;
  /** the JSON-RPC or close code when the agent gave one */
  code: number | null;
  data: ImzaErrorData;
  /** The ImzaError of a JSON-RPC error object `{code, message, data}`. */
  static fromWire(error: unknown): ImzaError;
}

export interface ConnectOptions {
  /** tried in this order; default `["extension", "wss", "ws"]` */
  transports?: Transport[];
  /** try `"ws"` (plain, unauthenticated; development only); default false */
  allowInsecureWs?: boolean;
  /** ms the extension has to acknowledge; default 1000 */
  extensionTimeout?: number;
  /** ms for the extension's agent connection (it may start the agent); default 35000 */
  openTimeout?: number;
  /** ms for a WebSocket to open; default 5000 */
  socketTimeout?: number;
  /** ms for an open connection to answer agent.info; default 10000 */
  infoTimeout?: number;
  /**
   * How many ports of the agent's range to try, in order, default 5: wss 29170, 29172, …,
   * 29178 and ws 29171, 29173, …, 29179 (at most 32). On a shared machine (terminal server)
   * each user's agent takes the first free port; another user's agent refuses this page
   * like a closed port, and the first agent that opens and answers agent.info is the
   * user's own.
   */
  portRange?: number;
  /** one URL instead of the range, e.g. `wss://127.0.0.1:29170/v1` */
  wssUrl?: string;
  /** one URL instead of the range, e.g. `ws://127.0.0.1:29171/v1` */
  wsUrl?: string;
  /** the URLs to try, in order, instead of the range (ignored when `wssUrl` is given) */
  wssUrls?: readonly string[];
  /** the URLs to try, in order, instead of the range (ignored when `wsUrl` is given) */
  wsUrls?: readonly string[];
  /**
   * The lowest agent version this page works with, e.g. `"0.2.0"`: an older agent fails
   * connect() with kind AGENT_TOO_OLD. Numbers separated by dots; a pre-release
   * (`0.2.0rc1`, `0.2.0-beta`) is below its release. Not a version: a TypeError.
   */
  minimumAgentVersion?: string;
  /**
   * Bytes above which a document (sign.pdf's `pdf`, sign.cms's `data`, signature.verify's
   * and signature.extend's `signature`, signature.verify's `data`) is sent as raw binary
   * WebSocket frames (`document.upload`) instead of base64 inside the request; its signed
   * copy then comes back as a binary frame too, and the SDK puts it back together, so the
   * result is the same. Only on a `"wss"` / `"ws"` connection to an agent that lists
   * `"document.upload"` in agent.info's `features`; the extension's path always sends
   * base64. Default 1048576 (1 MiB); `Infinity` never uploads. Not a number ≥ 0: a
   * TypeError.
   */
  uploadThreshold?: number;
}

/**
 * A document as a page may give it: base64, or its bytes (sent as base64, or as binary
 * frames above `uploadThreshold`: then it is not copied into a base64 string at all).
 */
export type DocumentInput = string | ArrayBuffer | ArrayBufferView;

export type HashAlgorithm = "SHA-256" | "SHA-384" | "SHA-512";
export type Scheme = "RSASSA-PKCS1-v1_5" | "RSASSA-PSS" | "ECDSA";
export type KeyUsage = "digitalSignature" | "nonRepudiation" | "keyEncipherment" |
  "dataEncipherment" | "keyAgreement" | "keyCertSign" | "cRLSign" | "encipherOnly" |
  "decipherOnly";

/** `agent.info`'s answer. Origins without a grant get `name`, `version` and `protocol` only. */
export interface AgentInfo {
  name: string;
  version: string;
  protocol: number;
  origin?: string;
  transport?: Transport;
  features?: string[];
  formats?: { cms?: string[]; pdf?: string[]; xml?: string[]; [format: string]: string[] | undefined };
}

export interface CertificateFilter {
  issuer?: string;
  subjectSerialNumber?: string;
  keyUsage?: KeyUsage[];
  extendedKeyUsage?: string[];
  includeExpired?: boolean;
}

export interface SelectParams {
  purpose: "sign" | "auth";
  filter?: CertificateFilter;
}

export interface TokenInfo {
  label: string;
  manufacturer: string;
  model: string;
  serial: string;
}

export interface CertificateObject {
  /** names this certificate for this connection only */
  handle: string;
  /** base64 DER */
  certificate: string;
  /** issuers, base64 DER, issuer first */
  chain: string[];
  token: TokenInfo;
  algorithms: { scheme: Scheme; hash: HashAlgorithm }[];
}

/** Shown in the agent's confirmation dialog. */
export interface Display {
  text?: string;
  documentName?: string;
}

export interface SignHashParams {
  handle: string;
  /** base64 */
  hash: string;
  hashAlgorithm: HashAlgorithm;
  scheme?: Scheme;
  ecdsaEncoding?: "der" | "raw";
  display?: Display;
}

export interface SignHashResult {
  /** base64 */
  signature: string;
  scheme: Scheme;
  hashAlgorithm: HashAlgorithm;
  /** base64 DER of the certificate whose key signed */
  certificate: string;
}

export interface SignHashesParams extends Omit<SignHashParams, "hash"> {
  /** 1 to 1000 base64 hashes */
  hashes: string[];
}

export interface SignHashesResult extends Omit<SignHashResult, "signature"> {
  signatures: string[];
}

interface SignCmsBase {
  handle: string;
  hashAlgorithm: HashAlgorithm;
  detached?: true;
  level: "B" | "T" | "LT";
  tsaUrl?: string;
  display?: Display;
}
/** Give the content (`data`: base64 or bytes) or its hash (`hash`, base64), not both. */
export type SignCmsParams = SignCmsBase &
  ({ data: DocumentInput; hash?: never } | { hash: string; data?: never });

export interface PdfStamp {
  page?: number;
  box: [number, number, number, number];
  text?: string;
}

export interface SignPdfParams {
  handle: string;
  /** base64, or the PDF's bytes */
  pdf: DocumentInput;
  level: "B-B" | "B-T" | "B-LT" | "B-LTA";
  reason?: string;
  location?: string;
  fieldName?: string;
  stamp?: PdfStamp;
  tsaUrl?: string;
  display?: Display;
}

export interface SignXmlParams {
  handle: string;
  /** base64 of the document's bytes, or the bytes */
  xml: DocumentInput;
  level: "B-B" | "B-T";
  mode: "enveloped" | "detached";
  tsaUrl?: string;
  display?: Display;
}

export type LoginFormat = "imza-auth:1" | "web-eid:1.0";

export interface LoginOptions<F extends LoginFormat = LoginFormat> {
  /** the token's format; the agent's default is "imza-auth:1" (not sent when absent) */
  format?: F;
}

export type JoseAlgorithm = "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" |
  "ES256" | "ES384" | "ES512";

/** The agent's own login token (docs/protocol.md, `auth.login`). */
export interface ImzaAuthToken {
  format: "imza-auth:1";
  /** base64 DER */
  certificate: string;
  chain: string[];
  algorithm: JoseAlgorithm;
  /** base64; over SHA-256(origin) ‖ SHA-256(challenge); ES*: raw r‖s */
  signature: string;
}

/** A token in the Web eID authentication token format, version 1.0. */
export interface WebEidToken {
  format: "web-eid:1.0";
  /** base64 DER */
  unverifiedCertificate: string;
  algorithm: JoseAlgorithm;
  /** base64 */
  signature: string;
  appVersion: string;
}

export interface TokenOfFormat {
  "imza-auth:1": ImzaAuthToken;
  "web-eid:1.0": WebEidToken;
}

export interface TokenState {
  label: string;
  serial: string;
  present: boolean;
}

export interface TokensResult {
  tokens: TokenState[];
}

export interface ConnectionEventMap {
  "tokens.changed": CustomEvent<TokensResult>;
  notification: CustomEvent<{ method: string; params: unknown }>;
  close: CustomEvent<{ reason: string; kind: ErrorKind; error: ImzaError }>;
}

/** One connection to the agent. */
export declare class Connection extends EventTarget {
  private constructor();
  /** which path connect() took */
  readonly transport: Transport;
  /** for `"wss"` / `"ws"`: the URL whose agent answered (which port of the range); else null */
  readonly url: string | null;
  /** agent.info's answer at connect() */
  agent: AgentInfo | null;
  readonly closed: boolean;
  /** connect()'s `uploadThreshold` (bytes); may be changed for later calls */
  uploadThreshold: number;

  /**
   * Any method by name: resolves to its `result`, rejects with ImzaError. A member given
   * as bytes is sent as base64; the documents of sign.pdf, sign.cms, signature.verify and
   * signature.extend over `uploadThreshold` as binary frames on a WebSocket.
   */
  call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  info(): Promise<AgentInfo>;
  selectCertificate(params?: SelectParams): Promise<CertificateObject>;
  listCertificates(params?: SelectParams): Promise<{ certificates: CertificateObject[] }>;
  signHash(params: SignHashParams): Promise<SignHashResult>;
  signHashes(params: SignHashesParams): Promise<SignHashesResult>;
  signCms(params: SignCmsParams): Promise<{ cms: string }>;
  signPdf(params: SignPdfParams): Promise<{ pdf: string }>;
  signXml(params: SignXmlParams): Promise<{ xml: string }>;
  /** `challenge`: base64url from your server. */
  login(challenge: string): Promise<{ token: ImzaAuthToken }>;
  login<F extends LoginFormat>(challenge: string, options: LoginOptions<F>):
    Promise<{ token: TokenOfFormat[F] }>;
  subscribeTokens(): Promise<TokensResult>;
  close(): void;

  addEventListener<K extends keyof ConnectionEventMap>(type: K,
    listener: (this: Connection, event: ConnectionEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof ConnectionEventMap>(type: K,
    listener: (this: Connection, event: ConnectionEventMap[K]) => void,
    options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions): void;
}

/** Connect to the agent (extension, else wss://), checking protocol and version. */
export declare function connect(options?: ConnectOptions): Promise<Connection>;

/** Whether the extension's content script is on this page. */
export declare function detectExtension(timeoutMs?: number): Promise<{ version: string } | null>;

/** Standard base64 of bytes. */
export declare function toBase64(bytes: ArrayBuffer | ArrayBufferView): string;
/** Bytes of a standard base64 string. */
export declare function fromBase64(text: string): Uint8Array;
/** base64 of the SHA-2 hash of `data` (a string as UTF-8, or bytes). */
export declare function hashOf(data: string | ArrayBuffer | ArrayBufferView,
  algorithm?: HashAlgorithm): Promise<string>;
