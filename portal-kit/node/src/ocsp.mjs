// Online revocation (RFC 6960): build the OCSPRequest, POST it, and read the answer only if
// the certificate's issuer (or a responder it delegated to) signed it, it is about this
// certificate, it is current, and it carries our nonce when it carries one.

import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import {
  parse, seq, octets, oid, tlv, nullValue, DerError,
} from './der.mjs';
import { certInfo, extendedKeyUsages, OID } from './cert-info.mjs';
import { verifySigned } from './signed-data.mjs';

const SHA1 = '1.3.14.3.2.26';
const CERT_ID_HASHES = {
  [SHA1]: 'sha1', // CertID hashes name and key only; every responder understands SHA-1
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
const NONCE = '1.3.6.1.5.5.7.48.1.2';
const BASIC = '1.3.6.1.5.5.7.48.1.1';
const SKEW_MS = 5 * 60 * 1000;
const MAX_AGE_WITHOUT_NEXT_UPDATE_MS = 24 * 3600 * 1000;
const MAX_RESPONSE_BYTES = 256 * 1024;

const hash = (name, data) => createHash(name).update(data).digest();

/**
 * DER OCSPRequest for one certificate, with a nonce.
 * @param {{serial: Buffer, issuer: Buffer}} info  @param {{publicKeyBits: Buffer}} issuerInfo
 */
export function buildRequest(info, issuerInfo, nonce = randomBytes(32)) {
  const certId = seq(
    seq(oid(SHA1), nullValue()),
    octets(hash('sha1', info.issuer)),
    octets(hash('sha1', issuerInfo.publicKeyBits)),
    tlv(0x02, info.serial),
  );
  const nonceValue = octets(nonce);
  const extensions = tlv(0xa2, [seq(seq(oid(NONCE), octets(nonceValue)))]);
  return { der: seq(seq(seq(seq(certId)), extensions)), nonceValue };
}

/** POST `body` to `url`; the answer's bytes, capped; no redirects, no decompression. */
export function post(url, body, { timeoutMs = 10_000, maxBytes = MAX_RESPONSE_BYTES } = {}) {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : null;
  if (!client) return Promise.reject(new Error('OCSP address must be http or https'));
  return new Promise((resolve, reject) => {
    const request = client.request(target, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/ocsp-request',
        'Content-Length': body.length,
        Accept: 'application/ocsp-response',
      },
      timeout: timeoutMs,
    }, (response) => {
      if (response.statusCode !== 200 || response.headers['content-encoding']) {
        response.resume();
        reject(new Error(`OCSP responder answered HTTP ${response.statusCode}`));
        return;
      }
      const chunks = [];
      let size = 0;
      response.on('data', (chunk) => {
        size += chunk.length;
        if (size > maxBytes) {
          request.destroy(new Error('OCSP answer too large'));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => resolve(Buffer.concat(chunks)));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('OCSP responder timed out')));
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * Status of the certificate in a DER OCSPResponse: 'good' | 'revoked' | 'unknown'.
 * Throws DerError or Error when the answer cannot be trusted at all.
 */
export function readResponse(der, { info, issuerCert, issuerInfo, nonceValue, now }) {
  const [status, bytes] = parse(der).sequence();
  if (status.smallInt(10) !== 0) throw new Error(`OCSP status ${status.smallInt(10)}`);
  if (!bytes) throw new DerError('no responseBytes');
  const [type, inner] = bytes.explicit(0).sequence();
  if (type.oid() !== BASIC) throw new Error('not a basic OCSP response');
  const [tbs, algorithm, signature, certs] = parse(Buffer.from(inner.octetString())).sequence();
  if (!signedByAuthority(tbs, algorithm, signature, certs, issuerCert, now)) {
    throw new Error('OCSP answer not signed by the issuer or its responder');
  }
  const fields = tbs.sequence();
  let i = fields[0]?.is(0, { context: true }) ? 1 : 0;
  i += 2; // responderID, producedAt
  const responses = fields[i++].sequence();
  for (const field of fields.slice(i)) {
    if (field.is(1, { context: true })) checkNonce(field.explicit(1), nonceValue);
  }
  for (const single of responses) {
    const [certId, certStatus, thisUpdate, ...rest] = single.sequence();
    if (!matchesCertId(certId, info, issuerInfo)) continue;
    const produced = thisUpdate.time();
    if (produced > now + SKEW_MS) throw new Error('OCSP answer from the future');
    const next = rest.find((n) => n.is(0, { context: true }));
    if (next ? next.explicit(0).time() < now - SKEW_MS
      : now - produced > MAX_AGE_WITHOUT_NEXT_UPDATE_MS) {
      throw new Error('OCSP answer out of date');
    }
    if (certStatus.cls !== 2) throw new DerError('bad certStatus');
    return certStatus.tag === 0 ? 'good' : certStatus.tag === 1 ? 'revoked' : 'unknown';
  }
  throw new Error('OCSP answer is about another certificate');
}

function checkNonce(extensions, nonceValue) {
  for (const ext of extensions.sequence()) {
    const parts = ext.sequence();
    if (parts[0].oid() !== NONCE) continue;
    if (!Buffer.from(parts[parts.length - 1].octetString()).equals(nonceValue)) {
      throw new Error('OCSP nonce differs: a replayed answer');
    }
  }
}

function matchesCertId(certId, info, issuerInfo) {
  const [algorithm, nameHash, keyHash, serial] = certId.sequence();
  const name = CERT_ID_HASHES[algorithm.sequence()[0].oid()];
  if (!name) return false;
  return Buffer.from(serial.integerBytes()).equals(info.serial)
    && Buffer.from(nameHash.octetString()).equals(hash(name, info.issuer))
    && Buffer.from(keyHash.octetString()).equals(hash(name, issuerInfo.publicKeyBits));
}

// The issuer signs its own answers, or hands that to a responder certificate it issued
// with the OCSPSigning EKU (RFC 6960 §4.2.2.2).
function signedByAuthority(tbs, algorithm, signature, certs, issuerCert, now) {
  const raw = Buffer.from(tbs.raw);
  if (verifySigned(raw, algorithm, signature, issuerCert.publicKey)) return true;
  if (!certs) return false;
  for (const node of certs.explicit(0).sequence().slice(0, 4)) {
    const der = Buffer.from(node.raw);
    let responder;
    try {
      responder = new X509Certificate(der);
    } catch {
      continue;
    }
    const info = certInfo(der);
    if (!responder.checkIssued(issuerCert) || !responder.verify(issuerCert.publicKey)) continue;
    if (!(extendedKeyUsages(info) ?? []).includes(OID.ocspSigning)) continue;
    if (now < info.notBefore || now > info.notAfter) continue;
    if (verifySigned(raw, algorithm, signature, responder.publicKey)) return true;
  }
  return false;
}
