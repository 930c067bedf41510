// What the verifier reads from a certificate's DER itself: names, serial, validity and
// the extensions node's X509Certificate does not expose as data (key usage bits, basic
// constraints, the OCSP address).

import { parse, DerError } from './der.mjs';

export const OID = Object.freeze({
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  ocspAccess: '1.3.6.1.5.5.7.48.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
});

/**
 * @typedef {{
 *   serial: Buffer, issuer: Buffer, subject: Buffer, notBefore: number, notAfter: number,
 *   publicKeyBits: Buffer, extensions: Map<string, {critical: boolean, value: Buffer}>
 * }} CertInfo
 */

/** @param {Buffer} der  @returns {CertInfo}  throws DerError */
export function certInfo(der) {
  const [tbs, sigAlg, sig] = parse(der).sequence();
  if (!tbs || !sigAlg || !sig) throw new DerError('certificate needs three parts');
  const fields = tbs.sequence();
  let i = 0;
  if (fields[i]?.is(0, { context: true })) i++; // version
  const [serial, , issuer, validity, subject, spki] = fields.slice(i, i + 6);
  if (!spki) throw new DerError('short tbsCertificate');
  const [notBefore, notAfter] = validity.sequence();
  const extensions = new Map();
  for (const field of fields.slice(i + 6)) {
    if (!field.is(3, { context: true })) continue; // issuer/subject unique IDs
    for (const ext of field.explicit(3).sequence()) {
      const parts = ext.sequence();
      const id = parts[0].oid();
      const critical = parts.length === 3 ? parts[1].boolean() : false;
      const value = parts[parts.length - 1].octetString();
      if (extensions.has(id)) throw new DerError(`extension ${id} twice`);
      extensions.set(id, { critical, value });
    }
  }
  const [, keyBits] = spki.sequence();
  return {
    serial: Buffer.from(serial.integerBytes()),
    issuer: Buffer.from(issuer.raw),
    subject: Buffer.from(subject.raw),
    notBefore: notBefore.time(),
    notAfter: notAfter.time(),
    publicKeyBits: Buffer.from(keyBits.bitString().bytes),
    extensions,
  };
}

/** digitalSignature (bit 0) of the KeyUsage extension, or null when there is none. */
export function hasDigitalSignature(info) {
  const ext = info.extensions.get(OID.keyUsage);
  if (!ext) return null;
  const { bytes } = parse(ext.value).bitString();
  return bytes.length > 0 && (bytes[0] & 0x80) !== 0;
}

/** The EKU OIDs, or null when the extension is absent. */
export function extendedKeyUsages(info) {
  const ext = info.extensions.get(OID.extKeyUsage);
  if (!ext) return null;
  return parse(ext.value).sequence().map((n) => n.oid());
}

/** BasicConstraints as `{ca, pathLength}` (false and null when absent or unconstrained). */
function basicConstraints(info) {
  const ext = info.extensions.get(OID.basicConstraints);
  if (!ext) return { ca: false, pathLength: null };
  const parts = parse(ext.value).sequence();
  const ca = parts.length > 0 && parts[0].is(1) && parts[0].boolean();
  const last = parts[parts.length - 1];
  return { ca, pathLength: last?.is(2) ? last.smallInt() : null };
}

/** keyCertSign (bit 5) of the KeyUsage extension, or null when there is none. */
function hasKeyCertSign(info) {
  const ext = info.extensions.get(OID.keyUsage);
  if (!ext) return null;
  const { bytes } = parse(ext.value).bitString();
  return bytes.length > 0 && (bytes[0] & 0x04) !== 0;
}

// The critical extensions every verifier of the kit accepts (SCHEMA.md, the set the JDK's
// PKIX validator recognises); RFC 5280 §4.2: a certificate with any other critical one
// must be rejected.
const RECOGNISED_CRITICAL = new Set([
  '2.5.29.19', '2.5.29.15', '2.5.29.37', '2.5.29.17', // basic constraints, key usages, SAN
  '2.5.29.30', '2.5.29.32', '2.5.29.33', '2.5.29.36', '2.5.29.54', // names and policies
]);

/** Whether the certificate has a critical extension outside RECOGNISED_CRITICAL. */
export function unrecognisedCritical(info) {
  for (const [id, { critical }] of info.extensions) {
    if (critical && !RECOGNISED_CRITICAL.has(id)) return true;
  }
  return false;
}

/**
 * Whether a certificate from the token's chain may be the CA over `below` (the infos of
 * the CAs already under it on the path, end entity excluded), as RFC 5280 §6.1.4 has it:
 * cA, keyCertSign when a KeyUsage is present, no more CAs under it (self-issued ones
 * aside) than its pathLenConstraint allows, and no critical extension it does not know.
 * An extension that does not parse: no.
 */
export function mayIssue(info, below) {
  if (unrecognisedCritical(info)) return false;
  let constraints;
  let certSign;
  try {
    constraints = basicConstraints(info);
    certSign = hasKeyCertSign(info);
  } catch {
    return false;
  }
  if (!constraints.ca || certSign === false) return false;
  const casBelow = below.filter((ca) => !ca.subject.equals(ca.issuer)).length;
  return constraints.pathLength === null || casBelow <= constraints.pathLength;
}

/** http(s) OCSP addresses named in the AuthorityInfoAccess extension. */
export function ocspUrls(info) {
  const ext = info.extensions.get(OID.authorityInfoAccess);
  if (!ext) return [];
  const urls = [];
  for (const access of parse(ext.value).sequence()) {
    const [method, location] = access.sequence();
    if (method.oid() === OID.ocspAccess && location.is(6, { context: true })) {
      const url = location.content.toString('latin1');
      if (/^https?:\/\//i.test(url)) urls.push(url);
    }
  }
  return urls;
}
