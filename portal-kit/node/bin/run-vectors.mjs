#!/usr/bin/env node
// Runs a login-vectors file (portal-kit/vectors/SCHEMA.md) through this verifier and prints
// {"results": [...]} in the file's order. Exit 0 whatever the outcomes; 2 when the file
// cannot be read.

import { readFileSync } from 'node:fs';
import { ChallengeStore, LoginVerifier, LoginError } from '../src/index.mjs';

const SESSION = 'vector-session';

function load(path) {
  const data = JSON.parse(readFileSync(path, 'utf8'));
  if (data?.format !== 'imza-login-vectors:1' || !Array.isArray(data.vectors)) {
    throw new Error('not an imza-login-vectors:1 file');
  }
  return data;
}

async function run(data, vector) {
  const now = Date.parse(vector.now);
  const clock = () => now;
  const store = new ChallengeStore({ lifetimeSeconds: data.challengeLifetimeSeconds ?? 300, clock });
  if (vector.challengeIssuedAt !== null && vector.challengeIssuedAt !== undefined) {
    try {
      store.register(vector.challenge, SESSION, Date.parse(vector.challengeIssuedAt),
        { used: vector.challengeUsed === true });
    } catch {
      // a challenge this store could never have issued stays unknown to it
    }
  }
  const verifier = new LoginVerifier({
    origin: vector.origin ?? data.origin,
    anchors: data.anchors.map((a) => Buffer.from(a, 'base64')),
    crls: (data.crls ?? []).map((c) => Buffer.from(c, 'base64')),
    requireRevocationStatus: vector.requireRevocation === true,
    clock,
  });
  try {
    const result = await verifier.verify(vector.token,
      { challenge: vector.challenge, store, session: SESSION });
    return { name: vector.name, valid: true, error: null, certificateSha256: result.sha256 };
  } catch (error) {
    if (!(error instanceof LoginError)) {
      process.stderr.write(`${vector.name}: ${error?.stack ?? error}\n`);
      return { name: vector.name, valid: false, error: 'INTERNAL_ERROR', certificateSha256: null };
    }
    return { name: vector.name, valid: false, error: error.code, certificateSha256: null };
  }
}

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: run-vectors.mjs FILE\n');
  process.exit(2);
}
let data;
try {
  data = load(file);
} catch (error) {
  process.stderr.write(`cannot read ${file}: ${error.message}\n`);
  process.exit(2);
}
const results = [];
for (const vector of data.vectors) results.push(await run(data, vector));
process.stdout.write(`${JSON.stringify({ results })}\n`);
