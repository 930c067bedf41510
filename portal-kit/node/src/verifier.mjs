// Verifies an `imza-auth:1` login token (docs/protocol.md, auth.login) in the order of
// portal-kit/vectors/SCHEMA.md: the first failing check names the error.

import { createHash, verify as cryptoVerify, X509Certificate, constants } from 'node:crypto';
import { LoginError, ErrorCodes as E } from './errors.mjs';
import { clockMillis } from './time.mjs';
import {
  certInfo, hasDigitalSignature, extendedKeyUsages, mayIssue, ocspUrls, OID, unrecognisedCritical,
} from './cert-info.mjs';
import { Crl, crlStatus } from './crl.mjs';
import { rfc4514, nameAttribute } from './names.mjs';
import { nameConstraintsHold } from './name-constraints.mjs';
import { buildRequest, post, readResponse } from './ocsp.mjs';

export const TOKEN_FORMAT = 'imza-auth:1';
const MAX_PATH = 6; // certificates on a path, end entity and anchor included
// Bounds a page cannot make the verifier work past (SCHEMA.md): chain members, and the
// characters of the token's strings (format, certificate, algorithm, signature, chain).
const MAX_CHAIN = 16;
const MAX_TOKEN_CHARS = 256 * 1024;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

// JOSE names (RFC 7518 §3): hash, key type, and for ES* the curve and r‖s width.
const ALGORITHMS = {
  RS256: { hash: 'sha256', key: 'rsa' },
  RS384: { hash: 'sha384', key: 'rsa' },
  RS512: { hash: 'sha512', key: 'rsa' },
  PS256: { hash: 'sha256', key: 'rsa', pss: 32 },
  PS384: { hash: 'sha384', key: 'rsa', pss: 48 },
  PS512: { hash: 'sha512', key: 'rsa', pss: 64 },
  ES256: { hash: 'sha256', key: 'ec', curve: 'prime256v1', width: 64 },
  ES384: { hash: 'sha384', key: 'ec', curve: 'secp384r1', width: 96 },
  ES512: { hash: 'sha512', key: 'ec', curve: 'secp521r1', width: 132 },
};

function fail(code, detail) {
  throw new LoginError(code, detail);
}

function toDer(value, what) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value);
  if (value instanceof X509Certificate) return value.raw;
  if (typeof value === 'string') {
    const pem = /-----BEGIN [A-Z0-9 ]+-----([A-Za-z0-9+/=\s]+)-----END [A-Z0-9 ]+-----/.exec(value);
    return Buffer.from(pem ? pem[1].replace(/\s+/g, '') : value, 'base64');
  }
  throw new TypeError(`${what}: DER bytes, base64 or PEM expected`);
}

function decodeBase64(text) {
  if (!BASE64.test(text)) fail(E.MALFORMED, 'bad base64');
  return Buffer.from(text, 'base64');
}

function parseCertificate(der) {
  try {
    return { cert: new X509Certificate(der), info: certInfo(der) };
  } catch {
    return fail(E.MALFORMED, 'a certificate does not parse');
  }
}

export class LoginVerifier {
  /**
   * @param {{origin: string, anchors: Array<Buffer|string|X509Certificate>,
   *   crls?: Array<Buffer|string>, ocsp?: boolean | {url?: string, timeoutMs?: number},
   *   requireRevocationStatus?: boolean, clock?: () => Date | number}} options
   */
  constructor({ origin, anchors, crls = [], ocsp = false, requireRevocationStatus = false, clock }) {
    if (typeof origin !== 'string' || !/^https?:\/\/[^/\s]+$/.test(origin)) {
      throw new TypeError('origin must be a scheme://host[:port] string, e.g. https://portal.example.az');
    }
    if (!Array.isArray(anchors) || anchors.length === 0) {
      throw new TypeError('anchors: at least one trusted root certificate');
    }
    this.origin = origin;
    this.originHash = createHash('sha256').update(origin, 'ascii').digest();
    this.anchors = anchors.map((a) => {
      const der = toDer(a, 'anchor');
      return { cert: new X509Certificate(der), info: certInfo(der) };
    });
    this.crls = crls.map((c) => new Crl(toDer(c, 'crl')));
    this.ocsp = ocsp === true ? {} : ocsp || null;
    this.requireRevocationStatus = requireRevocationStatus;
    this.now = clockMillis(clock);
  }

  /**
   * @param {unknown} token the `token` object the page posted
   * @param {{challenge: string, store: {consume(challenge: string, session?: string): void},
   *   session?: string}} context  store: a ChallengeStore or the portal's own
   */
  async verify(token, { challenge, store, session = '' }) {
    const parsed = this.#parseToken(token);
    if (parsed.format !== TOKEN_FORMAT) fail(E.UNSUPPORTED_FORMAT, String(parsed.format));
    store.consume(challenge, session);
    const now = this.now();
    const { leaf } = parsed;
    this.#checkSignature(parsed, challenge);
    const path = this.#buildPath(leaf, parsed.chain);
    if (!path) fail(E.CERT_UNTRUSTED);
    // on the path found, not while searching: the Java kit leaves them to the JDK's
    // validator over the path its search found
    if (!nameConstraintsHold(path.map((c) => c.info))) fail(E.CERT_UNTRUSTED);
    for (const { info } of path) {
      if (now > info.notAfter) fail(E.CERT_EXPIRED);
      if (now < info.notBefore) fail(E.CERT_NOT_YET_VALID);
    }
    checkForAuthentication(leaf.info);
    await this.#checkRevocation(path, now);
    return {
      certificate: leaf.cert,
      chain: path.slice(1).map((c) => c.cert),
      subject: nameText(leaf.info.subject, leaf.cert.subject),
      subjectSerialNumber: nameOrNull(() => nameAttribute(leaf.info.subject, SERIAL_NUMBER)),
      serialNumber: leaf.cert.serialNumber,
      issuer: nameText(leaf.info.issuer, leaf.cert.issuer),
      sha256: createHash('sha256').update(leaf.cert.raw).digest('hex'),
    };
  }

  #parseToken(token) {
    if (token === null || typeof token !== 'object' || Array.isArray(token)) {
      fail(E.MALFORMED, 'token is not an object');
    }
    for (const field of ['format', 'certificate', 'algorithm', 'signature']) {
      if (!Object.hasOwn(token, field) || typeof token[field] !== 'string') {
        fail(E.MALFORMED, `${field} missing or not a string`);
      }
    }
    // absent means none; present (null included) must be a list of strings
    const chainTexts = Object.hasOwn(token, 'chain') ? token.chain : [];
    if (!Array.isArray(chainTexts) || !chainTexts.every((c) => typeof c === 'string')) {
      fail(E.MALFORMED, 'chain is not an array of strings');
    }
    if (chainTexts.length > MAX_CHAIN) fail(E.MALFORMED, 'chain too long');
    const chars = [token.format, token.certificate, token.algorithm, token.signature, ...chainTexts]
      .reduce((sum, text) => sum + text.length, 0);
    if (chars > MAX_TOKEN_CHARS) fail(E.MALFORMED, 'token too large');
    const leaf = parseCertificate(decodeBase64(token.certificate));
    const chain = chainTexts.map((c) => parseCertificate(decodeBase64(c)));
    const signature = decodeBase64(token.signature);
    return { format: token.format, algorithm: token.algorithm, leaf, chain, signature };
  }

  #checkSignature({ algorithm, leaf, signature }, challenge) {
    const alg = Object.hasOwn(ALGORITHMS, algorithm) ? ALGORITHMS[algorithm] : null;
    if (!alg) fail(E.ALGORITHM_MISMATCH, 'unknown algorithm label');
    let key;
    try {
      key = leaf.cert.publicKey;
    } catch {
      fail(E.ALGORITHM_MISMATCH, 'unsupported key');
    }
    if (key.asymmetricKeyType !== alg.key) fail(E.ALGORITHM_MISMATCH, 'key type');
    if (alg.curve && key.asymmetricKeyDetails?.namedCurve !== alg.curve) {
      fail(E.ALGORITHM_MISMATCH, 'curve');
    }
    if (alg.width && signature.length !== alg.width) fail(E.SIGNATURE_INVALID, 'r||s width');
    if (typeof challenge !== 'string' || !BASE64URL.test(challenge)) fail(E.SIGNATURE_INVALID);
    const challengeHash = createHash('sha256')
      .update(Buffer.from(challenge.replace(/=+$/, ''), 'base64url')).digest();
    const message = Buffer.concat([this.originHash, challengeHash]);
    const options = alg.pss
      ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pss }
      : alg.width ? { key, dsaEncoding: 'ieee-p1363' } : key;
    let ok = false;
    try {
      ok = cryptoVerify(alg.hash, message, options, signature);
    } catch {
      ok = false;
    }
    if (!ok) fail(E.SIGNATURE_INVALID);
  }

  // Depth-first from the end entity through the token's chain to a configured anchor;
  // every link's signature is checked, no certificate is used twice.
  #buildPath(leaf, chain) {
    // Each (child, parent) signature is checked once, so a chain built to make the search
    // branch costs at most (chain + anchors)² verifications.
    const memo = new Map();
    const linked = (child, parent) => {
      let byParent = memo.get(child);
      if (!byParent) memo.set(child, (byParent = new Map()));
      if (!byParent.has(parent)) {
        let ok = false;
        try {
          // The names match (byte for byte, or as OpenSSL compares them); checkIssued alone
          // would also judge an anchor's KeyUsage, and anchors are trusted as configured
          // (a chain CA's extensions are mayIssue's to judge, SCHEMA.md).
          const named = child.info.issuer.equals(parent.info.subject)
            || child.cert.checkIssued(parent.cert);
          ok = named && child.cert.verify(parent.cert.publicKey);
        } catch {
          ok = false;
        }
        byParent.set(parent, ok);
      }
      return byParent.get(parent);
    };
    const search = (path) => {
      const last = path[path.length - 1];
      // the certificate (or one the chain carried) is an anchor itself: trusted as configured
      if (this.anchors.some((a) => a.cert.raw.equals(last.cert.raw))) return path;
      for (const anchor of this.anchors) {
        if (linked(last, anchor)) return [...path, anchor];
      }
      if (path.length + 1 >= MAX_PATH) return null;
      for (const candidate of chain) {
        if (path.includes(candidate)) continue;
        if (!mayIssue(candidate.info, path.slice(1).map((c) => c.info))) continue;
        if (!linked(last, candidate)) continue;
        const found = search([...path, candidate]);
        if (found) return found;
      }
      return null;
    };
    // the end entity's extensions are judged unless it is an anchor itself (pinned)
    const pinned = this.anchors.some((a) => a.cert.raw.equals(leaf.cert.raw));
    if (!pinned && unrecognisedCritical(leaf.info)) return null;
    return search([leaf]);
  }

  // Configured CRLs for every certificate on the path (a revoked intermediate CA refuses
  // its logins); the status a portal may require, and OCSP, are the end entity's.
  async #checkRevocation(path, now) {
    let leafKnown = false;
    for (let i = 0; i + 1 < path.length; i++) {
      const status = crlStatus(this.crls, path[i].info, path[i + 1].cert, now);
      if (status.revoked) fail(E.CERT_REVOKED, i === 0 ? undefined : 'an issuing CA is revoked');
      if (i === 0) leafKnown = status.known;
    }
    if (this.ocsp && path.length > 1) {
      const status = await this.#ocspStatus(path[0], path[1], now);
      if (status === 'revoked') fail(E.CERT_REVOKED, 'OCSP');
      if (status === 'good') leafKnown = true;
    }
    if (this.requireRevocationStatus && !leafKnown) fail(E.REVOCATION_UNKNOWN);
  }

  async #ocspStatus(leaf, issuer, now) {
    const url = this.ocsp.url ?? ocspUrls(leaf.info)[0];
    if (!url) return 'unavailable';
    const { der, nonceValue } = buildRequest(leaf.info, issuer.info);
    try {
      const answer = await post(url, der, { timeoutMs: this.ocsp.timeoutMs });
      return readResponse(answer, {
        info: leaf.info, issuerCert: issuer.cert, issuerInfo: issuer.info, nonceValue, now,
      });
    } catch {
      return 'unavailable';
    }
  }
}

const SERIAL_NUMBER = '2.5.4.5';

function nameOrNull(read) {
  try {
    return read();
  } catch {
    return null;
  }
}

// RFC 4514 as the Python kit writes it; node's own text for a name we cannot read.
function nameText(der, fallback) {
  return nameOrNull(() => rfc4514(der)) ?? fallback.split('\n').reverse().join(',');
}

// RFC 5280 key usage for a login: digitalSignature, and clientAuth if EKUs are named.
function checkForAuthentication(info) {
  let digitalSignature;
  let ekus;
  try {
    digitalSignature = hasDigitalSignature(info);
    ekus = extendedKeyUsages(info);
  } catch {
    fail(E.CERT_NOT_FOR_AUTH, 'unreadable key usage');
  }
  if (digitalSignature === false) fail(E.CERT_NOT_FOR_AUTH, 'no digitalSignature');
  if (ekus !== null && !ekus.includes(OID.clientAuth)) fail(E.CERT_NOT_FOR_AUTH, 'no clientAuth');
}
