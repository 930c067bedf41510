import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { certInfo } from '../src/cert-info.mjs';
import { buildRequest, post, readResponse } from '../src/ocsp.mjs';
import { parse } from '../src/der.mjs';
import { ChallengeStore, LoginVerifier, LoginError } from '../src/index.mjs';
import {
  NOW, DAY, ORIGIN, certificate, hierarchy, keyPair, ocspResponse, token,
} from './pki.mjs';

const OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';
const { root, intermediate } = hierarchy('ec');
const leaf = certificate({ cn: 'Leaf', keys: keyPair(), issuer: intermediate });
const other = certificate({ cn: 'Other', keys: keyPair(), issuer: intermediate });
const issuer = { cert: intermediate.cert, info: certInfo(intermediate.der) };
const info = certInfo(leaf.der);

function read(der, nonceValue = null, extra = {}) {
  try {
    return readResponse(der, {
      info, issuerCert: issuer.cert, issuerInfo: issuer.info, nonceValue, now: NOW, ...extra,
    });
  } catch (error) {
    return `refused: ${error.message}`;
  }
}

test('the request names issuer and serial the way RFC 6960 CertID does, with a nonce', () => {
  const { der, nonceValue } = buildRequest(info, issuer.info);
  const [tbs] = parse(der).sequence();
  const [list, extensions] = tbs.sequence();
  const [certId] = list.sequence()[0].sequence();
  const [alg, , , serial] = certId.sequence();
  assert.equal(alg.sequence()[0].oid(), '1.3.14.3.2.26');
  assert.deepEqual(Buffer.from(serial.integerBytes()), leaf.serial);
  const [nonce] = extensions.explicit(2).sequence();
  assert.equal(nonce.sequence()[0].oid(), '1.3.6.1.5.5.7.48.1.2');
  assert.equal(parse(Buffer.from(nonceValue)).octetString().length, 32);
});

test('answers signed by the issuer: good, revoked, unknown', () => {
  assert.equal(read(ocspResponse({ leaf, issuer: intermediate })), 'good');
  assert.equal(read(ocspResponse({ leaf, issuer: intermediate, status: 'revoked' })), 'revoked');
  assert.equal(read(ocspResponse({ leaf, issuer: intermediate, status: 'unknown' })), 'unknown');
});

test('a responder the issuer delegated to, and only with OCSPSigning', () => {
  const responder = certificate({ cn: 'OCSP', keys: keyPair(), issuer: intermediate,
    eku: [OCSP_SIGNING] });
  assert.equal(read(ocspResponse({ leaf, issuer: intermediate, signer: responder })), 'good');
  const noEku = certificate({ cn: 'OCSP?', keys: keyPair(), issuer: intermediate });
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, signer: noEku })), /not signed/);
  const foreign = certificate({ cn: 'OCSP', keys: keyPair(), issuer: root, eku: [OCSP_SIGNING] });
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, signer: foreign })), /not signed/);
  const lapsed = certificate({ cn: 'OCSP', keys: keyPair(), issuer: intermediate,
    eku: [OCSP_SIGNING], notBefore: NOW - 90 * DAY, notAfter: NOW - DAY });
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, signer: lapsed })), /not signed/);
  const stranger = certificate({ cn: 'Self', keys: keyPair(), eku: [OCSP_SIGNING] });
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, signer: stranger })),
    /not signed/);
});

test('answers about something else, out of date, replayed, or failed are refused', () => {
  assert.match(read(ocspResponse({ leaf: other, issuer: intermediate })), /another certificate/);
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, nextUpdate: NOW - DAY })),
    /out of date/);
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, nextUpdate: null,
    thisUpdate: NOW - 2 * DAY })), /out of date/);
  assert.equal(read(ocspResponse({ leaf, issuer: intermediate, nextUpdate: null })), 'good');
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, thisUpdate: NOW + DAY })),
    /future/);
  const { nonceValue } = buildRequest(info, issuer.info);
  const echoed = ocspResponse({ leaf, issuer: intermediate, nonceValue });
  assert.equal(read(echoed, nonceValue), 'good');
  const { nonceValue: mine } = buildRequest(info, issuer.info);
  assert.match(read(echoed, mine), /nonce/);
  assert.match(read(ocspResponse({ leaf, issuer: intermediate, responseStatus: 6 })),
    /status 6/);
  const good = ocspResponse({ leaf, issuer: intermediate });
  assert.match(read(Buffer.concat([good, Buffer.from([0])])), /trailing/);
  const tampered = Buffer.from(good);
  tampered[tampered.length - 10] ^= 1;
  assert.match(read(tampered), /refused/);
});

// A responder on loopback that answers as each test asks.
let answer = () => ({ status: 200, headers: {}, body: Buffer.alloc(0) });
const requests = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    requests.push({ type: req.headers['content-type'], body: Buffer.concat(chunks) });
    const { status, headers, body, hang } = answer();
    if (hang) return;
    res.writeHead(status, { 'Content-Type': 'application/ocsp-response', ...headers });
    res.end(body);
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}/ocsp`;
after(() => server.close());

test('post: the request as sent, and answers that are too big, encoded or not 200', async () => {
  answer = () => ({ status: 200, headers: {}, body: Buffer.from('answer') });
  assert.equal((await post(url, Buffer.from('q'))).toString(), 'answer');
  assert.deepEqual(requests.at(-1), { type: 'application/ocsp-request', body: Buffer.from('q') });
  answer = () => ({ status: 200, headers: {}, body: Buffer.alloc(300 * 1024) });
  await assert.rejects(post(url, Buffer.from('q')), /too large/);
  answer = () => ({ status: 200, headers: { 'Content-Encoding': 'gzip' }, body: Buffer.alloc(9) });
  await assert.rejects(post(url, Buffer.from('q')), /HTTP 200/);
  answer = () => ({ status: 302, headers: { Location: url }, body: Buffer.alloc(0) });
  await assert.rejects(post(url, Buffer.from('q')), /HTTP 302/);
  answer = () => ({ hang: true });
  await assert.rejects(post(url, Buffer.from('q'), { timeoutMs: 300 }), /timed out/);
  await assert.rejects(post('ftp://127.0.0.1/', Buffer.from('q')), /http or https/);
});

test('the verifier asks the responder and believes only a sound answer', async () => {
  const withAia = certificate({ cn: 'AIA', keys: keyPair(), issuer: intermediate, ocspUrl: url });
  const login = async (extra = {}) => {
    const store = new ChallengeStore({ clock: () => NOW });
    const challenge = store.issue('s');
    const verifier = new LoginVerifier({ origin: ORIGIN, anchors: [root.der], ocsp: true,
      clock: () => NOW, ...extra });
    try {
      await verifier.verify(token(withAia, [intermediate], 'ES256', challenge),
        { challenge, store, session: 's' });
      return 'valid';
    } catch (error) {
      if (!(error instanceof LoginError)) throw error;
      return error.code;
    }
  };
  const respond = (options) => {
    answer = () => {
      const request = parse(requests.at(-1).body);
      const ext = request.sequence()[0].sequence()[1].explicit(2).sequence()[0].sequence();
      const nonceValue = Buffer.from(ext[1].octetString());
      const body = ocspResponse({ leaf: withAia, issuer: intermediate, nonceValue, ...options });
      return { status: 200, headers: {}, body };
    };
  };
  respond({ status: 'revoked' });
  assert.equal(await login(), 'CERT_REVOKED');
  respond({ status: 'good' });
  assert.equal(await login({ requireRevocationStatus: true }), 'valid');
  respond({ status: 'unknown' });
  assert.equal(await login({ requireRevocationStatus: true }), 'REVOCATION_UNKNOWN');
  respond({ status: 'revoked', signer: certificate({ cn: 'Forger', keys: keyPair() }) });
  assert.equal(await login(), 'valid'); // a forged "revoked" is no status at all ...
  assert.equal(await login({ requireRevocationStatus: true }), 'REVOCATION_UNKNOWN'); // ... nor "good"
});
