// A throw-away PKI for the unit tests, written with node:crypto and the package's own DER
// writer: root -> intermediate -> end entities, CRLs, and tokens signed as the agent does.

import {
  createHash, generateKeyPairSync, randomBytes, sign, X509Certificate, constants,
} from 'node:crypto';
import {
  tlv, seq, oid, octets, nullValue, unsignedInteger, parse,
} from '../src/der.mjs';

export const ORIGIN = 'https://portal.example.az';
export const DAY = 24 * 3600 * 1000;
export const NOW = Date.UTC(2031, 4, 4, 10, 0, 0);

const utf8 = (text) => tlv(0x0c, Buffer.from(text, 'utf8'));
const bool = (v) => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]);

function time(ms) {
  const iso = new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return ms < Date.UTC(2050, 0, 1) ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`))
    : tlv(0x18, Buffer.from(`${iso}Z`));
}

export function name(cn) {
  return seq(tlv(0x31, [seq(oid('2.5.4.6'), tlv(0x13, Buffer.from('AZ'))),
  ]), tlv(0x31, [seq(oid('2.5.4.3'), utf8(cn))]));
}

// KeyUsage bits by name, RFC 5280 §4.2.1.3.
const KU = {
  digitalSignature: 0, nonRepudiation: 1, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6,
};

function keyUsage(names) {
  const bits = names.map((n) => KU[n]);
  const last = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(last / 8) + 1);
  for (const b of bits) bytes[b >> 3] |= 0x80 >> (b & 7);
  const unused = 7 - (last % 8);
  return tlv(0x03, Buffer.concat([Buffer.from([unused]), bytes]));
}

function extension(id, critical, value) {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

function sigAlg(key) {
  return key.asymmetricKeyType === 'rsa'
    ? seq(oid('1.2.840.113549.1.1.11'), nullValue())
    : seq(oid('1.2.840.10045.4.3.2'));
}

function signed(tbs, key) {
  const signature = sign('sha256', tbs, key);
  return seq(tbs, sigAlg(key), tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
}

export function keyPair(kind = 'ec', curve = 'P-256') {
  if (kind === 'rsa') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  return generateKeyPairSync('ec', { namedCurve: curve });
}

/**
 * @param {{cn: string, keys: {publicKey, privateKey}, issuer?: {name: Buffer, privateKey},
 *   notBefore?: number, notAfter?: number, ca?: boolean, usage?: string[],
 *   eku?: string[] | null, ocspUrl?: string}} o
 */
export function certificate(o) {
  const subject = name(o.cn);
  const issuer = o.issuer ?? { name: subject, privateKey: o.keys.privateKey };
  const serial = randomBytes(12);
  serial[0] &= 0x7f;
  serial[0] |= 0x10;
  const exts = [extension('2.5.29.19', true, o.ca ? seq(bool(true)) : seq())];
  if (o.usage !== null) { // null: no KeyUsage extension at all
    exts.push(extension('2.5.29.15', true, keyUsage(o.usage ?? (o.ca
      ? ['keyCertSign', 'cRLSign'] : ['digitalSignature']))));
  }
  if (o.eku) exts.push(extension('2.5.29.37', false, seq(...o.eku.map(oid))));
  if (o.ocspUrl) {
    exts.push(extension('1.3.6.1.5.5.7.1.1', false, seq(seq(oid('1.3.6.1.5.5.7.48.1'),
      tlv(0x86, Buffer.from(o.ocspUrl))))));
  }
  const tbs = seq(
    tlv(0xa0, [tlv(0x02, Buffer.from([2]))]),
    unsignedInteger(serial),
    sigAlg(issuer.privateKey),
    issuer.name,
    seq(time(o.notBefore ?? NOW - 30 * DAY), time(o.notAfter ?? NOW + 365 * DAY)),
    subject,
    o.keys.publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, [seq(...exts)]),
  );
  const der = signed(tbs, issuer.privateKey);
  return {
    der, cert: new X509Certificate(der), name: subject, serial,
    privateKey: o.keys.privateKey, publicKey: o.keys.publicKey,
  };
}

/** A CRL of `issuer` listing `serials`. */
export function crl(issuer, serials, { thisUpdate = NOW - DAY, nextUpdate = NOW + 7 * DAY } = {}) {
  const entries = serials.map((s) => seq(unsignedInteger(s), time(thisUpdate)));
  const tbs = seq(
    tlv(0x02, Buffer.from([1])), sigAlg(issuer.privateKey), issuer.name,
    time(thisUpdate), time(nextUpdate), ...(entries.length ? [seq(...entries)] : []),
  );
  return signed(tbs, issuer.privateKey);
}

/** root -> intermediate, valid around NOW. */
export function hierarchy(kind = 'rsa') {
  const root = certificate({ cn: 'Test Root', keys: keyPair(kind), ca: true,
    notBefore: NOW - 3650 * DAY, notAfter: NOW + 3650 * DAY });
  const intermediate = certificate({ cn: 'Test Intermediate', keys: keyPair(kind), ca: true,
    issuer: root, notBefore: NOW - 3000 * DAY, notAfter: NOW + 3000 * DAY });
  return { root, intermediate };
}

const HASH = { 256: 'sha256', 384: 'sha384', 512: 'sha512' };

/** The token the agent would send for `challenge` seen from `origin`. */
export function token(leaf, chain, algorithm, challenge, origin = ORIGIN) {
  const message = Buffer.concat([
    createHash('sha256').update(origin).digest(),
    createHash('sha256').update(Buffer.from(challenge, 'base64url')).digest(),
  ]);
  const hash = HASH[algorithm.slice(2)];
  const key = leaf.privateKey;
  const options = algorithm.startsWith('PS')
    ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(algorithm.slice(2)) / 8 }
    : algorithm.startsWith('ES') ? { key, dsaEncoding: 'ieee-p1363' } : key;
  return {
    format: 'imza-auth:1',
    certificate: leaf.der.toString('base64'),
    chain: chain.map((c) => c.der.toString('base64')),
    algorithm,
    signature: sign(hash, message, options).toString('base64'),
  };
}

const STATUS_TAGS = { good: 0x80, revoked: 0xa1, unknown: 0x82 };

/**
 * A DER OCSPResponse about `leaf` (issued by `issuer`), signed by `signer`
 * (the issuer itself or a responder certificate, then embedded).
 */
export function ocspResponse({
  leaf, issuer, signer = issuer, status = 'good', thisUpdate = NOW - 60_000,
  nextUpdate = NOW + DAY, nonceValue = null, responseStatus = 0, embed = signer !== issuer,
}) {
  const sha1 = (data) => createHash('sha1').update(data).digest();
  const spki = issuer.publicKey.export({ type: 'spki', format: 'der' });
  const keyBits = spkiKeyBits(spki);
  const certId = seq(seq(oid('1.3.14.3.2.26'), nullValue()), octets(sha1(issuer.name)),
    octets(sha1(keyBits)), unsignedInteger(leaf.serial));
  const certStatus = status === 'revoked'
    ? tlv(0xa1, [time(thisUpdate)]) : Buffer.from([STATUS_TAGS[status], 0]);
  const single = seq(certId, certStatus, time(thisUpdate),
    ...(nextUpdate === null ? [] : [tlv(0xa0, [time(nextUpdate)])]));
  const extensions = nonceValue === null ? []
    : [tlv(0xa1, [seq(seq(oid('1.3.6.1.5.5.7.48.1.2'), octets(nonceValue)))])];
  const tbs = seq(tlv(0xa2, [octets(sha1(spkiKeyBits(
    signer.publicKey.export({ type: 'spki', format: 'der' }))))]),
  tlv(0x18, Buffer.from('20310504095900Z')), seq(single), ...extensions);
  const basic = signed(tbs, signer.privateKey);
  const withCerts = embed
    ? seq(...parseSeq(basic), tlv(0xa0, [seq(signer.der)])) : basic;
  const bytes = seq(oid('1.3.6.1.5.5.7.48.1.1'), octets(withCerts));
  return seq(tlv(0x0a, Buffer.from([responseStatus])),
    ...(responseStatus === 0 ? [tlv(0xa0, [bytes])] : []));
}

function spkiKeyBits(spki) {
  return parse(spki).sequence()[1].bitString().bytes;
}

const parseSeq = (der) => parse(der).sequence().map((n) => n.raw);
