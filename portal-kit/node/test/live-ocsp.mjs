// Run by tests/test_portal_kit_node.py against the real loopback OCSP responder of
// tests/pki_services.py. Reads a JSON setup file (anchors, chain, identities with their
// PKCS#8 keys, responder addresses), verifies tokens with OCSP on, and prints what happened.

import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { ChallengeStore, LoginVerifier, LoginError } from '../src/index.mjs';
import { certInfo } from '../src/cert-info.mjs';
import { buildRequest, post, readResponse } from '../src/ocsp.mjs';
import { token } from './pki.mjs';

const setup = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const origin = 'https://portal.example.az';
const der = (b64) => Buffer.from(b64, 'base64');
const chain = setup.chain.map((c) => ({ der: der(c) }));
const identity = (name) => ({
  der: der(setup.identities[name].certificate),
  privateKey: createPrivateKey(setup.identities[name].key),
});

async function login(name, ocsp, extra = {}) {
  const store = new ChallengeStore();
  const challenge = store.issue('s');
  const verifier = new LoginVerifier({ origin, anchors: setup.anchors.map(der), ocsp, ...extra });
  const leaf = identity(name);
  const algorithm = setup.identities[name].algorithm;
  try {
    const result = await verifier.verify(token(leaf, chain, algorithm, challenge, origin),
      { challenge, store, session: 's' });
    return { valid: true, sha256: result.sha256 };
  } catch (error) {
    if (!(error instanceof LoginError)) throw error;
    return { valid: false, error: error.code };
  }
}

// Raw answers read with the wrong expectations must be refused, not read as "good".
async function refused(name, change) {
  const leafInfo = certInfo(der(setup.identities[name].certificate));
  const issuerDer = der(setup.chain[0]);
  const issuer = { cert: new X509Certificate(issuerDer), info: certInfo(issuerDer) };
  const request = buildRequest(leafInfo, issuer.info);
  const answer = await post(setup.ocsp, request.der);
  const context = {
    info: leafInfo, issuerCert: issuer.cert, issuerInfo: issuer.info,
    nonceValue: request.nonceValue, now: Date.now(), ...change(issuer),
  };
  try {
    return { status: readResponse(answer, context) };
  } catch (error) {
    return { refused: error.message };
  }
}

const other = certInfo(der(setup.identities.good.certificate));
const out = {
  good: await login('good', true),
  goodRequired: await login('good', true, { requireRevocationStatus: true }),
  revoked: await login('revoked', true),
  revokedOffline: await login('revoked', false),
  revokedViaOverride: await login('revoked', { url: setup.ocsp }),
  downRequired: await login('revoked', { url: setup.ocspDown, timeoutMs: 5000 },
    { requireRevocationStatus: true }),
  downSoft: await login('good', { url: setup.ocspDown, timeoutMs: 5000 }),
  rawGood: await refused('good', () => ({})),
  rawRevoked: await refused('revoked', () => ({})),
  otherNonce: await refused('good', () => ({ nonceValue: Buffer.from('0410' + '00'.repeat(16), 'hex') })),
  otherCertificate: await refused('revoked', () => ({ info: other })),
  otherIssuer: await refused('good', () => ({
    issuerCert: new X509Certificate(der(setup.anchors[0])),
  })),
  stale: await refused('good', () => ({ now: Date.now() + 2 * 24 * 3600 * 1000 })),
};
process.stdout.write(`${JSON.stringify(out)}\n`);
