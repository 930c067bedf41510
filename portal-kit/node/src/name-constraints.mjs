// Name constraints over a path (RFC 5280 §4.2.1.10, §6.1.3 (b)(c), §6.1.4 (g)), judged as
// the JDK's PKIX validator judges them, since the Java kit is the reference where RFC 5280
// leaves room (SCHEMA.md, "Name constraints"). Every CA on the path below the anchor
// constrains every certificate under it; a self-issued CA is not judged itself (its
// constraints still count). The anchor's own nameConstraints are not applied: the Java kit
// builds its TrustAnchor from the certificate alone.

import { parse, DerError } from './der.mjs';

const SAN = '2.5.29.17';
const NAME_CONSTRAINTS = '2.5.29.30';
const COMMON_NAME = '2.5.4.3';
const EMAIL_ADDRESS = '1.2.840.113549.1.9.1';
// The attribute types whose string values compare case- and space-insensitively (the
// JDK's RFC 2253 keywords); any other value compares by its exact encoding.
const KEYWORDS = new Set([
  COMMON_NAME, '2.5.4.6', '2.5.4.7', '2.5.4.8', '2.5.4.10', '2.5.4.11', '2.5.4.9',
  '0.9.2342.19200300.100.1.25', '0.9.2342.19200300.100.1.1',
]);
const UTF8 = 12;
const PRINTABLE = 19;
const JUDGED = new Set(['dn', 'email', 'dns', 'ip']);
const FORMS = ['otherName', 'email', 'dns', 'x400', 'dn', 'edi', 'uri', 'ip', 'registeredID'];

/** A string attribute value as text, or null for other encodings. */
function text(node) {
  if (node.cls !== 0 || node.constructed) return null;
  if (node.tag === UTF8) return Buffer.from(node.content).toString('utf8');
  if ([18, 19, 20, 22, 26, 27].includes(node.tag)) {
    return Buffer.from(node.content).toString('latin1');
  }
  return null;
}

/** Runs of spaces become one, then the ends are trimmed, as the JDK canonicalises. */
function squeeze(value) {
  return value.replace(/ {2,}/g, ' ').replace(/^[\0- ]+|[\0- ]+$/g, '');
}

function attributeKey(type, value) {
  const oid = type.oid();
  if (KEYWORDS.has(oid) && (value.is(UTF8) || value.is(PRINTABLE))) {
    return `s ${oid} ${squeeze(text(value)).toUpperCase().toLowerCase().normalize('NFKD')}`;
  }
  return `# ${oid} ${Buffer.from(value.raw).toString('hex')}`;
}

/** {rdns: [sorted attribute keys joined], attrs: [{oid, value}]} of a Name node. */
function directoryName(name) {
  const rdns = [];
  const attrs = [];
  for (const rdn of name.sequence()) {
    if (!rdn.is(17) || !rdn.constructed) throw new DerError('RDN SET expected');
    const keys = rdn.children().map((attr) => {
      const [type, value] = attr.sequence();
      attrs.push({ oid: type.oid(), value });
      return attributeKey(type, value);
    });
    rdns.push(keys.sort().join('\n'));
  }
  return { rdns, attrs };
}

/** A GeneralName as {form, value}: dn (RDN keys), email/dns (lowercase), ip (bytes). */
function generalName(node) {
  if (node.cls !== 2 || node.tag > 8) throw new DerError('GeneralName expected');
  const form = FORMS[node.tag];
  if (form === 'dn') return { form, value: directoryName(node.explicit(4)).rdns };
  if (form === 'email' || form === 'dns') {
    return { form, value: Buffer.from(node.content).toString('latin1').toLowerCase() };
  }
  if (form === 'ip') return { form, value: Buffer.from(node.content) };
  return { form, value: null };
}

const EMAIL_OK = (t) => t !== '' && !['', '.'].includes(t.slice(t.indexOf('@') + 1));
const ALNUM = /^[0-9A-Za-z]$/;

/** The JDK also judges the most specific CN as a DNS name or IP address when the
 *  subjectAltName has none of that form. */
function cnAsHost(cn) {
  if (/^[0-9.]+$/.test(cn)) {
    const parts = cn.split('.');
    if (parts.length !== 4 || parts.some((p) => p === '' || Number(p) > 255)) return null;
    return { form: 'ip', value: Buffer.from(parts.map(Number)) };
  }
  // An IPv6 literal is left unjudged here and in the Python kit (the JDK judges it).
  if (cn.includes(':')) return null;
  if (cn === '' || cn.includes(' ') || cn.startsWith('.') || cn.endsWith('.')) return null;
  for (const label of cn.split('.')) {
    if (label === '' || !ALNUM.test(label[0])) return null;
    if (![...label.slice(1)].every((c) => ALNUM.test(c) || c === '-')) return null;
  }
  return { form: 'dns', value: cn.toLowerCase() };
}

/** The names a constraint judges: the subject, the subjectAltName entries (without one,
 *  the subject's emailAddress attributes) and the CN as a host name. */
export function namesOf(info) {
  const subject = directoryName(parse(info.subject));
  const names = subject.rdns.length ? [{ form: 'dn', value: subject.rdns }] : [];
  const san = info.extensions.get(SAN);
  if (san) {
    names.push(...parse(san.value).sequence().map(generalName));
  } else {
    for (const { oid, value } of subject.attrs) {
      const address = oid === EMAIL_ADDRESS ? text(value) : null;
      if (address !== null && EMAIL_OK(address)) {
        names.push({ form: 'email', value: address.toLowerCase() });
      }
    }
  }
  const cns = subject.attrs.filter((a) => a.oid === COMMON_NAME);
  const cn = cns.length ? text(cns[cns.length - 1].value) : null;
  const host = cn === null ? null : cnAsHost(cn);
  if (host && !names.some((n) => n.form === host.form)) names.push(host);
  return names;
}

/** `name` lies in the subtree `base` (a match or narrower, as the JDK's
 *  GeneralNameInterface.constrains says it). */
function within(form, name, base) {
  if (form === 'dn') {
    if (name.length === 0) return base.length === 0;
    return name.length >= base.length && base.every((rdn, i) => rdn === name[i]);
  }
  if (form === 'email' || form === 'dns') {
    if (name === base) return true;
    if (base === '' || !name.endsWith(base)) return false;
    const before = name[name.length - base.length - 1];
    if (form === 'email') { // host, .domain or a whole mailbox (which only matches itself)
      return !base.includes('@') && (base.startsWith('.') || before === '@');
    }
    return (before === '.') !== base.startsWith('.');
  }
  if (form === 'ip') { // a host address inside an address + mask of the same family
    if (name.equals(base)) return true;
    const half = name.length;
    if (base.length !== 2 * half) return false;
    for (let i = 0; i < half; i++) if ((name[i] & base[half + i]) !== base[i]) return false;
    return true;
  }
  return false; // a form judged nowhere here: never "within"
}

/** {permitted, excluded}: lists of GeneralNames; a minimum or maximum is refused, as the
 *  JDK refuses them. */
function constraintsOf(info) {
  const ext = info.extensions.get(NAME_CONSTRAINTS);
  if (!ext) return null;
  const out = { permitted: [], excluded: [] };
  for (const part of parse(ext.value).sequence()) {
    if (part.cls !== 2 || part.tag > 1 || !part.constructed) {
      throw new DerError('nameConstraints: [0] or [1] expected');
    }
    for (const subtree of part.children()) {
      const [base, ...rest] = subtree.sequence();
      if (rest.some((r) => !(r.is(0, { context: true }) && r.content.every((b) => b === 0)))) {
        throw new DerError('nameConstraints: a minimum or maximum is not supported');
      }
      (part.tag === 0 ? out.permitted : out.excluded).push(generalName(base));
    }
  }
  return out;
}

function permits({ permitted, excluded }, { form, value }) {
  const judged = JUDGED.has(form);
  for (const base of excluded) {
    if (base.form === form && (!judged || within(form, value, base.value))) return false;
  }
  const same = permitted.filter((base) => base.form === form);
  return same.length === 0 || (judged && same.some((base) => within(form, value, base.value)));
}

/**
 * Whether the path (CertInfos, end entity first, anchor last) meets its CAs' name
 * constraints. A name of a form not judged here (URI, otherName, ...) under a
 * constraint of that form fails; so does an extension that does not parse.
 */
export function nameConstraintsHold(path) {
  const belowAnchor = path.slice(0, -1).reverse();
  const active = [];
  try {
    belowAnchor.forEach((info, index) => {
      const last = index === belowAnchor.length - 1;
      if (active.length && (last || !info.subject.equals(info.issuer))) {
        for (const name of namesOf(info)) {
          if (!active.every((c) => permits(c, name))) throw new RangeError('outside');
        }
      }
      const constraints = constraintsOf(info);
      if (constraints) active.push(constraints);
    });
  } catch (e) {
    if (e instanceof DerError || e instanceof RangeError) return false;
    throw e;
  }
  return true;
}
