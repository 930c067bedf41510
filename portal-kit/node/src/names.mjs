// Distinguished names as RFC 4514 strings, written the way the Python verifier
// (cryptography's rfc4514_string) writes them, so a portal maps users by the same text
// whichever kit verified the login.

import { parse, DerError } from './der.mjs';

const SHORT = {
  '2.5.4.3': 'CN', '2.5.4.7': 'L', '2.5.4.8': 'ST', '2.5.4.10': 'O', '2.5.4.11': 'OU',
  '2.5.4.6': 'C', '2.5.4.9': 'STREET', '0.9.2342.19200300.100.1.25': 'DC',
  '0.9.2342.19200300.100.1.1': 'UID',
};

// Directory string types -> how their bytes decode.
function decodeString(node) {
  if (node.cls !== 0 || node.constructed) throw new DerError('string expected');
  const bytes = Buffer.from(node.content);
  switch (node.tag) {
    case 12: return bytes.toString('utf8'); // UTF8String
    case 18: case 19: case 22: case 26: return bytes.toString('latin1'); // Numeric..Visible
    case 20: return bytes.toString('latin1'); // TeletexString, as most software reads it
    case 30: return bytes.swap16().toString('utf16le'); // BMPString (big-endian UCS-2)
    case 28: { // UniversalString (UCS-4 big-endian)
      if (bytes.length % 4) throw new DerError('bad UniversalString');
      let out = '';
      for (let i = 0; i < bytes.length; i += 4) out += String.fromCodePoint(bytes.readUInt32BE(i));
      return out;
    }
    default: return null;
  }
}

function escape(value) {
  if (value === '') return '';
  let out = value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\+/g, '\\+')
    .replace(/,/g, '\\,').replace(/;/g, '\\;').replace(/</g, '\\<').replace(/>/g, '\\>')
    .replace(/\0/g, '\\00');
  if (out[0] === '#' || (out[0] === ' ' && out.length > 1)) out = `\\${out}`;
  if (out.endsWith(' ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** [[{oid, value}], ...] in the order of the DER (one inner list per RDN). */
export function nameAttributes(der) {
  return parse(der).sequence().map((rdn) => {
    if (!rdn.is(17) || !rdn.constructed) throw new DerError('RDN SET expected');
    return rdn.children().map((attr) => {
      const [type, value] = attr.sequence();
      const text = decodeString(value);
      return { oid: type.oid(), value: text, raw: value.content };
    });
  });
}

/** RFC 4514: the last RDN first, "+" inside an RDN, "," between them. */
export function rfc4514(der) {
  return nameAttributes(der).reverse().map((rdn) => rdn.map(({ oid, value, raw }) => {
    const key = SHORT[oid] ?? oid;
    return `${key}=${value === null ? `#${Buffer.from(raw).toString('hex')}` : escape(value)}`;
  }).join('+')).join(',');
}

/** The first value of attribute `oid` (e.g. serialNumber 2.5.4.5), or null. */
export function nameAttribute(der, oid) {
  for (const rdn of nameAttributes(der)) {
    for (const attr of rdn) if (attr.oid === oid && attr.value !== null) return attr.value;
  }
  return null;
}
