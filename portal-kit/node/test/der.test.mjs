import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse, DerError, oid, seq, tlv } from '../src/der.mjs';

const hex = (h) => Buffer.from(h.replace(/\s/g, ''), 'hex');

test('reads nested values and their raw bytes', () => {
  const der = seq(oid('1.3.6.1.5.5.7.3.2'), tlv(0x04, Buffer.from('abc')));
  const [id, text] = parse(der).sequence();
  assert.equal(id.oid(), '1.3.6.1.5.5.7.3.2');
  assert.equal(text.octetString().toString(), 'abc');
  assert.deepEqual(parse(oid('2.999.1.2')).oid(), '2.999.1.2');
  const long = tlv(0x04, Buffer.alloc(300, 7));
  assert.equal(parse(long).octetString().length, 300);
});

test('refuses what DER forbids or what runs past the end', () => {
  const bad = {
    indefinite: '30 80 00 00',
    'non-minimal long length': '04 81 01 00',
    'leading zero length': '04 82 00 80',
    truncated: '30 05 02 01 01',
    'five length bytes': '04 85 00 00 00 00 01',
    'high tag': '1f 81 00 00',
    'trailing bytes': '05 00 00',
  };
  for (const [what, bytes] of Object.entries(bad)) {
    assert.throws(() => parse(hex(bytes)).children?.(), DerError, what);
  }
  assert.throws(() => parse(hex('02 02 00 01')).integerBytes(), DerError);
  assert.throws(() => parse(hex('01 01 01')).boolean(), DerError);
  assert.throws(() => parse(hex('03 01 01')).bitString(), DerError);
  assert.throws(() => parse(hex('06 02 2b 80')).oid(), DerError);
  assert.throws(() => parse(hex('30 03 30 01')).sequence(), DerError);
});

test('times: UTCTime century, GeneralizedTime, impossible dates refused', () => {
  const t = (tag, text) => parse(tlv(tag, Buffer.from(text))).time();
  assert.equal(t(0x17, '310504100000Z'), Date.UTC(2031, 4, 4, 10));
  assert.equal(t(0x17, '991231235959Z'), Date.UTC(1999, 11, 31, 23, 59, 59));
  assert.equal(t(0x18, '20510101000000Z'), Date.UTC(2051, 0, 1));
  assert.throws(() => t(0x17, '310231100000Z'), DerError);
  assert.throws(() => t(0x17, '3105041000Z'), DerError);
  assert.throws(() => t(0x18, '20310504100000+0100'), DerError);
});

test('deep nesting is bounded', () => {
  let der = Buffer.from([0x05, 0x00]);
  for (let i = 0; i < 40; i++) der = seq(der);
  let node = parse(der);
  assert.throws(() => {
    for (;;) [node] = node.sequence();
  }, /nested too deep/);
});
