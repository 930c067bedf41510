// A small, strict DER reader: definite lengths only, minimal length encodings, every read
// bounds-checked. It reads what the verifier needs from certificates, CRLs and OCSP
// answers; anything it does not understand is an error, never a guess.

export class DerError extends Error {}

const MAX_DEPTH = 32;

/**
 * One TLV at `offset` of `buf`.
 * @returns {{cls: number, constructed: boolean, tag: number, start: number,
 *            contentStart: number, end: number}}
 */
export function readTlv(buf, offset, limit = buf.length) {
  if (offset + 2 > limit) throw new DerError('truncated header');
  const first = buf[offset];
  const tag = first & 0x1f;
  if (tag === 0x1f) throw new DerError('high tag numbers are not used here');
  let pos = offset + 1;
  const lenByte = buf[pos++];
  let length;
  if (lenByte < 0x80) {
    length = lenByte;
  } else {
    const count = lenByte & 0x7f;
    if (count === 0) throw new DerError('indefinite length');
    if (count > 4) throw new DerError('length too large');
    if (pos + count > limit) throw new DerError('truncated length');
    if (buf[pos] === 0) throw new DerError('non-minimal length');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[pos++];
    if (length < 0x80) throw new DerError('non-minimal length');
  }
  const end = pos + length;
  if (end > limit) throw new DerError('truncated content');
  return {
    cls: first >> 6, constructed: (first & 0x20) !== 0, tag,
    start: offset, contentStart: pos, end,
  };
}

/** A node of the tree: its TLV plus the buffer, so children and raw bytes are at hand. */
export class Node {
  constructor(buf, tlv, depth = 0) {
    this.buf = buf;
    this.cls = tlv.cls;
    this.constructed = tlv.constructed;
    this.tag = tlv.tag;
    this.start = tlv.start;
    this.contentStart = tlv.contentStart;
    this.end = tlv.end;
    this.depth = depth;
  }

  /** The whole encoding, header included. */
  get raw() { return this.buf.subarray(this.start, this.end); }

  get content() { return this.buf.subarray(this.contentStart, this.end); }

  /** True for universal `tag`, or context-specific [n] when `context` is given. */
  is(tag, { context = false } = {}) {
    return this.tag === tag && this.cls === (context ? 2 : 0);
  }

  children() {
    if (!this.constructed) throw new DerError('not a constructed value');
    if (this.depth >= MAX_DEPTH) throw new DerError('nested too deep');
    const out = [];
    let pos = this.contentStart;
    while (pos < this.end) {
      const tlv = readTlv(this.buf, pos, this.end);
      out.push(new Node(this.buf, tlv, this.depth + 1));
      pos = tlv.end;
    }
    return out;
  }

  /** Children of a SEQUENCE (universal 16), checked. */
  sequence() {
    if (!this.is(16) || !this.constructed) throw new DerError('SEQUENCE expected');
    return this.children();
  }

  /** The single value inside an EXPLICIT context tag [n]. */
  explicit(n) {
    if (!this.is(n, { context: true }) || !this.constructed) {
      throw new DerError(`[${n}] expected`);
    }
    const inner = this.children();
    if (inner.length !== 1) throw new DerError(`[${n}] must hold one value`);
    return inner[0];
  }

  oid() {
    if (!this.is(6)) throw new DerError('OBJECT IDENTIFIER expected');
    return decodeOid(this.content);
  }

  /** INTEGER content bytes, with the sign check DER requires (minimal two's complement). */
  integerBytes() {
    if (!this.is(2)) throw new DerError('INTEGER expected');
    const c = this.content;
    if (c.length === 0) throw new DerError('empty INTEGER');
    if (c.length > 1 && ((c[0] === 0 && !(c[1] & 0x80)) || (c[0] === 0xff && c[1] & 0x80))) {
      throw new DerError('non-minimal INTEGER');
    }
    return c;
  }

  /** A small non-negative INTEGER or ENUMERATED as a number. */
  smallInt(tag = 2) {
    if (!this.is(tag)) throw new DerError('INTEGER expected');
    const c = this.content;
    if (c.length === 0 || c.length > 4 || c[0] & 0x80) throw new DerError('bad small integer');
    let n = 0;
    for (const b of c) n = n * 256 + b;
    return n;
  }

  /** BIT STRING: `{unused, bytes}`. */
  bitString() {
    if (!this.is(3) || this.constructed) throw new DerError('BIT STRING expected');
    const c = this.content;
    if (c.length === 0 || c[0] > 7 || (c.length === 1 && c[0] !== 0)) {
      throw new DerError('bad BIT STRING');
    }
    return { unused: c[0], bytes: c.subarray(1) };
  }

  octetString() {
    if (!this.is(4) || this.constructed) throw new DerError('OCTET STRING expected');
    return this.content;
  }

  boolean() {
    if (!this.is(1) || this.content.length !== 1) throw new DerError('BOOLEAN expected');
    const v = this.content[0];
    if (v !== 0 && v !== 0xff) throw new DerError('non-DER BOOLEAN');
    return v === 0xff;
  }

  /** UTCTime or GeneralizedTime (the forms RFC 5280 allows: Z, whole seconds) in ms. */
  time() {
    const text = this.content.toString('latin1');
    let m;
    if (this.is(23)) {
      m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text);
      if (!m) throw new DerError('bad UTCTime');
      const yy = Number(m[1]);
      m = [m[0], String(yy >= 50 ? 1900 + yy : 2000 + yy), ...m.slice(2)];
    } else if (this.is(24)) {
      m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.\d+)?Z$/.exec(text);
      if (!m) throw new DerError('bad GeneralizedTime');
    } else {
      throw new DerError('time expected');
    }
    const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
    const ms = Date.UTC(y, mo - 1, d, h, mi, s);
    const back = new Date(ms);
    if (back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) {
      throw new DerError('impossible date');
    }
    return ms;
  }
}

/** Parse `buf` as exactly one DER value (no trailing bytes). */
export function parse(buf) {
  const tlv = readTlv(buf, 0);
  if (tlv.end !== buf.length) throw new DerError('trailing bytes');
  return new Node(buf, tlv);
}

function decodeOid(c) {
  if (c.length === 0 || c.length > 64) throw new DerError('bad OID length');
  const arcs = [];
  let value = 0;
  let fresh = true;
  for (const b of c) {
    if (fresh && b === 0x80) throw new DerError('non-minimal OID arc');
    value = value * 128 + (b & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 256) throw new DerError('OID arc too large');
    fresh = !(b & 0x80);
    if (fresh) {
      arcs.push(value);
      value = 0;
    }
  }
  if (!fresh) throw new DerError('truncated OID');
  const head = arcs[0];
  const first = head < 40 ? 0 : head < 80 ? 1 : 2;
  return [first, head - first * 40, ...arcs.slice(1)].join('.');
}

// --- writing: only the few shapes an OCSP request needs ---------------------------------

function encodeLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** A TLV with identifier octet `id` around `content` (Buffer or list of Buffers). */
export function tlv(id, content) {
  const body = Array.isArray(content) ? Buffer.concat(content) : content;
  return Buffer.concat([Buffer.from([id]), encodeLength(body.length), body]);
}

export const seq = (...items) => tlv(0x30, items);
export const octets = (bytes) => tlv(0x04, bytes);
export const nullValue = () => Buffer.from([0x05, 0x00]);

export function oid(dotted) {
  const arcs = dotted.split('.').map(Number);
  const parts = [arcs[0] * 40 + arcs[1], ...arcs.slice(2)];
  const out = [];
  for (const arc of parts) {
    const group = [arc & 0x7f];
    let rest = Math.floor(arc / 128);
    while (rest > 0) {
      group.unshift((rest & 0x7f) | 0x80);
      rest = Math.floor(rest / 128);
    }
    out.push(...group);
  }
  return tlv(0x06, Buffer.from(out));
}

/** INTEGER from big-endian unsigned magnitude bytes. */
export function unsignedInteger(bytes) {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const trimmed = bytes.subarray(i);
  const body = trimmed[0] & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
  return tlv(0x02, body);
}
