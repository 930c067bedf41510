// Verifies every SignerInfo of a CMS SignedData with PKI.js (an npm validator the agent
// does not use), its countersignatures (RFC 5652 §11.4) and the time-stamp tokens in
// their unsigned attributes, and prints what it found as JSON.
//
//   node pkijs_verify.mjs SIGNATURE.der ROOT.pem [--data DATA] [--ats INPUT]...
//
// DATA is the content of a detached signature.  Each signer: {verified, chain, subject,
// digest, code, message}; countersignatures are verified over the countersigned signature
// value; time-stamp tokens over what they stamp (PKI.js checks the message imprint): a
// signature time-stamp over its signer's signature value, the n-th archive-time-stamp-v3
// over the n-th INPUT (the imprint's input as the caller recomputed it from ETSI EN 319
// 122-1; without one the token is reported unverified).
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

pkijs.setEngine("node", new pkijs.CryptoEngine({ name: "node", crypto: webcrypto }));

const COUNTER_SIGNATURE = "1.2.840.113549.1.9.6";
const TIME_STAMPS = {
  "1.2.840.113549.1.9.16.2.14": "signature-time-stamp",
  "0.4.0.1733.2.4": "archive-time-stamp-v3",
};
const DATA = "1.2.840.113549.1.7.1";
const CONTENT_TYPE = "1.2.840.113549.1.9.3";
const MESSAGE_DIGEST = "1.2.840.113549.1.9.4";

const [sigPath, rootPath, ...options] = process.argv.slice(2);
let dataPath;
const atsInputs = [];
for (let i = 0; i < options.length; i += 2) {
  if (options[i] === "--data") dataPath = options[i + 1];
  else if (options[i] === "--ats") atsInputs.push(options[i + 1]);
  else throw new Error(`unknown option ${options[i]}`);
}
const buffer = (bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
const hex = (view) => Buffer.from(view).toString("hex");

function pemToDer(text) {
  const body = text.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return buffer(Buffer.from(body, "base64"));
}

const root = pkijs.Certificate.fromBER(pemToDer(readFileSync(rootPath, "utf8")));
const signedData = (der) =>
  new pkijs.SignedData({ schema: pkijs.ContentInfo.fromBER(der).content });
const outer = signedData(buffer(readFileSync(sigPath)));
const data = dataPath ? buffer(readFileSync(dataPath)) : undefined;
let atsSeen = 0;

function subjectOf(certificate) {
  if (!certificate) return null;
  return certificate.subject.typesAndValues
    .map((tv) => `${tv.type}=${tv.value.valueBlock.value}`).join(",");
}

async function verifyOne(sd, index, content) {
  const { certificate, ...verdict } = await verifyWithCertificate(sd, index, content);
  return verdict;
}

async function verifyWithCertificate(sd, index, content) {
  try {
    const result = await sd.verify({
      signer: index, data: content, trustedCerts: [root], checkChain: true,
      extendedMode: true,
    });
    return {
      verified: result.signatureVerified === true, chain: result.signerCertificateVerified === true,
      subject: subjectOf(result.signerCertificate), code: result.code ?? 0,
      message: result.message ?? "", certificate: result.signerCertificate,
    };
  } catch (error) {
    return {
      verified: false, chain: error.signerCertificateVerified === true,
      subject: subjectOf(error.signerCertificate), code: error.code ?? -1,
      message: String(error.message ?? error), certificate: error.signerCertificate,
    };
  }
}

async function timeStamps(signerInfo) {
  const out = [];
  const signatureValue = buffer(new Uint8Array(signerInfo.signature.valueBlock.valueHexView));
  for (const attribute of signerInfo.unsignedAttrs?.attributes ?? []) {
    const kind = TIME_STAMPS[attribute.type];
    if (!kind) continue;
    for (const value of attribute.values) {
      const token = new pkijs.SignedData({ schema: new pkijs.ContentInfo({ schema: value }).content });
      let stamped = signatureValue;
      if (kind === "archive-time-stamp-v3") {
        const input = atsInputs[atsSeen];
        atsSeen += 1;
        stamped = input ? buffer(readFileSync(input)) : new ArrayBuffer(1);
      }
      const verdict = await verifyOne(token, 0, stamped);
      const octets = token.encapContentInfo.eContent.valueBlock.valueHexView
        ?? token.encapContentInfo.eContent.getValue();
      const info = pkijs.TSTInfo.fromBER(buffer(new Uint8Array(octets)));
      out.push({
        kind, ...verdict,
        imprintAlgorithm: info.messageImprint.hashAlgorithm.algorithmId,
        imprint: hex(info.messageImprint.hashedMessage.valueBlock.valueHexView),
        genTime: info.genTime.toISOString(),
      });
    }
  }
  return out;
}

async function countersignatures(parentInfo, certificates) {
  const out = [];
  const signatureValue = buffer(new Uint8Array(parentInfo.signature.valueBlock.valueHexView));
  for (const attribute of parentInfo.unsignedAttrs?.attributes ?? []) {
    if (attribute.type !== COUNTER_SIGNATURE) continue;
    for (const value of attribute.values) {
      const signerInfo = new pkijs.SignerInfo({ schema: value });
      // A SignedData of its own around the countersignature: PKI.js verifies SignerInfos
      // of a SignedData, here over the countersigned signature value.
      const wrapper = new pkijs.SignedData({
        version: 1,
        encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: DATA }),
        signerInfos: [signerInfo], certificates,
      });
      const { certificate, ...verdict } = await verifyWithCertificate(wrapper, 0, signatureValue);
      if (verdict.code === 9 && verdict.chain) {
        // PKI.js's SignedData.verify wants a content-type, which RFC 5652 §11.4 forbids in
        // a countersignature: past the chain (checked above), the rest with PKI.js's
        // engine as SignedData.verify does it, without that one demand.
        Object.assign(verdict, await countersignatureValue(signerInfo, certificate,
                                                           signatureValue));
      }
      out.push({ ...verdict, digest: signerInfo.digestAlgorithm.algorithmId,
                 timeStamps: await timeStamps(signerInfo) });
    }
  }
  return out;
}

async function countersignatureValue(signerInfo, certificate, signatureValue) {
  const engine = pkijs.getCrypto(true);
  const attributes = signerInfo.signedAttrs?.attributes ?? [];
  if (attributes.some((a) => a.type === CONTENT_TYPE)) {
    return { verified: false, message: "a countersignature with a content-type" };
  }
  const digestAttr = attributes.find((a) => a.type === MESSAGE_DIGEST);
  const md = engine.getAlgorithmByOID(signerInfo.digestAlgorithm.algorithmId).name;
  const digest = new Uint8Array(await engine.digest(md, new Uint8Array(signatureValue)));
  if (!digestAttr || hex(digest) !== hex(digestAttr.values[0].valueBlock.valueHexView)) {
    return { verified: false, message: "message digest does not match" };
  }
  const rsa = signerInfo.signatureAlgorithm.algorithmId === "1.2.840.113549.1.1.1";
  const verified = await engine.verifyWithPublicKey(
    signerInfo.signedAttrs.encodedValue, signerInfo.signature,
    certificate.subjectPublicKeyInfo, signerInfo.signatureAlgorithm, ...(rsa ? [md] : []));
  return { verified, code: 14, message: "" };
}

const signers = [];
for (let index = 0; index < outer.signerInfos.length; index += 1) {
  const signerInfo = outer.signerInfos[index];
  signers.push({
    index, ...(await verifyOne(outer, index, data)),
    digest: signerInfo.digestAlgorithm.algorithmId,
    timeStamps: await timeStamps(signerInfo),
    countersignatures: await countersignatures(signerInfo, outer.certificates),
  });
}
process.stdout.write(JSON.stringify({ signers }));
