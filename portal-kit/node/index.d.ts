// Types of imza-portal-verify (hand-written; the code is plain ESM in src/).

import type { X509Certificate } from 'node:crypto';

/** The error codes of the shared login vectors, the same in every language's verifier. */
export type ErrorCode =
  | 'MALFORMED'
  | 'UNSUPPORTED_FORMAT'
  | 'CHALLENGE_UNKNOWN'
  | 'CHALLENGE_USED'
  | 'CHALLENGE_EXPIRED'
  | 'ALGORITHM_MISMATCH'
  | 'SIGNATURE_INVALID'
  | 'CERT_UNTRUSTED'
  | 'CERT_EXPIRED'
  | 'CERT_NOT_YET_VALID'
  | 'CERT_NOT_FOR_AUTH'
  | 'CERT_REVOKED'
  | 'REVOCATION_UNKNOWN';

export declare const ErrorCodes: Readonly<{ [K in ErrorCode]: K }>;

/** Why a login was refused; `code` is for the portal's own message, `message` for its log. */
export declare class LoginError extends Error {
  constructor(code: ErrorCode, detail?: string);
  readonly name: 'LoginError';
  readonly code: ErrorCode;
}

/** The time source: a Date or milliseconds since 1970. */
export type Clock = () => Date | number;

export interface ChallengeStoreOptions {
  /** How long an issued challenge may be used (default 300). */
  lifetimeSeconds?: number;
  clock?: Clock;
  /** Outstanding challenges kept at most (default 100 000); `issue` throws beyond. */
  maxEntries?: number;
}

/** Single-use login challenges, bound to a session, in this process's memory. */
export declare class ChallengeStore {
  constructor(options?: ChallengeStoreOptions);
  /** A fresh challenge (32 random bytes, base64url) for `session`; pass it to auth.login. */
  issue(session?: string): string;
  /** Remember a challenge issued elsewhere (another process, a test); `issuedAt` defaults to now. */
  register(challenge: string, session?: string, issuedAt?: Date | number,
    options?: { used?: boolean }): void;
  /** Spend the challenge; throws LoginError CHALLENGE_UNKNOWN, CHALLENGE_USED or CHALLENGE_EXPIRED. */
  consume(challenge: string, session?: string): void;
}

/** A certificate or CRL: DER bytes, base64 of DER, or PEM text. */
export type DerInput = Uint8Array | string;

export interface OcspOptions {
  /** Ask this responder instead of the one the certificate names. */
  url?: string;
  /** Per request (default 10 000). */
  timeoutMs?: number;
}

export interface LoginVerifierOptions {
  /** The portal's own origin, e.g. "https://portal.example.az" (no path, no trailing slash). */
  origin: string;
  /** Trusted root (or issuing) CA certificates. */
  anchors: ReadonlyArray<DerInput | X509Certificate>;
  /** CRLs to check revocation against offline. */
  crls?: ReadonlyArray<DerInput>;
  /** Ask the issuer's OCSP responder about the end-entity certificate. */
  ocsp?: boolean | OcspOptions;
  /** Refuse (REVOCATION_UNKNOWN) when neither a CRL nor OCSP gives the status. */
  requireRevocationStatus?: boolean;
  clock?: Clock;
}

/** The `token` object of auth.login's result, as the page posts it. */
export interface LoginToken {
  format: 'imza-auth:1';
  certificate: string;
  chain?: string[];
  algorithm: 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512';
  signature: string;
}

export interface VerifyContext {
  /** The challenge this session was issued. */
  challenge: string;
  store: ChallengeBackend;
  /** The session the challenge was issued to (default ""). */
  session?: string;
}

/** What `verify` needs of a store: ChallengeStore, or your own over a shared session store. */
export interface ChallengeBackend {
  consume(challenge: string, session?: string): void;
}

export interface LoginResult {
  certificate: X509Certificate;
  /** The verified path above the certificate, up to and including the anchor. */
  chain: X509Certificate[];
  /** RFC 4514, as the Python kit writes it, e.g. "CN=Əliyev Test,C=AZ". */
  subject: string;
  /** The subject's serialNumber attribute (2.5.4.5), often a personal ID number. */
  subjectSerialNumber: string | null;
  /** The certificate's serial number, upper-case hex. */
  serialNumber: string;
  /** RFC 4514. */
  issuer: string;
  /** Lower-case hex SHA-256 of the certificate's DER. */
  sha256: string;
}

export declare const TOKEN_FORMAT: 'imza-auth:1';

export declare class LoginVerifier {
  constructor(options: LoginVerifierOptions);
  /** Resolves with the user's certificate, or rejects with a LoginError. */
  verify(token: unknown, context: VerifyContext): Promise<LoginResult>;
}
