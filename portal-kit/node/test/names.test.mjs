import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tlv, seq, oid } from '../src/der.mjs';
import { rfc4514, nameAttribute } from '../src/names.mjs';

const attr = (id, tag, bytes) => seq(oid(id), tlv(tag, Buffer.from(bytes)));
const rdn = (...attrs) => tlv(0x31, attrs);
const utf8 = (id, text) => attr(id, 0x0c, Buffer.from(text, 'utf8'));

test('RFC 4514: last RDN first, short names, dotted OIDs for the rest', () => {
  const name = seq(rdn(attr('2.5.4.6', 0x13, 'AZ')), rdn(utf8('2.5.4.10', 'Rəqəmsal MMC')),
    rdn(utf8('2.5.4.3', 'Əliyev Test')), rdn(attr('2.5.4.5', 0x13, 'AZE-1234567')));
  assert.equal(rfc4514(name), '2.5.4.5=AZE-1234567,CN=Əliyev Test,O=Rəqəmsal MMC,C=AZ');
  assert.equal(nameAttribute(name, '2.5.4.5'), 'AZE-1234567');
  assert.equal(nameAttribute(name, '2.5.4.42'), null);
});

test('special characters are escaped; multi-valued RDNs are joined with +', () => {
  const name = seq(rdn(utf8('2.5.4.3', '#a, b+c;<d>"e"\\ '), utf8('2.5.4.11', ' lead')));
  assert.equal(rfc4514(name), 'CN=\\#a\\, b\\+c\\;\\<d\\>\\"e\\"\\\\\\ +OU=\\ lead');
  assert.equal(rfc4514(seq(rdn(utf8('2.5.4.3', ' ')))), 'CN=\\ ');
  assert.equal(rfc4514(seq(rdn(utf8('2.5.4.3', '')))), 'CN=');
});

test('BMPString, UniversalString, and # hex for a value that is no string', () => {
  const bmp = Buffer.from('Şəki', 'utf16le').swap16();
  const universal = Buffer.alloc(8);
  universal.writeUInt32BE(0x418, 0); // И
  universal.writeUInt32BE(0x1f600, 4);
  const name = seq(rdn(attr('2.5.4.7', 0x1e, bmp)), rdn(attr('2.5.4.3', 0x1c, universal)),
    rdn(attr('2.5.4.45', 0x03, Buffer.from([0, 0xab]))));
  assert.equal(rfc4514(name), '2.5.4.45=#00ab,CN=И😀,L=Şəki');
});
