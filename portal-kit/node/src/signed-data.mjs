// Verifying the signature of a CRL or an OCSP answer: (tbs, AlgorithmIdentifier, BIT
// STRING) signed by a CA key. Only algorithms of today's CAs; SHA-1 is refused.

import { verify as cryptoVerify } from 'node:crypto';
import { DerError } from './der.mjs';

const HASHES = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

const SIMPLE = {
  '1.2.840.113549.1.1.11': { hash: 'sha256', key: 'rsa' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', key: 'rsa' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', key: 'rsa' },
  '1.2.840.10045.4.3.2': { hash: 'sha256', key: 'ec' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', key: 'ec' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', key: 'ec' },
  '1.3.101.112': { hash: null, key: 'ed25519' },
  '1.3.101.113': { hash: null, key: 'ed448' },
};

const RSA_PSS = '1.2.840.113549.1.1.10';

/**
 * @param {Buffer} tbs the signed bytes  @param {import('./der.mjs').Node} algorithm
 * @param {import('./der.mjs').Node} signature BIT STRING  @param {import('node:crypto').KeyObject} key
 * @returns {boolean}
 */
export function verifySigned(tbs, algorithm, signature, key) {
  const [idNode, params] = algorithm.sequence();
  const id = idNode.oid();
  const { unused, bytes } = signature.bitString();
  if (unused !== 0) return false;
  const keyType = key.asymmetricKeyType;
  try {
    if (id === RSA_PSS) {
      if (keyType !== 'rsa' && keyType !== 'rsa-pss') return false;
      const { hash, saltLength } = pssParams(params);
      return cryptoVerify(hash, tbs, {
        key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength,
      }, bytes);
    }
    const known = SIMPLE[id];
    if (!known || known.key !== keyType) return false;
    return cryptoVerify(known.hash, tbs, key, bytes);
  } catch (error) {
    if (error instanceof DerError) throw error;
    return false; // a signature OpenSSL cannot even decode does not verify
  }
}

// RSASSA-PSS-params: hash and MGF1 hash must agree (every real CA does); trailer 1.
function pssParams(params) {
  if (!params) throw new DerError('RSASSA-PSS needs parameters');
  let hash = null;
  let saltLength = 20;
  for (const field of params.sequence()) {
    if (field.is(0, { context: true })) {
      hash = HASHES[field.explicit(0).sequence()[0].oid()];
    } else if (field.is(1, { context: true })) {
      const [mgf, mgfHash] = field.explicit(1).sequence();
      if (mgf.oid() !== '1.2.840.113549.1.1.8') throw new DerError('MGF1 expected');
      if (HASHES[mgfHash.sequence()[0].oid()] !== hash) throw new DerError('MGF1 hash differs');
    } else if (field.is(2, { context: true })) {
      saltLength = field.explicit(2).smallInt();
    } else if (field.is(3, { context: true })) {
      if (field.explicit(3).smallInt() !== 1) throw new DerError('bad PSS trailer');
    }
  }
  if (!hash) throw new DerError('PSS hash must be SHA-256/384/512');
  return { hash, saltLength };
}
