import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ChallengeStore, LoginVerifier, LoginError } from '../src/index.mjs';
import {
  ORIGIN, NOW, DAY, certificate, crl, hierarchy, keyPair, token,
} from './pki.mjs';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EMAIL = '1.3.6.1.5.5.7.3.4';

const { root, intermediate } = hierarchy();
const leafEc = certificate({ cn: 'Əliyev Test', keys: keyPair(), issuer: intermediate,
  eku: [CLIENT_AUTH, EMAIL] });
const leafRsa = certificate({ cn: 'RSA Test', keys: keyPair('rsa'), issuer: intermediate,
  usage: ['digitalSignature', 'keyEncipherment'], eku: [CLIENT_AUTH] });

/** verify `make(challenge)` with a fresh store; the LoginError code or the result. */
async function outcome(make, options = {}, { clock = () => NOW, session = 's' } = {}) {
  const store = new ChallengeStore({ clock });
  const challenge = store.issue(session);
  const verifier = new LoginVerifier({ origin: ORIGIN, anchors: [root.der], clock, ...options });
  try {
    return await verifier.verify(make(challenge), { challenge, store, session });
  } catch (error) {
    if (!(error instanceof LoginError)) throw error;
    return error.code;
  }
}

test('every algorithm the agent emits verifies, with its curve or an RSA key', async () => {
  const cases = [
    ['ES256', keyPair('ec', 'P-256')], ['ES384', keyPair('ec', 'P-384')],
    ['ES512', keyPair('ec', 'P-521')],
    ...['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'].map((a) => [a, null]),
  ];
  for (const [algorithm, keys] of cases) {
    const leaf = keys ? certificate({ cn: algorithm, keys, issuer: intermediate,
      eku: [CLIENT_AUTH] }) : leafRsa;
    const result = await outcome((c) => token(leaf, [intermediate], algorithm, c));
    assert.equal(typeof result, 'object', `${algorithm}: ${result}`);
    assert.equal(result.sha256, createHash('sha256').update(leaf.der).digest('hex'));
    assert.equal(result.serialNumber, leaf.serial.toString('hex').toUpperCase());
    assert.match(result.subject, new RegExp(`CN=${keys ? algorithm : 'RSA Test'}`));
    assert.match(result.issuer, /CN=Test Intermediate/);
    assert.ok(result.certificate.checkIssued(intermediate.cert));
  }
});

test('the checks fail in the order SCHEMA.md lists', async () => {
  const good = (c) => token(leafEc, [intermediate], 'ES256', c);
  const cases = {
    MALFORMED: [
      () => 'a string', () => [], () => null,
      (c) => ({ ...good(c), certificate: 42 }),
      (c) => ({ ...good(c), signature: undefined }),
      (c) => ({ ...good(c), chain: 'x' }),
      (c) => ({ ...good(c), chain: null }),
      (c) => ({ ...good(c), chain: [1] }),
      (c) => ({ ...good(c), certificate: good(c).certificate.replace(/\+/g, '-').replace(/\//g, '_') + '-' }),
      (c) => ({ ...good(c), signature: good(c).signature.replace(/=+$/, '') }),
      (c) => ({ ...good(c), certificate: Buffer.from('not a certificate').toString('base64') }),
      (c) => ({ ...good(c), format: 'other', chain: ['AAAA'] }), // before the format
    ],
    UNSUPPORTED_FORMAT: [(c) => ({ ...good(c), format: 'web-eid:1.0' })],
    ALGORITHM_MISMATCH: [
      (c) => ({ ...good(c), algorithm: 'es256' }),
      (c) => ({ ...good(c), algorithm: 'ES384' }),
      (c) => ({ ...good(c), algorithm: 'RS256' }),
      (c) => ({ ...token(leafRsa, [intermediate], 'RS256', c), algorithm: 'ES256' }),
      (c) => ({ ...good(c), algorithm: 'none', signature: '' }), // before the signature
    ],
    SIGNATURE_INVALID: [
      (c) => token(leafEc, [intermediate], 'ES256', c, 'https://evil.example'),
      (c) => token(leafEc, [intermediate], 'ES256', 'B'.repeat(43)),
      (c) => ({ ...good(c), signature: Buffer.alloc(64, 1).toString('base64') }),
      (c) => ({ ...good(c), signature: Buffer.alloc(63, 1).toString('base64') }),
      (c) => ({ ...token(leafRsa, [intermediate], 'PS256', c), algorithm: 'RS256' }),
      (c) => ({ ...token(leafRsa, [intermediate], 'RS256', c), algorithm: 'RS384' }),
      (c) => ({ ...token(leafEc, [], 'ES256', c), signature: '' }), // before the chain
    ],
    CERT_UNTRUSTED: [
      (c) => token(leafEc, [], 'ES256', c),
      (c) => token(leafEc, [root], 'ES256', c),
    ],
  };
  for (const [code, makers] of Object.entries(cases)) {
    for (const [i, make] of makers.entries()) {
      assert.equal(await outcome(make), code, `${code} #${i}`);
    }
  }
});

test('the challenge: unknown, replayed, expired, and spent by any failure after it', async () => {
  const clock = () => NOW;
  const store = new ChallengeStore({ clock });
  const verifier = new LoginVerifier({ origin: ORIGIN, anchors: [root.der], clock });
  const code = (promise) => promise.then(() => null, (e) => e.code);
  const challenge = store.issue('s');
  const bad = { ...token(leafEc, [intermediate], 'ES256', challenge), algorithm: 'ES384' };
  assert.equal(await code(verifier.verify(bad, { challenge, store, session: 's' })),
    'ALGORITHM_MISMATCH');
  const good = token(leafEc, [intermediate], 'ES256', challenge);
  assert.equal(await code(verifier.verify(good, { challenge, store, session: 's' })),
    'CHALLENGE_USED');
  const other = store.issue('s');
  assert.equal(await code(verifier.verify(good, { challenge: other, store, session: 'x' })),
    'CHALLENGE_UNKNOWN');
  let now = NOW;
  const late = new ChallengeStore({ clock: () => now });
  const old = late.issue('s');
  now += 301_000;
  assert.equal(await code(verifier.verify(token(leafEc, [intermediate], 'ES256', old),
    { challenge: old, store: late, session: 's' })), 'CHALLENGE_EXPIRED');
});

test('validity at the injected time, end entity first, then the CAs', async () => {
  const make = (c) => token(leafEc, [intermediate], 'ES256', c);
  assert.equal(await outcome(make, {}, { clock: () => NOW + 366 * DAY }), 'CERT_EXPIRED');
  assert.equal(await outcome(make, {}, { clock: () => NOW - 31 * DAY }), 'CERT_NOT_YET_VALID');
  const oldCa = certificate({ cn: 'Old Intermediate', keys: keyPair(), ca: true, issuer: root,
    notBefore: NOW - 900 * DAY, notAfter: NOW - DAY });
  const leaf = certificate({ cn: 'Under old CA', keys: keyPair(), issuer: oldCa,
    notBefore: NOW - 10 * DAY, notAfter: NOW + 10 * DAY });
  assert.equal(await outcome((c) => token(leaf, [oldCa], 'ES256', c)), 'CERT_EXPIRED');
  const early = certificate({ cn: 'Early', keys: keyPair(), issuer: oldCa,
    notBefore: NOW + DAY, notAfter: NOW + 10 * DAY });
  assert.equal(await outcome((c) => token(early, [oldCa], 'ES256', c)), 'CERT_NOT_YET_VALID');
});

test('key usage: digitalSignature needed, EKUs must include clientAuth', async () => {
  const signing = certificate({ cn: 'Signing', keys: keyPair(), issuer: intermediate,
    usage: ['nonRepudiation'] });
  const emailOnly = certificate({ cn: 'Mail', keys: keyPair(), issuer: intermediate,
    eku: [EMAIL] });
  const noExtensions = certificate({ cn: 'Plain', keys: keyPair(), issuer: intermediate });
  assert.equal(await outcome((c) => token(signing, [intermediate], 'ES256', c)),
    'CERT_NOT_FOR_AUTH');
  assert.equal(await outcome((c) => token(emailOnly, [intermediate], 'ES256', c)),
    'CERT_NOT_FOR_AUTH');
  assert.equal(typeof await outcome((c) => token(noExtensions, [intermediate], 'ES256', c)),
    'object');
});

test('a CRL of the issuer revokes; a CRL signed by another key does not', async () => {
  const make = (c) => token(leafEc, [intermediate], 'ES256', c);
  assert.equal(await outcome(make, { crls: [crl(intermediate, [leafEc.serial])] }),
    'CERT_REVOKED');
  assert.equal(await outcome(make, { crls: [crl(intermediate, [leafEc.serial]).toString('base64')] }),
    'CERT_REVOKED');
  const impostor = { name: intermediate.name, privateKey: keyPair('rsa').privateKey };
  assert.equal(typeof await outcome(make, { crls: [crl(impostor, [leafEc.serial])] }), 'object');
  assert.equal(typeof await outcome(make, { crls: [crl(intermediate, [leafRsa.serial])] }),
    'object');
  const revokedCa = crl(root, [intermediate.serial]);
  assert.equal(await outcome(make, { crls: [revokedCa] }), 'CERT_REVOKED');
});

test('REVOCATION_UNKNOWN only when status is required and none is available', async () => {
  const make = (c) => token(leafEc, [intermediate], 'ES256', c);
  assert.equal(await outcome(make, { requireRevocationStatus: true }), 'REVOCATION_UNKNOWN');
  assert.equal(typeof await outcome(make, { requireRevocationStatus: true,
    crls: [crl(intermediate, [])] }), 'object');
  // OCSP enabled but nobody answers (no address in the certificate, a closed port)
  assert.equal(typeof await outcome(make, { ocsp: true }), 'object');
  assert.equal(await outcome(make, { ocsp: { url: 'http://127.0.0.1:9/ocsp', timeoutMs: 2000 },
    requireRevocationStatus: true }), 'REVOCATION_UNKNOWN');
});

test('paths: through the chain to an anchor, at most six certificates, CA links only', async () => {
  let issuer = root;
  const cas = [];
  for (let i = 0; i < 5; i++) {
    issuer = certificate({ cn: `CA ${i}`, keys: keyPair(), ca: true, issuer });
    cas.unshift(issuer);
  }
  const deep = certificate({ cn: 'Deep', keys: keyPair(), issuer: cas[0] });
  assert.equal(await outcome((c) => token(deep, cas, 'ES256', c)), 'CERT_UNTRUSTED');
  const four = cas.slice(1);
  const ok = certificate({ cn: 'Four deep', keys: keyPair(), issuer: four[0] });
  assert.equal(typeof await outcome((c) => token(ok, [...four].reverse(), 'ES256', c)), 'object');
  // An end entity as issuer: with a KeyUsage lacking keyCertSign, and (the case only
  // BasicConstraints catches) with no KeyUsage at all.
  for (const usage of [undefined, null]) {
    const notCa = certificate({ cn: 'Not a CA', keys: keyPair(), issuer: intermediate, usage });
    const below = certificate({ cn: 'Below', keys: keyPair(), issuer: notCa });
    assert.equal(await outcome((c) => token(below, [notCa, intermediate], 'ES256', c)),
      'CERT_UNTRUSTED', `usage ${usage}`);
  }
  const noUsage = certificate({ cn: 'No usage', keys: keyPair(), issuer: intermediate,
    usage: null });
  assert.equal(typeof await outcome((c) => token(noUsage, [intermediate], 'ES256', c)), 'object');
});

test('configuration mistakes are TypeErrors at construction, not login failures', () => {
  assert.throws(() => new LoginVerifier({ origin: 'https://a.example/', anchors: [root.der] }),
    TypeError);
  assert.throws(() => new LoginVerifier({ origin: ORIGIN, anchors: [] }), TypeError);
  const pem = `-----BEGIN CERTIFICATE-----\n${root.der.toString('base64')}\n-----END CERTIFICATE-----\n`;
  assert.ok(new LoginVerifier({ origin: ORIGIN, anchors: [pem, root.cert] }));
});

test('a certificate configured as an anchor itself is trusted as configured', async () => {
  const pinned = certificate({ cn: 'Pinned', keys: keyPair(), issuer: intermediate });
  const clock = () => NOW;
  const store = new ChallengeStore({ clock });
  const challenge = store.issue();
  const verifier = new LoginVerifier({ origin: ORIGIN, anchors: [pinned.der], ocsp: true,
    requireRevocationStatus: false, clock });
  const result = await verifier.verify(token(pinned, [], 'ES256', challenge),
    { challenge, store });
  assert.deepEqual(result.chain, []);
  assert.equal(result.subject, 'CN=Pinned,C=AZ');
  assert.equal(result.issuer, 'CN=Test Intermediate,C=AZ');
  assert.equal(result.subjectSerialNumber, null);
});

test('any store with consume() will do, e.g. one over a shared session store', async () => {
  const spent = new Set();
  const shared = {
    consume(challenge, session) {
      const key = `${session}/${challenge}`;
      if (spent.has(key)) throw new LoginError('CHALLENGE_USED');
      spent.add(key);
    },
  };
  const challenge = 'HvrtOq8mHlHY9e3dn7EEaQAys5_NtlrIAO4Yi2O6KeM';
  const verifier = new LoginVerifier({ origin: ORIGIN, anchors: [root.der], clock: () => NOW });
  const login = token(leafEc, [intermediate], 'ES256', challenge);
  const first = await verifier.verify(login, { challenge, store: shared, session: 'x' });
  assert.deepEqual(first.chain.map((c) => c.subject), [intermediate.cert.subject, root.cert.subject]);
  await assert.rejects(verifier.verify(login, { challenge, store: shared, session: 'x' }),
    (e) => e instanceof LoginError && e.code === 'CHALLENGE_USED');
});
