// Offline revocation: CRLs the portal configured. A CRL counts for a certificate only when
// it names the certificate's issuer and that issuer's key signed it.

import { parse, DerError } from './der.mjs';
import { verifySigned } from './signed-data.mjs';

export class Crl {
  /** @param {Buffer} der  throws DerError */
  constructor(der) {
    const [tbs, algorithm, signature] = parse(der).sequence();
    if (!signature) throw new DerError('CRL needs three parts');
    const fields = tbs.sequence();
    let i = 0;
    if (fields[i]?.is(2)) i++; // version v2
    const [, issuer, thisUpdate] = fields.slice(i, i + 3);
    if (!thisUpdate) throw new DerError('short tbsCertList');
    this.issuer = Buffer.from(issuer.raw);
    this.thisUpdate = thisUpdate.time();
    i += 3;
    if (fields[i]?.is(23) || fields[i]?.is(24)) {
      this.nextUpdate = fields[i].time();
      i++;
    }
    /** hex of each revoked serial's INTEGER content */
    this.revoked = new Set();
    if (fields[i]?.is(16)) {
      for (const entry of fields[i].sequence()) {
        this.revoked.add(entry.sequence()[0].integerBytes().toString('hex'));
      }
    }
    this.tbs = Buffer.from(tbs.raw);
    this.algorithm = algorithm;
    this.signature = signature;
    /** issuer certificate fingerprint -> signature verified */
    this.checked = new Map();
  }

  /** Whether `issuerCert` (X509Certificate) signed this CRL. */
  signedBy(issuerCert) {
    const key = issuerCert.fingerprint256;
    if (!this.checked.has(key)) {
      let ok = false;
      try {
        ok = verifySigned(this.tbs, this.algorithm, this.signature, issuerCert.publicKey);
      } catch {
        ok = false;
      }
      this.checked.set(key, ok);
    }
    return this.checked.get(key);
  }

  /** Whether this CRL may say "not revoked" at `now` (ms): thisUpdate <= now <= nextUpdate. */
  currentAt(now) {
    return this.nextUpdate !== undefined && this.thisUpdate <= now && now <= this.nextUpdate;
  }

  lists(serial) {
    return this.revoked.has(serial.toString('hex'));
  }
}

/**
 * `{revoked, known}` for a certificate from the CRLs of its issuer. Listed is revoked
 * however old the CRL (a revocation is final); "not listed" is known only from a CRL
 * current at `now` (thisUpdate <= now <= nextUpdate; without nextUpdate, never).
 * @param {Crl[]} crls  @param {{serial: Buffer, issuer: Buffer}} info
 * @param {import('node:crypto').X509Certificate} issuerCert  @param {number} now  ms
 */
export function crlStatus(crls, info, issuerCert, now) {
  let known = false;
  for (const crl of crls) {
    if (!crl.issuer.equals(info.issuer) || !crl.signedBy(issuerCert)) continue;
    if (crl.lists(info.serial)) return { revoked: true, known: true };
    if (crl.currentAt(now)) known = true;
  }
  return { revoked: false, known };
}
